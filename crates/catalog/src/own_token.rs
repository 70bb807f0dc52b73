//! The one check of a token this server issued, behind both RFC 7662 introspection (the
//! issuer) and admin-token authentication (management): signed by the tenant's own ring,
//! within its lifetime with no leeway, naming the tenant, not revoked, and, for an admin
//! token, still held by a live app.

use tollgate_domain::TokenFacts;
use tollgate_domain::{AccessTokenClaims, ApiIdentifier, ClientId, ScopeSet, UnixTime};
use tollgate_verify::{Expectations, VerifyError, unverified_claim, verify_at};

use crate::catalog::{AppView, TenantView};
use crate::revocation::{RevocationError, Revocations};

/// Why a token the tenant issued is not active for the one who presents it. Messages are safe
/// to return to the token's holder (they name no secret and no other party).
#[derive(Debug, thiserror::Error)]
pub enum InactiveToken {
    /// Not a valid token of this tenant for that audience: malformed, unknown key, bad
    /// signature, wrong `typ`, `iss` or `aud`, expired or not yet valid.
    #[error("{0}")]
    Invalid(#[from] VerifyError),
    /// Signed by this tenant's keys but naming another tenant's id (`cid`).
    #[error("token was issued to another tenant")]
    ForeignTenant,
    /// Revoked: by itself, its secret, its app or its tenant.
    #[error("token has been revoked")]
    Revoked,
    /// The app it was issued to has been deleted.
    #[error("the app it was issued to no longer exists")]
    UnknownApp,
    /// The app it was issued to is blocked.
    #[error("the app it was issued to is blocked")]
    BlockedApp,
    /// The client secret that obtained it (`sid`) has ended or been removed.
    #[error("the client secret that obtained it has ended")]
    SecretEnded,
}

/// A token of the tenant's that is active.
pub struct ActiveToken<'v> {
    /// Its verified claims.
    pub claims: AccessTokenClaims,
    /// For an admin token (audience: the tenant's Management API), the app that holds it: it
    /// exists, is not blocked and still has the secret that obtained the token. `None` for a
    /// token of any other audience, whose app is not looked at.
    pub admin_app: Option<&'v AppView>,
}

/// The check of a token `view`'s tenant issued at `now`, in this order:
/// [`TenantView::verify_own`] (for `audience`, or with `None` whatever audience the token
/// names; no leeway), then revocation by `revocations`, then, for an admin token only,
/// [`TenantView::live_app`]. The first failure is the inner error. The outer error is
/// revocation state that cannot be read: the caller fails closed.
///
/// Introspection passes `None` (any of the tenant's audiences); admin-token authentication
/// passes the tenant's Management API, so every token it accepts has an `admin_app`.
pub async fn verify_own_token<'v>(
    view: &'v TenantView,
    revocations: &Revocations,
    token: &str,
    audience: Option<&str>,
    now: UnixTime,
) -> Result<Result<ActiveToken<'v>, InactiveToken>, RevocationError> {
    let claims = match view.verify_own(token, audience, now) {
        Ok(claims) => claims,
        Err(inactive) => return Ok(Err(inactive)),
    };
    let facts = TokenFacts {
        tenant_id: &claims.cid,
        jti: &claims.jti,
        sid: &claims.sid,
        client_id: &claims.client_id,
        iat: claims.iat,
    };
    if revocations.is_revoked(&facts, now).await? {
        return Ok(Err(InactiveToken::Revoked));
    }
    let admin_app = if claims.aud == view.management_audience {
        match view.live_app(&claims, now) {
            Ok(app) => Some(app),
            Err(inactive) => return Ok(Err(inactive)),
        }
    } else {
        None
    };
    Ok(Ok(ActiveToken { claims, admin_app }))
}

impl TenantView {
    /// Verifies a token this tenant signed: a `kid` of its ring, the key's algorithm, `typ`,
    /// `iss`, `aud` = `audience` (or, with `None`, whatever audience the token names: read
    /// unverified only to say what to expect, then covered by the signature), `exp` and `nbf`
    /// at `now` **with no leeway** (the server judges its own tokens by its own clock; leeway
    /// is for other parties' clocks), and `cid` = this tenant. No revocation check: that is
    /// [`verify_own_token`], which calls this.
    pub fn verify_own(
        &self,
        token: &str,
        audience: Option<&str>,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, InactiveToken> {
        let audience = match audience {
            Some(audience) => audience.to_owned(),
            None => unverified_claim(token, "aud").ok_or(VerifyError::Malformed)?,
        };
        let expected = Expectations {
            issuer: self.issuer.clone(),
            audience,
            leeway_seconds: 0,
        };
        let claims = verify_at(token, &self.key_set, &expected, now)?;
        if self.id != claims.cid.as_str() {
            return Err(InactiveToken::ForeignTenant);
        }
        Ok(claims)
    }

    /// The app holding `claims`, if it may still use them at `now`: it exists, is not
    /// blocked, and the secret that obtained the token (`sid`) is still live.
    pub fn live_app(
        &self,
        claims: &AccessTokenClaims,
        now: UnixTime,
    ) -> Result<&AppView, InactiveToken> {
        let app = ClientId::parse(&claims.client_id)
            .ok()
            .and_then(|client_id| self.apps.get(&client_id))
            .ok_or(InactiveToken::UnknownApp)?;
        if app.is_blocked {
            return Err(InactiveToken::BlockedApp);
        }
        let is_secret_live = app.secrets.iter().any(|secret| {
            secret.id == claims.sid.as_str()
                && secret.expires_at.is_none_or(|expires_at| now < expires_at)
        });
        if !is_secret_live {
            return Err(InactiveToken::SecretEnded);
        }
        Ok(app)
    }

    /// The scopes `app` holds on the API `audience` now: its grant, less any scope the API no
    /// longer defines. `None` when it holds no grant there (or the API does not exist); a
    /// grant without scopes is `Some` of an empty set.
    pub fn granted_scopes(&self, app: &AppView, audience: &str) -> Option<ScopeSet> {
        let api = ApiIdentifier::parse(audience)
            .ok()
            .and_then(|identifier| self.apis.get(&identifier))?;
        app.grants
            .get(&api.id)
            .map(|granted| granted.intersection(&api.scopes))
    }
}
#[cfg(test)]
mod tests {
    //! The checks of the server's own tokens, on a hand-built view: no leeway on `exp`, the
    //! tenant's `cid`, the app behind a token (deleted, blocked, secret ended), revocation,
    //! and which tokens need a live app.

    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;

    use tollgate_domain::{
        Algorithm, Clock, Revocation, RevocationTarget, SystemClock, TenantName,
    };
    use tollgate_keys::SigningKey;
    use tollgate_state::SharedState;
    use tollgate_store::Store;
    use tollgate_verify::KeySet;

    use super::*;
    use crate::catalog::{RingKey, SecretView};

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    const ISSUER: &str = "http://acme.hub.localhost:8080/";
    const MANAGE: &str = "http://acme.hub.localhost:8080/manage";

    /// The real time: the in-process shared state reads it to expire revocations.
    fn now() -> UnixTime {
        SystemClock.now()
    }

    /// A view of tenant `ten_1` with one ES256 key and one app `app1` whose secret `sec_1`
    /// ends at `secret_end`, blocked or not; and the key, to sign with.
    fn view(
        is_blocked: bool,
        secret_end: Option<UnixTime>,
    ) -> TestResult<(TenantView, Arc<SigningKey>)> {
        let (key, _) = SigningKey::generate(Algorithm::Es256, "k1".to_owned())?;
        let key = Arc::new(key);
        let public_jwk = key.public_jwk();
        let key_set = KeySet::from_jwks(std::slice::from_ref(&public_jwk))?;
        let client_id = ClientId::parse("app1")?;
        let app = AppView {
            client_id: client_id.clone(),
            is_blocked,
            secrets: vec![SecretView {
                id: "sec_1".into(),
                hash: String::new(),
                expires_at: secret_end,
                last_recorded: AtomicI64::new(0),
            }],
            grants: HashMap::new(),
            rate_limit_per_second: None,
        };
        let view = TenantView {
            id: "ten_1".into(),
            name: TenantName::parse("acme")?,
            issuer: ISSUER.to_owned(),
            management_audience: MANAGE.to_owned(),
            signing_alg: Algorithm::Es256,
            apis: HashMap::new(),
            apps: HashMap::from([(client_id, app)]),
            keys: vec![RingKey {
                key: Arc::clone(&key),
                public_jwk,
                activate_at: 0,
                retire_at: None,
                remove_at: None,
            }],
            key_set,
            rate_limit_per_second: None,
        };
        Ok((view, key))
    }

    /// An admin token of `app1` (secret `sec_1`) of tenant `cid`, expiring at `exp`.
    fn token(key: &SigningKey, cid: &str, exp: UnixTime) -> TestResult<String> {
        token_for(key, MANAGE, cid, exp)
    }

    /// A token of `app1` (secret `sec_1`) of tenant `cid` for `aud`, expiring at `exp`.
    fn token_for(key: &SigningKey, aud: &str, cid: &str, exp: UnixTime) -> TestResult<String> {
        let claims = AccessTokenClaims {
            iss: ISSUER.to_owned(),
            sub: "app1@client".to_owned(),
            aud: aud.to_owned(),
            iat: exp - 300,
            nbf: exp - 300,
            exp,
            jti: "jti1".to_owned(),
            cid: cid.to_owned(),
            sid: "sec_1".to_owned(),
            scp: vec!["apps:read".to_owned()],
            scope: "apps:read".to_owned(),
            client_id: "app1".to_owned(),
            gty: "client_credentials".to_owned(),
        };
        Ok(key.sign_token(&claims)?)
    }

    #[test]
    fn own_tokens_get_no_leeway_after_exp() -> TestResult {
        let (view, key) = view(false, None)?;
        let now = now();
        let live = token(&key, "ten_1", now + 60)?;
        assert_eq!(view.verify_own(&live, Some(MANAGE), now)?.jti, "jti1");
        assert_eq!(view.verify_own(&live, None, now)?.aud, MANAGE);
        // Five seconds past exp: a foreign verifier's 30 s of leeway would still accept it.
        let expired = token(&key, "ten_1", now - 5)?;
        assert!(matches!(
            view.verify_own(&expired, Some(MANAGE), now),
            Err(InactiveToken::Invalid(VerifyError::Expired))
        ));
        assert!(matches!(
            view.verify_own(&live, Some("https://archive.example.com/"), now),
            Err(InactiveToken::Invalid(VerifyError::WrongAudience))
        ));
        assert!(matches!(
            view.verify_own(&token(&key, "ten_2", now + 60)?, None, now),
            Err(InactiveToken::ForeignTenant)
        ));
        Ok(())
    }

    #[test]
    fn own_tokens_need_a_live_app_and_secret() -> TestResult {
        let now = now();
        let (view, key) = view(false, Some(now + 10))?;
        let claims = view.verify_own(&token(&key, "ten_1", now + 60)?, None, now)?;
        assert!(view.live_app(&claims, now).is_ok());
        assert!(matches!(
            view.live_app(&claims, now + 10),
            Err(InactiveToken::SecretEnded)
        ));
        let other_secret = AccessTokenClaims {
            sid: "sec_2".to_owned(),
            ..claims.clone()
        };
        assert!(matches!(
            view.live_app(&other_secret, now),
            Err(InactiveToken::SecretEnded)
        ));
        let deleted = AccessTokenClaims {
            client_id: "app2".to_owned(),
            ..claims.clone()
        };
        assert!(matches!(
            view.live_app(&deleted, now),
            Err(InactiveToken::UnknownApp)
        ));
        let (blocked, _) = self::view(true, None)?;
        assert!(matches!(
            blocked.live_app(&claims, now),
            Err(InactiveToken::BlockedApp)
        ));
        Ok(())
    }

    /// Revocations over an in-process shared state, which answers every check itself.
    async fn revocations() -> TestResult<(Revocations, SharedState)> {
        let state = SharedState::in_process();
        let store = Store::connect("sqlite::memory:").await?;
        Ok((Revocations::new(store, state.clone()), state))
    }

    #[tokio::test]
    async fn one_check_for_introspection_and_admin_tokens() -> TestResult {
        let now = now();
        let (revocations, state) = revocations().await?;
        let (view, key) = view(false, None)?;
        let admin = token(&key, "ten_1", now + 60)?;
        for audience in [None, Some(MANAGE)] {
            let active = verify_own_token(&view, &revocations, &admin, audience, now).await??;
            assert_eq!(active.claims.jti, "jti1");
            assert!(
                active
                    .admin_app
                    .is_some_and(|app| app.client_id.as_str() == "app1")
            );
        }
        // Another audience: no app is looked at, so a blocked app's token is still active.
        let archive = "https://archive.example.com/";
        let (blocked, key) = self::view(true, None)?;
        let resource = token_for(&key, archive, "ten_1", now + 60)?;
        let active = verify_own_token(&blocked, &revocations, &resource, None, now).await??;
        assert!(active.admin_app.is_none());
        let admin = token(&key, "ten_1", now + 60)?;
        assert!(matches!(
            verify_own_token(&blocked, &revocations, &admin, None, now).await?,
            Err(InactiveToken::BlockedApp)
        ));
        // Revocation is checked before the app: a revoked admin token says so.
        state
            .add_revocations(
                &[Revocation {
                    tenant_id: "ten_1".into(),
                    target: RevocationTarget::Token("jti1".to_owned()),
                    revoked_at: now,
                    expires_at: now + 120,
                }],
                now,
            )
            .await?;
        for token in [&admin, &resource] {
            assert!(matches!(
                verify_own_token(&blocked, &revocations, token, None, now).await?,
                Err(InactiveToken::Revoked)
            ));
        }
        Ok(())
    }
}

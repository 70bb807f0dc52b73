//! The grant itself, and the client-authenticated calls about issued tokens: revocation
//! (RFC 7009) and introspection (RFC 7662).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tollgate_domain::{
    AccessTokenClaims, Algorithm, ApiIdentifier, ClientId, ClientSecret, Clock, ErrorCode,
    GRANT_TYPE_CLIENT_CREDENTIALS, IssuedToken, Revocation, RevocationTarget, Scope, ScopeSet,
    TenantName, TokenCallRequest, TokenFacts, TokenRequest, UnixTime,
};
use tollgate_keys::{KeyError, SecretHasher, generate_jti};
use tollgate_state::RateDecision;
use tollgate_verify::{Expectations, unverified_claim, verify};

use crate::catalog::{AppView, Catalog, CatalogError, TenantView, USAGE_RECORD_INTERVAL};
use crate::revocation::{RevocationError, Revocations};

/// Why a request failed. Messages are safe to return to the client.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Unknown tenant, unknown client, wrong secret or blocked app: deliberately one answer.
    #[error("client authentication failed")]
    InvalidClient,
    /// The audience is not an API of the tenant.
    #[error("audience {0} is not an API of this tenant")]
    UnknownAudience(ApiIdentifier),
    /// The app holds no grant on the API.
    #[error("the app holds no grant on {0}")]
    NoGrant(ApiIdentifier),
    /// A requested scope is not held on the API.
    #[error("scope {0} is not granted to the app on this API")]
    ScopeNotHeld(Scope),
    /// Too many requests (or too many failed authentications); retry later.
    #[error("too many requests; retry in {} s", .0.retry_after.as_secs().max(1))]
    RateLimited(RateDecision),
    /// The tenant does not exist (for public-key lookups, where existence is not secret).
    #[error("tenant {0} not found")]
    UnknownTenant(TenantName),
    /// The tenant's key ring lacks a key for the algorithm the API needs.
    #[error("no signing key available")]
    NoSigningKey(Algorithm),
    /// The catalog could not be loaded.
    #[error("issuer unavailable")]
    Catalog(#[from] CatalogError),
    /// Signing or randomness failed.
    #[error("issuer unavailable")]
    Crypto(#[from] KeyError),
    /// Revocation state could not be read or written: fail closed.
    #[error("revocation state unavailable")]
    Revocation(#[from] RevocationError),
}

impl IssueError {
    /// The caller-visible outcome.
    pub fn code(&self) -> ErrorCode {
        match self {
            IssueError::InvalidClient => ErrorCode::InvalidClient,
            IssueError::UnknownAudience(_) => ErrorCode::InvalidTarget,
            IssueError::NoGrant(_) => ErrorCode::UnauthorizedClient,
            IssueError::ScopeNotHeld(_) => ErrorCode::InvalidScope,
            IssueError::RateLimited(_) => ErrorCode::ResourceExhausted,
            IssueError::UnknownTenant(_) => ErrorCode::NotFound,
            IssueError::NoSigningKey(_)
            | IssueError::Catalog(_)
            | IssueError::Crypto(_)
            | IssueError::Revocation(_) => ErrorCode::Unavailable,
        }
    }
}

/// Default rate limits; apps and tenants may set their own request rates.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Token requests per second of one app (bursts of twice that).
    pub app_per_second: f64,
    /// Token requests per second of one tenant (bursts of twice that).
    pub tenant_per_second: f64,
    /// Failed authentications per second per client id and per source address.
    pub failures_per_second: f64,
    /// Failed authentications allowed in a burst.
    pub failure_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            app_per_second: 100.0,
            tenant_per_second: 2_000.0,
            failures_per_second: 1.0,
            failure_burst: 30,
        }
    }
}

/// The outcome of a client authentication.
struct Authenticated {
    view: Arc<TenantView>,
    secret_id: String,
}

/// Issues access tokens from the catalog, and revokes and introspects them.
pub struct Issuer {
    catalog: Arc<Catalog>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    revocations: Arc<Revocations>,
    limits: RateLimits,
    /// Last uses of secrets waiting to be written: (tenant id, secret id, time).
    usage: Mutex<Vec<(String, String, UnixTime)>>,
}

impl Issuer {
    /// An issuer reading `catalog`, checking secrets with `hasher`, telling time by `clock`.
    pub fn new(
        catalog: Arc<Catalog>,
        hasher: SecretHasher,
        clock: Arc<dyn Clock>,
        revocations: Arc<Revocations>,
        limits: RateLimits,
    ) -> Self {
        Self {
            catalog,
            hasher,
            clock,
            revocations,
            limits,
            usage: Mutex::new(Vec::new()),
        }
    }

    /// The catalog this issuer reads.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The revocations this issuer checks.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Runs the client-credentials grant.
    pub async fn issue(&self, request: TokenRequest) -> Result<IssuedToken, IssueError> {
        let now = self.clock.now();
        let Authenticated { view, secret_id } = self
            .authenticate(
                &request.tenant,
                &request.client_id,
                &request.client_secret,
                request.source,
                now,
            )
            .await?;
        let Some(app) = view.apps.get(&request.client_id) else {
            return Err(IssueError::InvalidClient);
        };
        self.enforce_request_rates(&view, app).await?;
        let api = view
            .apis
            .get(&request.audience)
            .ok_or_else(|| IssueError::UnknownAudience(request.audience.clone()))?;
        let granted = app
            .grants
            .get(&api.id)
            .ok_or_else(|| IssueError::NoGrant(request.audience.clone()))?;
        // A grant may still name a scope the API has since dropped; it is not held.
        let held = granted.intersection(&api.scopes);
        let scopes = match &request.scopes {
            None => held,
            Some(requested) => {
                if let Some(missing) = requested.first_missing_from(&held) {
                    return Err(IssueError::ScopeNotHeld(missing.clone()));
                }
                requested.clone()
            }
        };
        let algorithm = api.signing_alg.unwrap_or(view.signing_alg);
        let key = view
            .signing_key(algorithm, now)
            .ok_or(IssueError::NoSigningKey(algorithm))?;
        let lifetime = api.token_lifetime.seconds();
        let claims = claims(&view, &request, &secret_id, &scopes, now, lifetime)?;
        let access_token = key.sign_token(&claims)?;
        Ok(IssuedToken {
            access_token,
            expires_in: lifetime,
            scopes,
        })
    }

    /// RFC 7009: revokes the token if it was issued to the calling app; otherwise (unknown,
    /// malformed, expired, another app's) does nothing and still succeeds.
    pub async fn revoke(&self, request: TokenCallRequest) -> Result<(), IssueError> {
        let now = self.clock.now();
        let Authenticated { view, .. } = self
            .authenticate(
                &request.tenant,
                &request.client_id,
                &request.client_secret,
                request.source,
                now,
            )
            .await?;
        let Some(claims) = verified_claims(&view, &request.token) else {
            return Ok(());
        };
        if claims.client_id != request.client_id.as_str() {
            return Ok(());
        }
        let tenant = self
            .catalog
            .store()
            .find_tenant(&view.name)
            .await
            .map_err(RevocationError::from)?
            .ok_or(IssueError::InvalidClient)?;
        let revocation = Revocation {
            tenant_id: view.id.clone(),
            target: RevocationTarget::Token(claims.jti),
            revoked_at: now,
            expires_at: claims.exp + 60,
        };
        self.revocations.revoke(&tenant, revocation, now).await?;
        Ok(())
    }

    /// RFC 7662: the token's claims if it is active (signed by the tenant, within its
    /// lifetime, not revoked); `None` otherwise.
    pub async fn introspect(
        &self,
        request: TokenCallRequest,
    ) -> Result<Option<AccessTokenClaims>, IssueError> {
        let now = self.clock.now();
        let Authenticated { view, .. } = self
            .authenticate(
                &request.tenant,
                &request.client_id,
                &request.client_secret,
                request.source,
                now,
            )
            .await?;
        let Some(claims) = verified_claims(&view, &request.token) else {
            return Ok(None);
        };
        let facts = TokenFacts {
            tenant_id: &claims.cid,
            jti: &claims.jti,
            sid: &claims.sid,
            client_id: &claims.client_id,
            iat: claims.iat,
        };
        if claims.cid != view.id || self.revocations.is_revoked(&facts, now).await? {
            return Ok(None);
        }
        Ok(Some(claims))
    }

    /// The tenant's issuer URL and the JWK Set it publishes now.
    pub async fn jwks(&self, tenant: &TenantName) -> Result<(String, String), IssueError> {
        let view = self
            .catalog
            .tenant(tenant)
            .await?
            .ok_or_else(|| IssueError::UnknownTenant(tenant.clone()))?;
        Ok((view.issuer.clone(), view.jwks_json(self.clock.now())))
    }

    /// Writes the queued last-use times of secrets. Run periodically and at shutdown.
    pub async fn flush_usage(&self) -> Result<(), tollgate_store::StoreError> {
        let uses = std::mem::take(
            &mut *self
                .usage
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if uses.is_empty() {
            return Ok(());
        }
        self.catalog.store().touch_secrets(&uses).await
    }

    /// Authenticates a client by its secret. Every failure is [`IssueError::InvalidClient`]
    /// (or [`IssueError::RateLimited`] once failures from the client id or the source address
    /// exceed their limit), and costs one HMAC whatever failed.
    async fn authenticate(
        &self,
        tenant: &TenantName,
        client_id: &ClientId,
        secret: &ClientSecret,
        source: Option<std::net::IpAddr>,
        now: UnixTime,
    ) -> Result<Authenticated, IssueError> {
        let view = self.catalog.tenant(tenant).await?;
        let matched = match &view {
            Some(view) => match view.apps.get(client_id) {
                Some(app) => self
                    .match_secret(app, secret, now)
                    .filter(|_| !app.is_blocked),
                None => {
                    self.hasher.verify_dummy(secret);
                    None
                }
            },
            None => {
                self.hasher.verify_dummy(secret);
                None
            }
        };
        match (view, matched) {
            (Some(view), Some(secret_id)) => {
                self.record_use(&view, client_id, &secret_id, now);
                Ok(Authenticated { view, secret_id })
            }
            _ => Err(self.authentication_failed(tenant, client_id, source).await),
        }
    }

    /// Counts a failed authentication against the client id and the source address.
    async fn authentication_failed(
        &self,
        tenant: &TenantName,
        client_id: &ClientId,
        source: Option<std::net::IpAddr>,
    ) -> IssueError {
        let limits = &self.limits;
        let by_client = self
            .revocations
            .state()
            .check_rate(
                &format!("fail:client:{tenant}:{client_id}"),
                limits.failures_per_second,
                limits.failure_burst,
            )
            .await;
        if !by_client.allowed {
            return IssueError::RateLimited(by_client);
        }
        if let Some(source) = source {
            let by_source = self
                .revocations
                .state()
                .check_rate(
                    &format!("fail:ip:{source}"),
                    limits.failures_per_second,
                    limits.failure_burst,
                )
                .await;
            if !by_source.allowed {
                return IssueError::RateLimited(by_source);
            }
        }
        IssueError::InvalidClient
    }

    /// Applies the app's and the tenant's token-request rates.
    async fn enforce_request_rates(
        &self,
        view: &TenantView,
        app: &AppView,
    ) -> Result<(), IssueError> {
        let state = self.revocations.state();
        let app_rate = app
            .rate_limit_per_second
            .map_or(self.limits.app_per_second, |rate| rate as f64);
        let decision = state
            .check_rate(
                &format!("app:{}:{}", view.id, app.client_id),
                app_rate,
                burst(app_rate),
            )
            .await;
        if !decision.allowed {
            return Err(IssueError::RateLimited(decision));
        }
        let tenant_rate = view
            .rate_limit_per_second
            .map_or(self.limits.tenant_per_second, |rate| rate as f64);
        let decision = state
            .check_rate(
                &format!("tenant:{}", view.id),
                tenant_rate,
                burst(tenant_rate),
            )
            .await;
        if !decision.allowed {
            return Err(IssueError::RateLimited(decision));
        }
        Ok(())
    }

    /// The id of the live secret that matches, if any. Every live secret is checked, so the
    /// work does not depend on which one matches.
    fn match_secret(&self, app: &AppView, secret: &ClientSecret, now: UnixTime) -> Option<String> {
        let mut matched = None;
        for candidate in &app.secrets {
            let is_live = candidate
                .expires_at
                .is_none_or(|expires_at| now < expires_at);
            if self.hasher.verify(secret, &candidate.hash) && is_live {
                matched = Some(candidate.id.clone());
            }
        }
        if app.secrets.is_empty() {
            self.hasher.verify_dummy(secret);
        }
        matched
    }

    /// Queues a last-used record, at most one per secret per [`USAGE_RECORD_INTERVAL`].
    fn record_use(&self, view: &TenantView, client_id: &ClientId, secret_id: &str, now: UnixTime) {
        let Some(secret) = view
            .apps
            .get(client_id)
            .and_then(|app| app.secrets.iter().find(|secret| secret.id == secret_id))
        else {
            return;
        };
        let last = secret.last_recorded.load(Ordering::Relaxed);
        if now.saturating_sub(last) < USAGE_RECORD_INTERVAL {
            return;
        }
        if secret
            .last_recorded
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.usage
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((view.id.clone(), secret_id.to_owned(), now));
        }
    }
}

/// Bursts of twice the rate, at least one request.
fn burst(rate_per_second: f64) -> u32 {
    (rate_per_second * 2.0).clamp(1.0, f64::from(u32::MAX)) as u32
}

/// The claims of `token` if the tenant signed it and it is within its lifetime, for any of
/// the tenant's audiences.
fn verified_claims(view: &TenantView, token: &str) -> Option<AccessTokenClaims> {
    // The audience is read unverified only to say which audience to expect; the signature
    // check that follows covers it.
    let audience = unverified_claim(token, "aud")?;
    let expected = Expectations {
        issuer: view.issuer.clone(),
        audience,
        leeway_seconds: 0,
    };
    verify(token, &view.key_set, &expected).ok()
}

fn claims(
    tenant: &TenantView,
    request: &TokenRequest,
    secret_id: &str,
    scopes: &ScopeSet,
    now: i64,
    lifetime: i64,
) -> Result<AccessTokenClaims, KeyError> {
    Ok(AccessTokenClaims {
        iss: tenant.issuer.clone(),
        sub: request.client_id.subject(),
        aud: request.audience.as_str().to_owned(),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        jti: generate_jti()?,
        cid: tenant.id.clone(),
        sid: secret_id.to_owned(),
        scp: scopes.to_strings(),
        scope: scopes.to_delimited(),
        client_id: request.client_id.as_str().to_owned(),
        gty: GRANT_TYPE_CLIENT_CREDENTIALS.to_owned(),
    })
}

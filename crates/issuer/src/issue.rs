//! The grant itself, and the client-authenticated calls about issued tokens: revocation
//! (RFC 7009) and introspection (RFC 7662).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tollgate_audit::{
    AuditAction, AuditError, AuditEvent, AuditWriter, ChangeEvents, CountedBy, DenialCounter,
    Identifier, Outcome,
};

use tollgate_domain::{
    AccessTokenClaims, Algorithm, ApiIdentifier, ClientId, ClientSecret, Clock,
    GRANT_TYPE_CLIENT_CREDENTIALS, IssuedToken, RateLimitState, RequestOrigin, Revocation,
    RevocationTarget, Scope, ScopeSet, SecretId, ServiceError, TenantId, TenantName,
    TokenCallRequest, TokenRequest, UnixTime,
};
use tollgate_keys::{KeyError, SecretHasher, generate_jti};

use tollgate_catalog::{
    AppView, Catalog, CatalogError, RevocationError, Revocations, TenantView,
    USAGE_RECORD_INTERVAL, verify_own_token,
};
use tollgate_state::SharedState;
use tollgate_store::Store;

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
    RateLimited(RateLimitState),
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
    /// The audit record could not be written: nothing is granted unrecorded (fail closed).
    #[error("audit trail unavailable")]
    Audit(#[from] AuditError),
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

/// What an issuer is made of. The binary constructs each part (the catalog and revocations
/// it also hands to management) and gives the issuer exactly these.
pub struct IssuerParts {
    /// The store: the tenant a token revocation is recorded for, and secrets' last uses.
    pub store: Store,
    /// The tenant read model every request reads.
    pub catalog: Arc<Catalog>,
    /// Where revocations are recorded and checked.
    pub revocations: Arc<Revocations>,
    /// The shared state: token-request and failed-authentication rate limits across
    /// instances, and whether change notifications are heard.
    pub shared: SharedState,
    /// Checks client secrets.
    pub hasher: SecretHasher,
    /// Tells time.
    pub clock: Arc<dyn Clock>,
    /// Default rate limits.
    pub limits: RateLimits,
    /// Where every token request is recorded before it is answered.
    pub audit: AuditWriter,
}

/// Issues access tokens from the catalog, and revokes and introspects them.
pub struct Issuer {
    store: Store,
    catalog: Arc<Catalog>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    revocations: Arc<Revocations>,
    /// Rate limits across instances; change notifications (the revocation watch's, in
    /// `watch.rs`) and whether they are heard.
    pub(crate) shared: SharedState,
    limits: RateLimits,
    /// Last uses of secrets waiting to be written: (tenant id, secret id, time).
    usage: Mutex<Vec<(TenantId, SecretId, UnixTime)>>,
    /// Where every token request is recorded before it is answered.
    audit: AuditWriter,
    /// Refusals waiting to be recorded in aggregate (rate limits, failed authentication),
    /// per second and per client, or per source address when no valid client was named.
    denials: DenialCounter,
}

impl Issuer {
    /// An issuer of `parts`.
    pub fn new(parts: IssuerParts) -> Self {
        let IssuerParts {
            store,
            catalog,
            revocations,
            shared,
            hasher,
            clock,
            limits,
            audit,
        } = parts;
        Self {
            store,
            catalog,
            hasher,
            clock,
            revocations,
            shared,
            limits,
            usage: Mutex::new(Vec::new()),
            audit,
            denials: DenialCounter::new(),
        }
    }

    /// Whether this instance hears change notifications (revocations on other instances)
    /// as they happen; while it does not, a watcher must be re-sent the tenant's revocations
    /// from time to time.
    pub fn is_hearing_changes(&self) -> bool {
        self.shared.is_listening()
    }

    /// Runs the client-credentials grant, and records it: a token is returned only once its
    /// audit record has committed ([`IssueError::Audit`] otherwise, and the token is
    /// discarded). Refusals are recorded too; rate-limit refusals and failed client
    /// authentications in aggregate ([`Issuer::flush_denials`]).
    pub async fn issue(&self, request: TokenRequest) -> Result<IssuedToken, IssueError> {
        let now = self.clock.now();
        let view = self.catalog.tenant(&request.tenant).await?;
        let mut secret_id = None;
        match self
            .grant(&request, view.as_ref(), &mut secret_id, now)
            .await
        {
            Ok((issued, jti)) => {
                let Some(view) = view.as_deref() else {
                    return Err(IssueError::InvalidClient);
                };
                let mut event = token_event(
                    view,
                    &request,
                    secret_id.as_deref(),
                    AuditAction::TokenIssued,
                    Outcome::Granted,
                    self.clock.now_ms(),
                );
                event.jti = Identifier::parse(&jti).ok();
                event.set_scopes_granted(issued.scopes.iter().map(|s| s.as_str()));
                self.audit.record(event).await?;
                Ok(issued)
            }
            Err(error) => {
                self.record_refusal(&request, view.as_deref(), secret_id.as_deref(), &error)
                    .await;
                Err(error)
            }
        }
    }

    /// The grant without its record: the token and its `jti`. `secret_id` receives the id of
    /// the secret that authenticated the client, if one did.
    async fn grant(
        &self,
        request: &TokenRequest,
        view: Option<&Arc<TenantView>>,
        secret_id: &mut Option<String>,
        now: UnixTime,
    ) -> Result<(IssuedToken, String), IssueError> {
        let (view, matched) = self
            .authenticate(
                view,
                &request.tenant,
                &request.client_id,
                &request.client_secret,
                request.origin.source,
                now,
            )
            .await?;
        *secret_id = Some(matched);
        let Some(app) = view.apps.get(&request.client_id) else {
            return Err(IssueError::InvalidClient);
        };
        self.enforce_request_rates(view, app).await?;
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
        let secret_id = secret_id.as_deref().unwrap_or_default();
        let claims = claims(view, request, secret_id, &scopes, now, lifetime)?;
        let access_token = key.sign_token(&claims)?;
        Ok((
            IssuedToken {
                access_token,
                expires_in: lifetime,
                scopes,
            },
            claims.jti,
        ))
    }

    /// Records a refused token request. A request naming an unknown tenant is recorded in the
    /// system tenant's trail, the name it asked for as the `resource`.
    ///
    /// Refusals anyone can cause without a credential are counted in aggregates of one
    /// second ([`DenialCounter`]): rate-limit refusals and failed client authentications
    /// (`invalid_client`), counted against the client when it exists, else against the
    /// source address, so that made-up client ids and tenant names cost the trail one
    /// record per source and second. Every `invalid_client` takes this same path, whether
    /// the client exists or not, so the answer's timing does not tell them apart. Other
    /// refusals (audience, grant, scope) come only from authenticated clients, bounded by
    /// their rate limits, and are recorded one by one before the answer; a refusal whose
    /// record fails is still refused (the writer logs the failure).
    async fn record_refusal(
        &self,
        request: &TokenRequest,
        view: Option<&TenantView>,
        secret_id: Option<&str>,
        error: &IssueError,
    ) {
        let system_view;
        let (view, unknown_tenant) = match view {
            Some(view) => (view, false),
            None => {
                system_view = match self.catalog.tenant(&TenantName::system()).await {
                    Ok(Some(system)) => system,
                    // Nothing to record into (the catalog is down, or not bootstrapped).
                    _ => return,
                };
                (&*system_view, true)
            }
        };
        let action = match error {
            IssueError::RateLimited(_) => AuditAction::RateLimited,
            _ => AuditAction::TokenDenied,
        };
        let is_aggregated = matches!(
            error,
            IssueError::RateLimited(_) | IssueError::InvalidClient
        );
        // A client that exists in the tenant the request named; anything else is the
        // sender's choice and is counted by address.
        let counted_by = if !unknown_tenant && view.apps.contains_key(&request.client_id) {
            CountedBy::Client
        } else {
            CountedBy::Source
        };
        let mut event = token_event(
            view,
            request,
            secret_id,
            action,
            Outcome::Denied,
            self.clock.now_ms(),
        );
        event.error = Some(error.code());
        if unknown_tenant {
            event.resource = Identifier::parse(&format!("tenant/{}", request.tenant)).ok();
        }
        if is_aggregated {
            self.denials.add(event, counted_by);
        } else if self.audit.record(event).await.is_err() {
            tracing::warn!(tenant = %request.tenant, "token request refused; its audit record was not written");
        }
    }

    /// Records the refusals aggregated so far: those of seconds already over, or all of them
    /// (`is_final`, at shutdown). Run every second.
    pub async fn flush_denials(&self, is_final: bool) -> Result<usize, AuditError> {
        let due = if is_final {
            self.denials.take_all()
        } else {
            self.denials.take_due(self.clock.now_ms())
        };
        let count = due.len();
        self.audit.record_all(due).await?;
        Ok(count)
    }

    /// The audit writer (its statistics; shutdown).
    pub fn audit(&self) -> &AuditWriter {
        &self.audit
    }

    /// RFC 7009: revokes the token if it was issued to the calling app; otherwise (unknown,
    /// malformed, expired, another app's) does nothing and still succeeds.
    pub async fn revoke(&self, request: TokenCallRequest) -> Result<(), IssueError> {
        let now = self.clock.now();
        let view = self
            .authenticated_view(
                &request.tenant,
                &request.client_id,
                &request.client_secret,
                &request.origin,
                now,
            )
            .await?;
        let Some(claims) = verified_claims(&view, &request.token, now) else {
            return Ok(());
        };
        if claims.client_id != request.client_id.as_str() {
            return Ok(());
        }
        let tenant = self
            .store
            .find_tenant(&view.name)
            .await
            .map_err(RevocationError::from)?
            .ok_or(IssueError::InvalidClient)?;
        let mut event = AuditEvent::new(
            view.id.clone(),
            view.name.clone(),
            self.clock.now_ms(),
            AuditAction::TokenRevoked,
            Outcome::Ok,
        );
        event.actor = Identifier::try_from(&request.client_id).ok();
        event.client_id = event.actor.clone();
        event.secret_id = Identifier::parse(&claims.sid).ok();
        event.jti = Identifier::parse(&claims.jti).ok();
        event.audience = Identifier::parse(&claims.aud).ok();
        set_origin(&mut event, &request.origin);
        let revocation = Revocation {
            tenant_id: view.id.clone(),
            target: RevocationTarget::Token(claims.jti),
            revoked_at: now,
            expires_at: claims.exp + 60,
        };
        self.revocations
            .revoke(&tenant.id, revocation, now, &ChangeEvents::one(event))
            .await?;
        Ok(())
    }

    /// RFC 7662: the token's claims if it is active (signed by the tenant, within its
    /// lifetime with no leeway, not revoked; for an admin token, also held by an app that
    /// exists, is not blocked and still has the secret that obtained it) **and** the caller
    /// is entitled to see it; `None` otherwise, so that "not yours to see" and "inactive" are
    /// one answer. Entitled (see [`may_see`]): the app the token was issued to, and, unless
    /// the token is an admin token, any app holding a grant (with or without scopes) on the
    /// token's audience, such as the resource server's own app.
    pub async fn introspect(
        &self,
        request: TokenCallRequest,
    ) -> Result<Option<AccessTokenClaims>, IssueError> {
        let now = self.clock.now();
        let view = self
            .authenticated_view(
                &request.tenant,
                &request.client_id,
                &request.client_secret,
                &request.origin,
                now,
            )
            .await?;
        // Any of the tenant's audiences; an admin token also needs its live app.
        let Ok(active) =
            verify_own_token(&view, &self.revocations, &request.token, None, now).await?
        else {
            return Ok(None);
        };
        let is_admin_token = active.admin_app.is_some();
        if !may_see(&view, &request.client_id, &active.claims, is_admin_token) {
            return Ok(None);
        }
        Ok(Some(active.claims))
    }

    /// Authenticates an app of `tenant` for a call that needs no more than being one (such
    /// as following the tenant's revocations); returns the tenant's id.
    pub async fn authenticate_app(
        &self,
        tenant: &TenantName,
        client_id: &ClientId,
        secret: &ClientSecret,
        origin: &RequestOrigin,
    ) -> Result<TenantId, IssueError> {
        let view = self
            .authenticated_view(tenant, client_id, secret, origin, self.clock.now())
            .await?;
        Ok(view.id.clone())
    }

    /// The tenant's view once the client has authenticated: for the calls that need no more
    /// than being an app of the tenant (revocation, introspection, watching revocations).
    async fn authenticated_view(
        &self,
        tenant: &TenantName,
        client_id: &ClientId,
        secret: &ClientSecret,
        origin: &RequestOrigin,
        now: UnixTime,
    ) -> Result<Arc<TenantView>, IssueError> {
        let view = self.catalog.tenant(tenant).await?;
        self.authenticate(view.as_ref(), tenant, client_id, secret, origin.source, now)
            .await?;
        // Authentication succeeded, so the tenant exists.
        view.ok_or(IssueError::InvalidClient)
    }

    /// The tenant's revocations in force now.
    pub async fn live_revocations(&self, tenant: &TenantId) -> Result<Vec<Revocation>, IssueError> {
        Ok(self
            .revocations
            .live_of_tenant(tenant, self.clock.now())
            .await?)
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
        self.store.touch_secrets(&uses).await
    }

    /// Authenticates a client by its secret. Every failure is [`IssueError::InvalidClient`]
    /// (or [`IssueError::RateLimited`] once failures from the client id or the source address
    /// exceed their limit), and costs one HMAC whatever failed.
    async fn authenticate<'v>(
        &self,
        view: Option<&'v Arc<TenantView>>,
        tenant: &TenantName,
        client_id: &ClientId,
        secret: &ClientSecret,
        source: Option<std::net::IpAddr>,
        now: UnixTime,
    ) -> Result<(&'v TenantView, String), IssueError> {
        let matched = match view {
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
                self.record_use(view, client_id, &secret_id, now);
                Ok((view, secret_id))
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
            .shared
            .check_rate(
                &format!("fail:client:{tenant}:{client_id}"),
                limits.failures_per_second,
                limits.failure_burst,
            )
            .await;
        if !by_client.allowed {
            return IssueError::rate_limited(&by_client);
        }
        if let Some(source) = source {
            let by_source = self
                .shared
                .check_rate(
                    &format!("fail:ip:{source}"),
                    limits.failures_per_second,
                    limits.failure_burst,
                )
                .await;
            if !by_source.allowed {
                return IssueError::rate_limited(&by_source);
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
        let state = &self.shared;
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
            return Err(IssueError::rate_limited(&decision));
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
            return Err(IssueError::rate_limited(&decision));
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
                matched = Some(candidate.id.as_str().to_owned());
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
                .push((view.id.clone(), SecretId::new(secret_id), now));
        }
    }
}

/// A token request's event, before its outcome's details: the tenant, the client as actor,
/// what it asked for, and where the request came from, at `time_ms`. Values that could not be
/// recorded (say, an audience holding something that looks like a secret) are left out.
fn token_event(
    view: &TenantView,
    request: &TokenRequest,
    secret_id: Option<&str>,
    action: AuditAction,
    result: Outcome,
    time_ms: i64,
) -> AuditEvent {
    let mut event = AuditEvent::new(view.id.clone(), view.name.clone(), time_ms, action, result);
    event.actor = Identifier::try_from(&request.client_id).ok();
    event.client_id = event.actor.clone();
    event.secret_id = secret_id.and_then(|id| Identifier::parse(id).ok());
    event.audience = Identifier::parse(request.audience.as_str()).ok();
    if let Some(scopes) = &request.scopes {
        // A few of them and their number: the record's size does not grow with the request.
        event.set_scopes_requested(scopes.iter().map(|s| s.as_str()));
    }
    set_origin(&mut event, &request.origin);
    event
}

/// Copies the request's address, transport and trace id into `event`.
fn set_origin(event: &mut AuditEvent, origin: &RequestOrigin) {
    event.source = origin.source;
    event.transport = Some(origin.transport);
    event.trace_id = origin
        .trace_id
        .as_ref()
        .and_then(|trace_id| Identifier::parse(trace_id.as_str()).ok());
}

/// Bursts of twice the rate, at least one request.
fn burst(rate_per_second: f64) -> u32 {
    (rate_per_second * 2.0).clamp(1.0, f64::from(u32::MAX)) as u32
}

/// The claims of `token` if the tenant signed it and it is within its lifetime at `now`, for
/// any of the tenant's audiences.
fn verified_claims(view: &TenantView, token: &str, now: UnixTime) -> Option<AccessTokenClaims> {
    view.verify_own(token, None, now).ok()
}

/// Whether the app `caller` may introspect the token `claims` describes: it is the app the
/// token was issued to; or the token is not an admin token and the caller holds a grant on
/// its audience (a resource server's own app is given one, without scopes, on its API).
/// An admin token (audience: the tenant's Management API) is shown only to its own app: a
/// grant on the Management API is a delegation, not a licence to read other admins' tokens.
fn may_see(
    view: &TenantView,
    caller: &ClientId,
    claims: &AccessTokenClaims,
    is_admin_token: bool,
) -> bool {
    if claims.client_id == caller.as_str() {
        return true;
    }
    if is_admin_token {
        return false;
    }
    view.apps
        .get(caller)
        .is_some_and(|app| view.granted_scopes(app, &claims.aud).is_some())
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
        cid: tenant.id.as_str().to_owned(),
        sid: secret_id.to_owned(),
        scp: scopes.to_strings(),
        scope: scopes.to_delimited(),
        client_id: request.client_id.as_str().to_owned(),
        gty: GRANT_TYPE_CLIENT_CREDENTIALS.to_owned(),
    })
}

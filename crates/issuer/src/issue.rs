//! The grant itself.

use std::sync::Arc;

use tollgate_domain::{
    AccessTokenClaims, Algorithm, ApiIdentifier, Clock, ErrorCode, GRANT_TYPE_CLIENT_CREDENTIALS,
    IssuedToken, Scope, TenantName, TokenRequest,
};
use tollgate_keys::{KeyError, SecretHasher, generate_jti};

use crate::catalog::{AppView, Catalog, CatalogError, TenantView};

/// Why a token was not issued. Messages are safe to return to the client.
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
}

impl IssueError {
    /// The caller-visible outcome.
    pub fn code(&self) -> ErrorCode {
        match self {
            IssueError::InvalidClient => ErrorCode::InvalidClient,
            IssueError::UnknownAudience(_) => ErrorCode::InvalidTarget,
            IssueError::NoGrant(_) => ErrorCode::UnauthorizedClient,
            IssueError::ScopeNotHeld(_) => ErrorCode::InvalidScope,
            IssueError::UnknownTenant(_) => ErrorCode::NotFound,
            IssueError::NoSigningKey(_) | IssueError::Catalog(_) | IssueError::Crypto(_) => {
                ErrorCode::Unavailable
            }
        }
    }
}

/// Issues access tokens from the catalog.
pub struct Issuer {
    catalog: Arc<Catalog>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
}

impl Issuer {
    /// An issuer reading `catalog`, checking secrets with `hasher`, telling time by `clock`.
    pub fn new(catalog: Arc<Catalog>, hasher: SecretHasher, clock: Arc<dyn Clock>) -> Self {
        Self {
            catalog,
            hasher,
            clock,
        }
    }

    /// The catalog this issuer reads.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Runs the client-credentials grant.
    pub async fn issue(&self, request: TokenRequest) -> Result<IssuedToken, IssueError> {
        let tenant = self.catalog.tenant(&request.tenant).await?;
        let now = self.clock.now();
        let Some(tenant) = tenant else {
            self.hasher.verify_dummy(&request.client_secret);
            return Err(IssueError::InvalidClient);
        };
        let Some(app) = tenant.apps.get(&request.client_id) else {
            self.hasher.verify_dummy(&request.client_secret);
            return Err(IssueError::InvalidClient);
        };
        let secret_id = self
            .authenticate(app, &request, now)
            .ok_or(IssueError::InvalidClient)?;
        if app.is_blocked {
            return Err(IssueError::InvalidClient);
        }
        let api = tenant
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
        let algorithm = api.signing_alg.unwrap_or(tenant.signing_alg);
        let key = tenant
            .signing_keys
            .get(&algorithm)
            .ok_or(IssueError::NoSigningKey(algorithm))?;
        let lifetime = api.token_lifetime.seconds();
        let claims = claims(&tenant, &request, secret_id, &scopes, now, lifetime)?;
        let access_token = key.sign_token(&claims)?;
        Ok(IssuedToken {
            access_token,
            expires_in: lifetime,
            scopes,
        })
    }

    /// The tenant's issuer URL and JWK Set.
    pub async fn jwks(&self, tenant: &TenantName) -> Result<(String, String), IssueError> {
        let view = self
            .catalog
            .tenant(tenant)
            .await?
            .ok_or_else(|| IssueError::UnknownTenant(tenant.clone()))?;
        Ok((view.issuer.clone(), view.jwks_json.clone()))
    }

    /// The id of the live secret that matches, if any. Every live secret is checked, so the
    /// work does not depend on which one matches.
    fn authenticate<'a>(
        &self,
        app: &'a AppView,
        request: &TokenRequest,
        now: i64,
    ) -> Option<&'a str> {
        let mut matched = None;
        for secret in &app.secrets {
            let is_live = secret.expires_at.is_none_or(|expires_at| now < expires_at);
            if self.hasher.verify(&request.client_secret, &secret.hash) && is_live {
                matched = Some(secret.id.as_str());
            }
        }
        if app.secrets.is_empty() {
            self.hasher.verify_dummy(&request.client_secret);
        }
        matched
    }
}

fn claims(
    tenant: &TenantView,
    request: &TokenRequest,
    secret_id: &str,
    scopes: &tollgate_domain::ScopeSet,
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

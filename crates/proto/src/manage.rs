//! Conversions of the management services' messages (`TenantService`, `ApiService`,
//! `AppService`, `KeyService`, `RevocationService`): requests into management's inputs
//! (parsing failures name the field and become INVALID_ARGUMENT at the adapter), and
//! management's views into responses. The wire's conventions live here: 0 or empty means
//! the server's default, an absent optional field leaves a value as it is.

use tollgate_domain::{
    AdminCredentials, Algorithm, ApiIdentifier, ApiInfo, ApiUpdate, AppInfo, AppUpdate, ClientId,
    ClientSecret, InvalidValue, KeyInfo, NewApi, NewApp, NewTenantInput, Page, PageRequest,
    RevocationTarget, RotatedSecret, Scope, ScopeDefinition, ScopeSet, SecretInfo, TenantInfo,
    TenantName, TenantUpdate, TokenLifetime,
};

use crate::convert::timestamp;
use crate::v1;

/// The most token requests per second a tenant or an app may be given (`rate_limit_per_second`
/// of `UpdateTenantRequest` and `UpdateAppRequest`).
pub const MAX_RATE_LIMIT: i64 = 1_000_000;

/// Where a listing starts.
pub fn page(page_size: i32, page_token: String) -> PageRequest {
    PageRequest {
        page_size,
        page_token,
    }
}

fn algorithm(value: &str) -> Result<Option<Algorithm>, InvalidValue> {
    match value {
        "" => Ok(None),
        other => Algorithm::parse(other).map(Some),
    }
}

fn lifetime(seconds: i64) -> Result<TokenLifetime, InvalidValue> {
    match seconds {
        0 => Ok(TokenLifetime::DEFAULT),
        other => TokenLifetime::from_seconds(other),
    }
}

fn scope_definitions(
    scopes: Vec<v1::ScopeDefinition>,
) -> Result<Vec<ScopeDefinition>, InvalidValue> {
    scopes
        .into_iter()
        .map(|scope| {
            Ok(ScopeDefinition {
                value: Scope::parse(&scope.value).map_err(|error| error.for_field("scopes"))?,
                description: scope.description,
            })
        })
        .collect()
}

fn grants(grants: Vec<v1::Grant>) -> Result<Vec<(ApiIdentifier, ScopeSet)>, InvalidValue> {
    grants
        .into_iter()
        .map(|grant| {
            let audience =
                ApiIdentifier::parse(&grant.audience).map_err(|error| error.for_field("grants"))?;
            let scopes = ScopeSet::parse_all(grant.scopes.iter().map(String::as_str))
                .map_err(|error| error.for_field("grants"))?;
            Ok((audience, scopes))
        })
        .collect()
}

/// A rate limit on the wire (0 = server default) as management takes it (`None` = server
/// default); at most [`MAX_RATE_LIMIT`].
pub fn rate_limit(value: i64) -> Result<Option<i64>, InvalidValue> {
    match value {
        0 => Ok(None),
        rate if (1..=MAX_RATE_LIMIT).contains(&rate) => Ok(Some(rate)),
        _ => Err(InvalidValue::new(
            "rate_limit_per_second",
            "must be between 0 (server default) and 1000000",
        )),
    }
}

/// A new tenant; an empty algorithm is the default one.
pub fn new_tenant(request: v1::CreateTenantRequest) -> Result<NewTenantInput, InvalidValue> {
    Ok(NewTenantInput {
        name: TenantName::parse(&request.name).map_err(|error| error.for_field("name"))?,
        display_name: request.display_name,
        signing_alg: algorithm(&request.signing_alg)?.unwrap_or_default(),
    })
}

/// The tenant to change and how.
pub fn tenant_update(
    request: v1::UpdateTenantRequest,
) -> Result<(TenantName, TenantUpdate), InvalidValue> {
    let name = TenantName::parse(&request.name).map_err(|error| error.for_field("name"))?;
    let signing_alg = match request.signing_alg.as_deref() {
        None => None,
        Some(value) => Some(Algorithm::parse(value)?),
    };
    Ok((
        name,
        TenantUpdate {
            display_name: request.display_name,
            signing_alg,
            rate_limit_per_second: request.rate_limit_per_second.map(rate_limit).transpose()?,
        },
    ))
}

/// The tenant of a new API and the API; a lifetime of 0 is the default one.
pub fn new_api(request: v1::CreateApiRequest) -> Result<(TenantName, NewApi), InvalidValue> {
    Ok((
        TenantName::parse(&request.tenant)?,
        NewApi {
            name: request.name,
            identifier: ApiIdentifier::parse(&request.identifier)?,
            scopes: scope_definitions(request.scopes)?,
            token_lifetime: lifetime(request.token_lifetime_seconds)?,
            signing_alg: algorithm(&request.signing_alg)?,
        },
    ))
}

/// The API to change and how.
pub fn api_update(
    request: v1::UpdateApiRequest,
) -> Result<(TenantName, ApiIdentifier, ApiUpdate), InvalidValue> {
    Ok((
        TenantName::parse(&request.tenant)?,
        ApiIdentifier::parse(&request.identifier)?,
        ApiUpdate {
            name: request.name,
            scopes: request
                .scopes
                .map(|list| scope_definitions(list.scopes))
                .transpose()?,
            token_lifetime: request
                .token_lifetime_seconds
                .map(TokenLifetime::from_seconds)
                .transpose()?,
            signing_alg: request.signing_alg.as_deref().map(algorithm).transpose()?,
        },
    ))
}

/// The tenant of a new app and the app.
pub fn new_app(request: v1::CreateAppRequest) -> Result<(TenantName, NewApp), InvalidValue> {
    Ok((
        TenantName::parse(&request.tenant)?,
        NewApp {
            name: request.name,
            description: request.description,
            grants: grants(request.grants)?,
        },
    ))
}

/// The app to change and how.
pub fn app_update(
    request: v1::UpdateAppRequest,
) -> Result<(TenantName, ClientId, AppUpdate), InvalidValue> {
    Ok((
        TenantName::parse(&request.tenant)?,
        ClientId::parse(&request.client_id)?,
        AppUpdate {
            name: request.name,
            description: request.description,
            grants: request.grants.map(|list| grants(list.grants)).transpose()?,
            blocked: request.blocked,
            revoke_tokens: request.revoke_tokens,
            rate_limit_per_second: request.rate_limit_per_second.map(rate_limit).transpose()?,
        },
    ))
}

/// What a `RevokeTokens` call revokes: exactly one non-empty target.
pub fn revocation_target(
    target: Option<v1::revoke_tokens_request::Target>,
) -> Result<RevocationTarget, InvalidValue> {
    use v1::revoke_tokens_request::Target;
    let non_empty = |field: &'static str, value: String| {
        if value.is_empty() {
            Err(InvalidValue::new(field, "must not be empty"))
        } else {
            Ok(value)
        }
    };
    match target {
        Some(Target::Jti(jti)) => Ok(RevocationTarget::Token(non_empty("jti", jti)?)),
        Some(Target::SecretId(sid)) => Ok(RevocationTarget::Secret(non_empty("secret_id", sid)?)),
        Some(Target::ClientId(client_id)) => Ok(RevocationTarget::App(
            ClientId::parse(&client_id)?.to_string(),
        )),
        Some(Target::All(true)) => Ok(RevocationTarget::Tenant),
        Some(Target::All(false)) | None => Err(InvalidValue::new(
            "target",
            "set one of jti, secret_id, client_id or all",
        )),
    }
}

impl From<TenantInfo> for v1::Tenant {
    fn from(tenant: TenantInfo) -> Self {
        Self {
            issuer: tenant.issuer,
            name: tenant.name.to_string(),
            display_name: tenant.display_name,
            signing_alg: tenant.signing_alg.to_string(),
            id: tenant.id.into_string(),
            create_time: timestamp(tenant.created_at),
            update_time: timestamp(tenant.updated_at),
            rate_limit_per_second: tenant.rate_limit_per_second.unwrap_or(0),
        }
    }
}

impl From<AdminCredentials> for v1::AdminCredentials {
    fn from(credentials: AdminCredentials) -> Self {
        Self {
            tenant: credentials.tenant.to_string(),
            client_id: credentials.client_id.to_string(),
            client_secret: credentials.client_secret.expose().to_owned(),
            audience: credentials.audience.to_string(),
        }
    }
}

impl From<(TenantInfo, AdminCredentials)> for v1::CreateTenantResponse {
    fn from((tenant, admin): (TenantInfo, AdminCredentials)) -> Self {
        Self {
            tenant: Some(tenant.into()),
            admin: Some(admin.into()),
        }
    }
}

impl From<Page<TenantInfo>> for v1::ListTenantsResponse {
    fn from(page: Page<TenantInfo>) -> Self {
        Self {
            tenants: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}

impl From<ApiInfo> for v1::Api {
    fn from(api: ApiInfo) -> Self {
        Self {
            tenant: api.tenant.to_string(),
            name: api.name,
            identifier: api.identifier.to_string(),
            scopes: api
                .scopes
                .into_iter()
                .map(|scope| v1::ScopeDefinition {
                    value: scope.value.into(),
                    description: scope.description,
                })
                .collect(),
            token_lifetime_seconds: api.token_lifetime.seconds(),
            signing_alg: api
                .signing_alg
                .map(|alg| alg.to_string())
                .unwrap_or_default(),
            is_system: api.is_system,
            create_time: timestamp(api.created_at),
            update_time: timestamp(api.updated_at),
        }
    }
}

impl From<Page<ApiInfo>> for v1::ListApisResponse {
    fn from(page: Page<ApiInfo>) -> Self {
        Self {
            apis: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}

impl From<AppInfo> for v1::App {
    fn from(app: AppInfo) -> Self {
        Self {
            tenant: app.tenant.to_string(),
            client_id: app.client_id.to_string(),
            name: app.name,
            description: app.description,
            grants: app
                .grants
                .into_iter()
                .map(|grant| v1::Grant {
                    audience: grant.audience.to_string(),
                    scopes: grant.scopes.to_strings(),
                })
                .collect(),
            blocked: app.is_blocked,
            is_system: app.is_system,
            create_time: timestamp(app.created_at),
            update_time: timestamp(app.updated_at),
            rate_limit_per_second: app.rate_limit_per_second.unwrap_or(0),
        }
    }
}

impl From<(AppInfo, ClientSecret)> for v1::CreateAppResponse {
    fn from((app, secret): (AppInfo, ClientSecret)) -> Self {
        Self {
            app: Some(app.into()),
            client_secret: secret.expose().to_owned(),
        }
    }
}

impl From<Page<AppInfo>> for v1::ListAppsResponse {
    fn from(page: Page<AppInfo>) -> Self {
        Self {
            apps: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}

impl From<SecretInfo> for v1::ClientSecretInfo {
    fn from(secret: SecretInfo) -> Self {
        Self {
            id: secret.id.into_string(),
            create_time: timestamp(secret.created_at),
            expire_time: secret.expires_at.and_then(timestamp),
            last_used_time: secret.last_used_at.and_then(timestamp),
            active: secret.is_active,
        }
    }
}

impl From<RotatedSecret> for v1::RotateSecretResponse {
    fn from(rotated: RotatedSecret) -> Self {
        Self {
            secret: Some(rotated.info.into()),
            client_secret: rotated.secret.expose().to_owned(),
            secrets: rotated.secrets.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Vec<SecretInfo>> for v1::ListSecretsResponse {
    fn from(secrets: Vec<SecretInfo>) -> Self {
        Self {
            secrets: secrets.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<KeyInfo> for v1::SigningKeyInfo {
    fn from(key: KeyInfo) -> Self {
        Self {
            kid: key.kid.into_string(),
            alg: key.alg.to_string(),
            state: key.state.as_str().to_owned(),
            create_time: timestamp(key.created_at),
            activate_time: timestamp(key.activate_at),
            retire_time: key.retire_at.and_then(timestamp),
            remove_time: key.remove_at.and_then(timestamp),
        }
    }
}

impl From<Vec<KeyInfo>> for v1::RotateSigningKeyResponse {
    fn from(keys: Vec<KeyInfo>) -> Self {
        Self {
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Vec<KeyInfo>> for v1::ListKeysResponse {
    fn from(keys: Vec<KeyInfo>) -> Self {
        Self {
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}

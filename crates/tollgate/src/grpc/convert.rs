//! Wire ⇄ management conversions. Parsing failures name the field.

use tollgate_domain::{
    Algorithm, ApiIdentifier, InvalidValue, IssuerTemplate, Scope, ScopeDefinition, ScopeSet,
    TenantName, TokenLifetime,
};
use tollgate_management::{
    AdminCredentials, ApiUpdate, AppUpdate, NewApi, NewApp, NewTenantInput, PageRequest,
};
use tollgate_proto::convert::timestamp;
use tollgate_proto::v1;
use tollgate_store::{ApiRecord, AppWithGrants, TenantRecord};

pub fn tenant_name(value: &str) -> Result<TenantName, InvalidValue> {
    TenantName::parse(value)
}

pub fn identifier(value: &str) -> Result<ApiIdentifier, InvalidValue> {
    ApiIdentifier::parse(value)
}

pub fn client_id(value: &str) -> Result<tollgate_domain::ClientId, InvalidValue> {
    tollgate_domain::ClientId::parse(value)
}

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

pub fn new_tenant(request: v1::CreateTenantRequest) -> Result<NewTenantInput, InvalidValue> {
    Ok(NewTenantInput {
        name: TenantName::parse(&request.name).map_err(|error| error.for_field("name"))?,
        display_name: request.display_name,
        signing_alg: algorithm(&request.signing_alg)?.unwrap_or_default(),
    })
}

pub fn tenant_update(
    request: v1::UpdateTenantRequest,
) -> Result<(TenantName, tollgate_management::TenantUpdate), InvalidValue> {
    let name = TenantName::parse(&request.name).map_err(|error| error.for_field("name"))?;
    let signing_alg = match request.signing_alg.as_deref() {
        None => None,
        Some(value) => Some(Algorithm::parse(value)?),
    };
    Ok((
        name,
        tollgate_management::TenantUpdate {
            display_name: request.display_name,
            signing_alg,
            rate_limit_per_second: request.rate_limit_per_second.map(rate_limit).transpose()?,
        },
    ))
}

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

pub fn app_update(
    request: v1::UpdateAppRequest,
) -> Result<(TenantName, tollgate_domain::ClientId, AppUpdate), InvalidValue> {
    Ok((
        TenantName::parse(&request.tenant)?,
        tollgate_domain::ClientId::parse(&request.client_id)?,
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

pub fn tenant(record: TenantRecord, template: &IssuerTemplate) -> v1::Tenant {
    v1::Tenant {
        issuer: template.issuer(&record.name),
        name: record.name.to_string(),
        display_name: record.display_name,
        signing_alg: record.signing_alg.to_string(),
        id: record.id,
        create_time: timestamp(record.created_at),
        update_time: timestamp(record.updated_at),
        rate_limit_per_second: record.rate_limit_per_second.unwrap_or(0),
    }
}

pub fn admin_credentials(credentials: AdminCredentials) -> v1::AdminCredentials {
    v1::AdminCredentials {
        tenant: credentials.tenant.to_string(),
        client_id: credentials.client_id.to_string(),
        client_secret: credentials.client_secret.expose().to_owned(),
        audience: credentials.audience.to_string(),
    }
}

pub fn api(tenant: &TenantName, record: ApiRecord) -> v1::Api {
    v1::Api {
        tenant: tenant.to_string(),
        name: record.name,
        identifier: record.identifier.to_string(),
        scopes: record
            .scopes
            .into_iter()
            .map(|scope| v1::ScopeDefinition {
                value: scope.value.into(),
                description: scope.description,
            })
            .collect(),
        token_lifetime_seconds: record.token_lifetime.seconds(),
        signing_alg: record
            .signing_alg
            .map(|alg| alg.to_string())
            .unwrap_or_default(),
        is_system: record.is_system,
        create_time: timestamp(record.created_at),
        update_time: timestamp(record.updated_at),
    }
}

pub fn app(tenant: &TenantName, record: AppWithGrants) -> v1::App {
    let AppWithGrants { app, grants } = record;
    v1::App {
        tenant: tenant.to_string(),
        client_id: app.client_id.to_string(),
        name: app.name,
        description: app.description,
        grants: grants
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

/// A client-authenticated call about a token (revocation, introspection).
pub fn token_call(
    tenant: &str,
    client_id: &str,
    client_secret: String,
    token: String,
    origin: tollgate_domain::RequestOrigin,
) -> Result<tollgate_domain::TokenCallRequest, InvalidValue> {
    if token.is_empty() {
        return Err(InvalidValue::new("token", "must not be empty"));
    }
    Ok(tollgate_domain::TokenCallRequest {
        tenant: TenantName::parse(tenant)?,
        client_id: tollgate_domain::ClientId::parse(client_id)?,
        client_secret: tollgate_domain::ClientSecret::new(client_secret),
        token,
        origin,
    })
}

/// A rate limit on the wire (0 = server default) as stored (`None` = server default).
pub fn rate_limit(value: i64) -> Result<Option<i64>, InvalidValue> {
    match value {
        0 => Ok(None),
        rate if (1..=1_000_000).contains(&rate) => Ok(Some(rate)),
        _ => Err(InvalidValue::new(
            "rate_limit_per_second",
            "must be between 0 (server default) and 1000000",
        )),
    }
}

pub fn secret_info(secret: &tollgate_management::SecretView) -> v1::ClientSecretInfo {
    let record = &secret.record;
    v1::ClientSecretInfo {
        id: record.id.clone(),
        create_time: timestamp(record.created_at),
        expire_time: record.expires_at.and_then(timestamp),
        last_used_time: record.last_used_at.and_then(timestamp),
        active: secret.is_active,
    }
}

pub fn key_info(key: &tollgate_management::KeyView) -> v1::SigningKeyInfo {
    let record = &key.record;
    v1::SigningKeyInfo {
        kid: record.kid.clone(),
        alg: record.alg.to_string(),
        state: key.state.as_str().to_owned(),
        create_time: timestamp(record.created_at),
        activate_time: timestamp(record.activate_at),
        retire_time: record.retire_at.and_then(timestamp),
        remove_time: record.remove_at.and_then(timestamp),
    }
}

pub fn revocation_target(
    target: Option<v1::revoke_tokens_request::Target>,
) -> Result<tollgate_domain::RevocationTarget, InvalidValue> {
    use tollgate_domain::RevocationTarget;
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
            tollgate_domain::ClientId::parse(&client_id)?.to_string(),
        )),
        Some(Target::All(true)) => Ok(RevocationTarget::Tenant),
        Some(Target::All(false)) | None => Err(InvalidValue::new(
            "target",
            "set one of jti, secret_id, client_id or all",
        )),
    }
}

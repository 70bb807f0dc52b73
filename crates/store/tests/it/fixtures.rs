//! Builders for the records the cases write. Ids are unique per process, as the store
//! expects callers to make them.

use std::sync::atomic::{AtomicU64, Ordering};

use tollgate_domain::{
    Algorithm, ApiIdentifier, ClientId, InvalidValue, Revocation, RevocationTarget, Scope,
    ScopeDefinition, ScopeSet, TenantName, TokenLifetime, UnixTime,
};
use tollgate_store::{
    ApiRecord, AppRecord, GrantRecord, NewApp, NewTenant, SecretRecord, SigningKeyRecord,
    TenantRecord,
};

/// `prefix_<n>`, unique within the test process.
pub fn id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn tenant(name: &str) -> Result<TenantRecord, InvalidValue> {
    Ok(TenantRecord {
        id: id("ten").into(),
        name: TenantName::parse(name)?,
        display_name: format!("Tenant {name}"),
        signing_alg: Algorithm::Es256,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        keys_rotated_at: None,
        rate_limit_per_second: None,
    })
}

/// A tenant with nothing else.
pub fn new_tenant(tenant: &TenantRecord) -> NewTenant {
    NewTenant {
        tenant: tenant.clone(),
        keys: Vec::new(),
        apis: Vec::new(),
        apps: Vec::new(),
    }
}

pub fn api(identifier: &str, scopes: &[&str]) -> Result<ApiRecord, InvalidValue> {
    Ok(ApiRecord {
        id: id("api").into(),
        name: format!("API {identifier}"),
        identifier: ApiIdentifier::parse(identifier)?,
        scopes: scopes
            .iter()
            .map(|scope| {
                Ok(ScopeDefinition {
                    value: Scope::parse(scope)?,
                    description: format!("Allows {scope}"),
                })
            })
            .collect::<Result<_, InvalidValue>>()?,
        token_lifetime: TokenLifetime::from_seconds(900)?,
        signing_alg: None,
        is_system: false,
        created_at: 1_700_000_100,
        updated_at: 1_700_000_100,
    })
}

pub fn app(client_id: &str) -> Result<AppRecord, InvalidValue> {
    Ok(AppRecord {
        id: id("app").into(),
        client_id: ClientId::parse(client_id)?,
        name: format!("App {client_id}"),
        description: "Does things".to_owned(),
        is_blocked: false,
        is_system: false,
        created_at: 1_700_000_200,
        updated_at: 1_700_000_200,
        rate_limit_per_second: None,
    })
}

pub fn secret(app: &AppRecord) -> SecretRecord {
    SecretRecord {
        id: id("sid").into(),
        app_id: app.id.clone(),
        hash: format!("hash-of-{}", app.client_id),
        created_at: 1_700_000_300,
        expires_at: Some(1_800_000_000),
        last_used_at: None,
    }
}

pub fn grant(api: &ApiRecord, scopes: &[&str]) -> Result<GrantRecord, InvalidValue> {
    Ok(GrantRecord {
        api_id: api.id.clone(),
        audience: api.identifier.clone(),
        scopes: ScopeSet::parse_all(scopes.iter().copied())?,
    })
}

pub fn key(alg: Algorithm, created_at: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: id("kid").into(),
        alg,
        public_jwk: format!(r#"{{"kty":"EC","alg":"{alg}"}}"#),
        // Every byte value, to prove the binary column is byte-exact on both backends.
        private_key_sealed: (0..=255u8).rev().chain(0..=255u8).collect(),
        created_at,
        activate_at: created_at,
        retire_at: None,
        remove_at: None,
    }
}

pub fn revocation(
    tenant_id: &str,
    target: RevocationTarget,
    revoked_at: UnixTime,
    expires_at: UnixTime,
) -> Revocation {
    Revocation {
        tenant_id: tenant_id.into(),
        target,
        revoked_at,
        expires_at,
    }
}

/// A tenant with a key, two APIs and two apps holding grants: what a populated tenant
/// looks like.
pub struct Populated {
    pub new: NewTenant,
    pub orders: ApiRecord,
    pub billing: ApiRecord,
}

pub fn populated(name: &str) -> Result<Populated, InvalidValue> {
    let tenant = tenant(name)?;
    let orders = api(
        &format!("https://{name}.example/orders"),
        &["read", "write"],
    )?;
    let billing = api(&format!("https://{name}.example/billing"), &["invoice"])?;
    let first = app(&format!("{name}-first"))?;
    let second = app(&format!("{name}-second"))?;
    let new = NewTenant {
        keys: vec![key(Algorithm::Es256, 10), key(Algorithm::Rs256, 20)],
        apis: vec![orders.clone(), billing.clone()],
        apps: vec![
            NewApp {
                secret: secret(&first),
                grants: vec![
                    grant(&orders, &["read", "write"])?,
                    grant(&billing, &["invoice"])?,
                ],
                app: first,
            },
            NewApp {
                secret: secret(&second),
                grants: vec![grant(&orders, &["read"])?],
                app: second,
            },
        ],
        tenant,
    };
    Ok(Populated {
        new,
        orders,
        billing,
    })
}

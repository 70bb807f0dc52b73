//! Tenants: creation with everything a tenant starts with, and the first-start bootstrap.

use tollgate_domain::{
    Algorithm, ApiIdentifier, ClientSecret, KeyId, Scope, ScopeDefinition, ScopeSet, TenantId,
    TenantName, TokenLifetime,
};
use tollgate_keys::{SigningKey, generate_client_id, generate_client_secret, generate_id};
use tollgate_store::{
    ApiRecord, AppRecord, GrantRecord, NewApp as NewAppRecords, NewTenant, SecretRecord,
    SigningKeyRecord, TenantRecord,
};

use crate::auth::{MANAGEMENT_SCOPES, Principal, SYSTEM_ONLY_SCOPES};
use crate::error::{Entity, Precondition};
use crate::trail::{Actor, BOOTSTRAP_ACTOR, Change, changed};
use crate::views::page_of;
use crate::{
    AdminCredentials, ManageError, Management, NewTenantInput, Page, PageRequest, TenantInfo,
    TenantUpdate, paginate,
};
use tollgate_audit::{AuditAction, ChangeEvents};

impl Management {
    /// On first start with an empty database, creates the `system` tenant and returns its admin
    /// credentials; otherwise (or if another instance won the race) returns `None`.
    pub async fn bootstrap(&self) -> Result<Option<AdminCredentials>, ManageError> {
        if !self.store.is_empty().await? {
            return Ok(None);
        }
        let input = NewTenantInput {
            name: TenantName::system(),
            display_name: "System".to_owned(),
            signing_alg: Algorithm::default(),
        };
        match self
            .create_tenant_unchecked(Actor::Server(BOOTSTRAP_ACTOR), input)
            .await
        {
            Ok((_, credentials)) => Ok(Some(credentials)),
            Err(ManageError::AlreadyExists { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates a tenant with its signing key, Management API and admin app.
    pub async fn create_tenant(
        &self,
        principal: &Principal,
        input: NewTenantInput,
    ) -> Result<(TenantInfo, AdminCredentials), ManageError> {
        principal.require_system("tenants:write")?;
        let (tenant, credentials) = self
            .create_tenant_unchecked(Actor::Admin(principal), input)
            .await?;
        Ok((self.tenant_info(tenant), credentials))
    }

    /// Reads a tenant.
    pub async fn get_tenant(
        &self,
        principal: &Principal,
        name: &TenantName,
    ) -> Result<TenantInfo, ManageError> {
        principal.require_system("tenants:read")?;
        Ok(self.tenant_info(self.find_tenant(name).await?))
    }

    /// Lists tenants by name.
    pub async fn list_tenants(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<TenantInfo>, ManageError> {
        principal.require_system("tenants:read")?;
        let limit = page.limit()?;
        let after = match page.page_token.as_str() {
            "" => None,
            token => Some(TenantName::parse(token).map_err(|error| error.for_field("page_token"))?),
        };
        let rows = self.store.list_tenants(after.as_ref(), limit + 1).await?;
        let page = paginate(rows, limit, |tenant| tenant.name.to_string());
        Ok(page_of(page, |tenant| self.tenant_info(tenant)))
    }

    /// Updates a tenant's display name or default algorithm.
    pub async fn update_tenant(
        &self,
        principal: &Principal,
        name: &TenantName,
        update: TenantUpdate,
    ) -> Result<TenantInfo, ManageError> {
        principal.require_system("tenants:write")?;
        let mut tenant = self.find_tenant(name).await?;
        let before = tenant.clone();
        if let Some(display_name) = update.display_name {
            tenant.display_name = display_name;
        }
        if let Some(signing_alg) = update.signing_alg {
            self.ensure_signing_key(Actor::Admin(principal), &tenant, signing_alg)
                .await?;
            tenant.signing_alg = signing_alg;
        }
        if let Some(rate_limit) = update.rate_limit_per_second {
            tenant.rate_limit_per_second = rate_limit;
        }
        tenant.updated_at = self.clock.now();
        let fields = changed(&[
            ("display_name", before.display_name != tenant.display_name),
            ("signing_alg", before.signing_alg != tenant.signing_alg),
            (
                "rate_limit_per_second",
                before.rate_limit_per_second != tenant.rate_limit_per_second,
            ),
        ]);
        let audit = self
            .tenant_change(Actor::Admin(principal), &tenant, &fields)
            .await?;
        self.store
            .update_tenant(&tenant, &audit)
            .await
            .map_err(|error| ManageError::from_store(error, Entity::Tenant, name))?;
        self.listener.tenant_changed(name);
        Ok(self.tenant_info(tenant))
    }

    /// Deletes a tenant and everything it owns.
    pub async fn delete_tenant(
        &self,
        principal: &Principal,
        name: &TenantName,
    ) -> Result<(), ManageError> {
        principal.require_system("tenants:write")?;
        if name.is_system() {
            return Err(ManageError::FailedPrecondition(
                Precondition::SystemTenantUndeletable,
            ));
        }
        let tenant = self.find_tenant(name).await?;
        let audit = self
            .tenant_change(Actor::Admin(principal), &tenant, &["deleted"])
            .await?;
        let deleted = self.store.delete_tenant(name, &audit).await?;
        self.listener.tenant_changed(name);
        if deleted {
            Ok(())
        } else {
            Err(ManageError::not_found(Entity::Tenant, name))
        }
    }

    pub(crate) async fn find_tenant(&self, name: &TenantName) -> Result<TenantRecord, ManageError> {
        self.store
            .find_tenant(name)
            .await?
            .ok_or_else(|| ManageError::not_found(Entity::Tenant, name))
    }

    /// The record of a change to `tenant` itself: in the system tenant's trail (tenants are
    /// the system admins' to manage) and in the tenant's own.
    async fn tenant_change(
        &self,
        actor: Actor<'_>,
        tenant: &TenantRecord,
        fields: &[&str],
    ) -> Result<ChangeEvents, ManageError> {
        let resource = format!("tenant/{}", tenant.name);
        let own = Change::new(
            self.clock.now_ms(),
            actor,
            tenant,
            AuditAction::ManagementChange,
            &resource,
        )?
        .fields(fields.iter().copied())
        .event();
        if tenant.name.is_system() {
            return Ok(ChangeEvents::one(own));
        }
        let system = self.find_tenant(&TenantName::system()).await?;
        let in_system = Change::new(
            self.clock.now_ms(),
            actor,
            &system,
            AuditAction::ManagementChange,
            &resource,
        )?
        .fields(fields.iter().copied())
        .event();
        Ok(ChangeEvents::new([in_system, own]))
    }

    async fn create_tenant_unchecked(
        &self,
        actor: Actor<'_>,
        input: NewTenantInput,
    ) -> Result<(TenantRecord, AdminCredentials), ManageError> {
        let now = self.clock.now();
        let display_name = if input.display_name.trim().is_empty() {
            input.name.to_string()
        } else {
            input.display_name
        };
        let tenant = TenantRecord {
            id: generate_id("ten")?.into(),
            name: input.name.clone(),
            display_name,
            signing_alg: input.signing_alg,
            created_at: now,
            updated_at: now,
            keys_rotated_at: Some(now),
            rate_limit_per_second: None,
        };
        let key = self.new_signing_key(&tenant.id, input.signing_alg).await?;
        let audience =
            ApiIdentifier::parse(&self.issuer_template.management_audience(&input.name))?;
        let mut scopes: Vec<ScopeDefinition> = Vec::new();
        let system_scopes = if input.name.is_system() {
            &SYSTEM_ONLY_SCOPES[..]
        } else {
            &[]
        };
        for (value, description) in MANAGEMENT_SCOPES.iter().chain(system_scopes) {
            scopes.push(ScopeDefinition {
                value: Scope::parse(value)?,
                description: (*description).to_owned(),
            });
        }
        let all_scopes: ScopeSet = scopes.iter().map(|scope| scope.value.clone()).collect();
        let management_api = ApiRecord {
            id: generate_id("api")?.into(),
            name: "Tollgate Management API".to_owned(),
            identifier: audience.clone(),
            scopes,
            token_lifetime: TokenLifetime::DEFAULT,
            signing_alg: None,
            is_system: true,
            created_at: now,
            updated_at: now,
        };
        let grant = GrantRecord {
            api_id: management_api.id.clone(),
            audience: audience.clone(),
            scopes: all_scopes,
        };
        let (app, secret_record, client_secret) = self.new_app_records(
            "Admin".to_owned(),
            "Manages this tenant through the Tollgate Management API".to_owned(),
            true,
        )?;
        let credentials = AdminCredentials {
            tenant: input.name.clone(),
            client_id: app.client_id.clone(),
            client_secret,
            audience,
        };
        let new_tenant = NewTenant {
            tenant: tenant.clone(),
            keys: vec![key],
            apis: vec![management_api],
            apps: vec![NewAppRecords {
                app,
                secret: secret_record,
                grants: vec![grant],
            }],
        };
        let audit = self.tenant_change(actor, &tenant, &["created"]).await?;
        self.store
            .create_tenant(&new_tenant, &audit)
            .await
            .map_err(|error| ManageError::from_store(error, Entity::Tenant, &input.name))?;
        self.listener.tenant_changed(&input.name);
        tracing::info!(tenant = %input.name, "tenant created");
        Ok((tenant, credentials))
    }

    /// Generates a key of `alg`, sealed under the master key and bound to its tenant and kid.
    pub(crate) async fn new_signing_key(
        &self,
        tenant: &TenantId,
        alg: Algorithm,
    ) -> Result<SigningKeyRecord, ManageError> {
        let kid = KeyId::new(generate_id("key")?);
        // RSA key generation takes long enough to stall a runtime worker.
        let generated = {
            let kid = kid.as_str().to_owned();
            tokio::task::spawn_blocking(move || SigningKey::generate(alg, kid))
                .await
                .map_err(|_| {
                    ManageError::FailedPrecondition(Precondition::KeyGenerationInterrupted)
                })??
        };
        let (key, pkcs8) = generated;
        let sealed = self.master_key.seal_signing_key(tenant, &kid, &pkcs8)?;
        let now = self.clock.now();
        Ok(SigningKeyRecord {
            kid,
            alg,
            public_jwk: key.public_jwk().to_string(),
            private_key_sealed: sealed,
            created_at: now,
            activate_at: now,
            retire_at: None,
            remove_at: None,
        })
    }

    /// Makes sure the tenant's ring can sign with `alg`.
    pub(crate) async fn ensure_signing_key(
        &self,
        actor: Actor<'_>,
        tenant: &TenantRecord,
        alg: Algorithm,
    ) -> Result<(), ManageError> {
        let has_key = self
            .store
            .load_tenant_snapshot(&tenant.name)
            .await?
            .is_some_and(|snapshot| snapshot.keys.iter().any(|key| key.alg == alg));
        if !has_key {
            let key = self.new_signing_key(&tenant.id, alg).await?;
            let audit = Change::new(
                self.clock.now_ms(),
                actor,
                tenant,
                AuditAction::ManagementChange,
                &format!("key/{}", key.kid),
            )?
            .fields(["created"])
            .done();
            self.store.add_signing_key(&tenant.id, &key, &audit).await?;
            self.listener.tenant_changed(&tenant.name);
        }
        Ok(())
    }

    /// A new app's rows and its plain secret.
    pub(crate) fn new_app_records(
        &self,
        name: String,
        description: String,
        is_system: bool,
    ) -> Result<(AppRecord, SecretRecord, ClientSecret), ManageError> {
        let now = self.clock.now();
        let app = AppRecord {
            id: generate_id("app")?.into(),
            client_id: generate_client_id()?,
            name,
            description,
            is_blocked: false,
            is_system,
            created_at: now,
            updated_at: now,
            rate_limit_per_second: None,
        };
        let client_secret = generate_client_secret()?;
        let secret = SecretRecord {
            id: generate_id("sec")?.into(),
            app_id: app.id.clone(),
            hash: self.hasher.hash(&client_secret),
            created_at: now,
            expires_at: None,
            last_used_at: None,
        };
        Ok((app, secret, client_secret))
    }
}

//! APIs (resource servers): the audiences tokens are issued for, and their scopes.

use std::collections::HashSet;

use tollgate_domain::{ApiIdentifier, InvalidValue, ScopeDefinition, ScopeSet, TenantName};
use tollgate_keys::generate_id;
use tollgate_store::ApiRecord;

use crate::auth::Principal;
use crate::error::{Denial, Entity, Precondition};
use crate::trail::{Actor, Change, changed};
use crate::views::{api_info, page_of};
use crate::{ApiInfo, ApiUpdate, ManageError, Management, NewApi, Page, PageRequest, paginate};
use tollgate_audit::AuditAction;

/// Most scopes one API may define.
const MAX_SCOPES: usize = 500;

/// Checks a resource's display name.
pub(crate) fn check_name(name: &str) -> Result<(), InvalidValue> {
    if name.trim().is_empty() {
        return Err(InvalidValue::new("name", "must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(InvalidValue::new("name", "must be at most 200 characters"));
    }
    Ok(())
}

fn check_scopes(scopes: &[ScopeDefinition]) -> Result<(), InvalidValue> {
    if scopes.len() > MAX_SCOPES {
        return Err(InvalidValue::new(
            "scopes",
            format!("at most {MAX_SCOPES} scopes"),
        ));
    }
    let mut seen = HashSet::new();
    for scope in scopes {
        if !seen.insert(scope.value.as_str()) {
            return Err(InvalidValue::new(
                "scopes",
                format!("scope {} is listed twice", scope.value),
            ));
        }
    }
    Ok(())
}

impl Management {
    /// Creates an API.
    pub async fn create_api(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        input: NewApi,
    ) -> Result<ApiInfo, ManageError> {
        principal.require(tenant, "apis:write")?;
        check_name(&input.name)?;
        check_scopes(&input.scopes)?;
        let tenant_record = self.find_tenant(tenant).await?;
        if let Some(alg) = input.signing_alg {
            self.ensure_signing_key(Actor::Admin(principal), &tenant_record, alg)
                .await?;
        }
        let now = self.clock.now();
        let api = ApiRecord {
            id: generate_id("api")?.into(),
            name: input.name,
            identifier: input.identifier,
            scopes: input.scopes,
            token_lifetime: input.token_lifetime,
            signing_alg: input.signing_alg,
            is_system: false,
            created_at: now,
            updated_at: now,
        };
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::ManagementChange,
            &format!("api/{}", api.identifier),
        )?
        .fields(["created"])
        .done();
        self.store
            .create_api(&tenant_record.id, &api, &audit)
            .await
            .map_err(|error| ManageError::from_store(error, Entity::Api, &api.identifier))?;
        self.listener.tenant_changed(tenant);
        Ok(api_info(tenant, api))
    }

    /// Reads an API.
    pub async fn get_api(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        identifier: &ApiIdentifier,
    ) -> Result<ApiInfo, ManageError> {
        principal.require(tenant, "apis:read")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let api = self
            .store
            .find_api(&tenant_record.id, identifier)
            .await?
            .ok_or_else(|| ManageError::not_found(Entity::Api, identifier))?;
        Ok(api_info(tenant, api))
    }

    /// Lists APIs by identifier.
    pub async fn list_apis(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        page: &PageRequest,
    ) -> Result<Page<ApiInfo>, ManageError> {
        principal.require(tenant, "apis:read")?;
        let limit = page.limit()?;
        let after = match page.page_token.as_str() {
            "" => None,
            token => {
                Some(ApiIdentifier::parse(token).map_err(|error| error.for_field("page_token"))?)
            }
        };
        let tenant_record = self.find_tenant(tenant).await?;
        let rows = self
            .store
            .list_apis(&tenant_record.id, after.as_ref(), limit + 1)
            .await?;
        let page = paginate(rows, limit, |api| api.identifier.to_string());
        Ok(page_of(page, |api| api_info(tenant, api)))
    }

    /// Updates an API. Grants keep only the scopes the API still defines.
    pub async fn update_api(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        identifier: &ApiIdentifier,
        update: ApiUpdate,
    ) -> Result<ApiInfo, ManageError> {
        principal.require(tenant, "apis:write")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let mut api = self
            .store
            .find_api(&tenant_record.id, identifier)
            .await?
            .ok_or_else(|| ManageError::not_found(Entity::Api, identifier))?;
        if api.is_system {
            // Its token lifetime is every admin token's: only a full admin of the tenant may
            // change the built-in Management API at all.
            let defined: ScopeSet = api.scopes.iter().map(|scope| scope.value.clone()).collect();
            principal.require_held(&defined, Denial::BuiltInApiNeedsAllScopes)?;
        }
        let before = api.clone();
        if api.is_system && (update.scopes.is_some() || update.signing_alg.is_some()) {
            return Err(ManageError::FailedPrecondition(
                Precondition::BuiltInApiFixed,
            ));
        }
        if let Some(name) = update.name {
            check_name(&name)?;
            api.name = name;
        }
        if let Some(scopes) = update.scopes {
            check_scopes(&scopes)?;
            api.scopes = scopes;
        }
        if let Some(lifetime) = update.token_lifetime {
            api.token_lifetime = lifetime;
        }
        if let Some(signing_alg) = update.signing_alg {
            if let Some(alg) = signing_alg {
                self.ensure_signing_key(Actor::Admin(principal), &tenant_record, alg)
                    .await?;
            }
            api.signing_alg = signing_alg;
        }
        api.updated_at = self.clock.now();
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::ManagementChange,
            &format!("api/{identifier}"),
        )?
        .fields(changed(&[
            ("name", before.name != api.name),
            ("scopes", before.scopes != api.scopes),
            (
                "token_lifetime",
                before.token_lifetime != api.token_lifetime,
            ),
            ("signing_alg", before.signing_alg != api.signing_alg),
        ]))
        .done();
        self.store
            .update_api(&tenant_record.id, &api, &audit)
            .await
            .map_err(|error| ManageError::from_store(error, Entity::Api, identifier))?;
        self.listener.tenant_changed(tenant);
        Ok(api_info(tenant, api))
    }

    /// Deletes an API and every grant on it.
    pub async fn delete_api(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        identifier: &ApiIdentifier,
    ) -> Result<(), ManageError> {
        principal.require(tenant, "apis:write")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let api = self
            .store
            .find_api(&tenant_record.id, identifier)
            .await?
            .ok_or_else(|| ManageError::not_found(Entity::Api, identifier))?;
        if api.is_system {
            return Err(ManageError::FailedPrecondition(
                Precondition::BuiltInApiUndeletable,
            ));
        }
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::ManagementChange,
            &format!("api/{identifier}"),
        )?
        .fields(["deleted"])
        .done();
        self.store
            .delete_api(&tenant_record.id, identifier, &audit)
            .await?;
        self.listener.tenant_changed(tenant);
        Ok(())
    }
}

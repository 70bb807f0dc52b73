//! M2M apps: client ids, secrets and grants.

use std::collections::HashSet;

use tollgate_domain::{ApiIdentifier, ClientId, ClientSecret, InvalidValue, ScopeSet, TenantName};
use tollgate_store::{AppWithGrants, GrantRecord, TenantRecord};

use crate::apis::check_name;
use crate::auth::Principal;
use crate::error::{Denial, Entity, Precondition};
use crate::trail::{Actor, Change, changed};
use crate::views::{app_info, page_of};
use crate::{AppInfo, AppUpdate, ManageError, Management, NewApp, Page, PageRequest, paginate};
use tollgate_audit::AuditAction;

fn check_description(description: &str) -> Result<(), InvalidValue> {
    if description.chars().count() > 1000 {
        return Err(InvalidValue::new(
            "description",
            "must be at most 1000 characters",
        ));
    }
    Ok(())
}

impl Management {
    /// Creates an app; returns it with its client secret, shown this once.
    pub async fn create_app(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        input: NewApp,
    ) -> Result<(AppInfo, ClientSecret), ManageError> {
        principal.require(tenant, "apps:write")?;
        check_name(&input.name)?;
        check_description(&input.description)?;
        let tenant_record = self.find_tenant(tenant).await?;
        let grants = self.resolve_grants(&tenant_record, input.grants).await?;
        principal.require_held(
            &self.management_scopes(tenant, &grants),
            Denial::CannotGrant,
        )?;
        let (app, secret, client_secret) =
            self.new_app_records(input.name, input.description, false)?;
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::ManagementChange,
            &format!("app/{}", app.client_id),
        )?
        .client(app.client_id.as_str())
        .secret(secret.id.as_str())
        .fields(if grants.is_empty() {
            vec!["created"]
        } else {
            vec!["created", "grants"]
        })
        .done();
        self.store
            .create_app(&tenant_record.id, &app, &secret, &grants, &audit)
            .await
            .map_err(|error| ManageError::from_store(error, Entity::App, &app.client_id))?;
        self.listener.tenant_changed(tenant);
        tracing::info!(tenant = %tenant, client_id = %app.client_id, "app created");
        Ok((
            app_info(tenant, AppWithGrants { app, grants }),
            client_secret,
        ))
    }

    /// Reads an app.
    pub async fn get_app(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
    ) -> Result<AppInfo, ManageError> {
        principal.require(tenant, "apps:read")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let app = self.find_app(&tenant_record, client_id).await?;
        Ok(app_info(tenant, app))
    }

    /// Lists apps by client id.
    pub async fn list_apps(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        page: &PageRequest,
    ) -> Result<Page<AppInfo>, ManageError> {
        principal.require(tenant, "apps:read")?;
        let limit = page.limit()?;
        let after = match page.page_token.as_str() {
            "" => None,
            token => Some(ClientId::parse(token).map_err(|error| error.for_field("page_token"))?),
        };
        let tenant_record = self.find_tenant(tenant).await?;
        let rows = self
            .store
            .list_apps(&tenant_record.id, after.as_ref(), limit + 1)
            .await?;
        let page = paginate(rows, limit, |app| app.app.client_id.to_string());
        Ok(page_of(page, |app| app_info(tenant, app)))
    }

    /// Updates an app; grants and blocking take effect on the next token request.
    pub async fn update_app(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
        update: AppUpdate,
    ) -> Result<AppInfo, ManageError> {
        principal.require(tenant, "apps:write")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let AppWithGrants { mut app, grants } = self.find_app(&tenant_record, client_id).await?;
        self.require_may_change(principal, tenant, client_id, &grants)?;
        if update.blocked == Some(true) && update.revoke_tokens {
            principal.require_scope("tokens:revoke")?;
        }
        let before = app.clone();
        if app.is_system && (update.grants.is_some() || update.blocked == Some(true)) {
            return Err(ManageError::FailedPrecondition(
                Precondition::BuiltInAppFixed,
            ));
        }
        if let Some(name) = update.name {
            check_name(&name)?;
            app.name = name;
        }
        if let Some(description) = update.description {
            check_description(&description)?;
            app.description = description;
        }
        if let Some(blocked) = update.blocked {
            app.is_blocked = blocked;
        }
        if let Some(rate_limit) = update.rate_limit_per_second {
            app.rate_limit_per_second = rate_limit;
        }
        let new_grants = match update.grants {
            Some(requested) => {
                let resolved = self.resolve_grants(&tenant_record, requested).await?;
                // What the app held is held by the caller (checked above), so this refuses
                // exactly the scopes being added that the caller lacks.
                principal.require_held(
                    &self.management_scopes(tenant, &resolved),
                    Denial::CannotGrant,
                )?;
                Some(resolved)
            }
            None => None,
        };
        app.updated_at = self.clock.now();
        let action = match (before.is_blocked, app.is_blocked) {
            (false, true) => AuditAction::AppBlocked,
            (true, false) => AuditAction::AppUnblocked,
            _ => AuditAction::ManagementChange,
        };
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            action,
            &format!("app/{client_id}"),
        )?
        .client(client_id.as_str())
        .fields(changed(&[
            ("name", before.name != app.name),
            ("description", before.description != app.description),
            ("blocked", before.is_blocked != app.is_blocked),
            (
                "rate_limit_per_second",
                before.rate_limit_per_second != app.rate_limit_per_second,
            ),
            (
                "grants",
                new_grants
                    .as_ref()
                    .is_some_and(|new_grants| *new_grants != grants),
            ),
        ]))
        .done();
        self.store
            .update_app(&tenant_record.id, &app, new_grants.as_deref(), &audit)
            .await
            .map_err(|error| ManageError::from_store(error, Entity::App, client_id))?;
        self.listener.tenant_changed(tenant);
        if update.blocked == Some(true) {
            tracing::info!(tenant = %tenant, client_id = %client_id, "app blocked");
            if update.revoke_tokens {
                self.revoke_target(
                    principal,
                    &tenant_record,
                    tollgate_domain::RevocationTarget::App(client_id.to_string()),
                )
                .await?;
            }
        }
        let app = AppWithGrants {
            app,
            grants: new_grants.unwrap_or(grants),
        };
        Ok(app_info(tenant, app))
    }

    /// Deletes an app with its secrets and grants.
    pub async fn delete_app(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
    ) -> Result<(), ManageError> {
        principal.require(tenant, "apps:write")?;
        let tenant_record = self.find_tenant(tenant).await?;
        let app = self.find_app(&tenant_record, client_id).await?;
        self.require_may_change(principal, tenant, client_id, &app.grants)?;
        if app.app.is_system {
            return Err(ManageError::FailedPrecondition(
                Precondition::BuiltInAppUndeletable,
            ));
        }
        // Deleting an app ends its tokens: revoked first (if this fails, nothing is deleted
        // and the call can be repeated), so that resource servers that follow revocations or
        // introspect refuse them too; its admin tokens also stop at the next call because
        // management authenticates against the live catalog, where the app is gone.
        self.revoke_target(
            principal,
            &tenant_record,
            tollgate_domain::RevocationTarget::App(client_id.to_string()),
        )
        .await?;
        let audit = Change::new(
            self.clock.now_ms(),
            Actor::Admin(principal),
            &tenant_record,
            AuditAction::ManagementChange,
            &format!("app/{client_id}"),
        )?
        .client(client_id.as_str())
        .fields(["deleted"])
        .done();
        self.store
            .delete_app(&tenant_record.id, client_id, &audit)
            .await?;
        self.listener.tenant_changed(tenant);
        Ok(())
    }

    /// The scopes `grants` give on the tenant's own Management API (none if they give none).
    pub(crate) fn management_scopes(
        &self,
        tenant: &TenantName,
        grants: &[GrantRecord],
    ) -> ScopeSet {
        let audience = self.issuer_template.management_audience(tenant);
        grants
            .iter()
            .find(|grant| grant.audience.as_str() == audience)
            .map(|grant| grant.scopes.clone())
            .unwrap_or_default()
    }

    /// Checks that `principal` may change the app `client_id`, whose grants are `grants`
    /// (update, block, delete, rotate or revoke its secrets): it must hold every management
    /// scope the app holds, or a delegate could take a stronger app over (rotate its secret
    /// and receive the new one) or strip it of what the delegate could not grant back.
    pub(crate) fn require_may_change(
        &self,
        principal: &Principal,
        tenant: &TenantName,
        client_id: &ClientId,
        grants: &[GrantRecord],
    ) -> Result<(), ManageError> {
        principal.require_held(&self.management_scopes(tenant, grants), |scope| {
            Denial::AppHoldsMore {
                client_id: client_id.clone(),
                scope,
            }
        })
    }

    pub(crate) async fn find_app(
        &self,
        tenant: &TenantRecord,
        client_id: &ClientId,
    ) -> Result<AppWithGrants, ManageError> {
        self.store
            .find_app(&tenant.id, client_id)
            .await?
            .ok_or_else(|| ManageError::not_found(Entity::App, client_id))
    }

    /// Checks each grant names an API of the tenant, once, with scopes the API defines.
    async fn resolve_grants(
        &self,
        tenant: &TenantRecord,
        grants: Vec<(ApiIdentifier, ScopeSet)>,
    ) -> Result<Vec<GrantRecord>, ManageError> {
        let mut seen = HashSet::new();
        let mut resolved = Vec::with_capacity(grants.len());
        for (audience, scopes) in grants {
            if !seen.insert(audience.clone()) {
                return Err(InvalidValue::new(
                    "grants",
                    format!("api {audience} is granted twice"),
                )
                .into());
            }
            let api = self
                .store
                .find_api(&tenant.id, &audience)
                .await?
                .ok_or_else(|| {
                    InvalidValue::new("grants", format!("api {audience} does not exist"))
                })?;
            if let Some(scope) = scopes
                .iter()
                .find(|scope| !api.scopes.iter().any(|defined| defined.value == **scope))
            {
                return Err(InvalidValue::new(
                    "grants",
                    format!("api {audience} defines no scope {scope}"),
                )
                .into());
            }
            resolved.push(GrantRecord {
                api_id: api.id,
                audience,
                scopes,
            });
        }
        Ok(resolved)
    }
}

//! `tollgate.v1.TenantService`, `ApiService` and `AppService`. Each call authenticates the
//! bearer admin token first, so an unauthenticated caller learns nothing from validation.

use std::sync::Arc;

use tollgate_domain::{ApiIdentifier, ClientId, TenantName};
use tollgate_management::{Management, Principal};
use tollgate_proto::manage;
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1::api_service_server::ApiService;
use tollgate_proto::v1::app_service_server::AppService;
use tollgate_proto::v1::key_service_server::KeyService;
use tollgate_proto::v1::revocation_service_server::RevocationService;
use tollgate_proto::v1::tenant_service_server::TenantService;
use tollgate_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{bearer_token, into_status};

/// Serves the management services over one [`Management`].
#[derive(Clone)]
pub struct ManagementAdapter {
    management: Arc<Management>,
}

impl ManagementAdapter {
    /// Serves `management`.
    pub fn new(management: Arc<Management>) -> Self {
        Self { management }
    }

    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.management
            .authenticate(bearer_token(request.metadata()))
            .await
            .map_err(into_status)
    }
}

#[tonic::async_trait]
impl TenantService for ManagementAdapter {
    async fn create_tenant(
        &self,
        request: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        let principal = self.principal(&request).await?;
        let input = manage::new_tenant(request.into_inner()).map_err(invalid_argument)?;
        let created = self
            .management
            .create_tenant(&principal, input)
            .await
            .map_err(into_status)?;
        Ok(Response::new(created.into()))
    }

    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let principal = self.principal(&request).await?;
        let name = TenantName::parse(&request.get_ref().name)
            .map_err(|error| invalid_argument(error.for_field("name")))?;
        let tenant = self
            .management
            .get_tenant(&principal, &name)
            .await
            .map_err(into_status)?;
        Ok(Response::new(tenant.into()))
    }

    async fn list_tenants(
        &self,
        request: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let page = self
            .management
            .list_tenants(
                &principal,
                &manage::page(request.page_size, request.page_token),
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(page.into()))
    }

    async fn update_tenant(
        &self,
        request: Request<UpdateTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let principal = self.principal(&request).await?;
        let (name, update) =
            manage::tenant_update(request.into_inner()).map_err(invalid_argument)?;
        let tenant = self
            .management
            .update_tenant(&principal, &name, update)
            .await
            .map_err(into_status)?;
        Ok(Response::new(tenant.into()))
    }

    async fn delete_tenant(
        &self,
        request: Request<DeleteTenantRequest>,
    ) -> Result<Response<DeleteTenantResponse>, Status> {
        let principal = self.principal(&request).await?;
        let name = TenantName::parse(&request.get_ref().name)
            .map_err(|error| invalid_argument(error.for_field("name")))?;
        self.management
            .delete_tenant(&principal, &name)
            .await
            .map_err(into_status)?;
        Ok(Response::new(DeleteTenantResponse {}))
    }
}

#[tonic::async_trait]
impl ApiService for ManagementAdapter {
    async fn create_api(
        &self,
        request: Request<CreateApiRequest>,
    ) -> Result<Response<Api>, Status> {
        let principal = self.principal(&request).await?;
        let (tenant, input) = manage::new_api(request.into_inner()).map_err(invalid_argument)?;
        let api = self
            .management
            .create_api(&principal, &tenant, input)
            .await
            .map_err(into_status)?;
        Ok(Response::new(api.into()))
    }

    async fn get_api(&self, request: Request<GetApiRequest>) -> Result<Response<Api>, Status> {
        let principal = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let identifier =
            ApiIdentifier::parse(&request.get_ref().identifier).map_err(invalid_argument)?;
        let api = self
            .management
            .get_api(&principal, &tenant, &identifier)
            .await
            .map_err(into_status)?;
        Ok(Response::new(api.into()))
    }

    async fn list_apis(
        &self,
        request: Request<ListApisRequest>,
    ) -> Result<Response<ListApisResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let page = self
            .management
            .list_apis(
                &principal,
                &tenant,
                &manage::page(request.page_size, request.page_token),
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(page.into()))
    }

    async fn update_api(
        &self,
        request: Request<UpdateApiRequest>,
    ) -> Result<Response<Api>, Status> {
        let principal = self.principal(&request).await?;
        let (tenant, identifier, update) =
            manage::api_update(request.into_inner()).map_err(invalid_argument)?;
        let api = self
            .management
            .update_api(&principal, &tenant, &identifier, update)
            .await
            .map_err(into_status)?;
        Ok(Response::new(api.into()))
    }

    async fn delete_api(
        &self,
        request: Request<DeleteApiRequest>,
    ) -> Result<Response<DeleteApiResponse>, Status> {
        let principal = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let identifier =
            ApiIdentifier::parse(&request.get_ref().identifier).map_err(invalid_argument)?;
        self.management
            .delete_api(&principal, &tenant, &identifier)
            .await
            .map_err(into_status)?;
        Ok(Response::new(DeleteApiResponse {}))
    }
}

#[tonic::async_trait]
impl AppService for ManagementAdapter {
    async fn create_app(
        &self,
        request: Request<CreateAppRequest>,
    ) -> Result<Response<CreateAppResponse>, Status> {
        let principal = self.principal(&request).await?;
        let (tenant, input) = manage::new_app(request.into_inner()).map_err(invalid_argument)?;
        let created = self
            .management
            .create_app(&principal, &tenant, input)
            .await
            .map_err(into_status)?;
        Ok(Response::new(created.into()))
    }

    async fn get_app(&self, request: Request<GetAppRequest>) -> Result<Response<App>, Status> {
        let principal = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let client_id = ClientId::parse(&request.get_ref().client_id).map_err(invalid_argument)?;
        let app = self
            .management
            .get_app(&principal, &tenant, &client_id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(app.into()))
    }

    async fn list_apps(
        &self,
        request: Request<ListAppsRequest>,
    ) -> Result<Response<ListAppsResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let page = self
            .management
            .list_apps(
                &principal,
                &tenant,
                &manage::page(request.page_size, request.page_token),
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(page.into()))
    }

    async fn update_app(
        &self,
        request: Request<UpdateAppRequest>,
    ) -> Result<Response<App>, Status> {
        let principal = self.principal(&request).await?;
        let (tenant, client_id, update) =
            manage::app_update(request.into_inner()).map_err(invalid_argument)?;
        let app = self
            .management
            .update_app(&principal, &tenant, &client_id, update)
            .await
            .map_err(into_status)?;
        Ok(Response::new(app.into()))
    }

    async fn delete_app(
        &self,
        request: Request<DeleteAppRequest>,
    ) -> Result<Response<DeleteAppResponse>, Status> {
        let principal = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let client_id = ClientId::parse(&request.get_ref().client_id).map_err(invalid_argument)?;
        self.management
            .delete_app(&principal, &tenant, &client_id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(DeleteAppResponse {}))
    }

    async fn rotate_secret(
        &self,
        request: Request<RotateSecretRequest>,
    ) -> Result<Response<RotateSecretResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let client_id = ClientId::parse(&request.client_id).map_err(invalid_argument)?;
        let rotated = self
            .management
            .rotate_secret(&principal, &tenant, &client_id, request.overlap_seconds)
            .await
            .map_err(into_status)?;
        Ok(Response::new(rotated.into()))
    }

    async fn revoke_secret(
        &self,
        request: Request<RevokeSecretRequest>,
    ) -> Result<Response<RevokeSecretResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let client_id = ClientId::parse(&request.client_id).map_err(invalid_argument)?;
        self.management
            .revoke_secret(
                &principal,
                &tenant,
                &client_id,
                &request.secret_id,
                request.revoke_tokens,
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(RevokeSecretResponse {}))
    }

    async fn list_secrets(
        &self,
        request: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let principal = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let client_id = ClientId::parse(&request.get_ref().client_id).map_err(invalid_argument)?;
        let secrets = self
            .management
            .list_secrets(&principal, &tenant, &client_id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(secrets.into()))
    }
}

#[tonic::async_trait]
impl KeyService for ManagementAdapter {
    async fn rotate_signing_key(
        &self,
        request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let keys = self
            .management
            .rotate_signing_key(&principal, &tenant, request.propagation_delay_seconds)
            .await
            .map_err(into_status)?;
        Ok(Response::new(keys.into()))
    }

    async fn list_keys(
        &self,
        request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        let principal = self.principal(&request).await?;
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let keys = self
            .management
            .list_keys(&principal, &tenant)
            .await
            .map_err(into_status)?;
        Ok(Response::new(keys.into()))
    }
}

#[tonic::async_trait]
impl RevocationService for ManagementAdapter {
    async fn revoke_tokens(
        &self,
        request: Request<RevokeTokensRequest>,
    ) -> Result<Response<RevokeTokensResponse>, Status> {
        let principal = self.principal(&request).await?;
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let target = manage::revocation_target(request.target).map_err(invalid_argument)?;
        self.management
            .revoke_tokens(&principal, &tenant, target)
            .await
            .map_err(into_status)?;
        Ok(Response::new(RevokeTokensResponse {}))
    }
}

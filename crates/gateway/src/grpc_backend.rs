//! The [`TokenBackend`] of a standalone edge: `tollgate.v1.TokenService` over gRPC.

use std::future::Future;

use tollgate_domain::{ErrorCode, IssuedToken, ScopeSet, TenantName, TokenRequest};
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{GetJwksRequest, IssueTokenRequest};
use tonic::transport::Channel;

use crate::{BackendError, TenantKeys, TokenBackend};

/// Reaches issuance and public keys through a `TokenService` gRPC channel.
#[derive(Debug, Clone)]
pub struct GrpcBackend {
    client: TokenServiceClient<Channel>,
}

impl GrpcBackend {
    /// Uses `channel`, which the caller has configured (endpoint, TLS, timeouts).
    pub fn new(channel: Channel) -> Self {
        Self {
            client: TokenServiceClient::new(channel),
        }
    }
}

impl TokenBackend for GrpcBackend {
    fn issue_token(
        &self,
        request: TokenRequest,
    ) -> impl Future<Output = Result<IssuedToken, BackendError>> + Send {
        // Clients are cheap handles on the shared channel; cloning one per call avoids any
        // lock around a `&mut` client.
        let mut client = self.client.clone();
        let message = IssueTokenRequest {
            tenant: request.tenant.as_str().to_owned(),
            client_id: request.client_id.as_str().to_owned(),
            client_secret: request.client_secret.expose().to_owned(),
            audience: request.audience.as_str().to_owned(),
            scopes: request
                .scopes
                .as_ref()
                .map(ScopeSet::to_strings)
                .unwrap_or_default(),
        };
        async move {
            let response = client
                .issue_token(message)
                .await
                .map_err(backend_error)?
                .into_inner();
            let scopes = ScopeSet::parse_all(response.scopes.iter().map(String::as_str)).map_err(
                |error| {
                    BackendError::new(
                        ErrorCode::Internal,
                        format!("TokenService returned an invalid scope: {error}"),
                    )
                },
            )?;
            Ok(IssuedToken {
                access_token: response.access_token,
                expires_in: response.expires_in,
                scopes,
            })
        }
    }

    fn jwks(
        &self,
        tenant: &TenantName,
    ) -> impl Future<Output = Result<TenantKeys, BackendError>> + Send {
        let mut client = self.client.clone();
        let message = GetJwksRequest {
            tenant: tenant.as_str().to_owned(),
        };
        async move {
            let response = client
                .get_jwks(message)
                .await
                .map_err(backend_error)?
                .into_inner();
            Ok(TenantKeys {
                issuer: response.issuer,
                jwks_json: response.jwks_json,
            })
        }
    }
}

/// The status's Tollgate error code (from `google.rpc.ErrorInfo.reason`) and message.
fn backend_error(status: tonic::Status) -> BackendError {
    let (code, message) = tollgate_proto::status::error_code(&status);
    BackendError { code, message }
}

//! `tollgate.v1.TokenService`.

use std::sync::Arc;

use tollgate_domain::{TenantName, TokenRequest};
use tollgate_issuer::Issuer;
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1::token_service_server::TokenService;
use tollgate_proto::v1::{GetJwksRequest, GetJwksResponse, IssueTokenRequest, IssueTokenResponse};
use tonic::{Request, Response, Status};

use super::into_status;

/// Serves token issuance and public keys.
pub struct TokenAdapter {
    issuer: Arc<Issuer>,
}

impl TokenAdapter {
    /// Serves `issuer`.
    pub fn new(issuer: Arc<Issuer>) -> Self {
        Self { issuer }
    }
}

#[tonic::async_trait]
impl TokenService for TokenAdapter {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let request = TokenRequest::try_from(request.into_inner()).map_err(invalid_argument)?;
        let token = self.issuer.issue(request).await.map_err(into_status)?;
        Ok(Response::new(token.into()))
    }

    async fn get_jwks(
        &self,
        request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        let tenant = TenantName::parse(&request.get_ref().tenant).map_err(invalid_argument)?;
        let (issuer, jwks_json) = self.issuer.jwks(&tenant).await.map_err(into_status)?;
        Ok(Response::new(GetJwksResponse { issuer, jwks_json }))
    }
}

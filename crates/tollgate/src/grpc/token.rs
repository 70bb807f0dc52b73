//! `tollgate.v1.TokenService`.

use std::sync::Arc;

use tollgate_domain::{RequestOrigin, TenantName, TokenRequest, TraceId, Transport};
use tollgate_issuer::Issuer;
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1::token_service_server::TokenService;
use tollgate_proto::v1::{
    GetJwksRequest, GetJwksResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest, IssueTokenResponse, RevokeTokenRequest, RevokeTokenResponse,
};
use tonic::{Request, Response, Status};

use super::{into_status, token_call};

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
        let origin = origin(&request);
        let mut request = TokenRequest::try_from(request.into_inner()).map_err(invalid_argument)?;
        request.origin = origin;
        let token = self.issuer.issue(request).await.map_err(into_status)?;
        Ok(Response::new(token.into()))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let origin = origin(&request);
        let request = request.into_inner();
        let call = token_call(
            &request.tenant,
            &request.client_id,
            request.client_secret,
            request.token,
            origin,
        )
        .map_err(invalid_argument)?;
        self.issuer.revoke(call).await.map_err(into_status)?;
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn introspect_token(
        &self,
        request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        let origin = origin(&request);
        let request = request.into_inner();
        let call = token_call(
            &request.tenant,
            &request.client_id,
            request.client_secret,
            request.token,
            origin,
        )
        .map_err(invalid_argument)?;
        let claims = self.issuer.introspect(call).await.map_err(into_status)?;
        Ok(Response::new(claims.map(introspection).unwrap_or_default()))
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

/// Where a gRPC request came from: the peer's address and the trace id of a well-formed
/// W3C `traceparent` metadata entry.
fn origin<T>(request: &Request<T>) -> RequestOrigin {
    RequestOrigin {
        source: request
            .remote_addr()
            .map(|address| address.ip().to_canonical()),
        transport: Transport::Grpc,
        trace_id: request
            .metadata()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(TraceId::from_traceparent),
    }
}

/// An active token's introspection answer.
fn introspection(claims: tollgate_domain::AccessTokenClaims) -> IntrospectTokenResponse {
    IntrospectTokenResponse {
        active: true,
        scope: claims.scope,
        client_id: claims.client_id,
        token_type: "Bearer".to_owned(),
        exp: claims.exp,
        iat: claims.iat,
        nbf: claims.nbf,
        sub: claims.sub,
        aud: claims.aud,
        iss: claims.iss,
        jti: claims.jti,
        cid: claims.cid,
        sid: claims.sid,
        scp: claims.scp,
        gty: claims.gty,
    }
}

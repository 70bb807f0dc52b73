//! [`GrpcTokenSource`]: Tollgate's `tollgate.v1.TokenService/IssueToken` (feature `grpc`).
//!
//! Classification: UNAVAILABLE and RESOURCE_EXHAUSTED are transient, with
//! `google.rpc.RetryInfo` as the server's hint; every other code is a rejection whose
//! `error` is the OAuth reason Tollgate puts in `google.rpc.ErrorInfo` (`invalid_client`,
//! `invalid_scope`, `unauthorized_client`, …).

use std::fmt;

use tollgate_proto::v1::IssueTokenRequest;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::{
    AccessToken, FetchError, FetchFuture, FetchedToken, Secret, TokenRequest, TokenSource,
};

/// Gets tokens from a Tollgate server over gRPC.
///
/// ```no_run
/// use tollgate_client::{GrpcTokenSource, TokenClient, TokenRequest};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect_lazy();
/// let client = TokenClient::new(GrpcTokenSource::new(channel, "acme", "reporting", "tgsec_…"));
/// let token = client.get_token(&TokenRequest::new("https://archive.example.com/")).await?;
/// # let _ = token; Ok(()) }
/// ```
pub struct GrpcTokenSource {
    client: TokenServiceClient<Channel>,
    tenant: String,
    client_id: String,
    secret: Secret,
}

impl fmt::Debug for GrpcTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcTokenSource")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl GrpcTokenSource {
    /// Asks the server behind `channel` for tokens of `tenant`'s app `client_id`.
    pub fn new(
        channel: Channel,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Self {
        Self {
            client: TokenServiceClient::new(channel),
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    async fn fetch_once(&self, request: &TokenRequest) -> Result<FetchedToken, FetchError> {
        let audience = request.audience.clone().ok_or_else(|| {
            FetchError::Invalid("Tollgate's IssueToken needs an audience".to_owned())
        })?;
        let response = self
            .client
            .clone()
            .issue_token(IssueTokenRequest {
                tenant: self.tenant.clone(),
                client_id: self.client_id.clone(),
                client_secret: self.secret.expose().to_owned(),
                audience,
                scopes: request.scopes.clone(),
            })
            .await
            .map_err(|status| classify(&status))?
            .into_inner();
        if response.access_token.is_empty() {
            return Err(FetchError::Invalid(
                "the response has no access_token".to_owned(),
            ));
        }
        Ok(FetchedToken {
            access_token: AccessToken::new(response.access_token),
            expires_in: u64::try_from(response.expires_in)
                .ok()
                .map(std::time::Duration::from_secs),
            scopes: Some(response.scopes),
        })
    }
}

impl TokenSource for GrpcTokenSource {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> FetchFuture<'a> {
        Box::pin(self.fetch_once(request))
    }
}

/// Whether a failed call is worth retrying, and the OAuth error otherwise.
fn classify(status: &tonic::Status) -> FetchError {
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted => FetchError::Transient {
            reason: format!("{:?}: {}", status.code(), status.message()),
            retry_after: status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay),
        },
        _ => {
            let (code, message) = tollgate_proto::status::error_code(status);
            FetchError::Rejected {
                error: code.reason().to_owned(),
                description: Some(message),
            }
        }
    }
}

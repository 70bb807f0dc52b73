//! The [`TokenBackend`] of a standalone edge: `tollgate.v1.TokenService` over gRPC.
//!
//! The wire messages have no field for the client's address. With a [`GatewayCredential`]
//! (the secret shared with the issuer), every token, revocation and introspection call
//! carries the caller's address in the [`FORWARDED_FOR_METADATA`] entry next to the secret
//! in [`GATEWAY_SECRET_METADATA`]; an issuer configured with the same secret records and
//! rate-limits that address instead of the edge's, and believes the entry from no one else.
//! Without a credential nothing is forwarded, and the issuer sees the edge's address.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use tollgate_domain::{
    AccessTokenClaims, ErrorCode, IssuedToken, ScopeSet, TenantName, TokenCallRequest, TokenRequest,
};
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tollgate_proto::v1::{
    GetJwksRequest, IntrospectTokenRequest, IntrospectTokenResponse, IssueTokenRequest,
    RevokeTokenRequest,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::{BackendError, TenantKeys, TokenBackend};

/// The gRPC metadata entry in which the edge gateway presents the secret it shares with the
/// issuer.
pub const GATEWAY_SECRET_METADATA: &str = "tollgate-gateway-secret";
/// The gRPC metadata entry holding the caller's IP address (as text) of a call the edge
/// gateway makes on its behalf. The issuer believes it only next to the right
/// [`GATEWAY_SECRET_METADATA`].
pub const FORWARDED_FOR_METADATA: &str = "tollgate-forwarded-for";

/// The secret that authenticates this edge gateway to the issuer. It is sent as a sensitive
/// metadata value (kept out of HTTP/2 header compression tables) and never printed.
#[derive(Clone)]
pub struct GatewayCredential(AsciiMetadataValue);

impl fmt::Debug for GatewayCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayCredential(..)")
    }
}

/// A gateway secret that cannot be sent in gRPC metadata (only visible ASCII can).
#[derive(Debug, thiserror::Error)]
#[error("the gateway secret must be visible ASCII")]
pub struct InvalidGatewayCredential;

impl GatewayCredential {
    /// The credential for `secret`; the configuration checks its length.
    pub fn new(secret: &str) -> Result<Self, InvalidGatewayCredential> {
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidGatewayCredential);
        }
        let mut value =
            AsciiMetadataValue::try_from(secret).map_err(|_| InvalidGatewayCredential)?;
        value.set_sensitive(true);
        Ok(Self(value))
    }
}

/// Reaches issuance, revocation, introspection and public keys through a `TokenService`
/// gRPC channel.
#[derive(Debug, Clone)]
pub struct GrpcBackend {
    client: TokenServiceClient<Channel>,
    /// With it, calls forward the caller's address (see the module's documentation).
    credential: Option<GatewayCredential>,
}

impl GrpcBackend {
    /// Uses `channel`, which the caller has configured (endpoint, TLS, timeouts). Forwards
    /// no caller addresses.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: TokenServiceClient::new(channel),
            credential: None,
        }
    }

    /// Presents `credential` on every call that has a caller, with the caller's address.
    #[must_use]
    pub fn with_credential(mut self, credential: GatewayCredential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// `message` as a request on behalf of a caller at `source`: with the forwarding
    /// metadata when this gateway has a credential and the caller's address is known.
    fn on_behalf_of<T>(&self, message: T, source: Option<IpAddr>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let (Some(credential), Some(source)) = (&self.credential, source) {
            // An IP address's text is always a valid metadata value.
            if let Ok(address) = MetadataValue::try_from(source.to_string()) {
                let metadata = request.metadata_mut();
                metadata.insert(GATEWAY_SECRET_METADATA, credential.0.clone());
                metadata.insert(FORWARDED_FOR_METADATA, address);
            }
        }
        request
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
        let source = request.origin.source;
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
        let message = self.on_behalf_of(message, source);
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

    fn revoke_token(
        &self,
        request: TokenCallRequest,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let mut client = self.client.clone();
        let source = request.origin.source;
        let message = RevokeTokenRequest {
            tenant: request.tenant.as_str().to_owned(),
            client_id: request.client_id.as_str().to_owned(),
            client_secret: request.client_secret.expose().to_owned(),
            token: request.token,
        };
        let message = self.on_behalf_of(message, source);
        async move {
            client.revoke_token(message).await.map_err(backend_error)?;
            Ok(())
        }
    }

    fn introspect_token(
        &self,
        request: TokenCallRequest,
    ) -> impl Future<Output = Result<Option<AccessTokenClaims>, BackendError>> + Send {
        let mut client = self.client.clone();
        let source = request.origin.source;
        let message = IntrospectTokenRequest {
            tenant: request.tenant.as_str().to_owned(),
            client_id: request.client_id.as_str().to_owned(),
            client_secret: request.client_secret.expose().to_owned(),
            token: request.token,
        };
        let message = self.on_behalf_of(message, source);
        async move {
            let response = client
                .introspect_token(message)
                .await
                .map_err(backend_error)?
                .into_inner();
            Ok(claims(response))
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

/// The claims of an active token; `None` when `active` is false (the other fields are then
/// empty). `token_type` is not a claim: it is always `Bearer`.
fn claims(response: IntrospectTokenResponse) -> Option<AccessTokenClaims> {
    if !response.active {
        return None;
    }
    Some(AccessTokenClaims {
        iss: response.iss,
        sub: response.sub,
        aud: response.aud,
        iat: response.iat,
        nbf: response.nbf,
        exp: response.exp,
        jti: response.jti,
        cid: response.cid,
        sid: response.sid,
        scp: response.scp,
        scope: response.scope,
        client_id: response.client_id,
        gty: response.gty,
    })
}

/// The status's Tollgate error code (from `google.rpc.ErrorInfo.reason`) and message, and
/// for the retryable codes the delay of its `google.rpc.RetryInfo`. Rate-limit counters
/// have no standard status detail, so [`BackendError::rate_limit`] stays `None`.
fn backend_error(status: tonic::Status) -> BackendError {
    let (code, message) = tollgate_proto::status::error_code(&status);
    let retry_after = matches!(code, ErrorCode::ResourceExhausted | ErrorCode::Unavailable)
        .then(|| status.get_details_retry_info())
        .flatten()
        .and_then(|info| info.retry_delay);
    BackendError {
        code,
        message,
        retry_after,
        rate_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tonic::Code;
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    fn status(code: Code, reason: &str, retry_delay: Option<Duration>) -> tonic::Status {
        let mut details = ErrorDetails::with_error_info(reason, "tollgate", HashMap::new());
        if let Some(delay) = retry_delay {
            details.set_retry_info(Some(delay));
        }
        tonic::Status::with_error_details(code, "message", details)
    }

    #[test]
    fn retry_info_becomes_retry_after() {
        let delay = Some(Duration::from_millis(1500));
        for (status, code, retry_after) in [
            (
                status(Code::ResourceExhausted, "resource_exhausted", delay),
                ErrorCode::ResourceExhausted,
                delay,
            ),
            (
                status(Code::ResourceExhausted, "resource_exhausted", None),
                ErrorCode::ResourceExhausted,
                None,
            ),
            (
                status(Code::Unavailable, "unavailable", delay),
                ErrorCode::Unavailable,
                delay,
            ),
            // Retry information on a refusal that retrying cannot fix is dropped.
            (
                status(Code::Unauthenticated, "invalid_client", delay),
                ErrorCode::InvalidClient,
                None,
            ),
            // A status without details (e.g. from a proxy) still carries its code.
            (
                tonic::Status::resource_exhausted("quota"),
                ErrorCode::ResourceExhausted,
                None,
            ),
        ] {
            let error = backend_error(status);
            assert_eq!(error.code, code);
            assert_eq!(error.retry_after, retry_after, "{code}");
            assert_eq!(error.rate_limit, None);
        }
    }

    #[tokio::test]
    async fn forwarding_metadata_only_with_a_credential_and_a_caller()
    -> Result<(), Box<dyn std::error::Error>> {
        let channel = Channel::from_static("http://127.0.0.1:9").connect_lazy();
        let caller = Some(IpAddr::from([192, 0, 2, 7]));
        let secret = "9f2c4e81b7d35a06c1e8f4a2d9b7306e";
        let forwarding =
            GrpcBackend::new(channel.clone()).with_credential(GatewayCredential::new(secret)?);
        let request = forwarding.on_behalf_of((), caller);
        let metadata = request.metadata();
        assert_eq!(
            metadata
                .get(FORWARDED_FOR_METADATA)
                .map(|value| value.to_str())
                .transpose()?,
            Some("192.0.2.7")
        );
        assert_eq!(
            metadata
                .get(GATEWAY_SECRET_METADATA)
                .map(|value| value.to_str())
                .transpose()?,
            Some(secret)
        );
        // No caller address: nothing to forward, and the secret is not sent for nothing.
        assert!(forwarding.on_behalf_of((), None).metadata().is_empty());
        // No credential: nothing is forwarded.
        assert!(
            GrpcBackend::new(channel)
                .on_behalf_of((), caller)
                .metadata()
                .is_empty()
        );
        // The secret never shows in `Debug`.
        assert!(!format!("{forwarding:?}").contains(secret));
        for bad in ["", "with space", "tab\there", "é"] {
            assert!(GatewayCredential::new(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn introspection_responses() {
        assert_eq!(claims(IntrospectTokenResponse::default()), None);
        // `active: false` wins over any stray field.
        assert_eq!(
            claims(IntrospectTokenResponse {
                jti: "j".to_owned(),
                ..IntrospectTokenResponse::default()
            }),
            None
        );
        let response = IntrospectTokenResponse {
            active: true,
            scope: "read write".to_owned(),
            client_id: "app".to_owned(),
            token_type: "Bearer".to_owned(),
            exp: 1_700_003_600,
            iat: 1_700_000_000,
            nbf: 1_700_000_001,
            sub: "app@client".to_owned(),
            aud: "https://api.example.com/".to_owned(),
            iss: "http://acme.hub.localhost:8080/".to_owned(),
            jti: "jti-1".to_owned(),
            cid: "tenant-1".to_owned(),
            sid: "secret-1".to_owned(),
            scp: vec!["read".to_owned(), "write".to_owned()],
            gty: "client_credentials".to_owned(),
        };
        assert_eq!(
            claims(response),
            Some(AccessTokenClaims {
                iss: "http://acme.hub.localhost:8080/".to_owned(),
                sub: "app@client".to_owned(),
                aud: "https://api.example.com/".to_owned(),
                iat: 1_700_000_000,
                nbf: 1_700_000_001,
                exp: 1_700_003_600,
                jti: "jti-1".to_owned(),
                cid: "tenant-1".to_owned(),
                sid: "secret-1".to_owned(),
                scp: vec!["read".to_owned(), "write".to_owned()],
                scope: "read write".to_owned(),
                client_id: "app".to_owned(),
                gty: "client_credentials".to_owned(),
            })
        );
    }
}

//! `tollgate.v1.TokenService`.
//!
//! A request's origin is its TCP peer, unless the peer is an edge gateway that proved
//! itself with the configured gateway secret: then it is the caller's address that gateway
//! forwarded (see `tollgate_gateway::GrpcBackend`), over HTTP.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tollgate_domain::{
    ClientId, ClientSecret, RequestOrigin, Revocation, TenantName, TokenRequest, TraceId, Transport,
};
use tollgate_gateway::{FORWARDED_FOR_METADATA, GATEWAY_SECRET_METADATA};
use tollgate_issuer::{Issuer, WATCH_HEARTBEAT, WatchEvent};
use tollgate_keys::SharedSecret;
use tollgate_proto::convert::token_call;
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1::token_service_server::TokenService;
use tollgate_proto::v1::{
    GetJwksRequest, GetJwksResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest, IssueTokenResponse, RevocationEntry, RevokeTokenRequest,
    RevokeTokenResponse, WatchRevocationsRequest, WatchRevocationsResponse,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::forward::{Buffer, Forwarded, forward};
use super::into_status;

/// Messages of a revocation watch waiting for a slow watcher.
const WATCH_BUFFER: Buffer = Buffer {
    messages: 16,
    bytes: None,
};

/// Serves token issuance, public keys and revocation watches.
pub struct TokenAdapter {
    issuer: Arc<Issuer>,
    /// Turns true when the server stops: open watches end (with UNAVAILABLE, so watchers
    /// reconnect elsewhere) instead of holding up graceful shutdown.
    shutdown: watch::Receiver<bool>,
    /// The secret edge gateways present with forwarded addresses; without it, forwarded
    /// addresses are ignored.
    gateway_secret: Option<SharedSecret>,
    /// Whether a forwarded address with a wrong or missing secret has been logged as a
    /// warning: once is enough to point at a misconfigured gateway, and more would let
    /// anyone fill the log.
    has_warned_of_untrusted_forwarding: AtomicBool,
}

impl TokenAdapter {
    /// Serves `issuer`; watches end when `shutdown` turns true. With `gateway_secret`,
    /// callers presenting it may forward the address of the client they act for.
    pub fn new(
        issuer: Arc<Issuer>,
        shutdown: watch::Receiver<bool>,
        gateway_secret: Option<SharedSecret>,
    ) -> Self {
        Self {
            issuer,
            shutdown,
            gateway_secret,
            has_warned_of_untrusted_forwarding: AtomicBool::new(false),
        }
    }

    /// Where a gRPC request came from: the caller's address an authenticated edge gateway
    /// forwarded (over HTTP), else the TCP peer's (over gRPC); and the trace id of a
    /// well-formed W3C `traceparent` metadata entry.
    fn origin<T>(&self, request: &Request<T>) -> RequestOrigin {
        let peer = request
            .remote_addr()
            .map(|address| address.ip().to_canonical());
        let (source, transport) = match self.forwarded_source(request.metadata(), peer) {
            Some(forwarded) => (Some(forwarded), Transport::Http),
            None => (peer, Transport::Grpc),
        };
        RequestOrigin {
            source,
            transport,
            trace_id: request
                .metadata()
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .and_then(TraceId::from_traceparent),
        }
    }

    /// The forwarded caller's address, if the request carries one and the configured
    /// gateway secret next to it. A forwarded address without the right secret is ignored,
    /// not refused: such a caller is treated as what it is, a client at `peer`, and gains
    /// nothing over not sending it.
    fn forwarded_source(&self, metadata: &MetadataMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let forwarded = metadata.get(FORWARDED_FOR_METADATA)?;
        let secret = self.gateway_secret.as_ref()?;
        let is_gateway = metadata
            .get(GATEWAY_SECRET_METADATA)
            .is_some_and(|presented| secret.matches(presented.as_bytes()));
        if !is_gateway {
            if !self
                .has_warned_of_untrusted_forwarding
                .swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    peer = ?peer,
                    "a forwarded caller address came without the gateway secret and is \
                     ignored (logged once): check TOLLGATE_GATEWAY_SECRET on the gateway"
                );
            }
            return None;
        }
        let address = forwarded.to_str().ok()?.parse::<IpAddr>().ok()?;
        Some(address.to_canonical())
    }
}

#[tonic::async_trait]
impl TokenService for TokenAdapter {
    type WatchRevocationsStream = Forwarded<WatchRevocationsResponse>;

    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let origin = self.origin(&request);
        let request = request.into_inner();
        let tenant = TenantName::parse(&request.tenant).map_err(invalid_argument)?;
        let client_id = ClientId::parse(&request.client_id).map_err(invalid_argument)?;
        let secret = ClientSecret::new(request.client_secret);
        let events = self
            .issuer
            .watch_revocations(&tenant, &client_id, &secret, &origin)
            .await
            .map_err(into_status)?;
        Ok(Response::new(forward(
            events,
            watch_message,
            WATCH_BUFFER,
            self.shutdown.clone(),
        )))
    }

    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let origin = self.origin(&request);
        let mut request = TokenRequest::try_from(request.into_inner()).map_err(invalid_argument)?;
        request.origin = origin;
        let token = self.issuer.issue(request).await.map_err(into_status)?;
        Ok(Response::new(token.into()))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let origin = self.origin(&request);
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
        let origin = self.origin(&request);
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

/// A watch's event on the wire.
fn watch_message(event: WatchEvent) -> WatchRevocationsResponse {
    WatchRevocationsResponse {
        is_snapshot: event.is_snapshot,
        revocations: event.revocations.into_iter().map(entry).collect(),
        heartbeat_seconds: WATCH_HEARTBEAT.as_secs() as i64,
    }
}

/// A revocation on the wire.
fn entry(revocation: Revocation) -> RevocationEntry {
    RevocationEntry {
        kind: revocation.target.kind().to_owned(),
        value: revocation.target.subject().to_owned(),
        revoked_at: revocation.revoked_at,
        expires_at: revocation.expires_at,
        tenant_id: revocation.tenant_id.into(),
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

//! The two ways to ask for a token: gRPC `TokenService/IssueToken` over shared HTTP/2
//! connections, and the HTTP token endpoint (`POST /t/<tenant>/oauth/token`, form body,
//! `client_secret_basic`) over one keep-alive HTTP/1.1 connection per client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tollgate_proto::v1::IssueTokenRequest;
use tollgate_proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::fixture::Credential;

/// Which endpoint to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// gRPC `tollgate.v1.TokenService/IssueToken`.
    Grpc,
    /// HTTP `POST /t/<tenant>/oauth/token`.
    Http,
}

impl Mode {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Grpc => "grpc",
            Mode::Http => "http",
        }
    }
}

/// The loopback address an `http://host:port` URL names. Anything that is not a loopback
/// address is refused: this tool only loads a server on the same machine.
pub async fn loopback_address(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url}: only http:// URLs are supported");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{url} names no host"))?;
    let port = authority
        .port_u16()
        .with_context(|| format!("{url} names no port"))?;
    // An IPv6 literal keeps its brackets in the authority.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {url}"))?
        .collect();
    match addresses.iter().find(|address| address.ip().is_loopback()) {
        Some(address) if addresses.iter().all(|address| address.ip().is_loopback()) => Ok(*address),
        _ => bail!("{url} is not a loopback address; tollgate-bench only loads a local server"),
    }
}

/// A credential with everything a request needs computed once.
pub struct Prepared {
    grpc: IssueTokenRequest,
    http_path: Uri,
    http_authorization: HeaderValue,
    http_body: Bytes,
}

impl Prepared {
    /// Prepares `credential`.
    pub fn new(credential: &Credential) -> anyhow::Result<Self> {
        // RFC 6749 §2.3.1: Basic of the form-urlencoded id and secret.
        let encode = |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let user: String = encode(&credential.client_id);
        let password: String = encode(&credential.client_secret);
        let basic = STANDARD.encode(format!("{user}:{password}"));
        let http_authorization = HeaderValue::try_from(format!("Basic {basic}"))
            .context("credentials do not fit an Authorization header")?;
        let http_body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("audience", &credential.audience)
            .finish();
        let tenant: String = encode(&credential.tenant);
        let http_path = format!("/t/{tenant}/oauth/token")
            .parse()
            .with_context(|| format!("invalid tenant name {:?}", credential.tenant))?;
        Ok(Self {
            grpc: IssueTokenRequest {
                tenant: credential.tenant.clone(),
                client_id: credential.client_id.clone(),
                client_secret: credential.client_secret.clone(),
                audience: credential.audience.clone(),
                scopes: Vec::new(),
            },
            http_path,
            http_authorization,
            http_body: Bytes::from(http_body),
        })
    }
}

/// Why one request did not produce a token.
pub struct Failure {
    /// Short, for counting: `grpc:Unauthenticated`, `http:401`, `transport`, …
    pub kind: String,
    /// Longer, for the operator.
    pub detail: String,
}

impl Failure {
    fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// A request that did not complete in time.
    pub fn timeout(limit: Duration) -> Self {
        Self::new("timeout", format!("no answer within {limit:?}"))
    }
}

/// Opens `count` HTTP/2 connections to the gRPC API.
pub async fn grpc_channels(url: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    loopback_address(url).await?;
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid gRPC URL {url}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        // `connect` (not lazy): each call is its own TCP connection.
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))?,
        );
    }
    Ok(channels)
}

/// One load-generating client: a gRPC client on a shared channel, or an HTTP/1.1 connection
/// of its own.
pub enum Client {
    /// gRPC.
    Grpc(TokenServiceClient<Channel>),
    /// HTTP.
    Http(HttpClient),
}

impl Client {
    /// Asks for one token with `credential`; checks that the answer carries one.
    pub async fn issue(&mut self, credential: &Prepared) -> Result<(), Failure> {
        match self {
            Client::Grpc(client) => {
                let response =
                    client
                        .issue_token(credential.grpc.clone())
                        .await
                        .map_err(|status| {
                            Failure::new(
                                format!("grpc:{:?}", status.code()),
                                format!("gRPC {:?}: {}", status.code(), status.message()),
                            )
                        })?;
                if response.get_ref().access_token.starts_with("ey") {
                    Ok(())
                } else {
                    Err(Failure::new(
                        "invalid-answer",
                        "IssueToken answered without an access token",
                    ))
                }
            }
            Client::Http(client) => client.issue(credential).await,
        }
    }
}

/// A keep-alive HTTP/1.1 connection to the token endpoint, reopened after a failure.
pub struct HttpClient {
    address: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// What a successful answer starts with (the gateway writes `access_token` first).
const TOKEN_ANSWER_PREFIX: &[u8] = b"{\"access_token\":\"ey";

impl HttpClient {
    /// A client of the gateway at `url`; connects on first use.
    pub async fn new(url: &str) -> anyhow::Result<Self> {
        let address = loopback_address(url).await?;
        let uri: Uri = url.parse()?;
        let authority = uri
            .authority()
            .with_context(|| format!("{url} names no host"))?;
        Ok(Self {
            address,
            host: HeaderValue::try_from(authority.as_str())?,
            sender: None,
        })
    }

    /// Opens the connection now, so that connecting is not part of any measured request.
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        self.sender = Some(
            self.open()
                .await
                .map_err(|failure| anyhow::anyhow!(failure.detail))?,
        );
        Ok(())
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let transport = |error: &dyn std::fmt::Display| {
            Failure::new(
                "transport",
                format!("cannot connect to {}: {error}", self.address),
            )
        };
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|error| transport(&error))?;
        stream
            .set_nodelay(true)
            .map_err(|error| transport(&error))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| transport(&error))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes the connection.
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn issue(&mut self, credential: &Prepared) -> Result<(), Failure> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.open().await?,
        };
        let transport = |error: hyper::Error| Failure::new("transport", error.to_string());
        sender.ready().await.map_err(transport)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(credential.http_path.clone())
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, credential.http_authorization.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(Full::new(credential.http_body.clone()))
            .map_err(|error| Failure::new("request", error.to_string()))?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        // The connection is good for the next request only once the answer is read.
        self.sender = Some(sender);
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(Failure::new(
                format!("http:{}", status.as_u16()),
                format!("HTTP {status}: {text}"),
            ));
        }
        if !body.starts_with(TOKEN_ANSWER_PREFIX) {
            return Err(Failure::new(
                "invalid-answer",
                "the token endpoint answered 200 without an access token",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_addresses_that_are_not_loopback() {
        assert!(loopback_address("http://127.0.0.1:8080").await.is_ok());
        assert!(loopback_address("http://[::1]:8080").await.is_ok());
        assert!(loopback_address("http://192.0.2.1:8080").await.is_err());
        assert!(loopback_address("https://127.0.0.1:8080").await.is_err());
        assert!(loopback_address("http://127.0.0.1").await.is_err());
    }

    #[test]
    fn prepares_basic_auth_path_and_body() -> anyhow::Result<()> {
        let prepared = Prepared::new(&Credential {
            tenant: "acme".to_owned(),
            client_id: "abc".to_owned(),
            client_secret: "tgsec_x+y".to_owned(),
            audience: "https://api.example/".to_owned(),
        })?;
        assert_eq!(prepared.http_path, "/t/acme/oauth/token");
        let encoded = STANDARD.encode("abc:tgsec_x%2By");
        assert_eq!(
            prepared.http_authorization,
            format!("Basic {encoded}").as_str()
        );
        assert_eq!(
            prepared.http_body,
            "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example%2F"
        );
        Ok(())
    }
}

//! The storage API's callers, each an app of the tenant with its own credentials and a
//! [`TokenClient`] that fetches, caches and refreshes its tokens:
//!
//! - [`Archiver`], a daemon that writes archives: the write app, whose tokens come over HTTP
//!   from the token endpoint named in the issuer's RFC 8414 metadata;
//! - [`Reader`], a job that lists and reads them: the read app, whose tokens come over gRPC
//!   (`TokenService/IssueToken`).
//!
//! Both send `Authorization: Bearer` with the cached token, and drop it when the API says
//! it is no longer valid (`401 invalid_token`), so that the next call fetches a new one.

use std::time::Duration;

use http::{HeaderMap, Method, header};
use tollgate_client::{GrpcTokenSource, HttpTokenSource, TokenClient, TokenRequest};
use tonic::transport::Channel;

use crate::DemoError;
use crate::storage::{API_IDENTIFIER, READ, WRITE};

/// One answer of the storage API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `WWW-Authenticate` challenge of a refusal.
    pub challenge: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Calls the storage API with the tokens of one app.
#[derive(Debug, Clone)]
pub struct StorageClient {
    http: reqwest::Client,
    base_url: String,
    tokens: TokenClient,
    request: TokenRequest,
}

impl StorageClient {
    /// Calls the API at `base_url` (`http://host:port`) with tokens of `tokens` for
    /// `request` (the API's identifier and the scopes the app needs).
    pub fn new(base_url: impl Into<String>, tokens: TokenClient, request: TokenRequest) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base_url: base_url.into(),
            tokens,
            request,
        }
    }

    /// Token requests this caller has made (retries included); the rest came from the cache.
    pub fn token_requests(&self) -> u64 {
        self.tokens.attempts()
    }

    /// Sends one request with the app's bearer token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, DemoError> {
        let step = format!("{method} {path}");
        let token = self
            .tokens
            .get_token(&self.request)
            .await
            .map_err(|error| DemoError::failed(&step, error))?;
        let authorization = token
            .authorization()
            .map_err(|error| DemoError::failed(&step, error))?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(header::AUTHORIZATION, authorization);
        if let Some(body) = body {
            request = request.body(body);
        }
        let answer = read(request.send().await, &step).await?;
        if answer.status == 401 {
            // The token was refused (revoked, or the issuer rotated away from its key long
            // ago): the next call fetches a new one instead of presenting this one again.
            self.tokens.invalidate(&self.request);
        }
        Ok(answer)
    }
}

/// Reads a response into an [`Answer`].
pub async fn read(
    sent: Result<reqwest::Response, reqwest::Error>,
    step: &str,
) -> Result<Answer, DemoError> {
    let response = sent.map_err(|error| DemoError::failed(step, error))?;
    let status = response.status().as_u16();
    let challenge = challenge(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|error| DemoError::failed(step, error))?;
    Ok(Answer {
        status,
        challenge,
        body: body.to_vec(),
    })
}

fn challenge(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The archiver daemon: writes archives with the write app's tokens, obtained over HTTP.
#[derive(Debug, Clone)]
pub struct Archiver {
    storage: StorageClient,
}

impl Archiver {
    /// The archiver of app `client_id`, whose token endpoint is discovered from `issuer`'s
    /// metadata, writing to the storage API at `storage_url`.
    pub fn new(issuer: &str, client_id: &str, secret: String, storage_url: &str) -> Self {
        let tokens = TokenClient::new(HttpTokenSource::discover(issuer, client_id, secret));
        let request = TokenRequest::new(API_IDENTIFIER).with_scopes([WRITE]);
        Self {
            storage: StorageClient::new(storage_url, tokens, request),
        }
    }

    /// Stores `bytes` as archive `name`.
    pub async fn archive(&self, name: &str, bytes: Vec<u8>) -> Result<Answer, DemoError> {
        self.storage
            .send(Method::PUT, &format!("/archives/{name}"), Some(bytes))
            .await
    }

    /// Lists the archives (which the write app is not allowed to).
    pub async fn list(&self) -> Result<Answer, DemoError> {
        self.storage.send(Method::GET, "/archives", None).await
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u64 {
        self.storage.token_requests()
    }
}

/// The reader job: lists and reads archives with the read app's tokens, obtained over gRPC.
#[derive(Debug, Clone)]
pub struct Reader {
    storage: StorageClient,
}

impl Reader {
    /// The reader of `tenant`'s app `client_id`, getting tokens from Tollgate's gRPC API
    /// behind `channel`, reading from the storage API at `storage_url`.
    pub fn new(
        channel: Channel,
        tenant: &str,
        client_id: &str,
        secret: String,
        storage_url: &str,
    ) -> Self {
        let tokens = TokenClient::new(GrpcTokenSource::new(channel, tenant, client_id, secret));
        let request = TokenRequest::new(API_IDENTIFIER).with_scopes([READ]);
        Self {
            storage: StorageClient::new(storage_url, tokens, request),
        }
    }

    /// Lists the archives.
    pub async fn list(&self) -> Result<Answer, DemoError> {
        self.storage.send(Method::GET, "/archives", None).await
    }

    /// Reads archive `name`.
    pub async fn read(&self, name: &str) -> Result<Answer, DemoError> {
        self.storage
            .send(Method::GET, &format!("/archives/{name}"), None)
            .await
    }

    /// Tries to write (which the read app is not allowed to).
    pub async fn try_write(&self, name: &str, bytes: Vec<u8>) -> Result<Answer, DemoError> {
        self.storage
            .send(Method::PUT, &format!("/archives/{name}"), Some(bytes))
            .await
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u64 {
        self.storage.token_requests()
    }
}

//! [`HttpTokenSource`]: the client-credentials grant (RFC 6749 §4.4) at any standard token
//! endpoint, given directly or discovered from the issuer's RFC 8414 metadata (feature
//! `http`).
//!
//! Classification (what the client retries): 5xx, 408, 429 and connection failures are
//! transient, with `Retry-After` (delta-seconds) as the server's hint; every other 4xx is a
//! rejection carrying the RFC 6749 §5.2 `error` code; a 200 that is not a usable bearer
//! token response is invalid.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::{
    AccessToken, FetchError, FetchFuture, FetchedToken, Secret, TokenRequest, TokenSource,
};

/// The default timeout of one HTTP request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response read from an authorization server.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic`, each credential form-urlencoded first. Every server must
    /// support it.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// The form parameter that names the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AudienceParameter {
    /// `audience` (Tollgate, Auth0 and others).
    #[default]
    Audience,
    /// `resource` (RFC 8707).
    Resource,
}

/// Where the token endpoint is.
enum Endpoint {
    Fixed(String),
    /// Discovered once from the issuer's metadata, then kept.
    Discovered {
        issuer: String,
        token_endpoint: tokio::sync::OnceCell<String>,
    },
}

/// Gets tokens from an OAuth 2.0 token endpoint.
///
/// ```no_run
/// use tollgate_client::{HttpTokenSource, TokenClient, TokenRequest};
///
/// # async fn example() -> Result<(), tollgate_client::TokenError> {
/// let source = HttpTokenSource::discover("https://acme.hub.example.com/", "reporting", "tgsec_…");
/// let client = TokenClient::new(source);
/// let token = client
///     .get_token(&TokenRequest::new("https://archive.example.com/").with_scopes(["archive:read"]))
///     .await?;
/// # let _ = token; Ok(()) }
/// ```
pub struct HttpTokenSource {
    http: reqwest::Client,
    endpoint: Endpoint,
    client_id: String,
    secret: Secret,
    client_auth: ClientAuth,
    audience_parameter: AudienceParameter,
}

impl fmt::Debug for HttpTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = match &self.endpoint {
            Endpoint::Fixed(url) => url.as_str(),
            Endpoint::Discovered { issuer, .. } => issuer.as_str(),
        };
        f.debug_struct("HttpTokenSource")
            .field("endpoint", &endpoint)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

impl HttpTokenSource {
    /// Posts to `token_endpoint` as `client_id`.
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Self {
        Self::with_endpoint(Endpoint::Fixed(token_endpoint.into()), client_id, secret)
    }

    /// Finds the token endpoint in the RFC 8414 metadata of `issuer` on first use.
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Self {
        Self::with_endpoint(
            Endpoint::Discovered {
                issuer: issuer.into(),
                token_endpoint: tokio::sync::OnceCell::new(),
            },
            client_id,
            secret,
        )
    }

    fn with_endpoint(
        endpoint: Endpoint,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(DEFAULT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            endpoint,
            client_id: client_id.into(),
            secret: secret.into(),
            client_auth: ClientAuth::default(),
            audience_parameter: AudienceParameter::default(),
        }
    }

    /// How to authenticate (default: HTTP Basic).
    #[must_use]
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Which parameter carries the audience (default: `audience`).
    #[must_use]
    pub fn audience_parameter(mut self, parameter: AudienceParameter) -> Self {
        self.audience_parameter = parameter;
        self
    }

    /// The HTTP client (proxies, TLS roots, timeouts). `https` endpoints need one of
    /// reqwest's TLS features enabled in the application.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    async fn token_endpoint(&self) -> Result<&str, FetchError> {
        match &self.endpoint {
            Endpoint::Fixed(url) => Ok(url),
            Endpoint::Discovered {
                issuer,
                token_endpoint,
            } => token_endpoint
                .get_or_try_init(|| discover(&self.http, issuer))
                .await
                .map(String::as_str),
        }
    }

    /// `Basic <credentials>`, each form-urlencoded first (RFC 6749 §2.3.1), marked sensitive.
    fn basic_credentials(&self) -> Result<reqwest::header::HeaderValue, FetchError> {
        let encode =
            |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        let credentials = STANDARD.encode(format!(
            "{}:{}",
            encode(&self.client_id),
            encode(self.secret.expose())
        ));
        let mut value = reqwest::header::HeaderValue::try_from(format!("Basic {credentials}"))
            .map_err(|_| FetchError::Invalid("credentials are not a header value".to_owned()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    async fn fetch_once(&self, request: &TokenRequest) -> Result<FetchedToken, FetchError> {
        // Built in a block: the serializer must not live across an await.
        let (body, basic) = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !request.scopes.is_empty() {
                form.append_pair("scope", &request.scopes.join(" "));
            }
            if let Some(audience) = &request.audience {
                let name = match self.audience_parameter {
                    AudienceParameter::Audience => "audience",
                    AudienceParameter::Resource => "resource",
                };
                form.append_pair(name, audience);
            }
            let basic = match self.client_auth {
                ClientAuth::Basic => Some(self.basic_credentials()?),
                ClientAuth::Post => {
                    form.append_pair("client_id", &self.client_id);
                    form.append_pair("client_secret", self.secret.expose());
                    None
                }
            };
            (form.finish(), basic)
        };
        let endpoint = self.token_endpoint().await?;
        let mut builder = self
            .http
            .post(endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some(basic) = basic {
            builder = builder.header(reqwest::header::AUTHORIZATION, basic);
        }
        let response = builder.body(body).send().await.map_err(|error| {
            FetchError::transient(format!("{endpoint}: {}", without_url(&error)))
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(response).await?;
        if status.is_success() {
            return parse_token_response(&body);
        }
        let code = status.as_u16();
        if status.is_server_error() || code == 429 || code == 408 {
            return Err(FetchError::Transient {
                reason: format!("{endpoint} answered {status}"),
                retry_after,
            });
        }
        let document: Option<Value> = serde_json::from_slice(&body).ok();
        let member = |name: &str| {
            document
                .as_ref()
                .and_then(|document| document.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Err(FetchError::Rejected {
            error: member("error").unwrap_or_else(|| format!("http_{code}")),
            description: member("error_description"),
        })
    }
}

impl TokenSource for HttpTokenSource {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> FetchFuture<'a> {
        Box::pin(self.fetch_once(request))
    }
}

/// reqwest's error text, without the URL it may include (ours is logged separately).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{text}: {source}"),
        None => text,
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| FetchError::transient(format!("reading the response: {error}")))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(FetchError::Invalid("the response is too large".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads an RFC 6749 §5.1 response.
fn parse_token_response(body: &[u8]) -> Result<FetchedToken, FetchError> {
    let invalid = |why: &str| FetchError::Invalid(why.to_owned());
    let document: Value =
        serde_json::from_slice(body).map_err(|_| invalid("the token response is not JSON"))?;
    let access_token = document
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| invalid("the token response has no access_token"))?;
    let token_type = document.get("token_type").and_then(Value::as_str);
    if token_type.is_some_and(|kind| !kind.eq_ignore_ascii_case("bearer")) {
        return Err(invalid("the token is not a bearer token"));
    }
    // Some servers send `expires_in` as a string.
    let expires_in = match document.get("expires_in") {
        Some(Value::Number(seconds)) => seconds.as_u64(),
        Some(Value::String(seconds)) => seconds.parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs);
    let scopes = document
        .get("scope")
        .and_then(Value::as_str)
        .map(|scope| scope.split_whitespace().map(str::to_owned).collect());
    Ok(FetchedToken {
        access_token: AccessToken::new(access_token),
        expires_in,
        scopes,
    })
}

/// Where an issuer's metadata may be: RFC 8414 §3.1 (the well-known segment between host and
/// path), then appended to the issuer (Tollgate's `/t/<tenant>/` form), then OpenID Connect
/// discovery's path.
fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let path_start = trimmed
        .find("://")
        .and_then(|scheme_end| {
            trimmed
                .get(scheme_end + 3..)
                .and_then(|rest| rest.find('/'))
                .map(|slash| scheme_end + 3 + slash)
        })
        .unwrap_or(trimmed.len());
    let (origin, path) = trimmed.split_at(path_start);
    let mut urls = vec![format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    )];
    if !path.is_empty() {
        urls.push(format!("{trimmed}/.well-known/oauth-authorization-server"));
    }
    urls.push(format!("{trimmed}/.well-known/openid-configuration"));
    urls
}

/// The `token_endpoint` of `issuer`'s metadata, which must name exactly this issuer
/// (RFC 8414 §3.3).
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, FetchError> {
    let mut failures = Vec::new();
    for url in metadata_urls(issuer) {
        let response = match http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                return Err(FetchError::transient(format!(
                    "metadata at {url}: {}",
                    without_url(&error)
                )));
            }
        };
        let status = response.status();
        if status.is_server_error() {
            return Err(FetchError::transient(format!(
                "metadata at {url}: {status}"
            )));
        }
        if !status.is_success() {
            failures.push(format!("{url}: {status}"));
            continue;
        }
        let body = read_limited(response).await?;
        let document: Value = serde_json::from_slice(&body)
            .map_err(|_| FetchError::Invalid(format!("metadata at {url} is not JSON")))?;
        if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(FetchError::Invalid(format!(
                "metadata at {url} names another issuer (RFC 8414 §3.3)"
            )));
        }
        return document
            .get("token_endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                FetchError::Invalid(format!("metadata at {url} has no token_endpoint"))
            });
    }
    Err(FetchError::Invalid(format!(
        "no metadata for issuer {issuer}: {}",
        failures.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::{metadata_urls, parse_token_response};
    use crate::FetchError;

    /// What a token response yields: `expires_in` seconds and the scopes.
    type Read<'a> = (Option<u64>, Option<&'a [&'a str]>);

    #[test]
    fn token_responses_are_read_leniently_but_must_be_bearer_tokens() {
        let invalid = |why: &str| Err(FetchError::Invalid(why.to_owned()));
        #[rustfmt::skip]
        let cases: [(&str, Result<Read, FetchError>); 9] = [
            (r#"{"access_token":"t","token_type":"Bearer","expires_in":3600,"scope":"a b"}"#, Ok((Some(3600), Some(&["a", "b"])))),
            (r#"{"access_token":"t","token_type":"bearer","expires_in":"60"}"#,               Ok((Some(60), None))),
            (r#"{"access_token":"t"}"#,                                                      Ok((None, None))),
            (r#"{"access_token":"t","token_type":"DPoP"}"#,  invalid("the token is not a bearer token")),
            (r#"{"access_token":""}"#,                       invalid("the token response has no access_token")),
            (r#"{"token_type":"Bearer"}"#,                   invalid("the token response has no access_token")),
            (r#"{"access_token":7}"#,                        invalid("the token response has no access_token")),
            ("<html>",                                       invalid("the token response is not JSON")),
            ("",                                             invalid("the token response is not JSON")),
        ];
        for (body, expected) in cases {
            let actual = parse_token_response(body.as_bytes()).map(|token| {
                (
                    token.expires_in.map(|d| d.as_secs()),
                    token.scopes.map(|s| s.join(" ")),
                )
            });
            let expected = expected.map(|(expires, scopes)| (expires, scopes.map(|s| s.join(" "))));
            assert_eq!(actual, expected, "{body}");
        }
    }

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_practice_put_it() {
        assert_eq!(
            metadata_urls("http://127.0.0.1:8080/t/acme/"),
            [
                "http://127.0.0.1:8080/.well-known/oauth-authorization-server/t/acme",
                "http://127.0.0.1:8080/t/acme/.well-known/oauth-authorization-server",
                "http://127.0.0.1:8080/t/acme/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            metadata_urls("https://login.example"),
            [
                "https://login.example/.well-known/oauth-authorization-server",
                "https://login.example/.well-known/openid-configuration",
            ]
        );
    }
}

//! Fetching small JSON documents from an issuer: RFC 8414 metadata and the JWK Set, with a
//! size cap and the `Cache-Control: max-age` the issuer sent.

use serde_json::Value;

/// The largest document read from an issuer; a JWKS or metadata document is a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A fetched document and how long the issuer lets us keep it.
pub(crate) struct Fetched {
    pub(crate) body: String,
    /// `max-age` in seconds; `Some(0)` for `no-store`/`no-cache`; `None` when unstated.
    pub(crate) max_age: Option<u64>,
}

/// GETs `url`; any status but 200 is an error naming it.
pub(crate) async fn fetch(http: &reqwest::Client, url: &str) -> Result<Fetched, String> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| format!("cannot fetch {url}: {error}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{url} answered {status}"));
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .and_then(max_age);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("cannot read {url}: {error}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let body = String::from_utf8(body).map_err(|_| format!("{url} sent text that is not UTF-8"))?;
    Ok(Fetched { body, max_age })
}

/// The freshness lifetime a `Cache-Control` value grants.
pub(crate) fn max_age(cache_control: &str) -> Option<u64> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            age = value.trim_matches('"').parse::<u64>().ok();
        }
    }
    age
}

/// Where an issuer's metadata may be, in the order tried: RFC 8414 §3.1 (the well-known
/// segment between host and path), then appended to the issuer (where Tollgate, like most
/// servers with a path in their issuer, serves it), then OpenID Connect discovery's path.
pub(crate) fn metadata_urls(issuer: &str) -> Vec<String> {
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

/// Fetches the metadata of `issuer` from the first of `urls` that serves it, and checks
/// that it names exactly this issuer (RFC 8414 §3.3: otherwise it must not be used).
pub(crate) async fn metadata(
    http: &reqwest::Client,
    issuer: &str,
    urls: &[String],
) -> Result<serde_json::Map<String, Value>, String> {
    let mut failures = Vec::new();
    for url in urls {
        let fetched = match fetch(http, url).await {
            Ok(fetched) => fetched,
            Err(error) => {
                failures.push(error);
                continue;
            }
        };
        let document: serde_json::Map<String, Value> = serde_json::from_str(&fetched.body)
            .map_err(|error| format!("{url} is not a JSON object: {error}"))?;
        let named = document.get("issuer").and_then(Value::as_str);
        if named != Some(issuer) {
            return Err(format!(
                "{url} names issuer {named:?}, not {issuer:?} (RFC 8414 §3.3)"
            ));
        }
        return Ok(document);
    }
    Err(format!(
        "no metadata for issuer {issuer:?}: {}",
        failures.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::{max_age, metadata_urls};

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_practice_put_it() {
        #[rustfmt::skip]
        let cases: [(&str, &[&str]); 3] = [
            ("https://acme.hub.example/", &[
                "https://acme.hub.example/.well-known/oauth-authorization-server",
                "https://acme.hub.example/.well-known/openid-configuration",
            ]),
            ("http://127.0.0.1:8080/t/acme/", &[
                "http://127.0.0.1:8080/.well-known/oauth-authorization-server/t/acme",
                "http://127.0.0.1:8080/t/acme/.well-known/oauth-authorization-server",
                "http://127.0.0.1:8080/t/acme/.well-known/openid-configuration",
            ]),
            ("https://login.example/tenant1", &[
                "https://login.example/.well-known/oauth-authorization-server/tenant1",
                "https://login.example/tenant1/.well-known/oauth-authorization-server",
                "https://login.example/tenant1/.well-known/openid-configuration",
            ]),
        ];
        for (issuer, expected) in cases {
            assert_eq!(metadata_urls(issuer), expected, "{issuer}");
        }
    }

    #[test]
    fn cache_control_max_age_is_read() {
        #[rustfmt::skip]
        let cases = [
            ("public, max-age=300",        Some(300)),
            ("max-age=60, must-revalidate", Some(60)),
            ("Max-Age=5",                  Some(5)),
            ("no-store",                   Some(0)),
            ("max-age=600, no-cache",      Some(0)),
            ("public",                     None),
            ("max-age=soon",               None),
        ];
        for (header, expected) in cases {
            assert_eq!(max_age(header), expected, "{header}");
        }
    }
}

//! Which tenant a request is for: the `{tenant}` path segment of `/t/<tenant>/…` routes (and
//! of the inserted metadata routes `/.well-known/<document>/t/<tenant>`), or else the first label of the request's host when the host ends with the issuer template's
//! host suffix.

use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use tollgate_domain::TenantName;

use crate::{Gateway, TokenBackend};

/// The tenant of a request, or `None` when none is named or the name is not a valid tenant
/// name. Each endpoint decides what `None` means: 404, or `invalid_client` at the token
/// endpoint.
pub(crate) struct ResolvedTenant(pub(crate) Option<TenantName>);

impl<B: TokenBackend> FromRequestParts<Arc<Gateway<B>>> for ResolvedTenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway<B>>,
    ) -> Result<Self, Self::Rejection> {
        // A `/t/<tenant>/` route names the tenant explicitly; the host is then irrelevant.
        match RawPathParams::from_request_parts(parts, gateway).await {
            Ok(params) => {
                if let Some((_, name)) = params.iter().find(|(key, _)| *key == "tenant") {
                    return Ok(Self(TenantName::parse(name).ok()));
                }
            }
            // The segment is there but is not UTF-8 once percent-decoded (`/t/%80/`): it
            // names no tenant, and the host must not stand in for it.
            Err(RawPathParamsRejection::InvalidUtf8InPathParam(_)) => return Ok(Self(None)),
            Err(_) => {}
        }
        let Some(suffix) = gateway.host_suffix.as_deref() else {
            return Ok(Self(None));
        };
        // RFC 9112 §3.2.2: an absolute-form target (and HTTP/2's `:authority`, which hyper
        // puts in the URI) takes precedence over `Host`.
        let tenant = match parts.uri.authority() {
            Some(authority) => tenant_from_host(authority.host(), suffix),
            None => parts
                .headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .and_then(|host| tenant_from_host(host, suffix)),
        };
        Ok(Self(tenant))
    }
}

/// The tenant in `host` (`<tenant><suffix>[:port]`), compared case-insensitively, as DNS
/// names are. `suffix` is lowercase and starts with `.`.
pub(crate) fn tenant_from_host(host: &str, suffix: &str) -> Option<TenantName> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    // A fully qualified name may end with the root's empty label.
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_len = host.len().checked_sub(suffix.len())?;
    let (label, tail) = host.split_at_checked(label_len)?;
    if !tail.eq_ignore_ascii_case(suffix) {
        return None;
    }
    // Lowercase on the stack: tenant names are at most 63 bytes, and the common case
    // should not allocate beyond the `TenantName` itself.
    let mut lower = [0u8; 63];
    let lower = lower.get_mut(..label.len())?;
    lower.copy_from_slice(label.as_bytes());
    lower.make_ascii_lowercase();
    TenantName::parse(std::str::from_utf8(lower).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let suffix = ".hub.localhost";
        for (host, expected) in [
            ("acme.hub.localhost", Some("acme")),
            ("acme.hub.localhost:8080", Some("acme")),
            ("ACME.Hub.LocalHost:8080", Some("acme")),
            ("acme.hub.localhost.", Some("acme")),
            ("acme.hub.localhost.:443", Some("acme")),
            ("a-1.hub.localhost", Some("a-1")),
            ("hub.localhost", None),
            (".hub.localhost", None),
            ("localhost:8080", None),
            ("x.acme.hub.localhost", None),
            ("acme.hub.localhost.evil.com", None),
            ("acmehub.localhost", None),
            ("-acme.hub.localhost", None),
            ("acme.hub.localhost:", None),
            ("acme.hub.localhost:80x", None),
            ("[::1]:8080", None),
            ("é.hub.localhost", None),
            ("", None),
        ] {
            assert_eq!(
                tenant_from_host(host, suffix)
                    .as_ref()
                    .map(TenantName::as_str),
                expected,
                "{host:?}"
            );
        }
        let long = format!("{}.hub.localhost", "a".repeat(63));
        assert!(tenant_from_host(&long, suffix).is_some());
        let too_long = format!("{}.hub.localhost", "a".repeat(64));
        assert!(tenant_from_host(&too_long, suffix).is_none());
    }
}

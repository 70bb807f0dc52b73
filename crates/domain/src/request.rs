//! The client-credentials request and its outcome, as every transport hands them to the
//! issuer. Parsed values only: transports do the parsing.

use crate::{ApiIdentifier, ClientId, ClientSecret, InvalidValue, Scope, ScopeSet, TenantName};

/// A validated client-credentials token request (RFC 6749 §4.4.2).
#[derive(Clone)]
pub struct TokenRequest {
    /// The tenant the app and the API belong to.
    pub tenant: TenantName,
    /// The authenticating app.
    pub client_id: ClientId,
    /// The app's secret, as presented.
    pub client_secret: ClientSecret,
    /// The API the token is for.
    pub audience: ApiIdentifier,
    /// The scopes asked for; `None` asks for every scope the app holds on the API.
    pub scopes: Option<ScopeSet>,
    /// Where the request came from: address, protocol, trace id.
    pub origin: RequestOrigin,
}

impl TokenRequest {
    /// Most scopes one token request may name.
    ///
    /// Apps ask for the few scopes a call needs; 64 is far above any honest request, and
    /// it bounds the work and the memory an unauthenticated request can cost (parsing,
    /// comparing with the grant, recording the refusal). The other limits on a request are
    /// those of its values: [`TenantName::MAX_LEN`], [`ClientId::MAX_LEN`],
    /// [`ApiIdentifier::MAX_LEN`] and [`Scope::MAX_LEN`]. A request over any of them is
    /// refused by the transport before it reaches the issuer.
    pub const MAX_SCOPES: usize = 64;

    /// The scopes of a request given as separate values (gRPC `scopes`): `None` when there
    /// are none (every scope held), an error naming `field` when there are more than
    /// [`TokenRequest::MAX_SCOPES`] (counted before any is parsed) or one is not a scope
    /// token. Duplicates count: the limit is on what was sent.
    pub fn parse_scopes<'a>(
        values: impl ExactSizeIterator<Item = &'a str>,
        field: &'static str,
    ) -> Result<Option<ScopeSet>, InvalidValue> {
        if values.len() > Self::MAX_SCOPES {
            return Err(too_many_scopes(field));
        }
        if values.len() == 0 {
            return Ok(None);
        }
        ScopeSet::parse_all(values)
            .map(Some)
            .map_err(|error| error.for_field(field))
    }

    /// The scopes of a space-delimited `scope` parameter (RFC 6749 §3.3), with the rules of
    /// [`TokenRequest::parse_scopes`]; runs of spaces are tolerated, and an all-space value
    /// names no scope. Stops reading at the first token past the limit.
    pub fn parse_scope_parameter(value: &str) -> Result<Option<ScopeSet>, InvalidValue> {
        let field = "scope";
        let tokens = value.split(' ').filter(|part| !part.is_empty());
        if tokens.clone().nth(Self::MAX_SCOPES).is_some() {
            return Err(too_many_scopes(field));
        }
        let scopes = ScopeSet::parse_all(tokens).map_err(|error| error.for_field(field))?;
        Ok((!scopes.is_empty()).then_some(scopes))
    }
}

fn too_many_scopes(field: &'static str) -> InvalidValue {
    InvalidValue::new(
        field,
        format!(
            "at most {} scopes may be requested",
            TokenRequest::MAX_SCOPES
        ),
    )
}

/// A client-authenticated request about an existing token: revocation (RFC 7009) or
/// introspection (RFC 7662).
#[derive(Clone)]
pub struct TokenCallRequest {
    /// The tenant of the calling app.
    pub tenant: TenantName,
    /// The calling app.
    pub client_id: ClientId,
    /// Its secret.
    pub client_secret: ClientSecret,
    /// The token in question, as presented (not yet verified).
    pub token: String,
    /// Where the request came from.
    pub origin: RequestOrigin,
}

/// A token the issuer signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWS.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The scopes it carries.
    pub scopes: ScopeSet,
}

/// A scope an API defines, with its description for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScopeDefinition {
    /// The scope token.
    pub value: Scope,
    /// What it allows.
    pub description: String,
}

/// The protocol a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// The HTTP edge (token endpoint, revocation, introspection).
    Http,
    /// The gRPC API.
    #[default]
    Grpc,
}

impl Transport {
    /// The name recorded in audit events: `http` or `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        }
    }

    /// The transport named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Transport::Http, Transport::Grpc]
            .into_iter()
            .find(|transport| transport.as_str() == name)
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A W3C Trace Context trace id: 32 lowercase hex digits, not all zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    /// The trace id of a `traceparent` header value (`00-<trace id>-<parent id>-<flags>`);
    /// `None` unless it is well formed (an invalid header is ignored, as the W3C
    /// specification asks).
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        let is_hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let well_formed = is_hex(version, 2)
            && version != "ff"
            && is_hex(trace_id, 32)
            && is_hex(parent_id, 16)
            && is_hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && parent_id.bytes().any(|b| b != b'0')
            // Version 00 has exactly four fields; later versions may append more.
            && (version != "00" || parts.next().is_none());
        well_formed.then(|| Self(trace_id.to_owned()))
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a request came from, as the transport saw it: recorded in the audit trail, and the
/// address feeds the limits on failed authentications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    /// The peer's network address, when the transport knows it.
    pub source: Option<std::net::IpAddr>,
    /// The protocol.
    pub transport: Transport,
    /// The caller's trace id (W3C `traceparent`), when it sent one.
    pub trace_id: Option<TraceId>,
}

impl RequestOrigin {
    /// A request over `transport` from `source`, without a trace id.
    pub fn new(transport: Transport, source: Option<std::net::IpAddr>) -> Self {
        Self {
            source,
            transport,
            trace_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TokenRequest, TraceId};

    #[test]
    fn scope_lists_are_bounded_before_they_are_parsed() {
        let at_limit: Vec<String> = (0..TokenRequest::MAX_SCOPES)
            .map(|i| format!("s{i}"))
            .collect();
        let over: Vec<String> = (0..=TokenRequest::MAX_SCOPES)
            .map(|i| format!("s{i}"))
            .collect();
        let parsed = TokenRequest::parse_scopes(at_limit.iter().map(String::as_str), "scopes");
        assert_eq!(parsed.ok().flatten().map(|s| s.len()), Some(64));
        let refused = TokenRequest::parse_scopes(over.iter().map(String::as_str), "scopes");
        assert_eq!(
            refused.err().map(|e| e.to_string()),
            Some("scopes: at most 64 scopes may be requested".to_owned())
        );
        // Counted before parsing: an invalid 65th value is still "too many".
        let mut bad = at_limit.clone();
        bad.push("a\"b".to_owned());
        let refused = TokenRequest::parse_scopes(bad.iter().map(String::as_str), "scopes");
        assert_eq!(
            refused.err().map(|e| e.to_string()),
            Some("scopes: at most 64 scopes may be requested".to_owned())
        );
        assert_eq!(
            TokenRequest::parse_scopes(std::iter::empty(), "scopes").ok(),
            Some(None)
        );

        let parameter = at_limit.join("  ");
        let parsed = TokenRequest::parse_scope_parameter(&parameter);
        assert_eq!(parsed.ok().flatten().map(|s| s.len()), Some(64));
        let refused = TokenRequest::parse_scope_parameter(&over.join(" "));
        assert_eq!(
            refused.err().map(|e| e.to_string()),
            Some("scope: at most 64 scopes may be requested".to_owned())
        );
        assert_eq!(TokenRequest::parse_scope_parameter("   ").ok(), Some(None));
        let refused = TokenRequest::parse_scope_parameter(&"x".repeat(129));
        assert_eq!(
            refused.err().map(|e| e.to_string()),
            Some("scope: must be at most 128 characters".to_owned())
        );
    }

    #[test]
    fn trace_ids_come_only_from_well_formed_traceparents() {
        let cases = [
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ",
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                None,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                None,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                None,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                None,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                None,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                None,
            ),
            (
                "00-tgsec_aaaaaaaaaaaaaaaaaaaaaaaaaa-00f067aa0ba902b7-01",
                None,
            ),
            ("", None),
        ];
        for (header, expected) in cases {
            let got = TraceId::from_traceparent(header);
            assert_eq!(got.as_ref().map(TraceId::as_str), expected, "{header:?}");
        }
    }
}

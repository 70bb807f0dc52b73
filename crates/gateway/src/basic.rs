//! `client_secret_basic`: client credentials in an `Authorization: Basic` header
//! (RFC 6749 §2.3.1, RFC 7617).
//!
//! RFC 6749 has the client form-url-encode its id and secret *before* Basic encoding, so
//! that a `:` in either survives; both halves are therefore form-url-decoded after base64.

use std::borrow::Cow;
use std::fmt;

use axum::http::HeaderValue;
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 that also accepts a missing `=` padding, which some clients omit.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The id and secret from a Basic header, decoded.
#[derive(PartialEq, Eq)]
pub(crate) struct BasicCredentials {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

// Deliberately shows only the id: the secret must never reach a log.
impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why an `Authorization` header is not usable Basic credentials; both are `invalid_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthorizationError {
    /// A scheme other than Basic.
    UnsupportedScheme,
    /// Basic, but not `base64(id ":" secret)` in UTF-8.
    Malformed,
}

impl fmt::Display for AuthorizationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthorizationError::UnsupportedScheme => {
                "unsupported authentication scheme; use Basic or client_secret_post"
            }
            AuthorizationError::Malformed => "malformed Basic credentials",
        })
    }
}

/// Reads an `Authorization` header as Basic client credentials.
pub(crate) fn parse_authorization(
    header: &HeaderValue,
) -> Result<BasicCredentials, AuthorizationError> {
    let header = header.as_bytes();
    // RFC 9110 §11.4: the scheme is a case-insensitive token followed by one or more spaces.
    let (scheme, encoded) = match header.iter().position(|&b| b == b' ') {
        Some(space) => (&header[..space], &header[space..]),
        None => (header, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(AuthorizationError::UnsupportedScheme);
    }
    let encoded = encoded.trim_ascii();
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| AuthorizationError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthorizationError::Malformed)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(AuthorizationError::Malformed)?;
    let client_id = form_decode(id)?.into_owned();
    let client_secret = form_decode(secret)?.into_owned();
    Ok(BasicCredentials {
        client_id,
        client_secret,
    })
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte.
/// A `%` not followed by two hex digits stays as it is, as in the form body parser.
fn form_decode(input: &str) -> Result<Cow<'_, str>, AuthorizationError> {
    if !input.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(input));
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                if let (Some(high), Some(low)) = (high, low) {
                    out.push(high << 4 | low);
                    index += 2;
                } else {
                    out.push(b'%');
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| AuthorizationError::Malformed)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(scheme: &str, credentials: &[u8]) -> HeaderValue {
        let value = format!(
            "{scheme} {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    fn ok(id: &str, secret: &str) -> Result<BasicCredentials, AuthorizationError> {
        Ok(BasicCredentials {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        })
    }

    #[test]
    fn decodes_credentials() {
        for (credentials, expected) in [
            (&b"app:tgsec_abc"[..], ok("app", "tgsec_abc")),
            // The secret may contain ':' once the id has been split off.
            (b"app:a:b", ok("app", "a:b")),
            // Url-encoded ':' and '%' in both halves.
            (b"a%3Ab:s%3As%25x", ok("a:b", "s:s%x")),
            (b"a%3ab:s%2bs", ok("a:b", "s+s")),
            (b"app:a+b", ok("app", "a b")),
            // Lenient on stray '%', like the form parser.
            (b"app:100%", ok("app", "100%")),
            (b"app:%zz%4", ok("app", "%zz%4")),
            (b"app:", ok("app", "")),
            (b":secret", ok("", "secret")),
            (b"app:s%C3%A9", ok("app", "s\u{e9}")),
            (b"appsecret", Err(AuthorizationError::Malformed)),
            (b"app:\xff", Err(AuthorizationError::Malformed)),
            (b"app:%ff", Err(AuthorizationError::Malformed)),
        ] {
            assert_eq!(
                parse_authorization(&header("Basic", credentials)),
                expected,
                "{}",
                String::from_utf8_lossy(credentials)
            );
        }
    }

    #[test]
    fn header_shapes() {
        for (value, expected) in [
            // Scheme is case-insensitive; extra spaces and missing padding are tolerated.
            ("basic YXBwOnM=", ok("app", "s")),
            ("BASIC   YXBwOnM=  ", ok("app", "s")),
            ("Basic YXBwOnM", ok("app", "s")),
            ("Basic YXBwOnM=!", Err(AuthorizationError::Malformed)),
            ("Basic not base64", Err(AuthorizationError::Malformed)),
            ("Basic ", Err(AuthorizationError::Malformed)),
            ("Basic", Err(AuthorizationError::Malformed)),
            ("Basic YXBwOnM=YXBw", Err(AuthorizationError::Malformed)),
            (
                "Bearer YXBwOnM=",
                Err(AuthorizationError::UnsupportedScheme),
            ),
            (
                "Basicx YXBwOnM=",
                Err(AuthorizationError::UnsupportedScheme),
            ),
            ("", Err(AuthorizationError::UnsupportedScheme)),
        ] {
            assert_eq!(
                parse_authorization(&HeaderValue::from_static(value)),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() -> Result<(), AuthorizationError> {
        let credentials = parse_authorization(&header("Basic", b"app:hunter2"))?;
        assert_eq!(
            format!("{credentials:?}"),
            r#"BasicCredentials { client_id: "app", .. }"#
        );
        Ok(())
    }
}

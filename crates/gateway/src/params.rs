//! The parameters of the client-authenticated endpoints (token, revocation, introspection),
//! read from a form (RFC 6749 §4.4.2) or a flat JSON object, without validating their values:
//! that is the endpoints' job.
//!
//! Both readers follow RFC 6749 §3.1–3.2: a parameter given twice is an error, an empty value
//! is the same as no value, unknown parameters are ignored. Values borrow from the body
//! wherever no unescaping was needed.

use std::borrow::Cow;
use std::fmt;

use axum::http::HeaderValue;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// How the body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    /// `application/x-www-form-urlencoded`, the format RFC 6749 specifies.
    Form,
    /// `application/json`, accepted because many client libraries send it.
    Json,
}

impl BodyFormat {
    /// The format named by a `Content-Type` header. Parameters such as `charset` are ignored:
    /// both formats are UTF-8 by definition.
    pub(crate) fn of(content_type: Option<&HeaderValue>) -> Result<Self, ParamError> {
        let Some(value) = content_type.and_then(|value| value.to_str().ok()) else {
            return Err(ParamError::UnsupportedContentType);
        };
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Ok(Self::Form)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(Self::Json)
        } else {
            Err(ParamError::UnsupportedContentType)
        }
    }
}

/// Why the body could not be read as parameters; every case is `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// Neither a form nor JSON.
    UnsupportedContentType,
    /// Not JSON, or JSON but not an object.
    MalformedJson,
    /// A known parameter appears twice.
    Repeated(&'static str),
    /// A known parameter's JSON value is not a string.
    NotAString(&'static str),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::UnsupportedContentType => f.write_str(
                "Content-Type must be application/x-www-form-urlencoded or application/json",
            ),
            ParamError::MalformedJson => f.write_str("the body must be a JSON object"),
            ParamError::Repeated(name) => write!(f, "{name} must not be repeated"),
            ParamError::NotAString(name) => write!(f, "{name} must be a string"),
        }
    }
}

/// Which endpoint's parameters to read: a parameter another endpoint knows is unknown here,
/// and is ignored like any other unknown parameter (even repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The token endpoint (RFC 6749 §4.4.2, RFC 8707).
    Token,
    /// Revocation (RFC 7009 §2.1) and introspection (RFC 7662 §2.1).
    TokenCall,
}

impl Endpoint {
    fn reads(self, param: Param) -> bool {
        match param {
            Param::ClientId | Param::ClientSecret => true,
            Param::GrantType | Param::Audience | Param::Resource | Param::Scope => {
                self == Endpoint::Token
            }
            Param::Token | Param::TokenTypeHint => self == Endpoint::TokenCall,
        }
    }
}

/// The parameters of a request to one of the client-authenticated endpoints; `None` when
/// absent, empty, or not read by the endpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Params<'a> {
    pub(crate) client_id: Option<Cow<'a, str>>,
    pub(crate) client_secret: Option<Cow<'a, str>>,
    pub(crate) grant_type: Option<Cow<'a, str>>,
    pub(crate) audience: Option<Cow<'a, str>>,
    /// RFC 8707's name for the audience.
    pub(crate) resource: Option<Cow<'a, str>>,
    pub(crate) scope: Option<Cow<'a, str>>,
    /// The token to revoke or introspect.
    pub(crate) token: Option<Cow<'a, str>>,
    pub(crate) token_type_hint: Option<Cow<'a, str>>,
}

/// A parameter name some endpoint knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    ClientId,
    ClientSecret,
    GrantType,
    Audience,
    Resource,
    Scope,
    Token,
    TokenTypeHint,
}

impl Param {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "client_id" => Param::ClientId,
            "client_secret" => Param::ClientSecret,
            "grant_type" => Param::GrantType,
            "audience" => Param::Audience,
            "resource" => Param::Resource,
            "scope" => Param::Scope,
            "token" => Param::Token,
            "token_type_hint" => Param::TokenTypeHint,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Param::ClientId => "client_id",
            Param::ClientSecret => "client_secret",
            Param::GrantType => "grant_type",
            Param::Audience => "audience",
            Param::Resource => "resource",
            Param::Scope => "scope",
            Param::Token => "token",
            Param::TokenTypeHint => "token_type_hint",
        }
    }
}

impl<'a> Params<'a> {
    /// Reads `endpoint`'s parameters from `body` in `format`.
    pub(crate) fn parse(
        endpoint: Endpoint,
        format: BodyFormat,
        body: &'a [u8],
    ) -> Result<Self, ParamError> {
        match format {
            BodyFormat::Form => Self::from_form(endpoint, body),
            BodyFormat::Json => Self::from_json(endpoint, body),
        }
    }

    /// Reads an `application/x-www-form-urlencoded` body. Invalid UTF-8 after decoding
    /// becomes U+FFFD, which no valid value contains.
    pub(crate) fn from_form(endpoint: Endpoint, body: &'a [u8]) -> Result<Self, ParamError> {
        let mut params = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            if let Some(param) = Param::from_name(&name).filter(|&param| endpoint.reads(param)) {
                params.set(param, value)?;
            }
        }
        Ok(params)
    }

    /// Reads a flat JSON object whose known members are strings.
    pub(crate) fn from_json(endpoint: Endpoint, body: &'a [u8]) -> Result<Self, ParamError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let outcome = (&mut deserializer)
            .deserialize_map(ParamsVisitor { endpoint })
            .and_then(|params| deserializer.end().map(|()| params));
        match outcome {
            Ok(result) => result,
            Err(_) => Err(ParamError::MalformedJson),
        }
    }

    fn set(&mut self, param: Param, value: Cow<'a, str>) -> Result<(), ParamError> {
        // RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were
        // omitted", so an empty value neither counts nor collides with a later one.
        if value.is_empty() {
            return Ok(());
        }
        let slot = match param {
            Param::ClientId => &mut self.client_id,
            Param::ClientSecret => &mut self.client_secret,
            Param::GrantType => &mut self.grant_type,
            Param::Audience => &mut self.audience,
            Param::Resource => &mut self.resource,
            Param::Scope => &mut self.scope,
            Param::Token => &mut self.token,
            Param::TokenTypeHint => &mut self.token_type_hint,
        };
        if slot.is_some() {
            return Err(ParamError::Repeated(param.name()));
        }
        *slot = Some(value);
        Ok(())
    }
}

/// Visits a JSON body's members one by one. A parameter error is the visited *value* rather
/// than a serde error so that it keeps its precise meaning; serde errors mean "not JSON".
struct ParamsVisitor {
    endpoint: Endpoint,
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Result<Params<'de>, ParamError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    // serde_json's `Map` keeps the last of duplicate keys silently; visiting the entries
    // one by one is what lets a repeated parameter be refused.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = Params::default();
        let mut error = None;
        while let Some(key) = map.next_key::<Key>()? {
            let Key(Some(param)) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !self.endpoint.reads(param) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value::<JsonValue<'de>>()?;
            if error.is_some() {
                // Keep consuming: serde_json requires the whole object to be read.
                continue;
            }
            let outcome = match value {
                JsonValue::Text(text) => params.set(param, text),
                JsonValue::Other => Err(ParamError::NotAString(param.name())),
            };
            error = outcome.err();
        }
        Ok(match error {
            Some(error) => Err(error),
            None => Ok(params),
        })
    }
}

/// A member name: a known parameter or `None`. Compared in place, never copied.
struct Key(Option<Param>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(Key(Param::from_name(name)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A member value: a string (borrowed unless it had escapes) or anything else.
enum JsonValue<'a> {
    Text(Cow<'a, str>),
    Other,
}

impl<'de> de::Deserialize<'de> for JsonValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = JsonValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(text)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonValue::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(JsonValue::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(JsonValue::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonValue::Other)
    }

    // `null` is not a string either: the request says "no value" by leaving the member out.
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(value: &str) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(value))
    }

    #[test]
    fn content_types() {
        for (content_type, expected) in [
            (
                Some("application/x-www-form-urlencoded"),
                Ok(BodyFormat::Form),
            ),
            (
                Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
                Ok(BodyFormat::Form),
            ),
            (Some("application/json"), Ok(BodyFormat::Json)),
            (
                Some("application/json ; charset=utf-8"),
                Ok(BodyFormat::Json),
            ),
            (Some("text/plain"), Err(ParamError::UnsupportedContentType)),
            (
                Some("application/jsonx"),
                Err(ParamError::UnsupportedContentType),
            ),
            (
                Some("multipart/form-data; boundary=x"),
                Err(ParamError::UnsupportedContentType),
            ),
            (None, Err(ParamError::UnsupportedContentType)),
        ] {
            let header = content_type.map(HeaderValue::from_static);
            assert_eq!(
                BodyFormat::of(header.as_ref()),
                expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn form_reads_known_parameters_and_ignores_others() {
        let params = Params::from_form(
            Endpoint::Token,
            b"grant_type=client_credentials&client_id=app&client_secret=a%2Bb+c%25&audience=https%3A%2F%2Fapi%2F&scope=read+write&foo=1&foo=2&resource=",
        );
        assert_eq!(
            params,
            Ok(Params {
                grant_type: some("client_credentials"),
                client_id: some("app"),
                client_secret: some("a+b c%"),
                audience: some("https://api/"),
                resource: None,
                scope: some("read write"),
                ..Params::default()
            })
        );
    }

    #[test]
    fn form_borrows_plain_values() -> Result<(), ParamError> {
        let params = Params::from_form(Endpoint::Token, b"client_id=app")?;
        assert!(matches!(params.client_id, Some(Cow::Borrowed("app"))));
        Ok(())
    }

    #[test]
    fn form_repeats_and_empties() {
        for (body, expected) in [
            (&b"scope=a&scope=b"[..], Err(ParamError::Repeated("scope"))),
            (
                b"grant_type=client_credentials&grant_type=client_credentials",
                Err(ParamError::Repeated("grant_type")),
            ),
            (
                b"client_secret=x&client_id=a&client_secret=x",
                Err(ParamError::Repeated("client_secret")),
            ),
            // An empty value is no value: it neither counts nor collides.
            (
                b"scope=&scope=a",
                Ok(Params {
                    scope: some("a"),
                    ..Params::default()
                }),
            ),
            (
                b"audience=x&audience",
                Ok(Params {
                    audience: some("x"),
                    ..Params::default()
                }),
            ),
            (b"client_id=&&scope", Ok(Params::default())),
            (b"", Ok(Params::default())),
            // Names are case-sensitive; unknown ones are ignored, even repeated.
            (b"Scope=a&Scope=b&x=1&x=2", Ok(Params::default())),
        ] {
            assert_eq!(
                Params::from_form(Endpoint::Token, body),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn json_reads_strings() -> Result<(), ParamError> {
        let params = Params::from_json(Endpoint::Token,
            br#"{"grant_type":"client_credentials","client_id":"app","client_secret":"s\"\u0041","resource":"https://api/","scope":"","extra":{"a":[1,null]},"n":1}"#,
        )?;
        assert_eq!(
            params,
            Params {
                grant_type: some("client_credentials"),
                client_id: some("app"),
                client_secret: some("s\"A"),
                audience: None,
                resource: some("https://api/"),
                scope: None,
                ..Params::default()
            }
        );
        assert!(matches!(params.client_id, Some(Cow::Borrowed("app"))));
        Ok(())
    }

    #[test]
    fn json_errors() {
        for (body, expected) in [
            (
                &br#"{"audience":"a","audience":"b"}"#[..],
                ParamError::Repeated("audience"),
            ),
            (
                br#"{"client_id":"a","x":1,"client_id":"a"}"#,
                ParamError::Repeated("client_id"),
            ),
            (
                br#"{"client_secret":123}"#,
                ParamError::NotAString("client_secret"),
            ),
            (br#"{"scope":["a","b"]}"#, ParamError::NotAString("scope")),
            (br#"{"scope":null}"#, ParamError::NotAString("scope")),
            (
                br#"{"grant_type":true,"scope":"a","scope":"b"}"#,
                ParamError::NotAString("grant_type"),
            ),
            (
                br#"{"audience":{"a":"b"}}"#,
                ParamError::NotAString("audience"),
            ),
            (br#"["grant_type"]"#, ParamError::MalformedJson),
            (br#""grant_type""#, ParamError::MalformedJson),
            (br#"{"grant_type":"x""#, ParamError::MalformedJson),
            (br#"{"grant_type":"x"} {}"#, ParamError::MalformedJson),
            (b"grant_type=client_credentials", ParamError::MalformedJson),
            (b"", ParamError::MalformedJson),
        ] {
            assert_eq!(
                Params::from_json(Endpoint::Token, body),
                Err(expected),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn json_empty_strings_are_absent() {
        assert_eq!(
            Params::from_json(
                Endpoint::Token,
                br#"{"scope":"","scope":"a","client_id":""}"#
            ),
            Ok(Params {
                scope: some("a"),
                ..Params::default()
            })
        );
    }

    #[test]
    fn each_endpoint_reads_its_own_parameters() {
        for (endpoint, body, expected) in [
            (
                Endpoint::TokenCall,
                &b"token=a.b.c&token_type_hint=access_token&client_id=app&client_secret=s&grant_type=x&grant_type=y&audience=z"[..],
                Ok(Params {
                    token: some("a.b.c"),
                    token_type_hint: some("access_token"),
                    client_id: some("app"),
                    client_secret: some("s"),
                    ..Params::default()
                }),
            ),
            (
                Endpoint::TokenCall,
                b"token=a&token=b",
                Err(ParamError::Repeated("token")),
            ),
            (
                Endpoint::TokenCall,
                b"token=a&token_type_hint=x&token_type_hint=y",
                Err(ParamError::Repeated("token_type_hint")),
            ),
            (
                Endpoint::TokenCall,
                b"token=&token=a",
                Ok(Params {
                    token: some("a"),
                    ..Params::default()
                }),
            ),
            // The token endpoint does not know `token`: ignored even when repeated.
            (
                Endpoint::Token,
                b"token=a&token=b&token_type_hint=c&scope=s",
                Ok(Params {
                    scope: some("s"),
                    ..Params::default()
                }),
            ),
        ] {
            assert_eq!(
                Params::from_form(endpoint, body),
                expected,
                "{endpoint:?} {}",
                String::from_utf8_lossy(body)
            );
        }
        for (endpoint, body, expected) in [
            (
                Endpoint::TokenCall,
                &br#"{"token":"a.b.c","grant_type":["x"],"scope":1,"client_id":"app"}"#[..],
                Ok(Params {
                    token: some("a.b.c"),
                    client_id: some("app"),
                    ..Params::default()
                }),
            ),
            (
                Endpoint::TokenCall,
                br#"{"token":"a","token":"b"}"#,
                Err(ParamError::Repeated("token")),
            ),
            (
                Endpoint::TokenCall,
                br#"{"token":7}"#,
                Err(ParamError::NotAString("token")),
            ),
            (
                Endpoint::Token,
                br#"{"token":7,"token_type_hint":{},"client_id":"app"}"#,
                Ok(Params {
                    client_id: some("app"),
                    ..Params::default()
                }),
            ),
            (
                Endpoint::TokenCall,
                br#"{"token":"a"} x"#,
                Err(ParamError::MalformedJson),
            ),
        ] {
            assert_eq!(
                Params::from_json(endpoint, body),
                expected,
                "{endpoint:?} {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

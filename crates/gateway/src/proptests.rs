//! Property tests of the gateway's parsers of untrusted input, which are internal and so are
//! tested here rather than through the router (`tests/router/proptests.rs` covers the whole
//! endpoint): the token endpoint's form and JSON bodies ([`Params`]), `Authorization: Basic`
//! ([`basic::parse_authorization`]) and the tenant in `Host` ([`tenant_from_host`]).
//!
//! Each property states what the parser must return, computed by an independent model of the
//! RFC rule (RFC 6749 §3.1–3.2 for parameters, §2.3.1 and RFC 7617 for Basic, RFC 9110 for
//! hosts), for inputs built to sit on the rules' edges, and checks that raw garbage is
//! answered without a panic.
//!
//! Determinism: every run explores the same cases (a fixed seed; `PROPTEST_RNG_SEED` explores
//! others) and nothing is written to `proptest-regressions/`: a failure is reproduced by the
//! same seed, and is then kept as an ordinary example test beside the parser.

use std::borrow::Cow;

use axum::http::HeaderValue;
use base64::Engine as _;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::Value;
use tollgate_domain::{ClientId, TenantName};

use crate::basic::{self, AuthorizationError, BasicCredentials};
use crate::params::{Endpoint, ParamError, Params};
use crate::tenant::tenant_from_host;

/// Cases per property; each case parses a body of at most a few kilobytes.
const CASES: u32 = 4096;

/// The seed of every run unless `PROPTEST_RNG_SEED` names another.
const SEED: u64 = 0x7011_6a7e;

/// [`CASES`] cases from [`SEED`] (or the seed `PROPTEST_RNG_SEED` names), and no
/// `proptest-regressions/` files.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(CASES);
    config.failure_persistence = None;
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}

/// The parameters each endpoint reads; any other name is ignored.
fn known_names(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Token => &[
            "client_id",
            "client_secret",
            "grant_type",
            "audience",
            "resource",
            "scope",
        ],
        Endpoint::TokenCall => &["client_id", "client_secret", "token", "token_type_hint"],
    }
}

const ALL_NAMES: [&str; 8] = [
    "client_id",
    "client_secret",
    "grant_type",
    "audience",
    "resource",
    "scope",
    "token",
    "token_type_hint",
];

/// The value of the parameter `name` in `params`.
fn field<'p>(params: &'p Params<'_>, name: &str) -> Option<&'p str> {
    let value = match name {
        "client_id" => &params.client_id,
        "client_secret" => &params.client_secret,
        "grant_type" => &params.grant_type,
        "audience" => &params.audience,
        "resource" => &params.resource,
        "scope" => &params.scope,
        "token" => &params.token,
        "token_type_hint" => &params.token_type_hint,
        _ => return None,
    };
    value.as_deref()
}

/// A member value in the model: text, or any JSON that is not a string.
#[derive(Debug, Clone)]
enum ModelValue {
    Text(String),
    NotText,
}

/// RFC 6749 §3.1–3.2 as a model: unknown names are ignored, an empty value is no value, a
/// known parameter given twice (non-empty) is refused, and in JSON a known member that is not
/// a string is refused. The first violation in document order is the error.
fn model(
    endpoint: Endpoint,
    entries: &[(String, ModelValue)],
) -> Result<Vec<(&'static str, String)>, ParamError> {
    let mut set: Vec<(&'static str, String)> = Vec::new();
    for (name, value) in entries {
        let Some(&known) = known_names(endpoint).iter().find(|known| **known == name) else {
            continue;
        };
        match value {
            ModelValue::NotText => return Err(ParamError::NotAString(known)),
            ModelValue::Text(text) if text.is_empty() => {}
            ModelValue::Text(_) if set.iter().any(|(seen, _)| *seen == known) => {
                return Err(ParamError::Repeated(known));
            }
            ModelValue::Text(text) => set.push((known, text.clone())),
        }
    }
    Ok(set)
}

/// Compares the parser's outcome with the model's.
fn check_params(
    endpoint: Endpoint,
    actual: Result<Params<'_>, ParamError>,
    expected: Result<Vec<(&'static str, String)>, ParamError>,
) -> Result<(), TestCaseError> {
    match (actual, expected) {
        (Ok(params), Ok(expected)) => {
            for name in ALL_NAMES {
                let wanted = expected
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, value)| value.as_str());
                prop_assert_eq!(field(&params, name), wanted, "{:?} {}", endpoint, name);
            }
        }
        (Err(actual), Err(expected)) => prop_assert_eq!(actual, expected),
        (actual, expected) => {
            prop_assert!(false, "{endpoint:?}: got {actual:?}, expected {expected:?}");
        }
    }
    Ok(())
}

/// A parameter name: mostly the known ones, then near misses and anything.
fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(&ALL_NAMES[..]).prop_map(str::to_owned),
        1 => "(Scope|client_id |scope\u{0}|client-id|token_)",
        1 => "[a-z_]{0,12}",
        1 => any::<String>(),
    ]
}

/// A parameter value: empty, plausible, full of the characters that need escaping, or
/// anything, and now and then long.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        4 => "[a-zA-Z0-9_:./-]{1,24}",
        2 => "[ %+&=;\"\\\\#?\u{0}-\u{1f}\u{7f}é€😀]{1,12}",
        1 => any::<String>(),
        // Long values, built by repetition: generating thousands of characters one by one
        // would cost more than parsing them.
        1 => ("[a-z ]{1,8}", 25..250usize).prop_map(|(part, count)| part.repeat(count)),
    ]
}

/// A small deterministic generator for per-byte encoding choices, so that one `u64` drawn by
/// proptest decides how every byte of a case is written.
struct Choices(u64);

impl Choices {
    fn next(&mut self, range: u64) -> u64 {
        // xorshift64*: any fixed, well-mixed sequence will do.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % range.max(1)
    }
}

/// `application/x-www-form-urlencoded` with every liberty a client may take: each byte that
/// may go raw is sometimes escaped anyway, in upper or lower case hex, and a space is `+` or
/// `%20`. Bytes that must be escaped always are.
fn form_encode(bytes: &[u8], choices: &mut Choices, out: &mut String) {
    for &byte in bytes {
        let is_safe = byte.is_ascii_alphanumeric() || b"*-._".contains(&byte);
        match (byte, choices.next(4)) {
            (b' ', 0 | 1) => out.push('+'),
            (_, 0) if is_safe => out.push(char::from(byte)),
            (_, 1 | 2) if is_safe => out.push(char::from(byte)),
            (_, 3) => out.push_str(&format!("%{byte:02x}")),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

/// The bytes of a form body with `entries`, with stray `&` separators and valueless names
/// (`name` alone for an empty value) mixed in.
fn form_body(entries: &[(Vec<u8>, Vec<u8>)], seed: u64) -> String {
    let mut choices = Choices(seed | 1);
    let mut body = String::new();
    for (name, value) in entries {
        for _ in 0..choices.next(4).saturating_sub(2) {
            body.push('&');
        }
        if !body.is_empty() && !body.ends_with('&') {
            body.push('&');
        }
        form_encode(name, &mut choices, &mut body);
        if !value.is_empty() || choices.next(2) == 0 {
            body.push('=');
            form_encode(value, &mut choices, &mut body);
        }
    }
    if choices.next(4) == 0 {
        body.push('&');
    }
    body
}

/// A JSON string literal of `text`, each character raw or `\u` escaped at random (surrogate
/// pairs beyond the BMP), so that both the borrowed and the unescaping paths are taken.
fn json_string(text: &str, choices: &mut Choices) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        let must_escape = ch == '"' || ch == '\\' || u32::from(ch) < 0x20;
        if must_escape || choices.next(8) == 0 {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(ch);
        }
    }
    out.push('"');
    out
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |n| n.is_finite())
            .prop_map(Value::from),
        param_value().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[a-z_]{0,8}", inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A JSON object text with `entries` in order (duplicates kept, which `serde_json::Map`
/// cannot), with random whitespace.
fn json_body(entries: &[(String, Value)], seed: u64) -> String {
    let mut choices = Choices(seed | 1);
    let space = |choices: &mut Choices| [" ", "", "\n\t", ""][choices.next(4) as usize];
    let mut body = String::from("{");
    for (index, (name, value)) in entries.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(space(&mut choices));
        body.push_str(&json_string(name, &mut choices));
        body.push_str(space(&mut choices));
        body.push(':');
        let value = match value {
            Value::String(text) => json_string(text, &mut choices),
            other => other.to_string(),
        };
        body.push_str(&value);
    }
    body.push_str(space(&mut choices));
    body.push('}');
    body
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![Just(Endpoint::Token), Just(Endpoint::TokenCall)]
}

/// A form body's entries: names and values as strings, or now and then as raw bytes that
/// need not be UTF-8 (decoded with U+FFFD).
fn form_entries() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let bytes = |text: String| text.into_bytes();
    let entry = prop_oneof![
        8 => (param_name().prop_map(bytes), param_value().prop_map(bytes)),
        1 => (param_name().prop_map(bytes), vec(any::<u8>(), 1..8)),
        1 => (vec(any::<u8>(), 0..8), param_value().prop_map(bytes)),
    ];
    let short_entry =
        (param_name(), "[a-z%+=]{0,4}").prop_map(move |(name, value)| (bytes(name), bytes(value)));
    prop_oneof![
        8 => vec(entry, 0..12),
        // Huge counts (a few entries repeated): the body limit keeps real bodies to 16 KiB,
        // the parser must not care.
        1 => (vec(short_entry, 1..4), 500..3000usize).prop_map(|(entries, count)| {
            entries.iter().cycle().take(count).cloned().collect()
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Form bodies as clients write them, escaped every legal way: the parameters are
    /// exactly the model's.
    #[test]
    fn form_bodies_follow_rfc_6749(
        endpoint in endpoint(),
        entries in form_entries(),
        seed in any::<u64>(),
    ) {
        let body = form_body(&entries, seed);
        let decoded: Vec<(String, ModelValue)> = entries
            .iter()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(name).into_owned(),
                    ModelValue::Text(String::from_utf8_lossy(value).into_owned()),
                )
            })
            .collect();
        check_params(endpoint, Params::from_form(endpoint, body.as_bytes()), model(endpoint, &decoded))?;
    }

    /// Any bytes at all as a form body: no panic, and the answer is the model's reading of
    /// what a form decoder makes of them.
    #[test]
    fn form_bodies_of_any_bytes(endpoint in endpoint(), body in prop_oneof![
        vec(any::<u8>(), 0..512),
        "([a-z_]{1,14}(=[a-z%+&=]{0,6})?&?){0,20}".prop_map(String::into_bytes),
        "(%[0-9a-fA-FgG]{0,2}|[+&=]|scope|client_id){0,40}".prop_map(String::into_bytes),
    ]) {
        let decoded: Vec<(String, ModelValue)> = form_urlencoded::parse(&body)
            .map(|(name, value)| (name.into_owned(), ModelValue::Text(value.into_owned())))
            .collect();
        check_params(endpoint, Params::from_form(endpoint, &body), model(endpoint, &decoded))?;
    }

    /// JSON objects with repeated members, non-string values, escapes and whitespace: the
    /// parameters, or the error, are exactly the model's.
    #[test]
    fn json_bodies_follow_rfc_6749(
        endpoint in endpoint(),
        entries in vec((param_name(), json_value()), 0..12),
        seed in any::<u64>(),
    ) {
        let body = json_body(&entries, seed);
        let modelled: Vec<(String, ModelValue)> = entries
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    Value::String(text) => ModelValue::Text(text.clone()),
                    _ => ModelValue::NotText,
                };
                (name.clone(), value)
            })
            .collect();
        check_params(endpoint, Params::from_json(endpoint, body.as_bytes()), model(endpoint, &modelled))?;
    }

    /// Broken JSON: any bytes, and valid objects cut short or with a byte changed. Never a
    /// panic; anything that is not one whole JSON object is `MalformedJson`.
    #[test]
    fn json_bodies_of_any_bytes(
        endpoint in endpoint(),
        entries in vec((param_name(), json_value()), 0..6),
        seed in any::<u64>(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0..4u8,
        noise in vec(any::<u8>(), 0..256),
    ) {
        let mut body = json_body(&entries, seed).into_bytes();
        match how {
            0 => body.truncate(cut.index(body.len().max(1))),
            1 => {
                let at = cut.index(body.len().max(1));
                body.insert(at, byte);
            }
            2 => {
                let at = cut.index(body.len().max(1));
                if let Some(slot) = body.get_mut(at) {
                    *slot = byte;
                }
            }
            _ => body = noise,
        }
        let outcome = Params::from_json(endpoint, &body);
        // The reference: one JSON value by the grammar alone (RFC 8259 sets no range on
        // numbers, and skipped strings need not be checked), which must be an object.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
        let is_object = body.trim_ascii_start().first() == Some(&b'{');
        if !(is_json && is_object) {
            prop_assert_eq!(outcome, Err(ParamError::MalformedJson));
        }
    }

    /// Basic credentials written every way a client may (RFC 6749 §2.3.1: form-encoded id and
    /// secret, then base64, padded or not; the scheme in any case, spaces around) come back
    /// exactly.
    #[test]
    fn basic_credentials_round_trip(
        id in prop_oneof![
            "[a-zA-Z0-9._~-]{0,24}",
            "[a-z:@%+ ]{0,12}",
            any::<String>(),
        ],
        secret in prop_oneof![
            "tgsec_[A-Za-z0-9_-]{43}",
            "[a-z:@%+ =]{0,12}",
            any::<String>(),
        ],
        scheme in "[bB][aA][sS][iI][cC]",
        spaces in " {1,3}",
        trailing in " {0,2}",
        padded in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut choices = Choices(seed | 1);
        let mut credentials = String::new();
        form_encode(id.as_bytes(), &mut choices, &mut credentials);
        credentials.push(':');
        form_encode(secret.as_bytes(), &mut choices, &mut credentials);
        let encoded = if padded {
            base64::engine::general_purpose::STANDARD.encode(&credentials)
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&credentials)
        };
        let header = HeaderValue::try_from(format!("{scheme}{spaces}{encoded}{trailing}"))
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let parsed = basic::parse_authorization(&header)
            .map_err(|error| TestCaseError::fail(format!("{credentials:?}: {error}")))?;
        prop_assert_eq!(&parsed.client_id, &id);
        prop_assert!(parsed.client_secret == secret, "secret of {:?} differs", credentials);
        // The one gate to a client id: whatever Basic carried, an accepted id has no '@'.
        if let Ok(client_id) = ClientId::parse(&parsed.client_id) {
            prop_assert!(!client_id.as_str().contains('@'));
        }
    }

    /// Any `Authorization` value: never a panic; a scheme other than Basic is
    /// `UnsupportedScheme`; accepted credentials are stable (written again and parsed again,
    /// they are the same).
    #[test]
    fn authorization_headers_of_any_bytes(value in prop_oneof![
        vec(any::<u8>(), 0..128),
        "[bB]asic {0,2}[A-Za-z0-9+/=]{0,64} ?".prop_map(String::into_bytes),
        "(Basic|Bearer|Digest|basic|) [A-Za-z0-9+/=:%]{0,24}".prop_map(String::into_bytes),
    ]) {
        let Ok(header) = HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let scheme = value.split(|&b| b == b' ').next().unwrap_or_default();
        match basic::parse_authorization(&header) {
            Ok(BasicCredentials { client_id, client_secret }) => {
                prop_assert!(scheme.eq_ignore_ascii_case(b"basic"));
                let mut credentials = String::new();
                let mut choices = Choices(1);
                form_encode(client_id.as_bytes(), &mut choices, &mut credentials);
                credentials.push(':');
                form_encode(client_secret.as_bytes(), &mut choices, &mut credentials);
                let again = HeaderValue::try_from(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                ))
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
                let reparsed = basic::parse_authorization(&again)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(reparsed.client_id, client_id);
                prop_assert!(reparsed.client_secret == client_secret);
            }
            Err(AuthorizationError::UnsupportedScheme) => {
                prop_assert!(!scheme.eq_ignore_ascii_case(b"basic"));
            }
            Err(AuthorizationError::Malformed) => {
                prop_assert!(scheme.eq_ignore_ascii_case(b"basic"));
            }
        }
    }

    /// A host built from a label, the suffix in any case, an optional root dot and an
    /// optional port: the tenant is the lowercased label exactly when that is a valid tenant
    /// name and the port, if any, is digits.
    #[test]
    fn tenant_from_host_follows_the_label(
        label in prop_oneof![
            "[a-z0-9-]{1,64}",
            "[a-zA-Z0-9-]{1,12}",
            "[a-z0-9.:_é-]{0,12}",
            any::<String>(),
        ],
        suffix_case in vec(any::<bool>(), 14),
        root_dot in any::<bool>(),
        port in prop_oneof![Just(None), "[0-9]{1,5}".prop_map(Some), "[0-9a-z]{0,3}".prop_map(Some)],
    ) {
        let suffix = ".hub.localhost";
        let cased: String = suffix
            .chars()
            .zip(&suffix_case)
            .map(|(ch, &upper)| if upper { ch.to_ascii_uppercase() } else { ch })
            .collect();
        let mut host = format!("{label}{cased}");
        if root_dot {
            host.push('.');
        }
        let port_ok = match &port {
            None => true,
            Some(port) => {
                host.push(':');
                host.push_str(port);
                !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
            }
        };
        let expected = if port_ok {
            TenantName::parse(&label.to_ascii_lowercase()).ok()
        } else {
            None
        };
        prop_assert_eq!(tenant_from_host(&host, suffix), expected, "{:?}", host);
    }

    /// Any host at all: never a panic, and a tenant found is a valid DNS label that is the
    /// host's first label, lowercased.
    #[test]
    fn tenant_from_any_host(host in prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9.:\\[\\]_-]{0,80}",
        "[a-z]{0,3}[\u{80}-\u{10ffff}]{0,2}\\.hub\\.localhost:?[0-9]{0,2}",
    ]) {
        if let Some(tenant) = tenant_from_host(&host, ".hub.localhost") {
            prop_assert_eq!(TenantName::parse(tenant.as_str()), Ok(tenant.clone()));
            let lower = host.to_ascii_lowercase();
            let expected = format!("{tenant}.hub.localhost");
            prop_assert!(lower.starts_with(&expected), "{:?} → {}", host, tenant);
        }
    }
}

/// A JSON body nested far deeper than a recursive parser's stack allows, in an ignored member
/// and in known ones: serde_json skips such values without recursing, so the answer is the
/// model's (ignored, or not a string), not a stack overflow.
#[test]
fn deeply_nested_json_is_answered() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for name in ["x", "scope", "client_id", "token"] {
        let body = format!(r#"{{"{name}":{nested}}}"#);
        for endpoint in [Endpoint::Token, Endpoint::TokenCall] {
            let expected = match known_names(endpoint).iter().find(|known| **known == name) {
                Some(&known) => Err(ParamError::NotAString(known)),
                None => Ok(Params::default()),
            };
            assert_eq!(
                Params::from_json(endpoint, body.as_bytes()),
                expected,
                "{name} {endpoint:?}"
            );
        }
    }
    let shallow = format!(r#"{{"x":{nested},"scope":"a"}}"#);
    assert_eq!(
        Params::from_json(Endpoint::Token, shallow.as_bytes()),
        Ok(Params {
            scope: Some(Cow::Borrowed("a")),
            ..Params::default()
        })
    );
}

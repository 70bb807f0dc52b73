//! Property tests of verification input, on the same keys as the example tests: whatever a
//! presenter sends (any text, a valid token with any part changed, a genuine signature over
//! any header or payload), [`verify`] and [`verify_claims`] answer without a panic, and
//! accept only what a valid token may be: the unmodified token, or one the issuer's own key
//! signed whose header and claims pass every rule.
//!
//! Determinism: every run explores the same cases (a fixed seed; `PROPTEST_RNG_SEED` explores
//! others) and nothing is written to `proptest-regressions/`: a failure is reproduced by the
//! same seed, and is then kept as an ordinary case in `tests.rs`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;

use super::*;

/// Cases per property. Each case signs or verifies with ES256, EdDSA or RS256, which costs
/// up to a millisecond in a debug build, so a few thousand keep each property to seconds.
const CASES: u32 = 2000;

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

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One of the issuer's three keys.
fn key(index: usize) -> &'static TestKey {
    let [es, ed, rs] = fixture().all();
    match index % 3 {
        0 => es,
        1 => ed,
        _ => rs,
    }
}

/// Which key signs: RS256 less often, since an RSA signature costs milliseconds in a debug
/// build and the rules under test are the same for every algorithm.
fn key_index() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0), 2 => Just(1), 1 => Just(2)]
}

/// Both verifiers on `token`, with Tollgate's expectations and the policy a resource server
/// sets for Tollgate tokens.
fn both(
    token: &str,
) -> (
    Result<AccessTokenClaims, VerifyError>,
    Result<Claims, VerifyError>,
) {
    let expectations = Expectations::new(ISSUER, AUDIENCE);
    let strict = verify(token, &fixture().keys, &expectations);
    let generic = verify_claims(
        token,
        &fixture().keys,
        &tollgate_policy(&expectations),
        now(),
    );
    (strict, generic)
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

/// Text that looks more or less like a token: three (or two, or four) base64url-ish parts,
/// huge parts, the standard alphabet, padding, whitespace, anything.
fn token_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => "[A-Za-z0-9_-]{0,64}",
        1 => "[A-Za-z0-9+/=_-]{0,16}",
        1 => Just("eyJhbGciOiJub25lIn0".to_owned()),
        1 => ("[A-Za-z0-9_-]{1,4}", 5_000..50_000usize).prop_map(|(part, count)| part.repeat(count)),
        1 => any::<String>(),
    ];
    prop_oneof![
        4 => vec(part, 1..5).prop_map(|parts| parts.join(".")),
        1 => "[ .A-Za-z0-9\t\n-]{0,40}",
        1 => any::<String>(),
    ]
}

/// How one part of a valid token is changed.
#[derive(Debug, Clone)]
enum Mutation {
    /// A character replaced by another base64url character.
    Replace(Index, Index),
    /// A base64url character inserted.
    Insert(Index, Index),
    /// A character removed.
    Remove(Index),
    /// Cut at a position.
    Truncate(Index),
    /// Replaced by this text.
    Substitute(String),
    /// Followed by this many repetitions of a short run (segments of hundreds of kilobytes).
    Grow(String, usize),
    /// The same part of a token with other claims put in its place.
    Transplant,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Replace(at, with)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Insert(at, with)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => "[A-Za-z0-9_=+/.-]{0,20}".prop_map(Mutation::Substitute),
        1 => ("[A-Za-z0-9_-]{1,4}", 1_000..100_000usize)
            .prop_map(|(run, count)| Mutation::Grow(run, count)),
        1 => Just(Mutation::Transplant),
    ]
}

/// `part` changed by `mutation`; `other` is the same part of another valid token.
fn mutate(part: &str, mutation: &Mutation, other: &str) -> String {
    let mut bytes = part.as_bytes().to_vec();
    let alphabet = |with: &Index| BASE64URL[with.index(BASE64URL.len())];
    match mutation {
        Mutation::Replace(at, with) => {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = alphabet(with);
            }
        }
        Mutation::Insert(at, with) => {
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, alphabet(with));
        }
        Mutation::Remove(at) => {
            if !bytes.is_empty() {
                bytes.remove(at.index(bytes.len()));
            }
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
        Mutation::Substitute(text) => return text.clone(),
        Mutation::Grow(run, count) => return format!("{part}{}", run.repeat(*count)),
        Mutation::Transplant => return other.to_owned(),
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A JSON value of any shape, for header members and claims.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite, and read back exactly (serde_json's default number parsing is not exact
        // for every double, which is not what these properties are about).
        any::<f64>()
            .prop_filter("a finite number that reads back exactly", |n| {
                serde_json::from_str::<f64>(&Value::from(*n).to_string()).ok() == Some(*n)
            })
            .prop_map(Value::from),
        "[a-zA-Z0-9:/. +@_-]{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            vec(("[a-z]{1,4}", inner), 0..3)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any text: refused by both verifiers, and the unverified readers do not panic.
    #[test]
    fn any_text_is_refused(text in token_like()) {
        let (strict, generic) = both(&text);
        prop_assert!(strict.is_err(), "accepted {text:?}");
        prop_assert!(generic.is_err(), "accepted {text:?}");
        let _ = crate::unverified_claim(&text, "iss");
        let _ = crate::unverified_key_id(&text);
    }

    /// A valid token of each algorithm with one or two parts changed (a character replaced,
    /// inserted or removed, cut, substituted, grown to hundreds of kilobytes, or taken from
    /// another valid token): accepted exactly when the text is still the original.
    #[test]
    fn changed_tokens_are_refused(
        key_index in key_index(),
        changes in vec((0..3usize, mutation()), 1..3),
    ) {
        let key = key(key_index);
        let claims = claims();
        let token = key.issue(&claims).map_err(fail)?;
        let other_claims = AccessTokenClaims {
            jti: "other".to_owned(),
            scope: "archive:admin".to_owned(),
            ..claims.clone()
        };
        let other = key.issue(&other_claims).map_err(fail)?;
        let mut parts: Vec<String> = parts(&token).map_err(fail)?.map(str::to_owned).into();
        let others = super::parts(&other).map_err(fail)?;
        for (index, mutation) in &changes {
            parts[*index] = mutate(&parts[*index], mutation, others[*index]);
        }
        let changed = parts.join(".");
        let (strict, generic) = both(&changed);
        if changed == token || changed == other {
            // Every part taken from the other token is that token, as valid as this one.
            let expected = if changed == token { claims } else { other_claims };
            prop_assert_eq!(strict, Ok(expected));
            prop_assert!(generic.is_ok());
        } else {
            prop_assert!(strict.is_err(), "accepted {changes:?}");
            prop_assert!(generic.is_err(), "accepted {changes:?}");
        }
    }

    /// A genuine signature by the issuer's key over a header of any `alg`, `typ` and `kid`
    /// (and unknown members): accepted exactly when `alg` is the key's own, `typ` is
    /// `at+jwt` (in any case, with or without `application/`) and `kid` names that key.
    #[test]
    fn headers_decide_before_signatures(
        key_index in key_index(),
        alg in prop_oneof![
            3 => Just(None),
            1 => prop::sample::select(vec!["ES256", "EdDSA", "RS256", "HS256", "none", "PS256", "ES384", "es256", ""])
                .prop_map(|alg| Some(Value::from(alg))),
            1 => json_value().prop_map(Some),
        ],
        typ in prop_oneof![
            3 => Just(Some(Value::from("at+jwt"))),
            1 => prop::sample::select(vec!["AT+JWT", "application/at+jwt", "Application/AT+jwt", "JWT", "at+jwt ", "jwt", ""])
                .prop_map(|typ| Some(Value::from(typ))),
            1 => Just(None),
            1 => json_value().prop_map(Some),
        ],
        kid in prop_oneof![
            3 => Just(None),
            1 => prop::sample::select(vec!["es256", "eddsa", "rs256", "stranger", "ES256", ""])
                .prop_map(|kid| Some(Value::from(kid))),
            1 => json_value().prop_map(Some),
        ],
        omit in vec(prop::bool::weighted(0.1), 3),
        extra in vec(("x_[a-z]{1,6}", json_value()), 0..3),
    ) {
        let key = key(key_index);
        let mut header = key.header();
        // `None` keeps the key's own value; `omit` drops the member instead.
        for ((member, value), omit) in [("alg", alg), ("typ", typ), ("kid", kid)].into_iter().zip(omit) {
            header = match (value, omit) {
                (_, true) => without(header, member),
                (Some(value), _) => with(header, member, value),
                (None, _) => header,
            };
        }
        for (member, value) in extra {
            header = with(header, &member, value);
        }
        let claims = claims();
        let token = key.sign(&header, &payload(&claims).map_err(fail)?).map_err(fail)?;
        let is_type = header["typ"].as_str().is_some_and(|typ| {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        let acceptable = header["alg"].as_str() == Some(key.alg.as_str())
            && header["kid"].as_str() == Some(key.kid())
            && is_type;
        let (strict, generic) = both(&token);
        if acceptable {
            prop_assert_eq!(strict, Ok(claims), "{}", header);
            prop_assert!(generic.is_ok(), "{}: {:?}", header, generic);
        } else {
            prop_assert!(strict.is_err(), "accepted {header}");
            prop_assert!(generic.is_err(), "accepted {header}");
        }
    }

    /// A genuine signature by the issuer's key, under its own header, over a payload with
    /// claims removed, replaced by any JSON, or added: whatever is accepted carries the
    /// expected issuer and audience, is within its validity (with the leeway), and holds
    /// exactly the claims that were signed.
    #[test]
    fn signed_claims_are_checked(
        key_index in key_index(),
        removed in vec(prop::sample::select(CLAIM_NAMES.to_vec()), 0..2),
        replaced in vec((
            prop::sample::select(CLAIM_NAMES.to_vec()),
            prop_oneof![
                2 => json_value(),
                1 => Just(Value::from(ISSUER)),
                1 => Just(Value::from(AUDIENCE)),
                2 => (-100_000i64..100_000).prop_map(|delta| Value::from(now() + delta)),
            ],
        ), 0..3),
        added in vec(("[a-z_]{1,8}", json_value()), 0..2),
    ) {
        let key = key(key_index);
        let mut payload = payload(&claims()).map_err(fail)?;
        for name in removed {
            payload = without(payload, name);
        }
        for (name, value) in replaced {
            payload = with(payload, name, value);
        }
        for (name, value) in added {
            if !CLAIM_NAMES.contains(&name.as_str()) {
                payload = with(payload, &name, value);
            }
        }
        let token = key.sign(&key.header(), &payload).map_err(fail)?;
        let (strict, generic) = both(&token);
        let now = now();
        if let Ok(accepted) = strict {
            prop_assert_eq!(accepted.iss.as_str(), ISSUER);
            prop_assert_eq!(accepted.aud.as_str(), AUDIENCE);
            prop_assert!(accepted.exp >= now - LEEWAY, "expired {}", payload);
            prop_assert!(accepted.nbf <= now + LEEWAY, "not yet valid {}", payload);
            let signed: AccessTokenClaims = serde_json::from_value(payload.clone()).map_err(fail)?;
            prop_assert_eq!(accepted, signed);
        }
        if let Ok(accepted) = generic {
            prop_assert_eq!(accepted.issuer.as_str(), ISSUER);
            prop_assert!(accepted.audiences.iter().any(|aud| aud == AUDIENCE));
            prop_assert!(accepted.expires_at >= now - LEEWAY, "expired {}", payload);
            prop_assert!(accepted.not_before.is_none_or(|nbf| nbf <= now + LEEWAY));
            prop_assert!(CLAIM_NAMES.iter().all(|name| !payload[name].is_null()));
            prop_assert_eq!(Value::Object(accepted.raw), payload);
        }
    }

    /// A genuine signature over a payload that is any bytes at all: never accepted unless
    /// it is a JSON object with every claim.
    #[test]
    fn signed_bytes_are_refused(key_index in key_index(), payload in prop_oneof![
        vec(any::<u8>(), 0..256),
        json_value().prop_map(|value| value.to_string().into_bytes()),
    ]) {
        let key = key(key_index);
        let header = serde_json::to_vec(&key.header()).map_err(fail)?;
        let token = jws_bytes(&header, &payload, |input| key.signature(input)).map_err(fail)?;
        let (strict, generic) = both(&token);
        prop_assert!(strict.is_err(), "accepted {:?}", String::from_utf8_lossy(&payload));
        prop_assert!(generic.is_err(), "accepted {:?}", String::from_utf8_lossy(&payload));
    }
}

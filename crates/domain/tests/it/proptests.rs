//! Property tests of the domain's parsers, the single place each rule of a name lives: any
//! input, valid, near-valid or garbage, is answered without a panic; an accepted value is the
//! input unchanged and parses to itself again; and acceptance follows the documented grammar
//! exactly (each grammar is restated here independently, as a byte-level predicate).
//!
//! Determinism: every run explores the same cases (a fixed seed; `PROPTEST_RNG_SEED` explores
//! others) and nothing is written to `proptest-regressions/`. A failure found this way is
//! reproduced by the same seed, and is then kept as an ordinary example-based test beside
//! the parser, which is where regressions of this crate live.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tollgate_domain::{
    Algorithm, ApiIdentifier, ClientId, InvalidValue, IssuerTemplate, Scope, ScopeSet, TenantName,
    TokenLifetime, TraceId,
};

/// Cases per property: parsing is microseconds, so thousands cost well under a second.
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

/// Text around the grammars' edges: their alphabets with the neighbouring bytes (upper case,
/// `@`, `"`, `\`, space, controls, non-ASCII), lengths across every limit, and anything.
fn near_names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,70}",
        "[a-zA-Z0-9._~@-]{0,140}",
        "[!#-\\[\\]-~]{0,140}",
        "[\\x00-\\x7f]{0,20}",
        "[\\x21-\\x7e]{250,260}",
        "[a-z]{1,3}[\u{80}-\u{10ffff}][a-z]{0,3}",
        any::<String>(),
    ]
}

fn is_tenant_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn is_client_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

fn is_scope(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn is_api_identifier(value: &str) -> bool {
    (1..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The shared contract of a name parser: no panic, acceptance exactly per `rule`, the
/// accepted value is the input and parses to itself, and a refusal names `field`.
fn check_name<T: PartialEq + std::fmt::Debug + AsRef<str>>(
    parse: impl Fn(&str) -> Result<T, InvalidValue>,
    rule: impl Fn(&str) -> bool,
    field: &str,
    input: &str,
) -> Result<(), TestCaseError> {
    match parse(input) {
        Ok(value) => {
            prop_assert!(rule(input), "accepted {input:?}");
            prop_assert_eq!(value.as_ref(), input);
            prop_assert_eq!(parse(value.as_ref()), Ok(value));
        }
        Err(error) => {
            prop_assert!(!rule(input), "refused {input:?}: {error}");
            prop_assert_eq!(error.field, field);
            prop_assert!(!error.reason.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tenant_names_follow_the_dns_label_rule(input in near_names()) {
        check_name(TenantName::parse, is_tenant_name, "tenant", &input)?;
        // A tenant name is always usable as a host label and in a URL path as it is.
        if let Ok(name) = TenantName::parse(&input) {
            prop_assert!(!name.as_str().contains(['.', '/', '%', ':']));
        }
    }

    #[test]
    fn client_ids_follow_their_rule_and_never_hold_an_at(input in near_names()) {
        check_name(ClientId::parse, is_client_id, "client_id", &input)?;
        if let Ok(id) = ClientId::parse(&input) {
            prop_assert!(!id.as_str().contains('@'));
            prop_assert_eq!(id.subject(), format!("{input}@client"));
        }
    }

    #[test]
    fn scopes_follow_the_rfc_6749_grammar(input in near_names()) {
        check_name(Scope::parse, is_scope, "scope", &input)?;
    }

    #[test]
    fn api_identifiers_are_printable_ascii(input in near_names()) {
        check_name(ApiIdentifier::parse, is_api_identifier, "identifier", &input)?;
    }

    /// A `scope` parameter: any text. Accepted exactly when every space-separated token is a
    /// scope; the set is sorted, without duplicates, and its delimited form parses back to it.
    #[test]
    fn delimited_scopes_round_trip(
        input in prop_oneof![
            proptest::collection::vec(prop_oneof!["[a-z:*]{0,6}", " {1,3}", "[\\x00-\\x7f]{1,3}"], 0..40)
                .prop_map(|parts| parts.concat()),
            any::<String>(),
        ]
    ) {
        let tokens: Vec<&str> = input.split(' ').filter(|token| !token.is_empty()).collect();
        match ScopeSet::parse_delimited(&input) {
            Ok(set) => {
                prop_assert!(tokens.iter().all(|token| is_scope(token)), "accepted {input:?}");
                let listed: Vec<&str> = set.iter().map(Scope::as_str).collect();
                let mut expected = tokens.clone();
                expected.sort_unstable();
                expected.dedup();
                prop_assert_eq!(&listed, &expected);
                prop_assert_eq!(set.len(), expected.len());
                prop_assert_eq!(ScopeSet::parse_delimited(&set.to_delimited()), Ok(set.clone()));
                prop_assert_eq!(ScopeSet::parse_all(listed.iter().copied()), Ok(set));
            }
            Err(error) => {
                prop_assert!(tokens.iter().any(|token| !is_scope(token)), "refused {input:?}");
                prop_assert_eq!(error.field, "scope");
            }
        }
    }

    #[test]
    fn algorithms_are_spelled_exactly(input in prop_oneof![
        Just("ES256".to_owned()), Just("EdDSA".to_owned()), Just("RS256".to_owned()),
        "(ES|RS|HS|PS|Ed)(256|384|512|DSA|dsa)?", "none|NONE|None", any::<String>(),
    ]) {
        match Algorithm::parse(&input) {
            Ok(algorithm) => prop_assert_eq!(algorithm.as_str(), input.as_str()),
            Err(error) => {
                prop_assert!(!["ES256", "EdDSA", "RS256"].contains(&input.as_str()));
                prop_assert_eq!(error.field, "signing_alg");
            }
        }
    }

    #[test]
    fn token_lifetimes_are_bounded(seconds in prop_oneof![any::<i64>(), 0i64..100_000]) {
        let expected = (TokenLifetime::MIN_SECONDS..=TokenLifetime::MAX_SECONDS).contains(&seconds);
        match TokenLifetime::from_seconds(seconds) {
            Ok(lifetime) => {
                prop_assert!(expected);
                prop_assert_eq!(lifetime.seconds(), seconds);
            }
            Err(error) => {
                prop_assert!(!expected);
                prop_assert_eq!(error.field, "token_lifetime_seconds");
            }
        }
    }

    /// `traceparent` arrives from any HTTP client: a trace id is taken only from a
    /// well-formed header, and is 32 lowercase hex digits, not all zero.
    #[test]
    fn traceparent_yields_only_well_formed_trace_ids(header in prop_oneof![
        "[ ]?[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[0-9a-z]{0,4})?[ ]?",
        "(00|ff|0g)-(0{32}|[0-9a-fA-F]{30,33})-(0{16}|[0-9a-f]{15,17})-[0-9a-f]{1,3}",
        "[0-9a-f-]{0,60}",
        any::<String>(),
    ]) {
        if let Some(trace_id) = TraceId::from_traceparent(&header) {
            let id = trace_id.as_str();
            prop_assert_eq!(id.len(), 32);
            prop_assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            prop_assert!(id.bytes().any(|b| b != b'0'));
            prop_assert!(header.contains(id));
            prop_assert_eq!(header.trim().split('-').nth(1), Some(id));
        }
    }

    /// Issuer templates come from configuration; a tenant's issuer URL made from an accepted
    /// template leads back to that tenant, and the host suffix is what follows it in the host.
    #[test]
    fn issuer_templates_round_trip_their_tenants(
        template in prop_oneof![
            "(https?://)(\\{tenant\\})?[a-z.:0-9]{0,12}(\\{tenant\\})?(/[a-z{}]{0,6})*/?",
            "(http|ftp)://[a-z]{1,4}\\.\\{tenant\\}\\.[a-z]{1,4}/",
            any::<String>(),
        ],
        tenant in "[a-z0-9]{1,8}",
    ) {
        let Ok(parsed) = IssuerTemplate::parse(&template) else {
            return Ok(());
        };
        prop_assert_eq!(template.matches("{tenant}").count(), 1);
        prop_assert!(template.ends_with('/'));
        prop_assert!(template.bytes().all(|b| b.is_ascii_graphic()));
        let tenant = TenantName::parse(&tenant).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let issuer = parsed.issuer(&tenant);
        prop_assert_eq!(parsed.tenant_of_issuer(&issuer), Some(tenant.clone()));
        if let Some(suffix) = parsed.host_suffix() {
            prop_assert!(suffix.starts_with('.'));
            prop_assert!(!suffix.contains([':', '/']));
            let host = format!("//{tenant}{suffix}");
            prop_assert!(issuer.to_ascii_lowercase().contains(&host));
        }
    }
}

//! Property tests of the wire edge of gRPC: any bytes decoded as a token-service message, and
//! any `IssueTokenRequest` converted into a domain `TokenRequest`. Decoding and conversion
//! never panic; a conversion either yields exactly the values that were sent, each valid by
//! the domain's own parser and within the documented limits, or names a field that is indeed
//! invalid, which the adapter answers with INVALID_ARGUMENT.
//!
//! Determinism: every run explores the same cases (a fixed seed; `PROPTEST_RNG_SEED` explores
//! others) and nothing is written to `proptest-regressions/`: a failure is reproduced by the
//! same seed, and is then kept as an ordinary example test beside the conversion.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use prost::Message;
use tollgate_domain::{
    ApiIdentifier, ClientId, IssuedToken, Scope, ScopeSet, TenantName, TokenRequest, Transport,
};
use tollgate_proto::status::invalid_argument;
use tollgate_proto::v1;
use tonic::Code;

/// Cases per property: decoding and converting take microseconds.
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

/// A name: valid ones for each field, near misses (case, `@`, `"`, lengths around every
/// limit), and anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
        1 => Just("https://api.example.com/".to_owned()),
        1 => "[a-zA-Z0-9._~@:\"\\\\ -]{0,16}",
        1 => ("[a-z]", 60..260usize).prop_map(|(letter, count)| letter.repeat(count)),
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

fn scopes() -> impl Strategy<Value = Vec<String>> {
    let scope = prop_oneof![
        6 => "[a-z]{1,6}(:[a-z*]{1,6})?",
        1 => "[!-~ ]{0,8}",
        1 => ("[a-z]", 120..140usize).prop_map(|(letter, count)| letter.repeat(count)),
        1 => any::<String>(),
    ];
    prop_oneof![
        4 => vec(scope.clone(), 0..6),
        // Around the limit on the number of scopes, and far beyond it, in few distinct values.
        1 => (vec(scope, 1..4), 50..200usize).prop_map(|(scopes, count)| {
            scopes.iter().cycle().take(count).cloned().collect()
        }),
    ]
}

fn issue_request() -> impl Strategy<Value = v1::IssueTokenRequest> {
    (text(), text(), text(), text(), scopes()).prop_map(
        |(tenant, client_id, client_secret, audience, scopes)| v1::IssueTokenRequest {
            tenant,
            client_id,
            client_secret,
            audience,
            scopes,
        },
    )
}

/// Whether the field named in a refusal is wrong by the domain's own rules.
fn is_invalid(request: &v1::IssueTokenRequest, field: &str) -> bool {
    match field {
        "tenant" => TenantName::parse(&request.tenant).is_err(),
        "client_id" => ClientId::parse(&request.client_id).is_err(),
        "audience" => ApiIdentifier::parse(&request.audience).is_err(),
        "scopes" => {
            request.scopes.len() > TokenRequest::MAX_SCOPES
                || request
                    .scopes
                    .iter()
                    .any(|scope| Scope::parse(scope).is_err())
        }
        _ => false,
    }
}

/// The conversion's contract for one request.
fn check_conversion(request: v1::IssueTokenRequest) -> Result<(), TestCaseError> {
    let sent = request.clone();
    match TokenRequest::try_from(request) {
        Ok(converted) => {
            prop_assert_eq!(converted.tenant.as_str(), sent.tenant.as_str());
            prop_assert_eq!(TenantName::parse(&sent.tenant), Ok(converted.tenant));
            prop_assert_eq!(converted.client_id.as_str(), sent.client_id.as_str());
            prop_assert!(!converted.client_id.as_str().contains('@'));
            prop_assert_eq!(
                converted.client_secret.expose(),
                sent.client_secret.as_str()
            );
            prop_assert_eq!(converted.audience.as_str(), sent.audience.as_str());
            prop_assert!(sent.scopes.len() <= TokenRequest::MAX_SCOPES);
            match converted.scopes {
                None => prop_assert!(sent.scopes.is_empty()),
                Some(set) => {
                    let expected = ScopeSet::parse_all(sent.scopes.iter().map(String::as_str));
                    prop_assert_eq!(Ok(set.clone()), expected);
                    prop_assert!(!set.is_empty());
                    prop_assert!(set.len() <= sent.scopes.len());
                }
            }
            prop_assert_eq!(converted.origin.transport, Transport::Grpc);
            prop_assert_eq!(converted.origin.source, None);
        }
        Err(error) => {
            prop_assert!(
                is_invalid(&sent, error.field),
                "refused valid {:?}: {}",
                error.field,
                error
            );
            let status = invalid_argument(error.clone());
            prop_assert_eq!(status.code(), Code::InvalidArgument);
            prop_assert!(status.message().starts_with(error.field));
            // The secret is never echoed (checked where no other field holds its text).
            let elsewhere = [&sent.tenant, &sent.client_id, &sent.audience]
                .into_iter()
                .chain(&sent.scopes)
                .any(|value| value.contains(&sent.client_secret));
            if sent.client_secret.len() >= 8 && !elsewhere {
                prop_assert!(!status.message().contains(&sent.client_secret));
            }
        }
    }
    Ok(())
}

/// Any bytes, decoded as `M`: no panic, and what decodes encodes to a message that decodes
/// to the same value.
fn check_decoding<M: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<Option<M>, TestCaseError> {
    let Ok(message) = M::decode(bytes) else {
        return Ok(None);
    };
    let again = M::decode(message.encode_to_vec().as_slice())
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(&again, &message);
    Ok(Some(message))
}

/// Bytes for a decoder: random, or a valid encoding with a byte changed, cut short, or
/// followed by random bytes.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        (
            issue_request(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..3u8,
            vec(any::<u8>(), 0..16)
        )
            .prop_map(|(request, at, byte, how, tail)| {
                let mut bytes = request.encode_to_vec();
                match how {
                    0 => {
                        let at = at.index(bytes.len().max(1));
                        if let Some(slot) = bytes.get_mut(at) {
                            *slot = byte;
                        }
                    }
                    1 => bytes.truncate(at.index(bytes.len() + 1)),
                    _ => bytes.extend(tail),
                }
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn issue_token_requests_convert_or_name_an_invalid_field(request in issue_request()) {
        check_conversion(request)?;
    }

    /// The wire messages of `TokenService`: any bytes decode or fail cleanly, and a decoded
    /// `IssueTokenRequest` converts by the same contract.
    #[test]
    fn token_service_messages_decode_cleanly(bytes in wire_bytes()) {
        if let Some(request) = check_decoding::<v1::IssueTokenRequest>(&bytes)? {
            check_conversion(request)?;
        }
        check_decoding::<v1::RevokeTokenRequest>(&bytes)?;
        check_decoding::<v1::IntrospectTokenRequest>(&bytes)?;
        check_decoding::<v1::GetJwksRequest>(&bytes)?;
        check_decoding::<v1::WatchRevocationsRequest>(&bytes)?;
    }

    /// A token response lists exactly the granted scopes, which read back as the same set.
    #[test]
    fn issued_tokens_convert_to_their_scopes(
        scopes in vec("[a-z]{1,6}(:[a-z*]{1,6})?", 0..10),
        expires_in in any::<i64>(),
    ) {
        let set = ScopeSet::parse_all(scopes.iter().map(String::as_str))
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let response = v1::IssueTokenResponse::from(IssuedToken {
            access_token: "a.b.c".to_owned(),
            expires_in,
            scopes: set.clone(),
        });
        prop_assert_eq!(response.token_type.as_str(), "Bearer");
        prop_assert_eq!(response.expires_in, expires_in);
        prop_assert_eq!(ScopeSet::parse_all(response.scopes.iter().map(String::as_str)), Ok(set));
    }
}

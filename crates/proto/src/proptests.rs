//! Property tests of the conversions of requests: revocation and introspection calls, which
//! any client may send ([`convert::token_call`]), and the management requests ([`manage`]).
//! Any message converts without a panic; a conversion yields exactly the values sent, valid
//! by the domain's parsers, or an error naming one of the message's fields, which the
//! adapter answers with INVALID_ARGUMENT.
//!
//! Determinism: every run explores the same cases (a fixed seed; `PROPTEST_RNG_SEED` explores
//! others) and nothing is written to `proptest-regressions/`: a failure is reproduced by the
//! same seed, and is then kept as an ordinary example test beside the conversion.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tollgate_domain::{
    Algorithm, ApiIdentifier, ClientId, InvalidValue, RequestOrigin, RevocationTarget, Scope,
    ScopeSet, TenantName, TokenLifetime, Transport,
};
use tonic::Code;

use crate::status::invalid_argument;
use crate::{convert, manage, v1};

/// Cases per property: conversions take microseconds.
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

/// A value for any string field: mostly valid for one grammar or another, then near misses
/// and anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
        1 => Just("https://api.example.com/".to_owned()),
        1 => prop::sample::select(vec!["ES256", "EdDSA", "RS256", "HS256", "none"]).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9._~@:\"\\\\ -]{0,16}",
        1 => ("[a-z]", 60..260usize).prop_map(|(letter, count)| letter.repeat(count)),
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

fn scope_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,6}(:[a-z*]{1,6})?",
        1 => "[!-~ ]{0,8}",
        1 => any::<String>(),
    ]
}

fn grants() -> impl Strategy<Value = Vec<v1::Grant>> {
    vec(
        (text(), vec(scope_text(), 0..4))
            .prop_map(|(audience, scopes)| v1::Grant { audience, scopes }),
        0..4,
    )
}

fn scope_definitions() -> impl Strategy<Value = Vec<v1::ScopeDefinition>> {
    vec(
        (scope_text(), any::<String>())
            .prop_map(|(value, description)| v1::ScopeDefinition { value, description }),
        0..4,
    )
}

fn seconds() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), 0..100_000i64, any::<i64>()]
}

fn rate() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), 0..2_000_000i64, any::<i64>()]
}

/// An error's contract: it names one of `fields`, and becomes INVALID_ARGUMENT.
fn check_error(error: &InvalidValue, fields: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(fields.contains(&error.field), "unexpected field {}", error);
    prop_assert!(!error.reason.is_empty());
    prop_assert_eq!(
        invalid_argument(error.clone()).code(),
        Code::InvalidArgument
    );
    Ok(())
}

/// The grants as the domain reads them, or `None` if any is invalid.
fn parsed_grants(grants: &[v1::Grant]) -> Option<Vec<(ApiIdentifier, ScopeSet)>> {
    grants
        .iter()
        .map(|grant| {
            Some((
                ApiIdentifier::parse(&grant.audience).ok()?,
                ScopeSet::parse_all(grant.scopes.iter().map(String::as_str)).ok()?,
            ))
        })
        .collect()
}

/// The scope definitions' values as the domain reads them, or `None` if any is invalid.
fn parsed_scopes(scopes: &[v1::ScopeDefinition]) -> Option<Vec<Scope>> {
    scopes
        .iter()
        .map(|scope| Scope::parse(&scope.value).ok())
        .collect()
}

/// The wire's "empty = server default" algorithm.
fn parsed_algorithm(value: &str) -> Option<Option<Algorithm>> {
    match value {
        "" => Some(None),
        other => Algorithm::parse(other).ok().map(Some),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Revocation and introspection, open to any client: converted exactly, or refused
    /// naming `tenant`, `client_id` or an empty `token`.
    #[test]
    fn token_calls_convert_or_name_a_field(
        tenant in text(),
        client_id in text(),
        client_secret in any::<String>(),
        token in prop_oneof![Just(String::new()), "[A-Za-z0-9._-]{1,40}", any::<String>()],
    ) {
        let origin = RequestOrigin::new(Transport::Grpc, None);
        match convert::token_call(&tenant, &client_id, client_secret.clone(), token.clone(), origin) {
            Ok(call) => {
                prop_assert_eq!(TenantName::parse(&tenant), Ok(call.tenant));
                prop_assert_eq!(ClientId::parse(&client_id), Ok(call.client_id));
                prop_assert_eq!(call.client_secret.expose(), client_secret.as_str());
                prop_assert!(!token.is_empty());
                prop_assert_eq!(call.token, token);
            }
            Err(error) => {
                check_error(&error, &["tenant", "client_id", "token"])?;
                let is_invalid = match error.field {
                    "tenant" => TenantName::parse(&tenant).is_err(),
                    "client_id" => ClientId::parse(&client_id).is_err(),
                    _ => token.is_empty(),
                };
                prop_assert!(is_invalid, "refused a valid {}", error.field);
            }
        }
    }

    #[test]
    fn revocation_targets_convert_or_name_a_field(target in prop_oneof![
        Just(None),
        text().prop_map(|jti| Some(v1::revoke_tokens_request::Target::Jti(jti))),
        text().prop_map(|sid| Some(v1::revoke_tokens_request::Target::SecretId(sid))),
        text().prop_map(|id| Some(v1::revoke_tokens_request::Target::ClientId(id))),
        any::<bool>().prop_map(|all| Some(v1::revoke_tokens_request::Target::All(all))),
    ]) {
        use v1::revoke_tokens_request::Target;
        match (manage::revocation_target(target.clone()), target) {
            (Ok(RevocationTarget::Token(jti)), Some(Target::Jti(sent))) => {
                prop_assert!(!jti.is_empty());
                prop_assert_eq!(jti, sent);
            }
            (Ok(RevocationTarget::Secret(sid)), Some(Target::SecretId(sent))) => {
                prop_assert!(!sid.is_empty());
                prop_assert_eq!(sid, sent);
            }
            (Ok(RevocationTarget::App(id)), Some(Target::ClientId(sent))) => {
                prop_assert_eq!(ClientId::parse(&sent).map(|id| id.to_string()), Ok(id));
            }
            (Ok(RevocationTarget::Tenant), Some(Target::All(true))) => {}
            (Ok(converted), sent) => prop_assert!(false, "{sent:?} became {converted:?}"),
            (Err(error), _) => check_error(&error, &["jti", "secret_id", "client_id", "target"])?,
        }
    }

    #[test]
    fn tenant_requests_convert_or_name_a_field(
        name in text(),
        display_name in any::<String>(),
        signing_alg in text(),
        update_alg in prop::option::of(text()),
        rate in prop::option::of(rate()),
    ) {
        let created = manage::new_tenant(v1::CreateTenantRequest {
            name: name.clone(),
            display_name: display_name.clone(),
            signing_alg: signing_alg.clone(),
        });
        match created {
            Ok(tenant) => {
                prop_assert_eq!(tenant.name.as_str(), name.as_str());
                prop_assert_eq!(&tenant.display_name, &display_name);
                // Empty is the default algorithm; anything else is spelled exactly.
                if signing_alg.is_empty() {
                    prop_assert_eq!(tenant.signing_alg, Algorithm::default());
                } else {
                    prop_assert_eq!(tenant.signing_alg.as_str(), signing_alg.as_str());
                }
            }
            Err(error) => check_error(&error, &["name", "signing_alg"])?,
        }
        let updated = manage::tenant_update(v1::UpdateTenantRequest {
            name: name.clone(),
            display_name: Some(display_name),
            signing_alg: update_alg.clone(),
            rate_limit_per_second: rate,
        });
        match updated {
            Ok((tenant, update)) => {
                prop_assert_eq!(tenant.as_str(), name.as_str());
                prop_assert_eq!(update.signing_alg.map(Algorithm::as_str), update_alg.as_deref());
                prop_assert_eq!(update.rate_limit_per_second, rate.map(|rate| (rate != 0).then_some(rate)));
                if let Some(Some(rate)) = update.rate_limit_per_second {
                    prop_assert!((1..=1_000_000).contains(&rate));
                }
            }
            Err(error) => check_error(&error, &["name", "signing_alg", "rate_limit_per_second"])?,
        }
    }

    #[test]
    fn api_requests_convert_or_name_a_field(
        tenant in text(),
        identifier in text(),
        scopes in scope_definitions(),
        lifetime in seconds(),
        signing_alg in text(),
        replace_scopes in any::<bool>(),
    ) {
        let created = manage::new_api(v1::CreateApiRequest {
            tenant: tenant.clone(),
            name: "name".to_owned(),
            identifier: identifier.clone(),
            scopes: scopes.clone(),
            token_lifetime_seconds: lifetime,
            signing_alg: signing_alg.clone(),
        });
        match created {
            Ok((name, api)) => {
                prop_assert_eq!(name.as_str(), tenant.as_str());
                prop_assert_eq!(api.identifier.as_str(), identifier.as_str());
                let values: Vec<Scope> = api.scopes.iter().map(|scope| scope.value.clone()).collect();
                prop_assert_eq!(Some(values), parsed_scopes(&scopes));
                let expected_lifetime = if lifetime == 0 { Ok(TokenLifetime::DEFAULT) } else { TokenLifetime::from_seconds(lifetime) };
                prop_assert_eq!(Ok(api.token_lifetime), expected_lifetime);
                prop_assert_eq!(Some(api.signing_alg), parsed_algorithm(&signing_alg));
            }
            Err(error) => check_error(
                &error,
                &["tenant", "identifier", "scopes", "token_lifetime_seconds", "signing_alg"],
            )?,
        }
        let updated = manage::api_update(v1::UpdateApiRequest {
            tenant: tenant.clone(),
            identifier: identifier.clone(),
            name: None,
            scopes: replace_scopes.then(|| v1::ScopeDefinitionList { scopes: scopes.clone() }),
            token_lifetime_seconds: Some(lifetime),
            signing_alg: Some(signing_alg),
        });
        match updated {
            Ok((name, api_identifier, update)) => {
                prop_assert_eq!(name.as_str(), tenant.as_str());
                prop_assert_eq!(api_identifier.as_str(), identifier.as_str());
                prop_assert_eq!(update.token_lifetime.map(TokenLifetime::seconds), Some(lifetime));
                if replace_scopes {
                    let values = update
                        .scopes
                        .map(|scopes| scopes.into_iter().map(|scope| scope.value).collect());
                    prop_assert_eq!(values, parsed_scopes(&scopes));
                }
            }
            Err(error) => check_error(
                &error,
                &["tenant", "identifier", "scopes", "token_lifetime_seconds", "signing_alg"],
            )?,
        }
    }

    #[test]
    fn app_requests_convert_or_name_a_field(
        tenant in text(),
        client_id in text(),
        grants in grants(),
        replace_grants in any::<bool>(),
        rate in prop::option::of(rate()),
    ) {
        let created = manage::new_app(v1::CreateAppRequest {
            tenant: tenant.clone(),
            name: "name".to_owned(),
            description: String::new(),
            grants: grants.clone(),
        });
        match created {
            Ok((name, app)) => {
                prop_assert_eq!(name.as_str(), tenant.as_str());
                prop_assert_eq!(Some(app.grants), parsed_grants(&grants));
            }
            Err(error) => check_error(&error, &["tenant", "grants"])?,
        }
        let updated = manage::app_update(v1::UpdateAppRequest {
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            name: None,
            description: None,
            grants: replace_grants.then(|| v1::GrantList { grants: grants.clone() }),
            blocked: None,
            revoke_tokens: false,
            rate_limit_per_second: rate,
        });
        match updated {
            Ok((name, id, update)) => {
                prop_assert_eq!(name.as_str(), tenant.as_str());
                prop_assert_eq!(id.as_str(), client_id.as_str());
                prop_assert!(!id.as_str().contains('@'));
                if replace_grants {
                    prop_assert_eq!(update.grants, parsed_grants(&grants));
                }
                prop_assert_eq!(update.rate_limit_per_second, rate.map(|rate| (rate != 0).then_some(rate)));
            }
            Err(error) => check_error(
                &error,
                &["tenant", "client_id", "grants", "rate_limit_per_second"],
            )?,
        }
    }
}

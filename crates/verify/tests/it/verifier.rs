//! The `Verifier`: discovery, caching, refetch on an unknown kid (rate limited), refusals,
//! revocation by introspection.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde_json::{Value, json};
use tollgate_domain::{ClientSecret, Clock};
use tollgate_stub_issuer::StubIssuer;
use tollgate_verify::VerifyError::{
    AlgorithmMismatch, BadSignature, Expired, Malformed, NotYetValid, UnknownKey, WrongAudience,
    WrongIssuer, WrongType,
};
use tollgate_verify::{AuthError, Introspection, Verifier};

use crate::{AUDIENCE, CLIENT_ID, REFETCH_SECONDS, SECRET, TestResult, builder, stub};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `object` with `member` set to `value`.
fn with(mut object: Value, member: &str, value: impl Into<Value>) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert(member.to_owned(), value.into());
    }
    object
}

/// `object` without `member`.
fn without(mut object: Value, member: &str) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove(member);
    }
    object
}

/// A JWS of `header` and `claims` with the given signature bytes.
fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

#[tokio::test]
async fn tokens_of_an_independent_issuer_verify_with_generic_claims() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    let token = stub.issue(CLIENT_ID, AUDIENCE, "archive:read archive:write")?;
    let claims = verifier.verify(&token).await?;
    assert_eq!(claims.issuer, stub.issuer());
    assert_eq!(claims.audiences, [AUDIENCE]);
    assert_eq!(claims.subject.as_deref(), Some("reporting@clients"));
    assert_eq!(claims.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(claims.scopes, ["archive:read", "archive:write"]);
    assert_eq!(claims.key_id, stub.signing_kid());
    assert_eq!(claims.expires_at, clock.now() + 3600);
    // Claims only this issuer writes are there, raw.
    assert_eq!(claims.claim("azp"), Some(&json!(CLIENT_ID)));
    assert_eq!(claims.claim("cid"), None);
    // One metadata document, one JWKS; then the cache serves.
    for _ in 0..10 {
        verifier.verify(&token).await?;
    }
    assert_eq!((stub.metadata_fetches(), stub.jwks_fetches()), (1, 1));
    Ok(())
}

#[tokio::test]
async fn forged_misdirected_and_untimely_tokens_are_refused() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    verifier.ready().await?;
    let now = clock.now();
    let header = stub.header();
    let claims = stub.claims(CLIENT_ID, AUDIENCE, "archive:read");
    let signed = |header: &Value, claims: &Value| stub.sign(header, claims);
    let jwk = stub
        .jwks()
        .get("keys")
        .and_then(|keys| keys.get(0))
        .cloned()
        .ok_or("no key")?;
    let hs256 = |secret: &[u8]| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        jws(&with(header.clone(), "alg", "HS256"), &claims, |input| {
            hmac::sign(&key, input).as_ref().to_vec()
        })
    };
    let point = [
        &[4_u8][..],
        &URL_SAFE_NO_PAD.decode(jwk["x"].as_str().ok_or("x")?)?,
        &URL_SAFE_NO_PAD.decode(jwk["y"].as_str().ok_or("y")?)?,
    ]
    .concat();
    // A stranger with its own keys, signing under its own kid and under the issuer's.
    let stranger = StubIssuer::start("stranger").await?;
    let foreign_kid = stranger.sign(&with(header.clone(), "kid", "elsewhere"), &claims)?;
    let stolen_kid = stranger.sign(&header, &claims)?;
    let valid = signed(&header, &claims)?;
    let [head, body, _] =
        <[&str; 3]>::try_from(valid.split('.').collect::<Vec<_>>()).map_err(|_| "three parts")?;
    let claim = |name: &str, value: Value| signed(&header, &with(claims.clone(), name, value));
    #[rustfmt::skip]
    let cases = [
        ("alg none, no signature",      jws(&with(header.clone(), "alg", "none"), &claims, |_| Vec::new()), Malformed),
        ("alg none, header and payload", format!("{head}.{body}"),                        Malformed),
        ("HS256 keyed with the JWK",    hs256(jwk.to_string().as_bytes()),                AlgorithmMismatch),
        ("HS256 keyed with the point",  hs256(&point),                                    AlgorithmMismatch),
        ("header alg RS256",            signed(&with(header.clone(), "alg", "RS256"), &claims)?, AlgorithmMismatch),
        ("a foreign kid",               foreign_kid,                                      UnknownKey),
        ("no kid",                      signed(&without(header.clone(), "kid"), &claims)?, UnknownKey),
        ("our kid, a stranger's key",   stolen_kid,                                       BadSignature),
        ("typ JWT",                     signed(&with(header.clone(), "typ", "JWT"), &claims)?, WrongType),
        ("no typ",                      signed(&without(header.clone(), "typ"), &claims)?, WrongType),
        ("wrong iss",                   claim("iss", json!("http://127.0.0.1:1/t/acme/"))?, WrongIssuer),
        ("wrong aud",                   claim("aud", json!("https://billing.example.com/"))?, WrongAudience),
        ("aud list without ours",       claim("aud", json!(["https://billing.example.com/"]))?, WrongAudience),
        ("expired",                     claim("exp", json!(now - 120))?,                  Expired),
        ("not yet valid",               claim("nbf", json!(now + 120))?,                  NotYetValid),
        ("no exp",                      signed(&header, &without(claims.clone(), "exp"))?, Malformed),
    ];
    let mut failures = Vec::new();
    for (case, token, expected) in cases {
        let actual = verifier.verify(&token).await;
        if actual != Err(AuthError::InvalidToken(expected.clone())) {
            failures.push(format!("{case}: expected {expected:?}, got {actual:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // Within the leeway (30 s) is still valid; the leeway is configurable.
    let late = claim("exp", json!(now - 20))?;
    verifier.verify(&late).await?;
    let strict = builder(&stub, &clock)
        .with_policy(|policy| policy.with_leeway_seconds(0))
        .build()?;
    assert_eq!(
        strict.verify(&late).await,
        Err(AuthError::InvalidToken(Expired))
    );
    // An issuer that types its tokens `JWT` can be accepted, by configuration only.
    let typed_jwt = signed(&with(header.clone(), "typ", "JWT"), &claims)?;
    let lenient = builder(&stub, &clock)
        .with_policy(|policy| policy.with_token_types(["at+jwt", "JWT"]))
        .build()?;
    lenient.verify(&typed_jwt).await?;
    Ok(())
}

#[tokio::test]
async fn a_key_rotation_is_followed_without_a_failed_request() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    let before = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    verifier.verify(&before).await?;
    assert_eq!(stub.jwks_fetches(), 1);

    clock.advance(i64::try_from(REFETCH_SECONDS)? + 1);
    let new_kid = stub.rotate()?;
    let after = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    // Many requests with the new key at once: every one succeeds, one refetch serves all.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (verifier, token) = (verifier.clone(), after.clone());
        tasks.push(tokio::spawn(async move { verifier.verify(&token).await }));
    }
    for task in tasks {
        assert_eq!(task.await??.key_id, new_kid);
    }
    assert_eq!(stub.jwks_fetches(), 2);
    // Tokens of the old key, still published, still verify; from the cache.
    verifier.verify(&before).await?;
    assert_eq!(stub.jwks_fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).build()?;
    verifier.ready().await?;
    let stranger = StubIssuer::start("stranger").await?;
    let claims = stub.claims(CLIENT_ID, AUDIENCE, "archive:read");
    let forged =
        |n: usize| stranger.sign(&with(stub.header(), "kid", format!("forged-{n}")), &claims);
    let refuse_all = async |from: usize| -> TestResult {
        let mut tasks = Vec::new();
        for n in from..from + 100 {
            let (verifier, token) = (verifier.clone(), forged(n)?);
            tasks.push(tokio::spawn(async move { verifier.verify(&token).await }));
        }
        for task in tasks {
            assert_eq!(task.await?, Err(AuthError::InvalidToken(UnknownKey)));
        }
        Ok(())
    };
    // Right after the first fetch: 100 forged kids cause no fetch at all.
    refuse_all(0).await?;
    assert_eq!(stub.jwks_fetches(), 1);
    // Once the interval has passed: one fetch for the next 100, however concurrent.
    clock.advance(i64::try_from(REFETCH_SECONDS)?);
    refuse_all(100).await?;
    assert_eq!(stub.jwks_fetches(), 2);
    refuse_all(200).await?;
    assert_eq!(stub.jwks_fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn the_key_set_is_cached_for_its_max_age_and_fetched_once_when_cold() -> TestResult {
    let (stub, clock) = stub().await?;
    stub.set_jwks_max_age(120);
    let verifier = builder(&stub, &clock).build()?;
    let token = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    // A cold verifier hit by many requests at once fetches metadata and keys once.
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (verifier, token) = (verifier.clone(), token.clone());
        tasks.push(tokio::spawn(async move { verifier.verify(&token).await }));
    }
    for task in tasks {
        task.await??;
    }
    assert_eq!((stub.metadata_fetches(), stub.jwks_fetches()), (1, 1));
    #[rustfmt::skip]
    let steps = [
        (119, 1), // within max-age: cached
        (1,   2), // at max-age: fetched again, before use
        (60,  2),
        (60,  3),
    ];
    for (seconds, fetches) in steps {
        clock.advance(seconds);
        verifier.verify(&token).await?;
        assert_eq!(stub.jwks_fetches(), fetches, "after {seconds} more seconds");
    }
    // Metadata is read once: the JWKS URL does not move.
    assert_eq!(stub.metadata_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn without_reachable_keys_every_token_is_refused() -> TestResult {
    let (stub, clock) = stub().await?;
    let token = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = closed.local_addr()?;
    drop(closed);
    let unreachable = Verifier::builder(format!("http://{address}/t/acme/"), AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .build()?;
    assert!(matches!(
        unreachable.verify(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert!(matches!(
        unreachable.ready().await,
        Err(AuthError::KeysUnavailable(_))
    ));
    // Metadata that names another issuer must not be used (RFC 8414 §3.3).
    let renamed = Verifier::builder(stub.issuer().trim_end_matches('/'), AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .build()?;
    let refused = renamed.verify(&token).await;
    assert!(
        matches!(&refused, Err(AuthError::KeysUnavailable(why)) if why.contains("RFC 8414")),
        "{refused:?}"
    );
    assert_eq!(stub.jwks_fetches(), 0);
    Ok(())
}

#[tokio::test]
async fn keys_can_be_given_by_jwks_uri() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = builder(&stub, &clock).jwks_uri(stub.jwks_uri()).build()?;
    verifier
        .verify(&stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?)
        .await?;
    assert_eq!((stub.metadata_fetches(), stub.jwks_fetches()), (0, 1));
    Ok(())
}

#[tokio::test]
async fn revoked_tokens_are_refused_once_introspection_says_so() -> TestResult {
    let (stub, clock) = stub().await?;
    let introspection = Introspection::new(
        stub.introspection_endpoint(),
        CLIENT_ID,
        ClientSecret::new(SECRET.to_owned()),
    )
    .cache_for(Duration::from_secs(10))
    .clock(Arc::new(clock.clone()));
    assert!(!format!("{introspection:?}").contains(SECRET));
    let verifier = builder(&stub, &clock)
        .revocation_check(Arc::new(introspection))
        .build()?;
    let token = stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?;
    let jti = verifier.verify(&token).await?.token_id.ok_or("no jti")?;
    assert_eq!(stub.introspections(), 1);
    stub.revoke(&jti);
    // The answer is reused for its cache time, then asked again.
    verifier.verify(&token).await?;
    assert_eq!(stub.introspections(), 1);
    clock.advance(10);
    assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    assert_eq!(stub.introspections(), 2);
    // Other tokens are unaffected.
    verifier
        .verify(&stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?)
        .await?;

    // Introspection that cannot be done fails closed.
    let wrong_secret = Introspection::new(
        stub.introspection_endpoint(),
        CLIENT_ID,
        ClientSecret::new("wrong".to_owned()),
    );
    let verifier = builder(&stub, &clock)
        .revocation_check(Arc::new(wrong_secret))
        .build()?;
    let refused = verifier
        .verify(&stub.issue(CLIENT_ID, AUDIENCE, "archive:read")?)
        .await;
    assert!(
        matches!(&refused, Err(AuthError::RevocationUnavailable(_))),
        "{refused:?}"
    );
    Ok(())
}

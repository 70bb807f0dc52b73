//! Verification throughput on one core, against raw ring verification of the same ES256
//! token in the same run: `cargo bench -p tollgate-verify`.
//!
//! Each contender runs in rounds of about half a second, interleaved, and keeps its best
//! round, so that a noisy moment hurts all of them alike. "raw ring" is the signature check
//! alone (signature already decoded, public key already parsed): the floor no verifier can go
//! below. The others take the compact token as a resource server receives it.

// A benchmark measures real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde_json::json;
use tollgate_verify::{Expectations, KeySet, Policy, Verifier, verify, verify_claims};

const ROUND: Duration = Duration::from_millis(500);
const ROUNDS: usize = 5;

/// Runs its operation the given number of times.
type Batch<'a> = Box<dyn FnMut(u64) + 'a>;

/// Runs `operation` in batches until a round's time is up; returns nanoseconds per call.
fn round(operation: &mut dyn FnMut(u64)) -> f64 {
    let started = Instant::now();
    let mut calls = 0_u64;
    while started.elapsed() < ROUND {
        operation(256);
        calls += 256;
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| e.to_string())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| e.to_string())?;
    let point = pair.public_key().as_ref().to_vec();
    let (x, y) = point[1..].split_at(32);
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    }]})
    .to_string();
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let issuer = "https://acme.hub.example.com/";
    let audience = "https://archive.example.com/";
    // A Tollgate-shaped token, so both verifiers accept it.
    let claims = json!({
        "iss": issuer, "sub": "abc123@client", "aud": audience, "iat": now, "nbf": now,
        "exp": now + 3600, "jti": "bjJ2mN0rZl9XkWq3sT5uVw", "cid": "ten_abc", "sid": "sec_def",
        "scp": ["archive:read"], "scope": "archive:read", "client_id": "abc123",
        "gty": "client_credentials",
    });
    let header = json!({ "alg": "ES256", "typ": "at+jwt", "kid": "k1" });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = pair
        .sign(&rng, message.as_bytes())
        .map_err(|e| e.to_string())?
        .as_ref()
        .to_vec();
    let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&signature));

    let keys = KeySet::from_jwks_json(&jwks)?;
    let expectations = Expectations::new(issuer, audience);
    let policy = Policy::new(issuer, audience);
    let verifier = Verifier::from_key_set(KeySet::from_jwks_json(&jwks)?, policy.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    // Every contender must accept the token, or the numbers mean nothing.
    let public_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
    public_key
        .verify(message.as_bytes(), &signature)
        .map_err(|_| "raw ring refused the token")?;
    verify_claims(&token, &keys, &policy, now)?;
    verify(&token, &keys, &expectations)?;
    runtime.block_on(verifier.verify(&token))?;

    let mut contenders: Vec<(&str, Batch, f64)> = vec![
        (
            "raw ring ECDSA P-256 verify",
            Box::new(|n| {
                for _ in 0..n {
                    let ok =
                        public_key.verify(black_box(message.as_bytes()), black_box(&signature));
                    black_box(ok.is_ok());
                }
            }),
            f64::MAX,
        ),
        (
            "verify_claims (generic claims)",
            Box::new(|n| {
                for _ in 0..n {
                    black_box(verify_claims(black_box(&token), &keys, &policy, now).is_ok());
                }
            }),
            f64::MAX,
        ),
        (
            "Verifier::verify (cached keys, async)",
            Box::new(|n| {
                runtime.block_on(async {
                    for _ in 0..n {
                        black_box(verifier.verify(black_box(&token)).await.is_ok());
                    }
                });
            }),
            f64::MAX,
        ),
        (
            "verify (Tollgate claims)",
            Box::new(|n| {
                for _ in 0..n {
                    black_box(verify(black_box(&token), &keys, &expectations).is_ok());
                }
            }),
            f64::MAX,
        ),
    ];
    for _ in 0..ROUNDS {
        for (_, operation, best) in &mut contenders {
            *best = best.min(round(operation.as_mut()));
        }
    }
    let raw = contenders[0].2;
    println!("ES256 token verification, one core, best of {ROUNDS} rounds of {ROUND:?}:");
    for (name, _, best) in &contenders {
        println!(
            "  {name:<40} {:>8.2} µs/token {:>9.0} tokens/s {:>6.1} % of raw ring",
            best / 1_000.0,
            1e9 / best,
            100.0 * raw / best
        );
    }
    Ok(())
}

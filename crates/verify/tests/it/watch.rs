//! `RevocationWatch` against the stub's revocation stream: revocations are refused within
//! moments of being pushed; checks fail closed before the snapshot and while the stream is
//! silent, and recover after a reconnection; refused credentials are retried with backoff.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_domain::{ClientSecret, Clock};
use tollgate_proto::v1::RevocationEntry;
use tollgate_stub_issuer::StubIssuer;
use tollgate_verify::{AuthError, RevocationWatch, Verifier};
use tonic::transport::Channel;

use crate::{AUDIENCE, CLIENT_ID, SECRET, TestResult, builder, stub};

/// The tenant id the stub's Tollgate-shaped tokens carry as `cid`.
const TENANT_ID: &str = "ten_acme";

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A token of the stub with Tollgate's `cid` and `sid`, and its `jti`.
fn tollgate_token(stub: &StubIssuer) -> Result<(String, String), Box<dyn Error>> {
    let mut claims = stub.claims(CLIENT_ID, AUDIENCE, "archive:read");
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    if let Some(map) = claims.as_object_mut() {
        map.insert("cid".to_owned(), json!(TENANT_ID));
        map.insert("sid".to_owned(), json!("sec_1"));
    }
    Ok((stub.sign(&stub.header(), &claims)?, jti))
}

fn revocation(kind: &str, value: &str, revoked_at: i64) -> RevocationEntry {
    RevocationEntry {
        kind: kind.to_owned(),
        value: value.to_owned(),
        revoked_at,
        expires_at: revoked_at + 3600,
        tenant_id: TENANT_ID.to_owned(),
    }
}

fn watch(stub: &StubIssuer, secret: &str) -> Result<RevocationWatch, Box<dyn Error>> {
    let channel = Channel::from_shared(stub.grpc_url())?.connect_lazy();
    Ok(RevocationWatch::builder(
        channel,
        "acme",
        CLIENT_ID,
        ClientSecret::new(secret.to_owned()),
    )
    .stale_after(ms(500))
    .backoff(ms(20), ms(200))
    .spawn()?)
}

/// Verifies `token` every 10 ms until `accept` likes the outcome; how long that took.
async fn until(
    verifier: &Verifier,
    token: &str,
    within: Duration,
    accept: impl Fn(&Result<tollgate_verify::Claims, AuthError>) -> bool,
) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    loop {
        let outcome = verifier.verify(token).await;
        if accept(&outcome) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(format!("still {outcome:?} after {within:?}").into());
        }
        tokio::time::sleep(ms(10)).await;
    }
}

fn is_unavailable(outcome: &Result<tollgate_verify::Claims, AuthError>) -> bool {
    matches!(outcome, Err(AuthError::RevocationUnavailable(_)))
}

#[tokio::test]
async fn a_watching_verifier_refuses_revoked_tokens_and_fails_closed_without_the_stream()
-> TestResult {
    let (stub, clock) = stub().await?;
    stub.set_watch_heartbeat(ms(100));
    stub.set_watch_silent(true);
    let watch = watch(&stub, SECRET)?;
    let verifier = builder(&stub, &clock)
        .revocation_check(Arc::new(watch.clone()))
        .build()?;
    let (token, jti) = tollgate_token(&stub)?;
    let (other, _) = tollgate_token(&stub)?;

    // No snapshot yet: refused as unavailable (503), not accepted.
    match verifier.verify(&token).await {
        Err(AuthError::RevocationUnavailable(why)) => {
            assert!(why.starts_with("no revocation snapshot yet"), "{why}");
        }
        other => return Err(format!("accepted without a snapshot: {other:?}").into()),
    }
    assert!(watch.ready(ms(300)).await.is_err());

    // The stream speaks: the silent one is given up, the next one delivers the snapshot.
    stub.set_watch_silent(false);
    watch.ready(Duration::from_secs(5)).await?;
    assert!(stub.watches() >= 2, "{} watches", stub.watches());
    assert_eq!(verifier.verify(&token).await?.token_id, Some(jti.clone()));

    // A revocation pushed on the stream is refused at once; other tokens are not.
    stub.push_revocation(revocation("jti", &jti, clock.now()));
    let delay = until(&verifier, &token, Duration::from_secs(1), |outcome| {
        matches!(outcome, Err(AuthError::Revoked))
    })
    .await?;
    eprintln!("watch (stub): revocation refused after {delay:?}");
    verifier.verify(&other).await?;

    // The app's tokens up to the cut-off; a token issued a second later is not covered.
    stub.push_revocation(revocation("client", CLIENT_ID, clock.now()));
    until(&verifier, &other, Duration::from_secs(1), |outcome| {
        matches!(outcome, Err(AuthError::Revoked))
    })
    .await?;
    clock.advance(1);
    let (later, _) = tollgate_token(&stub)?;
    verifier.verify(&later).await?;

    // Silence (no heartbeat either) beyond the limit: every check fails closed.
    stub.set_watch_silent(true);
    until(&verifier, &later, Duration::from_secs(3), is_unavailable).await?;
    assert!(!watch.status().is_answering);

    // Back again: a new stream, whose snapshot still holds both revocations.
    stub.set_watch_silent(false);
    until(&verifier, &later, Duration::from_secs(5), Result::is_ok).await?;
    assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    assert_eq!(verifier.verify(&other).await, Err(AuthError::Revoked));
    assert_eq!(watch.status().revocations, 2);

    // An ended stream is reopened at once, without a gap in the answers.
    let watches = stub.watches();
    stub.end_watches();
    let started = Instant::now();
    while stub.watches() == watches && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(ms(10)).await;
    }
    assert!(stub.watches() > watches);
    verifier.verify(&later).await?;
    Ok(())
}

#[tokio::test]
async fn refused_credentials_are_retried_with_backoff_until_the_watch_is_dropped() -> TestResult {
    let (stub, clock) = stub().await?;
    let watch = watch(&stub, "not-the-secret")?;
    let verifier = builder(&stub, &clock)
        .revocation_check(Arc::new(watch.clone()))
        .build()?;
    let (token, _) = tollgate_token(&stub)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    match verifier.verify(&token).await {
        Err(AuthError::RevocationUnavailable(why)) => assert_eq!(
            why,
            "no revocation snapshot yet: Unauthenticated: invalid_client"
        ),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    // 20 ms doubling to 200 ms, jittered: a handful of attempts in a second, not hundreds.
    let attempts = stub.watches();
    assert!((3..=15).contains(&attempts), "{attempts} attempts");

    // The task ends with the last clone of the watch.
    drop(verifier);
    drop(watch);
    tokio::time::sleep(ms(300)).await;
    let after_drop = stub.watches();
    tokio::time::sleep(ms(600)).await;
    assert_eq!(stub.watches(), after_drop);
    Ok(())
}

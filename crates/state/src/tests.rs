//! The in-process backend through the public API. (The Redis backend is exercised by the
//! integration suite in `tests/it`.)

use std::time::Duration;

use tollgate_domain::{ManualClock, Revocation, RevocationTarget, TenantName, TokenFacts};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NOW: UnixTime = 1_700_000_000;

fn token(iat: UnixTime) -> TokenFacts<'static> {
    TokenFacts {
        tenant_id: "ten_a",
        jti: "jti_1",
        sid: "sec_1",
        client_id: "client_1",
        iat,
    }
}

fn revocation(target: RevocationTarget, revoked_at: UnixTime, expires_at: UnixTime) -> Revocation {
    Revocation {
        tenant_id: "ten_a".into(),
        target,
        revoked_at,
        expires_at,
    }
}

fn state() -> (SharedState, ManualClock) {
    let clock = ManualClock::new(NOW);
    (SharedState::in_process_with_clock(clock.clone()), clock)
}

#[tokio::test]
async fn in_process_basics() -> TestResult {
    let (state, _) = state();
    assert_eq!(state.backend_name(), "in-process");
    assert!(state.is_populated().await?);
    assert_eq!(
        format!("{state:?}"),
        r#"SharedState { backend: "in-process" }"#
    );
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::NotRevoked
    );
    Ok(())
}

/// Every kind, against the same cases as `Revocation::covers`, which must agree.
#[tokio::test]
async fn coverage_per_kind_equals_covers() -> TestResult {
    let iat = NOW - 10;
    let cases = [
        (RevocationTarget::Token("jti_1".into()), NOW, true),
        (RevocationTarget::Token("jti_2".into()), NOW, false),
        (RevocationTarget::Secret("sec_1".into()), NOW, true),
        (RevocationTarget::Secret("sec_2".into()), NOW, false),
        // App and tenant: the cut-off is inclusive.
        (RevocationTarget::App("client_1".into()), iat, true),
        (RevocationTarget::App("client_1".into()), iat - 1, false),
        (RevocationTarget::App("client_2".into()), NOW, false),
        (RevocationTarget::Tenant, iat, true),
        (RevocationTarget::Tenant, iat - 1, false),
        // A jti or sid revocation covers the token whatever its revoked_at.
        (RevocationTarget::Token("jti_1".into()), iat - 100, true),
        (RevocationTarget::Secret("sec_1".into()), iat - 100, true),
    ];
    for (target, revoked_at, expected) in cases {
        let (state, _) = state();
        let entry = revocation(target.clone(), revoked_at, NOW + 600);
        assert_eq!(entry.covers(&token(iat)), expected, "covers {target:?}");
        state.add_revocations(&[entry], NOW).await?;
        let status = state.revocation_status(&token(iat)).await?;
        let want = if expected {
            RevocationStatus::Revoked
        } else {
            RevocationStatus::NotRevoked
        };
        assert_eq!(status, want, "{target:?} cut-off {revoked_at}");
    }
    Ok(())
}

#[tokio::test]
async fn other_tenants_are_not_covered() -> TestResult {
    let (state, _) = state();
    let other = Revocation {
        tenant_id: "ten_b".into(),
        ..revocation(RevocationTarget::Tenant, NOW, NOW + 600)
    };
    state.add_revocations(&[other], NOW).await?;
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::NotRevoked
    );
    Ok(())
}

#[tokio::test]
async fn later_cutoff_and_longer_expiry_win() -> TestResult {
    let (state, clock) = state();
    let app = |revoked_at, expires_at| {
        revocation(
            RevocationTarget::App("client_1".into()),
            revoked_at,
            expires_at,
        )
    };
    state
        .add_revocations(&[app(NOW, NOW + 100), app(NOW - 50, NOW + 500)], NOW)
        .await?;
    // The earlier cut-off does not lower the later one.
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::Revoked
    );
    assert_eq!(
        state.revocation_status(&token(NOW + 1)).await?,
        RevocationStatus::NotRevoked
    );
    // The shorter expiry does not shorten the longer one.
    clock.advance(200);
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::Revoked
    );
    Ok(())
}

#[tokio::test]
async fn entries_expire_and_are_pruned() -> TestResult {
    let (state, clock) = state();
    let jti = revocation(RevocationTarget::Token("jti_1".into()), NOW, NOW + 60);
    let already_expired = revocation(RevocationTarget::Tenant, NOW - 600, NOW);
    state.add_revocations(&[jti, already_expired], NOW).await?;
    assert_eq!(
        state.revocation_status(&token(NOW - 1)).await?,
        RevocationStatus::Revoked
    );
    clock.advance(59);
    assert_eq!(
        state.revocation_status(&token(NOW - 1)).await?,
        RevocationStatus::Revoked
    );
    clock.advance(1);
    assert_eq!(
        state.revocation_status(&token(NOW - 1)).await?,
        RevocationStatus::NotRevoked
    );
    let Backend::Memory(memory) = &*state.backend else {
        return Err("not the in-process backend".into());
    };
    // The expired tenant entry was never stored.
    assert_eq!(memory.len(), 1);
    // A later write sweeps out what has expired.
    let later = revocation(RevocationTarget::Secret("sec_9".into()), NOW, NOW + 600);
    state.add_revocations(&[later], clock.now()).await?;
    assert_eq!(memory.len(), 1);
    Ok(())
}

#[tokio::test]
async fn replace_drops_what_is_not_live() -> TestResult {
    let (state, _) = state();
    let jti = revocation(RevocationTarget::Token("jti_1".into()), NOW, NOW + 60);
    state.add_revocations(&[jti], NOW).await?;
    let sid = revocation(RevocationTarget::Secret("sec_1".into()), NOW, NOW + 60);
    state.replace_revocations(&[], NOW).await?;
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::NotRevoked
    );
    state.replace_revocations(&[sid], NOW).await?;
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::Revoked
    );
    Ok(())
}

#[tokio::test]
async fn invalid_keys_store_nothing() -> TestResult {
    let (state, _) = state();
    let good = revocation(RevocationTarget::Tenant, NOW, NOW + 60);
    let bad = revocation(RevocationTarget::Token("x".repeat(10_000)), NOW, NOW + 60);
    let result = state.add_revocations(&[good, bad], NOW).await;
    assert!(matches!(
        result,
        Err(StateError::InvalidKey { field: "jti", .. })
    ));
    assert_eq!(
        state.revocation_status(&token(NOW)).await?,
        RevocationStatus::NotRevoked
    );
    let long = "y".repeat(10_000);
    let absurd = TokenFacts {
        client_id: &long,
        ..token(NOW)
    };
    assert!(state.revocation_status(&absurd).await.is_err());
    Ok(())
}

#[tokio::test]
async fn rate_limit_burst_and_retry_after() -> TestResult {
    let (state, _) = state();
    // One unit a minute: nothing refills while the test runs.
    let rate = 1.0 / 60.0;
    for expected_remaining in [2, 1, 0] {
        let decision = state.check_rate("app:1", rate, 3).await;
        assert!(decision.allowed);
        assert!(!decision.degraded);
        assert_eq!(decision.limit, 3);
        assert_eq!(decision.remaining, expected_remaining);
        assert_eq!(decision.retry_after, Duration::ZERO);
    }
    let denied = state.check_rate("app:1", rate, 3).await;
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert!(
        denied.retry_after > Duration::from_secs(59)
            && denied.retry_after <= Duration::from_secs(60),
        "{denied:?}"
    );
    assert!(
        denied.reset_after > Duration::from_secs(179)
            && denied.reset_after <= Duration::from_secs(180),
        "{denied:?}"
    );
    // Keys are independent.
    assert!(state.check_rate("app:2", rate, 3).await.allowed);
    // A zero rate never means unlimited.
    assert!(state.check_rate("zero", 0.0, 1).await.allowed);
    assert!(!state.check_rate("zero", 0.0, 1).await.allowed);
    Ok(())
}

#[tokio::test]
async fn rate_limits_refill_by_the_injected_clock() -> TestResult {
    let (state, clock) = state();
    // Two a second, two at once.
    assert!(state.check_rate("app:1", 2.0, 2).await.allowed);
    assert!(state.check_rate("app:1", 2.0, 2).await.allowed);
    let denied = state.check_rate("app:1", 2.0, 2).await;
    assert!(!denied.allowed);
    // The clock stands still: exactly one interval to wait, however long the test takes.
    assert_eq!(denied.retry_after, Duration::from_millis(500));
    assert_eq!(denied.reset_after, Duration::from_secs(1));
    clock.advance_by(Duration::from_millis(499));
    assert!(!state.check_rate("app:1", 2.0, 2).await.allowed);
    clock.advance_by(Duration::from_millis(1));
    let refilled = state.check_rate("app:1", 2.0, 2).await;
    assert!(refilled.allowed);
    assert_eq!(refilled.remaining, 0);
    // A wall-clock step back does not move the monotonic reading: no extra refill, no lock-out.
    clock.advance(-3_600);
    assert!(!state.check_rate("app:1", 2.0, 2).await.allowed);
    clock.advance_by(Duration::from_secs(1));
    assert_eq!(state.check_rate("app:1", 2.0, 2).await.remaining, 1);
    Ok(())
}

#[tokio::test]
async fn changes_reach_every_subscriber() -> TestResult {
    let (state, _) = state();
    let mut first = state.subscribe_changes();
    let mut second = state.clone().subscribe_changes();
    let acme = TenantName::parse("acme")?;
    state.publish_change(&acme).await;
    assert_eq!(first.recv().await?, ChangeEvent::Tenant(acme.clone()));
    assert_eq!(second.recv().await?, ChangeEvent::Tenant(acme));
    // Publishing with no subscriber is fine.
    drop((first, second));
    state.publish_change(&TenantName::parse("other")?).await;
    Ok(())
}

#[test]
fn covered_matches_the_domain_rule() {
    assert!(!covered(None, None, None, None, 5));
    assert!(covered(Some(0), None, None, None, 5));
    assert!(covered(None, Some(0), None, None, 5));
    assert!(covered(None, None, Some(5), None, 5));
    assert!(!covered(None, None, Some(4), None, 5));
    assert!(covered(None, None, None, Some(5), 5));
    assert!(!covered(None, None, None, Some(4), 5));
}

/// Services hold the state in `Arc`s and await it inside spawned tasks and axum handlers.
#[test]
fn state_and_its_futures_are_send() {
    fn is_send_sync<T: Send + Sync>(_: &T) {}
    fn is_send<T: Send>(_: T) {}
    let (state, _) = state();
    is_send_sync(&state);
    let tenant = TenantName::system();
    is_send(state.add_revocations(&[], NOW));
    is_send(state.revocation_status(&token(NOW)));
    is_send(state.is_populated());
    is_send(state.replace_revocations(&[], NOW));
    is_send(state.check_rate("k", 1.0, 1));
    is_send(state.publish_change(&tenant));
    is_send(SharedState::connect_redis("redis://127.0.0.1:1/"));
}

//! Revocations on the shared Redis: coverage per kind, cut-offs, merging, TTLs and the
//! population marker.

use std::time::Duration;

use tollgate_domain::{Revocation, RevocationTarget, TokenFacts};
use tollgate_state::{RevocationStatus, StateError};

use crate::{TestResult, connect, delete_prefix, now, raw, redis_url};

fn token(iat: i64) -> TokenFacts<'static> {
    TokenFacts {
        tenant_id: "ten_a",
        jti: "jti_1",
        sid: "sec_1",
        client_id: "client_1",
        iat,
    }
}

fn revocation(target: RevocationTarget, revoked_at: i64, expires_at: i64) -> Revocation {
    Revocation {
        tenant_id: "ten_a".into(),
        target,
        revoked_at,
        expires_at,
    }
}

#[tokio::test]
async fn coverage_per_kind_and_cutoffs() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let now = now();
    let iat = now - 10;
    let cases = [
        (RevocationTarget::Token("jti_1".into()), now, true),
        (RevocationTarget::Token("jti_2".into()), now, false),
        (RevocationTarget::Secret("sec_1".into()), now, true),
        (RevocationTarget::Secret("sec_2".into()), now, false),
        (RevocationTarget::App("client_1".into()), iat, true),
        (RevocationTarget::App("client_1".into()), iat - 1, false),
        (RevocationTarget::App("client_2".into()), now, false),
        (RevocationTarget::Tenant, iat, true),
        (RevocationTarget::Tenant, iat - 1, false),
    ];
    for (target, revoked_at, expected) in cases {
        let (state, prefix) = connect(&url).await?;
        assert_eq!(state.backend_name(), "redis");
        state.replace_revocations(&[], now).await?;
        let entry = revocation(target.clone(), revoked_at, now + 600);
        assert_eq!(entry.covers(&token(iat)), expected, "covers {target:?}");
        state.add_revocations(&[entry], now).await?;
        let want = if expected {
            RevocationStatus::Revoked
        } else {
            RevocationStatus::NotRevoked
        };
        assert_eq!(
            state.revocation_status(&token(iat)).await?,
            want,
            "{target:?} cut-off {revoked_at}"
        );
        // Another tenant's token is never covered.
        let other = TokenFacts {
            tenant_id: "ten_b",
            ..token(iat)
        };
        assert_eq!(
            state.revocation_status(&other).await?,
            RevocationStatus::NotRevoked
        );
        delete_prefix(&url, &prefix).await?;
    }
    Ok(())
}

#[tokio::test]
async fn keys_ttls_and_merging() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let (state, prefix) = connect(&url).await?;
    let now = now();
    let app = |revoked_at, expires_at| {
        revocation(
            RevocationTarget::App("client:1".into()),
            revoked_at,
            expires_at,
        )
    };
    state
        .add_revocations(&[app(now, now + 100), app(now - 50, now + 500)], now)
        .await?;
    // A later, shorter one does not lower the cut-off or shorten the TTL either.
    state
        .add_revocations(&[app(now - 60, now + 10)], now)
        .await?;
    let mut conn = raw(&url).await?;
    let key = format!("{prefix}rv:ten_a:client:client:1");
    let value: i64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    assert_eq!(value, now);
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await?;
    assert!((400_000..=500_000).contains(&ttl), "{ttl}");
    // A later cut-off raises it.
    state
        .add_revocations(&[app(now + 5, now + 50)], now)
        .await?;
    let value: i64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    assert_eq!(value, now + 5);

    // Expired entries are not written; tenant keys have no subject.
    let tenant = revocation(RevocationTarget::Tenant, now - 900, now - 1);
    state.add_revocations(&[tenant], now).await?;
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}rv:ten_a:tenant"))
        .query_async(&mut conn)
        .await?;
    assert!(!exists);

    // Absurd values are refused before anything is written.
    let huge = revocation(RevocationTarget::Secret("s".repeat(100_000)), now, now + 60);
    let fine = revocation(RevocationTarget::Token("fine".into()), now, now + 60);
    let result = state.add_revocations(&[fine, huge], now).await;
    assert!(matches!(
        result,
        Err(StateError::InvalidKey { field: "sid", .. })
    ));
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}rv:ten_a:jti:fine"))
        .query_async(&mut conn)
        .await?;
    assert!(!exists);
    delete_prefix(&url, &prefix).await?;
    Ok(())
}

#[tokio::test]
async fn entries_expire_with_their_ttl() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let (state, prefix) = connect(&url).await?;
    let now = now();
    state.replace_revocations(&[], now).await?;
    let short = revocation(RevocationTarget::Token("jti_1".into()), now, now + 1);
    state.add_revocations(&[short], now).await?;
    assert_eq!(
        state.revocation_status(&token(now)).await?,
        RevocationStatus::Revoked
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        state.revocation_status(&token(now)).await?,
        RevocationStatus::NotRevoked
    );
    delete_prefix(&url, &prefix).await?;
    Ok(())
}

#[tokio::test]
async fn unknown_until_populated_and_after_a_wipe() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let (state, prefix) = connect(&url).await?;
    let now = now();
    // A fresh (or flushed) Redis cannot vouch for anything...
    assert!(!state.is_populated().await?);
    assert_eq!(
        state.revocation_status(&token(now)).await?,
        RevocationStatus::Unknown
    );
    // ...except what it does hold.
    let jti = revocation(RevocationTarget::Token("jti_1".into()), now, now + 600);
    state
        .add_revocations(std::slice::from_ref(&jti), now)
        .await?;
    assert_eq!(
        state.revocation_status(&token(now)).await?,
        RevocationStatus::Revoked
    );
    let other = TokenFacts {
        jti: "jti_2",
        sid: "sec_2",
        ..token(now)
    };
    assert_eq!(
        state.revocation_status(&other).await?,
        RevocationStatus::Unknown
    );

    let tenant = revocation(RevocationTarget::Tenant, now - 100, now + 600);
    state
        .replace_revocations(&[jti.clone(), tenant.clone()], now)
        .await?;
    assert!(state.is_populated().await?);
    assert_eq!(
        state.revocation_status(&other).await?,
        RevocationStatus::NotRevoked
    );
    let old = TokenFacts {
        iat: now - 100,
        ..other
    };
    assert_eq!(
        state.revocation_status(&old).await?,
        RevocationStatus::Revoked
    );
    let mut conn = raw(&url).await?;
    let marker: i64 = redis::cmd("GET")
        .arg(format!("{prefix}rv:populated"))
        .query_async(&mut conn)
        .await?;
    assert_eq!(marker, now);

    // Losing everything (as FLUSHDB would; the shared server is not ours to flush, so only
    // this test's keys go) makes the copy unknown again, and replacing restores it.
    delete_prefix(&url, &prefix).await?;
    assert!(!state.is_populated().await?);
    assert_eq!(
        state.revocation_status(&old).await?,
        RevocationStatus::Unknown
    );
    state.replace_revocations(&[jti, tenant], now).await?;
    assert_eq!(
        state.revocation_status(&old).await?,
        RevocationStatus::Revoked
    );
    assert_eq!(
        state.revocation_status(&other).await?,
        RevocationStatus::NotRevoked
    );

    // Garbage under a key is a failure, not a pass.
    redis::cmd("SET")
        .arg(format!("{prefix}rv:ten_a:client:client_1"))
        .arg("garbage")
        .query_async::<()>(&mut conn)
        .await?;
    assert!(matches!(
        state.revocation_status(&other).await,
        Err(StateError::CorruptValue)
    ));
    delete_prefix(&url, &prefix).await?;
    Ok(())
}

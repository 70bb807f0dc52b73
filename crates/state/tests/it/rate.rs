//! GCRA on Redis: one bucket shared by every instance.

use std::time::Duration;

use tollgate_state::SharedState;

use crate::{TestResult, delete_prefix, redis_url, unique_prefix};

#[tokio::test]
async fn a_bucket_is_shared_between_instances() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let a = SharedState::connect_redis_with_prefix(&url, &prefix).await?;
    let b = SharedState::connect_redis_with_prefix(&url, &prefix).await?;
    // One unit every 10 s, ten at once: nothing refills while the test runs.
    let (rate, burst) = (0.1, 10);
    let mut admitted = 0;
    let mut last_denial = None;
    for i in 0..30 {
        let state = if i % 2 == 0 { &a } else { &b };
        let decision = state.check_rate("app:shared", rate, burst).await;
        assert!(!decision.degraded, "{decision:?}");
        assert_eq!(decision.limit, burst);
        if decision.allowed {
            admitted += 1;
            assert_eq!(decision.remaining, burst - admitted, "{decision:?}");
            assert_eq!(decision.retry_after, Duration::ZERO);
        } else {
            assert_eq!(decision.remaining, 0);
            last_denial = Some(decision);
        }
    }
    // Combined, the two instances admit the burst, not twice it.
    assert_eq!(admitted, burst);
    let denied = last_denial.ok_or("nothing was denied")?;
    assert!(
        denied.retry_after > Duration::from_secs(9)
            && denied.retry_after <= Duration::from_secs(10),
        "{denied:?}"
    );
    assert!(
        denied.reset_after > Duration::from_secs(99)
            && denied.reset_after <= Duration::from_secs(100),
        "{denied:?}"
    );
    // Other keys have their own buckets.
    assert!(a.check_rate("app:other", rate, burst).await.allowed);
    delete_prefix(&url, &prefix).await?;
    Ok(())
}

#[tokio::test]
async fn buckets_refill_at_the_rate() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let state = SharedState::connect_redis_with_prefix(&url, &prefix).await?;
    // Ten a second, two at once.
    assert!(state.check_rate("k", 10.0, 2).await.allowed);
    assert!(state.check_rate("k", 10.0, 2).await.allowed);
    let denied = state.check_rate("k", 10.0, 2).await;
    assert!(!denied.allowed);
    assert!(
        denied.retry_after <= Duration::from_millis(100),
        "{denied:?}"
    );
    tokio::time::sleep(denied.retry_after + Duration::from_millis(20)).await;
    assert!(state.check_rate("k", 10.0, 2).await.allowed);
    // The bucket key expires once the bucket is full again.
    let mut conn = crate::raw(&url).await?;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}rl:k"))
        .query_async(&mut conn)
        .await?;
    assert!((1..=200).contains(&ttl), "{ttl}");
    delete_prefix(&url, &prefix).await?;
    Ok(())
}

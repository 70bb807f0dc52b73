//! Change notifications across instances through Redis pub/sub.

use std::time::Duration;

use tollgate_domain::TenantName;
use tollgate_state::{ChangeEvent, SharedState};

use crate::{TestResult, next_change, redis_url, unique_prefix};

#[tokio::test]
async fn a_change_reaches_every_instance() -> TestResult {
    let Some(url) = redis_url()? else {
        return Ok(());
    };
    let prefix = unique_prefix();
    let a = SharedState::connect_redis_with_prefix(&url, &prefix).await?;
    let b = SharedState::connect_redis_with_prefix(&url, &prefix).await?;
    let elsewhere = SharedState::connect_redis_with_prefix(&url, &unique_prefix()).await?;
    let mut on_a = a.subscribe_changes();
    let mut on_b = b.subscribe_changes();
    let mut on_elsewhere = elsewhere.subscribe_changes();

    let acme = TenantName::parse("acme")?;
    a.publish_change(&acme).await;
    let limit = Duration::from_secs(5);
    assert_eq!(
        next_change(&mut on_b, limit).await?,
        ChangeEvent::Tenant(acme.clone())
    );
    // The publisher hears its own change too.
    assert_eq!(
        next_change(&mut on_a, limit).await?,
        ChangeEvent::Tenant(acme)
    );
    // Another prefix is another world.
    assert!(
        next_change(&mut on_elsewhere, Duration::from_millis(300))
            .await
            .is_err()
    );

    // Order is kept.
    let names = ["t1", "t2", "t3"];
    for name in names {
        b.publish_change(&TenantName::parse(name)?).await;
    }
    for name in names {
        assert_eq!(
            next_change(&mut on_a, limit).await?,
            ChangeEvent::Tenant(TenantName::parse(name)?)
        );
    }
    Ok(())
}

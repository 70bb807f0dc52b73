//! Redis flushed, stopped and restarted empty, on a throwaway `redis-server` of this test's
//! own (the shared one is not ours to break).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tollgate_domain::{Revocation, RevocationTarget, TenantName, TestClock, TokenFacts};
use tollgate_state::{ChangeEvent, RevocationStatus, SharedState};

use crate::{TestResult, backends_required, next_change, now, raw, redis_url};

/// A port nothing listens on (bound, then released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `redis-server` child on a loopback port, killed when dropped.
struct Throwaway {
    port: u16,
    child: Option<Child>,
}

impl Throwaway {
    /// Starts one, or `None` after saying SKIPPED when `redis-server` is not on PATH (an
    /// error when every backend is required).
    async fn start() -> Result<Option<Self>, Box<dyn std::error::Error + Send + Sync>> {
        let available = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !available {
            if backends_required() {
                return Err("TOLLGATE_REQUIRE_BACKENDS=1 but redis-server is not on PATH".into());
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: redis restart test — redis-server is not on PATH"
            );
            return Ok(None);
        }
        let mut server = Self {
            port: free_port()?,
            child: None,
        };
        server.spawn().await?;
        Ok(Some(server))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, on the same port, empty) and waits until it answers.
    async fn spawn(&mut self) -> TestResult {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..100 {
            if let Ok(mut conn) = raw(&self.url()).await
                && redis::cmd("PING")
                    .query_async::<()>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the throwaway redis-server did not start".into())
    }

    /// Kills the server (like a crash: nothing is saved).
    fn stop(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn token(jti: &'static str, iat: i64) -> TokenFacts<'static> {
    TokenFacts {
        tenant_id: "ten_a",
        jti,
        sid: "sec_1",
        client_id: "client_1",
        iat,
    }
}

/// Waits (bounded) for `wanted`, skipping other events.
async fn wait_for(
    receiver: &mut tokio::sync::broadcast::Receiver<ChangeEvent>,
    wanted: &ChangeEvent,
    limit: Duration,
) -> TestResult {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if next_change(receiver, left).await? == *wanted {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn flush_outage_and_restart() -> TestResult {
    // Needs no shared Redis, but belongs to the Redis suite: skip with it.
    if redis_url()?.is_none() {
        return Ok(());
    }
    let Some(mut server) = Throwaway::start().await? else {
        return Ok(());
    };
    let url = server.url();
    // The default prefix: this server is ours alone. The outage back-off runs on `clock`.
    let clock = TestClock::new();
    let state = SharedState::connect_redis_with_clock(&url, Arc::new(clock.clone())).await?;
    let other = SharedState::connect_redis(&url).await?;
    let mut changes = state.subscribe_changes();
    let now = now();
    let revoked = Revocation {
        tenant_id: "ten_a".into(),
        target: RevocationTarget::Token("jti_revoked".into()),
        revoked_at: now,
        expires_at: now + 600,
    };
    let live = std::slice::from_ref(&revoked);

    // FLUSHDB and FLUSHALL each make the copy unknown; repopulating restores it.
    for flush in ["FLUSHDB", "FLUSHALL"] {
        state.replace_revocations(live, now).await?;
        assert!(state.is_populated().await?);
        assert_eq!(
            state.revocation_status(&token("jti_revoked", now)).await?,
            RevocationStatus::Revoked
        );
        assert_eq!(
            other.revocation_status(&token("jti_fine", now)).await?,
            RevocationStatus::NotRevoked
        );
        let mut conn = raw(&url).await?;
        redis::cmd(flush).query_async::<()>(&mut conn).await?;
        assert!(!state.is_populated().await?, "{flush}");
        for jti in ["jti_revoked", "jti_fine"] {
            assert_eq!(
                other.revocation_status(&token(jti, now)).await?,
                RevocationStatus::Unknown,
                "{flush} {jti}"
            );
        }
    }
    state.replace_revocations(live, now).await?;
    assert!(!state.check_rate("app:1", 0.1, 2).await.degraded);

    // Redis goes away.
    server.stop()?;
    // Revocation calls fail (callers fail closed)...
    assert!(
        state
            .revocation_status(&token("jti_fine", now))
            .await
            .is_err()
    );
    assert!(state.is_populated().await.is_err());
    assert!(state.add_revocations(live, now).await.is_err());
    assert!(state.replace_revocations(live, now).await.is_err());
    // ...rate limits fall back to this instance's own buckets, still limited...
    let started = std::time::Instant::now();
    let first = state.check_rate("app:2", 0.1, 2).await;
    let second = state.check_rate("app:2", 0.1, 2).await;
    let third = state.check_rate("app:2", 0.1, 2).await;
    assert!(first.degraded && second.degraded && third.degraded);
    assert!(
        first.allowed && second.allowed && !third.allowed,
        "{third:?}"
    );
    assert!(third.retry_after > Duration::from_secs(9), "{third:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // ...and a change still reaches this instance's own subscribers.
    let acme = TenantName::parse("acme")?;
    state.publish_change(&acme).await;
    wait_for(
        &mut changes,
        &ChangeEvent::Tenant(acme),
        Duration::from_secs(3),
    )
    .await?;

    // Redis comes back empty: the subscriber re-subscribes and says "everything".
    server.spawn().await?;
    wait_for(&mut changes, &ChangeEvent::All, Duration::from_secs(10)).await?;
    // It keeps receiving, from another instance whose own connection was dropped too.
    let beta = TenantName::parse("beta")?;
    other.publish_change(&beta).await;
    wait_for(
        &mut changes,
        &ChangeEvent::Tenant(beta),
        Duration::from_secs(5),
    )
    .await?;

    // Nothing survived, and the backend says so rather than "not revoked".
    assert!(!state.is_populated().await?);
    assert_eq!(
        state.revocation_status(&token("jti_revoked", now)).await?,
        RevocationStatus::Unknown
    );
    state.replace_revocations(live, now).await?;
    assert_eq!(
        other.revocation_status(&token("jti_revoked", now)).await?,
        RevocationStatus::Revoked
    );

    // Rate limiting goes back to Redis once the 1 s bypass is over (on the state's clock;
    // the retries below wait for the reconnection, real I/O).
    clock.advance(Duration::from_millis(1_100));
    let mut shared = false;
    for _ in 0..10 {
        if !state.check_rate("app:3", 100.0, 100).await.degraded {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(shared, "rate limiting never went back to redis");
    Ok(())
}

//! The writer's throughput and added latency, measured, not asserted (`#[ignore]`d: timing
//! depends on the machine). Each run records from R concurrent recorders for a few seconds,
//! spread over 8 tenants, and reports committed events per second, transactions, the mean
//! batch, and the latency of `record` (queueing + batching + commit), which is what a token
//! request would wait for on top of issuing.
//!
//! ```sh
//! TOLLGATE_TEST_POSTGRES_URL=postgres://tollgate:tollgate@127.0.0.1:5432/postgres \
//!   cargo test --release -p tollgate-audit --test it -- --ignored --nocapture bench
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tollgate_audit::{
    AuditAction, AuditConfig, AuditEvent, AuditWriter, Identifier, Outcome, Transport,
    verify_tenant,
};
use tollgate_domain::{TenantId, TenantName};

use crate::TestResult;
use crate::backend::{Backend, TestDb, run};

/// How long each configuration runs.
const RUN: Duration = Duration::from_secs(5);

/// A typical grant: the fields a token request fills.
fn grant(
    tenant: usize,
    recorder: usize,
    n: u64,
) -> Result<AuditEvent, tollgate_domain::InvalidValue> {
    let mut event = AuditEvent::new(
        TenantId::new(format!("ten_{tenant}")),
        TenantName::parse("acme")?,
        tollgate_domain::Clock::now_ms(&tollgate_domain::SystemClock),
        AuditAction::TokenIssued,
        Outcome::Granted,
    );
    let client = Identifier::parse("Zq3v9XkP2mT8wR4yB6nC1dF5gH7jK0lA")?;
    event.actor = Some(client.clone());
    event.client_id = Some(client);
    event.secret_id = Some(Identifier::parse("sec_Gx2k9Qm4Tz8Lw1Rv5Yb3Nc")?);
    event.audience = Some(Identifier::parse("https://archive.example.com/")?);
    event.scopes_granted = vec![
        Identifier::parse("archive:read")?,
        Identifier::parse("archive:write")?,
    ];
    event.jti = Some(Identifier::parse(&format!("jti-{recorder}-{n}"))?);
    event.source = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    event.transport = Some(Transport::Grpc);
    Ok(event)
}

/// One measurement: `recorders` loops recording for [`RUN`].
async fn measure(db: &TestDb, recorders: usize, config: AuditConfig) -> TestResult {
    let label = format!(
        "{:<8} recorders={recorders:<3} max_batch={} max_wait={:?}",
        db.store.backend_name(),
        config.max_batch,
        config.max_wait
    );
    let (writer, task) = AuditWriter::start(db.store.clone(), config);
    let started = Instant::now();
    let stop = started + RUN;
    let mut set = JoinSet::new();
    for recorder in 0..recorders {
        let writer = writer.clone();
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < stop {
                let event = grant(recorder % 8, recorder, n)?;
                let begin = Instant::now();
                writer.record(event).await?;
                latencies.push(begin.elapsed());
                n += 1;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(outcome) = set.join_next().await {
        latencies.extend(outcome??);
    }
    let elapsed = started.elapsed();
    let stats = writer.stats();
    writer.shutdown().await;
    task.await?;

    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    let mean = latencies.iter().sum::<Duration>() / u32::try_from(latencies.len().max(1))?;
    let line = format!(
        "{label}: {:>7.0} events/s, {} events in {} transactions (mean batch {:.1}, \
         mean transaction {:.2} ms); latency mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms",
        stats.events as f64 / elapsed.as_secs_f64(),
        stats.events,
        stats.batches,
        stats.events as f64 / stats.batches.max(1) as f64,
        stats.commit_micros as f64 / 1e3 / stats.batches.max(1) as f64,
        mean.as_secs_f64() * 1e3,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    // Straight to stderr: visible without --nocapture too.
    let _ = writeln!(std::io::stderr(), "{line}");
    // The chains are intact after the load.
    for tenant in 0..recorders.min(8) {
        let report = verify_tenant(
            &db.store,
            &TenantId::new(format!("ten_{tenant}")),
            10_000,
            u64::MAX,
        )
        .await?;
        assert_eq!(report.outcome, Ok(()), "{line}");
    }
    Ok(())
}

async fn bench(db: TestDb) -> TestResult {
    let default = AuditConfig::default();
    let waiting = AuditConfig {
        max_wait: Duration::from_millis(1),
        ..AuditConfig::default()
    };
    for (recorders, config) in [
        (64, default.clone()),
        (64, waiting.clone()),
        (1, default.clone()),
        (1, waiting),
        (1024, default),
    ] {
        measure(&db, recorders, config).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
async fn bench_sqlite() -> TestResult {
    run(Backend::Sqlite, bench).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture, preferably --release"]
async fn bench_postgres() -> TestResult {
    run(Backend::Postgres, bench).await
}

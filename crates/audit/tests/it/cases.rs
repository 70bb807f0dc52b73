//! The cases. Each gets a fresh, migrated database and must behave the same on every
//! backend.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tollgate_audit::{
    AuditAction, AuditConfig, AuditError, AuditEvent, AuditRecord, AuditWriter, ChainBreak,
    FieldName, Identifier, Outcome, Transport, verify_chain, verify_tenant,
};
use tollgate_domain::{ErrorCode, TenantId, TenantName};
use tollgate_store::Store;

use crate::TestResult;
use crate::backend::TestDb;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An event with every field set; `n` makes its `jti` (and time) unique within the tenant.
fn event(tenant_id: &str, n: u32) -> Result<AuditEvent, BoxError> {
    let id = |value: &str| Identifier::parse(value);
    let mut event = AuditEvent::new(
        TenantId::new(tenant_id),
        TenantName::parse("acme")?,
        1_700_000_000_000 + i64::from(n),
        AuditAction::TokenDenied,
        Outcome::Denied,
    );
    event.error = Some(ErrorCode::InvalidScope);
    event.actor = Some(id("client-1")?);
    event.client_id = Some(id("client-1")?);
    event.secret_id = Some(id("sec_1")?);
    event.audience = Some(id("https://api.example/")?);
    event.scopes_requested = vec![id("read")?, id("write")?];
    event.scopes_granted = vec![id("read")?];
    event.jti = Some(id(&format!("jti-{tenant_id}-{n}"))?);
    event.source = Some(IpAddr::from([192, 0, 2, 7]));
    event.transport = Some(Transport::Http);
    event.trace_id = Some(id("4bf92f3577b34da6a3ce929d0e0e4736")?);
    event.resource = Some(id("app/client-1")?);
    event.changed_fields = vec![FieldName::parse("grants")?];
    Ok(event)
}

/// Records `count` events (n = 1..=count) for `tenant_id`, one after another.
async fn record_many(writer: &AuditWriter, tenant_id: &str, count: u32) -> TestResult {
    for n in 1..=count {
        writer.record(event(tenant_id, n)?).await?;
    }
    Ok(())
}

/// A writer that never waits for more events (the default, spelled out: sequential
/// recording in these cases must not depend on it).
fn eager(db: &TestDb) -> (AuditWriter, tokio::task::JoinHandle<()>) {
    AuditWriter::start(
        db.store.clone(),
        AuditConfig {
            max_wait: Duration::ZERO,
            ..AuditConfig::default()
        },
    )
}

/// Where verification of the stored chain of `tenant_id` breaks, or `None`.
async fn break_of(store: &Store, tenant_id: &str) -> Result<Option<ChainBreak>, BoxError> {
    Ok(verify_tenant(store, &TenantId::new(tenant_id), 2, u64::MAX)
        .await?
        .outcome
        .err())
}

fn seq_of(broken: Option<ChainBreak>) -> Option<i64> {
    broken.map(|broken| broken.seq)
}

pub async fn chain_verifies_and_reads_back(db: TestDb) -> TestResult {
    let (writer, _task) = eager(&db);
    for n in 1..=7 {
        writer.record(event("ten_a", n)?).await?;
        writer.record(event("ten_b", n)?).await?;
    }
    for tenant in ["ten_a", "ten_b"] {
        let report = verify_tenant(&db.store, &TenantId::new(tenant), 3, u64::MAX).await?;
        assert_eq!(report.outcome, Ok(()), "{tenant}");
        assert_eq!(
            (report.checked, report.first_seq, report.last_seq),
            (7, Some(1), Some(7))
        );
        assert_eq!(
            report.to_string(),
            "audit chain verified: 7 records, seq 1..=7"
        );
        let rows = db.store.audit_chain(&TenantId::new(tenant), 1, 100).await?;
        assert_eq!(verify_chain(&rows), Ok(()));
        assert_eq!(rows[0].prev_hash, tollgate_audit::GENESIS_HASH);
        // Every stored record parses back into the event that was recorded.
        for (row, n) in rows.into_iter().zip(1..) {
            let record = AuditRecord::try_from(row)?;
            assert_eq!(record.seq, i64::from(n));
            assert_eq!(record.event, event(tenant, n)?);
        }
    }
    // A tenant without records verifies trivially.
    let empty = verify_tenant(&db.store, &"ten_none".into(), 10, u64::MAX).await?;
    assert_eq!((empty.checked, empty.outcome), (0, Ok(())));
    writer.shutdown().await;
    Ok(())
}

pub async fn editing_any_field_breaks_at_that_seq(db: TestDb) -> TestResult {
    // Every stored column but the chain position (`tenant_id`, `seq`: see
    // moving_a_record_breaks_at_the_gap) and `id` (a storage position, not hashed), with
    // another value. Each gets a chain of its own.
    let edits = [
        ("version", "2"),
        ("time_ms", "time_ms + 1"),
        ("tenant_name", "'evil'"),
        ("action", "'token_issued'"),
        ("result", "'granted'"),
        ("error_code", "NULL"),
        ("actor", "'admin'"),
        ("client_id", "'other-client'"),
        ("secret_id", "'sec_other'"),
        ("audience", "'https://evil.example/'"),
        ("scopes_requested", "'[\"read\"]'"),
        ("scopes_granted", "'[\"read\",\"admin\"]'"),
        ("jti", "'jti-forged'"),
        ("source", "'203.0.113.9'"),
        ("transport", "'grpc'"),
        ("trace_id", "NULL"),
        ("resource", "'app/other'"),
        ("changed_fields", "'[]'"),
        ("count", "count + 1"),
        (
            "prev_hash",
            "'0000000000000000000000000000000000000000000000000000000000000001'",
        ),
        (
            "hash",
            "'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff'",
        ),
    ];
    let (writer, _task) = eager(&db);
    for (column, _) in edits {
        record_many(&writer, &format!("ten_{column}"), 5).await?;
    }
    for (column, value) in edits {
        let tenant = format!("ten_{column}");
        assert_eq!(break_of(&db.store, &tenant).await?, None, "{column} before");
        let edited = db
            .exec(&format!(
                "UPDATE audit_events SET {column} = {value} \
                 WHERE tenant_id = '{tenant}' AND seq = 3"
            ))
            .await?;
        assert_eq!(edited, 1, "{column}");
        let broken = break_of(&db.store, &tenant).await?;
        assert_eq!(seq_of(broken.clone()), Some(3), "{column}: {broken:?}");
        // The same from the rows alone.
        let rows = db
            .store
            .audit_chain(&tenant.as_str().into(), 0, 100)
            .await?;
        assert_eq!(
            verify_chain(&rows).map_err(|broken| broken.seq),
            Err(3),
            "{column}"
        );
    }

    // Editing a record and recomputing its hash moves the break to the next record, whose
    // prev_hash no longer matches.
    record_many(&writer, "ten_rehash", 5).await?;
    let mut rows = db.store.audit_chain(&"ten_rehash".into(), 3, 1).await?;
    let mut row = rows.pop().ok_or("no record 3")?;
    row.client_id = Some("someone-else".into());
    let forged = tollgate_audit::record_hash(&row).ok_or("unknown version")?;
    db.exec(&format!(
        "UPDATE audit_events SET client_id = 'someone-else', hash = '{forged}' \
         WHERE tenant_id = 'ten_rehash' AND seq = 3"
    ))
    .await?;
    let broken = break_of(&db.store, "ten_rehash").await?;
    assert_eq!(seq_of(broken.clone()), Some(4), "{broken:?}");
    assert_eq!(
        broken.map(|b| b.reason).as_deref(),
        Some("prev_hash is not the hash of record 3")
    );
    writer.shutdown().await;
    Ok(())
}

pub async fn moving_a_record_breaks_at_the_gap(db: TestDb) -> TestResult {
    // A record whose chain position is edited has left its place: the chain breaks where
    // it is missing, at the next record (as for a deleted one).
    let (writer, _task) = eager(&db);
    record_many(&writer, "ten_seq", 5).await?;
    record_many(&writer, "ten_tenant", 5).await?;
    db.exec("UPDATE audit_events SET seq = 1000 WHERE tenant_id = 'ten_seq' AND seq = 3")
        .await?;
    assert_eq!(seq_of(break_of(&db.store, "ten_seq").await?), Some(4));
    db.exec(
        "UPDATE audit_events SET tenant_id = 'ten_elsewhere' \
         WHERE tenant_id = 'ten_tenant' AND seq = 3",
    )
    .await?;
    assert_eq!(seq_of(break_of(&db.store, "ten_tenant").await?), Some(4));
    // Where it landed, it is a record without a chain (and its hash names another tenant).
    let landed = break_of(&db.store, "ten_elsewhere").await?;
    assert_eq!(seq_of(landed), Some(3));
    writer.shutdown().await;
    Ok(())
}

pub async fn deleting_a_middle_record_breaks_at_the_next(db: TestDb) -> TestResult {
    let (writer, _task) = eager(&db);
    record_many(&writer, "ten_a", 6).await?;
    db.exec("DELETE FROM audit_events WHERE tenant_id = 'ten_a' AND seq = 3")
        .await?;
    let broken = break_of(&db.store, "ten_a").await?;
    assert_eq!(
        broken,
        Some(ChainBreak {
            seq: 4,
            reason: "records 3..=3 are missing".into()
        })
    );
    let rows = db.store.audit_chain(&"ten_a".into(), 0, 100).await?;
    assert_eq!(verify_chain(&rows).map_err(|broken| broken.seq), Err(4));
    writer.shutdown().await;
    Ok(())
}

pub async fn deleting_the_newest_record_contradicts_the_head(db: TestDb) -> TestResult {
    let (writer, _task) = eager(&db);
    record_many(&writer, "ten_a", 5).await?;
    db.exec("DELETE FROM audit_events WHERE tenant_id = 'ten_a' AND seq = 5")
        .await?;
    // The records alone still link (nothing shows what came after them)...
    let rows = db.store.audit_chain(&"ten_a".into(), 0, 100).await?;
    assert_eq!(verify_chain(&rows), Ok(()));
    // ...but the chain's head says there were five.
    let broken = break_of(&db.store, "ten_a").await?;
    assert_eq!(seq_of(broken.clone()), Some(5), "{broken:?}");
    writer.shutdown().await;
    Ok(())
}

pub async fn purge_keeps_verification_working(db: TestDb) -> TestResult {
    let (writer, _task) = eager(&db);
    // Times 1_700_000_000_001..=010.
    record_many(&writer, "ten_a", 10).await?;
    let purged = db.store.purge_audit_before(1_700_000_000_006).await?;
    assert_eq!(purged, 5);
    let report = verify_tenant(&db.store, &"ten_a".into(), 2, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(
        (report.checked, report.first_seq, report.last_seq),
        (5, Some(6), Some(10))
    );

    // The chain continues after the purge, and still verifies.
    for n in 11..=13 {
        writer.record(event("ten_a", n)?).await?;
    }
    let report = verify_tenant(&db.store, &"ten_a".into(), 2, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!((report.first_seq, report.last_seq), (Some(6), Some(13)));

    // Everything purged: nothing to verify; the next record continues the chain at 14 and
    // verifies from there.
    assert_eq!(db.store.purge_audit_before(i64::MAX).await?, 8);
    let report = verify_tenant(&db.store, &"ten_a".into(), 2, u64::MAX).await?;
    assert_eq!((report.checked, report.outcome), (0, Ok(())));
    writer.record(event("ten_a", 14)?).await?;
    let report = verify_tenant(&db.store, &"ten_a".into(), 2, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!((report.first_seq, report.last_seq), (Some(14), Some(14)));
    writer.shutdown().await;
    Ok(())
}

pub async fn group_commit_answers_after_commit(db: TestDb) -> TestResult {
    let (writer, task) = AuditWriter::start(db.store.clone(), AuditConfig::default());
    let db = Arc::new(db);
    let mut recorders = JoinSet::new();
    for n in 0..1000u32 {
        let writer = writer.clone();
        let db = Arc::clone(&db);
        recorders.spawn(async move {
            let tenant = format!("ten_{}", n % 4);
            let event = event(&tenant, n)?;
            writer.record(event).await?;
            // Ok means committed: readable at once, from another connection.
            let stored = db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM audit_events WHERE jti = 'jti-{tenant}-{n}'"
                ))
                .await?;
            assert_eq!(stored, 1, "event {n} answered Ok before it was readable");
            Ok::<(), BoxError>(())
        });
    }
    while let Some(outcome) = recorders.join_next().await {
        outcome??;
    }
    let stats = writer.stats();
    assert_eq!((stats.events, stats.failed_events), (1000, 0));
    // Group commit: far fewer transactions than events.
    assert!(stats.batches < stats.events / 2, "{stats:?}");
    for tenant in 0..4 {
        let report = verify_tenant(
            &db.store,
            &TenantId::new(format!("ten_{tenant}")),
            100,
            u64::MAX,
        )
        .await?;
        assert_eq!(report.outcome, Ok(()));
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(250)));
    }
    writer.shutdown().await;
    task.await?;
    Ok(())
}

pub async fn store_unreachable_fails_every_waiter(db: TestDb) -> TestResult {
    let (writer, _task) = AuditWriter::start(db.store.clone(), AuditConfig::default());
    // 32 recorders in a loop; the store's pool is closed part-way.
    let mut recorders = JoinSet::new();
    for r in 0..32u32 {
        let writer = writer.clone();
        recorders.spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..40u32 {
                let n = r * 1000 + i;
                let outcome = writer.record(event("ten_a", n)?).await;
                outcomes.push((format!("jti-ten_a-{n}"), outcome));
            }
            Ok::<_, BoxError>(outcomes)
        });
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while writer.stats().events < 200 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await?;
    db.store.close().await?;

    let mut granted = HashSet::new();
    let mut refused = 0;
    while let Some(outcomes) = recorders.join_next().await {
        for (jti, outcome) in outcomes?? {
            match outcome {
                Ok(()) => {
                    granted.insert(jti);
                }
                Err(AuditError::Unavailable) => refused += 1,
                Err(other) => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }
    assert!(
        refused > 0 && granted.len() >= 200,
        "{refused} {}",
        granted.len()
    );
    // Exactly the events answered Ok are stored.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_events").await?,
        i64::try_from(granted.len())?
    );
    let stats = writer.stats();
    assert_eq!(stats.failed_events, refused);
    // What is stored is one intact chain.
    let reader = Store::connect(&db.url).await?;
    let report = verify_tenant(&reader, &"ten_a".into(), 500, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.checked, u64::try_from(granted.len())?);
    reader.close().await?;
    Ok(())
}

pub async fn failed_batch_fails_every_waiter_and_writes_nothing(db: TestDb) -> TestResult {
    let (setup, setup_task) = eager(&db);
    setup.record(event("ten_x", 0)?).await?;
    setup.record(event("ten_y", 0)?).await?;
    setup.shutdown().await;
    setup_task.await?;
    // Batches of exactly 100: the 100 events below share one transaction.
    let (writer, _task) = AuditWriter::start(
        db.store.clone(),
        AuditConfig {
            max_batch: 100,
            max_wait: Duration::from_secs(5),
            ..AuditConfig::default()
        },
    );
    // Tampering: a record planted at x's next seq, behind its head. The batch's insert
    // fails after its lock, head reads and y's rows were already sent.
    db.exec(
        "INSERT INTO audit_events (id, tenant_id, seq, version, time_ms, tenant_name, action, \
         result, scopes_requested, scopes_granted, changed_fields, count, prev_hash, hash) \
         VALUES (1000, 'ten_x', 2, 1, 0, 'acme', 'token_issued', 'granted', '[]', '[]', '[]', \
         1, 'p', 'h')",
    )
    .await?;
    let mut recorders = JoinSet::new();
    for n in 1..=100u32 {
        let writer = writer.clone();
        // y first in the batch, x last.
        let tenant = if n <= 50 { "ten_y" } else { "ten_x" };
        let event = event(tenant, n)?;
        recorders.spawn(async move { writer.record(event).await });
        if n == 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while let Some(outcome) = recorders.join_next().await {
        assert!(matches!(outcome?, Err(AuditError::Unavailable)));
    }
    let stats = writer.stats();
    assert_eq!((stats.failed_batches, stats.failed_events), (1, 100));
    // Nothing of the batch was written: not y's events, not a head, not an id.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_events WHERE tenant_id = 'ten_y'")
            .await?,
        1
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_events WHERE tenant_id = 'ten_x'")
            .await?,
        2
    );
    assert_eq!(
        db.scalar("SELECT seq FROM audit_heads WHERE tenant_id = 'ten_y'")
            .await?,
        1
    );
    assert_eq!(
        db.scalar("SELECT seq FROM audit_heads WHERE tenant_id = ''")
            .await?,
        2
    );

    // Once the planted record is gone, x's chain continues and verifies.
    db.exec("DELETE FROM audit_events WHERE id = 1000").await?;
    writer.shutdown().await;
    let (writer, _task) = eager(&db);
    writer.record(event("ten_x", 200)?).await?;
    let report = verify_tenant(&db.store, &"ten_x".into(), 10, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.last_seq, Some(2));
    writer.shutdown().await;
    Ok(())
}

pub async fn shutdown_flushes_what_is_queued(db: TestDb) -> TestResult {
    // Batches would wait 30 s for more events: only the shutdown makes them commit.
    let (writer, task) = AuditWriter::start(
        db.store.clone(),
        AuditConfig {
            max_batch: 10_000,
            max_wait: Duration::from_secs(30),
            ..AuditConfig::default()
        },
    );
    let mut recorders = JoinSet::new();
    for n in 0..50u32 {
        let writer = writer.clone();
        let event = event("ten_a", n)?;
        recorders.spawn(async move { writer.record(event).await });
    }
    // Let every recorder queue its event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await?, 0);
    let started = std::time::Instant::now();
    writer.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await?, 50);
    while let Some(outcome) = recorders.join_next().await {
        outcome??;
    }
    assert!(matches!(
        writer.record(event("ten_a", 99)?).await,
        Err(AuditError::Closed)
    ));
    // A second shutdown returns at once; the task has ended.
    writer.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    assert_eq!(
        verify_tenant(&db.store, &"ten_a".into(), 100, u64::MAX)
            .await?
            .last_seq,
        Some(50)
    );
    Ok(())
}

pub async fn dropping_every_handle_flushes_and_ends(db: TestDb) -> TestResult {
    let (writer, task) = AuditWriter::start(db.store.clone(), AuditConfig::default());
    let mut recorders = JoinSet::new();
    for n in 0..20u32 {
        let writer = writer.clone();
        let event = event("ten_a", n)?;
        recorders.spawn(async move { writer.record(event).await });
    }
    drop(writer);
    while let Some(outcome) = recorders.join_next().await {
        outcome??;
    }
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await?, 20);
    Ok(())
}

pub async fn two_writers_build_one_gap_free_chain(db: TestDb) -> TestResult {
    // Two instances: separate pools, separate writers, one database, one tenant. Batches of
    // at most 50, so that each writer commits at least 10 times and they must contend.
    let other = Store::connect(&db.url).await?;
    let config = AuditConfig {
        max_batch: 50,
        ..AuditConfig::default()
    };
    let (first, first_task) = AuditWriter::start(db.store.clone(), config.clone());
    let (second, second_task) = AuditWriter::start(other.clone(), config);
    let mut recorders = JoinSet::new();
    for n in 0..1000u32 {
        let writer = if n.is_multiple_of(2) {
            first.clone()
        } else {
            second.clone()
        };
        let event = event("ten_shared", n)?;
        recorders.spawn(async move { writer.record(event).await });
    }
    while let Some(outcome) = recorders.join_next().await {
        outcome??;
    }
    assert_eq!(first.stats().events, 500);
    assert_eq!(second.stats().events, 500);
    first.shutdown().await;
    second.shutdown().await;
    first_task.await?;
    second_task.await?;
    other.close().await?;

    let report = verify_tenant(&db.store, &"ten_shared".into(), 128, u64::MAX).await?;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(
        (report.checked, report.first_seq, report.last_seq),
        (1000, Some(1), Some(1000))
    );
    // Every event exactly once; seqs 1..=1000 without gaps or duplicates.
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT jti) FROM audit_events")
            .await?,
        1000
    );
    assert_eq!(
        db.scalar(
            "SELECT COUNT(DISTINCT seq) FROM audit_events WHERE tenant_id = 'ten_shared' \
             AND seq BETWEEN 1 AND 1000"
        )
        .await?,
        1000
    );
    assert!(first.stats().batches >= 10 && second.stats().batches >= 10);
    // On PostgreSQL the lock is granted in turn, so the writers' batches interleave in the
    // chain. (SQLite's busy handler backs off by sleeping, which may let one process run
    // ahead: there only correctness is checked.)
    if db.store.backend_name() == "postgres" {
        let rows = db.store.audit_chain(&"ten_shared".into(), 1, 1000).await?;
        let writers: Vec<bool> = rows
            .iter()
            .map(|row| {
                let n: u32 = row
                    .jti
                    .as_deref()
                    .and_then(|jti| jti.rsplit('-').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_default();
                n.is_multiple_of(2)
            })
            .collect();
        let switches = writers.windows(2).filter(|pair| pair[0] != pair[1]).count();
        assert!(switches >= 2, "the writers did not interleave: {switches}");
    }
    Ok(())
}

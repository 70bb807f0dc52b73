//! Cases of the audit repository: appending linked batches, the lock and heads, listing,
//! tailing, chains, retention, and concurrent appenders. Hashes here are labels
//! (`<writer>:<tenant>:<seq>`): computing real ones is `tollgate-audit`'s job, the store
//! only checks links.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use tollgate_store::{AuditFilter, AuditHead, AuditRow, AuditScope, Store, StoreError};

use crate::TestResult;
use crate::backend::TestDb;

/// An event to append.
#[derive(Debug, Clone, Copy)]
struct Ev<'a> {
    tenant: &'a str,
    time_ms: i64,
    client: &'a str,
    action: &'a str,
    result: &'a str,
}

fn ev<'a>(tenant: &'a str, time_ms: i64) -> Ev<'a> {
    Ev {
        tenant,
        time_ms,
        client: "client-1",
        action: "token_issued",
        result: "granted",
    }
}

fn row_of(event: &Ev<'_>) -> AuditRow {
    AuditRow {
        tenant_id: event.tenant.to_owned(),
        version: 1,
        time_ms: event.time_ms,
        tenant_name: format!("name-{}", event.tenant),
        action: event.action.to_owned(),
        result: event.result.to_owned(),
        client_id: Some(event.client.to_owned()),
        count: 1,
        ..AuditRow::default()
    }
}

/// `rows` placed after `heads`, linked, labelled by `writer`.
fn linked(heads: &HashMap<String, AuditHead>, rows: Vec<AuditRow>, writer: &str) -> Vec<AuditRow> {
    let mut tips: HashMap<String, (i64, String)> = HashMap::new();
    rows.into_iter()
        .map(|mut row| {
            let tip = tips.entry(row.tenant_id.clone()).or_insert_with(|| {
                heads.get(&row.tenant_id).map_or_else(
                    || (0, "genesis".to_owned()),
                    |head| (head.seq, head.hash.clone()),
                )
            });
            row.seq = tip.0 + 1;
            row.prev_hash = tip.1.clone();
            row.hash = format!("{writer}:{}:{}", row.tenant_id, row.seq);
            *tip = (row.seq, row.hash.clone());
            row
        })
        .collect()
}

fn tenants_of(rows: &[AuditRow]) -> Vec<String> {
    let mut tenants: Vec<String> = rows.iter().map(|row| row.tenant_id.clone()).collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

/// Appends `rows` (linked after the current heads) as one batch.
async fn append_rows(store: &Store, rows: Vec<AuditRow>, writer: &str) -> Result<(), StoreError> {
    let tenants = tenants_of(&rows);
    let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
    store
        .append_audit_batch(&tenants, |heads| linked(heads, rows, writer))
        .await
}

async fn append(store: &Store, events: &[Ev<'_>]) -> Result<(), StoreError> {
    append_rows(store, events.iter().map(row_of).collect(), "w").await
}

fn positions(rows: &[AuditRow]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|row| (row.tenant_id.clone(), row.seq, row.id))
        .collect()
}

fn seqs(rows: &[AuditRow]) -> Vec<i64> {
    rows.iter().map(|row| row.seq).collect()
}

fn assert_chain_error<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: &str) {
    match result {
        Err(StoreError::Corrupt { entity, reason }) => {
            assert_eq!(entity, "audit chain");
            assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        }
        other => panic!("expected Corrupt {{ audit chain }}, got {other:?}"),
    }
}

async fn count_events(db: &TestDb) -> Result<i64, sea_orm::DbErr> {
    let row = db
        .raw
        .query_one(sea_orm::Statement::from_string(
            db.raw.get_database_backend(),
            "SELECT COUNT(*) FROM audit_events",
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no count".into()))?;
    row.try_get_by_index::<i64>(0)
}

pub async fn audit_append_chains_and_heads(db: TestDb) -> TestResult {
    let store = &db.store;
    append(store, &[ev("a", 1), ev("b", 2), ev("a", 3)]).await?;

    // The second batch sees the first's heads.
    let mut seen = None;
    let rows = vec![row_of(&ev("b", 4)), row_of(&ev("a", 5))];
    store
        .append_audit_batch(&["a", "b", "c"], |heads| {
            seen = Some(heads.clone());
            linked(heads, rows, "w")
        })
        .await?;
    let seen = seen.ok_or("build was not called")?;
    assert_eq!(
        seen.len(),
        2,
        "no head for c, which has no records: {seen:?}"
    );
    assert_eq!(
        seen.get("a").map(|h| (h.seq, h.hash.as_str())),
        Some((2, "w:a:2"))
    );
    assert_eq!(
        seen.get("b").map(|h| (h.seq, h.hash.as_str())),
        Some((1, "w:b:1"))
    );

    // Ids are global positions in append order; seqs count per tenant.
    let a = store.audit_chain(&"a".into(), 1, 100).await?;
    let b = store.audit_chain(&"b".into(), 1, 100).await?;
    assert_eq!(
        positions(&a),
        [("a".into(), 1, 1), ("a".into(), 2, 3), ("a".into(), 3, 5)]
    );
    assert_eq!(positions(&b), [("b".into(), 1, 2), ("b".into(), 2, 4)]);
    assert_eq!(a[0].prev_hash, "genesis");
    assert_eq!(a[2].prev_hash, a[1].hash);
    assert_eq!(seqs(&store.audit_chain(&"a".into(), 2, 100).await?), [2, 3]);
    assert_eq!(seqs(&store.audit_chain(&"a".into(), 2, 1).await?), [2]);
    assert!(store.audit_chain(&"a".into(), 4, 100).await?.is_empty());

    let head = |seq, hash: &str| AuditHead {
        tenant_id: "a".into(),
        seq,
        hash: hash.into(),
    };
    assert_eq!(store.audit_head(&"a".into()).await?, Some(head(3, "w:a:3")));
    assert_eq!(store.audit_head(&"nobody".into()).await?, None);
    // The lock row is nobody's head.
    assert_eq!(store.audit_head(&"".into()).await?, None);

    // Batches that do not continue their chains are refused whole.
    let skip = {
        let mut rows = linked(&HashMap::new(), vec![row_of(&ev("a", 6))], "w");
        rows[0].seq = 5;
        rows
    };
    assert_chain_error(
        store.append_audit_batch(&["a"], |_| skip).await,
        "seq 5 where 4 was next",
    );
    assert_chain_error(
        store
            .append_audit_batch(&["a"], |heads| {
                let mut rows = linked(heads, vec![row_of(&ev("a", 6))], "w");
                rows[0].prev_hash = "w:a:2".into();
                rows
            })
            .await,
        "does not link",
    );
    assert_chain_error(
        store
            .append_audit_batch(&["a"], |heads| {
                linked(heads, vec![row_of(&ev("a", 6)), row_of(&ev("d", 6))], "w")
            })
            .await,
        "did not announce",
    );
    assert_chain_error(
        store.append_audit_batch(&[""], |_| Vec::new()).await,
        "empty tenant id",
    );
    // An empty batch writes nothing.
    store.append_audit_batch(&["a"], |_| Vec::new()).await?;
    assert_eq!(count_events(&db).await?, 5);

    // Nothing of the refused batches was kept, not even an id: the next one is 6.
    append(store, &[ev("c", 7)]).await?;
    assert_eq!(
        positions(&store.audit_chain(&"c".into(), 1, 100).await?),
        [("c".into(), 1, 6)]
    );
    Ok(())
}

pub async fn audit_rows_round_trip(db: TestDb) -> TestResult {
    let store = &db.store;
    let full = AuditRow {
        tenant_id: "ten_1".into(),
        version: 1,
        time_ms: 1_700_000_000_123,
        tenant_name: "acme".into(),
        action: "management_change".into(),
        result: "ok".into(),
        error_code: Some("invalid_scope".into()),
        actor: Some("admin@client".into()),
        client_id: Some("client-1".into()),
        secret_id: Some("sec_1".into()),
        audience: Some("https://api.example/".into()),
        scopes_requested: vec!["read".into(), "wr\"ite".into()],
        scopes_granted: vec!["read".into()],
        jti: Some("jti_1".into()),
        source: Some("2001:db8::1".into()),
        transport: Some("grpc".into()),
        trace_id: Some("4bf92f3577b34da6".into()),
        resource: Some("app/client-1".into()),
        changed_fields: vec!["grants".into(), "rate_limit_per_second".into()],
        count: 3,
        ..AuditRow::default()
    };
    let sparse = AuditRow {
        tenant_id: "ten_1".into(),
        version: 1,
        time_ms: 5,
        tenant_name: "acme".into(),
        action: "key_rotated".into(),
        result: "ok".into(),
        count: 1,
        ..AuditRow::default()
    };
    append_rows(store, vec![full.clone(), sparse.clone()], "w").await?;
    let stored = store.audit_chain(&"ten_1".into(), 1, 10).await?;
    let expected = [
        AuditRow {
            id: 1,
            seq: 1,
            prev_hash: "genesis".into(),
            hash: "w:ten_1:1".into(),
            ..full
        },
        AuditRow {
            id: 2,
            seq: 2,
            prev_hash: "w:ten_1:1".into(),
            hash: "w:ten_1:2".into(),
            ..sparse
        },
    ];
    assert_eq!(stored, expected);
    Ok(())
}

pub async fn audit_failed_append_writes_nothing(db: TestDb) -> TestResult {
    let store = &db.store;
    append(store, &[ev("a", 1), ev("b", 1)]).await?;
    // A record planted behind the head's back takes a's next seq.
    db.raw
        .execute_unprepared(
            "INSERT INTO audit_events (id, tenant_id, seq, version, time_ms, tenant_name, \
             action, result, scopes_requested, scopes_granted, changed_fields, count, \
             prev_hash, hash) VALUES (1000, 'a', 2, 1, 0, 'x', 'token_issued', 'granted', \
             '[]', '[]', '[]', 1, 'p', 'h')",
        )
        .await?;
    // b's events come first in the batch and would insert fine: all of it is refused.
    let refused = append(store, &[ev("b", 2), ev("b", 3), ev("a", 2)]).await;
    assert_chain_error(refused, "head is behind its records");
    assert_eq!(count_events(&db).await?, 3);
    assert_eq!(
        store.audit_head(&"b".into()).await?.map(|head| head.seq),
        Some(1),
        "b's head did not move"
    );
    // Nor did the global counter: b's next record gets id 3.
    append(store, &[ev("b", 4)]).await?;
    assert_eq!(
        positions(&store.audit_chain(&"b".into(), 2, 10).await?),
        [("b".into(), 2, 3)]
    );
    // a stays wedged (fail closed) until someone repairs the tampering.
    assert_chain_error(append(store, &[ev("a", 5)]).await, "head is behind");
    Ok(())
}

pub async fn audit_list_filters_and_cursors(db: TestDb) -> TestResult {
    let store = &db.store;
    // a: 10 events at 1000..1009, clients alternating, odd seqs denied; b: 5 events.
    let mut batches: Vec<Vec<Ev<'static>>> = Vec::new();
    for i in 0..10i64 {
        let denied = i % 2 == 0;
        let mut batch = vec![Ev {
            tenant: "a",
            time_ms: 1000 + i,
            client: if denied { "c1" } else { "c2" },
            action: if denied {
                "token_denied"
            } else {
                "token_issued"
            },
            result: if denied { "denied" } else { "granted" },
        }];
        if i % 2 == 1 {
            batch.push(Ev {
                client: "bc",
                ..ev("b", 1000 + i)
            });
        }
        batches.push(batch);
    }
    for batch in &batches {
        append(store, batch).await?;
    }
    let all = AuditFilter::default();
    let a = AuditScope::Tenant(&"a".into());

    // A tenant's pages, newest first, by seq.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit_events(a, &all, before, 4).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        pages.push(seqs(&page));
    }
    assert_eq!(
        pages,
        [vec![10, 9, 8, 7], vec![6, 5, 4, 3], vec![2, 1]],
        "pages of a"
    );
    assert!(
        store
            .list_audit_events(AuditScope::Tenant(&"b".into()), &all, None, 100)
            .await?
            .iter()
            .all(|row| row.tenant_id == "b")
    );
    assert!(store.list_audit_events(a, &all, None, 0).await?.is_empty());
    assert_eq!(
        store
            .list_audit_events(a, &all, None, u64::MAX)
            .await?
            .len(),
        10
    );

    // Across tenants: by id, gap-free, newest first.
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_audit_events(AuditScope::All, &all, before, 6)
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        ids.extend(page.iter().map(|row| row.id));
    }
    assert_eq!(ids, (1..=15).rev().collect::<Vec<i64>>());

    // Filters, alone and together.
    let filtered = |filter: AuditFilter| {
        let filter = filter.clone();
        async move {
            store
                .list_audit_events(a, &filter, None, 100)
                .await
                .map(|rows| seqs(&rows))
        }
    };
    let time = AuditFilter {
        since_ms: Some(1003),
        until_ms: Some(1006),
        ..AuditFilter::default()
    };
    assert_eq!(filtered(time.clone()).await?, [6, 5, 4]);
    let client = AuditFilter {
        client_id: Some("c1".into()),
        ..AuditFilter::default()
    };
    assert_eq!(filtered(client).await?, [9, 7, 5, 3, 1]);
    let action = AuditFilter {
        action: Some("token_issued".into()),
        ..AuditFilter::default()
    };
    assert_eq!(filtered(action).await?, [10, 8, 6, 4, 2]);
    let denied = AuditFilter {
        result: Some("denied".into()),
        ..time
    };
    assert_eq!(filtered(denied).await?, [5]);
    let nobody = AuditFilter {
        client_id: Some("nobody".into()),
        ..AuditFilter::default()
    };
    assert!(filtered(nobody).await?.is_empty());
    let bc = AuditFilter {
        client_id: Some("bc".into()),
        ..AuditFilter::default()
    };
    let across = store
        .list_audit_events(AuditScope::All, &bc, None, 100)
        .await?;
    assert_eq!(seqs(&across), [5, 4, 3, 2, 1]);
    assert!(across.iter().all(|row| row.tenant_id == "b"));

    // Tails: oldest first after a cursor.
    let after = store.audit_events_after(a, &all, 7, 100).await?;
    assert_eq!(seqs(&after), [8, 9, 10]);
    assert!(store.audit_events_after(a, &all, 10, 100).await?.is_empty());
    assert_eq!(
        seqs(&store.audit_events_after(a, &all, 0, 2).await?),
        [1, 2]
    );
    let after_id = store
        .audit_events_after(AuditScope::All, &all, 12, 100)
        .await?;
    assert_eq!(
        after_id.iter().map(|row| row.id).collect::<Vec<_>>(),
        [13, 14, 15]
    );
    let denied_after = store
        .audit_events_after(
            a,
            &AuditFilter {
                result: Some("denied".into()),
                ..AuditFilter::default()
            },
            4,
            100,
        )
        .await?;
    assert_eq!(seqs(&denied_after), [5, 7, 9]);
    Ok(())
}

pub async fn audit_purge_keeps_a_contiguous_suffix(db: TestDb) -> TestResult {
    let store = &db.store;
    // a's clock skew: seq 2 is stamped later than seq 3.
    append(
        store,
        &[
            ev("a", 100),
            ev("a", 300),
            ev("a", 150),
            ev("a", 400),
            ev("a", 500),
            ev("b", 10),
            ev("b", 20),
            ev("c", 1000),
        ],
    )
    .await?;
    // a: seq 3 (150) is the newest record before 250, so 1..=3 go (2 despite its 300);
    // b: both; c: none.
    assert_eq!(store.purge_audit_before(250).await?, 5);
    assert_eq!(seqs(&store.audit_chain(&"a".into(), 0, 100).await?), [4, 5]);
    assert!(store.audit_chain(&"b".into(), 0, 100).await?.is_empty());
    assert_eq!(seqs(&store.audit_chain(&"c".into(), 0, 100).await?), [1]);
    assert_eq!(store.purge_audit_before(250).await?, 0);

    // Heads survive: b's chain continues at 3, linked to its last purged record.
    let head = store
        .audit_head(&"b".into())
        .await?
        .ok_or("b lost its head")?;
    assert_eq!((head.seq, head.hash.as_str()), (2, "w:b:2"));
    append(store, &[ev("b", 600)]).await?;
    let b = store.audit_chain(&"b".into(), 0, 100).await?;
    assert_eq!(seqs(&b), [3]);
    assert_eq!(b[0].prev_hash, "w:b:2");
    Ok(())
}

pub async fn audit_concurrent_appenders_build_one_chain(db: TestDb) -> TestResult {
    // On PostgreSQL, the second instance's sessions default to REPEATABLE READ (a server
    // setting an operator may choose): appends must pick their own isolation level.
    if db.raw.get_database_backend() == sea_orm::DbBackend::Postgres {
        let name: String = db
            .raw
            .query_one(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT current_database()",
            ))
            .await?
            .ok_or("no database name")?
            .try_get_by_index(0)?;
        db.raw
            .execute_unprepared(&format!(
                "ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'"
            ))
            .await?;
    }
    // Two instances: two pools on one database.
    let other = Store::connect(&db.url).await?;
    const BATCHES: usize = 25;
    let appender = |store: Store, writer: &'static str| {
        tokio::spawn(async move {
            for i in 0..BATCHES {
                let time = i64::try_from(i).unwrap_or_default();
                let rows = vec![
                    row_of(&ev("t", time)),
                    row_of(&ev("u", time)),
                    row_of(&ev("t", time)),
                ];
                append_rows(&store, rows, writer).await?;
            }
            Ok::<(), StoreError>(())
        })
    };
    let first = appender(db.store.clone(), "one");
    let second = appender(other.clone(), "two");
    first.await??;
    second.await??;
    other.close().await?;

    let t = db.store.audit_chain(&"t".into(), 0, 1000).await?;
    let u = db.store.audit_chain(&"u".into(), 0, 1000).await?;
    let expected_t: Vec<i64> = (1..=i64::try_from(4 * BATCHES)?).collect();
    let expected_u: Vec<i64> = (1..=i64::try_from(2 * BATCHES)?).collect();
    assert_eq!(seqs(&t), expected_t);
    assert_eq!(seqs(&u), expected_u);
    for chain in [&t, &u] {
        for pair in chain.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash, "seq {}", pair[1].seq);
        }
        // Both instances appended.
        assert!(chain.iter().any(|row| row.hash.starts_with("one:")));
        assert!(chain.iter().any(|row| row.hash.starts_with("two:")));
    }
    // Ids: one gap-free sequence across both tenants and both instances, and within a
    // tenant in seq order.
    let mut ids: Vec<i64> = t.iter().chain(&u).map(|row| row.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=i64::try_from(6 * BATCHES)?).collect::<Vec<_>>());
    for chain in [&t, &u] {
        assert!(chain.windows(2).all(|pair| pair[0].id < pair[1].id));
    }
    Ok(())
}

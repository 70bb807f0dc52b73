//! Reading back a trail the original attack left: records of 4.4 MB (a 4 MB request's
//! 440,000 scopes, recorded before records were bounded) among small ones. The attack made
//! `tollgate audit export` stop with `OUT_OF_RANGE` and one `ListEvents` page of 500 take
//! the server to 2.46 GB; now every page is bounded in bytes, the export completes, and
//! the server's memory stays bounded while it serves them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tollgate_audit::{CHAIN_VERSION, GENESIS_HASH, record_hash};
use tollgate_store::{AuditRow, Store};

use super::process::{ServeProcess, mib};
use super::{TrailReader, report};
use crate::fixtures::Fixture;

/// Records of 4.4 MB seeded.
const HUGE_RECORDS: usize = 8;

/// Small records seeded before each huge one.
const SMALL_RECORDS_EACH: usize = 200;

/// Scopes in a huge record: what a 4 MB `IssueToken` carried.
const HUGE_RECORD_SCOPES: usize = 440_000;

/// The most the server's resident memory may grow while the trail is listed and exported
/// (a huge record is sent alone; the attack's page took 2.46 GB).
const MAX_READING_MEMORY_GROWTH: u64 = 256 * 1024 * 1024;

/// Appends `HUGE_RECORDS` times `SMALL_RECORDS_EACH` small refusals and a huge one to
/// `tenant_id`'s chain, straight through the store (as a server without bounds on records
/// wrote them), chained so that the trail still verifies. Returns how many it appended.
async fn seed(store: &Store, tenant_id: &str, tenant_name: &str) -> anyhow::Result<usize> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default();
    let every = SMALL_RECORDS_EACH;
    // One batch per huge record (and the small ones before it), so no transaction holds
    // more than one of them.
    for batch in 0..HUGE_RECORDS {
        store
            .append_audit_batch(&[tenant_id], |heads| {
                let (mut seq, mut prev_hash) = heads
                    .get(tenant_id)
                    .map_or((0, GENESIS_HASH.to_owned()), |head| {
                        (head.seq, head.hash.clone())
                    });
                let mut rows = Vec::with_capacity(every + 1);
                for index in 0..=every {
                    let is_huge = index == every;
                    seq += 1;
                    let mut row = AuditRow {
                        tenant_id: tenant_id.to_owned(),
                        seq,
                        version: CHAIN_VERSION,
                        time_ms: now_ms,
                        tenant_name: tenant_name.to_owned(),
                        action: "token_denied".to_owned(),
                        result: "denied".to_owned(),
                        error_code: Some("invalid_client".to_owned()),
                        client_id: Some(format!("attacker-{batch}-{index}")),
                        source: Some("127.0.0.1".to_owned()),
                        scopes_requested: if is_huge {
                            (0..HUGE_RECORD_SCOPES)
                                .map(|n| format!("s{n:06}"))
                                .collect()
                        } else {
                            vec!["archive:read".to_owned()]
                        },
                        count: 1,
                        prev_hash: prev_hash.clone(),
                        ..AuditRow::default()
                    };
                    row.hash = record_hash(&row).unwrap_or_default();
                    prev_hash = row.hash.clone();
                    rows.push(row);
                }
                rows
            })
            .await?;
    }
    Ok(HUGE_RECORDS * (every + 1))
}

/// A trail holding eight 4.4 MB records among 1,600 small ones lists in pages bounded in
/// bytes and exports whole, with the server's memory bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_of_huge_records_reads_back_in_bounded_memory() -> anyhow::Result<()> {
    let process = ServeProcess::start(&[], None).await?;
    let fixture = Fixture::new(&process.server, "acme").await?;
    let store = Store::connect(&process.server.joined.database_url).await?;
    let seeded = seed(&store, &fixture.tenant_id, "acme").await?;
    drop(store);
    let database = process.database_size().await?;

    let mut trail = TrailReader::new(&process.server).await?;
    let memory_before = process.memory()?;
    let is_peak_reset = process.reset_peak_memory();
    let listed = trail.list_after("acme", "", 400, |_| true).await;
    let after_listing = process.memory()?;
    process.reset_peak_memory();
    let export = tokio::time::timeout(
        Duration::from_secs(120),
        crate::cli::tollgate(&process.server, &["audit", "export", "--tenant", "acme"]),
    )
    .await
    .context("audit export took over 2 minutes")??;
    let after_export = process.memory()?;
    let export_lines = export.stdout.split(|byte| *byte == b'\n').count() - 1;
    report(&format!(
        "huge trail ({HUGE_RECORDS} records of 4.4 MB among {seeded}, database {:.0} MiB): list {}; export {} lines, {:.0} MiB, exit {:?}; server rss {:.0} MiB, peak while listing {:.0} MiB, while exporting {:.0} MiB{}",
        mib(database.bytes),
        match &listed {
            Ok(listed) => format!(
                "{} records in {} pages, largest page {:.1} MiB",
                listed.records,
                listed.pages,
                mib(listed.largest_page as u64)
            ),
            Err(status) => format!("failed {:?}: {}", status.code(), status.message()),
        },
        export_lines,
        mib(export.stdout.len() as u64),
        export.status.code(),
        mib(memory_before.rss),
        mib(after_listing.peak),
        mib(after_export.peak),
        if is_peak_reset {
            ""
        } else {
            " (peaks since start)"
        },
    ));
    let listed = listed?;
    assert!(
        listed.records >= seeded,
        "listed {} records of the {seeded} seeded",
        listed.records
    );
    assert!(
        export.status.success(),
        "audit export failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert_eq!(
        export_lines, listed.records,
        "the export holds every record"
    );
    let peak = if is_peak_reset {
        after_export.peak.max(after_listing.peak)
    } else {
        after_export.rss.max(after_listing.rss)
    };
    assert!(
        peak.saturating_sub(memory_before.rss) < MAX_READING_MEMORY_GROWTH,
        "reading the trail took the server from {:.0} to {:.0} MiB",
        mib(memory_before.rss),
        mib(peak)
    );
    process.stop().await
}

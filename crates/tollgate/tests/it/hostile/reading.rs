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
use super::{Bounds, TrailReader, report};
use crate::fixtures::Fixture;

/// Records of 4.4 MB seeded.
const HUGE_RECORDS: usize = 8;

/// Small records seeded before each huge one.
const SMALL_RECORDS_EACH: usize = 200;

/// Scopes in a huge record: what a 4 MB `IssueToken` carried.
const HUGE_RECORD_SCOPES: usize = 440_000;

/// The most the server's resident memory may grow while the trail is listed and exported
/// (a huge record is sent alone; the attack's page took 2.46 GB).
const MAX_READING_MEMORY_GROWTH: u64 = 192 * 1024 * 1024;

/// Appends `HUGE_RECORDS` × `SMALL_RECORDS_EACH` small refusals, then `HUGE_RECORDS` huge
/// ones in a row (so that one page of 500 would hold them all), to `tenant_id`'s chain,
/// straight through the store (as a server without bounds on records wrote them), chained
/// so that the trail still verifies. Returns how many it appended.
async fn seed(store: &Store, tenant_id: &str, tenant_name: &str) -> anyhow::Result<usize> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default();
    let row = |seq: i64, prev_hash: &str, scopes: Vec<String>| {
        let mut row = AuditRow {
            tenant_id: tenant_id.to_owned(),
            seq,
            version: CHAIN_VERSION,
            time_ms: now_ms,
            tenant_name: tenant_name.to_owned(),
            action: "token_denied".to_owned(),
            result: "denied".to_owned(),
            error_code: Some("invalid_client".to_owned()),
            client_id: Some(format!("attacker-{seq}")),
            source: Some("127.0.0.1".to_owned()),
            scopes_requested: scopes,
            count: 1,
            prev_hash: prev_hash.to_owned(),
            ..AuditRow::default()
        };
        row.hash = record_hash(&row).unwrap_or_default();
        row
    };
    let small = HUGE_RECORDS * SMALL_RECORDS_EACH;
    // The small ones in one transaction, then one transaction per huge record.
    let batches = std::iter::once(small).chain(std::iter::repeat_n(1, HUGE_RECORDS));
    for (batch, size) in batches.enumerate() {
        store
            .append_audit_batch(&[tenant_id], |heads| {
                let (mut seq, mut prev_hash) = heads
                    .get(tenant_id)
                    .map_or((0, GENESIS_HASH.to_owned()), |head| {
                        (head.seq, head.hash.clone())
                    });
                let mut rows = Vec::with_capacity(size);
                for _ in 0..size {
                    seq += 1;
                    let scopes = if batch == 0 {
                        vec!["archive:read".to_owned()]
                    } else {
                        (0..HUGE_RECORD_SCOPES)
                            .map(|n| format!("s{n:06}"))
                            .collect()
                    };
                    let next = row(seq, &prev_hash, scopes);
                    prev_hash = next.hash.clone();
                    rows.push(next);
                }
                rows
            })
            .await?;
    }
    Ok(small + HUGE_RECORDS)
}

/// A trail holding eight 4.4 MB records after 1,600 small ones lists in pages bounded in
/// bytes, through a client with gRPC's default 4 MiB message limit, and exports whole, with
/// the server's memory bounded.
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
        "huge trail ({HUGE_RECORDS} records of 4.4 MB, {seeded} in all, database {:.0} MiB): list {}; export {} lines, {:.0} MiB, exit {:?}; server rss {:.0} MiB, peak while listing {:.0} MiB, while exporting {:.0} MiB{}",
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
    let mut bounds = Bounds::default();
    match &listed {
        Ok(listed) => bounds.check(listed.records >= seeded, || {
            format!("listed {} records of the {seeded} seeded", listed.records)
        }),
        Err(status) => bounds.check(false, || {
            format!("listing failed: {:?} {}", status.code(), status.message())
        }),
    }
    bounds.check(export.status.success(), || {
        format!(
            "audit export failed: {}",
            String::from_utf8_lossy(&export.stderr)
        )
    });
    bounds.check(export_lines >= seeded, || {
        format!("the export holds {export_lines} of the {seeded} records seeded")
    });
    let peak = if is_peak_reset {
        after_export.peak.max(after_listing.peak)
    } else {
        after_export.rss.max(after_listing.rss)
    };
    bounds.check(
        peak.saturating_sub(memory_before.rss) < MAX_READING_MEMORY_GROWTH,
        || {
            format!(
                "reading the trail took the server from {:.0} to {:.0} MiB",
                mib(memory_before.rss),
                mib(peak)
            )
        },
    );
    let stopped = process.stop().await;
    bounds.assert_all();
    stopped
}

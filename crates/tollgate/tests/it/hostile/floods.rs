//! Unauthenticated floods against a `tollgate serve` process on SQLite: what they cost the
//! audit trail (records), the database (bytes on disk), the server (resident memory) and a
//! legitimate client (latency), and whether the trail still reads back afterwards.
//!
//! Bounds (the issue's "Done when"): 50,000 random-id or random-tenant refusals from one
//! address grow the trail by at most a few hundred records and the database by under a
//! megabyte; a 4 MB request costs no more than a small one. A debug build may not get
//! through 50,000 requests in the time a test may take: a flood stops at its time budget,
//! and the bounds are asserted for the count it reached (printed).
//!
//! Records are counted in the database (refusals only: the legitimate client's tokens are
//! recorded too) and read back through `AuditService`, whose counts must add up to every
//! refusal. The database's growth is that of `tollgate.db` and its WAL together, each
//! measured after a checkpoint that truncates the WAL, so that what the WAL happened to
//! hold between checkpoints is not counted as growth (the sizes as found are printed too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tollgate_proto::v1::IssueTokenRequest;
use tonic::transport::Channel;

use super::process::{DatabaseSize, Memory, ServeProcess, kib_delta, mib};
use super::{
    Bounds, Latencies, Noise, TrailReader, encoded_issue_request, flood, grpc_outcome,
    http_outcome, is_clean_refusal, issue_raw, ms, report,
};
use crate::fixtures::{ARCHIVE, Fixture, encode_form, post_archive_form};

/// Requests per flood, when the time budget allows.
const FLOOD_REQUESTS: usize = 50_000;

/// Requests in flight during a flood.
const FLOOD_IN_FLIGHT: usize = 32;

/// The longest a flood runs.
const FLOOD_BUDGET: Duration = Duration::from_secs(40);

/// "At most a few hundred records" for a flood from one address.
const MAX_FLOOD_RECORDS: i64 = 400;

/// "Under a megabyte" of database growth.
const MAX_DATABASE_GROWTH: u64 = 1024 * 1024;

/// Scopes in the 4 MB request: 440,000 seven-byte scopes, about 3.96 MB encoded, under
/// gRPC's default 4 MiB message limit (what the original attack sent).
const HUGE_SCOPES: usize = 440_000;

/// Scopes in the 16 KiB HTTP body.
const WIDE_SCOPES: usize = 2_600;

/// Concurrent 4 MB requests.
const HUGE_CONCURRENT: usize = 100;

/// Connections the concurrent 4 MB requests are spread over.
const HUGE_CONNECTIONS: usize = 10;

/// A record of a refused 4 MB request may exceed that of a one-scope refusal by at most this
/// (a few kept scopes and a count).
const MAX_RECORD_EXCESS: usize = 1024;

/// The most tokens a legitimate client asks for during a flood (more than the flood's
/// budget allows at [`FLOOD_LEGITIMATE_INTERVAL`]).
const FLOOD_LEGITIMATE_REQUESTS: usize = 400;

/// How often the legitimate client asks for a token during a random-id or random-tenant
/// flood: often enough for percentiles, seldom enough that its own records (each token
/// is recorded) do not count for much of the database's growth.
const FLOOD_LEGITIMATE_INTERVAL: Duration = Duration::from_millis(200);

/// How often it asks during the 4 MB requests, which last a second or two.
const HUGE_LEGITIMATE_INTERVAL: Duration = Duration::from_millis(50);

/// The most a legitimate client may wait for a token during the flood (p99).
const MAX_LEGITIMATE_P99: Duration = Duration::from_secs(1);

/// The most the server's resident memory may grow (peak over start) during 100
/// concurrent 4 MB requests. The attack took a release build from 190 MB to 938 MB.
const MAX_HUGE_MEMORY_GROWTH: u64 = 256 * 1024 * 1024;

/// The most the server's resident memory may grow while the whole trail is listed.
const MAX_LISTING_MEMORY_GROWTH: u64 = 128 * 1024 * 1024;

/// A wrong secret of the right shape.
const WRONG_SECRET: &str = "tgsec_notthesecretnotthesecretnotthesecretnotthes";

/// 50,000 token requests with random client ids and wrong secrets from one address, half
/// over HTTP and half over gRPC: refused, and recorded per source and second, not per
/// attacker-chosen id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_client_ids_cost_a_few_records() -> anyhow::Result<()> {
    let process = ServeProcess::start(&[], None).await?;
    let fixture = Fixture::new(&process.server, "acme").await?;
    let before = Before::measure(&process, "acme").await?;
    random_name_flood(
        process,
        &fixture,
        before,
        RandomNames {
            label: "random-id",
            counted_in: "in the trail",
            forge: |index| Forged {
                tenant: "acme".to_owned(),
                client_id: format!("app_{:016x}", Noise::new(index as u64).next()),
                scopes: vec!["archive:read".to_owned()],
            },
        },
    )
    .await
}

/// 50,000 token requests for random tenant names from one address, half over HTTP and
/// half over gRPC: refused, and recorded in the `system` chain about once per source and
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tenants_cost_the_system_chain_a_few_records() -> anyhow::Result<()> {
    let process = ServeProcess::start(&[], None).await?;
    let before = Before::measure(&process, "system").await?;
    // Made after the measurement: what creating it writes counts toward the growth.
    let fixture = Fixture::new(&process.server, "acme").await?;
    random_name_flood(
        process,
        &fixture,
        before,
        RandomNames {
            label: "random-tenant",
            counted_in: "in the system chain",
            forge: |index| {
                let mut noise = Noise::new(index as u64);
                let tenant = format!("t{:012x}", noise.next() >> 16);
                let client_id = format!("app_{:016x}", noise.next());
                Forged {
                    tenant,
                    client_id,
                    scopes: Vec::new(),
                }
            },
        },
    )
    .await
}

/// What one request of a random-name flood presents (always with [`WRONG_SECRET`], for
/// [`ARCHIVE`]).
struct Forged {
    /// The tenant asked (in the HTTP path, or the gRPC request).
    tenant: String,
    /// The client id presented.
    client_id: String,
    /// The scopes asked over gRPC (HTTP asks none).
    scopes: Vec<String>,
}

/// What differs between the random-name floods.
struct RandomNames {
    /// The flood's name in the report and in failure messages.
    label: &'static str,
    /// Where every refusal must be counted, for the failure message.
    counted_in: &'static str,
    /// The `index`th request.
    forge: fn(usize) -> Forged,
}

/// What is measured before a random-name flood.
struct Before {
    trail: TrailReader,
    /// The chain whose denials the trail must count.
    chain: &'static str,
    cursor: String,
    rows: i64,
    size: DatabaseSize,
    memory: Memory,
}

impl Before {
    /// The position of `chain` in the trail, the denial records, the database's size and
    /// the server's memory now.
    async fn measure(process: &ServeProcess, chain: &'static str) -> anyhow::Result<Self> {
        let mut trail = TrailReader::new(&process.server).await?;
        let cursor = trail.cursor(chain).await?;
        Ok(Self {
            chain,
            cursor,
            rows: process.denied_rows().await?,
            size: process.database_size().await?,
            memory: process.memory()?,
            trail,
        })
    }
}

/// Floods `process` with [`FLOOD_REQUESTS`] requests made by `names.forge`, half over HTTP
/// and half over gRPC, while the fixture's app asks for tokens; then reports and asserts
/// that every answer was a clean refusal, that the trail counts every refusal in
/// `before.chain`, that at most [`MAX_FLOOD_RECORDS`] denial records and under
/// [`MAX_DATABASE_GROWTH`] were written, and that the legitimate client was served. Stops
/// the process.
async fn random_name_flood(
    process: ServeProcess,
    fixture: &Fixture,
    before: Before,
    names: RandomNames,
) -> anyhow::Result<()> {
    let Before {
        mut trail,
        chain,
        cursor,
        rows: rows_before,
        size: size_before,
        memory: memory_before,
    } = before;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let legitimate = tokio::spawn(legitimate_client(
        &process,
        fixture,
        FLOOD_LEGITIMATE_REQUESTS,
        FLOOD_LEGITIMATE_INTERVAL,
        Some(Arc::clone(&stop)),
    ));

    let http = reqwest::Client::new();
    let http_url = process.server.http_url.clone();
    let channel = process.server.channel();
    let forge = names.forge;
    let outcome = flood(
        FLOOD_REQUESTS,
        FLOOD_IN_FLIGHT,
        FLOOD_BUDGET,
        move |index| {
            let http = http.clone();
            let http_url = http_url.clone();
            let channel = channel.clone();
            async move {
                let Forged {
                    tenant,
                    client_id,
                    scopes,
                } = forge(index);
                if index % 2 == 0 {
                    let answer = post_archive_form(
                        &http,
                        &format!("{http_url}/t/{tenant}/oauth/token"),
                        &client_id,
                        WRONG_SECRET,
                    )
                    .await;
                    http_outcome(answer).await
                } else {
                    let answer =
                        tollgate_proto::v1::token_service_client::TokenServiceClient::new(channel)
                            .issue_token(IssueTokenRequest {
                                tenant,
                                client_id,
                                client_secret: WRONG_SECRET.to_owned(),
                                audience: ARCHIVE.to_owned(),
                                scopes,
                            })
                            .await;
                    grpc_outcome(&answer)
                }
            }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let legitimate = legitimate.await??;
    let listed = trail
        .wait_for_occurrences(
            chain,
            &cursor,
            outcome.sent as i64,
            Duration::from_secs(10),
            |event| event.result == "denied",
        )
        .await?;
    let rows_after = process.denied_rows().await?;
    let size_after = process.database_size().await?;
    let memory_after = process.memory()?;
    let rows = rows_after - rows_before;
    let label = names.label;
    report(&format!(
        "{label} flood n={} in {:.1}s ({:.0}/s) denial records+={rows} (denials counted {}) db+={:.0}KiB (files as found {:.0}KiB, checkpointed {}) rss {:.0}→{:.0} MiB (peak {:.0}) legit n={} p50={} p99={} failures={} outcomes {:?}",
        outcome.sent,
        outcome.elapsed.as_secs_f64(),
        outcome.rate(),
        listed.occurrences,
        kib_delta(size_before.bytes, size_after.bytes),
        kib_delta(size_before.raw, size_after.raw),
        size_before.is_checkpointed && size_after.is_checkpointed,
        mib(memory_before.rss),
        mib(memory_after.rss),
        mib(memory_after.peak),
        legitimate.len(),
        ms(legitimate.percentile(50.0)),
        ms(legitimate.percentile(99.0)),
        legitimate.failures,
        outcome.outcomes,
    ));

    for (answer, count) in &outcome.outcomes {
        assert!(
            is_clean_refusal(answer),
            "{count} requests answered {answer}"
        );
    }
    assert_eq!(
        listed.occurrences, outcome.sent as i64,
        "every refusal is counted {}",
        names.counted_in
    );
    assert!(
        rows <= MAX_FLOOD_RECORDS,
        "{} {label} refusals wrote {rows} audit records (at most {MAX_FLOOD_RECORDS})",
        outcome.sent
    );
    assert!(
        size_after.bytes.saturating_sub(size_before.bytes) < MAX_DATABASE_GROWTH,
        "{} {label} refusals grew the database by {:.0} KiB",
        outcome.sent,
        kib_delta(size_before.bytes, size_after.bytes)
    );
    assert_legitimate_served(&legitimate);
    process.stop().await
}

/// A 4 MB gRPC request with 440,000 scopes and a 16 KiB HTTP body with 2,600 scopes are
/// refused and leave no record larger than a one-scope refusal's; 100 of the 4 MB requests
/// at once leave the server's memory and database bounded and a legitimate client served;
/// afterwards the whole trail lists and exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_cost_no_more_than_small_ones() -> anyhow::Result<()> {
    let process = ServeProcess::start(&[], None).await?;
    let fixture = Fixture::new(&process.server, "acme").await?;
    let mut trail = TrailReader::new(&process.server).await?;
    let denied = |event: &tollgate_proto::v1::AuditEvent| event.result == "denied";
    let mut bounds = Bounds::default();

    // A small refusal, for comparison.
    let cursor = trail.cursor("acme").await?;
    let small = process
        .server
        .issue(
            "acme",
            &fixture.client_id,
            WRONG_SECRET,
            ARCHIVE,
            &["archive:read"],
        )
        .await;
    assert!(small.is_err(), "a wrong secret got a token");
    let small_record = trail
        .wait_for_occurrences("acme", &cursor, 1, Duration::from_secs(5), denied)
        .await?
        .largest_record;

    // One 4 MB gRPC request.
    let huge = encoded_issue_request(&IssueTokenRequest {
        tenant: "acme".to_owned(),
        client_id: fixture.client_id.clone(),
        client_secret: WRONG_SECRET.to_owned(),
        audience: ARCHIVE.to_owned(),
        scopes: (0..HUGE_SCOPES).map(|n| format!("s{n:06}")).collect(),
    });
    let cursor = trail.cursor("acme").await?;
    let rows_before = process.denied_rows().await?;
    let answer = issue_raw(process.server.channel(), huge.clone()).await;
    let huge_code = answer.as_ref().err().map(tonic::Status::code);
    // A refusal is recorded synchronously, an aggregated one within a second or two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let huge_listed = trail.list_after("acme", &cursor, 10, denied).await?;
    let huge_rows = process.denied_rows().await? - rows_before;

    // One 16 KiB HTTP body.
    let scopes: Vec<String> = (0..WIDE_SCOPES).map(|n| format!("s{n:04}")).collect();
    let body = encode_form(&[
        ("grant_type", "client_credentials"),
        ("audience", ARCHIVE),
        ("scope", &scopes.join(" ")),
    ]);
    let body_bytes = body.len();
    let cursor = trail.cursor("acme").await?;
    let wide = reqwest::Client::new()
        .post(format!("{}/t/acme/oauth/token", process.server.http_url))
        .basic_auth(&fixture.client_id, Some(WRONG_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    let wide_outcome = http_outcome(wide).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let wide_listed = trail.list_after("acme", &cursor, 10, denied).await?;
    report(&format!(
        "oversized: one-scope refusal record {small_record} B; 4 MB ({} B, {HUGE_SCOPES} scopes) gRPC → {huge_code:?}, denial records+={huge_rows}, largest record {} B; {body_bytes} B HTTP body ({WIDE_SCOPES} scopes) → {wide_outcome}, largest record {} B",
        huge.len(),
        huge_listed.largest_record,
        wide_listed.largest_record,
    ));
    bounds.check(
        matches!(
            huge_code,
            Some(tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument)
        ),
        || format!("a 4 MB IssueToken was answered {huge_code:?}"),
    );
    bounds.check(
        huge_listed.largest_record <= small_record + MAX_RECORD_EXCESS,
        || {
            format!(
                "a 4 MB request left a {} B record (a one-scope refusal: {small_record} B)",
                huge_listed.largest_record
            )
        },
    );
    bounds.check(
        wide_outcome == "400 invalid_scope" || wide_outcome == "400 invalid_request",
        || format!("a {body_bytes} B body with {WIDE_SCOPES} scopes was answered {wide_outcome}"),
    );
    bounds.check(wide_listed.largest_record <= small_record + MAX_RECORD_EXCESS, || format!("a {WIDE_SCOPES}-scope request left a {} B record (a one-scope refusal: {small_record} B)", wide_listed.largest_record));

    // 100 at once, while a legitimate client asks for a token every 50 ms. The client runs
    // on a thread and runtime of its own, so that its latencies are the server's and not
    // those of this process's tasks pushing 400 MB.
    let rows_before = process.denied_rows().await?;
    let size_before = process.database_size().await?;
    let baseline =
        legitimate_client(&process, &fixture, 40, HUGE_LEGITIMATE_INTERVAL, None).await?;
    let memory_before = process.memory()?;
    let is_peak_reset = process.reset_peak_memory();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = legitimate_client(
        &process,
        &fixture,
        600,
        HUGE_LEGITIMATE_INTERVAL,
        Some(Arc::clone(&stop)),
    );
    let during = tokio::spawn(during);
    // Let the client start before the flood does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let channels: Vec<Channel> = (0..HUGE_CONNECTIONS)
        .map(|_| Channel::from_shared(process.server.grpc_url.clone()).map(|c| c.connect_lazy()))
        .collect::<Result<_, _>>()?;
    let outcomes = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..HUGE_CONCURRENT {
        let channel = channels[index % HUGE_CONNECTIONS].clone();
        let huge = huge.clone();
        let outcomes = Arc::clone(&outcomes);
        requests.spawn(async move {
            let answer =
                tokio::time::timeout(Duration::from_secs(60), issue_raw(channel, huge)).await;
            let label = match answer {
                Ok(answer) => grpc_outcome(&answer),
                Err(_) => "no answer within 60 s".to_owned(),
            };
            *outcomes.lock().await.entry(label).or_default() += 1;
        });
    }
    // Memory is sampled while the requests are in flight; VmHWM keeps the peak.
    let mut sampled_peak = memory_before.rss;
    while !requests.is_empty() {
        tokio::select! {
            _ = requests.join_next() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Ok(memory) = process.memory() {
                    sampled_peak = sampled_peak.max(memory.rss);
                }
            }
        }
    }
    let flood_time = started.elapsed();
    // A little more legitimate traffic after the flood, then stop the client.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = during.await??;
    let memory_after = process.memory()?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows = process.denied_rows().await? - rows_before;
    let size_after = process.database_size().await?;
    let outcomes = outcomes.lock().await.clone();
    report(&format!(
        "100 concurrent 4 MB requests in {:.1}s: denial records+={rows} db+={:.0}KiB (files as found {:.0}KiB) rss {:.0}→{:.0} MiB (sampled peak {:.0}, VmHWM {:.0}{}) legit before p50={} p99={}, during n={} p50={} p99={} failures={} outcomes {outcomes:?}",
        flood_time.as_secs_f64(),
        kib_delta(size_before.bytes, size_after.bytes),
        kib_delta(size_before.raw, size_after.raw),
        mib(memory_before.rss),
        mib(memory_after.rss),
        mib(sampled_peak),
        mib(memory_after.peak),
        if is_peak_reset { "" } else { " since start" },
        ms(baseline.percentile(50.0)),
        ms(baseline.percentile(99.0)),
        during.len(),
        ms(during.percentile(50.0)),
        ms(during.percentile(99.0)),
        during.failures,
    ));
    for (answer, count) in &outcomes {
        bounds.check(
            answer == "grpc ResourceExhausted" || answer == "grpc InvalidArgument",
            || format!("{count} of the 4 MB requests were answered {answer}"),
        );
    }
    check_legitimate_served(&mut bounds, &during);
    let peak = if is_peak_reset {
        sampled_peak.max(memory_after.peak)
    } else {
        sampled_peak
    };
    bounds.check(
        peak.saturating_sub(memory_before.rss) < MAX_HUGE_MEMORY_GROWTH,
        || {
            format!(
                "100 concurrent 4 MB requests took the server from {:.0} to {:.0} MiB",
                mib(memory_before.rss),
                mib(peak)
            )
        },
    );
    bounds.check(
        size_after.bytes.saturating_sub(size_before.bytes) < MAX_DATABASE_GROWTH,
        || {
            format!(
                "100 concurrent 4 MB requests grew the database by {:.0} KiB",
                kib_delta(size_before.bytes, size_after.bytes)
            )
        },
    );
    bounds.check(rows <= MAX_FLOOD_RECORDS, || {
        format!("100 concurrent 4 MB requests wrote {rows} records")
    });

    // The whole trail reads back: every tenant, in pages, and acme's export.
    let before_listing = process.memory()?;
    let is_peak_reset = process.reset_peak_memory();
    let all = trail.list_after("", "", 400, |_| true).await;
    let export =
        crate::cli::tollgate(&process.server, &["audit", "export", "--tenant", "acme"]).await?;
    let after_listing = process.memory()?;
    let export_lines = String::from_utf8_lossy(&export.stdout).lines().count();
    report(&format!(
        "trail read back: (records, pages, largest page bytes) {:?}, export {} lines (exit {:?}), rss {:.0}→{:.0} MiB (peak {:.0})",
        all.as_ref()
            .map(|listed| (listed.records, listed.pages, listed.largest_page)),
        export_lines,
        export.status.code(),
        mib(before_listing.rss),
        mib(after_listing.rss),
        mib(after_listing.peak),
    ));
    match &all {
        Ok(all) => bounds.check(all.records > 0, || "nothing listed".to_owned()),
        Err(status) => bounds.check(false, || format!("listing the trail failed: {status}")),
    }
    bounds.check(export.status.success(), || {
        format!(
            "audit export failed: {}",
            String::from_utf8_lossy(&export.stderr)
        )
    });
    bounds.check(export_lines > 0, || {
        "audit export printed nothing".to_owned()
    });
    let peak = if is_peak_reset {
        after_listing.peak
    } else {
        after_listing.rss
    };
    bounds.check(
        peak.saturating_sub(before_listing.rss) < MAX_LISTING_MEMORY_GROWTH,
        || {
            format!(
                "listing the trail took the server from {:.0} to {:.0} MiB",
                mib(before_listing.rss),
                mib(peak)
            )
        },
    );
    let stopped = process.stop().await;
    bounds.assert_all();
    stopped
}

/// A legitimate client during a flood got every token it asked for, with a p99 latency
/// under [`MAX_LEGITIMATE_P99`].
fn check_legitimate_served(bounds: &mut Bounds, latencies: &Latencies) {
    bounds.check(latencies.failures == 0, || {
        format!(
            "the legitimate client was refused {} times during the flood",
            latencies.failures
        )
    });
    bounds.check(latencies.len() > 0, || {
        "the legitimate client got no token".to_owned()
    });
    bounds.check(latencies.percentile(99.0) < MAX_LEGITIMATE_P99, || {
        format!(
            "legitimate p99 during the flood: {}",
            ms(latencies.percentile(99.0))
        )
    });
}

/// [`check_legitimate_served`], failing at once.
fn assert_legitimate_served(latencies: &Latencies) {
    let mut bounds = Bounds::default();
    check_legitimate_served(&mut bounds, latencies);
    bounds.assert_all();
}

/// Runs [`legitimate_loop`] for the fixture's app on a thread and runtime of its own, on a
/// connection of its own.
fn legitimate_client(
    process: &ServeProcess,
    fixture: &Fixture,
    count: usize,
    interval: Duration,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> impl std::future::Future<Output = anyhow::Result<Latencies>> + Send + 'static {
    let grpc_url = process.server.grpc_url.clone();
    let request = fixture.archive_request();
    let thread = std::thread::spawn(move || -> anyhow::Result<Latencies> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let channel = Channel::from_shared(grpc_url)?.connect().await?;
            legitimate_loop(channel, &request, count, interval, stop).await
        })
    });
    async move {
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the legitimate client panicked"))?
    }
}

/// Makes `request` every `interval` over `channel`, at most `count` times or until `stop`.
async fn legitimate_loop(
    channel: Channel,
    request: &IssueTokenRequest,
    count: usize,
    interval: Duration,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<Latencies> {
    let mut client = tollgate_proto::v1::token_service_client::TokenServiceClient::new(channel);
    let mut latencies = Latencies::default();
    for _ in 0..count {
        if stop
            .as_ref()
            .is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(10), client.issue_token(request.clone()))
                .await;
        match answer {
            Ok(Ok(_)) => latencies.push(started.elapsed()),
            _ => latencies.failures += 1,
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
    Ok(latencies)
}

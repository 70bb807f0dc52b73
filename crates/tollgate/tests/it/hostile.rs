//! Hostile traffic replayed against the real server: each attack of the hardening issue's
//! list, with the bound that must hold now asserted and the damage measured.
//!
//! - `floods`: unauthenticated floods (random client ids, random tenants, 4 MB and 16 KiB
//!   requests) cost the trail a few records and the database under a megabyte; the
//!   server's memory stays bounded, a legitimate client keeps getting tokens, and the trail
//!   reads back afterwards.
//! - `reading`: a trail holding the 4.4 MB records the original attack left lists in pages
//!   bounded in bytes and exports whole, the server's memory bounded.
//! - `connections`: idle, half-sent and slow connections on a server limited to 1,024
//!   descriptors are closed by the listeners' timeouts, and token issuance keeps answering.
//! - `delegation`: an `apps:write` delegate cannot widen management scopes or touch the admin
//!   app's secrets; a deleted or blocked app's admin token stops working at once.
//! - `small`: no leeway on the server's own tokens, private files at rest, introspection only
//!   for those entitled.
//!
//! Attacks that are measured in the process's resources (memory, descriptors, database
//! files) run against `tollgate serve` as a child process ([`process::ServeProcess`]); the
//! others against the in-process `TestServer`. Each test prints one `hostile: …` line of
//! figures (visible with `--nocapture`). Every load loop is bounded in count and in time, and
//! every address is loopback.

mod connections;
mod delegation;
mod floods;
mod process;
mod reading;
mod small;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use prost::bytes::{BufMut, Bytes};
use tollgate_proto::v1::audit_service_client::AuditServiceClient;
use tollgate_proto::v1::{
    AuditEvent, EventOrder, IssueTokenRequest, IssueTokenResponse, ListEventsRequest,
};
use tollgate_testkit::{BearerAuth, TestServer};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Prints a line of figures, straight to standard error so that it shows with
/// `--nocapture` (and is kept in the captured output of a failing test).
pub(crate) fn report(line: &str) {
    eprintln!("hostile: {line}");
}

/// The bounds a replay checks, collected so that one run reports every broken bound (and
/// every figure) instead of stopping at the first.
#[derive(Debug, Default)]
#[must_use = "call assert_all"]
pub(crate) struct Bounds(Vec<String>);

impl Bounds {
    /// Notes `what` as broken unless `holds`.
    pub(crate) fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.0.push(what());
        }
    }

    /// Fails the test naming every broken bound.
    pub(crate) fn assert_all(self) {
        assert!(
            self.0.is_empty(),
            "{} bound(s) broken:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// A small, fast, deterministic pseudo-random sequence (xorshift64*): attack inputs need to
/// be unpredictable to a cache keyed on them, not to an adversary.
pub(crate) struct Noise(u64);

impl Noise {
    /// A sequence seeded from `seed` and the clock.
    pub(crate) fn new(seed: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or_default();
        Self((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1)
    }

    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What a bounded flood did.
pub(crate) struct FloodOutcome {
    /// Requests answered (or failed) before the count or the time budget ran out.
    pub(crate) sent: usize,
    /// How long it took.
    pub(crate) elapsed: Duration,
    /// How many ended in each outcome (`"401 invalid_client"`, `"grpc Unauthenticated"`, …).
    pub(crate) outcomes: std::collections::BTreeMap<String, usize>,
}

impl FloodOutcome {
    /// Requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(0.001)
    }
}

/// Runs `attempt(i)` for i = 0, 1, … with `in_flight` requests at a time, until `count`
/// have been made or `budget` has passed, and tallies the outcomes it names.
pub(crate) async fn flood<F, Fut>(
    count: usize,
    in_flight: usize,
    budget: Duration,
    attempt: F,
) -> FloodOutcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + budget;
    let next = Arc::new(AtomicUsize::new(0));
    let attempt = Arc::new(attempt);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let next = Arc::clone(&next);
        let attempt = Arc::clone(&attempt);
        workers.spawn(async move {
            let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
            let mut sent = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count || Instant::now() >= deadline {
                    break;
                }
                *outcomes.entry(attempt(index).await).or_default() += 1;
                sent += 1;
            }
            (sent, outcomes)
        });
    }
    let mut total = FloodOutcome {
        sent: 0,
        elapsed: Duration::ZERO,
        outcomes: Default::default(),
    };
    while let Some(joined) = workers.join_next().await {
        let (sent, outcomes) = joined.unwrap_or_default();
        total.sent += sent;
        for (outcome, n) in outcomes {
            *total.outcomes.entry(outcome).or_default() += n;
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Latencies of a legitimate client, for percentiles.
#[derive(Default)]
pub(crate) struct Latencies {
    samples: Vec<Duration>,
    /// Requests that did not get a token.
    pub(crate) failures: usize,
}

impl Latencies {
    pub(crate) fn push(&mut self, latency: Duration) {
        self.samples.push(latency);
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// The `p`-th percentile (0–100), zero without samples.
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }
}

/// Milliseconds, for reports.
pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.1}ms", duration.as_secs_f64() * 1000.0)
}

/// The HTTP status and OAuth `error` of a token endpoint answer, as one outcome label.
pub(crate) async fn http_outcome(answer: reqwest::Result<reqwest::Response>) -> String {
    match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            format!("{status} {}", body["error"].as_str().unwrap_or("-"))
        }
        Err(error) if error.is_connect() => "http connect error".to_owned(),
        Err(_) => "http error".to_owned(),
    }
}

/// The gRPC code of an answer, as one outcome label.
pub(crate) fn grpc_outcome<T>(answer: &Result<T, tonic::Status>) -> String {
    match answer {
        Ok(_) => "grpc Ok".to_owned(),
        Err(status) => format!("grpc {:?}", status.code()),
    }
}

/// Whether an outcome label is a refusal a client can act on: never a success, a 5xx or
/// a broken connection.
pub(crate) fn is_clean_refusal(outcome: &str) -> bool {
    matches!(
        outcome,
        "400 invalid_request"
            | "400 invalid_scope"
            | "401 invalid_client"
            | "429 -"
            | "429 rate_limited"
            | "429 slow_down"
            | "429 temporarily_unavailable"
            | "413 -"
            | "413 invalid_request"
            | "grpc Unauthenticated"
            | "grpc InvalidArgument"
            | "grpc ResourceExhausted"
    ) || outcome.starts_with("429 ")
}

/// An `IssueToken` request encoded once, sent as is (a 4 MB message built once instead of
/// 440,000 strings per request).
pub(crate) fn encoded_issue_request(request: &IssueTokenRequest) -> Bytes {
    Bytes::from(request.encode_to_vec())
}

/// Sends an already encoded `IssueTokenRequest` on `channel`.
pub(crate) async fn issue_raw(
    channel: Channel,
    encoded: Bytes,
) -> Result<IssueTokenResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/tollgate.v1.TokenService/IssueToken",
    );
    grpc.unary(tonic::Request::new(encoded), path, RawIssueCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Encodes pre-encoded bytes as they are; decodes `IssueTokenResponse`.
#[derive(Debug, Clone, Copy, Default)]
struct RawIssueCodec;

impl Codec for RawIssueCodec {
    type Encode = Bytes;
    type Decode = IssueTokenResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

#[derive(Debug)]
struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug)]
struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = IssueTokenResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<IssueTokenResponse>, tonic::Status> {
        IssueTokenResponse::decode(src)
            .map(Some)
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

/// The audit trail read back through `AuditService`, as the system tenant's admin.
pub(crate) struct TrailReader {
    client:
        AuditServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerAuth>>,
}

/// What a listing found.
#[derive(Debug, Default)]
pub(crate) struct Listed {
    /// Records listed.
    pub(crate) records: usize,
    /// The sum of their `count`s: the occurrences they stand for.
    pub(crate) occurrences: i64,
    /// The largest record, encoded as on the wire.
    pub(crate) largest_record: usize,
    /// The largest page, encoded as on the wire.
    pub(crate) largest_page: usize,
    /// Pages read.
    pub(crate) pages: usize,
}

impl TrailReader {
    /// A reader authenticated as `server`'s system admin, with gRPC's default limit of
    /// 4 MiB on a message it receives, as a client generated from the proto files has: the
    /// trail must read back through it, a page at a time, however large the trail.
    pub(crate) async fn new(server: &TestServer) -> anyhow::Result<Self> {
        let token = server.admin_token_for(&server.admin).await?;
        Ok(Self {
            client: AuditServiceClient::with_interceptor(
                server.channel(),
                BearerAuth::new(&token)?,
            ),
        })
    }

    /// The position of the newest event of `tenant` (empty: every tenant) now.
    pub(crate) async fn cursor(&mut self, tenant: &str) -> anyhow::Result<String> {
        let page = self
            .client
            .list_events(ListEventsRequest {
                tenant: tenant.to_owned(),
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(page.stream_cursor)
    }

    /// Every event of `tenant` (empty: every tenant) after `after` (empty: from the oldest)
    /// matching `keep`, oldest first, in pages of 500, at most `max_pages` pages.
    pub(crate) async fn list_after(
        &mut self,
        tenant: &str,
        after: &str,
        max_pages: usize,
        keep: impl Fn(&AuditEvent) -> bool,
    ) -> Result<Listed, tonic::Status> {
        let mut listed = Listed::default();
        let mut page_token = String::new();
        for _ in 0..max_pages {
            let page = self
                .client
                .list_events(ListEventsRequest {
                    tenant: tenant.to_owned(),
                    page_size: 500,
                    page_token: page_token.clone(),
                    order: EventOrder::OldestFirst as i32,
                    after: if page_token.is_empty() {
                        after.to_owned()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                })
                .await?
                .into_inner();
            listed.pages += 1;
            listed.largest_page = listed.largest_page.max(page.encoded_len());
            for event in page.events.iter().filter(|event| keep(event)) {
                listed.records += 1;
                listed.occurrences += event.count.max(1);
                listed.largest_record = listed.largest_record.max(event.encoded_len());
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(listed)
    }

    /// Waits (at most `wait`) until the events of `tenant` after `after` matching `keep`
    /// stand for at least `occurrences` occurrences: aggregated refusals are recorded by a
    /// flush every second.
    pub(crate) async fn wait_for_occurrences(
        &mut self,
        tenant: &str,
        after: &str,
        occurrences: i64,
        wait: Duration,
        keep: impl Fn(&AuditEvent) -> bool + Copy,
    ) -> anyhow::Result<Listed> {
        let deadline = Instant::now() + wait;
        loop {
            let listed = self
                .list_after(tenant, after, 400, keep)
                .await
                .context("listing the trail after the flood")?;
            if listed.occurrences >= occurrences || Instant::now() >= deadline {
                return Ok(listed);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

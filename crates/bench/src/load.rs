//! The load loops. Every loop is bounded twice: by a deadline and by a request count.
//!
//! - **Closed loop** (maximum throughput): each client sends its next request as soon as the
//!   previous one is answered, so the number in flight is the number of clients.
//! - **Open loop** (latency at a given load): request `i` is due at `start + i / rate`,
//!   whatever happened before. A pacer thread (an OS thread: its sleeps are precise to tens
//!   of microseconds, where tokio's timer has a 1 ms resolution and would send in bursts)
//!   wakes at most every 200 µs and hands each due slot to client `i mod clients` through
//!   that client's own queue (as wrk2 gives each connection its own schedule). Latency is
//!   reported from the actual send and, to avoid coordinated omission, also from the due
//!   time, which includes the pacer's tick and any wait for the client to be free. Slots a
//!   full queue cannot take, or still queued long after the end, are counted as not sent.
//!
//! Both start with a warm-up whose requests are not counted. Credentials are used round
//! robin, so with one app per tenant the tenants are too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::client::{Client, Failure, Prepared};
use crate::stats::{self, LATE_THRESHOLD, WorkerReport};

/// How long to run and how hard.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Uncounted run-in.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// At most this many counted requests (and as many warm-up requests).
    pub max_requests: u64,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// A request not answered within this fails as `timeout`.
    pub timeout: Duration,
}

/// What a run measured.
pub struct Outcome {
    /// Everything the clients counted, merged.
    pub report: WorkerReport,
    /// From the end of the warm-up to the last counted answer.
    pub window: Duration,
    /// CPU seconds the server process used during the measurement, if its pid was given.
    pub server_cpu_seconds: Option<f64>,
    /// CPU seconds this process used during the measurement.
    pub client_cpu_seconds: f64,
    /// Open loop: scheduled requests never sent (the generator could not keep up).
    pub unsent: u64,
    /// CPU seconds the whole machine was busy during the measurement (all processes).
    pub machine_busy_seconds: f64,
    /// The server's resident memory after the run.
    pub server_rss_kib: Option<u64>,
}

/// Slots still queued this long after the end of the measurement are not sent.
const LATE_DROP: Duration = Duration::from_secs(1);

/// The most slots the open loop's queues hold in all; beyond, the generator has fallen
/// hopelessly behind and further slots are counted as not sent.
const SLOT_QUEUE: u64 = 65_536;

/// The pacer's shortest sleep.
const PACER_TICK: Duration = Duration::from_micros(200);

/// One scheduled request of the open loop.
struct Slot {
    index: u64,
    due: Instant,
}

/// After a transport failure or a time-out, wait this long before the next request so a
/// dead server is not hammered.
const FAILURE_BACKOFF: Duration = Duration::from_millis(10);

/// Sends one request per credential, concurrently with every client, so that each tenant is
/// loaded into the server's catalog before anything is measured, and each credential is
/// known to work. Fails on the first credential that does not.
pub async fn prime(
    clients: Vec<Client>,
    credentials: Arc<Vec<Prepared>>,
    timeout: Duration,
) -> anyhow::Result<Vec<Client>> {
    let count = credentials.len();
    // Generous: loading a tenant from the database takes about a millisecond.
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + Duration::from_millis(20).saturating_mul(u32::try_from(count).unwrap_or(u32::MAX));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(clients.len());
    for mut client in clients {
        let credentials = Arc::clone(&credentials);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(credential) = credentials.get(index) else {
                    return Ok(client);
                };
                if Instant::now() > deadline {
                    bail!("priming {count} credentials did not finish in time");
                }
                let result = match tokio::time::timeout(timeout, client.issue(credential)).await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::timeout(timeout)),
                };
                if let Err(failure) = result {
                    bail!("credential #{index} got no token: {}", failure.detail);
                }
            }
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(task.await??);
    }
    Ok(clients)
}

struct Shared {
    credentials: Arc<Vec<Prepared>>,
    /// Closed loop: the next request index.
    next: AtomicU64,
    /// Open loop or closed loop.
    open: bool,
    /// Requests started in the warm-up, and in the measurement.
    warmup_started: AtomicU64,
    measured_started: AtomicU64,
    /// Open loop: slots dropped as too late.
    unsent: AtomicU64,
    measure_from: Instant,
    end: Instant,
    max_requests: u64,
    timeout: Duration,
}

/// Runs the warm-up and the measurement with `clients`, sampling the CPU time of the server
/// (`server_pid`) and of this process over the measurement.
pub async fn run(
    clients: Vec<Client>,
    credentials: Arc<Vec<Prepared>>,
    spec: &LoadSpec,
    server_pid: Option<u32>,
) -> anyhow::Result<Outcome> {
    if credentials.is_empty() {
        bail!("no credentials to load with");
    }
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let dropped_by_pacer = Arc::new(AtomicU64::new(0));
    let (queues, pacer) = match spec.rate {
        Some(rate) => {
            // Every slot of warm-up and measurement, and not one more.
            let max_slots = ((spec.warmup + spec.duration).as_secs_f64() * rate).ceil() as u64;
            let per_client = (max_slots.clamp(1, SLOT_QUEUE) / clients.len().max(1) as u64).max(16);
            let capacity = usize::try_from(per_client).unwrap_or(16);
            let (senders, receivers): (Vec<_>, Vec<_>) =
                (0..clients.len()).map(|_| mpsc::channel(capacity)).unzip();
            let dropped = Arc::clone(&dropped_by_pacer);
            let pacer = std::thread::Builder::new()
                .name("pacer".to_owned())
                .spawn(move || pace(&senders, start, end, rate, max_slots, &dropped))
                .context("cannot start the pacer thread")?;
            (receivers.into_iter().map(Some).collect(), Some(pacer))
        }
        None => (clients.iter().map(|_| None).collect::<Vec<_>>(), None),
    };
    let shared = Arc::new(Shared {
        credentials,
        next: AtomicU64::new(0),
        open: spec.rate.is_some(),
        warmup_started: AtomicU64::new(0),
        measured_started: AtomicU64::new(0),
        unsent: AtomicU64::new(0),
        measure_from,
        end,
        max_requests: spec.max_requests,
        timeout: spec.timeout,
    });
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(queues)
        .map(|(client, queue)| tokio::spawn(worker(client, queue, Arc::clone(&shared))))
        .collect();

    tokio::time::sleep_until(measure_from.into()).await;
    let server_cpu_start = server_pid
        .map(|pid| stats::cpu_seconds(Some(pid)))
        .transpose()?;
    let client_cpu_start = stats::cpu_seconds(None)?;
    let machine_busy_start = stats::machine_busy_seconds()?;
    let mut report = WorkerReport::new()?;
    for task in tasks {
        report.merge(task.await??)?;
    }
    // The clients stop once the pacer has closed the queue, so it has already returned.
    if let Some(pacer) = pacer
        && pacer.join().is_err()
    {
        bail!("the pacer thread panicked");
    }
    let client_cpu_seconds = stats::cpu_seconds(None)? - client_cpu_start;
    let machine_busy_seconds = stats::machine_busy_seconds()? - machine_busy_start;
    let server_cpu_seconds = match (server_pid, server_cpu_start) {
        (Some(pid), Some(before)) => Some(stats::cpu_seconds(Some(pid))? - before),
        _ => None,
    };
    let window = report
        .last_done
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(measure_from);
    Ok(Outcome {
        report,
        window,
        server_cpu_seconds,
        client_cpu_seconds,
        unsent: shared.unsent.load(Ordering::Relaxed) + dropped_by_pacer.load(Ordering::Relaxed),
        machine_busy_seconds,
        server_rss_kib: server_pid.and_then(|pid| stats::rss_kib(Some(pid))),
    })
}

/// Hands slot `i` to queue `i mod queues` at `start + i / rate` until `end`, sleeping in
/// between.
fn pace(
    senders: &[mpsc::Sender<Slot>],
    start: Instant,
    end: Instant,
    rate: f64,
    max_slots: u64,
    dropped: &AtomicU64,
) {
    let mut index = 0;
    while index < max_slots {
        let due = start + Duration::from_secs_f64(index as f64 / rate);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            // Never shorter than a tick: waking per slot would cost the generator more CPU
            // than the requests themselves. Slots are released up to a tick late, which the
            // latency from the due time shows.
            std::thread::sleep((due - now).max(PACER_TICK));
            continue;
        }
        let Some(sender) = usize::try_from(index % senders.len().max(1) as u64)
            .ok()
            .and_then(|queue| senders.get(queue))
        else {
            break;
        };
        match sender.try_send(Slot { index, due }) {
            Ok(()) => {}
            // Full: that client is hopelessly behind. Closed: it stopped (request budget
            // spent). Either way the slot is not sent; the others go on until `end`.
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        index += 1;
    }
}

async fn worker(
    mut client: Client,
    mut queue: Option<mpsc::Receiver<Slot>>,
    shared: Arc<Shared>,
) -> anyhow::Result<WorkerReport> {
    let mut report = WorkerReport::new()?;
    let count = shared.credentials.len() as u64;
    loop {
        let (index, scheduled) = match &mut queue {
            None => {
                if Instant::now() >= shared.end {
                    break;
                }
                (shared.next.fetch_add(1, Ordering::Relaxed), None)
            }
            Some(queue) => {
                let Some(Slot { index, due }) = queue.recv().await else {
                    break; // the pacer is done and the queue empty
                };
                if Instant::now() > shared.end + LATE_DROP {
                    shared.unsent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                (index, Some(due))
            }
        };
        let counted = scheduled.unwrap_or_else(Instant::now) >= shared.measure_from;
        if counted {
            if shared.measured_started.fetch_add(1, Ordering::Relaxed) >= shared.max_requests {
                break;
            }
        } else if shared.warmup_started.fetch_add(1, Ordering::Relaxed) >= shared.max_requests {
            if !shared.open {
                // Warm-up budget spent: idle until the measurement.
                tokio::time::sleep_until(shared.measure_from.into()).await;
            }
            continue;
        }
        let Some(credential) = usize::try_from(index % count)
            .ok()
            .and_then(|index| shared.credentials.get(index))
        else {
            bail!("credential index out of range");
        };
        let sent = Instant::now();
        let result = match tokio::time::timeout(shared.timeout, client.issue(credential)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::timeout(shared.timeout)),
        };
        let done = Instant::now();
        let back_off = matches!(&result, Err(failure) if failure.kind == "transport" || failure.kind == "timeout");
        if counted {
            match result {
                Ok(()) => {
                    report.ok += 1;
                    stats::record(&mut report.service, done - sent);
                    if let Some(due) = scheduled {
                        stats::record(&mut report.scheduled, done - due);
                        if sent.saturating_duration_since(due) > LATE_THRESHOLD {
                            report.late += 1;
                        }
                    }
                }
                Err(failure) => report.failure(failure.kind, failure.detail),
            }
            report.last_done = Some(done);
        }
        if back_off {
            tokio::time::sleep(FAILURE_BACKOFF).await;
        }
    }
    Ok(report)
}

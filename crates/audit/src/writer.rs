//! [`AuditWriter`]: durable recording with group commit.
//!
//! Callers hand events to one task over a bounded queue and wait. The task takes the first
//! event, then whatever else is queued or arrives until it has [`AuditConfig::max_batch`]
//! events or [`AuditConfig::max_wait`] has passed (by default it does not wait: it takes
//! what is queued), links them into their tenants' chains and appends
//! them in one transaction ([`Store::append_audit_batch`]); then it answers every waiter of
//! the batch at once: `Ok` after the commit, [`AuditError::Unavailable`] if it failed (the
//! transaction left nothing behind). While a batch commits, the next one gathers in the
//! queue, so under load batches grow by themselves and the commit cost is shared.
//!
//! The serialization of an event's fields (the bulk of the hashing input) is done by the
//! caller, on its own task; the writer task only adds the chain position and hashes,
//! inside the append transaction, with the heads it read under the audit lock.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tollgate_domain::{Clock, SystemClock};
use tollgate_keys::sha256;
use tollgate_store::{AuditHead, AuditRow, Store};

use crate::chain::{GENESIS_HASH, encode_body, encode_header, hex};
use crate::{AuditError, AuditEvent};

/// How the writer batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Most events per transaction (at least 1).
    pub max_batch: usize,
    /// How long a batch waits for more events after its first one; zero takes only what is
    /// already queued. Tokio's timer has millisecond resolution, so a non-zero wait lasts
    /// about 1–2 ms however short it is set.
    pub max_wait: Duration,
    /// Events queued at most before `record` itself waits (backpressure when the database
    /// is slower than the arrivals).
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    /// Up to 512 events, no waiting, 65,536 queued.
    ///
    /// No waiting because it measured best (`tests/it/bench.rs`): while one transaction
    /// commits, the next batch gathers in the queue anyway, so under load batches fill by
    /// themselves (about 32 events with 64 closed-loop recorders, 512 with 1,024), while a
    /// 1 ms wait added 2–4 ms to every event at low load (the timer rounds up) and gained
    /// no throughput at 64 or 1,024 recorders on either backend.
    fn default() -> Self {
        AuditConfig {
            max_batch: 512,
            max_wait: Duration::ZERO,
            queue_capacity: 65_536,
        }
    }
}

/// Counters of what the writer has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Events committed.
    pub events: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Events refused because their batch failed.
    pub failed_events: u64,
    /// Transactions that failed.
    pub failed_batches: u64,
    /// Time spent in append transactions, committed or failed, in microseconds: divided by
    /// `batches + failed_batches`, the mean cost of one.
    pub commit_micros: u64,
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    batches: AtomicU64,
    failed_events: AtomicU64,
    failed_batches: AtomicU64,
    commit_micros: AtomicU64,
}

/// An event on its way: its row, its serialized body, and who waits for it.
struct Pending {
    row: AuditRow,
    body: Vec<u8>,
    done: oneshot::Sender<Result<(), AuditError>>,
}

enum Command {
    // Boxed: a row is ~500 bytes, and the queue's slots are sized by the largest variant.
    Record(Box<Pending>),
    Shutdown(oneshot::Sender<()>),
}

/// The handle callers record through. Cheap to clone; clones share the one writer task.
#[derive(Clone)]
pub struct AuditWriter {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the writer task on the current Tokio runtime. It ends after
    /// [`AuditWriter::shutdown`], or once every handle is dropped, in both cases after
    /// committing everything queued. Events are stamped by the system clock
    /// ([`AuditWriter::now_ms`]).
    pub fn start(store: Store, config: AuditConfig) -> (AuditWriter, JoinHandle<()>) {
        Self::start_with_clock(store, config, Arc::new(SystemClock))
    }

    /// [`AuditWriter::start`], with events stamped by `clock`.
    pub fn start_with_clock(
        store: Store,
        config: AuditConfig,
        clock: Arc<dyn Clock>,
    ) -> (AuditWriter, JoinHandle<()>) {
        let config = AuditConfig {
            max_batch: config.max_batch.max(1),
            queue_capacity: config.queue_capacity.max(1),
            ..config
        };
        let (commands, receiver) = mpsc::channel(config.queue_capacity);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(store, config, receiver, Arc::clone(&counters)));
        let writer = AuditWriter {
            commands,
            counters,
            clock,
        };
        (writer, task)
    }

    /// The current time of the writer's clock in Unix milliseconds: the
    /// [`AuditEvent::time_ms`] of an event happening now.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The clock events are stamped by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Records `event`, returning once the transaction holding it has committed.
    ///
    /// [`AuditError::Unavailable`] if that transaction failed: the event is not recorded
    /// and the action it describes must not go ahead. [`AuditError::Closed`] after
    /// shutdown. Dropping the returned future does not withdraw an event already queued.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let answer = self.enqueue(event).await?;
        // No answer at all means the task died with the event in hand: whether it was
        // committed is unknown, so fail closed.
        answer.await.unwrap_or(Err(AuditError::Unavailable))
    }

    /// Queues `event` (its body serialized here, on the caller's task) and returns where
    /// its outcome will be answered.
    async fn enqueue(
        &self,
        event: AuditEvent,
    ) -> Result<oneshot::Receiver<Result<(), AuditError>>, AuditError> {
        let row = event.into_row();
        let mut body = Vec::with_capacity(256);
        encode_body(&row, &mut body);
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Record(Box::new(Pending { row, body, done })))
            .await
            .map_err(|_| AuditError::Closed)?;
        Ok(answer)
    }

    /// Records `events` (queued together, so they usually share a transaction), returning
    /// once all have committed; the first failure if any did not.
    pub async fn record_all(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        let mut answers = Vec::with_capacity(events.len());
        for event in events {
            answers.push(self.enqueue(event).await?);
        }
        let mut outcome = Ok(());
        for answer in answers {
            let result = answer.await.unwrap_or(Err(AuditError::Unavailable));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }

    /// Stops accepting events, commits everything already queued, and returns when that is
    /// done (at once if the writer has already stopped accepting events).
    pub async fn shutdown(&self) {
        let (ack, acked) = oneshot::channel();
        if self.commands.send(Command::Shutdown(ack)).await.is_ok() {
            // An error only means the task ended without acknowledging: nothing to wait for.
            let _ = acked.await;
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> AuditStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AuditStats {
            events: load(&self.counters.events),
            batches: load(&self.counters.batches),
            failed_events: load(&self.counters.failed_events),
            failed_batches: load(&self.counters.failed_batches),
            commit_micros: load(&self.counters.commit_micros),
        }
    }
}

/// The writer task.
async fn run(
    store: Store,
    config: AuditConfig,
    mut commands: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
) {
    let mut acks = Vec::new();
    let mut batch = Vec::new();
    // Ends when the queue is closed (shutdown) or every handle is gone, and drained.
    while let Some(command) = commands.recv().await {
        take(command, &mut batch, &mut acks, &mut commands);
        // The batching wait is real time: it waits for callers, not for a clock's reading.
        #[allow(clippy::disallowed_methods)]
        let deadline = Instant::now() + config.max_wait;
        while batch.len() < config.max_batch {
            let command = match commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if config.max_wait.is_zero() => break,
                Err(TryRecvError::Empty) => match timeout_at(deadline, commands.recv()).await {
                    Ok(Some(command)) => command,
                    // Closed and drained, or the wait is over.
                    Ok(None) | Err(_) => break,
                },
            };
            take(command, &mut batch, &mut acks, &mut commands);
        }
        if !batch.is_empty() {
            commit(&store, std::mem::take(&mut batch), &counters).await;
        }
    }
    for ack in acks {
        let _ = ack.send(());
    }
}

/// Adds an event to the batch, or begins the shutdown: closing the queue refuses new
/// events, while those already in it are still received and committed.
fn take(
    command: Command,
    batch: &mut Vec<Pending>,
    acks: &mut Vec<oneshot::Sender<()>>,
    commands: &mut mpsc::Receiver<Command>,
) {
    match command {
        Command::Record(pending) => batch.push(*pending),
        Command::Shutdown(ack) => {
            acks.push(ack);
            commands.close();
        }
    }
}

/// Appends `batch` in one transaction and answers its waiters.
async fn commit(store: &Store, batch: Vec<Pending>, counters: &Counters) {
    let count = batch.len() as u64;
    let mut tenant_ids = Vec::new();
    let mut seen = HashSet::new();
    let mut work = Vec::with_capacity(batch.len());
    let mut waiters = Vec::with_capacity(batch.len());
    for pending in batch {
        if seen.insert(pending.row.tenant_id.clone()) {
            tenant_ids.push(pending.row.tenant_id.clone());
        }
        work.push((pending.row, pending.body));
        waiters.push(pending.done);
    }
    let tenant_ids: Vec<&str> = tenant_ids.iter().map(String::as_str).collect();
    // Commit cost is real elapsed time (a statistic of the database, not a timestamp).
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let appended = store
        .append_audit_batch(&tenant_ids, move |heads| link(heads, work))
        .await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    counters.commit_micros.fetch_add(micros, Ordering::Relaxed);
    let committed = match appended {
        Ok(()) => {
            counters.events.fetch_add(count, Ordering::Relaxed);
            counters.batches.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(error) => {
            // Logged once here; every waiter gets the same cause-free answer.
            tracing::error!(%error, events = count, "audit batch not recorded: events refused");
            counters.failed_events.fetch_add(count, Ordering::Relaxed);
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    for waiter in waiters {
        let answer = if committed {
            Ok(())
        } else {
            Err(AuditError::Unavailable)
        };
        // A waiter that gave up no longer needs the answer.
        let _ = waiter.send(answer);
    }
}

/// Places `work` (rows in arrival order, with their serialized bodies) in their tenants'
/// chains after `heads`: consecutive `seq`s, each `prev_hash` the previous hash.
pub(crate) fn link(
    heads: &HashMap<String, AuditHead>,
    work: Vec<(AuditRow, Vec<u8>)>,
) -> Vec<AuditRow> {
    let mut tips: HashMap<String, (i64, String)> = HashMap::new();
    let mut bytes = Vec::with_capacity(512);
    work.into_iter()
        .map(|(mut row, body)| {
            let tip = match tips.get_mut(&row.tenant_id) {
                Some(tip) => tip,
                None => tips.entry(row.tenant_id.clone()).or_insert_with(|| {
                    heads.get(&row.tenant_id).map_or_else(
                        || (0, GENESIS_HASH.to_owned()),
                        |head| (head.seq, head.hash.clone()),
                    )
                }),
            };
            row.seq = tip.0.saturating_add(1);
            row.prev_hash = std::mem::take(&mut tip.1);
            bytes.clear();
            encode_header(
                row.version,
                &row.tenant_id,
                row.seq,
                &row.prev_hash,
                &mut bytes,
            );
            bytes.extend_from_slice(&body);
            row.hash = hex(&sha256(&bytes));
            *tip = (row.seq, row.hash.clone());
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{record_hash, verify_chain};

    fn pending_row(tenant: &str, n: i64) -> (AuditRow, Vec<u8>) {
        let row = AuditRow {
            tenant_id: tenant.to_owned(),
            version: crate::chain::CHAIN_VERSION,
            time_ms: n,
            tenant_name: "acme".into(),
            action: "token_issued".into(),
            result: "granted".into(),
            count: 1,
            ..AuditRow::default()
        };
        let mut body = Vec::new();
        encode_body(&row, &mut body);
        (row, body)
    }

    #[test]
    fn link_continues_each_tenants_head() {
        let heads = HashMap::from([(
            "a".to_owned(),
            AuditHead {
                tenant_id: "a".into(),
                seq: 7,
                hash: "h7".into(),
            },
        )]);
        let work = vec![
            pending_row("a", 1),
            pending_row("b", 2),
            pending_row("a", 3),
            pending_row("b", 4),
        ];
        let rows = link(&heads, work);
        let positions: Vec<_> = rows
            .iter()
            .map(|row| (row.tenant_id.as_str(), row.seq))
            .collect();
        assert_eq!(positions, [("a", 8), ("b", 1), ("a", 9), ("b", 2)]);
        assert_eq!(rows[0].prev_hash, "h7");
        assert_eq!(rows[1].prev_hash, GENESIS_HASH);
        assert_eq!(rows[2].prev_hash, rows[0].hash);
        assert_eq!(rows[3].prev_hash, rows[1].hash);
        // The writer's hash is the verifier's hash.
        for row in &rows {
            assert_eq!(record_hash(row).as_deref(), Some(row.hash.as_str()));
        }
        let b: Vec<_> = rows
            .iter()
            .filter(|r| r.tenant_id == "b")
            .cloned()
            .collect();
        assert_eq!(verify_chain(&b), Ok(()));
    }
}

//! Integration tests of `tollgate-audit`: the writer and the chain against a real store,
//! each case run against SQLite (a fresh temporary file) and PostgreSQL (a fresh database)
//! when `TOLLGATE_TEST_POSTGRES_URL` is set. Without it the PostgreSQL variants say
//! SKIPPED on stderr, or fail if `TOLLGATE_REQUIRE_BACKENDS=1`.
//!
//! `bench` holds the `#[ignore]`d throughput measurement.

// Tests bound their waits for real I/O and report latencies in real time; what they test of time runs on injected clocks.
#![allow(clippy::disallowed_methods)]

mod backend;
mod bench;
mod cases;

/// What every case returns.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Declares each case once per backend, as `sqlite::<case>` and `postgres::<case>`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        suite!(@backend sqlite, Sqlite; $($case),*);
        suite!(@backend postgres, Postgres; $($case),*);
    };
    (@backend $module:ident, $backend:ident; $($case:ident),*) => {
        mod $module {
            use crate::backend::{Backend, run};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() -> crate::TestResult {
                    run(Backend::$backend, crate::cases::$case).await
                }
            )*
        }
    };
}

suite!(
    chain_verifies_and_reads_back,
    editing_any_field_breaks_at_that_seq,
    moving_a_record_breaks_at_the_gap,
    deleting_a_middle_record_breaks_at_the_next,
    deleting_the_newest_record_contradicts_the_head,
    purge_keeps_verification_working,
    group_commit_answers_after_commit,
    store_unreachable_fails_every_waiter,
    failed_batch_fails_every_waiter_and_writes_nothing,
    shutdown_flushes_what_is_queued,
    dropping_every_handle_flushes_and_ends,
    two_writers_build_one_gap_free_chain,
);

//! Integration tests of `tollgate-store`: one suite of cases, each run against SQLite (a
//! fresh temporary file) and against PostgreSQL (a fresh database) when
//! `TOLLGATE_TEST_POSTGRES_URL` is set. Without it the PostgreSQL variants say SKIPPED on
//! stderr, or fail if `TOLLGATE_REQUIRE_BACKENDS=1`.

mod audit;
mod backend;
mod cases;
mod fixtures;

/// No audit events: these cases test the store's configuration writes; appending change
/// events in their transactions is tested end to end with the server.
pub struct NoAudit;

impl tollgate_store::AuditAppend for NoAudit {
    fn tenant_ids(&self) -> Vec<String> {
        Vec::new()
    }

    fn build(
        &self,
        _heads: &std::collections::HashMap<String, tollgate_store::AuditHead>,
    ) -> Vec<tollgate_store::AuditRow> {
        Vec::new()
    }
}

/// The one [`NoAudit`].
pub const NO_AUDIT: NoAudit = NoAudit;

/// What every case returns; `?` works on store, domain and setup errors alike.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Declares each case once per backend, as `sqlite::<case>` and `postgres::<case>`. Cases
/// after `empty:` get a database no migration has touched.
macro_rules! suite {
    ($($case:ident),* $(,)?; empty: $($empty:ident),* $(,)?) => {
        suite!(@backend sqlite, Sqlite; $($case),*; $($empty),*);
        suite!(@backend postgres, Postgres; $($case),*; $($empty),*);
    };
    (@backend $module:ident, $backend:ident; $($case:ident),*; $($empty:ident),*) => {
        mod $module {
            use crate::backend::{Backend, Schema, run};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> crate::TestResult {
                    run(Backend::$backend, Schema::Migrated, crate::cases::$case).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $empty() -> crate::TestResult {
                    run(Backend::$backend, Schema::Empty, crate::cases::$empty).await
                }
            )*
        }
    };
}

suite!(
    migrate_twice_and_first_start,
    tenants_create_find_and_paginate,
    duplicate_tenant_is_already_exists,
    failed_create_tenant_writes_nothing,
    update_tenant,
    apis_create_find_and_paginate,
    duplicate_api_identifier_is_already_exists,
    apps_create_find_and_paginate_with_grants,
    duplicate_client_id_is_already_exists,
    failed_create_app_writes_nothing,
    update_app_replaces_grants_only_when_given,
    tenant_isolation,
    update_api_prunes_grant_scopes,
    delete_api_removes_its_grants,
    delete_app_removes_secrets_and_grants,
    delete_tenant_leaves_no_rows,
    snapshot_content,
    signing_keys_round_trip,
    concurrent_writes_and_reads,
    secrets_list_add_expire,
    touch_secrets_keeps_the_latest_use,
    rotation_compare_and_set,
    concurrent_rotations_one_wins,
    rotation_failures_write_nothing,
    tenants_due_for_rotation_order,
    delete_removed_keys,
    revocations_live_matching_purge,
    revocations_on_delete,
    change_log_rows_per_write,
    changed_tenants_since_and_purge,
    audit_append_chains_and_heads,
    audit_rows_round_trip,
    audit_failed_append_writes_nothing,
    audit_list_filters_and_cursors,
    audit_purge_keeps_a_contiguous_suffix,
    audit_concurrent_appenders_build_one_chain;
    empty:
    migration_upgrades_initial_schema,
);

/// `sqlite::memory:` keeps its one connection alive: data written is still there to read.
#[tokio::test]
async fn sqlite_in_memory_keeps_its_data() -> TestResult {
    let store = tollgate_store::Store::connect("sqlite::memory:").await?;
    store.migrate().await?;
    assert_eq!(store.backend_name(), "sqlite");
    assert!(store.is_empty().await?);
    let tenant = fixtures::tenant("memory")?;
    store
        .create_tenant(&fixtures::new_tenant(&tenant), &NO_AUDIT)
        .await?;
    assert_eq!(store.find_tenant(&tenant.name).await?, Some(tenant));
    Ok(())
}

/// An unknown URL scheme is refused without echoing the URL (it may hold a password).
#[tokio::test]
async fn unsupported_url_is_refused_without_echo() {
    let error = tollgate_store::Store::connect("mysql://user:hunter2@host/db")
        .await
        .err()
        .map(|error| format!("{error} {error:?}"));
    let error = error.unwrap_or_default();
    assert!(error.contains("database unavailable"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

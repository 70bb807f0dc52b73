//! The cases of the suite. Each gets a fresh, migrated, empty database and must behave the
//! same on every backend.

use std::sync::Arc;

use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, Value};
use tollgate_domain::{
    Algorithm, ApiIdentifier, ClientId, ErrorCode, KeyId, ManualClock, Revocation,
    RevocationTarget, SecretId, TenantName, TokenLifetime, UnixTime,
};
use tollgate_migrations::{Migrator, MigratorTrait};
use tollgate_store::{
    NewApp, NewTenant, SecretRecord, SigningKeyRecord, Store, StoreError, TenantRecord,
};

pub use crate::audit::{
    audit_append_chains_and_heads, audit_concurrent_appenders_build_one_chain,
    audit_failed_append_writes_nothing, audit_list_filters_and_cursors,
    audit_purge_keeps_a_contiguous_suffix, audit_rows_round_trip,
};
use crate::backend::{TENANT_TABLES, TestDb};
use crate::fixtures::{
    self, api, app, grant, key, new_tenant, populated, revocation, secret, tenant,
};
use crate::{NO_AUDIT, TestResult};

fn assert_already_exists<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: &str) {
    match result {
        Err(StoreError::AlreadyExists { entity }) => assert_eq!(entity, expected),
        other => panic!("expected AlreadyExists {{ {expected} }}, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: &str) {
    match result {
        Err(StoreError::NotFound { entity }) => assert_eq!(entity, expected),
        other => panic!("expected NotFound {{ {expected} }}, got {other:?}"),
    }
}

pub async fn migrate_twice_and_first_start(db: TestDb) -> TestResult {
    let store = &db.store;
    // `run` migrated once already; again is a no-op, and a third time too.
    store.migrate().await?;
    store.migrate().await?;
    assert!(matches!(store.backend_name(), "sqlite" | "postgres"));
    assert!(store.is_empty().await?);
    store
        .create_tenant(&new_tenant(&tenant("first")?), &NO_AUDIT)
        .await?;
    assert!(!store.is_empty().await?);
    store.migrate().await?;
    assert!(!store.is_empty().await?);
    Ok(())
}

pub async fn tenants_create_find_and_paginate(db: TestDb) -> TestResult {
    let store = &db.store;
    // Names chosen so that a locale collation would order them differently from bytes.
    let names = ["b1", "ab", "a-b", "a", "zz", "a0", "a-a"];
    let mut created = Vec::new();
    for name in &names {
        let record = tenant(name)?;
        store.create_tenant(&new_tenant(&record), &NO_AUDIT).await?;
        created.push(record);
    }
    created.sort_by(|a, b| a.name.cmp(&b.name));

    for record in &created {
        assert_eq!(
            store.find_tenant(&record.name).await?.as_ref(),
            Some(record)
        );
    }
    assert_eq!(
        store.find_tenant(&TenantName::parse("nobody")?).await?,
        None
    );

    // Pages of two, each strictly after the last name of the previous page.
    let mut listed = Vec::new();
    let mut after: Option<TenantName> = None;
    loop {
        let page = store.list_tenants(after.as_ref(), 2).await?;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        listed.extend(page);
    }
    assert_eq!(listed, created);
    assert_eq!(store.list_tenants(None, u64::MAX).await?, created);
    assert!(store.list_tenants(None, 0).await?.is_empty());
    let after_a = store
        .list_tenants(Some(&TenantName::parse("a")?), 1)
        .await?;
    assert_eq!(after_a, created[1..2].to_vec());
    Ok(())
}

pub async fn duplicate_tenant_is_already_exists(db: TestDb) -> TestResult {
    let store = &db.store;
    let first = tenant("acme")?;
    store.create_tenant(&new_tenant(&first), &NO_AUDIT).await?;
    let same_name = tenant("acme")?;
    let result = store
        .create_tenant(&new_tenant(&same_name), &NO_AUDIT)
        .await;
    assert!(matches!(&result, Err(error) if error.code() == ErrorCode::AlreadyExists));
    assert_already_exists(result, "tenant");
    assert_eq!(store.find_tenant(&first.name).await?, Some(first));
    Ok(())
}

pub async fn failed_create_tenant_writes_nothing(db: TestDb) -> TestResult {
    let store = &db.store;
    let taken = populated("taken")?;
    store.create_tenant(&taken.new, &NO_AUDIT).await?;

    // Everything is fine except the last app, whose client id belongs to another tenant:
    // the tenant, its keys and APIs written before it must all be rolled back.
    let mut doomed = populated("doomed")?;
    let mut clash = app("taken-first")?;
    clash.name = "clash".into();
    doomed.new.apps.push(NewApp {
        secret: secret(&clash),
        grants: Vec::new(),
        app: clash,
    });
    assert_already_exists(store.create_tenant(&doomed.new, &NO_AUDIT).await, "app");
    assert_eq!(store.find_tenant(&doomed.new.tenant.name).await?, None);
    for (table, count) in db.counts(doomed.new.tenant.id.as_str()).await? {
        assert_eq!(count, 0, "{table} kept rows of a failed create_tenant");
    }

    // A grant on an API the new tenant does not have (another tenant's) is refused.
    let mut foreign = populated("foreign")?;
    foreign.new.apps[0]
        .grants
        .push(grant(&taken.orders, &["read"])?);
    foreign.new.apps[0]
        .grants
        .retain(|g| g.api_id != foreign.orders.id);
    assert_not_found(store.create_tenant(&foreign.new, &NO_AUDIT).await, "api");
    assert_eq!(store.find_tenant(&foreign.new.tenant.name).await?, None);
    Ok(())
}

pub async fn update_tenant(db: TestDb) -> TestResult {
    let store = &db.store;
    let mut record = tenant("acme")?;
    // Created with every column set.
    record.keys_rotated_at = Some(1_700_000_050);
    record.rate_limit_per_second = Some(50);
    store.create_tenant(&new_tenant(&record), &NO_AUDIT).await?;
    assert_eq!(store.find_tenant(&record.name).await?, Some(record.clone()));

    record.display_name = "Acme, Inc.".into();
    record.signing_alg = Algorithm::EdDsa;
    record.rate_limit_per_second = Some(500);
    record.updated_at += 60;
    store.update_tenant(&record, &NO_AUDIT).await?;
    assert_eq!(store.find_tenant(&record.name).await?, Some(record.clone()));

    // The rate limit can be cleared; keys_rotated_at is not update_tenant's to write.
    let mut changed = record.clone();
    changed.rate_limit_per_second = None;
    changed.keys_rotated_at = Some(1);
    store.update_tenant(&changed, &NO_AUDIT).await?;
    record.rate_limit_per_second = None;
    assert_eq!(store.find_tenant(&record.name).await?, Some(record.clone()));

    let mut ghost = tenant("ghost")?;
    ghost.display_name = "Nobody".into();
    assert_not_found(store.update_tenant(&ghost, &NO_AUDIT).await, "tenant");
    Ok(())
}

pub async fn apis_create_find_and_paginate(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    // Upper case sorts before lower case byte-wise, unlike in locale collations.
    let identifiers = [
        "https://b.example/",
        "https://B.example/",
        "urn:acme:x",
        "https://a.example/v2",
        "https://a.example/",
    ];
    let mut created = Vec::new();
    for identifier in identifiers {
        let mut record = api(identifier, &["read", "write"])?;
        record.signing_alg = Some(Algorithm::Rs256);
        record.token_lifetime = TokenLifetime::from_seconds(86_400)?;
        store.create_api(&acme.id, &record, &NO_AUDIT).await?;
        created.push(record);
    }
    created.sort_by(|a, b| a.identifier.cmp(&b.identifier));

    for record in &created {
        assert_eq!(
            store.find_api(&acme.id, &record.identifier).await?.as_ref(),
            Some(record)
        );
    }
    let missing = ApiIdentifier::parse("https://missing.example/")?;
    assert_eq!(store.find_api(&acme.id, &missing).await?, None);

    let first = store.list_apis(&acme.id, None, 3).await?;
    assert_eq!(first, created[..3].to_vec());
    let rest = store
        .list_apis(&acme.id, Some(&created[2].identifier), 3)
        .await?;
    assert_eq!(rest, created[3..].to_vec());
    assert!(
        store
            .list_apis(&acme.id, created.last().map(|a| &a.identifier), 3)
            .await?
            .is_empty()
    );
    Ok(())
}

pub async fn duplicate_api_identifier_is_already_exists(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let other = tenant("other")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    store.create_tenant(&new_tenant(&other), &NO_AUDIT).await?;

    let original = api("https://api.example/", &["read"])?;
    store.create_api(&acme.id, &original, &NO_AUDIT).await?;
    let duplicate = api("https://api.example/", &["write"])?;
    assert_already_exists(
        store.create_api(&acme.id, &duplicate, &NO_AUDIT).await,
        "api",
    );
    assert_eq!(
        store.find_api(&acme.id, &original.identifier).await?,
        Some(original.clone())
    );
    // Identifiers are unique per tenant only.
    store.create_api(&other.id, &duplicate, &NO_AUDIT).await?;
    assert_eq!(
        store.find_api(&other.id, &duplicate.identifier).await?,
        Some(duplicate)
    );
    // A reused id is a duplicate too.
    let mut same_id = api("https://other.example/", &[])?;
    same_id.id = original.id.clone();
    assert_already_exists(store.create_api(&acme.id, &same_id, &NO_AUDIT).await, "api");
    Ok(())
}

pub async fn apps_create_find_and_paginate_with_grants(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    let orders = api("https://orders.example/", &["read", "write"])?;
    let billing = api("https://billing.example/", &["invoice"])?;
    store.create_api(&acme.id, &orders, &NO_AUDIT).await?;
    store.create_api(&acme.id, &billing, &NO_AUDIT).await?;

    let client_ids = ["beta", "Alpha", "alpha", "gamma.1", "gamma-1", "_x"];
    let mut created = Vec::new();
    for (index, client_id) in client_ids.iter().enumerate() {
        let record = app(client_id)?;
        // Grants given out of audience order; they come back ordered by audience.
        let grants = match index % 3 {
            0 => vec![
                grant(&orders, &["write", "read"])?,
                grant(&billing, &["invoice"])?,
            ],
            1 => vec![grant(&orders, &["read"])?],
            _ => Vec::new(),
        };
        store
            .create_app(&acme.id, &record, &secret(&record), &grants, &NO_AUDIT)
            .await?;
        let mut expected = grants;
        expected.sort_by(|a, b| a.audience.cmp(&b.audience));
        created.push(tollgate_store::AppWithGrants {
            app: record,
            grants: expected,
        });
    }
    created.sort_by(|a, b| a.app.client_id.cmp(&b.app.client_id));

    for expected in &created {
        let found = store.find_app(&acme.id, &expected.app.client_id).await?;
        assert_eq!(found.as_ref(), Some(expected));
    }
    assert_eq!(
        store
            .find_app(&acme.id, &ClientId::parse("nobody")?)
            .await?,
        None
    );

    let mut listed = Vec::new();
    let mut after: Option<ClientId> = None;
    loop {
        let page = store.list_apps(&acme.id, after.as_ref(), 4).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.app.client_id.clone());
        listed.extend(page);
    }
    assert_eq!(listed, created);
    assert_eq!(store.list_apps(&acme.id, None, u64::MAX).await?, created);
    Ok(())
}

pub async fn duplicate_client_id_is_already_exists(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let other = tenant("other")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    store.create_tenant(&new_tenant(&other), &NO_AUDIT).await?;
    let original = app("client-1")?;
    store
        .create_app(&acme.id, &original, &secret(&original), &[], &NO_AUDIT)
        .await?;

    let duplicate = app("client-1")?;
    assert_already_exists(
        store
            .create_app(&acme.id, &duplicate, &secret(&duplicate), &[], &NO_AUDIT)
            .await,
        "app",
    );
    // Client ids are unique across all tenants.
    assert_already_exists(
        store
            .create_app(&other.id, &duplicate, &secret(&duplicate), &[], &NO_AUDIT)
            .await,
        "app",
    );
    assert_eq!(store.find_app(&other.id, &duplicate.client_id).await?, None);
    let found = store.find_app(&acme.id, &original.client_id).await?;
    assert_eq!(found.map(|f| f.app), Some(original));
    Ok(())
}

pub async fn failed_create_app_writes_nothing(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    let orders = api("https://orders.example/", &["read"])?;
    store.create_api(&acme.id, &orders, &NO_AUDIT).await?;

    // The same API granted twice: the second grant row collides, after the app and its
    // secret were written in the same transaction.
    let doomed = app("doomed")?;
    let twice = [grant(&orders, &["read"])?, grant(&orders, &[])?];
    assert_already_exists(
        store
            .create_app(&acme.id, &doomed, &secret(&doomed), &twice, &NO_AUDIT)
            .await,
        "grant",
    );
    assert_eq!(store.find_app(&acme.id, &doomed.client_id).await?, None);

    // A grant on an API that does not exist.
    let mut dangling = grant(&orders, &["read"])?;
    dangling.api_id = "api_nonexistent".into();
    assert_not_found(
        store
            .create_app(&acme.id, &doomed, &secret(&doomed), &[dangling], &NO_AUDIT)
            .await,
        "api",
    );
    assert_eq!(store.find_app(&acme.id, &doomed.client_id).await?, None);
    assert_eq!(db.count("apps", acme.id.as_str()).await?, 0);
    assert_eq!(db.count("app_secrets", acme.id.as_str()).await?, 0);
    assert_eq!(db.count("grants", acme.id.as_str()).await?, 0);

    // The same app, correctly, goes through: nothing of the failures lingers.
    store
        .create_app(&acme.id, &doomed, &secret(&doomed), &twice[..1], &NO_AUDIT)
        .await?;
    Ok(())
}

pub async fn update_app_replaces_grants_only_when_given(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    let orders = api("https://orders.example/", &["read", "write"])?;
    let billing = api("https://billing.example/", &["invoice"])?;
    store.create_api(&acme.id, &orders, &NO_AUDIT).await?;
    store.create_api(&acme.id, &billing, &NO_AUDIT).await?;
    let mut record = app("client")?;
    let original_grants = vec![grant(&orders, &["read"])?];
    store
        .create_app(
            &acme.id,
            &record,
            &secret(&record),
            &original_grants,
            &NO_AUDIT,
        )
        .await?;

    // Grants untouched when not given.
    record.name = "Renamed".into();
    record.description = "New description".into();
    record.is_blocked = true;
    record.rate_limit_per_second = Some(25);
    record.updated_at += 10;
    store.update_app(&acme.id, &record, None, &NO_AUDIT).await?;
    let found = store.find_app(&acme.id, &record.client_id).await?;
    assert_eq!(found.as_ref().map(|f| &f.app), Some(&record));
    assert_eq!(found.map(|f| f.grants), Some(original_grants));

    // Replaced when given.
    let replacement = vec![grant(&billing, &["invoice"])?, grant(&orders, &["write"])?];
    store
        .update_app(&acme.id, &record, Some(&replacement), &NO_AUDIT)
        .await?;
    let found = store.find_app(&acme.id, &record.client_id).await?;
    assert_eq!(found.map(|f| f.grants), Some(replacement.clone()));

    // Cleared with an empty list.
    store
        .update_app(&acme.id, &record, Some(&[]), &NO_AUDIT)
        .await?;
    let found = store.find_app(&acme.id, &record.client_id).await?;
    assert_eq!(found.map(|f| f.grants), Some(Vec::new()));

    // A failing replacement leaves the previous state, app fields included.
    store
        .update_app(&acme.id, &record, Some(&replacement), &NO_AUDIT)
        .await?;
    let mut bad = grant(&orders, &["read"])?;
    bad.api_id = "api_nonexistent".into();
    let mut changed = record.clone();
    changed.name = "Should not stick".into();
    assert_not_found(
        store
            .update_app(&acme.id, &changed, Some(&[bad]), &NO_AUDIT)
            .await,
        "api",
    );
    let found = store.find_app(&acme.id, &record.client_id).await?;
    assert_eq!(found.as_ref().map(|f| &f.app), Some(&record));
    assert_eq!(found.map(|f| f.grants), Some(replacement));

    let ghost = app("ghost")?;
    assert_not_found(
        store.update_app(&acme.id, &ghost, None, &NO_AUDIT).await,
        "app",
    );
    Ok(())
}

pub async fn tenant_isolation(db: TestDb) -> TestResult {
    let store = &db.store;
    let a = populated("tenant-a")?;
    let b = populated("tenant-b")?;
    store.create_tenant(&a.new, &NO_AUDIT).await?;
    store.create_tenant(&b.new, &NO_AUDIT).await?;
    let ta = &a.new.tenant;
    let tb = &b.new.tenant;
    let a_app = &a.new.apps[0].app;

    // Reads through B do not see A's API or app.
    assert_eq!(store.find_api(&tb.id, &a.orders.identifier).await?, None);
    assert_eq!(store.find_app(&tb.id, &a_app.client_id).await?, None);
    let b_apis = store.list_apis(&tb.id, None, 100).await?;
    assert!(
        b_apis
            .iter()
            .all(|api| api.id != a.orders.id && api.id != a.billing.id)
    );
    assert_eq!(b_apis.len(), 2);
    let b_apps = store.list_apps(&tb.id, None, 100).await?;
    assert_eq!(b_apps.len(), 2);
    assert!(
        b_apps
            .iter()
            .all(|app| !app.app.client_id.as_str().starts_with("tenant-a"))
    );

    // Writes through B do not touch A's rows.
    assert!(
        !store
            .delete_api(&tb.id, &a.orders.identifier, &NO_AUDIT)
            .await?
    );
    assert!(
        !store
            .delete_app(&tb.id, &a_app.client_id, &NO_AUDIT)
            .await?
    );
    let mut renamed_api = a.orders.clone();
    renamed_api.name = "hijacked".into();
    renamed_api.scopes.clear();
    assert_not_found(
        store.update_api(&tb.id, &renamed_api, &NO_AUDIT).await,
        "api",
    );
    let mut renamed_app = a_app.clone();
    renamed_app.name = "hijacked".into();
    assert_not_found(
        store
            .update_app(&tb.id, &renamed_app, Some(&[]), &NO_AUDIT)
            .await,
        "app",
    );

    // B cannot grant its app scopes on A's API.
    let b_app = &b.new.apps[0].app;
    assert_not_found(
        store
            .update_app(
                &tb.id,
                b_app,
                Some(&[grant(&a.orders, &["read"])?]),
                &NO_AUDIT,
            )
            .await,
        "api",
    );
    let intruder = app("intruder")?;
    assert_not_found(
        store
            .create_app(
                &tb.id,
                &intruder,
                &secret(&intruder),
                &[grant(&a.orders, &["read"])?],
                &NO_AUDIT,
            )
            .await,
        "api",
    );
    assert_eq!(store.find_app(&tb.id, &intruder.client_id).await?, None);

    // A's data is intact.
    assert_eq!(
        store.find_api(&ta.id, &a.orders.identifier).await?,
        Some(a.orders.clone())
    );
    let found = store.find_app(&ta.id, &a_app.client_id).await?;
    assert_eq!(found.as_ref().map(|f| &f.app), Some(a_app));
    assert_eq!(
        found.map(|f| f.grants),
        Some(sorted(a.new.apps[0].grants.clone()))
    );
    Ok(())
}

/// Grants in the order the store returns them: by audience.
fn sorted(mut grants: Vec<tollgate_store::GrantRecord>) -> Vec<tollgate_store::GrantRecord> {
    grants.sort_by(|a, b| a.audience.cmp(&b.audience));
    grants
}

pub async fn update_api_prunes_grant_scopes(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    let mut orders = api("https://orders.example/", &["a", "b", "c"])?;
    let other = api("https://other.example/", &["a", "b"])?;
    store.create_api(&acme.id, &orders, &NO_AUDIT).await?;
    store.create_api(&acme.id, &other, &NO_AUDIT).await?;
    let one = app("one")?;
    let two = app("two")?;
    store
        .create_app(
            &acme.id,
            &one,
            &secret(&one),
            &[grant(&orders, &["a", "b"])?, grant(&other, &["a", "b"])?],
            &NO_AUDIT,
        )
        .await?;
    store
        .create_app(
            &acme.id,
            &two,
            &secret(&two),
            &[grant(&orders, &["b"])?],
            &NO_AUDIT,
        )
        .await?;

    // Drop scope b, add d, change everything else that can change.
    orders = api("https://orders.example/", &["a", "c", "d"])?.with_id(orders.id.as_str());
    orders.name = "Orders v2".into();
    orders.token_lifetime = TokenLifetime::from_seconds(60)?;
    orders.signing_alg = Some(Algorithm::EdDsa);
    orders.updated_at += 100;
    store.update_api(&acme.id, &orders, &NO_AUDIT).await?;
    assert_eq!(
        store.find_api(&acme.id, &orders.identifier).await?,
        Some(orders.clone())
    );

    let one_grants = store
        .find_app(&acme.id, &one.client_id)
        .await?
        .map(|f| f.grants);
    assert_eq!(
        one_grants,
        Some(vec![grant(&orders, &["a"])?, grant(&other, &["a", "b"])?])
    );
    // A grant left without scopes stays: the app still holds the API.
    let two_grants = store
        .find_app(&acme.id, &two.client_id)
        .await?
        .map(|f| f.grants);
    assert_eq!(two_grants, Some(vec![grant(&orders, &[])?]));

    let ghost = api("https://ghost.example/", &[])?;
    assert_not_found(store.update_api(&acme.id, &ghost, &NO_AUDIT).await, "api");
    Ok(())
}

/// Lets a case rebuild a record while keeping the id it was stored under.
trait WithId {
    fn with_id(self, id: &str) -> Self;
}

impl WithId for tollgate_store::ApiRecord {
    fn with_id(mut self, id: &str) -> Self {
        self.id = id.into();
        self
    }
}

pub async fn delete_api_removes_its_grants(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    let tenant = &p.new.tenant;
    assert_eq!(db.count("grants", tenant.id.as_str()).await?, 3);

    assert!(
        store
            .delete_api(&tenant.id, &p.orders.identifier, &NO_AUDIT)
            .await?
    );
    assert!(
        !store
            .delete_api(&tenant.id, &p.orders.identifier, &NO_AUDIT)
            .await?
    );
    assert_eq!(
        store.find_api(&tenant.id, &p.orders.identifier).await?,
        None
    );
    assert_eq!(db.count("apis", tenant.id.as_str()).await?, 1);
    // Only the billing grant of the first app is left; both apps remain.
    assert_eq!(db.count("grants", tenant.id.as_str()).await?, 1);
    let apps = store.list_apps(&tenant.id, None, 10).await?;
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].grants, vec![grant(&p.billing, &["invoice"])?]);
    assert!(apps[1].grants.is_empty());
    Ok(())
}

pub async fn delete_app_removes_secrets_and_grants(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    let tenant = &p.new.tenant;
    let first = &p.new.apps[0].app;

    assert!(
        store
            .delete_app(&tenant.id, &first.client_id, &NO_AUDIT)
            .await?
    );
    assert!(
        !store
            .delete_app(&tenant.id, &first.client_id, &NO_AUDIT)
            .await?
    );
    assert_eq!(store.find_app(&tenant.id, &first.client_id).await?, None);
    assert_eq!(db.count("apps", tenant.id.as_str()).await?, 1);
    assert_eq!(db.count("app_secrets", tenant.id.as_str()).await?, 1);
    assert_eq!(db.count("grants", tenant.id.as_str()).await?, 1);
    // The client id is free again.
    let again = app(first.client_id.as_str())?;
    store
        .create_app(&tenant.id, &again, &secret(&again), &[], &NO_AUDIT)
        .await?;
    Ok(())
}

pub async fn delete_tenant_leaves_no_rows(db: TestDb) -> TestResult {
    let store = &db.store;
    let doomed = populated("doomed")?;
    let kept = populated("kept")?;
    store.create_tenant(&doomed.new, &NO_AUDIT).await?;
    store.create_tenant(&kept.new, &NO_AUDIT).await?;
    let extra = fixtures::key(Algorithm::EdDsa, 30);
    store
        .add_signing_key(&doomed.new.tenant.id, &extra, &NO_AUDIT)
        .await?;
    for p in [&doomed, &kept] {
        let revocation = revocation(
            p.new.tenant.id.as_str(),
            RevocationTarget::Tenant,
            100,
            5_000,
        );
        store
            .add_revocation(
                &p.new.tenant.id,
                &fixtures::id("rev"),
                &revocation,
                100,
                &NO_AUDIT,
            )
            .await?;
    }

    let before = db.counts(doomed.new.tenant.id.as_str()).await?;
    assert!(before.iter().all(|(_, count)| *count > 0), "{before:?}");
    let kept_before = db.counts(kept.new.tenant.id.as_str()).await?;

    assert!(
        store
            .delete_tenant(&doomed.new.tenant.name, &NO_AUDIT)
            .await?
    );
    assert!(
        !store
            .delete_tenant(&doomed.new.tenant.name, &NO_AUDIT)
            .await?
    );
    assert_eq!(store.find_tenant(&doomed.new.tenant.name).await?, None);
    for (table, count) in db.counts(doomed.new.tenant.id.as_str()).await? {
        assert_eq!(count, 0, "{table} kept rows of the deleted tenant");
    }
    assert_eq!(db.counts(kept.new.tenant.id.as_str()).await?, kept_before);
    assert_eq!(TENANT_TABLES.len(), kept_before.len());

    // The name and client ids are free again.
    let again = populated("doomed")?;
    store.create_tenant(&again.new, &NO_AUDIT).await?;
    Ok(())
}

pub async fn snapshot_content(db: TestDb) -> TestResult {
    let store = &db.store;
    let mut p = populated("acme")?;
    // Dates of every kind, to see them all come back.
    p.new.keys[1].activate_at = 25;
    p.new.keys[1].retire_at = Some(1_000);
    p.new.keys[1].remove_at = Some(2_000);
    p.new.apps[0].secret.last_used_at = Some(1_700_000_400);
    p.new.apps[1].secret.expires_at = None;
    p.new.apps[1].app.rate_limit_per_second = Some(7);
    let other = populated("other")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    store.create_tenant(&other.new, &NO_AUDIT).await?;
    let tenant = &p.new.tenant;
    let later = app("acme-later")?;
    let later_secret = secret(&later);
    store
        .create_app(
            &tenant.id,
            &later,
            &later_secret,
            &[grant(&p.billing, &["invoice"])?],
            &NO_AUDIT,
        )
        .await?;

    let snapshot = store
        .load_tenant_snapshot(&tenant.name)
        .await?
        .ok_or("no snapshot")?;
    assert_eq!(&snapshot.tenant, tenant);

    let mut apis = p.new.apis.clone();
    apis.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    assert_eq!(snapshot.apis, apis);

    let mut apps: Vec<tollgate_store::AppWithGrants> = p
        .new
        .apps
        .iter()
        .map(|new_app| tollgate_store::AppWithGrants {
            app: new_app.app.clone(),
            grants: sorted(new_app.grants.clone()),
        })
        .collect();
    apps.push(tollgate_store::AppWithGrants {
        app: later.clone(),
        grants: vec![grant(&p.billing, &["invoice"])?],
    });
    apps.sort_by(|a, b| a.app.client_id.cmp(&b.app.client_id));
    assert_eq!(snapshot.apps, apps);

    let mut secrets: Vec<_> = p.new.apps.iter().map(|a| a.secret.clone()).collect();
    secrets.push(later_secret);
    secrets.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    assert_eq!(snapshot.secrets, secrets);

    assert_eq!(snapshot.keys, p.new.keys);

    assert!(
        store
            .load_tenant_snapshot(&TenantName::parse("nobody")?)
            .await?
            .is_none()
    );
    Ok(())
}

pub async fn signing_keys_round_trip(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let first = key(Algorithm::Es256, 100);
    store
        .create_tenant(
            &NewTenant {
                keys: vec![first.clone()],
                ..new_tenant(&acme)
            },
            &NO_AUDIT,
        )
        .await?;
    let mut newer = key(Algorithm::Rs256, 200);
    newer.activate_at = 260;
    let mut older = key(Algorithm::EdDsa, 50);
    older.activate_at = 0;
    older.retire_at = Some(260);
    older.remove_at = Some(1_260);
    store.add_signing_key(&acme.id, &newer, &NO_AUDIT).await?;
    store.add_signing_key(&acme.id, &older, &NO_AUDIT).await?;
    let mut dup = key(Algorithm::Es256, 300);
    dup.kid = first.kid.clone();
    assert_already_exists(
        store.add_signing_key(&acme.id, &dup, &NO_AUDIT).await,
        "signing key",
    );

    let snapshot = store
        .load_tenant_snapshot(&acme.name)
        .await?
        .ok_or("no snapshot")?;
    // Oldest first, bytes exact, dates kept.
    assert_eq!(
        snapshot.keys,
        vec![older.clone(), first.clone(), newer.clone()]
    );
    assert_eq!(snapshot.keys[0].private_key_sealed.len(), 512);
    // Listed newest first.
    assert_eq!(
        store.list_signing_keys(&acme.id).await?,
        vec![newer, first, older]
    );
    let other = tenant("other")?;
    store.create_tenant(&new_tenant(&other), &NO_AUDIT).await?;
    assert!(store.list_signing_keys(&other.id).await?.is_empty());
    Ok(())
}

pub async fn concurrent_writes_and_reads(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("busy")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    let tenant = p.new.tenant.clone();

    // Writers and readers at once: on SQLite they contend for the one write lock, which
    // must be waited for (busy timeout, write-first transactions), never reported.
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..16 {
        let (store, tenant, orders) = (store.clone(), tenant.clone(), p.orders.clone());
        tasks.spawn(async move {
            let record = app(&format!("worker-{index:02}"))?;
            let grants = [grant(&orders, &["read"])?];
            store
                .create_app(&tenant.id, &record, &secret(&record), &grants, &NO_AUDIT)
                .await?;
            let mut renamed = record.clone();
            renamed.name = format!("Worker {index}");
            store
                .update_app(&tenant.id, &renamed, Some(&grants), &NO_AUDIT)
                .await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    for round in 0..4 {
        let (store, tenant, mut orders) = (store.clone(), tenant.clone(), p.orders.clone());
        tasks.spawn(async move {
            orders.name = format!("Orders round {round}");
            store.update_api(&tenant.id, &orders, &NO_AUDIT).await?;
            let snapshot = store.load_tenant_snapshot(&tenant.name).await?;
            assert!(snapshot.is_some());
            Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    assert_eq!(store.list_apps(&tenant.id, None, 100).await?.len(), 18);
    assert_eq!(db.count("grants", tenant.id.as_str()).await?, 3 + 16);
    Ok(())
}

// ---- Access lifecycle: secrets, key rotation, revocations, the change log, the upgrade. ----

/// The case's store reading a clock the case moves.
fn clocked(db: &TestDb, now: UnixTime) -> (Store, ManualClock) {
    let clock = ManualClock::new(now);
    let store = db.store.clone().with_clock(Arc::new(clock.clone()));
    (store, clock)
}

/// The tenant as stored now.
async fn reload(store: &Store, tenant: &TenantRecord) -> Result<TenantRecord, StoreError> {
    store
        .find_tenant(&tenant.name)
        .await?
        .ok_or(StoreError::NotFound { entity: "tenant" })
}

pub async fn secrets_list_add_expire(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    let other = populated("other")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    store.create_tenant(&other.new, &NO_AUDIT).await?;
    let tenant = &p.new.tenant;
    let first = &p.new.apps[0].app;
    let second = &p.new.apps[1].app;
    let mut s1 = p.new.apps[0].secret.clone();
    assert_eq!(
        store.list_secrets(&tenant.id, &first.id).await?,
        vec![s1.clone()]
    );

    // Rotation: a new secret, and the old one ends at the end of the overlap.
    let mut s2 = SecretRecord {
        created_at: s1.created_at + 100,
        expires_at: None,
        ..secret(first)
    };
    store
        .add_secret(
            &tenant.id,
            &first.id,
            &s2,
            &[(s1.id.clone(), 1_750_000_000)],
            &NO_AUDIT,
        )
        .await?;
    s1.expires_at = Some(1_750_000_000);
    assert_eq!(
        store.list_secrets(&tenant.id, &first.id).await?,
        vec![s2.clone(), s1.clone()]
    );
    // Setting an expiry in add_secret sets exactly that value, later or not.
    store
        .add_secret(
            &tenant.id,
            &first.id,
            &SecretRecord {
                created_at: s1.created_at + 200,
                ..secret(first)
            },
            &[(s1.id.clone(), 1_760_000_000)],
            &NO_AUDIT,
        )
        .await?;
    s1.expires_at = Some(1_760_000_000);
    let listed = store.list_secrets(&tenant.id, &first.id).await?;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], s1);

    // Expiring a secret of another app, a missing one, or through another tenant: NotFound,
    // and the new secret is not written either.
    let before = db.count("app_secrets", tenant.id.as_str()).await?;
    let changes = db.changes(tenant.name.as_str()).await?;
    let second_secret = &p.new.apps[1].secret;
    for ids in [
        vec![(second_secret.id.clone(), 1)],
        vec![(s1.id.clone(), 1), ("sid_missing".into(), 1)],
        vec![(other.new.apps[0].secret.id.clone(), 1)],
    ] {
        assert_not_found(
            store
                .add_secret(&tenant.id, &first.id, &secret(first), &ids, &NO_AUDIT)
                .await,
            "secret",
        );
    }
    // A taken id, and an app of another tenant.
    let mut taken = secret(first);
    taken.id = second_secret.id.clone();
    assert_already_exists(
        store
            .add_secret(&tenant.id, &first.id, &taken, &[], &NO_AUDIT)
            .await,
        "secret",
    );
    assert_not_found(
        store
            .add_secret(
                &tenant.id,
                &other.new.apps[0].app.id,
                &secret(first),
                &[],
                &NO_AUDIT,
            )
            .await,
        "app",
    );
    assert_eq!(db.count("app_secrets", tenant.id.as_str()).await?, before);
    assert_eq!(db.changes(tenant.name.as_str()).await?, changes);
    assert_eq!(listed, store.list_secrets(&tenant.id, &first.id).await?);
    assert_eq!(listed[2], s1);

    // expire_secret only ever brings the end forward.
    assert!(
        store
            .expire_secret(&tenant.id, &first.id, &s2.id, 1_770_000_000, &NO_AUDIT)
            .await?
    );
    s2.expires_at = Some(1_770_000_000);
    assert!(
        store
            .expire_secret(&tenant.id, &first.id, &s2.id, 1_780_000_000, &NO_AUDIT)
            .await?
    );
    assert!(
        store
            .expire_secret(&tenant.id, &first.id, &s2.id, 1_765_000_000, &NO_AUDIT)
            .await?
    );
    s2.expires_at = Some(1_765_000_000);
    let listed = store.list_secrets(&tenant.id, &first.id).await?;
    assert_eq!(listed.iter().find(|s| s.id == s2.id), Some(&s2));

    // Not this app's, not this tenant's, or not at all: false, nothing changed.
    assert!(
        !store
            .expire_secret(&tenant.id, &second.id, &s2.id, 1, &NO_AUDIT)
            .await?
    );
    assert!(
        !store
            .expire_secret(&other.new.tenant.id, &first.id, &s2.id, 1, &NO_AUDIT)
            .await?
    );
    assert!(
        !store
            .expire_secret(&tenant.id, &first.id, &"sid_missing".into(), 1, &NO_AUDIT)
            .await?
    );
    assert_eq!(store.list_secrets(&tenant.id, &first.id).await?, listed);
    assert_eq!(
        store.list_secrets(&tenant.id, &second.id).await?,
        vec![second_secret.clone()]
    );
    // Listing through another tenant shows nothing.
    assert!(
        store
            .list_secrets(&other.new.tenant.id, &first.id)
            .await?
            .is_empty()
    );
    Ok(())
}

pub async fn touch_secrets_keeps_the_latest_use(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    let other = populated("other")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    store.create_tenant(&other.new, &NO_AUDIT).await?;
    let tenant = &p.new.tenant;
    let s1 = &p.new.apps[0].secret;
    let s2 = &p.new.apps[1].secret;
    let changes = db.changes(tenant.name.as_str()).await?;

    store.touch_secrets(&[]).await?;
    let use_of = |tenant: &TenantRecord, secret: &SecretRecord, at: UnixTime| {
        (tenant.id.clone(), secret.id.clone(), at)
    };
    store
        .touch_secrets(&[
            use_of(tenant, s1, 100),
            use_of(tenant, s1, 300),
            use_of(tenant, s1, 200),
            use_of(tenant, s2, 50),
            // Another tenant's id with this secret: no effect.
            use_of(&other.new.tenant, s1, 999),
            ("ten_missing".into(), "sid_missing".into(), 1),
        ])
        .await?;
    let last_used = |secrets: Vec<SecretRecord>| -> Vec<(SecretId, Option<UnixTime>)> {
        secrets
            .into_iter()
            .map(|s| (s.id, s.last_used_at))
            .collect()
    };
    let snapshot = store
        .load_tenant_snapshot(&tenant.name)
        .await?
        .ok_or("no snapshot")?;
    let mut expected = vec![(s1.id.clone(), Some(300)), (s2.id.clone(), Some(50))];
    expected.sort();
    let mut found = last_used(snapshot.secrets);
    found.sort();
    assert_eq!(found, expected);

    // An older use flushed late does not move it back; a newer one does.
    store
        .touch_secrets(&[use_of(tenant, s1, 250), use_of(tenant, s2, 60)])
        .await?;
    let first = store
        .list_secrets(&tenant.id, &p.new.apps[0].app.id)
        .await?;
    let second = store
        .list_secrets(&tenant.id, &p.new.apps[1].app.id)
        .await?;
    assert_eq!(last_used(first), vec![(s1.id.clone(), Some(300))]);
    assert_eq!(last_used(second), vec![(s2.id.clone(), Some(60))]);

    // The other tenant's secrets were not touched, and no configuration change was logged.
    let others = store
        .load_tenant_snapshot(&other.new.tenant.name)
        .await?
        .ok_or("no snapshot")?;
    assert!(others.secrets.iter().all(|s| s.last_used_at.is_none()));
    assert_eq!(db.changes(tenant.name.as_str()).await?, changes);
    Ok(())
}

pub async fn rotation_compare_and_set(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let k1 = key(Algorithm::Es256, 100);
    store
        .create_tenant(
            &NewTenant {
                keys: vec![k1.clone()],
                ..new_tenant(&acme)
            },
            &NO_AUDIT,
        )
        .await?;
    assert_eq!(reload(store, &acme).await?.keys_rotated_at, None);

    // A value where there is NULL does not match.
    let k2 = SigningKeyRecord {
        activate_at: 1_100,
        ..key(Algorithm::Es256, 1_000)
    };
    assert!(
        !store
            .rotate_signing_keys(
                &acme.id,
                Some(Some(0)),
                1_000,
                std::slice::from_ref(&k2),
                &[],
                &NO_AUDIT
            )
            .await?
    );
    assert_eq!(store.list_signing_keys(&acme.id).await?, vec![k1.clone()]);

    // Never rotated: Some(None) matches.
    let retire_k1 = (k1.kid.clone(), 1_100, 2_000);
    assert!(
        store
            .rotate_signing_keys(
                &acme.id,
                Some(None),
                1_000,
                std::slice::from_ref(&k2),
                std::slice::from_ref(&retire_k1),
                &NO_AUDIT,
            )
            .await?
    );
    assert_eq!(reload(store, &acme).await?.keys_rotated_at, Some(1_000));
    let k1_retired = SigningKeyRecord {
        retire_at: Some(1_100),
        remove_at: Some(2_000),
        ..k1.clone()
    };
    assert_eq!(
        store.list_signing_keys(&acme.id).await?,
        vec![k2.clone(), k1_retired.clone()]
    );

    // Stale expectations: NULL, or another time.
    for stale in [None, Some(999)] {
        assert!(
            !store
                .rotate_signing_keys(
                    &acme.id,
                    Some(stale),
                    5_000,
                    &[key(Algorithm::Es256, 5_000)],
                    &[],
                    &NO_AUDIT
                )
                .await?
        );
    }
    assert_eq!(store.list_signing_keys(&acme.id).await?.len(), 2);
    assert_eq!(reload(store, &acme).await?.keys_rotated_at, Some(1_000));

    // The current value matches.
    let k3 = key(Algorithm::EdDsa, 2_000);
    assert!(
        store
            .rotate_signing_keys(
                &acme.id,
                Some(Some(1_000)),
                2_000,
                std::slice::from_ref(&k3),
                &[(k2.kid.clone(), 2_100, 3_000)],
                &NO_AUDIT,
            )
            .await?
    );
    assert_eq!(reload(store, &acme).await?.keys_rotated_at, Some(2_000));

    // Unconditional (a manual rotation), with nothing else to do.
    assert!(
        store
            .rotate_signing_keys(&acme.id, None, 2_500, &[], &[], &NO_AUDIT)
            .await?
    );
    assert_eq!(reload(store, &acme).await?.keys_rotated_at, Some(2_500));

    let listed = store.list_signing_keys(&acme.id).await?;
    let dates: Vec<_> = listed
        .iter()
        .map(|k| (k.kid.as_str(), k.activate_at, k.retire_at, k.remove_at))
        .collect();
    assert_eq!(
        dates,
        vec![
            (k3.kid.as_str(), 2_000, None, None),
            (k2.kid.as_str(), 1_100, Some(2_100), Some(3_000)),
            (k1.kid.as_str(), 100, Some(1_100), Some(2_000)),
        ]
    );
    // The snapshot sees the same keys and dates, oldest first.
    let snapshot = store
        .load_tenant_snapshot(&acme.name)
        .await?
        .ok_or("no snapshot")?;
    assert_eq!(snapshot.keys, listed.into_iter().rev().collect::<Vec<_>>());
    Ok(())
}

pub async fn concurrent_rotations_one_wins(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let first = key(Algorithm::Es256, 1);
    store
        .create_tenant(
            &NewTenant {
                keys: vec![first.clone()],
                ..new_tenant(&acme)
            },
            &NO_AUDIT,
        )
        .await?;
    let mut signing = first;

    // Two instances, same expectation, at the same moment: exactly one rotates.
    for round in 0..4i64 {
        let expected = reload(store, &acme).await?.keys_rotated_at;
        let at = 1_000 * (round + 1);
        let (a_key, b_key) = (key(Algorithm::Es256, at), key(Algorithm::Es256, at));
        let retire = [(signing.kid.clone(), at + 100, at + 900)];
        let (a, b) = tokio::join!(
            store.rotate_signing_keys(
                &acme.id,
                Some(expected),
                at,
                std::slice::from_ref(&a_key),
                &retire,
                &NO_AUDIT
            ),
            store.rotate_signing_keys(
                &acme.id,
                Some(expected),
                at + 1,
                std::slice::from_ref(&b_key),
                &retire,
                &NO_AUDIT
            ),
        );
        let (a, b) = (a?, b?);
        assert!(a != b, "round {round}: a={a} b={b}");
        let (winner, loser, rotated_at) = if a {
            (a_key, b_key, at)
        } else {
            (b_key, a_key, at + 1)
        };
        assert_eq!(
            reload(store, &acme).await?.keys_rotated_at,
            Some(rotated_at)
        );
        let kids: Vec<KeyId> = store
            .list_signing_keys(&acme.id)
            .await?
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert!(kids.contains(&winner.kid) && !kids.contains(&loser.kid));
        signing = winner;
    }

    // Eight at once, as separate tasks on the multi-threaded runtime: still exactly one.
    let expected = reload(store, &acme).await?.keys_rotated_at;
    let mut tasks = tokio::task::JoinSet::new();
    for contender in 0..8i64 {
        let (store, acme) = (store.clone(), acme.clone());
        tasks.spawn(async move {
            let new_key = key(Algorithm::Es256, 10_000);
            store
                .rotate_signing_keys(
                    &acme.id,
                    Some(expected),
                    10_000 + contender,
                    &[new_key],
                    &[],
                    &NO_AUDIT,
                )
                .await
        });
    }
    let mut winners = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined?? {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);

    // One key from creation, one per winning rotation; one change per write that happened.
    assert_eq!(db.count("signing_keys", acme.id.as_str()).await?, 1 + 4 + 1);
    assert_eq!(db.changes(acme.name.as_str()).await?, 1 + 4 + 1);
    Ok(())
}

pub async fn rotation_failures_write_nothing(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let other = tenant("other")?;
    let k1 = key(Algorithm::Es256, 100);
    let other_key = key(Algorithm::Es256, 100);
    store
        .create_tenant(
            &NewTenant {
                keys: vec![k1.clone()],
                ..new_tenant(&acme)
            },
            &NO_AUDIT,
        )
        .await?;
    store
        .create_tenant(
            &NewTenant {
                keys: vec![other_key.clone()],
                ..new_tenant(&other)
            },
            &NO_AUDIT,
        )
        .await?;
    let changes = db.changes(acme.name.as_str()).await?;

    // Retiring a key the tenant does not have (another tenant's, or none at all).
    for kid in [other_key.kid.as_str(), "kid_missing"] {
        assert_not_found(
            store
                .rotate_signing_keys(
                    &acme.id,
                    Some(None),
                    1_000,
                    &[key(Algorithm::Es256, 1_000)],
                    &[(kid.into(), 1, 2)],
                    &NO_AUDIT,
                )
                .await,
            "signing key",
        );
    }
    // A new key whose kid is taken (here, by another tenant).
    let mut taken = key(Algorithm::Es256, 1_000);
    taken.kid = other_key.kid.clone();
    assert_already_exists(
        store
            .rotate_signing_keys(&acme.id, None, 1_000, &[taken], &[], &NO_AUDIT)
            .await,
        "signing key",
    );
    assert_eq!(reload(store, &acme).await?.keys_rotated_at, None);
    assert_eq!(store.list_signing_keys(&acme.id).await?, vec![k1]);
    assert_eq!(store.list_signing_keys(&other.id).await?, vec![other_key]);
    assert_eq!(db.changes(acme.name.as_str()).await?, changes);

    // A tenant that does not exist: nothing to compare with, nothing to set.
    let ghost = tenant("ghost")?;
    assert!(
        !store
            .rotate_signing_keys(&ghost.id, Some(None), 1, &[], &[], &NO_AUDIT)
            .await?
    );
    assert_not_found(
        store
            .rotate_signing_keys(&ghost.id, None, 1, &[], &[], &NO_AUDIT)
            .await,
        "tenant",
    );
    assert_eq!(db.changes("ghost").await?, 0);
    Ok(())
}

pub async fn tenants_due_for_rotation_order(db: TestDb) -> TestResult {
    let store = &db.store;
    // (name, created_at, keys_rotated_at)
    let specs: [(&str, UnixTime, Option<UnixTime>); 6] = [
        ("a", 100, None),
        ("b", 50, Some(300)),
        ("c", 200, None),
        ("d", 10, Some(1_000)),
        ("e", 400, Some(200)),
        ("f", 250, None),
    ];
    let mut tenants = Vec::new();
    for (name, created_at, keys_rotated_at) in specs {
        let record = TenantRecord {
            created_at,
            updated_at: created_at,
            keys_rotated_at,
            ..tenant(name)?
        };
        store.create_tenant(&new_tenant(&record), &NO_AUDIT).await?;
        tenants.push(record);
    }
    let due = |before: UnixTime, limit: u64| async move {
        let found = store.tenants_due_for_rotation(before, limit).await?;
        Ok::<_, StoreError>(
            found
                .into_iter()
                .map(|t| t.name.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
    };

    // By last rotation (or creation), then name; `before` inclusive.
    assert_eq!(due(500, 100).await?, ["a", "c", "e", "f", "b"]);
    assert_eq!(due(300, 100).await?, ["a", "c", "e", "f", "b"]);
    assert_eq!(due(299, 100).await?, ["a", "c", "e", "f"]);
    assert_eq!(due(500, 2).await?, ["a", "c"]);
    assert_eq!(due(99, 100).await?, Vec::<String>::new());
    assert_eq!(due(2_000, u64::MAX).await?.len(), 6);
    assert_eq!(due(2_000, 0).await?, Vec::<String>::new());
    // Full records come back.
    let found = store.tenants_due_for_rotation(100, 1).await?;
    assert_eq!(found, tenants[..1].to_vec());

    // Rotating "a" moves it behind the others.
    assert!(
        store
            .rotate_signing_keys(&tenants[0].id, Some(None), 450, &[], &[], &NO_AUDIT)
            .await?
    );
    assert_eq!(due(500, 100).await?, ["c", "e", "f", "b", "a"]);
    Ok(())
}

pub async fn delete_removed_keys(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let other = tenant("other")?;
    let with_removal = |remove_at: Option<UnixTime>| SigningKeyRecord {
        retire_at: remove_at.map(|at| at - 10),
        remove_at,
        ..key(Algorithm::Es256, 1)
    };
    let (k100, k200, kept) = (
        with_removal(Some(100)),
        with_removal(Some(200)),
        with_removal(None),
    );
    store
        .create_tenant(
            &NewTenant {
                keys: vec![k100.clone(), k200.clone(), kept.clone()],
                ..new_tenant(&acme)
            },
            &NO_AUDIT,
        )
        .await?;
    let other_key = with_removal(Some(50));
    store
        .create_tenant(
            &NewTenant {
                keys: vec![other_key.clone()],
                ..new_tenant(&other)
            },
            &NO_AUDIT,
        )
        .await?;
    let changes = db.changes(acme.name.as_str()).await?;

    assert_eq!(store.delete_removed_keys(&acme.id, 99, &NO_AUDIT).await?, 0);
    assert_eq!(db.changes(acme.name.as_str()).await?, changes);
    assert_eq!(
        store.delete_removed_keys(&acme.id, 100, &NO_AUDIT).await?,
        1
    );
    assert_eq!(db.changes(acme.name.as_str()).await?, changes + 1);
    assert_eq!(
        store
            .delete_removed_keys(&acme.id, 10_000, &NO_AUDIT)
            .await?,
        1
    );
    assert_eq!(
        store
            .delete_removed_keys(&acme.id, i64::MAX, &NO_AUDIT)
            .await?,
        0
    );
    assert_eq!(store.list_signing_keys(&acme.id).await?, vec![kept]);
    // The other tenant's key, long due, is not acme's to delete.
    assert_eq!(store.list_signing_keys(&other.id).await?, vec![other_key]);
    assert_eq!(
        store.delete_removed_keys(&other.id, 50, &NO_AUDIT).await?,
        1
    );
    Ok(())
}

pub async fn revocations_live_matching_purge(db: TestDb) -> TestResult {
    let store = &db.store;
    let a = tenant("tenant-a")?;
    let b = tenant("tenant-b")?;
    store.create_tenant(&new_tenant(&a), &NO_AUDIT).await?;
    store.create_tenant(&new_tenant(&b), &NO_AUDIT).await?;
    let a_jti = revocation(a.id.as_str(), RevocationTarget::Token("j1".into()), 10, 200);
    let a_sid = revocation(
        a.id.as_str(),
        RevocationTarget::Secret("s1".into()),
        20,
        300,
    );
    let a_app = revocation(a.id.as_str(), RevocationTarget::App("c1".into()), 30, 400);
    let a_all = revocation(a.id.as_str(), RevocationTarget::Tenant, 40, 500);
    let b_jti = revocation(b.id.as_str(), RevocationTarget::Token("j1".into()), 50, 250);
    let changes = db.changes(a.name.as_str()).await?;
    for (tenant, revocation) in [
        (&a, &a_jti),
        (&a, &a_sid),
        (&a, &a_app),
        (&a, &a_all),
        (&b, &b_jti),
    ] {
        store
            .add_revocation(&tenant.id, &fixtures::id("rev"), revocation, 5, &NO_AUDIT)
            .await?;
    }
    // Revocations are not configuration.
    assert_eq!(db.changes(a.name.as_str()).await?, changes);

    // Through the wrong tenant, for a tenant that does not exist, or with a taken id.
    assert_not_found(
        store
            .add_revocation(&a.id, &fixtures::id("rev"), &b_jti, 5, &NO_AUDIT)
            .await,
        "tenant",
    );
    let ghost = tenant("ghost")?;
    let ghostly = revocation(ghost.id.as_str(), RevocationTarget::Tenant, 1, 2);
    assert_not_found(
        store
            .add_revocation(&ghost.id, &fixtures::id("rev"), &ghostly, 5, &NO_AUDIT)
            .await,
        "tenant",
    );
    store
        .add_revocation(&a.id, "rev_fixed", &a_jti, 5, &NO_AUDIT)
        .await?;
    assert_already_exists(
        store
            .add_revocation(&a.id, "rev_fixed", &a_sid, 5, &NO_AUDIT)
            .await,
        "revocation",
    );
    assert_eq!(db.count("revocations", a.id.as_str()).await?, 5);

    // Live: expires_at strictly after now, every tenant.
    let sorted = |mut revocations: Vec<Revocation>| {
        revocations.sort_by_key(|r| (r.tenant_id.clone(), r.revoked_at, r.expires_at));
        revocations
    };
    let mut everything = vec![
        a_jti.clone(),
        a_jti.clone(),
        a_sid.clone(),
        a_app.clone(),
        a_all.clone(),
        b_jti.clone(),
    ];
    assert_eq!(
        sorted(store.live_revocations(100).await?),
        sorted(everything.clone())
    );
    everything.retain(|r| r.expires_at > 200);
    assert_eq!(
        sorted(store.live_revocations(200).await?),
        sorted(everything)
    );
    assert!(store.live_revocations(500).await?.is_empty());

    // Matching: one tenant, the token's jti, sid and client, and the tenant-wide ones.
    let matching = |tenant: &TenantRecord, jti: &str, sid: &str, client: &str, now| {
        let (store, tenant_id) = (store.clone(), tenant.id.clone());
        let (jti, sid, client) = (jti.to_owned(), sid.to_owned(), client.to_owned());
        async move {
            let found = store
                .matching_revocations(&tenant_id, &jti, &sid, &client, now)
                .await?;
            Ok::<_, StoreError>(sorted(found))
        }
    };
    assert_eq!(
        matching(&a, "j1", "s1", "c1", 100).await?,
        sorted(vec![
            a_jti.clone(),
            a_jti.clone(),
            a_sid.clone(),
            a_app.clone(),
            a_all.clone()
        ])
    );
    assert_eq!(
        matching(&a, "j2", "s2", "c2", 100).await?,
        vec![a_all.clone()]
    );
    // A kind never matches another kind's subject.
    assert_eq!(
        matching(&a, "s1", "c1", "j1", 100).await?,
        vec![a_all.clone()]
    );
    assert_eq!(
        matching(&a, "j1", "s1", "c1", 350).await?,
        vec![a_app.clone(), a_all.clone()]
    );
    assert_eq!(
        matching(&b, "j1", "s1", "c1", 100).await?,
        vec![b_jti.clone()]
    );
    assert_eq!(matching(&b, "j1", "s1", "c1", 250).await?, Vec::new());
    assert_eq!(matching(&ghost, "j1", "s1", "c1", 0).await?, Vec::new());

    // Purge: expires_at at or before now.
    assert_eq!(store.purge_expired_revocations(199).await?, 0);
    assert_eq!(store.purge_expired_revocations(250).await?, 3);
    assert_eq!(
        sorted(store.live_revocations(0).await?),
        sorted(vec![a_sid, a_app, a_all])
    );
    assert_eq!(store.purge_expired_revocations(i64::MAX).await?, 3);
    assert!(store.live_revocations(i64::MIN).await?.is_empty());
    Ok(())
}

pub async fn revocations_on_delete(db: TestDb) -> TestResult {
    let store = &db.store;
    let doomed = populated("doomed")?;
    let kept = populated("kept")?;
    store.create_tenant(&doomed.new, &NO_AUDIT).await?;
    store.create_tenant(&kept.new, &NO_AUDIT).await?;
    let app = &kept.new.apps[0].app;
    let of_app = revocation(
        kept.new.tenant.id.as_str(),
        RevocationTarget::App(app.client_id.as_str().to_owned()),
        10,
        1_000,
    );
    store
        .add_revocation(
            &kept.new.tenant.id,
            &fixtures::id("rev"),
            &of_app,
            10,
            &NO_AUDIT,
        )
        .await?;
    let of_tenant = revocation(
        doomed.new.tenant.id.as_str(),
        RevocationTarget::Tenant,
        10,
        1_000,
    );
    store
        .add_revocation(
            &doomed.new.tenant.id,
            &fixtures::id("rev"),
            &of_tenant,
            10,
            &NO_AUDIT,
        )
        .await?;

    // Deleting an app keeps its revocations until they expire.
    assert!(
        store
            .delete_app(&kept.new.tenant.id, &app.client_id, &NO_AUDIT)
            .await?
    );
    assert_eq!(
        store
            .matching_revocations(&kept.new.tenant.id, "j", "s", app.client_id.as_str(), 0)
            .await?,
        vec![of_app.clone()]
    );
    // Deleting a tenant deletes its revocations (its id is never used again).
    assert!(
        store
            .delete_tenant(&doomed.new.tenant.name, &NO_AUDIT)
            .await?
    );
    assert_eq!(
        db.count("revocations", doomed.new.tenant.id.as_str())
            .await?,
        0
    );
    assert_eq!(store.live_revocations(0).await?, vec![of_app]);
    Ok(())
}

pub async fn change_log_rows_per_write(db: TestDb) -> TestResult {
    let (store, clock) = clocked(&db, 1_000);
    let store = &store;
    let name = "acme";
    let p = populated(name)?;
    let tenant = &p.new.tenant;
    let mut expected = 0;
    // Each step: the write, and whether it must log a change.
    macro_rules! step {
        ($logs:expr, $write:expr) => {{
            let result = $write;
            if $logs {
                expected += 1;
            }
            assert_eq!(
                db.changes(name).await?,
                expected,
                "after {}",
                stringify!($write)
            );
            result
        }};
    }

    step!(true, store.create_tenant(&p.new, &NO_AUDIT).await?);
    let mut renamed = tenant.clone();
    renamed.display_name = "Renamed".into();
    step!(true, store.update_tenant(&renamed, &NO_AUDIT).await?);

    let extra_api = api("https://acme.example/extra", &["x"])?;
    step!(
        true,
        store.create_api(&tenant.id, &extra_api, &NO_AUDIT).await?
    );
    step!(
        true,
        store.update_api(&tenant.id, &extra_api, &NO_AUDIT).await?
    );
    step!(
        true,
        assert!(
            store
                .delete_api(&tenant.id, &extra_api.identifier, &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        assert!(
            !store
                .delete_api(&tenant.id, &extra_api.identifier, &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        assert_already_exists(
            store.create_api(&tenant.id, &p.orders, &NO_AUDIT).await,
            "api"
        )
    );
    step!(
        false,
        assert_not_found(
            store.update_api(&tenant.id, &extra_api, &NO_AUDIT).await,
            "api"
        )
    );

    let extra_app = app("acme-extra")?;
    step!(
        true,
        store
            .create_app(&tenant.id, &extra_app, &secret(&extra_app), &[], &NO_AUDIT)
            .await?
    );
    step!(
        true,
        store
            .update_app(&tenant.id, &extra_app, None, &NO_AUDIT)
            .await?
    );
    step!(
        true,
        store
            .add_secret(
                &tenant.id,
                &extra_app.id,
                &secret(&extra_app),
                &[],
                &NO_AUDIT
            )
            .await?
    );
    let sid = secret(&extra_app);
    step!(
        true,
        store
            .add_secret(&tenant.id, &extra_app.id, &sid, &[], &NO_AUDIT)
            .await?
    );
    step!(
        true,
        assert!(
            store
                .expire_secret(&tenant.id, &extra_app.id, &sid.id, 5, &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        assert!(
            !store
                .expire_secret(&tenant.id, &extra_app.id, &"sid_no".into(), 5, &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        store
            .touch_secrets(&[(tenant.id.clone(), sid.id.clone(), 7)])
            .await?
    );
    step!(
        true,
        assert!(
            store
                .delete_app(&tenant.id, &extra_app.client_id, &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        assert!(
            !store
                .delete_app(&tenant.id, &extra_app.client_id, &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        assert_not_found(
            store
                .update_app(&tenant.id, &extra_app, None, &NO_AUDIT)
                .await,
            "app"
        )
    );

    let removable = SigningKeyRecord {
        remove_at: Some(10),
        ..key(Algorithm::Es256, 1)
    };
    step!(
        true,
        store
            .add_signing_key(&tenant.id, &removable, &NO_AUDIT)
            .await?
    );
    step!(
        true,
        assert!(
            store
                .rotate_signing_keys(&tenant.id, Some(None), 2, &[], &[], &NO_AUDIT)
                .await?
        )
    );
    step!(
        false,
        assert!(
            !store
                .rotate_signing_keys(&tenant.id, Some(None), 3, &[], &[], &NO_AUDIT)
                .await?
        )
    );
    step!(
        true,
        assert_eq!(
            store.delete_removed_keys(&tenant.id, 10, &NO_AUDIT).await?,
            1
        )
    );
    step!(
        false,
        assert_eq!(
            store.delete_removed_keys(&tenant.id, 10, &NO_AUDIT).await?,
            0
        )
    );
    let all = revocation(tenant.id.as_str(), RevocationTarget::Tenant, 1, 2);
    step!(
        false,
        store
            .add_revocation(&tenant.id, "rev_1", &all, 1, &NO_AUDIT)
            .await?
    );

    // Every row so far carries the clock's time.
    assert_eq!(
        db.count_where("change_log", "changed_at", 1_000i64).await?,
        expected
    );
    assert_eq!(
        store.changed_tenants_since(1_000).await?,
        vec![tenant.name.clone()]
    );
    assert!(store.changed_tenants_since(1_001).await?.is_empty());

    clock.advance(5);
    step!(
        true,
        assert!(store.delete_tenant(&tenant.name, &NO_AUDIT).await?)
    );
    step!(
        false,
        assert!(!store.delete_tenant(&tenant.name, &NO_AUDIT).await?)
    );
    // A deleted tenant is still reported: its caches must go.
    assert_eq!(
        store.changed_tenants_since(1_005).await?,
        vec![tenant.name.clone()]
    );

    // Failed writes of other tenants log nothing for them either.
    let failed = populated("failed")?;
    let mut doomed = failed.new.clone();
    doomed.apps[0].app.client_id = ClientId::parse("acme-first")?;
    store.create_tenant(&p.new, &NO_AUDIT).await?;
    assert_already_exists(store.create_tenant(&doomed, &NO_AUDIT).await, "app");
    assert_eq!(db.changes("failed").await?, 0);
    assert_not_found(
        store.update_tenant(&failed.new.tenant, &NO_AUDIT).await,
        "tenant",
    );
    assert_eq!(db.changes("failed").await?, 0);
    Ok(())
}

pub async fn changed_tenants_since_and_purge(db: TestDb) -> TestResult {
    let (store, clock) = clocked(&db, 1_000);
    let acme = tenant("acme")?;
    let beta = tenant("beta")?;
    store.create_tenant(&new_tenant(&acme), &NO_AUDIT).await?;
    clock.advance(10);
    store.create_tenant(&new_tenant(&beta), &NO_AUDIT).await?;
    clock.advance(10);
    store.update_tenant(&acme, &NO_AUDIT).await?;
    store.update_tenant(&acme, &NO_AUDIT).await?;

    let since = |at: UnixTime| {
        let store = store.clone();
        async move {
            let names = store.changed_tenants_since(at).await?;
            Ok::<_, StoreError>(
                names
                    .iter()
                    .map(|n| n.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    // Distinct, by name, `since` inclusive.
    assert_eq!(since(i64::MIN).await?, ["acme", "beta"]);
    assert_eq!(since(1_010).await?, ["acme", "beta"]);
    assert_eq!(since(1_011).await?, ["acme"]);
    assert_eq!(since(1_020).await?, ["acme"]);
    assert_eq!(since(1_021).await?, Vec::<String>::new());

    clock.advance(10);
    assert!(store.delete_tenant(&beta.name, &NO_AUDIT).await?);
    assert_eq!(since(1_030).await?, ["beta"]);

    // Purge: strictly before.
    assert_eq!(store.purge_change_log(1_000).await?, 0);
    assert_eq!(store.purge_change_log(1_001).await?, 1);
    assert_eq!(since(i64::MIN).await?, ["acme", "beta"]);
    assert_eq!(store.purge_change_log(1_021).await?, 3);
    assert_eq!(since(i64::MIN).await?, ["beta"]);

    // Without with_clock, the store stamps rows with the system clock.
    let before = tollgate_domain::Clock::now(&tollgate_domain::SystemClock);
    let gamma = tenant("gamma")?;
    db.store
        .create_tenant(&new_tenant(&gamma), &NO_AUDIT)
        .await?;
    assert_eq!(since(before - 1).await?, ["gamma"]);
    Ok(())
}

/// Inserts one row into `table` as raw SQL: rows of an older schema than the store's.
async fn insert_raw(
    db: &TestDb,
    table: &str,
    row: Vec<(&str, Value)>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (columns, values): (Vec<_>, Vec<_>) = row
        .into_iter()
        .map(|(column, value)| (Alias::new(column), value.into()))
        .unzip();
    let statement = Query::insert()
        .into_table(Alias::new(table))
        .columns(columns)
        .values(values)?
        .to_owned();
    db.raw
        .execute(db.raw.get_database_backend().build(&statement))
        .await?;
    Ok(())
}

pub async fn migration_upgrades_initial_schema(db: TestDb) -> TestResult {
    // A database made by the first migration only, with rows in it; every later migration
    // is pending.
    let later = Migrator::migrations().len() - 1;
    Migrator::up(&db.raw, Some(1)).await?;
    assert_eq!(
        Migrator::get_pending_migrations(&db.raw).await?.len(),
        later
    );
    let sealed: Vec<u8> = (0..=255u8).collect();
    let es256 = Algorithm::Es256.as_str();
    insert_raw(
        &db,
        "tenants",
        vec![
            ("id", "ten_old".into()),
            ("name", "legacy".into()),
            ("display_name", "Legacy".into()),
            ("signing_alg", es256.into()),
            ("created_at", 1_600_000_000i64.into()),
            ("updated_at", 1_600_000_001i64.into()),
        ],
    )
    .await?;
    insert_raw(
        &db,
        "apps",
        vec![
            ("id", "app_old".into()),
            ("tenant_id", "ten_old".into()),
            ("client_id", "legacy-app".into()),
            ("name", "Legacy app".into()),
            ("description", "".into()),
            ("is_blocked", true.into()),
            ("is_system", false.into()),
            ("created_at", 1_600_000_002i64.into()),
            ("updated_at", 1_600_000_003i64.into()),
        ],
    )
    .await?;
    insert_raw(
        &db,
        "app_secrets",
        vec![
            ("id", "sid_old".into()),
            ("tenant_id", "ten_old".into()),
            ("app_id", "app_old".into()),
            ("hash", "v1$old".into()),
            ("created_at", 1_600_000_004i64.into()),
            ("expires_at", Value::BigInt(None)),
            ("last_used_at", 1_600_000_500i64.into()),
        ],
    )
    .await?;
    insert_raw(
        &db,
        "signing_keys",
        vec![
            ("id", "kid_old".into()),
            ("tenant_id", "ten_old".into()),
            ("alg", es256.into()),
            ("status", "active".into()),
            ("public_jwk", "{}".into()),
            ("private_key_sealed", sealed.clone().into()),
            ("created_at", 1_600_000_005i64.into()),
        ],
    )
    .await?;

    // The upgrade, then everything reads back with the new columns' defaults.
    let check = |db: TestDb, sealed: Vec<u8>| async move {
        let store = &db.store;
        let name = TenantName::parse("legacy")?;
        let tenant = store.find_tenant(&name).await?.ok_or("tenant lost")?;
        assert_eq!(
            tenant,
            TenantRecord {
                id: "ten_old".into(),
                name: name.clone(),
                display_name: "Legacy".into(),
                signing_alg: Algorithm::Es256,
                created_at: 1_600_000_000,
                updated_at: 1_600_000_001,
                keys_rotated_at: None,
                rate_limit_per_second: None,
            }
        );
        let snapshot = store
            .load_tenant_snapshot(&name)
            .await?
            .ok_or("snapshot lost")?;
        assert_eq!(snapshot.apps.len(), 1);
        assert_eq!(snapshot.apps[0].app.rate_limit_per_second, None);
        assert!(snapshot.apps[0].app.is_blocked);
        assert_eq!(
            snapshot.secrets,
            vec![SecretRecord {
                id: "sid_old".into(),
                app_id: "app_old".into(),
                hash: "v1$old".into(),
                created_at: 1_600_000_004,
                expires_at: None,
                last_used_at: Some(1_600_000_500),
            }]
        );
        let old_key = SigningKeyRecord {
            kid: "kid_old".into(),
            alg: Algorithm::Es256,
            public_jwk: "{}".into(),
            private_key_sealed: sealed,
            created_at: 1_600_000_005,
            activate_at: 0,
            retire_at: None,
            remove_at: None,
        };
        assert_eq!(snapshot.keys, vec![old_key]);
        assert_eq!(
            store.tenants_due_for_rotation(1_600_000_000, 10).await?,
            vec![tenant]
        );
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    db.store.migrate().await?;
    assert!(Migrator::get_pending_migrations(&db.raw).await?.is_empty());
    check(db.clone(), sealed.clone()).await?;

    // Down again to the first schema (the old rows stay), and up once more.
    Migrator::down(&db.raw, Some(u32::try_from(later)?)).await?;
    assert_eq!(
        Migrator::get_pending_migrations(&db.raw).await?.len(),
        later
    );
    assert_eq!(db.count("signing_keys", "ten_old").await?, 1);
    db.store.migrate().await?;
    check(db.clone(), sealed).await?;
    // The audit tables came back with their lock row.
    assert_eq!(db.count_where("audit_heads", "tenant_id", "").await?, 1);

    // The new features work on the upgraded rows.
    let store = &db.store;
    let tenant = store
        .find_tenant(&TenantName::parse("legacy")?)
        .await?
        .ok_or("tenant lost")?;
    let new_key = key(Algorithm::Es256, 1_700_000_000);
    assert!(
        store
            .rotate_signing_keys(
                &tenant.id,
                Some(None),
                1_700_000_000,
                std::slice::from_ref(&new_key),
                &[("kid_old".into(), 1_700_000_300, 1_700_090_000)],
                &NO_AUDIT,
            )
            .await?
    );
    let keys = store.list_signing_keys(&tenant.id).await?;
    assert_eq!(keys.len(), 2);
    assert_eq!(
        (keys[1].retire_at, keys[1].remove_at),
        (Some(1_700_000_300), Some(1_700_090_000))
    );
    let all = revocation(
        tenant.id.as_str(),
        RevocationTarget::Tenant,
        1_700_000_000,
        1_700_001_000,
    );
    store
        .add_revocation(&tenant.id, "rev_1", &all, 1_700_000_000, &NO_AUDIT)
        .await?;
    assert_eq!(store.live_revocations(0).await?, vec![all]);
    assert_eq!(store.changed_tenants_since(0).await?, [tenant.name]);
    Ok(())
}

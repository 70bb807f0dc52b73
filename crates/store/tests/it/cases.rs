//! The cases of the suite. Each gets a fresh, migrated, empty database and must behave the
//! same on every backend.

use tollgate_domain::{Algorithm, ApiIdentifier, ClientId, ErrorCode, TenantName, TokenLifetime};
use tollgate_store::{NewApp, NewTenant, StoreError};

use crate::TestResult;
use crate::backend::{TENANT_TABLES, TestDb};
use crate::fixtures::{self, api, app, grant, key, new_tenant, populated, secret, tenant};

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
    store.create_tenant(&new_tenant(&tenant("first")?)).await?;
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
        store.create_tenant(&new_tenant(&record)).await?;
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
    store.create_tenant(&new_tenant(&first)).await?;
    let same_name = tenant("acme")?;
    let result = store.create_tenant(&new_tenant(&same_name)).await;
    assert!(matches!(&result, Err(error) if error.code() == ErrorCode::AlreadyExists));
    assert_already_exists(result, "tenant");
    assert_eq!(store.find_tenant(&first.name).await?, Some(first));
    Ok(())
}

pub async fn failed_create_tenant_writes_nothing(db: TestDb) -> TestResult {
    let store = &db.store;
    let taken = populated("taken")?;
    store.create_tenant(&taken.new).await?;

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
    assert_already_exists(store.create_tenant(&doomed.new).await, "app");
    assert_eq!(store.find_tenant(&doomed.new.tenant.name).await?, None);
    for (table, count) in db.counts(&doomed.new.tenant.id).await? {
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
    assert_not_found(store.create_tenant(&foreign.new).await, "api");
    assert_eq!(store.find_tenant(&foreign.new.tenant.name).await?, None);
    Ok(())
}

pub async fn update_tenant(db: TestDb) -> TestResult {
    let store = &db.store;
    let mut record = tenant("acme")?;
    store.create_tenant(&new_tenant(&record)).await?;
    record.display_name = "Acme, Inc.".into();
    record.signing_alg = Algorithm::EdDsa;
    record.updated_at += 60;
    store.update_tenant(&record).await?;
    assert_eq!(store.find_tenant(&record.name).await?, Some(record.clone()));

    let mut ghost = tenant("ghost")?;
    ghost.display_name = "Nobody".into();
    assert_not_found(store.update_tenant(&ghost).await, "tenant");
    Ok(())
}

pub async fn apis_create_find_and_paginate(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme)).await?;
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
        store.create_api(&acme, &record).await?;
        created.push(record);
    }
    created.sort_by(|a, b| a.identifier.cmp(&b.identifier));

    for record in &created {
        assert_eq!(
            store.find_api(&acme, &record.identifier).await?.as_ref(),
            Some(record)
        );
    }
    let missing = ApiIdentifier::parse("https://missing.example/")?;
    assert_eq!(store.find_api(&acme, &missing).await?, None);

    let first = store.list_apis(&acme, None, 3).await?;
    assert_eq!(first, created[..3].to_vec());
    let rest = store
        .list_apis(&acme, Some(&created[2].identifier), 3)
        .await?;
    assert_eq!(rest, created[3..].to_vec());
    assert!(
        store
            .list_apis(&acme, created.last().map(|a| &a.identifier), 3)
            .await?
            .is_empty()
    );
    Ok(())
}

pub async fn duplicate_api_identifier_is_already_exists(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let other = tenant("other")?;
    store.create_tenant(&new_tenant(&acme)).await?;
    store.create_tenant(&new_tenant(&other)).await?;

    let original = api("https://api.example/", &["read"])?;
    store.create_api(&acme, &original).await?;
    let duplicate = api("https://api.example/", &["write"])?;
    assert_already_exists(store.create_api(&acme, &duplicate).await, "api");
    assert_eq!(
        store.find_api(&acme, &original.identifier).await?,
        Some(original.clone())
    );
    // Identifiers are unique per tenant only.
    store.create_api(&other, &duplicate).await?;
    assert_eq!(
        store.find_api(&other, &duplicate.identifier).await?,
        Some(duplicate)
    );
    // A reused id is a duplicate too.
    let mut same_id = api("https://other.example/", &[])?;
    same_id.id = original.id.clone();
    assert_already_exists(store.create_api(&acme, &same_id).await, "api");
    Ok(())
}

pub async fn apps_create_find_and_paginate_with_grants(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme)).await?;
    let orders = api("https://orders.example/", &["read", "write"])?;
    let billing = api("https://billing.example/", &["invoice"])?;
    store.create_api(&acme, &orders).await?;
    store.create_api(&acme, &billing).await?;

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
            .create_app(&acme, &record, &secret(&record), &grants)
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
        let found = store.find_app(&acme, &expected.app.client_id).await?;
        assert_eq!(found.as_ref(), Some(expected));
    }
    assert_eq!(
        store.find_app(&acme, &ClientId::parse("nobody")?).await?,
        None
    );

    let mut listed = Vec::new();
    let mut after: Option<ClientId> = None;
    loop {
        let page = store.list_apps(&acme, after.as_ref(), 4).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.app.client_id.clone());
        listed.extend(page);
    }
    assert_eq!(listed, created);
    assert_eq!(store.list_apps(&acme, None, u64::MAX).await?, created);
    Ok(())
}

pub async fn duplicate_client_id_is_already_exists(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    let other = tenant("other")?;
    store.create_tenant(&new_tenant(&acme)).await?;
    store.create_tenant(&new_tenant(&other)).await?;
    let original = app("client-1")?;
    store
        .create_app(&acme, &original, &secret(&original), &[])
        .await?;

    let duplicate = app("client-1")?;
    assert_already_exists(
        store
            .create_app(&acme, &duplicate, &secret(&duplicate), &[])
            .await,
        "app",
    );
    // Client ids are unique across all tenants.
    assert_already_exists(
        store
            .create_app(&other, &duplicate, &secret(&duplicate), &[])
            .await,
        "app",
    );
    assert_eq!(store.find_app(&other, &duplicate.client_id).await?, None);
    let found = store.find_app(&acme, &original.client_id).await?;
    assert_eq!(found.map(|f| f.app), Some(original));
    Ok(())
}

pub async fn failed_create_app_writes_nothing(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme)).await?;
    let orders = api("https://orders.example/", &["read"])?;
    store.create_api(&acme, &orders).await?;

    // The same API granted twice: the second grant row collides, after the app and its
    // secret were written in the same transaction.
    let doomed = app("doomed")?;
    let twice = [grant(&orders, &["read"])?, grant(&orders, &[])?];
    assert_already_exists(
        store
            .create_app(&acme, &doomed, &secret(&doomed), &twice)
            .await,
        "grant",
    );
    assert_eq!(store.find_app(&acme, &doomed.client_id).await?, None);

    // A grant on an API that does not exist.
    let mut dangling = grant(&orders, &["read"])?;
    dangling.api_id = "api_nonexistent".into();
    assert_not_found(
        store
            .create_app(&acme, &doomed, &secret(&doomed), &[dangling])
            .await,
        "api",
    );
    assert_eq!(store.find_app(&acme, &doomed.client_id).await?, None);
    assert_eq!(db.count("apps", &acme.id).await?, 0);
    assert_eq!(db.count("app_secrets", &acme.id).await?, 0);
    assert_eq!(db.count("grants", &acme.id).await?, 0);

    // The same app, correctly, goes through: nothing of the failures lingers.
    store
        .create_app(&acme, &doomed, &secret(&doomed), &twice[..1])
        .await?;
    Ok(())
}

pub async fn update_app_replaces_grants_only_when_given(db: TestDb) -> TestResult {
    let store = &db.store;
    let acme = tenant("acme")?;
    store.create_tenant(&new_tenant(&acme)).await?;
    let orders = api("https://orders.example/", &["read", "write"])?;
    let billing = api("https://billing.example/", &["invoice"])?;
    store.create_api(&acme, &orders).await?;
    store.create_api(&acme, &billing).await?;
    let mut record = app("client")?;
    let original_grants = vec![grant(&orders, &["read"])?];
    store
        .create_app(&acme, &record, &secret(&record), &original_grants)
        .await?;

    // Grants untouched when not given.
    record.name = "Renamed".into();
    record.description = "New description".into();
    record.is_blocked = true;
    record.updated_at += 10;
    store.update_app(&acme, &record, None).await?;
    let found = store.find_app(&acme, &record.client_id).await?;
    assert_eq!(found.as_ref().map(|f| &f.app), Some(&record));
    assert_eq!(found.map(|f| f.grants), Some(original_grants));

    // Replaced when given.
    let replacement = vec![grant(&billing, &["invoice"])?, grant(&orders, &["write"])?];
    store.update_app(&acme, &record, Some(&replacement)).await?;
    let found = store.find_app(&acme, &record.client_id).await?;
    assert_eq!(found.map(|f| f.grants), Some(replacement.clone()));

    // Cleared with an empty list.
    store.update_app(&acme, &record, Some(&[])).await?;
    let found = store.find_app(&acme, &record.client_id).await?;
    assert_eq!(found.map(|f| f.grants), Some(Vec::new()));

    // A failing replacement leaves the previous state, app fields included.
    store.update_app(&acme, &record, Some(&replacement)).await?;
    let mut bad = grant(&orders, &["read"])?;
    bad.api_id = "api_nonexistent".into();
    let mut changed = record.clone();
    changed.name = "Should not stick".into();
    assert_not_found(store.update_app(&acme, &changed, Some(&[bad])).await, "api");
    let found = store.find_app(&acme, &record.client_id).await?;
    assert_eq!(found.as_ref().map(|f| &f.app), Some(&record));
    assert_eq!(found.map(|f| f.grants), Some(replacement));

    let ghost = app("ghost")?;
    assert_not_found(store.update_app(&acme, &ghost, None).await, "app");
    Ok(())
}

pub async fn tenant_isolation(db: TestDb) -> TestResult {
    let store = &db.store;
    let a = populated("tenant-a")?;
    let b = populated("tenant-b")?;
    store.create_tenant(&a.new).await?;
    store.create_tenant(&b.new).await?;
    let ta = &a.new.tenant;
    let tb = &b.new.tenant;
    let a_app = &a.new.apps[0].app;

    // Reads through B do not see A's API or app.
    assert_eq!(store.find_api(tb, &a.orders.identifier).await?, None);
    assert_eq!(store.find_app(tb, &a_app.client_id).await?, None);
    let b_apis = store.list_apis(tb, None, 100).await?;
    assert!(
        b_apis
            .iter()
            .all(|api| api.id != a.orders.id && api.id != a.billing.id)
    );
    assert_eq!(b_apis.len(), 2);
    let b_apps = store.list_apps(tb, None, 100).await?;
    assert_eq!(b_apps.len(), 2);
    assert!(
        b_apps
            .iter()
            .all(|app| !app.app.client_id.as_str().starts_with("tenant-a"))
    );

    // Writes through B do not touch A's rows.
    assert!(!store.delete_api(tb, &a.orders.identifier).await?);
    assert!(!store.delete_app(tb, &a_app.client_id).await?);
    let mut renamed_api = a.orders.clone();
    renamed_api.name = "hijacked".into();
    renamed_api.scopes.clear();
    assert_not_found(store.update_api(tb, &renamed_api).await, "api");
    let mut renamed_app = a_app.clone();
    renamed_app.name = "hijacked".into();
    assert_not_found(store.update_app(tb, &renamed_app, Some(&[])).await, "app");

    // B cannot grant its app scopes on A's API.
    let b_app = &b.new.apps[0].app;
    assert_not_found(
        store
            .update_app(tb, b_app, Some(&[grant(&a.orders, &["read"])?]))
            .await,
        "api",
    );
    let intruder = app("intruder")?;
    assert_not_found(
        store
            .create_app(
                tb,
                &intruder,
                &secret(&intruder),
                &[grant(&a.orders, &["read"])?],
            )
            .await,
        "api",
    );
    assert_eq!(store.find_app(tb, &intruder.client_id).await?, None);

    // A's data is intact.
    assert_eq!(
        store.find_api(ta, &a.orders.identifier).await?,
        Some(a.orders.clone())
    );
    let found = store.find_app(ta, &a_app.client_id).await?;
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
    store.create_tenant(&new_tenant(&acme)).await?;
    let mut orders = api("https://orders.example/", &["a", "b", "c"])?;
    let other = api("https://other.example/", &["a", "b"])?;
    store.create_api(&acme, &orders).await?;
    store.create_api(&acme, &other).await?;
    let one = app("one")?;
    let two = app("two")?;
    store
        .create_app(
            &acme,
            &one,
            &secret(&one),
            &[grant(&orders, &["a", "b"])?, grant(&other, &["a", "b"])?],
        )
        .await?;
    store
        .create_app(&acme, &two, &secret(&two), &[grant(&orders, &["b"])?])
        .await?;

    // Drop scope b, add d, change everything else that can change.
    orders = api("https://orders.example/", &["a", "c", "d"])?.with_id(&orders.id);
    orders.name = "Orders v2".into();
    orders.token_lifetime = TokenLifetime::from_seconds(60)?;
    orders.signing_alg = Some(Algorithm::EdDsa);
    orders.updated_at += 100;
    store.update_api(&acme, &orders).await?;
    assert_eq!(
        store.find_api(&acme, &orders.identifier).await?,
        Some(orders.clone())
    );

    let one_grants = store
        .find_app(&acme, &one.client_id)
        .await?
        .map(|f| f.grants);
    assert_eq!(
        one_grants,
        Some(vec![grant(&orders, &["a"])?, grant(&other, &["a", "b"])?])
    );
    // A grant left without scopes stays: the app still holds the API.
    let two_grants = store
        .find_app(&acme, &two.client_id)
        .await?
        .map(|f| f.grants);
    assert_eq!(two_grants, Some(vec![grant(&orders, &[])?]));

    let ghost = api("https://ghost.example/", &[])?;
    assert_not_found(store.update_api(&acme, &ghost).await, "api");
    Ok(())
}

/// Lets a case rebuild a record while keeping the id it was stored under.
trait WithId {
    fn with_id(self, id: &str) -> Self;
}

impl WithId for tollgate_store::ApiRecord {
    fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }
}

pub async fn delete_api_removes_its_grants(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    store.create_tenant(&p.new).await?;
    let tenant = &p.new.tenant;
    assert_eq!(db.count("grants", &tenant.id).await?, 3);

    assert!(store.delete_api(tenant, &p.orders.identifier).await?);
    assert!(!store.delete_api(tenant, &p.orders.identifier).await?);
    assert_eq!(store.find_api(tenant, &p.orders.identifier).await?, None);
    assert_eq!(db.count("apis", &tenant.id).await?, 1);
    // Only the billing grant of the first app is left; both apps remain.
    assert_eq!(db.count("grants", &tenant.id).await?, 1);
    let apps = store.list_apps(tenant, None, 10).await?;
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].grants, vec![grant(&p.billing, &["invoice"])?]);
    assert!(apps[1].grants.is_empty());
    Ok(())
}

pub async fn delete_app_removes_secrets_and_grants(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    store.create_tenant(&p.new).await?;
    let tenant = &p.new.tenant;
    let first = &p.new.apps[0].app;

    assert!(store.delete_app(tenant, &first.client_id).await?);
    assert!(!store.delete_app(tenant, &first.client_id).await?);
    assert_eq!(store.find_app(tenant, &first.client_id).await?, None);
    assert_eq!(db.count("apps", &tenant.id).await?, 1);
    assert_eq!(db.count("app_secrets", &tenant.id).await?, 1);
    assert_eq!(db.count("grants", &tenant.id).await?, 1);
    // The client id is free again.
    let again = app(first.client_id.as_str())?;
    store
        .create_app(tenant, &again, &secret(&again), &[])
        .await?;
    Ok(())
}

pub async fn delete_tenant_leaves_no_rows(db: TestDb) -> TestResult {
    let store = &db.store;
    let doomed = populated("doomed")?;
    let kept = populated("kept")?;
    store.create_tenant(&doomed.new).await?;
    store.create_tenant(&kept.new).await?;
    let extra = fixtures::key(Algorithm::EdDsa, 30);
    store.add_signing_key(&doomed.new.tenant, &extra).await?;

    let before = db.counts(&doomed.new.tenant.id).await?;
    assert!(before.iter().all(|(_, count)| *count > 0), "{before:?}");
    let kept_before = db.counts(&kept.new.tenant.id).await?;

    assert!(store.delete_tenant(&doomed.new.tenant.name).await?);
    assert!(!store.delete_tenant(&doomed.new.tenant.name).await?);
    assert_eq!(store.find_tenant(&doomed.new.tenant.name).await?, None);
    for (table, count) in db.counts(&doomed.new.tenant.id).await? {
        assert_eq!(count, 0, "{table} kept rows of the deleted tenant");
    }
    assert_eq!(db.counts(&kept.new.tenant.id).await?, kept_before);
    assert_eq!(TENANT_TABLES.len(), kept_before.len());

    // The name and client ids are free again.
    let again = populated("doomed")?;
    store.create_tenant(&again.new).await?;
    Ok(())
}

pub async fn snapshot_content(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("acme")?;
    let other = populated("other")?;
    store.create_tenant(&p.new).await?;
    store.create_tenant(&other.new).await?;
    let tenant = &p.new.tenant;
    let later = app("acme-later")?;
    let later_secret = secret(&later);
    store
        .create_app(
            tenant,
            &later,
            &later_secret,
            &[grant(&p.billing, &["invoice"])?],
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
        .create_tenant(&NewTenant {
            keys: vec![first.clone()],
            ..new_tenant(&acme)
        })
        .await?;
    let newer = key(Algorithm::Rs256, 200);
    let older = key(Algorithm::EdDsa, 50);
    store.add_signing_key(&acme, &newer).await?;
    store.add_signing_key(&acme, &older).await?;
    let mut dup = key(Algorithm::Es256, 300);
    dup.kid = first.kid.clone();
    assert_already_exists(store.add_signing_key(&acme, &dup).await, "signing key");

    let snapshot = store
        .load_tenant_snapshot(&acme.name)
        .await?
        .ok_or("no snapshot")?;
    // Oldest first, bytes exact.
    assert_eq!(snapshot.keys, vec![older, first, newer]);
    assert_eq!(snapshot.keys[0].private_key_sealed.len(), 512);
    Ok(())
}

pub async fn concurrent_writes_and_reads(db: TestDb) -> TestResult {
    let store = &db.store;
    let p = populated("busy")?;
    store.create_tenant(&p.new).await?;
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
                .create_app(&tenant, &record, &secret(&record), &grants)
                .await?;
            let mut renamed = record.clone();
            renamed.name = format!("Worker {index}");
            store.update_app(&tenant, &renamed, Some(&grants)).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    for round in 0..4 {
        let (store, tenant, mut orders) = (store.clone(), tenant.clone(), p.orders.clone());
        tasks.spawn(async move {
            orders.name = format!("Orders round {round}");
            store.update_api(&tenant, &orders).await?;
            let snapshot = store.load_tenant_snapshot(&tenant.name).await?;
            assert!(snapshot.is_some());
            Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    assert_eq!(store.list_apps(&tenant, None, 100).await?.len(), 18);
    assert_eq!(db.count("grants", &tenant.id).await?, 3 + 16);
    Ok(())
}

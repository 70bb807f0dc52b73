//! The seed scenario (`tollgate-demo`, which `cargo xtask demo` runs against a `tollgate
//! serve` process) against the in-process server: set-up through the management API,
//! writes and reads allowed by scope, the wrong scope refused with 403, a revoked token
//! refused within a second.

use std::time::Duration;

use tollgate_demo::{AdminCredentials, ScenarioConfig, run_scenario};
use tollgate_testkit::{TestOptions, TestServer};

crate::backend_tests!(options = demo_options; the_archive_scenario_behaves);

/// Issuers reachable at their own URLs, as the demo's discovery needs.
fn demo_options() -> TestOptions {
    TestOptions {
        issuer_template: Some("http://{http_addr}/t/{tenant}/".to_owned()),
        ..TestOptions::default()
    }
}

async fn the_archive_scenario_behaves(server: TestServer) -> anyhow::Result<()> {
    let config = ScenarioConfig {
        grpc_url: server.grpc_url.clone(),
        admin: AdminCredentials {
            tenant: server.admin.tenant.clone(),
            client_id: server.admin.client_id.clone(),
            client_secret: server.admin.client_secret.clone(),
            audience: server.admin.audience.clone(),
        },
        tenant: "acme".to_owned(),
    };
    let report = run_scenario(&config, |line| eprintln!("{line}")).await?;
    assert_eq!(report.issuer, format!("{}/t/acme/", server.http_url));
    assert!(
        report.revocation_delay < Duration::from_secs(1),
        "{:?}",
        report.revocation_delay
    );
    let said = |needle: &str| report.narrative.iter().any(|line| line.contains(needle));
    for needle in [
        "GET /archives without a token → 401, WWW-Authenticate: Bearer",
        "PUT /archives/2024-06-01.tar (35 bytes) → 201 Created",
        "[archiver] 3 writes, 1 token request",
        "[reader]   GET /archives → 200: 3 archives",
        r#"[reader]   PUT /archives/forged.tar → 403, WWW-Authenticate: Bearer error="insufficient_scope", scope="archive:write""#,
        r#"[archiver] GET /archives → 403, WWW-Authenticate: Bearer error="insufficient_scope", scope="archive:read""#,
        r#"→ 401, WWW-Authenticate: Bearer error="invalid_token", error_description="token has been revoked""#,
        "Everything behaved",
    ] {
        assert!(said(needle), "{needle:?} not in {:#?}", report.narrative);
    }
    // A second run on the same server cannot create the tenant again, and says so.
    let again = run_scenario(&config, |_| {}).await;
    let error = again
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.starts_with("creating the tenant: AlreadyExists"),
        "{error}"
    );
    server.stop().await
}

//! Interoperability with standard third-party libraries: `interop_client.py` gets tokens with
//! authlib's `OAuth2Session` (`client_secret_basic` and `client_secret_post`), reads the RFC
//! 8414 metadata, and verifies every token with PyJWT's `PyJWKClient` through the JWKS,
//! checking every header member and claim. One ES256 tenant, an RS256 API in it, and an EdDSA
//! tenant cover the three algorithms.
//!
//! Without the Python packages the test prints `SKIPPED` and passes, unless
//! `TOLLGATE_REQUIRE_BACKENDS=1` (as in CI, whose `.ci/run` installs them).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tollgate_proto::v1::{CreateApiRequest, GrantList, UpdateAppRequest};
use tollgate_testkit::TestServer;

use crate::fixtures::{ARCHIVE, Fixture, grant, scopes};

crate::backend_tests!(authlib_and_pyjwt_interoperate);

const PYTHON: &str = "python3";
const PACKAGES: &str = "authlib 'pyjwt[crypto]' requests";
const LEGACY: &str = "https://legacy.example.com/";
const TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `python3` can import the libraries the script uses; `Ok(false)` after a loud skip
/// notice, an error when `TOLLGATE_REQUIRE_BACKENDS=1`.
async fn python_or_skip(test: &str) -> anyhow::Result<bool> {
    let probe = tokio::process::Command::new(PYTHON)
        .args(["-c", "import authlib, jwt, cryptography, requests"])
        .stdin(Stdio::null())
        .output()
        .await;
    let missing = match probe {
        Ok(output) if output.status.success() => return Ok(true),
        // The traceback's last line, e.g. "ModuleNotFoundError: No module named 'authlib'".
        Ok(output) => String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned(),
        Err(error) => format!("cannot run {PYTHON}: {error}"),
    };
    if std::env::var("TOLLGATE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
        bail!("{test}: {missing}; pip install {PACKAGES} (TOLLGATE_REQUIRE_BACKENDS=1)");
    }
    // Straight to stderr: the test harness swallows `eprintln!` of passing tests.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: interop — pip install {PACKAGES}"
    );
    Ok(false)
}

/// One run of the script: a tenant's app asking for a token for `audience`.
struct Case<'a> {
    tenant: &'a str,
    fixture: &'a Fixture,
    audience: &'a str,
    alg: &'a str,
    scope: &'a str,
    ttl: i64,
}

async fn run_script(server: &TestServer, case: &Case<'_>) -> anyhow::Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/interop_client.py");
    let ttl = case.ttl.to_string();
    let child = tokio::process::Command::new(PYTHON)
        .arg(script)
        .args(["--base-url", &server.http_url])
        .args(["--tenant", case.tenant])
        .args(["--client-id", &case.fixture.client_id])
        .args(["--audience", case.audience])
        .args(["--issuer", &case.fixture.issuer])
        .args(["--tenant-id", &case.fixture.tenant_id])
        .args(["--expect-alg", case.alg])
        .args(["--expect-scope", case.scope])
        .args(["--expect-ttl", &ttl])
        // The secret through the environment, not the process list.
        .env("INTEROP_CLIENT_SECRET", &case.fixture.client_secret)
        // Loopback only: a proxy configured for the machine must not be asked.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, child)
        .await
        .with_context(|| format!("{script} did not finish within {TIMEOUT:?}"))?
        .with_context(|| format!("cannot run {PYTHON} {script}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "interop_client.py ({} {}, {}) failed with {}\n--- stdout\n{stdout}--- stderr\n{}",
            case.tenant,
            case.audience,
            case.alg,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

async fn authlib_and_pyjwt_interoperate(server: TestServer) -> anyhow::Result<()> {
    if !python_or_skip(concat!(module_path!(), "::authlib_and_pyjwt_interoperate")).await? {
        return Ok(());
    }

    // ES256 tenant (the default), with an RS256 API beside the ES256 one.
    let mut acme = Fixture::new(&server, "acme").await?;
    acme.admin_clients
        .apis
        .create_api(CreateApiRequest {
            tenant: "acme".into(),
            name: "Legacy".into(),
            identifier: LEGACY.into(),
            scopes: scopes(&["legacy:read"]),
            token_lifetime_seconds: 300,
            signing_alg: "RS256".into(),
        })
        .await?;
    acme.admin_clients
        .apps
        .update_app(UpdateAppRequest {
            tenant: "acme".into(),
            client_id: acme.client_id.clone(),
            grants: Some(GrantList {
                grants: vec![
                    grant(ARCHIVE, &["archive:read", "archive:write"]),
                    grant(LEGACY, &["legacy:read"]),
                ],
            }),
            ..Default::default()
        })
        .await?;
    // EdDSA tenant.
    let edd = Fixture::with_alg(&server, "edd", "EdDSA").await?;

    let cases = [
        Case {
            tenant: "acme",
            fixture: &acme,
            audience: ARCHIVE,
            alg: "ES256",
            scope: "archive:read archive:write",
            ttl: 900,
        },
        Case {
            tenant: "acme",
            fixture: &acme,
            audience: LEGACY,
            alg: "RS256",
            scope: "legacy:read",
            ttl: 300,
        },
        Case {
            tenant: "edd",
            fixture: &edd,
            audience: ARCHIVE,
            alg: "EdDSA",
            scope: "archive:read archive:write",
            ttl: 900,
        },
    ];
    for case in &cases {
        let stdout = run_script(&server, case).await?;
        // Both client authentication methods, each verified.
        for method in ["client_secret_basic", "client_secret_post"] {
            let line = format!("ok {} {method}: {} ", case.tenant, case.alg);
            assert!(
                stdout.contains(&line),
                "no {line:?} in the script's summary:\n{stdout}"
            );
        }
    }
    Ok(())
}

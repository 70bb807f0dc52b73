//! `tollgate-verify` against a second, independent issuer: `tollgate-stub-issuer`, a small
//! OAuth 2.0 server on `127.0.0.1:0` with its own ring ES256 keys, metadata, JWKS and
//! introspection, and a scripted revocation stream. Tokens of that issuer carry none of
//! Tollgate's own claims unless a test adds them.

// Tests bound their waits for real I/O and report latencies in real time; what they test of time runs on injected clocks.
#![allow(clippy::disallowed_methods)]

mod layer;
mod verifier;
mod watch;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use tollgate_domain::{Clock, ManualClock, SystemClock};
use tollgate_stub_issuer::StubIssuer;
use tollgate_verify::{Verifier, VerifierBuilder};

type TestResult = Result<(), Box<dyn Error>>;

/// The resource server's API identifier in every test.
const AUDIENCE: &str = "https://archive.example.com/";
/// The stub's client.
const CLIENT_ID: &str = "reporting";
const SECRET: &str = "s3cret";
/// The verifiers' minimum refetch interval.
const REFETCH_SECONDS: u64 = 30;

/// A stub issuer on a manual clock standing at the real time (tokens must also satisfy the
/// stub's own `iat`), with one client.
async fn stub() -> Result<(StubIssuer, ManualClock), Box<dyn Error>> {
    let clock = ManualClock::new(SystemClock.now());
    let stub = StubIssuer::start_with_clock("acme", Arc::new(clock.clone())).await?;
    stub.add_client(CLIENT_ID, SECRET, &["archive:read", "archive:write"]);
    Ok((stub, clock))
}

/// A verifier of the stub's tokens that discovers everything from the issuer URL.
fn builder(stub: &StubIssuer, clock: &ManualClock) -> VerifierBuilder {
    Verifier::builder(stub.issuer(), AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .min_refetch_interval(Duration::from_secs(REFETCH_SECONDS))
}

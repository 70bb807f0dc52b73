//! `tollgate-client` against `tollgate-stub-issuer`, an independent OAuth 2.0 server on
//! `127.0.0.1:0` (HTTP token endpoint, RFC 8414 metadata, gRPC `IssueToken`), which counts
//! every request. Tokens obtained are checked with `tollgate-verify`, and the outgoing layer
//! and interceptor are tested against a tonic server protected by its `BearerAuthLayer`.

// Tests bound their waits for real I/O and report latencies in real time; what they test of time runs on injected clocks.
#![allow(clippy::disallowed_methods)]

mod outgoing;
mod tokens;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use tollgate_client::{HttpTokenSource, RetryPolicy, TokenClient, TokenClientBuilder, TokenSource};
use tollgate_domain::{Clock, ManualClock, SystemClock};
use tollgate_stub_issuer::StubIssuer;

type TestResult = Result<(), Box<dyn Error>>;

const AUDIENCE: &str = "https://archive.example.com/";
const CLIENT_ID: &str = "reporting";
/// A secret with characters that Basic authentication must form-urlencode (RFC 6749 §2.3.1).
const SECRET: &str = "s3cret:/+ é%";

/// A stub with one client, on a manual clock standing at the real time.
async fn stub() -> Result<(StubIssuer, ManualClock), Box<dyn Error>> {
    let clock = ManualClock::new(SystemClock.now());
    let stub = StubIssuer::start_with_clock("acme", Arc::new(clock.clone())).await?;
    stub.add_client(CLIENT_ID, SECRET, &["archive:read", "archive:write"]);
    Ok((stub, clock))
}

/// Fast retries: 5 attempts, 1 ms doubling.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(5),
    }
}

/// A client of `source` on `clock` with fast retries.
fn client_of(source: impl TokenSource, clock: &ManualClock) -> TokenClientBuilder {
    TokenClient::builder(source)
        .clock(Arc::new(clock.clone()))
        .retry(fast_retries())
}

/// A client of the stub's HTTP token endpoint.
fn http_client(stub: &StubIssuer, clock: &ManualClock) -> TokenClient {
    client_of(
        HttpTokenSource::new(stub.token_endpoint(), CLIENT_ID, SECRET),
        clock,
    )
    .build()
}

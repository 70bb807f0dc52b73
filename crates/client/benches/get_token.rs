//! The cost of a cached `TokenClient::get_token`, the call every outgoing request makes:
//! `cargo bench -p tollgate-client`. The source is in-process (no network), so only the cache
//! is measured: one call on one task, and the same with many tasks sharing the client.

// A benchmark measures real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate_client::{
    AccessToken, FetchFuture, FetchedToken, TokenClient, TokenRequest, TokenSource,
};

/// Hands out one long-lived token.
struct Fixed;

impl TokenSource for Fixed {
    fn fetch<'a>(&'a self, _request: &'a TokenRequest) -> FetchFuture<'a> {
        Box::pin(async {
            Ok(FetchedToken {
                access_token: AccessToken::new("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
                expires_in: Some(Duration::from_secs(3600)),
                scopes: None,
            })
        })
    }
}

const CALLS: u64 = 2_000_000;

fn main() -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = TokenClient::new(Fixed);
    let request = TokenRequest::new("https://archive.example.com/")
        .with_scopes(["archive:read", "archive:write"]);
    runtime.block_on(client.get_token(&request))?;

    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        runtime.block_on(async {
            for _ in 0..CALLS {
                black_box(client.get_token(black_box(&request)).await.is_ok());
            }
        });
        best = best.min(started.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    println!("cached get_token, one task:            {best:>7.1} ns/call (best of 5 × {CALLS})");

    let tasks = 8_u64;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        runtime.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..tasks {
                let (client, request) = (client.clone(), request.clone());
                handles.push(tokio::spawn(async move {
                    for _ in 0..CALLS / tasks {
                        black_box(client.get_token(&request).await.is_ok());
                    }
                }));
            }
            for handle in handles {
                let _ = handle.await;
            }
        });
        best = best.min(started.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    println!(
        "cached get_token, {tasks} tasks on 2 threads: {best:>7.1} ns/call (wall time per call, best of 5)"
    );
    assert_eq!(
        client.attempts(),
        1,
        "every call after the first was served from the cache"
    );
    Ok(())
}

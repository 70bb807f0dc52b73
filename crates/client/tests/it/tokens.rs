//! Getting tokens: caching, single-flight, retries, rejections, client authentication,
//! discovery, gRPC, redaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_client::{
    ClientAuth, GrpcTokenSource, HttpTokenSource, RetryPolicy, TokenClient, TokenError,
    TokenRequest,
};
use tollgate_stub_issuer::{Scripted, TokenCall};
use tollgate_verify::Verifier;

use crate::{AUDIENCE, CLIENT_ID, SECRET, TestResult, client_of, fast_retries, http_client, stub};

/// `client.get_token(request)` from `tasks` tasks at once; every one must succeed. Returns
/// the distinct tokens they got.
async fn concurrently(
    client: &TokenClient,
    request: &TokenRequest,
    tasks: usize,
) -> Result<HashSet<String>, Box<dyn std::error::Error>> {
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (client, request) = (client.clone(), request.clone());
        handles.push(tokio::spawn(
            async move { client.get_token(&request).await },
        ));
    }
    let mut tokens = HashSet::new();
    for handle in handles {
        tokens.insert(handle.await??.access_token.expose().to_owned());
    }
    Ok(tokens)
}

/// Like [`concurrently`], and all callers must have got the same token.
async fn one_token(
    client: &TokenClient,
    request: &TokenRequest,
    tasks: usize,
) -> Result<String, Box<dyn std::error::Error>> {
    let tokens = concurrently(client, request, tasks).await?;
    assert_eq!(tokens.len(), 1, "all callers share one token");
    tokens.into_iter().next().ok_or_else(|| "no token".into())
}

#[tokio::test]
async fn a_cache_shared_by_1000_tasks_fetches_once_per_expiry() -> TestResult {
    let (stub, clock) = stub().await?;
    // Slow responses, so that every task arrives while the one fetch is in flight.
    stub.set_token_delay(Duration::from_millis(100));
    stub.set_token_lifetime(600);
    let client = http_client(&stub, &clock);
    let read = TokenRequest::new(AUDIENCE).with_scopes(["archive:read"]);

    let first = one_token(&client, &read, 1000).await?;
    assert_eq!(stub.token_requests(), 1);
    one_token(&client, &read, 1000).await?;
    assert_eq!(stub.token_requests(), 1, "fresh: served from the cache");
    // Up to the refresh time (expiry minus the 60 s skew) the token is kept...
    clock.advance(539);
    one_token(&client, &read, 1000).await?;
    assert_eq!(stub.token_requests(), 1);
    // ...then replaced by one request, while the other callers keep the valid one.
    clock.advance(1);
    let seen = concurrently(&client, &read, 1000).await?;
    assert_eq!(stub.token_requests(), 2);
    assert!(
        seen.contains(&first) && seen.len() <= 2,
        "{} tokens",
        seen.len()
    );
    let second = one_token(&client, &read, 10).await?;
    assert_ne!(second, first);
    // Expired outright: every caller waits for the one fetch.
    clock.advance(600);
    let third = one_token(&client, &read, 1000).await?;
    assert_eq!(stub.token_requests(), 3);
    assert_ne!(third, second);

    // Another (audience, scopes) is another entry; scope order does not matter.
    let write = TokenRequest::new(AUDIENCE).with_scopes(["archive:write", "archive:read"]);
    let same = TokenRequest::new(AUDIENCE).with_scopes(["archive:read", "archive:write"]);
    one_token(&client, &write, 500).await?;
    one_token(&client, &same, 500).await?;
    assert_eq!(stub.token_requests(), 4);
    assert_eq!(client.attempts(), 4);
    Ok(())
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_valid_token_until_it_expires() -> TestResult {
    let (stub, clock) = stub().await?;
    stub.set_token_lifetime(600);
    let client = http_client(&stub, &clock);
    let request = TokenRequest::new(AUDIENCE);
    let first = client.get_token(&request).await?;
    clock.advance(540);
    stub.script(vec![Scripted::Status(503); 5]);
    // The refresh fails after its 5 attempts; the caller still gets the valid token.
    assert_eq!(client.get_token(&request).await?, first);
    assert_eq!(stub.token_requests(), 6);
    // No new attempt during the pause (at least a second), however many calls.
    one_token(&client, &request, 100).await?;
    assert_eq!(stub.token_requests(), 6);
    clock.advance(1);
    let second = client.get_token(&request).await?;
    assert_ne!(second, first);
    assert_eq!(stub.token_requests(), 7);
    Ok(())
}

#[tokio::test]
async fn a_short_lived_token_is_not_refetched_on_every_call() -> TestResult {
    let (stub, clock) = stub().await?;
    // Shorter than twice the default skew of 60 s: half its lifetime is used instead.
    stub.set_token_lifetime(40);
    let client = http_client(&stub, &clock);
    let request = TokenRequest::new(AUDIENCE);
    let token = client.get_token(&request).await?;
    assert_eq!(token.refresh_at, token.expires_at - 20);
    client.get_token(&request).await?;
    clock.advance(19);
    client.get_token(&request).await?;
    assert_eq!(stub.token_requests(), 1);
    clock.advance(1);
    client.get_token(&request).await?;
    assert_eq!(stub.token_requests(), 2);
    Ok(())
}

/// (case, scripted failures, scopes asked, requests expected, outcome)
type RetryCase = (
    &'static str,
    Vec<Scripted>,
    &'static [&'static str],
    usize,
    Result<(), TokenError>,
);

#[tokio::test]
async fn transient_failures_are_retried_and_rejections_never_are() -> TestResult {
    use Scripted::{OAuthError, Status, TooManyRequests};
    let unavailable = |attempts: u32, reason: &str| TokenError::Unavailable {
        attempts,
        reason: reason.to_owned(),
    };
    let rejected = |error: &str| TokenError::Rejected {
        error: error.to_owned(),
        description: None,
    };
    #[rustfmt::skip]
    let cases: Vec<RetryCase> = vec![
        ("503 then success",           vec![Status(503)],                          &[], 2, Ok(())),
        ("500, 502, 504 then success", vec![Status(500), Status(502), Status(504)], &[], 4, Ok(())),
        ("408 then success",           vec![Status(408)],                          &[], 2, Ok(())),
        ("429 then success",           vec![TooManyRequests { retry_after_seconds: 0 }], &[], 2, Ok(())),
        ("503 five times",             vec![Status(503); 5], &[], 5, Err(unavailable(5, "answered 503 Service Unavailable"))),
        ("429 asking for too long",    vec![TooManyRequests { retry_after_seconds: 60 }], &[], 1,
            Err(unavailable(1, "answered 429 Too Many Requests"))),
        ("invalid_client (scripted)",  vec![OAuthError(401, "invalid_client")],    &[], 1, Err(rejected("invalid_client"))),
        ("invalid_scope",              vec![],                         &["archive:admin"], 1, Err(rejected("invalid_scope"))),
        ("unauthorized_client",        vec![OAuthError(400, "unauthorized_client")], &[], 1, Err(rejected("unauthorized_client"))),
        ("400 without a JSON body",    vec![Status(400)],                          &[], 1, Err(rejected("http_400"))),
    ];
    for (case, script, scopes, requests, expected) in cases {
        let (stub, clock) = stub().await?;
        stub.script(script);
        let client = http_client(&stub, &clock);
        let request = TokenRequest::new(AUDIENCE).with_scopes(scopes.iter().copied());
        let actual = client.get_token(&request).await.map(|_| ());
        let matches = match (&actual, &expected) {
            (
                Err(TokenError::Unavailable { attempts, reason }),
                Err(TokenError::Unavailable {
                    attempts: a,
                    reason: r,
                }),
            ) => attempts == a && reason.ends_with(r.as_str()),
            _ => actual == expected,
        };
        assert!(matches, "{case}: expected {expected:?}, got {actual:?}");
        assert_eq!(stub.token_requests(), requests, "{case}: requests");
    }

    // A wrong secret is the real thing: one request, however many callers.
    let (stub, clock) = stub().await?;
    stub.set_token_delay(Duration::from_millis(50));
    let client = client_of(
        HttpTokenSource::new(stub.token_endpoint(), CLIENT_ID, "wrong"),
        &clock,
    )
    .build();
    let mut handles = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            client.get_token(&TokenRequest::new(AUDIENCE)).await
        }));
    }
    for handle in handles {
        let error = handle.await?.err().ok_or("a wrong secret got a token")?;
        assert!(error.is_rejected_with("invalid_client"), "{error:?}");
    }
    assert_eq!(
        stub.token_requests(),
        1,
        "callers share the failure of the one fetch"
    );
    Ok(())
}

#[tokio::test]
async fn retry_after_is_honoured() -> TestResult {
    let (stub, clock) = stub().await?;
    stub.script([Scripted::TooManyRequests {
        retry_after_seconds: 1,
    }]);
    let client = http_client(&stub, &clock);
    let started = Instant::now();
    client.get_token(&TokenRequest::new(AUDIENCE)).await?;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stub.token_requests(), 2);
    Ok(())
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported() -> TestResult {
    let (_stub, clock) = stub().await?;
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = closed.local_addr()?;
    drop(closed);
    let client = client_of(
        HttpTokenSource::new(format!("http://{address}/oauth/token"), CLIENT_ID, SECRET),
        &clock,
    )
    .retry(RetryPolicy {
        max_attempts: 3,
        ..fast_retries()
    })
    .build();
    let error = client.get_token(&TokenRequest::new(AUDIENCE)).await.err();
    assert!(
        matches!(&error, Some(TokenError::Unavailable { attempts: 3, .. })),
        "{error:?}"
    );
    assert_eq!(client.attempts(), 3);
    // The error names neither the secret nor a token.
    assert!(!format!("{error:?}").contains(SECRET));
    Ok(())
}

#[tokio::test]
async fn both_client_authentication_methods_and_the_parameters_are_sent() -> TestResult {
    let (stub, clock) = stub().await?;
    let verifier = Verifier::builder(stub.issuer(), AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .build()?;
    let request = TokenRequest::new(AUDIENCE).with_scopes(["archive:read"]);
    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        let source =
            HttpTokenSource::new(stub.token_endpoint(), CLIENT_ID, SECRET).client_auth(auth);
        let token = client_of(source, &clock)
            .build()
            .get_token(&request)
            .await?;
        assert_eq!(
            token.scopes.as_deref(),
            Some(&["archive:read".to_owned()][..])
        );
        // The token is a real one of that issuer.
        let claims = verifier.verify(token.access_token.expose()).await?;
        assert_eq!(claims.scopes, ["archive:read"]);
    }
    let sent = |client_auth| TokenCall {
        client_auth,
        client_id: Some(CLIENT_ID.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        scope: Some("archive:read".to_owned()),
    };
    assert_eq!(stub.token_calls(), [sent("basic"), sent("post")]);
    Ok(())
}

#[tokio::test]
async fn the_token_endpoint_is_discovered_from_the_issuer() -> TestResult {
    let (stub, clock) = stub().await?;
    let client = client_of(
        HttpTokenSource::discover(stub.issuer(), CLIENT_ID, SECRET),
        &clock,
    )
    .build();
    for audience in [AUDIENCE, "https://billing.example.com/"] {
        client.get_token(&TokenRequest::new(audience)).await?;
    }
    assert_eq!((stub.metadata_fetches(), stub.token_requests()), (1, 2));
    // Metadata naming another issuer is not used (RFC 8414 §3.3).
    let renamed = client_of(
        HttpTokenSource::discover(stub.issuer().trim_end_matches('/'), CLIENT_ID, SECRET),
        &clock,
    )
    .build();
    let error = renamed.get_token(&TokenRequest::new(AUDIENCE)).await.err();
    assert!(
        matches!(&error, Some(TokenError::Invalid(why)) if why.contains("RFC 8414")),
        "{error:?}"
    );
    Ok(())
}

#[tokio::test]
async fn grpc_issue_token_is_cached_retried_and_rejections_are_final() -> TestResult {
    let (stub, clock) = stub().await?;
    let channel = tonic::transport::Channel::from_shared(stub.grpc_url())?.connect_lazy();
    let grpc = |secret: &str| GrpcTokenSource::new(channel.clone(), "acme", CLIENT_ID, secret);
    let client = client_of(grpc(SECRET), &clock).build();
    let request = TokenRequest::new(AUDIENCE).with_scopes(["archive:write"]);

    stub.script([
        Scripted::Status(503),
        Scripted::TooManyRequests {
            retry_after_seconds: 0,
        },
    ]);
    let token = client.get_token(&request).await?;
    assert_eq!(
        stub.token_requests(),
        3,
        "UNAVAILABLE and RESOURCE_EXHAUSTED are retried"
    );
    assert_eq!(
        token.scopes.as_deref(),
        Some(&["archive:write".to_owned()][..])
    );
    one_token(&client, &request, 1000).await?;
    assert_eq!(stub.token_requests(), 3);
    assert_eq!(
        stub.token_calls().last().map(|call| call.client_auth),
        Some("grpc")
    );

    #[rustfmt::skip]
    let cases = [
        ("wrong secret",  client_of(grpc("wrong"), &clock).build(), &["archive:read"][..], "invalid_client"),
        ("scope not held", client_of(grpc(SECRET), &clock).build(), &["archive:admin"][..], "invalid_scope"),
    ];
    for (case, client, scopes, error) in cases {
        let before = stub.token_requests();
        let request = TokenRequest::new(AUDIENCE).with_scopes(scopes.iter().copied());
        let outcome = client.get_token(&request).await.err();
        assert!(
            outcome.as_ref().is_some_and(|e| e.is_rejected_with(error)),
            "{case}: {outcome:?}"
        );
        assert_eq!(stub.token_requests(), before + 1, "{case}: not retried");
    }
    Ok(())
}

#[tokio::test]
async fn nothing_prints_the_secret_or_the_token() -> TestResult {
    let (stub, clock) = stub().await?;
    let source = HttpTokenSource::new(stub.token_endpoint(), CLIENT_ID, SECRET);
    let printed_source = format!("{source:?}");
    let client = client_of(source, &clock).build();
    let token = client.get_token(&TokenRequest::new(AUDIENCE)).await?;
    let channel = tonic::transport::Channel::from_shared(stub.grpc_url())?.connect_lazy();
    let grpc = GrpcTokenSource::new(channel, "acme", CLIENT_ID, SECRET);
    let printed = [
        printed_source,
        format!("{grpc:?}"),
        format!("{client:?}"),
        format!("{token:?}"),
        format!("{:?}", tollgate_client::Secret::new(SECRET)),
        format!("{}", tollgate_client::Secret::new(SECRET)),
        format!("{}", token.access_token),
    ];
    let secret_text = token.access_token.expose();
    for text in printed {
        assert!(
            !text.contains(SECRET) && !text.contains(secret_text),
            "{text}"
        );
        assert!(
            text.contains("<redacted>") || text.starts_with("TokenClient"),
            "{text}"
        );
    }
    Ok(())
}

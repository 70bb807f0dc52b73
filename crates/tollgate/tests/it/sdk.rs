//! The SDK crates against the real server, as a service team uses them: `tollgate-verify`'s
//! `Verifier` (discovery, every signing algorithm, key rotation, revocation through the
//! `WatchRevocations` stream and through introspection) and `tollgate-client`'s
//! `TokenClient` (HTTP with RFC 8414 discovery, and gRPC).
//!
//! The servers here use the issuer template `http://{http_addr}/t/{tenant}/`, so each
//! tenant's issuer URL is where its metadata is: the SDK discovers everything from the exact
//! `iss`, as it does in production. (With the default template, `http://acme.hub.localhost:8080/`,
//! a verifier would be given `jwks_uri(<http_url>/t/acme/.well-known/jwks.json)` instead.)

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tollgate_client::{GrpcTokenSource, HttpTokenSource, TokenClient, TokenRequest, TokenSource};
use tollgate_domain::ClientSecret;
use tollgate_proto::v1::key_service_client::KeyServiceClient;
use tollgate_proto::v1::revocation_service_client::RevocationServiceClient;
use tollgate_proto::v1::revoke_tokens_request::Target;
use tollgate_proto::v1::{CreateAppRequest, RevokeTokensRequest, RotateSigningKeyRequest};
use tollgate_testkit::{BearerAuth, TestOptions, TestServer};
use tollgate_verify::{AuthError, Claims, Introspection, RevocationWatch, Verifier, VerifyError};

use crate::fixtures::{ARCHIVE, Fixture, grant};

crate::backend_tests!(
    options = sdk_options;
    verifier_checks_tokens_of_every_algorithm_and_refuses_other_tenants,
    verifier_follows_a_key_rotation_without_a_failed_request,
    revoked_tokens_are_refused_within_a_second_by_a_watching_verifier,
    revoked_tokens_are_refused_by_an_introspecting_verifier,
    token_client_over_http_discovers_caches_and_fetches_once_for_a_thousand_callers,
    token_client_over_grpc_caches_and_fetches_once_for_a_thousand_callers,
    token_clients_do_not_retry_rejections,
    metadata_is_discovered_by_rfc8414_and_openid_rules,
);

/// Issuers at the server's own HTTP address.
fn sdk_options() -> TestOptions {
    TestOptions {
        issuer_template: Some("http://{http_addr}/t/{tenant}/".to_owned()),
        ..TestOptions::default()
    }
}

async fn token(server: &TestServer, tenant: &str, fixture: &Fixture) -> anyhow::Result<String> {
    Ok(server
        .issue(
            tenant,
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &["archive:read"],
        )
        .await?
        .access_token)
}

/// The resource server's own app: its credentials watch and introspect. It holds a grant
/// without scopes on its API, which entitles it to introspect that API's tokens.
async fn resource_server_app(
    fixture: &mut Fixture,
    tenant: &str,
) -> anyhow::Result<(String, String)> {
    let created = fixture
        .admin_clients
        .apps
        .create_app(CreateAppRequest {
            tenant: tenant.to_owned(),
            name: "archive-server".to_owned(),
            description: "the archive's resource server".to_owned(),
            grants: vec![grant(ARCHIVE, &[])],
        })
        .await?
        .into_inner();
    Ok((
        created.app.context("no app")?.client_id,
        created.client_secret,
    ))
}

/// RFC 7009 revocation at the tenant's endpoint, as the app the token was issued to.
async fn revoke_over_http(fixture: &Fixture, token: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{}oauth/revoke", fixture.issuer))
        .basic_auth(&fixture.client_id, Some(&fixture.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await?;
    if response.status() != 200 {
        bail!("revocation answered {}", response.status());
    }
    Ok(())
}

/// Waits until `count` has reached `at_least` (within 30 s).
async fn progressed(count: &AtomicUsize, at_least: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while count.load(Ordering::Acquire) < at_least {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("{} of {at_least} after 30 s", count.load(Ordering::Acquire));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Verifies `token` every 2 ms until `accept` likes the outcome; how long that took.
async fn until(
    verifier: &Verifier,
    token: &str,
    within: Duration,
    accept: impl Fn(&Result<Claims, AuthError>) -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let outcome = verifier.verify(token).await;
        if accept(&outcome) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("still {outcome:?} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn is_revoked(outcome: &Result<Claims, AuthError>) -> bool {
    matches!(outcome, Err(AuthError::Revoked))
}

async fn verifier_checks_tokens_of_every_algorithm_and_refuses_other_tenants(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut tenants = Vec::new();
    for (name, alg) in [("es", "ES256"), ("ed", "EdDSA"), ("rs", "RS256")] {
        let fixture = Fixture::with_alg(&server, name, alg).await?;
        assert_eq!(fixture.issuer, format!("{}/t/{name}/", server.http_url));
        // Everything from the issuer URL: metadata, then the JWKS it names.
        let verifier = Verifier::builder(&fixture.issuer, ARCHIVE)
            .with_policy(|policy| policy.requiring_rfc9068_claims())
            .build()?;
        let token = token(&server, name, &fixture).await?;
        let claims = verifier.verify(&token).await?;
        let header = jsonwebtoken::decode_header(&token)?;
        assert_eq!(format!("{:?}", header.alg), alg);
        assert_eq!(header.kid.as_deref(), Some(claims.key_id.as_str()));
        assert_eq!(claims.issuer, fixture.issuer);
        assert_eq!(claims.audiences, [ARCHIVE]);
        assert_eq!(
            claims.client_id.as_deref(),
            Some(fixture.client_id.as_str())
        );
        assert_eq!(
            claims.subject,
            Some(format!("{}@client", fixture.client_id))
        );
        assert_eq!(claims.scopes, ["archive:read"]);
        assert_eq!(
            claims.claim("cid").and_then(|cid| cid.as_str()),
            Some(fixture.tenant_id.as_str())
        );
        // The tenant's own admin token is for another audience.
        let admin_token = server.admin_token_for(&fixture.admin).await?;
        assert_eq!(
            verifier.verify(&admin_token).await,
            Err(AuthError::InvalidToken(VerifyError::WrongAudience))
        );
        tenants.push((name, verifier, token));
    }
    // No verifier accepts another tenant's token: its keys are not the tenant's.
    for (name, verifier, _) in &tenants {
        for (other, _, token) in &tenants {
            if name != other {
                assert_eq!(
                    verifier.verify(token).await,
                    Err(AuthError::InvalidToken(VerifyError::UnknownKey)),
                    "{name} verifying {other}'s token"
                );
            }
        }
    }
    Ok(())
}

async fn verifier_follows_a_key_rotation_without_a_failed_request(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    // A refetch for an unknown kid at most once a second (30 s by default).
    // On the server's clock, so that moving it moves the refetch interval too.
    let verifier = Verifier::builder(&fixture.issuer, ARCHIVE)
        .min_refetch_interval(Duration::from_secs(1))
        .clock(Arc::new(server.clock.clone()))
        .build()?;
    let old_token = token(&server, "acme", &fixture).await?;
    let old_kid = verifier.verify(&old_token).await?.key_id;

    // Tokens issued and verified back to back, while the key rotates underneath.
    let server = Arc::new(server);
    let is_done = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicUsize::new(0));
    let verifying = {
        let (server, verifier, is_done) = (server.clone(), verifier.clone(), is_done.clone());
        let verified = verified.clone();
        let (client_id, secret) = (fixture.client_id.clone(), fixture.client_secret.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..1_000 {
                if is_done.load(Ordering::Acquire) {
                    break;
                }
                let issued = server
                    .issue("acme", &client_id, &secret, ARCHIVE, &[])
                    .await;
                let outcome = match issued {
                    Ok(issued) => verifier
                        .verify(&issued.access_token)
                        .await
                        .map(|claims| claims.key_id)
                        .map_err(|error| error.to_string()),
                    Err(status) => Err(format!("issuing: {status}")),
                };
                outcomes.push(outcome);
                verified.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        })
    };
    // A few tokens of the old key; then, past the refetch interval of the first fetch,
    // rotate with no propagation delay: the next tokens carry a kid the verifier has not seen.
    progressed(&verified, 5).await?;
    server.clock.advance(Duration::from_millis(1_200));
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    KeyServiceClient::with_interceptor(server.channel(), BearerAuth::new(&admin_token)?)
        .rotate_signing_key(RotateSigningKeyRequest {
            tenant: "acme".to_owned(),
            propagation_delay_seconds: Some(0),
        })
        .await?;
    // Enough tokens after the rotation for the verifier to meet the new key.
    progressed(&verified, verified.load(Ordering::Acquire) + 25).await?;
    is_done.store(true, Ordering::Release);
    let outcomes = verifying.await?;

    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    let kids: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let new_kid = kids.last().context("nothing verified")?;
    assert_ne!(**new_kid, old_kid, "no token of the new key was verified");
    let switched = kids.iter().position(|kid| *kid == *new_kid).unwrap_or(0);
    assert!(
        kids[..switched].iter().all(|kid| **kid == old_kid)
            && kids[switched..].iter().all(|kid| kid == new_kid),
        "{kids:?}"
    );
    eprintln!(
        "sdk: {} tokens verified across the rotation ({} with the new key), none refused",
        kids.len(),
        kids.len() - switched
    );
    // Tokens of the replaced key still verify: it stays published until they expire.
    assert_eq!(verifier.verify(&old_token).await?.key_id, old_kid);
    Ok(())
}

async fn revoked_tokens_are_refused_within_a_second_by_a_watching_verifier(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let (rs_id, rs_secret) = resource_server_app(&mut fixture, "acme").await?;
    let watch = RevocationWatch::builder(
        server.channel(),
        "acme",
        rs_id,
        ClientSecret::new(rs_secret),
    )
    // Three seconds instead of three heartbeats (15 s), so the end of the test is quick.
    .stale_after(Duration::from_secs(3))
    .spawn()?;
    watch.ready(Duration::from_secs(10)).await?;
    let verifier = Verifier::builder(&fixture.issuer, ARCHIVE)
        .revocation_check(Arc::new(watch.clone()))
        .build()?;
    let revoked = token(&server, "acme", &fixture).await?;
    let kept = token(&server, "acme", &fixture).await?;
    verifier.verify(&revoked).await?;

    // RFC 7009 at the server; the verifier learns of it from the stream.
    let started = Instant::now();
    revoke_over_http(&fixture, &revoked).await?;
    until(&verifier, &revoked, Duration::from_secs(2), is_revoked).await?;
    let delay = started.elapsed();
    eprintln!(
        "sdk: RFC 7009 revocation refused by the watching verifier {delay:?} after the request"
    );
    assert!(delay < Duration::from_secs(1), "{delay:?}");
    verifier.verify(&kept).await?;

    // Every token of the app, up to this second; tokens issued later are not covered.
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    let started = Instant::now();
    RevocationServiceClient::with_interceptor(server.channel(), BearerAuth::new(&admin_token)?)
        .revoke_tokens(RevokeTokensRequest {
            tenant: "acme".to_owned(),
            target: Some(Target::ClientId(fixture.client_id.clone())),
        })
        .await?;
    until(&verifier, &kept, Duration::from_secs(2), is_revoked).await?;
    let delay = started.elapsed();
    eprintln!("sdk: app revocation refused by the watching verifier {delay:?} after the request");
    assert!(delay < Duration::from_secs(1), "{delay:?}");
    // The server's next second: past the cut-off.
    server.clock.advance_to_next_second();
    let later = token(&server, "acme", &fixture).await?;
    verifier.verify(&later).await?;

    // The server goes away: once the stream has been silent for the limit, the verifier
    // refuses rather than accept tokens it can no longer vouch for.
    server.stop().await?;
    let refused_after = until(&verifier, &later, Duration::from_secs(10), |outcome| {
        matches!(outcome, Err(AuthError::RevocationUnavailable(_)))
    })
    .await?;
    eprintln!("sdk: with the server gone, the watching verifier refused after {refused_after:?}");
    assert!(!watch.status().is_answering);
    Ok(())
}

async fn revoked_tokens_are_refused_by_an_introspecting_verifier(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let (rs_id, rs_secret) = resource_server_app(&mut fixture, "acme").await?;
    // Every request asks the server (no cache), so a revocation counts from the next one.
    let introspection = Introspection::new(
        format!("{}oauth/introspect", fixture.issuer),
        rs_id,
        ClientSecret::new(rs_secret),
    )
    .cache_for(Duration::ZERO);
    let verifier = Verifier::builder(&fixture.issuer, ARCHIVE)
        .revocation_check(Arc::new(introspection))
        .build()?;
    let revoked = token(&server, "acme", &fixture).await?;
    let kept = token(&server, "acme", &fixture).await?;
    verifier.verify(&revoked).await?;

    let started = Instant::now();
    revoke_over_http(&fixture, &revoked).await?;
    assert_eq!(verifier.verify(&revoked).await, Err(AuthError::Revoked));
    eprintln!(
        "sdk: RFC 7009 revocation refused by the introspecting verifier {:?} after the request",
        started.elapsed()
    );
    verifier.verify(&kept).await?;
    // An introspection the server cannot answer is no pass: wrong credentials refuse.
    let wrong = Introspection::new(
        format!("{}oauth/introspect", fixture.issuer),
        fixture.client_id.clone(),
        ClientSecret::new("tgsec_wrong".to_owned()),
    );
    let strict = Verifier::builder(&fixture.issuer, ARCHIVE)
        .revocation_check(Arc::new(wrong))
        .build()?;
    assert!(matches!(
        strict.verify(&kept).await,
        Err(AuthError::RevocationUnavailable(_))
    ));
    Ok(())
}

/// 1,000 concurrent callers of a fresh client: one fetch, one token, which verifies; then
/// the cache; another scope set is another entry.
async fn thousand_callers(client: TokenClient, fixture: &Fixture) -> anyhow::Result<()> {
    let request = TokenRequest::new(ARCHIVE).with_scopes(["archive:read"]);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let (client, request) = (client.clone(), request.clone());
        callers.spawn(async move { client.get_token(&request).await });
    }
    let mut tokens = HashSet::new();
    while let Some(outcome) = callers.join_next().await {
        tokens.insert(outcome??.access_token.expose().to_owned());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(client.attempts(), 1);
    let token = tokens.into_iter().next().context("no token")?;
    let verifier = Verifier::builder(&fixture.issuer, ARCHIVE).build()?;
    assert_eq!(verifier.verify(&token).await?.scopes, ["archive:read"]);

    let cached = client.get_token(&request).await?;
    assert_eq!(cached.access_token.expose(), token);
    assert_eq!(client.attempts(), 1);
    let writing = client
        .get_token(&TokenRequest::new(ARCHIVE).with_scopes(["archive:write"]))
        .await?;
    assert_ne!(writing.access_token.expose(), token);
    assert_eq!(client.attempts(), 2);
    Ok(())
}

async fn token_client_over_http_discovers_caches_and_fetches_once_for_a_thousand_callers(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let source = HttpTokenSource::discover(
        &fixture.issuer,
        &fixture.client_id,
        fixture.client_secret.clone(),
    );
    thousand_callers(TokenClient::new(source), &fixture).await
}

async fn token_client_over_grpc_caches_and_fetches_once_for_a_thousand_callers(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let source = GrpcTokenSource::new(
        server.channel(),
        "acme",
        &fixture.client_id,
        fixture.client_secret.clone(),
    );
    thousand_callers(TokenClient::new(source), &fixture).await
}

async fn token_clients_do_not_retry_rejections(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let sources: [(&str, SourceWithSecret); 2] = [
        ("http", {
            let (issuer, client_id) = (fixture.issuer.clone(), fixture.client_id.clone());
            Box::new(move |secret: &str| {
                Box::new(HttpTokenSource::discover(
                    &issuer,
                    &client_id,
                    secret.to_owned(),
                ))
            })
        }),
        ("grpc", {
            let (channel, client_id) = (server.channel(), fixture.client_id.clone());
            Box::new(move |secret: &str| {
                Box::new(GrpcTokenSource::new(
                    channel.clone(),
                    "acme",
                    &client_id,
                    secret.to_owned(),
                ))
            })
        }),
    ];
    for (transport, source) in &sources {
        // A wrong secret: `invalid_client`, one attempt, and callers share the failure.
        let client = TokenClient::new(BoxedSource(source("tgsec_wrong")));
        let request = TokenRequest::new(ARCHIVE);
        let (first, second) = tokio::join!(client.get_token(&request), client.get_token(&request));
        for outcome in [first, second] {
            let error = outcome.err().context("a wrong secret got a token")?;
            assert!(
                error.is_rejected_with("invalid_client"),
                "{transport}: {error}"
            );
        }
        assert_eq!(client.attempts(), 1, "{transport}");
        // A scope the app does not hold: `invalid_scope`, not retried either.
        let client = TokenClient::new(BoxedSource(source(&fixture.client_secret)));
        let error = client
            .get_token(&TokenRequest::new(ARCHIVE).with_scopes(["archive:admin"]))
            .await
            .err()
            .context("an ungranted scope was issued")?;
        assert!(
            error.is_rejected_with("invalid_scope"),
            "{transport}: {error}"
        );
        assert_eq!(client.attempts(), 1, "{transport}");
        // The error never shows the secret.
        assert!(!error.to_string().contains(&fixture.client_secret));
    }
    Ok(())
}

/// Makes a token source of the fixture's app with the given secret.
type SourceWithSecret = Box<dyn Fn(&str) -> Box<dyn TokenSource>>;

/// A boxed source as a source.
struct BoxedSource(Box<dyn TokenSource>);

impl TokenSource for BoxedSource {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> tollgate_client::FetchFuture<'a> {
        self.0.fetch(request)
    }
}

/// A path issuer's metadata where RFC 8414 §3.1 puts it (the well-known segment inserted
/// between host and path, the path's `/` removed) and where OpenID Connect Discovery puts it
/// (appended to the issuer), for both document names; each names exactly the issuer it was
/// found from (RFC 8414 §3.3) and endpoints that work.
async fn metadata_is_discovered_by_rfc8414_and_openid_rules(
    server: TestServer,
) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let http = reqwest::Client::new();
    let base = &server.http_url;
    assert_eq!(fixture.issuer, format!("{base}/t/acme/"));
    let mut documents = Vec::new();
    for url in [
        format!("{base}/.well-known/oauth-authorization-server/t/acme"),
        format!("{base}/.well-known/openid-configuration/t/acme"),
        format!("{}.well-known/oauth-authorization-server", fixture.issuer),
        format!("{}.well-known/openid-configuration", fixture.issuer),
    ] {
        let response = http.get(&url).send().await?;
        assert_eq!(response.status(), 200, "{url}");
        let document: serde_json::Value = response.json().await?;
        assert_eq!(document["issuer"], fixture.issuer.as_str(), "{url}");
        documents.push(document);
    }
    assert!(documents.iter().all(|document| *document == documents[0]));

    let metadata = &documents[0];
    let token_endpoint = metadata["token_endpoint"]
        .as_str()
        .context("no token_endpoint")?;
    assert_eq!(token_endpoint, format!("{}oauth/token", fixture.issuer));
    let response = http
        .post(token_endpoint)
        .basic_auth(&fixture.client_id, Some(&fixture.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&audience={ARCHIVE}"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let issued: serde_json::Value = response.json().await?;
    let token = issued["access_token"].as_str().context("no access_token")?;
    // The token verifies against the keys the metadata names, with `iss` the issuer.
    let jwks_uri = metadata["jwks_uri"].as_str().context("no jwks_uri")?;
    let verifier = Verifier::builder(&fixture.issuer, ARCHIVE)
        .jwks_uri(jwks_uri)
        .build()?;
    let claims = verifier.verify(token).await?;
    assert_eq!(claims.issuer, fixture.issuer);

    // Another tenant's name in the inserted form is that tenant, not the host's default.
    let response = http
        .get(format!(
            "{base}/.well-known/oauth-authorization-server/t/ghost"
        ))
        .send()
        .await?;
    assert_eq!(response.status(), 404);
    Ok(())
}

//! Access lifecycle on one instance (the shared state in-process): revocation and
//! introspection over HTTP and gRPC, secret rotation, blocking, key rotation, rate limits.
//! The multi-instance behaviour on Redis is in `multi.rs`.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tollgate_proto::v1::revoke_tokens_request::Target;
use tollgate_proto::v1::{
    CreateAppRequest, IntrospectTokenRequest, ListKeysRequest, ListSecretsRequest,
    RevokeSecretRequest, RevokeTokenRequest, RevokeTokensRequest, RotateSecretRequest,
    RotateSigningKeyRequest, UpdateAppRequest,
};
use tollgate_testkit::TestServer;
use tonic::transport::Channel;

use crate::fixtures::{ARCHIVE, Fixture, encode_form, fetch_jwks, reason, verify_with_jwks};

crate::backend_tests!(
    revoke_and_introspect_over_http,
    revoke_and_introspect_over_grpc,
    revocation_service_forms,
    secret_rotation,
    block_with_revocation,
    key_rotation,
    rate_limits,
    secrets_record_their_last_use,
);

type KeyClient = tollgate_proto::v1::key_service_client::KeyServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tollgate_testkit::BearerAuth>,
>;
type RevocationClient = tollgate_proto::v1::revocation_service_client::RevocationServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tollgate_testkit::BearerAuth>,
>;

/// POSTs a form to `/t/acme/oauth/<endpoint>` with Basic authentication.
async fn post(
    server: &TestServer,
    endpoint: &str,
    credentials: (&str, &str),
    form: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(format!("{}/t/acme/oauth/{endpoint}", server.http_url))
        .basic_auth(credentials.0, Some(credentials.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await?)
}

async fn introspect(
    server: &TestServer,
    credentials: (&str, &str),
    token: &str,
) -> anyhow::Result<Value> {
    let response = post(server, "introspect", credentials, &[("token", token)]).await?;
    anyhow::ensure!(
        response.status() == 200,
        "introspection answered {}",
        response.status()
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    Ok(response.json().await?)
}

async fn token(server: &TestServer, fixture: &Fixture) -> anyhow::Result<String> {
    Ok(server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await?
        .access_token)
}

async fn revoke_and_introspect_over_http(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let other = Fixture::new(&server, "globex").await?;
    let me = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    let access_token = token(&server, &fixture).await?;

    // Active: every claim, RFC 7662 names.
    let active = introspect(&server, me, &access_token).await?;
    let jwks = fetch_jwks(&server, "acme").await?;
    let (_, claims) = verify_with_jwks(&access_token, &jwks, &fixture.issuer, ARCHIVE)?;
    let mut expected = claims.clone();
    expected["active"] = Value::Bool(true);
    expected["token_type"] = "Bearer".into();
    assert_eq!(active, expected);

    // Inactive answers are exactly {"active":false}.
    let other_token = server
        .issue(
            "globex",
            &other.client_id,
            &other.client_secret,
            ARCHIVE,
            &[],
        )
        .await?
        .access_token;
    for (case, candidate) in [
        ("garbage", "not-a-token"),
        ("another tenant's token", other_token.as_str()),
    ] {
        assert_eq!(
            introspect(&server, me, candidate).await?,
            serde_json::json!({"active": false}),
            "{case}"
        );
    }

    // Unauthenticated callers are refused; the token endpoint's rules apply.
    let anonymous = post(
        &server,
        "introspect",
        (me.0, "tgsec_wrong"),
        &[("token", &access_token)],
    )
    .await?;
    assert_eq!(anonymous.status(), 401);
    let missing = post(&server, "revoke", me, &[]).await?;
    assert_eq!(missing.status(), 400);

    // Revoking someone else's token is a silent no-op (RFC 7009 §2.1).
    let admin = (
        fixture.admin.client_id.as_str(),
        fixture.admin.client_secret.as_str(),
    );
    let foreign = post(&server, "revoke", admin, &[("token", &access_token)]).await?;
    assert_eq!(foreign.status(), 200);
    assert_eq!(
        introspect(&server, me, &access_token).await?["active"],
        true
    );

    // The owner revokes it: 200 with an empty body, then inactive for everyone.
    let revoked = post(
        &server,
        "revoke",
        me,
        &[
            ("token", &access_token),
            ("token_type_hint", "access_token"),
        ],
    )
    .await?;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.headers()["cache-control"], "no-store");
    assert!(revoked.bytes().await?.is_empty());
    assert_eq!(
        introspect(&server, me, &access_token).await?,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        introspect(&server, admin, &access_token).await?,
        serde_json::json!({"active": false})
    );
    // Revoking again, or revoking garbage, is still 200.
    for candidate in [access_token.as_str(), "garbage"] {
        assert_eq!(
            post(&server, "revoke", me, &[("token", candidate)])
                .await?
                .status(),
            200
        );
    }
    // Other tokens of the app are unaffected.
    let fresh = token(&server, &fixture).await?;
    assert_eq!(introspect(&server, me, &fresh).await?["active"], true);
    Ok(())
}

async fn revoke_and_introspect_over_grpc(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let access_token = token(&server, &fixture).await?;
    let call = |token: &str| IntrospectTokenRequest {
        tenant: "acme".into(),
        client_id: fixture.client_id.clone(),
        client_secret: fixture.client_secret.clone(),
        token: token.into(),
    };
    let mut tokens = server.tokens();
    let active = tokens
        .introspect_token(call(&access_token))
        .await?
        .into_inner();
    assert!(active.active);
    assert_eq!(
        (
            active.client_id.as_str(),
            active.aud.as_str(),
            active.token_type.as_str()
        ),
        (fixture.client_id.as_str(), ARCHIVE, "Bearer")
    );
    assert_eq!(active.scp, ["archive:read", "archive:write"]);
    assert_eq!(active.exp - active.iat, 900);

    let wrong_secret = tokens
        .introspect_token(IntrospectTokenRequest {
            client_secret: "tgsec_wrong".into(),
            ..call(&access_token)
        })
        .await
        .err()
        .context("introspection without authentication")?;
    assert_eq!(
        reason(&wrong_secret),
        (tonic::Code::Unauthenticated, "invalid_client".into())
    );
    let empty = tokens
        .introspect_token(call(""))
        .await
        .err()
        .context("empty token accepted")?;
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    tokens
        .revoke_token(RevokeTokenRequest {
            tenant: "acme".into(),
            client_id: fixture.client_id.clone(),
            client_secret: fixture.client_secret.clone(),
            token: access_token.clone(),
        })
        .await?;
    let inactive = tokens
        .introspect_token(call(&access_token))
        .await?
        .into_inner();
    assert_eq!(
        inactive,
        tollgate_proto::v1::IntrospectTokenResponse::default()
    );
    Ok(())
}

async fn revocation_service_forms(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let me = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    let mut revocations: RevocationClient =
        tollgate_proto::v1::revocation_service_client::RevocationServiceClient::with_interceptor(
            server.channel(),
            tollgate_testkit::BearerAuth::new(&admin_token)?,
        );
    let revoke = |target: Target| RevokeTokensRequest {
        tenant: "acme".into(),
        target: Some(target),
    };

    // By jti: that token only.
    let first = token(&server, &fixture).await?;
    let second = token(&server, &fixture).await?;
    let jti = introspect(&server, me, &first).await?["jti"]
        .as_str()
        .context("jti")?
        .to_owned();
    revocations.revoke_tokens(revoke(Target::Jti(jti))).await?;
    assert_eq!(introspect(&server, me, &first).await?["active"], false);
    assert_eq!(introspect(&server, me, &second).await?["active"], true);

    // By secret: every token it obtained.
    let sid = introspect(&server, me, &second).await?["sid"]
        .as_str()
        .context("sid")?
        .to_owned();
    revocations
        .revoke_tokens(revoke(Target::SecretId(sid)))
        .await?;
    assert_eq!(introspect(&server, me, &second).await?["active"], false);

    // Malformed targets are INVALID_ARGUMENT; a tenant admin cannot reach another tenant.
    let none = revocations
        .revoke_tokens(RevokeTokensRequest {
            tenant: "acme".into(),
            target: None,
        })
        .await;
    assert_eq!(
        none.err().map(|status| status.code()),
        Some(tonic::Code::InvalidArgument)
    );
    let foreign = revocations
        .revoke_tokens(RevokeTokensRequest {
            tenant: "system".into(),
            target: Some(Target::All(true)),
        })
        .await;
    assert_eq!(
        foreign.err().map(|status| status.code()),
        Some(tonic::Code::PermissionDenied)
    );

    // Everything of the tenant, admin tokens included: the admin token stops working too.
    server.clock.advance_to_next_second(); // a new second: iat cut-offs are in seconds
    let third = token(&server, &fixture).await?;
    revocations.revoke_tokens(revoke(Target::All(true))).await?;
    assert_eq!(introspect(&server, me, &third).await?["active"], false);
    let after = revocations
        .revoke_tokens(revoke(Target::All(true)))
        .await
        .err()
        .context("revoked admin token accepted")?;
    assert_eq!(after.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        after.message(),
        "admin token rejected: token has been revoked"
    );
    // Tokens issued after the cut-off work (the app's own secret stays revoked by `sid`: every
    // token it obtains, now or later, is dead; the admin app's secret is untouched).
    server.clock.advance_to_next_second();
    assert_eq!(
        introspect(&server, me, &token(&server, &fixture).await?).await?["active"],
        false
    );
    let fresh_admin = server.admin_token_for(&fixture.admin).await?;
    let admin = (
        fixture.admin.client_id.as_str(),
        fixture.admin.client_secret.as_str(),
    );
    // An admin token is introspected by its own app only.
    assert_eq!(
        introspect(&server, admin, &fresh_admin).await?["active"],
        true
    );
    assert_eq!(
        introspect(&server, me, &fresh_admin).await?,
        serde_json::json!({"active": false})
    );
    let mut revocations: RevocationClient =
        tollgate_proto::v1::revocation_service_client::RevocationServiceClient::with_interceptor(
            server.channel(),
            tollgate_testkit::BearerAuth::new(&fresh_admin)?,
        );
    revocations
        .revoke_tokens(revoke(Target::ClientId(fixture.client_id.clone())))
        .await?;
    Ok(())
}

async fn secret_rotation(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let old = (fixture.client_id.clone(), fixture.client_secret.clone());
    let old_token = token(&server, &fixture).await?;
    let rotated = fixture
        .admin_clients
        .apps
        .rotate_secret(RotateSecretRequest {
            tenant: "acme".into(),
            client_id: old.0.clone(),
            overlap_seconds: Some(3600),
        })
        .await?
        .into_inner();
    assert!(rotated.client_secret.starts_with("tgsec_"));
    assert_ne!(rotated.client_secret, old.1);
    let new_id = rotated.secret.context("secret")?.id;
    assert_eq!(rotated.secrets.len(), 2);
    assert!(rotated.secrets.iter().all(|secret| secret.active));
    let old_id = rotated
        .secrets
        .iter()
        .find(|secret| secret.id != new_id)
        .context("old secret")?
        .clone();
    assert!(
        old_id.expire_time.is_some(),
        "the old secret ends after the overlap"
    );

    // Both work during the overlap; each token names its secret.
    let with_new = server
        .issue("acme", &old.0, &rotated.client_secret, ARCHIVE, &[])
        .await?
        .access_token;
    let with_old = server
        .issue("acme", &old.0, &old.1, ARCHIVE, &[])
        .await?
        .access_token;
    let me = (old.0.as_str(), rotated.client_secret.as_str());
    assert_eq!(
        introspect(&server, me, &with_new).await?["sid"],
        new_id.as_str()
    );
    assert_eq!(
        introspect(&server, me, &with_old).await?["sid"],
        old_id.id.as_str()
    );

    // A third live secret is refused.
    let third = fixture
        .admin_clients
        .apps
        .rotate_secret(RotateSecretRequest {
            tenant: "acme".into(),
            client_id: old.0.clone(),
            overlap_seconds: None,
        })
        .await;
    assert_eq!(
        third.err().map(|status| reason(&status)),
        Some((
            tonic::Code::FailedPrecondition,
            "failed_precondition".into()
        ))
    );

    // Revoke the old secret with its tokens: it stops at once, its tokens die, the new live on.
    fixture
        .admin_clients
        .apps
        .revoke_secret(RevokeSecretRequest {
            tenant: "acme".into(),
            client_id: old.0.clone(),
            secret_id: old_id.id.clone(),
            revoke_tokens: true,
        })
        .await?;
    let refused = server.issue("acme", &old.0, &old.1, ARCHIVE, &[]).await;
    assert_eq!(
        refused.err().map(|status| reason(&status)),
        Some((tonic::Code::Unauthenticated, "invalid_client".into()))
    );
    for (case, candidate, is_active) in [
        ("old token", &old_token, false),
        ("token of the old secret", &with_old, false),
        ("token of the new secret", &with_new, true),
    ] {
        assert_eq!(
            introspect(&server, me, candidate).await?["active"],
            is_active,
            "{case}"
        );
    }
    let listed = fixture
        .admin_clients
        .apps
        .list_secrets(ListSecretsRequest {
            tenant: "acme".into(),
            client_id: old.0.clone(),
        })
        .await?
        .into_inner()
        .secrets;
    // Created in the same second, so compare as a set.
    let mut states: Vec<_> = listed
        .iter()
        .map(|secret| (secret.id.as_str(), secret.active))
        .collect();
    states.sort();
    let mut expected = vec![(new_id.as_str(), true), (old_id.id.as_str(), false)];
    expected.sort();
    assert_eq!(states, expected);
    let unknown = fixture
        .admin_clients
        .apps
        .revoke_secret(RevokeSecretRequest {
            tenant: "acme".into(),
            client_id: old.0.clone(),
            secret_id: "sec_nope".into(),
            revoke_tokens: false,
        })
        .await;
    assert_eq!(
        unknown.err().map(|status| status.code()),
        Some(tonic::Code::NotFound)
    );
    Ok(())
}

async fn block_with_revocation(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let me = (fixture.client_id.clone(), fixture.client_secret.clone());
    let held = token(&server, &fixture).await?;
    let block = |blocked: bool, revoke_tokens: bool| UpdateAppRequest {
        tenant: "acme".into(),
        client_id: me.0.clone(),
        blocked: Some(blocked),
        revoke_tokens,
        ..Default::default()
    };
    fixture
        .admin_clients
        .apps
        .update_app(block(true, true))
        .await?;
    let refused = server.issue("acme", &me.0, &me.1, ARCHIVE, &[]).await;
    assert_eq!(
        refused.err().map(|status| reason(&status)),
        Some((tonic::Code::Unauthenticated, "invalid_client".into()))
    );
    // The archive's resource server (a grant without scopes on it) may introspect its tokens.
    let created = fixture
        .admin_clients
        .apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: "archive-server".into(),
            grants: vec![crate::fixtures::grant(ARCHIVE, &[])],
            ..Default::default()
        })
        .await?
        .into_inner();
    let resource_server = (
        created.app.context("no app")?.client_id,
        created.client_secret,
    );
    let resource_server = (resource_server.0.as_str(), resource_server.1.as_str());
    assert_eq!(
        introspect(&server, resource_server, &held).await?["active"],
        false
    );

    server.clock.advance_to_next_second(); // past the cut-off second
    fixture
        .admin_clients
        .apps
        .update_app(block(false, false))
        .await?;
    let fresh = token(&server, &fixture).await?;
    assert_eq!(
        introspect(&server, resource_server, &fresh).await?["active"],
        true
    );
    assert_eq!(
        introspect(&server, resource_server, &held).await?["active"],
        false,
        "unblocking does not revive old tokens"
    );
    Ok(())
}

async fn key_rotation(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    let mut keys: KeyClient =
        tollgate_proto::v1::key_service_client::KeyServiceClient::with_interceptor(
            server.channel(),
            tollgate_testkit::BearerAuth::new(&admin_token)?,
        );
    let before = token(&server, &fixture).await?;
    let old_kid = jsonwebtoken::decode_header(&before)?.kid.context("kid")?;

    // With a propagation delay: published at once, not signing yet.
    let pending = keys
        .rotate_signing_key(RotateSigningKeyRequest {
            tenant: "acme".into(),
            propagation_delay_seconds: Some(300),
        })
        .await?
        .into_inner()
        .keys;
    let states = |keys: &[tollgate_proto::v1::SigningKeyInfo]| {
        let mut states: Vec<(String, String)> = keys
            .iter()
            .map(|key| (key.kid.clone(), key.state.clone()))
            .collect();
        states.sort();
        states
    };
    let new_kid = pending
        .iter()
        .find(|key| key.kid != old_kid)
        .context("no new key")?
        .kid
        .clone();
    let mut expected = vec![
        (old_kid.clone(), "active".to_owned()),
        (new_kid.clone(), "pending".to_owned()),
    ];
    expected.sort();
    assert_eq!(states(&pending), expected);
    let jwks = fetch_jwks(&server, "acme").await?;
    assert!(jwks.find(&new_kid).is_some() && jwks.find(&old_kid).is_some());
    assert_eq!(
        jsonwebtoken::decode_header(&token(&server, &fixture).await?)?.kid,
        Some(old_kid.clone())
    );

    // Rotating again with no delay signs with the newest key at once; both others stop
    // signing and stay published until their tokens have expired.
    let rotated = keys
        .rotate_signing_key(RotateSigningKeyRequest {
            tenant: "acme".into(),
            propagation_delay_seconds: Some(0),
        })
        .await?
        .into_inner()
        .keys;
    let newest = rotated
        .iter()
        .find(|key| key.kid != old_kid && key.kid != new_kid)
        .context("no newest key")?
        .kid
        .clone();
    let mut expected = vec![
        (old_kid.clone(), "retiring".to_owned()),
        (new_kid.clone(), "retiring".to_owned()),
        (newest.clone(), "active".to_owned()),
    ];
    expected.sort();
    assert_eq!(states(&rotated), expected);
    assert!(
        rotated
            .iter()
            .filter(|key| key.kid != newest)
            .all(|key| key.remove_time.is_some())
    );
    let after = token(&server, &fixture).await?;
    assert_eq!(
        jsonwebtoken::decode_header(&after)?.kid,
        Some(newest.clone())
    );
    let jwks = fetch_jwks(&server, "acme").await?;
    assert_eq!(jwks.keys.len(), 3);
    // Tokens signed before the rotation still verify, with a standard library and by introspection.
    verify_with_jwks(&before, &jwks, &fixture.issuer, ARCHIVE)?;
    verify_with_jwks(&after, &jwks, &fixture.issuer, ARCHIVE)?;
    let me = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    assert_eq!(introspect(&server, me, &before).await?["active"], true);
    // Admin tokens signed by the old key keep working too.
    let listed = keys
        .list_keys(ListKeysRequest {
            tenant: "acme".into(),
        })
        .await?
        .into_inner()
        .keys;
    assert_eq!(listed, rotated);
    Ok(())
}

async fn rate_limits(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    fixture
        .admin_clients
        .apps
        .update_app(UpdateAppRequest {
            tenant: "acme".into(),
            client_id: fixture.client_id.clone(),
            rate_limit_per_second: Some(1),
            ..Default::default()
        })
        .await?;
    let me = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    let form = [("grant_type", "client_credentials"), ("audience", ARCHIVE)];
    // A burst of two is admitted, the third is 429 with Retry-After and RateLimit fields.
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..3 {
        let response = post(&server, "token", me, &form).await?;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            limited = Some(response);
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    let limited = limited.context("no 429")?;
    let header = |name: &str| {
        limited
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert!(
        header("retry-after")
            .and_then(|value| value.parse::<u64>().ok())
            .is_some_and(|seconds| seconds >= 1)
    );
    assert_eq!(header("ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
    let body: Value = limited.json().await?;
    assert_eq!(body["error"], "temporarily_unavailable");

    let grpc = server
        .issue("acme", me.0, me.1, ARCHIVE, &[])
        .await
        .err()
        .context("over the limit over gRPC")?;
    assert_eq!(
        reason(&grpc),
        (tonic::Code::ResourceExhausted, "resource_exhausted".into())
    );
    use tonic_types::StatusExt;
    assert!(
        grpc.get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .is_some_and(|delay| delay > Duration::ZERO)
    );

    // After a second, one more is admitted.
    server.clock.advance(Duration::from_millis(1_100));
    assert_eq!(post(&server, "token", me, &form).await?.status(), 200);

    // Failed authentications are damped per client id, but never lock the real client out.
    let mut wrong = Vec::new();
    for _ in 0..40 {
        wrong.push(
            post(&server, "token", (me.0, "tgsec_wrong"), &form)
                .await?
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        wrong.iter().filter(|status| **status == 401).count(),
        30,
        "{wrong:?}"
    );
    assert!(wrong[30..].iter().all(|status| *status == 429), "{wrong:?}");
    server.clock.advance(Duration::from_millis(1_100));
    assert_eq!(
        post(&server, "token", me, &form).await?.status(),
        200,
        "the real client still gets in"
    );

    // ... and per source address: one failure each for many client ids from one address.
    // (This address already spent part of its allowance above, so the damping starts early.)
    let mut by_address = Vec::new();
    for index in 0..40 {
        let client_id = format!("unknown-{index}");
        by_address.push(
            post(&server, "token", (&client_id, "tgsec_wrong"), &form)
                .await?
                .status()
                .as_u16(),
        );
    }
    let first_limited = by_address
        .iter()
        .position(|status| *status == 429)
        .context("no damping per address")?;
    assert!(
        by_address[..first_limited]
            .iter()
            .all(|status| *status == 401),
        "{by_address:?}"
    );
    assert!(
        by_address[first_limited..]
            .iter()
            .all(|status| *status == 429),
        "{by_address:?}"
    );
    // The app's own request rate (1/s) has refilled after a second; damping never applies to a
    // correct secret.
    server.clock.advance(Duration::from_millis(1_100));
    assert_eq!(
        post(&server, "token", me, &form).await?.status(),
        200,
        "a correct secret is never damped"
    );
    Ok(())
}

/// Each secret records when it last obtained a token (written in the background: every ten
/// seconds, every [`tollgate_testkit::USAGE_FLUSH`] on a test server).
async fn secrets_record_their_last_use(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let list = ListSecretsRequest {
        tenant: "acme".into(),
        client_id: fixture.client_id.clone(),
    };
    let before = fixture
        .admin_clients
        .apps
        .list_secrets(list.clone())
        .await?
        .into_inner()
        .secrets;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].last_used_time, None, "never used yet");
    let issued_at = tollgate_domain::Clock::now(&server.clock);
    token(&server, &fixture).await?;
    let started = std::time::Instant::now();
    let last_used = loop {
        let secrets = fixture
            .admin_clients
            .apps
            .list_secrets(list.clone())
            .await?
            .into_inner()
            .secrets;
        if let Some(time) = secrets[0].last_used_time {
            break time.seconds;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "last use not recorded within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        (issued_at..=issued_at + 1).contains(&last_used),
        "last used {last_used}, issued {issued_at}"
    );
    Ok(())
}

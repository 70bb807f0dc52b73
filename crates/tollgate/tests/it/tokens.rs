//! Issuance over gRPC and HTTP, verified with a standard JWT library through the JWKS.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Value, json};
use tollgate_proto::v1::{
    CreateApiRequest, CreateAppRequest, DeleteApiRequest, GetTenantRequest, GrantList,
    ScopeDefinitionList, UpdateApiRequest, UpdateAppRequest,
};
use tollgate_testkit::TestServer;

use crate::fixtures::{
    ARCHIVE, Fixture, fetch_jwks, grant, post_token_form, reason, scopes, verify_with_jwks,
};

crate::backend_tests!(
    grpc_token_carries_every_claim,
    http_token_with_basic_and_post,
    scope_selection_never_narrows_silently,
    algorithms_per_tenant_and_per_api,
    changes_take_effect_on_the_next_request,
    invalid_client_is_uniform,
);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

async fn grpc_token_carries_every_claim(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let before = now();
    let response = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await?;
    assert_eq!(response.token_type, "Bearer");
    assert_eq!(response.expires_in, 900);
    assert_eq!(response.scopes, ["archive:read", "archive:write"]);

    let jwks = fetch_jwks(&server, "acme").await?;
    let (header, claims) = verify_with_jwks(
        &response.access_token,
        &jwks,
        "http://acme.hub.localhost:8080/",
        ARCHIVE,
    )?;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(
        header
            .kid
            .as_deref()
            .is_some_and(|kid| kid.starts_with("key_"))
    );

    let iat = claims["iat"].as_i64().context("iat")?;
    assert!(
        iat >= before && iat <= now(),
        "iat {iat} not within the call"
    );
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert_eq!(claims["exp"].as_i64(), Some(iat + 900));
    let sid = claims["sid"].as_str().context("sid")?.to_owned();
    assert!(sid.starts_with("sec_"), "sid {sid}");
    let jti = claims["jti"].as_str().context("jti")?.to_owned();
    assert_eq!(jti.len(), 22, "128-bit jti, base64url");
    let expected = json!({
        "iss": "http://acme.hub.localhost:8080/",
        "sub": format!("{}@client", fixture.client_id),
        "aud": ARCHIVE,
        "iat": iat, "nbf": iat, "exp": iat + 900,
        "jti": jti,
        "cid": fixture.tenant_id,
        "sid": sid,
        "scp": ["archive:read", "archive:write"],
        "scope": "archive:read archive:write",
        "client_id": fixture.client_id,
        "gty": "client_credentials",
    });
    assert_eq!(claims, expected);

    // The tenant id in `cid` is the one management reports.
    let tenant = fixture
        .admin_clients
        .tenants
        .clone()
        .get_tenant(GetTenantRequest {
            name: "acme".into(),
        })
        .await;
    // A tenant admin may not read tenants; the system admin can.
    assert_eq!(
        reason(&tenant.err().context("tenant admin read a tenant")?).0,
        tonic::Code::PermissionDenied
    );
    let mut system = server.system_admin().await?;
    let tenant = system
        .tenants
        .get_tenant(GetTenantRequest {
            name: "acme".into(),
        })
        .await?
        .into_inner();
    assert_eq!(tenant.id, fixture.tenant_id);

    // Every token is unique.
    let second = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await?;
    let (_, second_claims) =
        verify_with_jwks(&second.access_token, &jwks, &fixture.issuer, ARCHIVE)?;
    assert_ne!(second_claims["jti"], claims["jti"]);
    Ok(())
}

async fn http_token_with_basic_and_post(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let jwks = fetch_jwks(&server, "acme").await?;
    let id = fixture.client_id.as_str();
    let secret = fixture.client_secret.as_str();

    // client_secret_basic, form body.
    let basic = post_token_form(
        &server,
        "acme",
        Some((id, secret)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
            ("scope", "archive:read"),
        ],
    )
    .await?;
    // client_secret_post, RFC 8707 `resource` instead of `audience`.
    let post = post_token_form(
        &server,
        "acme",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("resource", ARCHIVE),
        ],
    )
    .await?;
    // The seed JSON format, addressed by Host instead of path.
    let json_body = reqwest::Client::new()
        .post(format!("{}/oauth/token", server.http_url))
        .header("host", "acme.hub.localhost:8080")
        .json(&json!({
            "grant_type": "client_credentials",
            "client_id": id,
            "client_secret": secret,
            "audience": ARCHIVE,
        }))
        .send()
        .await?;

    for (response, scope) in [
        (basic, "archive:read"),
        (post, "archive:read archive:write"),
        (json_body, "archive:read archive:write"),
    ] {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["pragma"], "no-cache");
        assert!(
            response.headers()["content-type"]
                .to_str()?
                .starts_with("application/json")
        );
        let body: Value = response.json().await?;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], scope);
        let token = body["access_token"].as_str().context("access_token")?;
        let (_, claims) = verify_with_jwks(token, &jwks, &fixture.issuer, ARCHIVE)?;
        assert_eq!(claims["scope"], scope);
        assert_eq!(claims["client_id"], id);
    }
    Ok(())
}

async fn scope_selection_never_narrows_silently(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let (id, secret) = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    let subset = server
        .issue("acme", id, secret, ARCHIVE, &["archive:write"])
        .await?;
    assert_eq!(subset.scopes, ["archive:write"]);

    let not_held = server
        .issue(
            "acme",
            id,
            secret,
            ARCHIVE,
            &["archive:read", "archive:admin"],
        )
        .await
        .err()
        .context("a scope not held was granted")?;
    assert_eq!(
        reason(&not_held),
        (tonic::Code::PermissionDenied, "invalid_scope".into())
    );
    assert_eq!(
        not_held.message(),
        "scope archive:admin is not granted to the app on this API"
    );

    let http = post_token_form(
        &server,
        "acme",
        Some((id, secret)),
        &[
            ("grant_type", "client_credentials"),
            ("audience", ARCHIVE),
            ("scope", "archive:read archive:admin"),
        ],
    )
    .await?;
    assert_eq!(http.status(), 400);
    let body: Value = http.json().await?;
    assert_eq!(body["error"], "invalid_scope");
    Ok(())
}

async fn algorithms_per_tenant_and_per_api(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::with_alg(&server, "edd", "EdDSA").await?;
    let rsa_api = "https://legacy.example.com/";
    fixture
        .admin_clients
        .apis
        .create_api(CreateApiRequest {
            tenant: "edd".into(),
            name: "Legacy".into(),
            identifier: rsa_api.into(),
            scopes: scopes(&["legacy:read"]),
            token_lifetime_seconds: 0,
            signing_alg: "RS256".into(),
        })
        .await?;
    fixture
        .admin_clients
        .apps
        .update_app(UpdateAppRequest {
            tenant: "edd".into(),
            client_id: fixture.client_id.clone(),
            grants: Some(GrantList {
                grants: vec![
                    grant(ARCHIVE, &["archive:read"]),
                    grant(rsa_api, &["legacy:read"]),
                ],
            }),
            ..Default::default()
        })
        .await?;
    let jwks = fetch_jwks(&server, "edd").await?;
    let algs: Vec<_> = jwks
        .keys
        .iter()
        .filter_map(|key| key.common.key_algorithm)
        .collect();
    assert_eq!(algs.len(), 2, "one EdDSA and one RS256 key: {algs:?}");

    for (audience, expected_alg, lifetime) in [
        (ARCHIVE, jsonwebtoken::Algorithm::EdDSA, 900),
        (rsa_api, jsonwebtoken::Algorithm::RS256, 3600),
    ] {
        let token = server
            .issue(
                "edd",
                &fixture.client_id,
                &fixture.client_secret,
                audience,
                &[],
            )
            .await?;
        assert_eq!(token.expires_in, lifetime);
        let (header, _) = verify_with_jwks(&token.access_token, &jwks, &fixture.issuer, audience)?;
        assert_eq!(header.alg, expected_alg);
    }
    Ok(())
}

async fn changes_take_effect_on_the_next_request(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let (id, secret) = (fixture.client_id.clone(), fixture.client_secret.clone());
    let issue = |scopes: &'static [&'static str]| {
        let server = &server;
        let (id, secret) = (id.clone(), secret.clone());
        async move { server.issue("acme", &id, &secret, ARCHIVE, scopes).await }
    };
    assert!(issue(&["archive:write"]).await.is_ok());

    // Narrow the grant: archive:write is gone at once.
    let update = |grants: Option<GrantList>, blocked: Option<bool>| UpdateAppRequest {
        tenant: "acme".into(),
        client_id: id.clone(),
        grants,
        blocked,
        ..Default::default()
    };
    fixture
        .admin_clients
        .apps
        .update_app(update(
            Some(GrantList {
                grants: vec![grant(ARCHIVE, &["archive:read"])],
            }),
            None,
        ))
        .await?;
    let narrowed = issue(&["archive:write"])
        .await
        .err()
        .context("narrowed scope still granted")?;
    assert_eq!(
        reason(&narrowed),
        (tonic::Code::PermissionDenied, "invalid_scope".into())
    );
    assert_eq!(issue(&[]).await?.scopes, ["archive:read"]);

    // Remove every grant: unauthorized_client.
    fixture
        .admin_clients
        .apps
        .update_app(update(Some(GrantList { grants: vec![] }), None))
        .await?;
    let no_grant = issue(&[]).await.err().context("token without a grant")?;
    assert_eq!(
        reason(&no_grant),
        (tonic::Code::PermissionDenied, "unauthorized_client".into())
    );

    // Widen again, then block: invalid_client; unblock: works.
    fixture
        .admin_clients
        .apps
        .update_app(update(
            Some(GrantList {
                grants: vec![grant(ARCHIVE, &["archive:read", "archive:write"])],
            }),
            Some(true),
        ))
        .await?;
    let blocked = issue(&[]).await.err().context("blocked app got a token")?;
    assert_eq!(
        reason(&blocked),
        (tonic::Code::Unauthenticated, "invalid_client".into())
    );
    fixture
        .admin_clients
        .apps
        .update_app(update(None, Some(false)))
        .await?;
    assert_eq!(issue(&[]).await?.scopes, ["archive:read", "archive:write"]);

    // The API drops a scope: grants lose it.
    fixture
        .admin_clients
        .apis
        .update_api(UpdateApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
            scopes: Some(ScopeDefinitionList {
                scopes: scopes(&["archive:read"]),
            }),
            ..Default::default()
        })
        .await?;
    assert_eq!(issue(&[]).await?.scopes, ["archive:read"]);

    // Delete the API: invalid_target.
    fixture
        .admin_clients
        .apis
        .delete_api(DeleteApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
        })
        .await?;
    let gone = issue(&[]).await.err().context("token for a deleted API")?;
    assert_eq!(
        reason(&gone),
        (tonic::Code::InvalidArgument, "invalid_target".into())
    );

    // A second app made afterwards works straight away.
    fixture
        .admin_clients
        .apis
        .create_api(CreateApiRequest {
            tenant: "acme".into(),
            name: "Archive again".into(),
            identifier: ARCHIVE.into(),
            scopes: scopes(&["archive:read"]),
            token_lifetime_seconds: 60,
            signing_alg: String::new(),
        })
        .await?;
    let app = fixture
        .admin_clients
        .apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: "reader".into(),
            description: String::new(),
            grants: vec![grant(ARCHIVE, &["archive:read"])],
        })
        .await?
        .into_inner();
    let reader = app.app.context("app")?;
    let token = server
        .issue("acme", &reader.client_id, &app.client_secret, ARCHIVE, &[])
        .await?;
    assert_eq!(token.expires_in, 60);
    Ok(())
}

async fn invalid_client_is_uniform(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let _other = Fixture::new(&server, "globex").await?;
    let id = fixture.client_id.as_str();
    let secret = fixture.client_secret.as_str();
    let cases = [
        ("unknown tenant", "nosuchtenant", id, secret),
        ("other tenant", "globex", id, secret),
        ("unknown client", "acme", "nosuchclient", secret),
        ("wrong secret", "acme", id, "tgsec_wrong"),
    ];
    for (case, tenant, client_id, client_secret) in cases {
        let status = server
            .issue(tenant, client_id, client_secret, ARCHIVE, &[])
            .await
            .err()
            .with_context(|| format!("{case}: token issued"))?;
        assert_eq!(
            (reason(&status), status.message()),
            (
                (tonic::Code::Unauthenticated, "invalid_client".into()),
                "client authentication failed"
            ),
            "{case}"
        );
        let http = post_token_form(
            &server,
            tenant,
            Some((client_id, client_secret)),
            &[("grant_type", "client_credentials"), ("audience", ARCHIVE)],
        )
        .await?;
        assert_eq!(http.status(), 401, "{case}");
        assert!(http.headers().contains_key("www-authenticate"), "{case}");
        let body: Value = http.json().await?;
        assert_eq!(body["error"], "invalid_client", "{case}");
    }
    Ok(())
}

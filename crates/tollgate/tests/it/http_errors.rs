//! Every error path of `POST /oauth/token`, one line per case (RFC 6749 §5.2, RFC 8707).

use base64::Engine as _;
use serde_json::Value;
use tollgate_proto::v1::CreateApiRequest;
use tollgate_testkit::TestServer;

use crate::fixtures::{ARCHIVE, Fixture, encode_form, scopes};

crate::backend_tests!(token_endpoint_errors);

/// One request: method, content type, extra Authorization header, body.
struct Case {
    name: &'static str,
    method: reqwest::Method,
    content_type: &'static str,
    authorization: Option<String>,
    body: String,
}

async fn token_endpoint_errors(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let other_api = "https://other.example.com/";
    fixture
        .admin_clients
        .apis
        .create_api(CreateApiRequest {
            tenant: "acme".into(),
            name: "Other".into(),
            identifier: other_api.into(),
            scopes: scopes(&["other:read"]),
            token_lifetime_seconds: 0,
            signing_alg: String::new(),
        })
        .await?;
    let id = fixture.client_id.clone();
    let secret = fixture.client_secret.clone();
    let basic = Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    ));
    let bad_secret = Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:tgsec_nope"))
    ));
    let form = |pairs: &[(&str, &str)]| encode_form(pairs);
    let gt = ("grant_type", "client_credentials");
    let aud = ("audience", ARCHIVE);
    let post = |name, authorization: &Option<String>, body: String| Case {
        name,
        method: reqwest::Method::POST,
        content_type: "application/x-www-form-urlencoded",
        authorization: authorization.clone(),
        body,
    };
    let json = |name, body: &str| Case {
        name,
        method: reqwest::Method::POST,
        content_type: "application/json",
        authorization: basic.clone(),
        body: body.to_owned(),
    };
    let none = None;
    #[rustfmt::skip]
    let cases: Vec<(Case, u16, &str)> = vec![
        (post("missing grant_type", &basic, form(&[aud])), 400, "invalid_request"),
        (post("other grant type", &basic, form(&[("grant_type", "password"), aud])), 400, "unsupported_grant_type"),
        (post("no credentials", &none, form(&[gt, aud])), 401, "invalid_client"),
        (post("wrong secret", &bad_secret, form(&[gt, aud])), 401, "invalid_client"),
        (post("malformed basic", &Some("Basic !!!".into()), form(&[gt, aud])), 401, "invalid_client"),
        (post("bearer instead of basic", &Some("Bearer abc".into()), form(&[gt, aud])), 401, "invalid_client"),
        (post("secret in body", &none, form(&[gt, aud, ("client_id", &id), ("client_secret", "tgsec_nope")])), 401, "invalid_client"),
        (post("two methods", &basic, form(&[gt, aud, ("client_secret", &secret)])), 400, "invalid_request"),
        (post("basic id differs from body id", &basic, form(&[gt, aud, ("client_id", "someoneelse")])), 400, "invalid_request"),
        (post("client id with @", &none, form(&[gt, aud, ("client_id", "a@b"), ("client_secret", &secret)])), 401, "invalid_client"),
        (post("repeated audience", &basic, form(&[gt, aud, aud])), 400, "invalid_request"),
        (post("repeated grant_type", &basic, form(&[gt, gt, aud])), 400, "invalid_request"),
        (post("missing audience", &basic, form(&[gt])), 400, "invalid_request"),
        (post("empty audience", &basic, form(&[gt, ("audience", "")])), 400, "invalid_request"),
        (post("audience and resource differ", &basic, form(&[gt, aud, ("resource", other_api)])), 400, "invalid_request"),
        (post("malformed audience", &basic, form(&[gt, ("audience", "has space")])), 400, "invalid_request"),
        (post("unknown audience", &basic, form(&[gt, ("audience", "https://nope.example.com/")])), 400, "invalid_target"),
        (post("no grant on the api", &basic, form(&[gt, ("audience", other_api)])), 400, "unauthorized_client"),
        (post("scope not held", &basic, form(&[gt, aud, ("scope", "archive:admin")])), 400, "invalid_scope"),
        (post("scope of another api", &basic, form(&[gt, aud, ("scope", "other:read")])), 400, "invalid_scope"),
        (post("malformed scope", &basic, form(&[gt, aud, ("scope", "bad\"quote")])), 400, "invalid_scope"),
        (json("json non-string value", r#"{"grant_type":"client_credentials","audience":7}"#), 400, "invalid_request"),
        (json("json duplicate key", r#"{"grant_type":"client_credentials","audience":"a","audience":"b"}"#), 400, "invalid_request"),
        (json("json not an object", r#"["grant_type"]"#), 400, "invalid_request"),
        (Case { content_type: "text/plain", ..post("unsupported content type", &basic, form(&[gt, aud])) }, 400, "invalid_request"),
    ];
    let client = reqwest::Client::new();
    let url = format!("{}/t/acme/oauth/token", server.http_url);
    for (case, status, error) in cases {
        let mut request = client
            .request(case.method, &url)
            .header("content-type", case.content_type)
            .body(case.body);
        if let Some(authorization) = &case.authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await?;
        let name = case.name;
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        assert_eq!(response.headers()["pragma"], "no-cache", "{name}");
        assert_eq!(
            response.headers().contains_key("www-authenticate"),
            status == 401,
            "{name}: WWW-Authenticate only with 401"
        );
        let body: Value = response.json().await?;
        assert_eq!(body["error"], error, "{name}: {body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(!description.is_empty(), "{name}: no error_description");
        assert!(!description.contains(&secret), "{name}: secret echoed");
    }

    // 405 for other methods, 413 for oversized bodies.
    let get = client.get(&url).send().await?;
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let huge = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "x".repeat(64 * 1024)
        ))
        .send()
        .await?;
    assert_eq!(huge.status(), 413);

    // A token request that fails changes nothing: the right request still works.
    let ok = client
        .post(&url)
        .header("authorization", basic.as_deref().unwrap_or_default())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[gt, aud]))
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    Ok(())
}

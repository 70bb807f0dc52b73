//! Property tests of the whole router, in-process (`oneshot`) against the fake backend:
//! arbitrary methods, paths, hosts, headers and bodies never make the gateway fail (no panic,
//! no 5xx), every refusal is a well-formed RFC 6749 §5.2 body, and the tenant named in the
//! path and the tenant named in the host are the same tenant.
//!
//! The fake backend fails on purpose for a few scripted audiences, tokens and tenants
//! (`https://backend/…`, `backend:…`, `down`, `busy`); the generated inputs avoid exactly
//! those, so any 5xx here is the gateway's own.
//!
//! Determinism: every run explores the same cases (a fixed seed; `PROPTEST_RNG_SEED` explores
//! others) and nothing is written to `proptest-regressions/`: a failure is reproduced by the
//! same seed, and is then kept as an ordinary example test in `router.rs`.

use axum::http::{HeaderValue, Method, Uri};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};

use super::*;

/// Cases per property: a request through the router costs tens of microseconds.
const CASES: u32 = 5000;

/// The seed of every run unless `PROPTEST_RNG_SEED` names another.
const SEED: u64 = 0x7011_6a7e;

/// [`CASES`] cases from [`SEED`] (or the seed `PROPTEST_RNG_SEED` names), and no
/// `proptest-regressions/` files.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(CASES);
    config.failure_persistence = None;
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}

/// Every `error` a refusal of the gateway may carry: RFC 6749 §5.2's codes, RFC 8707's
/// `invalid_target`, `temporarily_unavailable` for 429, and `not_found` for a 404.
const ERROR_CODES: [&str; 9] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "temporarily_unavailable",
    "not_found",
];

/// Whether the fake backend was scripted to fail for this text (see [`FakeBackend`]).
fn is_scripted(text: &str) -> bool {
    text.contains("backend") || text.contains("down") || text.contains("busy")
}

/// One generated request, kept as parts so that a failure prints readably.
#[derive(Debug, Clone)]
struct Generated {
    method: Method,
    path: String,
    host: Option<String>,
    content_type: Option<String>,
    authorization: Option<String>,
    content_length: Option<String>,
    traceparent: Option<String>,
    body: Vec<u8>,
}

impl Generated {
    fn request(&self) -> TestResult<Request<Body>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(Uri::try_from(self.path.as_str())?);
        let headers = [
            (header::HOST, &self.host),
            (header::CONTENT_TYPE, &self.content_type),
            (header::AUTHORIZATION, &self.authorization),
            (header::CONTENT_LENGTH, &self.content_length),
            (HeaderName::from_static("traceparent"), &self.traceparent),
        ];
        for (name, value) in headers {
            // A value no client could send in a header is left out, not a reason to skip
            // the case.
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::try_from(v).ok()) {
                builder = builder.header(name, value);
            }
        }
        Ok(builder.body(Body::from(self.body.clone()))?)
    }
}

fn form_escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A tenant as a path segment or host label: the fake's good tenant, plausible names, near
/// misses (case, dots, length) and percent escapes.
fn tenant_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("acme".to_owned()),
        2 => "[a-z0-9-]{1,64}",
        1 => "[a-zA-Z0-9._~%-]{0,12}",
    ]
    .prop_filter("not a scripted tenant", |tenant| !is_scripted(tenant))
}

fn path() -> impl Strategy<Value = String> {
    let endpoint = prop_oneof![
        8 => Just("/oauth/token"),
        1 => Just("/oauth/revoke"),
        1 => Just("/oauth/introspect"),
        1 => Just("/.well-known/jwks.json"),
        1 => Just("/.well-known/oauth-authorization-server"),
        1 => Just("/.well-known/openid-configuration"),
        1 => Just("/healthz"),
        1 => Just(""),
    ];
    let prefix = prop_oneof![
        2 => Just(String::new()),
        3 => tenant_text().prop_map(|tenant| format!("/t/{tenant}")),
    ];
    let tail = prop_oneof![
        12 => Just(String::new()),
        1 => Just("/".to_owned()),
        1 => "/[a-zA-Z0-9._~%-]{0,12}",
        1 => "\\?[a-z_=&%0-9]{0,24}",
    ];
    prop_oneof![
        8 => (prefix, endpoint, tail).prop_map(|(prefix, endpoint, tail)| {
            let path = format!("{prefix}{endpoint}{tail}");
            if path.starts_with('/') { path } else { format!("/{path}") }
        }),
        1 => "/[a-zA-Z0-9/._~%:@!$&'()*+,;=-]{0,40}",
        1 => "/\\.well-known/(oauth-authorization-server|openid-configuration)/t/[a-z%0-9]{0,8}/?",
    ]
    .prop_filter("not a scripted tenant", |path| !is_scripted(path))
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        8 => Just(Method::POST),
        2 => Just(Method::GET),
        1 => prop::sample::select(vec![
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::TRACE,
        ]),
        1 => "[A-Z]{1,10}".prop_filter_map("a method token", |name| Method::from_bytes(name.as_bytes()).ok()),
    ]
}

fn host() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some(TENANT_HOST.to_owned())),
        2 => Just(Some(BARE_HOST.to_owned())),
        2 => (tenant_text(), "(:[0-9]{0,6})?")
            .prop_map(|(tenant, port)| Some(format!("{tenant}.hub.localhost{port}"))),
        1 => Just(None),
        1 => any::<String>().prop_map(Some),
    ]
    .prop_filter("not a scripted tenant", |host| {
        host.as_deref().is_none_or(|host| !is_scripted(host))
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        3 => Just(Some("application/json".to_owned())),
        1 => Just(Some("Application/JSON; charset=utf-8".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded;charset=UTF-8".to_owned())),
        1 => Just(None),
        1 => "[a-z/+;= -]{0,30}".prop_map(Some),
    ]
}

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        3 => Just(Some(basic("app", "s3cret"))),
        2 => ("[a-zA-Z0-9._~@:%-]{0,20}", "[a-zA-Z0-9:%+ ]{0,20}")
            .prop_map(|(id, secret)| Some(basic(&id, &secret))),
        1 => "(Basic|basic|Bearer|) ?[A-Za-z0-9+/=]{0,40}".prop_map(Some),
        1 => any::<String>().prop_map(Some),
    ]
}

/// A parameter value: valid ones, empty, near misses of each grammar, anything.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("client_credentials".to_owned()),
        2 => Just("app".to_owned()),
        2 => Just("s3cret".to_owned()),
        2 => Just(API.to_owned()),
        2 => "[a-z:]{1,8}( [a-z:]{1,8}){0,4}",
        1 => Just(String::new()),
        1 => "[a-zA-Z0-9 @\"\\\\:/._~-]{0,20}",
        1 => ("[a-z]{1,4}", 30..300usize).prop_map(|(part, count)| part.repeat(count)),
        1 => any::<String>(),
    ]
    .prop_filter("not a scripted value", |value| !is_scripted(value))
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "grant_type", "client_id", "client_secret", "audience", "resource", "scope",
            "token", "token_type_hint",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,10}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let entries = || vec((name(), value()), 0..10);
    prop_oneof![
        5 => entries().prop_map(|entries| {
            entries
                .iter()
                .map(|(name, value)| format!("{}={}", form_escape(name), form_escape(value)))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes()
        }),
        3 => entries().prop_map(|entries| {
            let members: Vec<String> = entries
                .iter()
                .map(|(name, value)| format!("{}:{}", Value::from(name.as_str()), Value::from(value.as_str())))
                .collect();
            format!("{{{}}}", members.join(",")).into_bytes()
        }),
        1 => vec(any::<u8>(), 0..512),
        // Around and far beyond the 16 KiB limit: many scopes, many parameters.
        1 => (1000..6000usize).prop_map(|count| {
            let mut body = format!("grant_type=client_credentials&client_id=app&client_secret=s3cret&audience={API_FORM}&scope=");
            body.push_str(&vec!["a"; count].join("+"));
            body.into_bytes()
        }),
        1 => (500..3000usize).prop_map(|count| "scope=&".repeat(count).into_bytes()),
    ]
}

fn generated() -> impl Strategy<Value = Generated> {
    let headers = (
        host(),
        content_type(),
        authorization(),
        prop_oneof![
            8 => Just(None),
            1 => any::<u64>().prop_map(|length| Some(length.to_string())),
            1 => "[0-9a-z -]{0,8}".prop_map(Some),
        ],
        prop_oneof![
            3 => Just(None),
            1 => "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]".prop_map(Some),
            1 => any::<String>().prop_map(Some),
        ],
    );
    (method(), path(), headers, body()).prop_map(
        |(method, path, (host, content_type, authorization, content_length, traceparent), body)| {
            Generated {
                method,
                path,
                host,
                content_type,
                authorization,
                content_length,
                traceparent,
                body,
            }
        },
    )
}

/// Runs `property` on `cases` generated by `strategy`, each awaited on one runtime.
fn run<T: std::fmt::Debug>(
    strategy: impl Strategy<Value = T>,
    property: impl Fn(&tokio::runtime::Runtime, T) -> Result<(), TestCaseError>,
) -> TestResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut runner = TestRunner::new(config());
    runner
        .run(&strategy, |value| property(&runtime, value))
        .map_err(|error| error.to_string().into())
}

/// The number of token requests the backend has received. (Its `requests()` copies them all,
/// which thousands of cases cannot afford.)
fn recorded_count(backend: &FakeBackend) -> usize {
    backend.requests.lock().map_or(0, |requests| requests.len())
}

/// The token request the backend received at `index`, if it did.
fn recorded_since(backend: &FakeBackend, index: usize) -> Option<Recorded> {
    backend.requests.lock().ok()?.get(index).cloned()
}

/// Token, revocation and introspection requests received so far.
fn calls_count(backend: &FakeBackend) -> usize {
    recorded_count(backend) + backend.calls.lock().map_or(0, |calls| calls.len())
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

/// Anything at all: no panic, no 5xx; the status is one the gateway's endpoints define, and
/// a refusal of a token, revocation or introspection request is a §5.2 JSON body with a
/// known `error`, never cached.
#[test]
fn any_request_gets_a_defined_answer() -> TestResult {
    let (router, backend) = gateway()?;
    run(generated(), |runtime, generated| {
        let request = generated.request().map_err(fail)?;
        let before = calls_count(&backend);
        let reply = runtime.block_on(send(&router, request)).map_err(fail)?;
        let status = reply.status.as_u16();
        prop_assert!(
            [200, 400, 401, 404, 405, 413].contains(&status),
            "status {status} for {generated:?}: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        // Only a well-formed request reaches the backend, at most once.
        let calls = calls_count(&backend) - before;
        prop_assert!(calls <= 1);
        let path = generated.path.split('?').next().unwrap_or_default();
        let is_oauth = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"]
            .iter()
            .any(|endpoint| path.ends_with(endpoint));
        if is_oauth && generated.method == Method::POST && status == 200 {
            prop_assert_eq!(calls, 1);
        }
        if is_oauth && status != 404 {
            prop_assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-store"));
        }
        let is_head = generated.method == Method::HEAD;
        // axum's own 405 for the discovery routes has no body; every other refusal has one.
        if status >= 400 && !is_head && !(status == 405 && reply.body.is_empty() && !is_oauth) {
            let body: Value = serde_json::from_slice(&reply.body).map_err(fail)?;
            let error = body["error"].as_str().unwrap_or_default();
            prop_assert!(ERROR_CODES.contains(&error), "error {error:?}");
            prop_assert!(body["error_description"].is_string());
        }
        if status == 401 {
            prop_assert_eq!(
                reply.header(header::WWW_AUTHENTICATE),
                Some(r#"Basic realm="tollgate""#)
            );
        }
        Ok(())
    })
}

/// How a near-valid token request departs from a valid one.
#[derive(Debug, Clone)]
enum Edit {
    Remove(prop::sample::Index),
    Repeat(prop::sample::Index),
    Empty(prop::sample::Index),
    Replace(prop::sample::Index, String),
    Add(String, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let index = any::<prop::sample::Index>();
    prop_oneof![
        index.clone().prop_map(Edit::Remove),
        index.clone().prop_map(Edit::Repeat),
        index.clone().prop_map(Edit::Empty),
        (index, value()).prop_map(|(index, value)| Edit::Replace(index, value)),
        (name(), value()).prop_map(|(name, value)| Edit::Add(name, value)),
    ]
}

/// A token request one to three edits away from a valid one, as a form or JSON, with the
/// credentials in the body or in Basic, under either tenant route.
#[derive(Debug, Clone)]
struct NearValid {
    path: &'static str,
    json: bool,
    basic: bool,
    edits: Vec<Edit>,
}

impl NearValid {
    fn request(&self) -> TestResult<Request<Body>> {
        let mut entries: Vec<(String, String)> = [
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "s3cret"),
            ("audience", API),
            ("scope", "read write"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        let mut authorization = None;
        if self.basic {
            entries.retain(|(name, _)| name != "client_id" && name != "client_secret");
            authorization = Some(basic("app", "s3cret"));
        }
        for edit in &self.edits {
            let len = entries.len().max(1);
            match edit {
                Edit::Remove(index) if !entries.is_empty() => {
                    entries.remove(index.index(len));
                }
                Edit::Repeat(index) => {
                    if let Some(entry) = entries.get(index.index(len)).cloned() {
                        entries.push(entry);
                    }
                }
                Edit::Empty(index) => {
                    if let Some(entry) = entries.get_mut(index.index(len)) {
                        entry.1.clear();
                    }
                }
                Edit::Replace(index, value) => {
                    if let Some(entry) = entries.get_mut(index.index(len)) {
                        entry.1.clone_from(value);
                    }
                }
                Edit::Add(name, value) => entries.push((name.clone(), value.clone())),
                Edit::Remove(_) => {}
            }
        }
        let (content_type, body) = if self.json {
            let members: Vec<String> = entries
                .iter()
                .map(|(name, value)| {
                    format!(
                        "{}:{}",
                        Value::from(name.as_str()),
                        Value::from(value.as_str())
                    )
                })
                .collect();
            ("application/json", format!("{{{}}}", members.join(",")))
        } else {
            let pairs: Vec<String> = entries
                .iter()
                .map(|(name, value)| format!("{}={}", form_escape(name), form_escape(value)))
                .collect();
            ("application/x-www-form-urlencoded", pairs.join("&"))
        };
        let mut request = Request::post(self.path)
            .header(header::HOST, TENANT_HOST)
            .header(header::CONTENT_TYPE, content_type);
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        Ok(request.body(Body::from(body))?)
    }
}

/// Token requests a few edits from valid (a parameter dropped, repeated, emptied, replaced
/// by anything, unknown ones added): an answer of the token endpoint's own, 200 with a
/// Bearer token or a §5.2 refusal whose `error` fits its status, and a success exactly when
/// the backend was asked, with values that passed every check.
#[test]
fn near_valid_token_requests_get_rfc_6749_answers() -> TestResult {
    let (router, backend) = gateway()?;
    let near_valid = (
        prop::sample::select(vec!["/oauth/token", "/t/acme/oauth/token"]),
        any::<bool>(),
        any::<bool>(),
        vec(edit(), 0..4),
    )
        .prop_map(|(path, json, basic, edits)| NearValid {
            path,
            json,
            basic,
            edits,
        });
    run(near_valid, |runtime, near_valid| {
        let request = near_valid.request().map_err(fail)?;
        let before = recorded_count(&backend);
        let reply = runtime.block_on(send(&router, request)).map_err(fail)?;
        let reached = recorded_since(&backend, before);
        let body: Value = serde_json::from_slice(&reply.body).map_err(fail)?;
        prop_assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-store"));
        match reply.status.as_u16() {
            200 => {
                let recorded = reached.ok_or_else(|| fail("200 without a backend call"))?;
                prop_assert_eq!(&body["access_token"], ACCESS_TOKEN);
                prop_assert_eq!(&body["token_type"], "Bearer");
                prop_assert_eq!(recorded.tenant.as_str(), "acme");
                prop_assert!(tollgate_domain::ClientId::parse(&recorded.client_id).is_ok());
                prop_assert!(!recorded.client_id.contains('@'));
                prop_assert!(!recorded.client_secret.is_empty());
                prop_assert!(tollgate_domain::ApiIdentifier::parse(&recorded.audience).is_ok());
                if let Some(scopes) = &recorded.scopes {
                    prop_assert_eq!(
                        ScopeSet::parse_delimited(scopes).map(|set| set.to_delimited()),
                        Ok(scopes.clone())
                    );
                }
            }
            status => {
                prop_assert!(
                    reached.is_none(),
                    "refused with {status} after a backend call"
                );
                let error = body["error"].as_str().unwrap_or_default();
                let allowed: &[&str] = match status {
                    400 => &["invalid_request", "unsupported_grant_type", "invalid_scope"],
                    401 => &["invalid_client"],
                    _ => &[],
                };
                prop_assert!(
                    allowed.contains(&error),
                    "{status} {error:?} for {near_valid:?}"
                );
            }
        }
        Ok(())
    })
}

/// A well-formed token request with `tenant` in the path, and the same with `tenant` as the
/// host's first label: both get the same answer, and a success reached the backend for the
/// same tenant. (Hosts compare case-insensitively, as DNS names do, and paths do not, so the
/// tenant is generated lowercase; both forms must refuse what is not a tenant name.)
#[test]
fn path_and_host_name_the_same_tenant() -> TestResult {
    let (router, backend) = gateway()?;
    let tenant = prop_oneof![
        "[a-z0-9-]{1,64}",
        "[a-z0-9._~-]{1,12}",
        Just("a".repeat(63)),
        Just("a".repeat(64)),
    ]
    .prop_filter("not a scripted tenant", |tenant| !is_scripted(tenant));
    run((tenant, any::<bool>()), |runtime, (tenant, basic_auth)| {
        let (authorization, body) = if basic_auth {
            (Some(basic("app", "s3cret")), unauthenticated())
        } else {
            (None, post_for(API))
        };
        let mut replies = Vec::new();
        for (path, host) in [
            (format!("/t/{tenant}/oauth/token"), BARE_HOST.to_owned()),
            (
                "/oauth/token".to_owned(),
                format!("{tenant}.hub.localhost:8080"),
            ),
        ] {
            let mut request = Request::post(path.as_str())
                .header(header::HOST, host.as_str())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            if let Some(authorization) = &authorization {
                request = request.header(header::AUTHORIZATION, authorization.as_str());
            }
            let request = request.body(Body::from(body.clone())).map_err(fail)?;
            let before = recorded_count(&backend);
            let reply = runtime.block_on(send(&router, request)).map_err(fail)?;
            let reached = recorded_since(&backend, before).map(|recorded| recorded.tenant);
            replies.push((reply.status, reply.body, reached));
        }
        prop_assert_eq!(&replies[0], &replies[1], "tenant {:?}", tenant);
        let (status, _, reached) = &replies[0];
        let is_tenant = TenantName::parse(&tenant).is_ok();
        prop_assert_eq!(*status == StatusCode::OK, is_tenant);
        prop_assert_eq!(reached.as_deref(), is_tenant.then_some(tenant.as_str()));
        Ok(())
    })
}

/// The `/t/<tenant>/` segment percent-encoded in any way, with a valid tenant in `Host`: the
/// path alone decides. The request reaches the backend for the decoded segment when that is
/// a tenant name, and otherwise is refused, never redirected to the host's tenant.
#[test]
fn an_escaped_path_tenant_is_decoded_never_replaced_by_the_host() -> TestResult {
    let (router, backend) = gateway()?;
    let segment = prop_oneof![
        "[a-z0-9-]{1,12}".prop_map(String::into_bytes),
        vec(any::<u8>(), 1..8),
    ];
    run(
        (segment, vec(any::<bool>(), 12)),
        |runtime, (bytes, escape)| {
            let mut encoded = String::new();
            for (index, byte) in bytes.iter().enumerate() {
                let must = !(byte.is_ascii_alphanumeric() || *byte == b'-');
                if must || escape.get(index).copied().unwrap_or(false) {
                    encoded.push_str(&format!("%{byte:02X}"));
                } else {
                    encoded.push(char::from(*byte));
                }
            }
            let request = Request::post(format!("/t/{encoded}/oauth/token"))
                .header(header::HOST, "other.hub.localhost:8080")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(post_for(API)))
                .map_err(fail)?;
            let before = recorded_count(&backend);
            let reply = runtime.block_on(send(&router, request)).map_err(fail)?;
            let reached = recorded_since(&backend, before).map(|recorded| recorded.tenant);
            let expected = std::str::from_utf8(&bytes)
                .ok()
                .filter(|name| TenantName::parse(name).is_ok());
            prop_assert_eq!(reached.as_deref(), expected, "path segment {:?}", encoded);
            let expected_status = if expected.is_some() { 200 } else { 401 };
            prop_assert_eq!(
                reply.status.as_u16(),
                expected_status,
                "path segment {:?}",
                encoded
            );
            Ok(())
        },
    )
}

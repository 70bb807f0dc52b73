//! The management API: CRUD, pagination, admin-token rules and tenant isolation.

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use serde_json::Value;
use tollgate_proto::v1::{
    CreateApiRequest, CreateAppRequest, CreateTenantRequest, DeleteApiRequest, DeleteAppRequest,
    DeleteTenantRequest, GetApiRequest, GetAppRequest, ListApisRequest, ListAppsRequest,
    ListTenantsRequest, UpdateApiRequest, UpdateTenantRequest,
};
use tollgate_testkit::{AdminCredentials, TestServer};

use crate::fixtures::{ARCHIVE, Fixture, fetch_jwks, grant, reason, scopes, verify_with_jwks};

crate::backend_tests!(
    bootstrap_writes_admin_credentials,
    tenants_crud_and_pagination,
    apis_crud,
    apps_crud,
    admin_token_rules,
    the_bearer_scheme_is_read_in_any_case,
    tenants_are_isolated,
);

fn code(result: Result<impl Sized, tonic::Status>) -> (tonic::Code, String) {
    match result {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(status) => reason(&status),
    }
}

async fn bootstrap_writes_admin_credentials(server: TestServer) -> anyhow::Result<()> {
    let path = server.data_dir.join("admin-credentials.json");
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let document: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut fields: Vec<_> = document
        .as_object()
        .context("object")?
        .keys()
        .cloned()
        .collect();
    fields.sort();
    assert_eq!(fields, ["audience", "client_id", "client_secret", "tenant"]);
    assert_eq!(document["tenant"], "system");
    assert_eq!(
        document["audience"],
        "http://system.hub.localhost:8080/manage"
    );
    assert!(
        document["client_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("tgsec_") && s.len() == 49)
    );
    let master_key_mode = std::fs::metadata(server.data_dir.join("master.key"))?
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(master_key_mode, 0o600);
    // The credentials work: the system admin lists tenants.
    let mut system = server.system_admin().await?;
    let tenants = system
        .tenants
        .list_tenants(ListTenantsRequest::default())
        .await?
        .into_inner();
    let names: Vec<_> = tenants.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["system"]);
    Ok(())
}

async fn tenants_crud_and_pagination(server: TestServer) -> anyhow::Result<()> {
    let mut system = server.system_admin().await?;
    for name in ["t3", "t1", "t2"] {
        let created = system
            .tenants
            .create_tenant(CreateTenantRequest {
                name: name.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let tenant = created.tenant.context("tenant")?;
        assert_eq!(tenant.display_name, name);
        assert_eq!(tenant.signing_alg, "ES256");
        assert_eq!(tenant.issuer, format!("http://{name}.hub.localhost:8080/"));
        let admin = created.admin.context("admin")?;
        assert_eq!(
            admin.audience,
            format!("http://{name}.hub.localhost:8080/manage")
        );
        assert!(admin.client_secret.starts_with("tgsec_"));
    }
    let duplicate = system
        .tenants
        .create_tenant(CreateTenantRequest {
            name: "t1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        code(duplicate),
        (tonic::Code::AlreadyExists, "already_exists".into())
    );
    let invalid = system
        .tenants
        .create_tenant(CreateTenantRequest {
            name: "Not_A_Label".into(),
            ..Default::default()
        })
        .await
        .err()
        .context("invalid name accepted")?;
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(
        invalid.message().starts_with("name: "),
        "{}",
        invalid.message()
    );
    let bad_alg = system
        .tenants
        .create_tenant(CreateTenantRequest {
            name: "t9".into(),
            signing_alg: "HS256".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(bad_alg).0, tonic::Code::InvalidArgument);

    // Pages of two, in name order.
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = system
            .tenants
            .list_tenants(ListTenantsRequest {
                page_size: 2,
                page_token: token,
            })
            .await?
            .into_inner();
        pages += 1;
        names.extend(page.tenants.into_iter().map(|tenant| tenant.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["system", "t1", "t2", "t3"]);
    assert_eq!(pages, 2);

    let updated = system
        .tenants
        .update_tenant(UpdateTenantRequest {
            name: "t1".into(),
            display_name: Some("Tenant One".into()),
            signing_alg: Some("EdDSA".into()),
            rate_limit_per_second: None,
        })
        .await?
        .into_inner();
    assert_eq!(
        (updated.display_name.as_str(), updated.signing_alg.as_str()),
        ("Tenant One", "EdDSA")
    );

    system
        .tenants
        .delete_tenant(DeleteTenantRequest { name: "t2".into() })
        .await?;
    let gone = system
        .tenants
        .delete_tenant(DeleteTenantRequest { name: "t2".into() })
        .await;
    assert_eq!(code(gone), (tonic::Code::NotFound, "not_found".into()));
    let system_delete = system
        .tenants
        .delete_tenant(DeleteTenantRequest {
            name: "system".into(),
        })
        .await;
    assert_eq!(
        code(system_delete),
        (
            tonic::Code::FailedPrecondition,
            "failed_precondition".into()
        )
    );
    // A deleted tenant's JWKS is gone too.
    let jwks = reqwest::get(format!("{}/t/t2/.well-known/jwks.json", server.http_url)).await?;
    assert_eq!(jwks.status(), 404);
    Ok(())
}

async fn apis_crud(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let apis = &mut fixture.admin_clients.apis;
    let duplicate = apis
        .create_api(CreateApiRequest {
            tenant: "acme".into(),
            name: "Again".into(),
            identifier: ARCHIVE.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        code(duplicate),
        (tonic::Code::AlreadyExists, "already_exists".into())
    );
    for (request, field) in [
        (
            CreateApiRequest {
                tenant: "acme".into(),
                name: "".into(),
                identifier: "https://x/".into(),
                ..Default::default()
            },
            "name: ",
        ),
        (
            CreateApiRequest {
                tenant: "acme".into(),
                name: "X".into(),
                identifier: "".into(),
                ..Default::default()
            },
            "identifier: ",
        ),
        (
            CreateApiRequest {
                tenant: "acme".into(),
                name: "X".into(),
                identifier: "https://x/".into(),
                token_lifetime_seconds: 10,
                ..Default::default()
            },
            "token_lifetime_seconds: ",
        ),
        (
            CreateApiRequest {
                tenant: "acme".into(),
                name: "X".into(),
                identifier: "https://x/".into(),
                signing_alg: "none".into(),
                ..Default::default()
            },
            "signing_alg: ",
        ),
        (
            CreateApiRequest {
                tenant: "acme".into(),
                name: "X".into(),
                identifier: "https://x/".into(),
                scopes: scopes(&["a b"]),
                ..Default::default()
            },
            "scopes: ",
        ),
        (
            CreateApiRequest {
                tenant: "acme".into(),
                name: "X".into(),
                identifier: "https://x/".into(),
                scopes: scopes(&["a", "a"]),
                ..Default::default()
            },
            "scopes: ",
        ),
    ] {
        let status = apis
            .create_api(request)
            .await
            .err()
            .context("invalid api accepted")?;
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{}",
            status.message()
        );
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    let api = apis
        .get_api(GetApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
        })
        .await?
        .into_inner();
    assert_eq!(api.name, "Archive");
    assert_eq!(api.token_lifetime_seconds, 900);
    assert_eq!(api.scopes.len(), 3);
    assert!(!api.is_system);
    let listed = apis
        .list_apis(ListApisRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let identifiers: Vec<_> = listed
        .apis
        .iter()
        .map(|api| (api.identifier.as_str(), api.is_system))
        .collect();
    assert_eq!(
        identifiers,
        [
            ("http://acme.hub.localhost:8080/manage", true),
            (ARCHIVE, false)
        ]
    );
    let updated = apis
        .update_api(UpdateApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
            name: Some("Archive v2".into()),
            token_lifetime_seconds: Some(120),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.token_lifetime_seconds,
            updated.scopes.len()
        ),
        ("Archive v2", 120, 3)
    );
    let manage = "http://acme.hub.localhost:8080/manage";
    let delete_builtin = apis
        .delete_api(DeleteApiRequest {
            tenant: "acme".into(),
            identifier: manage.into(),
        })
        .await;
    assert_eq!(
        code(delete_builtin),
        (
            tonic::Code::FailedPrecondition,
            "failed_precondition".into()
        )
    );
    apis.delete_api(DeleteApiRequest {
        tenant: "acme".into(),
        identifier: ARCHIVE.into(),
    })
    .await?;
    let missing = apis
        .get_api(GetApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
        })
        .await;
    assert_eq!(code(missing), (tonic::Code::NotFound, "not_found".into()));
    Ok(())
}

async fn apps_crud(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let apps = &mut fixture.admin_clients.apps;
    let unknown_api = apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: "x".into(),
            grants: vec![grant("https://nope/", &[])],
            ..Default::default()
        })
        .await
        .err()
        .context("grant on an unknown api accepted")?;
    assert_eq!(unknown_api.code(), tonic::Code::InvalidArgument);
    assert!(unknown_api.message().starts_with("grants: "));
    let undefined_scope = apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: "x".into(),
            grants: vec![grant(ARCHIVE, &["archive:delete"])],
            ..Default::default()
        })
        .await;
    assert_eq!(code(undefined_scope).0, tonic::Code::InvalidArgument);

    let app = apps
        .get_app(GetAppRequest {
            tenant: "acme".into(),
            client_id: fixture.client_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (
            app.name.as_str(),
            app.description.as_str(),
            app.blocked,
            app.is_system
        ),
        ("archiver", "writes archives", false, false)
    );
    assert_eq!(
        app.grants,
        [grant(ARCHIVE, &["archive:read", "archive:write"])]
    );
    assert!(!app.client_id.contains('@'));

    let listed = apps
        .list_apps(ListAppsRequest {
            tenant: "acme".into(),
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.apps.len(), 1);
    assert!(!listed.next_page_token.is_empty());
    let rest = apps
        .list_apps(ListAppsRequest {
            tenant: "acme".into(),
            page_size: 1,
            page_token: listed.next_page_token,
        })
        .await?
        .into_inner();
    assert_eq!(rest.apps.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let mut seen: Vec<_> = listed
        .apps
        .iter()
        .chain(&rest.apps)
        .map(|app| app.is_system)
        .collect();
    seen.sort();
    assert_eq!(seen, [false, true], "the admin app and ours");

    let admin_app = fixture.admin.client_id.clone();
    let delete_admin = apps
        .delete_app(DeleteAppRequest {
            tenant: "acme".into(),
            client_id: admin_app,
        })
        .await;
    assert_eq!(code(delete_admin).0, tonic::Code::FailedPrecondition);

    apps.delete_app(DeleteAppRequest {
        tenant: "acme".into(),
        client_id: fixture.client_id.clone(),
    })
    .await?;
    let token = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await;
    assert_eq!(
        code(token),
        (tonic::Code::Unauthenticated, "invalid_client".into())
    );
    Ok(())
}

/// Every management and audit call reads `authorization` the same way: the `Bearer` scheme
/// in any case (RFC 7235), one or more spaces, then the token; anything else is no token.
async fn the_bearer_scheme_is_read_in_any_case(server: TestServer) -> anyhow::Result<()> {
    use tollgate_proto::v1::ListEventsRequest;
    use tollgate_proto::v1::api_service_client::ApiServiceClient;
    use tollgate_proto::v1::audit_service_client::AuditServiceClient;

    let fixture = Fixture::new(&server, "acme").await?;
    let token = server.admin_token_for(&fixture.admin).await?;
    let missing = (tonic::Code::Unauthenticated, "unauthenticated".to_owned());
    for (authorization, expected) in [
        (format!("Bearer {token}"), (tonic::Code::Ok, String::new())),
        (format!("bearer {token}"), (tonic::Code::Ok, String::new())),
        (format!("BEARER {token}"), (tonic::Code::Ok, String::new())),
        (
            format!("bEaReR   {token}"),
            (tonic::Code::Ok, String::new()),
        ),
        (format!("Basic {token}"), missing.clone()),
        (format!("Bearer{token}"), missing.clone()),
        ("Bearer".to_owned(), missing.clone()),
    ] {
        let value: tonic::metadata::MetadataValue<_> = authorization.parse()?;
        let with_header = move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
            Ok(request)
        };
        let mut apis = ApiServiceClient::with_interceptor(server.channel(), with_header.clone());
        let listed = apis
            .list_apis(ListApisRequest {
                tenant: "acme".into(),
                ..Default::default()
            })
            .await;
        let scheme = authorization.split(' ').next().unwrap_or_default();
        assert_eq!(code(listed), expected, "ListApis with {scheme}");
        let mut audit = AuditServiceClient::with_interceptor(server.channel(), with_header);
        let listed = audit
            .list_events(ListEventsRequest {
                tenant: "acme".into(),
                page_size: 1,
                ..Default::default()
            })
            .await;
        assert_eq!(code(listed), expected, "ListEvents with {scheme}");
    }
    // What a refused header is told.
    let mut apis =
        ApiServiceClient::with_interceptor(server.channel(), |mut request: tonic::Request<()>| {
            request.metadata_mut().insert(
                "authorization",
                tonic::metadata::MetadataValue::from_static("Basic abc"),
            );
            Ok(request)
        });
    let status = apis
        .list_apis(ListApisRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .err()
        .context("a Basic header was accepted")?;
    assert_eq!(
        status.message(),
        "missing admin token: send authorization: Bearer <token>"
    );
    Ok(())
}

async fn admin_token_rules(server: TestServer) -> anyhow::Result<()> {
    let fixture = Fixture::new(&server, "acme").await?;
    let list = ListApisRequest {
        tenant: "acme".into(),
        ..Default::default()
    };

    // No token, garbage, and a valid token for another audience: UNAUTHENTICATED.
    let mut anonymous =
        tollgate_proto::v1::api_service_client::ApiServiceClient::new(server.channel());
    assert_eq!(
        code(anonymous.list_apis(list.clone()).await).0,
        tonic::Code::Unauthenticated
    );
    let mut garbage = server.admin_clients("not.a.jwt")?;
    assert_eq!(
        code(garbage.apis.list_apis(list.clone()).await).0,
        tonic::Code::Unauthenticated
    );
    let api_token = server
        .issue(
            "acme",
            &fixture.client_id,
            &fixture.client_secret,
            ARCHIVE,
            &[],
        )
        .await?
        .access_token;
    let mut wrong_audience = server.admin_clients(&api_token)?;
    let status = wrong_audience
        .apis
        .list_apis(list.clone())
        .await
        .err()
        .context("api token accepted")?;
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "admin token rejected: token audience is not accepted"
    );
    // A token whose signature was tampered with.
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    let mut tampered = admin_token.clone();
    tampered.pop();
    tampered.push(if admin_token.ends_with('A') { 'B' } else { 'A' });
    let mut forged = server.admin_clients(&tampered)?;
    assert_eq!(
        code(forged.apis.list_apis(list.clone()).await).0,
        tonic::Code::Unauthenticated
    );

    // A tenant admin cannot manage tenants, nor another tenant.
    let mut tenant_admin = server.admin_clients(&admin_token)?;
    let create = tenant_admin
        .tenants
        .create_tenant(CreateTenantRequest {
            name: "evil".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        code(create),
        (tonic::Code::PermissionDenied, "permission_denied".into())
    );
    let other = tenant_admin
        .apis
        .list_apis(ListApisRequest {
            tenant: "system".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(other).0, tonic::Code::PermissionDenied);

    // A read-only admin app: reads work, writes are PERMISSION_DENIED.
    let manage = "http://acme.hub.localhost:8080/manage";
    let reader = tenant_admin
        .apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: "auditor".into(),
            grants: vec![grant(manage, &["apis:read"])],
            ..Default::default()
        })
        .await?
        .into_inner();
    let reader_credentials = AdminCredentials {
        tenant: "acme".into(),
        client_id: reader.app.context("app")?.client_id,
        client_secret: reader.client_secret,
        audience: manage.into(),
    };
    let reader_token = server.admin_token_for(&reader_credentials).await?;
    let mut read_only = server.admin_clients(&reader_token)?;
    assert_eq!(
        read_only
            .apis
            .list_apis(list.clone())
            .await?
            .into_inner()
            .apis
            .len(),
        2
    );
    let write = read_only
        .apis
        .delete_api(DeleteApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
        })
        .await
        .err()
        .context("read-only admin deleted an api")?;
    assert_eq!(write.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        write.message(),
        "the admin token lacks the scope apis:write"
    );

    // The system admin may act on any tenant.
    let mut system = server.system_admin().await?;
    assert_eq!(
        system.apis.list_apis(list).await?.into_inner().apis.len(),
        2
    );
    Ok(())
}

async fn tenants_are_isolated(server: TestServer) -> anyhow::Result<()> {
    let acme = Fixture::new(&server, "acme").await?;
    let globex = Fixture::new(&server, "globex").await?;
    // acme's app credentials are unknown in globex, though globex has the same API identifier.
    let cross = server
        .issue("globex", &acme.client_id, &acme.client_secret, ARCHIVE, &[])
        .await;
    assert_eq!(
        code(cross),
        (tonic::Code::Unauthenticated, "invalid_client".into())
    );
    // acme's token does not verify with globex's keys, nor with globex as issuer.
    let token = server
        .issue("acme", &acme.client_id, &acme.client_secret, ARCHIVE, &[])
        .await?
        .access_token;
    let globex_jwks = fetch_jwks(&server, "globex").await?;
    assert!(verify_with_jwks(&token, &globex_jwks, &globex.issuer, ARCHIVE).is_err());
    let acme_jwks = fetch_jwks(&server, "acme").await?;
    assert!(verify_with_jwks(&token, &acme_jwks, &globex.issuer, ARCHIVE).is_err());
    assert!(verify_with_jwks(&token, &acme_jwks, &acme.issuer, ARCHIVE).is_ok());
    // Key rings differ.
    let acme_kids: Vec<_> = acme_jwks
        .keys
        .iter()
        .filter_map(|key| key.common.key_id.clone())
        .collect();
    assert!(
        globex_jwks
            .keys
            .iter()
            .all(|key| !acme_kids.contains(&key.common.key_id.clone().unwrap_or_default()))
    );
    // acme's admin token cannot read or change globex.
    let acme_admin = server.admin_token_for(&acme.admin).await?;
    let mut clients = server.admin_clients(&acme_admin)?;
    let read = clients
        .apps
        .get_app(GetAppRequest {
            tenant: "globex".into(),
            client_id: globex.client_id.clone(),
        })
        .await;
    assert_eq!(code(read).0, tonic::Code::PermissionDenied);
    // ... and acme's admin token is not a globex admin token either.
    let forged = server.admin_clients(&acme_admin)?;
    let mut forged_apps = forged.apps;
    let write = forged_apps
        .delete_app(DeleteAppRequest {
            tenant: "globex".into(),
            client_id: globex.client_id.clone(),
        })
        .await;
    assert_eq!(code(write).0, tonic::Code::PermissionDenied);
    // globex's app still works.
    server
        .issue(
            "globex",
            &globex.client_id,
            &globex.client_secret,
            ARCHIVE,
            &[],
        )
        .await?;
    Ok(())
}

//! Delegation without escalation: each attack on delegated administration replayed over gRPC
//! (an `apps:write` delegate widening its own or anyone's management scopes, touching the
//! built-in admin app or a stronger app, editing the Management API; admin tokens outliving
//! their app, their secret or their grant), asserting the exact refusal and that nothing
//! changed; the same on two instances sharing PostgreSQL and Redis; and who may introspect
//! which token, over HTTP.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tollgate_proto::v1::key_service_client::KeyServiceClient;
use tollgate_proto::v1::{
    App, CreateApiRequest, CreateAppRequest, CreateTenantRequest, DeleteAppRequest, GetAppRequest,
    Grant, GrantList, ListAppsRequest, ListKeysRequest, ListSecretsRequest, RevokeSecretRequest,
    RotateSecretRequest, UpdateApiRequest, UpdateAppRequest,
};
use tollgate_testkit::{
    AdminClients, AdminCredentials, Backend, BearerAuth, RedisServer, TestOptions, TestServer,
};
use tonic::Code;

use crate::fixtures::{
    ARCHIVE, Fixture, encode_form, fetch_jwks, grant, multi_instance_missing, present_or_skip,
    scopes, verify_with_jwks,
};

crate::backend_tests!(
    apps_write_cannot_grant_what_it_lacks,
    system_delegate_cannot_grant_tenant_scopes,
    delegate_cannot_take_over_the_admin_app_or_a_stronger_app,
    admin_tokens_of_deleted_and_blocked_apps_are_refused,
    narrowed_grants_narrow_admin_tokens_at_once,
    tokens_of_an_ended_secret_are_refused,
    introspection_is_answered_only_to_entitled_callers,
);

/// The Management API of `tenant` under the tests' default issuer template.
fn manage(tenant: &str) -> String {
    format!("http://{tenant}.hub.localhost:8080/manage")
}

/// An admin app: its credentials, a token for every scope it holds, and clients using it.
struct Admin {
    credentials: AdminCredentials,
    token: String,
    clients: AdminClients,
}

impl Admin {
    /// Signs in with `credentials` (a token for every scope the app holds).
    async fn sign_in(server: &TestServer, credentials: AdminCredentials) -> anyhow::Result<Self> {
        let token = server.admin_token_for(&credentials).await?;
        let clients = server.admin_clients(&token)?;
        Ok(Self {
            credentials,
            token,
            clients,
        })
    }

    fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    /// `ListKeys` of the admin's tenant (scope `keys:read`).
    async fn list_keys(&self, server: &TestServer) -> Result<usize, tonic::Status> {
        let auth = BearerAuth::new(&self.token).map_err(|error| {
            tonic::Status::internal(format!("token unusable as a header: {error}"))
        })?;
        let mut keys = KeyServiceClient::with_interceptor(server.channel(), auth);
        Ok(keys
            .list_keys(ListKeysRequest {
                tenant: self.credentials.tenant.clone(),
            })
            .await?
            .into_inner()
            .keys
            .len())
    }

    /// `ListApps` of the admin's tenant (scope `apps:read`): how many apps there are.
    async fn count_apps(&mut self) -> Result<usize, tonic::Status> {
        Ok(self
            .clients
            .apps
            .list_apps(ListAppsRequest {
                tenant: self.credentials.tenant.clone(),
                page_size: 500,
                ..Default::default()
            })
            .await?
            .into_inner()
            .apps
            .len())
    }
}

/// Creates, as `by`, an app of `tenant` holding `held` on the tenant's Management API, and
/// signs in as it.
async fn delegate(
    server: &TestServer,
    by: &mut AdminClients,
    tenant: &str,
    name: &str,
    held: &[&str],
) -> anyhow::Result<Admin> {
    let created = by
        .apps
        .create_app(CreateAppRequest {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            description: format!("delegate {name}"),
            grants: vec![grant(&manage(tenant), held)],
        })
        .await?
        .into_inner();
    let credentials = AdminCredentials {
        tenant: tenant.to_owned(),
        client_id: created.app.context("no app")?.client_id,
        client_secret: created.client_secret,
        audience: manage(tenant),
    };
    Admin::sign_in(server, credentials).await
}

/// Asserts that a call was refused with exactly `code` and `message` (a gRPC call's outcome,
/// or one of [`Admin`]'s).
fn refused<T: std::fmt::Debug>(
    outcome: Result<T, tonic::Status>,
    code: Code,
    message: &str,
) -> anyhow::Result<()> {
    match outcome {
        Ok(response) => bail!("expected {code:?} ({message}), got {response:?}"),
        Err(status) => {
            anyhow::ensure!(
                (status.code(), status.message()) == (code, message),
                "expected {code:?} {message:?}, got {:?} {:?}",
                status.code(),
                status.message()
            );
            Ok(())
        }
    }
}

/// Reads an app as `by` sees it.
async fn app(by: &mut AdminClients, tenant: &str, client_id: &str) -> anyhow::Result<App> {
    Ok(by
        .apps
        .get_app(GetAppRequest {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
        })
        .await?
        .into_inner())
}

/// The app's secrets as (id, active, has an end), newest first.
async fn secrets(
    by: &mut AdminClients,
    tenant: &str,
    client_id: &str,
) -> anyhow::Result<Vec<(String, bool, bool)>> {
    Ok(by
        .apps
        .list_secrets(ListSecretsRequest {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
        })
        .await?
        .into_inner()
        .secrets
        .into_iter()
        .map(|secret| (secret.id, secret.active, secret.expire_time.is_some()))
        .collect())
}

fn replace_grants(tenant: &str, client_id: &str, grants: Vec<Grant>) -> UpdateAppRequest {
    UpdateAppRequest {
        tenant: tenant.to_owned(),
        client_id: client_id.to_owned(),
        grants: Some(GrantList { grants }),
        ..Default::default()
    }
}

/// An update that blocks (`true`) or unblocks (`false`) the app and changes nothing else.
fn set_blocked(tenant: &str, client_id: &str, blocked: bool) -> UpdateAppRequest {
    UpdateAppRequest {
        tenant: tenant.to_owned(),
        client_id: client_id.to_owned(),
        blocked: Some(blocked),
        ..Default::default()
    }
}

/// A new app `name` of `tenant` (no description) holding `held` on the tenant's Management
/// API.
fn management_app(tenant: &str, name: &str, held: &[&str]) -> CreateAppRequest {
    CreateAppRequest {
        tenant: tenant.into(),
        name: name.into(),
        grants: vec![grant(&manage(tenant), held)],
        ..Default::default()
    }
}

/// An `apps:write` delegate cannot widen its own management scopes or give them to a new or
/// existing app, cannot strip a scope it lacks from another app, and cannot edit the
/// Management API; it can hand out what it holds.
async fn apps_write_cannot_grant_what_it_lacks(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin = &mut fixture.admin_clients;
    let mut delegate =
        delegate_with(&server, admin, "delegate", &["apps:read", "apps:write"]).await?;
    let id = delegate.client_id().to_owned();
    let before = app(admin, "acme", &id).await?;
    let apps_before = delegate.count_apps().await?;

    // Its own grant, widened: refused on the first scope it lacks (in scope order).
    refused(
        delegate
            .clients
            .apps
            .update_app(replace_grants(
                "acme",
                &id,
                vec![grant(
                    &manage("acme"),
                    &[
                        "apps:read",
                        "apps:write",
                        "keys:write",
                        "audit:read",
                        "tokens:revoke",
                    ],
                )],
            ))
            .await,
        Code::PermissionDenied,
        "the admin token cannot grant the scope audit:read, which it lacks",
    )?;
    // A new app with a scope it lacks, and an existing weaker app given one.
    refused(
        delegate
            .clients
            .apps
            .create_app(management_app("acme", "accomplice", &["keys:write"]))
            .await,
        Code::PermissionDenied,
        "the admin token cannot grant the scope keys:write, which it lacks",
    )?;
    refused(
        delegate
            .clients
            .apps
            .update_app(replace_grants(
                "acme",
                &fixture.client_id,
                vec![
                    grant(ARCHIVE, &["archive:read", "archive:write"]),
                    grant(&manage("acme"), &["tokens:revoke"]),
                ],
            ))
            .await,
        Code::PermissionDenied,
        "the admin token cannot grant the scope tokens:revoke, which it lacks",
    )?;
    // tenants:* do not exist outside the system tenant.
    refused(
        delegate
            .clients
            .apps
            .update_app(replace_grants(
                "acme",
                &id,
                vec![grant(&manage("acme"), &["apps:write", "tenants:write"])],
            ))
            .await,
        Code::InvalidArgument,
        &format!(
            "grants: api {} defines no scope tenants:write",
            manage("acme")
        ),
    )?;
    // A stronger app cannot be narrowed by it either: it could not grant the scope back.
    let keeper = delegate_app(admin, "keeper", &["keys:read"]).await?;
    refused(
        delegate
            .clients
            .apps
            .update_app(replace_grants("acme", &keeper, Vec::new()))
            .await,
        Code::PermissionDenied,
        &format!("app {keeper} holds the scope keys:read, which the admin token lacks"),
    )?;
    // Nothing changed; its token still has no more than it had.
    assert_eq!(app(admin, "acme", &id).await?, before);
    assert_eq!(
        app(admin, "acme", &keeper).await?.grants,
        vec![grant(&manage("acme"), &["keys:read"])]
    );
    assert_eq!(
        app(admin, "acme", &fixture.client_id).await?.grants,
        vec![grant(ARCHIVE, &["archive:read", "archive:write"])]
    );
    assert_eq!(delegate.count_apps().await?, apps_before + 1);
    let keys = delegate.list_keys(&server).await;
    refused(
        keys,
        Code::PermissionDenied,
        "the admin token lacks the scope keys:read",
    )?;

    // What it holds, it may hand out, and take back.
    let helper = delegate
        .clients
        .apps
        .create_app(management_app("acme", "helper", &["apps:read"]))
        .await?
        .into_inner()
        .app
        .context("no app")?;
    delegate
        .clients
        .apps
        .update_app(replace_grants("acme", &helper.client_id, Vec::new()))
        .await?;

    // The Management API itself: its lifetime is every admin token's; only an admin holding
    // all its scopes may change it. An apis:write delegate may change its own APIs.
    let mut api_delegate =
        delegate_with(&server, admin, "api-delegate", &["apis:read", "apis:write"]).await?;
    refused(
        api_delegate
            .clients
            .apis
            .update_api(UpdateApiRequest {
                tenant: "acme".into(),
                identifier: manage("acme"),
                token_lifetime_seconds: Some(86_400),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "the built-in Management API can be changed only by an admin holding all its scopes; \
         the admin token lacks apps:read",
    )?;
    let api = api_delegate
        .clients
        .apis
        .update_api(UpdateApiRequest {
            tenant: "acme".into(),
            identifier: ARCHIVE.into(),
            token_lifetime_seconds: Some(600),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(api.token_lifetime_seconds, 600);
    // The tenant's full admin may (and the token lifetime of the built-in API is unchanged
    // by the refused attempt).
    let builtin = admin
        .apis
        .update_api(UpdateApiRequest {
            tenant: "acme".into(),
            identifier: manage("acme"),
            token_lifetime_seconds: Some(1_800),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(builtin.token_lifetime_seconds, 1_800);
    Ok(())
}

/// Creates, as `by`, an app of `acme` holding `held` on its Management API; its client id.
async fn delegate_app(by: &mut AdminClients, name: &str, held: &[&str]) -> anyhow::Result<String> {
    let (client_id, _) = plain_app(by, name, vec![grant(&manage("acme"), held)]).await?;
    Ok(client_id)
}

/// [`delegate`] in `acme`.
async fn delegate_with(
    server: &TestServer,
    by: &mut AdminClients,
    name: &str,
    held: &[&str],
) -> anyhow::Result<Admin> {
    delegate(server, by, "acme", name, held).await
}

/// In the system tenant, an `apps:write` delegate cannot grant itself `tenants:write`.
async fn system_delegate_cannot_grant_tenant_scopes(server: TestServer) -> anyhow::Result<()> {
    let mut system = server.system_admin().await?;
    let mut delegate = delegate(
        &server,
        &mut system,
        "system",
        "system-delegate",
        &["apps:read", "apps:write"],
    )
    .await?;
    let id = delegate.client_id().to_owned();
    let before = app(&mut system, "system", &id).await?;
    for wanted in [
        ["apps:write", "tenants:write"],
        ["apps:write", "tenants:read"],
    ] {
        refused(
            delegate
                .clients
                .apps
                .update_app(replace_grants(
                    "system",
                    &id,
                    vec![grant(&manage("system"), &wanted)],
                ))
                .await,
            Code::PermissionDenied,
            &format!(
                "the admin token cannot grant the scope {}, which it lacks",
                wanted[1]
            ),
        )?;
    }
    refused(
        delegate
            .clients
            .apps
            .create_app(management_app("system", "tenant-maker", &["tenants:write"]))
            .await,
        Code::PermissionDenied,
        "the admin token cannot grant the scope tenants:write, which it lacks",
    )?;
    refused(
        delegate
            .clients
            .tenants
            .create_tenant(CreateTenantRequest {
                name: "evil".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "the admin token lacks the scope tenants:write",
    )?;
    // Nor the system admin app's secret.
    refused(
        delegate
            .clients
            .apps
            .rotate_secret(RotateSecretRequest {
                tenant: "system".into(),
                client_id: server.admin.client_id.clone(),
                overlap_seconds: Some(0),
            })
            .await,
        Code::PermissionDenied,
        &format!(
            "app {} holds the scope apis:read, which the admin token lacks",
            server.admin.client_id
        ),
    )?;
    assert_eq!(app(&mut system, "system", &id).await?, before);
    assert_eq!(delegate.count_apps().await?, 2);
    // The system admin still signs in and still may.
    let mut system = server.system_admin().await?;
    system
        .apps
        .update_app(replace_grants(
            "system",
            &id,
            vec![grant(&manage("system"), &["apps:read", "tenants:read"])],
        ))
        .await?;
    Ok(())
}

/// An `apps:write` delegate cannot rotate or revoke the built-in admin app's secret (the
/// lock-out attack: rotation with overlap 0), block or delete it, nor do any of that to an
/// app holding a management scope it lacks. The admin keeps working.
async fn delegate_cannot_take_over_the_admin_app_or_a_stronger_app(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin_id = fixture.admin.client_id.clone();
    let admin = &mut fixture.admin_clients;
    let mut delegate =
        delegate_with(&server, admin, "delegate", &["apps:read", "apps:write"]).await?;
    let keeper = delegate_app(admin, "keeper", &["apps:read", "keys:write"]).await?;
    let admin_secrets = secrets(admin, "acme", &admin_id).await?;
    let keeper_secrets = secrets(admin, "acme", &keeper).await?;
    let admin_app = app(admin, "acme", &admin_id).await?;
    let keeper_app = app(admin, "acme", &keeper).await?;
    assert_eq!(admin_secrets.len(), 1);

    for (target, first_missing) in [(&admin_id, "apis:read"), (&keeper, "keys:write")] {
        let message =
            format!("app {target} holds the scope {first_missing}, which the admin token lacks");
        let apps = &mut delegate.clients.apps;
        refused(
            apps.rotate_secret(RotateSecretRequest {
                tenant: "acme".into(),
                client_id: target.clone(),
                overlap_seconds: Some(0),
            })
            .await,
            Code::PermissionDenied,
            &message,
        )?;
        let secret_id = secrets(admin, "acme", target).await?[0].0.clone();
        refused(
            apps.revoke_secret(RevokeSecretRequest {
                tenant: "acme".into(),
                client_id: target.clone(),
                secret_id,
                revoke_tokens: false,
            })
            .await,
            Code::PermissionDenied,
            &message,
        )?;
        refused(
            apps.update_app(set_blocked("acme", target, true)).await,
            Code::PermissionDenied,
            &message,
        )?;
        refused(
            apps.update_app(UpdateAppRequest {
                tenant: "acme".into(),
                client_id: target.clone(),
                rate_limit_per_second: Some(1),
                ..Default::default()
            })
            .await,
            Code::PermissionDenied,
            &message,
        )?;
        refused(
            apps.delete_app(DeleteAppRequest {
                tenant: "acme".into(),
                client_id: target.clone(),
            })
            .await,
            Code::PermissionDenied,
            &message,
        )?;
    }
    // Nothing changed: same secrets, same apps; the admin signs in as before.
    assert_eq!(secrets(admin, "acme", &admin_id).await?, admin_secrets);
    assert_eq!(secrets(admin, "acme", &keeper).await?, keeper_secrets);
    assert_eq!(app(admin, "acme", &admin_id).await?, admin_app);
    assert_eq!(app(admin, "acme", &keeper).await?, keeper_app);
    let admin_again = Admin::sign_in(&server, fixture.admin.clone()).await?;
    assert_eq!(admin_again.list_keys(&server).await?, 1);

    // The full admin may rotate the stronger app's secret; the built-in admin app's own
    // protections (no block, no delete) still hold for it.
    let admin = &mut fixture.admin_clients;
    let rotated = admin
        .apps
        .rotate_secret(RotateSecretRequest {
            tenant: "acme".into(),
            client_id: keeper.clone(),
            overlap_seconds: Some(60),
        })
        .await?
        .into_inner();
    assert_eq!(rotated.secrets.len(), 2);
    refused(
        admin
            .apps
            .delete_app(DeleteAppRequest {
                tenant: "acme".into(),
                client_id: admin_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "the built-in admin app cannot be deleted",
    )?;
    Ok(())
}

/// A deleted app's admin token stops at the next call (the attack: it listed keys and created
/// an app after the deletion); a blocked app's too, and works again once unblocked.
async fn admin_tokens_of_deleted_and_blocked_apps_are_refused(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin = &mut fixture.admin_clients;
    let held = ["apps:read", "apps:write", "keys:read"];
    let mut deleted = delegate_with(&server, admin, "deleted", &held).await?;
    let mut blocked = delegate_with(&server, admin, "blocked", &held).await?;
    assert_eq!(deleted.list_keys(&server).await?, 1);
    assert_eq!(blocked.list_keys(&server).await?, 1);
    let apps_before = deleted.count_apps().await?;

    admin
        .apps
        .delete_app(DeleteAppRequest {
            tenant: "acme".into(),
            client_id: deleted.client_id().to_owned(),
        })
        .await?;
    admin
        .apps
        .update_app(set_blocked("acme", blocked.client_id(), true))
        .await?;

    // Deleting revoked its tokens; blocking alone did not, the live catalog refuses them.
    let deleted_message = "admin token rejected: token has been revoked";
    let blocked_message = "admin token rejected: the app it was issued to is blocked";
    for (admin_app, message) in [
        (&mut deleted, deleted_message),
        (&mut blocked, blocked_message),
    ] {
        let keys = admin_app.list_keys(&server).await;
        refused(keys, Code::Unauthenticated, message)?;
        refused(
            admin_app
                .clients
                .apps
                .create_app(management_app("acme", "backdoor", &["keys:read"]))
                .await,
            Code::Unauthenticated,
            message,
        )?;
    }
    // Nothing was created: the tenant has its admin, the archiver and the blocked app.
    let mut admin_view = Admin::sign_in(&server, fixture.admin.clone()).await?;
    assert_eq!(admin_view.count_apps().await?, apps_before - 1);

    // The block is live state: unblocked, the same token works again.
    fixture
        .admin_clients
        .apps
        .update_app(set_blocked("acme", blocked.client_id(), false))
        .await?;
    assert_eq!(blocked.list_keys(&server).await?, 1);
    Ok(())
}

/// Narrowing an app's management grant narrows the tokens it already holds, at once.
async fn narrowed_grants_narrow_admin_tokens_at_once(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin = &mut fixture.admin_clients;
    let mut narrowed =
        delegate_with(&server, admin, "narrowed", &["apps:read", "keys:read"]).await?;
    let id = narrowed.client_id().to_owned();
    assert_eq!(narrowed.list_keys(&server).await?, 1);

    admin
        .apps
        .update_app(replace_grants(
            "acme",
            &id,
            vec![grant(&manage("acme"), &["apps:read"])],
        ))
        .await?;
    refused(
        narrowed.list_keys(&server).await,
        Code::PermissionDenied,
        "the admin token lacks the scope keys:read",
    )?;
    assert_eq!(narrowed.count_apps().await?, 3);

    // Without any grant on the Management API the token holds nothing.
    admin
        .apps
        .update_app(replace_grants("acme", &id, Vec::new()))
        .await?;
    refused(
        narrowed.count_apps().await,
        Code::PermissionDenied,
        "the admin token lacks the scope apps:read",
    )?;
    // Granting it again restores what the token was issued with (and no more).
    admin
        .apps
        .update_app(replace_grants(
            "acme",
            &id,
            vec![grant(
                &manage("acme"),
                &["apps:read", "apps:write", "keys:read"],
            )],
        ))
        .await?;
    assert_eq!(narrowed.list_keys(&server).await?, 1);
    refused(
        narrowed
            .clients
            .apps
            .delete_app(DeleteAppRequest {
                tenant: "acme".into(),
                client_id: fixture.client_id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "the admin token lacks the scope apps:write",
    )?;
    Ok(())
}

/// The rotation overlap of the test below, in seconds. Secrets end on whole seconds, so the
/// old secret's token must be refused once the server's clock is one more second on.
const OVERLAP: i64 = 2;

/// A token obtained with a secret that has since ended (rotation overlap over, or revoked)
/// is refused; tokens of the new secret work.
async fn tokens_of_an_ended_secret_are_refused(server: TestServer) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin = &mut fixture.admin_clients;
    let mut rotated = delegate_with(&server, admin, "rotated", &["apps:read", "keys:read"]).await?;
    let id = rotated.client_id().to_owned();
    let rotation = admin
        .apps
        .rotate_secret(RotateSecretRequest {
            tenant: "acme".into(),
            client_id: id.clone(),
            overlap_seconds: Some(OVERLAP),
        })
        .await?
        .into_inner();
    // Within the overlap the old secret's token works.
    assert_eq!(rotated.count_apps().await?, 3);
    // Past the overlap on the server's clock (secrets end on whole seconds: one more), the
    // old secret's token is refused at once.
    server
        .clock
        .advance(Duration::from_secs(OVERLAP as u64 + 1));
    let started = Instant::now();
    let limit = Duration::from_secs(1);
    let message = "admin token rejected: the client secret that obtained it has ended";
    let took = loop {
        match rotated.count_apps().await {
            Ok(_) if started.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(_) => bail!("the old secret's token still works {limit:?} after the overlap"),
            Err(status) => {
                assert_eq!(
                    (status.code(), status.message()),
                    (Code::Unauthenticated, message)
                );
                break started.elapsed();
            }
        }
    };
    let _ = writeln!(
        std::io::stderr(),
        "delegation: the old secret's admin token refused {} ms after its {OVERLAP} s overlap ended",
        took.as_millis()
    );
    assert!(took <= limit, "refused only after {took:?}");

    // The new secret's token works; revoking that secret ends it at once.
    let mut renewed = Admin::sign_in(
        &server,
        AdminCredentials {
            client_secret: rotation.client_secret,
            ..rotated.credentials.clone()
        },
    )
    .await?;
    assert_eq!(renewed.list_keys(&server).await?, 1);
    let secret_id = rotation.secret.context("no secret")?.id;
    fixture
        .admin_clients
        .apps
        .revoke_secret(RevokeSecretRequest {
            tenant: "acme".into(),
            client_id: id,
            secret_id,
            revoke_tokens: false,
        })
        .await?;
    refused(renewed.count_apps().await, Code::Unauthenticated, message)?;
    Ok(())
}

/// POSTs an introspection request for `token` to acme with Basic authentication; the
/// response, whatever its status.
async fn post_introspection(
    server: &TestServer,
    (id, secret): (&str, &str),
    token: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(format!("{}/t/acme/oauth/introspect", server.http_url))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&[("token", token)]))
        .send()
        .await?)
}

/// [`post_introspection`], answered 200: the introspection response.
async fn introspect(
    server: &TestServer,
    caller: (&str, &str),
    token: &str,
) -> anyhow::Result<Value> {
    let response = post_introspection(server, caller, token).await?;
    anyhow::ensure!(
        response.status() == 200,
        "introspection answered {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// Creates an app of acme with `grants`; its credentials.
async fn plain_app(
    by: &mut AdminClients,
    name: &str,
    grants: Vec<Grant>,
) -> anyhow::Result<(String, String)> {
    let created = by
        .apps
        .create_app(CreateAppRequest {
            tenant: "acme".into(),
            name: name.into(),
            grants,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok((
        created.app.context("no app")?.client_id,
        created.client_secret,
    ))
}

/// Introspection answers only the token's own app, and apps holding a grant on the token's
/// audience (a resource server's app holds one without scopes); admin tokens only their own
/// app. Everyone else gets exactly `{"active":false}`.
async fn introspection_is_answered_only_to_entitled_callers(
    server: TestServer,
) -> anyhow::Result<()> {
    let mut fixture = Fixture::new(&server, "acme").await?;
    let admin = &mut fixture.admin_clients;
    admin
        .apis
        .create_api(CreateApiRequest {
            tenant: "acme".into(),
            name: "Billing".into(),
            identifier: "https://billing.example.com/".into(),
            scopes: scopes(&["billing:read"]),
            token_lifetime_seconds: 900,
            signing_alg: String::new(),
        })
        .await?;
    let resource_server = plain_app(admin, "archive-server", vec![grant(ARCHIVE, &[])]).await?;
    let stranger = plain_app(admin, "no-grants", Vec::new()).await?;
    let billing = plain_app(
        admin,
        "billing-client",
        vec![grant("https://billing.example.com/", &["billing:read"])],
    )
    .await?;
    let delegate = delegate_with(&server, admin, "delegate", &["apps:read", "apps:write"]).await?;
    let delegate_credentials = (
        delegate.credentials.client_id.as_str(),
        delegate.credentials.client_secret.as_str(),
    );
    let me = (fixture.client_id.as_str(), fixture.client_secret.as_str());
    let admin_credentials = (
        fixture.admin.client_id.as_str(),
        fixture.admin.client_secret.as_str(),
    );
    let inactive = json!({"active": false});

    // An archive token: its own app and the archive's resource server see it.
    let token = server
        .issue("acme", me.0, me.1, ARCHIVE, &["archive:read"])
        .await?
        .access_token;
    let jwks = fetch_jwks(&server, "acme").await?;
    let (_, mut expected) = verify_with_jwks(&token, &jwks, &fixture.issuer, ARCHIVE)?;
    expected["active"] = Value::Bool(true);
    expected["token_type"] = "Bearer".into();
    assert_eq!(introspect(&server, me, &token).await?, expected);
    let resource_server = (resource_server.0.as_str(), resource_server.1.as_str());
    assert_eq!(
        introspect(&server, resource_server, &token).await?,
        expected
    );
    // No grant, a grant on another API, a management grant, or the tenant's admin app (whose
    // grant is on the Management API only): not entitled.
    for (case, caller) in [
        (
            "an app without grants",
            (stranger.0.as_str(), stranger.1.as_str()),
        ),
        (
            "an app of another API",
            (billing.0.as_str(), billing.1.as_str()),
        ),
        ("a management delegate", delegate_credentials),
        ("the tenant's admin app", admin_credentials),
    ] {
        assert_eq!(
            introspect(&server, caller, &token).await?,
            inactive,
            "{case}"
        );
    }

    // An admin token: only its own app sees it, whatever the others hold.
    let (_, mut admin_expected) =
        verify_with_jwks(&delegate.token, &jwks, &fixture.issuer, &manage("acme"))?;
    admin_expected["active"] = Value::Bool(true);
    admin_expected["token_type"] = "Bearer".into();
    assert_eq!(
        introspect(&server, delegate_credentials, &delegate.token).await?,
        admin_expected
    );
    for (case, caller) in [
        ("the archive's app", me),
        ("the resource server", resource_server),
        ("the tenant's admin app", admin_credentials),
        (
            "an app without grants",
            (stranger.0.as_str(), stranger.1.as_str()),
        ),
    ] {
        assert_eq!(
            introspect(&server, caller, &delegate.token).await?,
            inactive,
            "{case}"
        );
    }
    let admin_token = server.admin_token_for(&fixture.admin).await?;
    assert_eq!(
        introspect(&server, admin_credentials, &admin_token).await?["active"],
        true
    );
    assert_eq!(
        introspect(&server, delegate_credentials, &admin_token).await?,
        inactive
    );

    // A blocked app's admin token is inactive, as management treats it, even to itself once
    // it can no longer authenticate; its archive tokens (if any) follow revocation only.
    fixture
        .admin_clients
        .apps
        .update_app(set_blocked("acme", &delegate.credentials.client_id, true))
        .await?;
    let response = post_introspection(&server, delegate_credentials, &delegate.token).await?;
    assert_eq!(response.status(), 401);
    // Deleting the archive app ends its tokens for the resource server too.
    fixture
        .admin_clients
        .apps
        .delete_app(DeleteAppRequest {
            tenant: "acme".into(),
            client_id: fixture.client_id.clone(),
        })
        .await?;
    assert_eq!(
        introspect(&server, resource_server, &token).await?,
        inactive
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Two instances on one PostgreSQL and one Redis

/// The cross-instance bound (the catalog's invalidation: Redis pub/sub, or the one-second
/// change-log poll when a message is lost).
const WITHIN: Duration = Duration::from_secs(1);

/// Whether PostgreSQL, Redis and `redis-server` are available; otherwise a loud skip (a
/// failure with `TOLLGATE_REQUIRE_BACKENDS=1`).
fn backends_or_skip(test: &str) -> bool {
    present_or_skip(
        "multi-instance delegation test",
        &format!("delegation::{test}"),
        multi_instance_missing(),
    )
}

/// Polls `admin`'s `ListKeys` on `server` every 20 ms until it is refused with `message`, at
/// most twice the bound; how long after `since` that was.
async fn refused_within(
    server: &TestServer,
    admin: &Admin,
    message: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), admin.list_keys(server)).await? {
            Err(status) => {
                assert_eq!(
                    (status.code(), status.message()),
                    (Code::Unauthenticated, message)
                );
                return Ok(since.elapsed());
            }
            Ok(_) if since.elapsed() > 2 * WITHIN => {
                bail!("still accepted {:?} after the change", since.elapsed())
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Blocking or deleting an app on instance A ends its admin token on instance B within a
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_and_deleted_apps_are_refused_on_every_instance_within_a_second()
-> anyhow::Result<()> {
    let test = "blocked_and_deleted_apps_are_refused_on_every_instance_within_a_second";
    if !backends_or_skip(test) {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let a = TestServer::start_with(TestOptions {
        backend: Backend::Postgres,
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await?;
    let b = TestServer::start_with(TestOptions {
        backend: Backend::Postgres,
        redis_url: Some(redis.url()),
        join: Some(a.joined.clone()),
        ..TestOptions::default()
    })
    .await?;
    let mut fixture = Fixture::new(&a, "acme").await?;
    let admin = &mut fixture.admin_clients;
    let held = ["apps:read", "keys:read"];
    let blocked = delegate_with(&a, admin, "blocked", &held).await?;
    let deleted = delegate_with(&a, admin, "deleted", &held).await?;
    // Both work on B (and B has the tenant cached, so only an invalidation can refuse them).
    assert_eq!(blocked.list_keys(&b).await?, 1);
    assert_eq!(deleted.list_keys(&b).await?, 1);

    let since = Instant::now();
    admin
        .apps
        .update_app(set_blocked("acme", blocked.client_id(), true))
        .await?;
    let block_latency = refused_within(
        &b,
        &blocked,
        "admin token rejected: the app it was issued to is blocked",
        since,
    )
    .await?;
    let since = Instant::now();
    admin
        .apps
        .delete_app(DeleteAppRequest {
            tenant: "acme".into(),
            client_id: deleted.client_id().to_owned(),
        })
        .await?;
    let delete_latency = refused_within(
        &b,
        &deleted,
        "admin token rejected: token has been revoked",
        since,
    )
    .await?;
    let _ = writeln!(
        std::io::stderr(),
        "delegation::{test}: refused on B {} ms after the block on A, {} ms after the deletion",
        block_latency.as_millis(),
        delete_latency.as_millis()
    );
    assert!(
        block_latency <= WITHIN,
        "block seen on B after {block_latency:?}"
    );
    assert!(
        delete_latency <= WITHIN,
        "deletion seen on B after {delete_latency:?}"
    );
    b.stop().await?;
    a.stop().await?;
    drop(redis);
    Ok(())
}

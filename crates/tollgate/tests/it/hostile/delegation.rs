//! The delegation attacks, replayed: an app granted only `apps:write` on the Management API
//! tries to grant itself and others more management scopes (in a tenant and in `system`),
//! and to rotate or revoke the built-in admin app's secret; a deleted and a blocked app keep
//! using the admin token they hold.

use std::time::{Duration, Instant};

use anyhow::Context;
use tollgate_proto::v1::key_service_client::KeyServiceClient;
use tollgate_proto::v1::{
    CreateAppRequest, CreateTenantRequest, DeleteAppRequest, GetAppRequest, Grant, GrantList,
    ListKeysRequest, ListSecretsRequest, RevokeSecretRequest, RotateSecretRequest,
    UpdateAppRequest,
};
use tollgate_testkit::{BearerAuth, TestServer};
use tonic::Code;

use super::report;
use crate::fixtures::{ARCHIVE, Fixture, create_app_in, grant};

/// The management scopes a delegate holding only `apps:write` tries to obtain.
const WIDER_SCOPES: [&str; 6] = [
    "keys:read",
    "keys:write",
    "audit:read",
    "tokens:revoke",
    "apis:write",
    "apps:read",
];

/// How soon a deleted or blocked app's admin token must stop working.
const REFUSAL_WITHIN: Duration = Duration::from_secs(1);

/// An app of `tenant` created by `admin` with `grants`, and its secret.
/// The code of a call that must be refused, or `Ok` when it was not.
fn code<T>(answer: Result<T, tonic::Status>) -> Code {
    match answer {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Replaces `client_id`'s grants.
fn set_grants(tenant: &str, client_id: &str, grants: Vec<Grant>) -> UpdateAppRequest {
    UpdateAppRequest {
        tenant: tenant.to_owned(),
        client_id: client_id.to_owned(),
        grants: Some(GrantList { grants }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_write_delegate_cannot_escalate() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut fixture = Fixture::new(&server, "acme").await?;
    let manage = fixture.admin.audience.clone();
    let (delegate_id, delegate_secret) = fixture
        .create_app("delegate", vec![grant(&manage, &["apps:write"])])
        .await?;
    let delegate_token = server
        .issue("acme", &delegate_id, &delegate_secret, &manage, &[])
        .await?
        .access_token;
    let mut delegate = server.admin_clients(&delegate_token)?;

    // What the delegate may do: manage ordinary grants.
    let allowed = delegate
        .apps
        .update_app(set_grants(
            "acme",
            &fixture.client_id,
            vec![grant(ARCHIVE, &["archive:read"])],
        ))
        .await;
    assert_eq!(
        code(allowed),
        Code::Ok,
        "apps:write manages ordinary grants"
    );

    // What it may not: any management scope it does not hold, to itself, to another app,
    // to a new app.
    let mut escalations = Vec::new();
    for scope in WIDER_SCOPES {
        let to_itself = delegate
            .apps
            .update_app(set_grants(
                "acme",
                &delegate_id,
                vec![grant(&manage, &["apps:write", scope])],
            ))
            .await;
        let to_another = delegate
            .apps
            .update_app(set_grants(
                "acme",
                &fixture.client_id,
                vec![grant(ARCHIVE, &["archive:read"]), grant(&manage, &[scope])],
            ))
            .await;
        let to_a_new_app = delegate
            .apps
            .create_app(CreateAppRequest {
                tenant: "acme".to_owned(),
                name: format!("holder of {scope}"),
                description: String::new(),
                grants: vec![grant(&manage, &[scope])],
            })
            .await;
        for (whom, answer) in [
            ("itself", code(to_itself)),
            ("another app", code(to_another)),
            ("a new app", code(to_a_new_app)),
        ] {
            if answer != Code::PermissionDenied {
                escalations.push(format!("{scope} to {whom}: {answer:?}"));
            }
        }
    }
    let held = fixture
        .admin_clients
        .apps
        .get_app(GetAppRequest {
            tenant: "acme".to_owned(),
            client_id: delegate_id.clone(),
        })
        .await?
        .into_inner()
        .grants;
    let widened = server
        .issue(
            "acme",
            &delegate_id,
            &delegate_secret,
            &manage,
            &["keys:write"],
        )
        .await;

    // The admin app's secrets.
    let admin_id = fixture.admin.client_id.clone();
    let rotate = code(
        delegate
            .apps
            .rotate_secret(RotateSecretRequest {
                tenant: "acme".to_owned(),
                client_id: admin_id.clone(),
                overlap_seconds: Some(0),
            })
            .await,
    );
    let admin_secret_id = fixture
        .admin_clients
        .apps
        .list_secrets(ListSecretsRequest {
            tenant: "acme".to_owned(),
            client_id: admin_id.clone(),
        })
        .await?
        .into_inner()
        .secrets
        .first()
        .context("the admin app has no secret")?
        .id
        .clone();
    let revoke = code(
        delegate
            .apps
            .revoke_secret(RevokeSecretRequest {
                tenant: "acme".to_owned(),
                client_id: admin_id.clone(),
                secret_id: admin_secret_id,
                revoke_tokens: false,
            })
            .await,
    );
    let admin_still_in = server.admin_token_for(&fixture.admin).await.is_ok();

    // In the system tenant: tenants:write.
    let system = server.system_admin().await?;
    let system_manage = server.admin.audience.clone();
    let (system_delegate_id, system_delegate_secret) = create_app_in(
        &system,
        "system",
        "delegate",
        vec![grant(&system_manage, &["apps:write"])],
    )
    .await?;
    let system_delegate = server
        .issue(
            "system",
            &system_delegate_id,
            &system_delegate_secret,
            &system_manage,
            &[],
        )
        .await?
        .access_token;
    let mut system_delegate = server.admin_clients(&system_delegate)?;
    let tenants_write = code(
        system_delegate
            .apps
            .update_app(set_grants(
                "system",
                &system_delegate_id,
                vec![grant(&system_manage, &["apps:write", "tenants:write"])],
            ))
            .await,
    );
    let create_tenant = code(
        system_delegate
            .tenants
            .create_tenant(CreateTenantRequest {
                name: "annexed".to_owned(),
                display_name: String::new(),
                signing_alg: String::new(),
            })
            .await,
    );

    report(&format!(
        "delegation: escalations allowed {escalations:?}; delegate's grants after {:?}; token with keys:write {:?}; rotate admin secret {rotate:?}, revoke admin secret {revoke:?}, admin still gets tokens {admin_still_in}; system delegate tenants:write {tenants_write:?}, create tenant {create_tenant:?}",
        held.iter()
            .map(|grant| (grant.audience.as_str(), grant.scopes.join(" ")))
            .collect::<Vec<_>>(),
        widened.as_ref().map(|_| ()).map_err(tonic::Status::code),
    ));
    assert!(
        escalations.is_empty(),
        "an apps:write delegate widened management scopes: {escalations:?}"
    );
    assert_eq!(held, vec![grant(&manage, &["apps:write"])]);
    assert!(widened.is_err(), "the delegate got a keys:write token");
    assert_eq!(
        rotate,
        Code::PermissionDenied,
        "rotating the admin app's secret"
    );
    assert_eq!(
        revoke,
        Code::PermissionDenied,
        "revoking the admin app's secret"
    );
    assert!(admin_still_in, "the admin app was locked out");
    assert_eq!(
        tenants_write,
        Code::PermissionDenied,
        "granting tenants:write"
    );
    assert_eq!(create_tenant, Code::PermissionDenied, "creating a tenant");
    Ok(())
}

/// A deleted app's admin token and a blocked app's admin token are refused within a
/// second of the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_blocked_apps_lose_their_admin_tokens() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut fixture = Fixture::new(&server, "acme").await?;
    let manage = fixture.admin.audience.clone();
    for change in ["deleted", "blocked"] {
        let (client_id, secret) = fixture
            .create_app(
                &format!("to be {change}"),
                vec![grant(&manage, &["keys:read"])],
            )
            .await?;
        let token = server
            .issue("acme", &client_id, &secret, &manage, &[])
            .await?
            .access_token;
        let mut keys =
            KeyServiceClient::with_interceptor(server.channel(), BearerAuth::new(&token)?);
        let list = ListKeysRequest {
            tenant: "acme".to_owned(),
        };
        keys.list_keys(list.clone()).await?;
        if change == "deleted" {
            fixture
                .admin_clients
                .apps
                .delete_app(DeleteAppRequest {
                    tenant: "acme".to_owned(),
                    client_id: client_id.clone(),
                })
                .await?;
        } else {
            fixture
                .admin_clients
                .apps
                .update_app(UpdateAppRequest {
                    tenant: "acme".to_owned(),
                    client_id: client_id.clone(),
                    blocked: Some(true),
                    ..Default::default()
                })
                .await?;
        }
        let changed = Instant::now();
        let refused = loop {
            let answer = code(keys.list_keys(list.clone()).await);
            if answer != Code::Ok || changed.elapsed() > REFUSAL_WITHIN * 3 {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let after = changed.elapsed();
        report(&format!(
            "{change} app's admin token: {refused:?} after {}",
            super::ms(after)
        ));
        assert!(
            matches!(refused, Code::Unauthenticated | Code::PermissionDenied),
            "a {change} app's admin token still lists keys ({refused:?})"
        );
        assert!(
            after <= REFUSAL_WITHIN,
            "a {change} app's admin token was refused only after {after:?}"
        );
    }
    Ok(())
}

//! The archive team's storage API: archives kept in memory, behind a
//! [`BearerAuthLayer`]. `PUT /archives/{name}` needs `archive:write`; `GET /archives` and
//! `GET /archives/{name}` need `archive:read`; anything else needs both. `GET /healthz` is
//! open.
//!
//! The handlers hold no authorization logic: the layer has verified the token (signature,
//! `typ`, `iss`, `aud`, `exp`, `nbf`, revocation when the verifier has a check) and its
//! scopes before they run, and answered 401/403 (RFC 6750) or 503 itself otherwise. A
//! handler reads the caller from the [`Claims`] extractor.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tollgate_verify::{BearerAuthLayer, Claims, ScopeRules, Verifier};

/// The storage API's identifier at Tollgate: the `aud` of the tokens it accepts.
pub const API_IDENTIFIER: &str = "https://archive.example.com/";
/// Reading archives.
pub const READ: &str = "archive:read";
/// Writing archives.
pub const WRITE: &str = "archive:write";

/// One stored archive.
struct Archive {
    bytes: Bytes,
    /// The `client_id` of the app whose token wrote it.
    written_by: String,
}

type Archives = Arc<Mutex<BTreeMap<String, Archive>>>;

/// Which scopes each request needs.
pub fn scope_rules() -> ScopeRules {
    ScopeRules::new()
        .require_for("PUT", "/archives/*", [WRITE])
        .require_for("GET", "/archives", [READ])
        .require_for("GET", "/archives/*", [READ])
        .require_by_default([READ, WRITE])
}

/// The storage API's routes, every one but `/healthz` behind `verifier` and [`scope_rules`].
pub fn router(verifier: Verifier) -> Router {
    let archives = Archives::default();
    Router::new()
        .route("/archives", get(list_archives))
        .route("/archives/{name}", get(read_archive).put(write_archive))
        .with_state(archives)
        .layer(BearerAuthLayer::new(verifier).scopes(scope_rules()))
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves the storage API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    verifier: Verifier,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(verifier))
        .with_graceful_shutdown(shutdown)
        .await
}

fn archives(state: &Archives) -> std::sync::MutexGuard<'_, BTreeMap<String, Archive>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn write_archive(
    State(state): State<Archives>,
    Path(name): Path<String>,
    claims: Claims,
    bytes: Bytes,
) -> Response {
    let written_by = claims.client_id.unwrap_or_default();
    let size = bytes.len();
    archives(&state).insert(
        name.clone(),
        Archive {
            bytes,
            written_by: written_by.clone(),
        },
    );
    let body = json!({ "name": name, "bytes": size, "written_by": written_by });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn read_archive(State(state): State<Archives>, Path(name): Path<String>) -> Response {
    match archives(&state).get(&name) {
        Some(archive) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            archive.bytes.clone(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": format!("no archive {name:?}") })),
        )
            .into_response(),
    }
}

async fn list_archives(State(state): State<Archives>) -> Response {
    let listed: Vec<_> = archives(&state)
        .iter()
        .map(|(name, archive)| {
            json!({ "name": name, "bytes": archive.bytes.len(), "written_by": archive.written_by })
        })
        .collect();
    axum::Json(json!({ "archives": listed })).into_response()
}

#[cfg(test)]
mod tests {
    use super::{READ, WRITE, scope_rules};

    #[test]
    fn writes_need_write_and_reads_need_read() {
        let rules = scope_rules();
        #[rustfmt::skip]
        let cases: [(&str, &str, &[&str]); 6] = [
            ("PUT",    "/archives/a.tar", &[WRITE]),
            ("GET",    "/archives/a.tar", &[READ]),
            ("GET",    "/archives",       &[READ]),
            ("DELETE", "/archives/a.tar", &[READ, WRITE]),
            ("PUT",    "/archives",       &[READ, WRITE]),
            ("POST",   "/elsewhere",      &[READ, WRITE]),
        ];
        for (method, path, expected) in cases {
            assert_eq!(rules.required(method, path), expected, "{method} {path}");
        }
    }
}

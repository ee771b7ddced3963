//! The admin API under `/api` (docs/API.md, `openapi.json`): bearer-token
//! auth with a role per endpoint, JSON errors that say what to do, and handlers that go through the
//! same engine, registry and store as the CLI.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::scheduler::TriggerError;
use super::{App, roles, views};
use nexo_db::StoreError;
use nexo_db::audit::Actor;
use nexo_db::service::Role;
use nexo_registry::connections::ConnectionError;
use nexo_runtime::sandbox::redact;
use nexo_sync::{PipelineError, SyncError};

/// An API error: status and a message for a person.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn not_found(what: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, what.into())
    }
    pub(super) fn bad(what: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, what.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Errors may quote what a plugin or a system said.
        let ApiError(status, message) = self;
        let message = redact::scrub(&message);
        if status.is_server_error() {
            tracing::error!(%status, error = %message, "admin API request failed");
        }
        (status, Json(json!({"error": message}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        let status = match &e {
            SyncError::Review(r) => reviews::review_error_status(r),
            SyncError::UnknownPipeline(_) | SyncError::UnknownRun(_) => StatusCode::NOT_FOUND,
            SyncError::Paused(_)
            | SyncError::Busy(_)
            | SyncError::NotRunning { .. }
            | SyncError::Pipeline(PipelineError::NeedsReset { .. }) => StatusCode::CONFLICT,
            SyncError::Pipeline(_) | SyncError::Queue(_) | SyncError::Stream { .. } => {
                StatusCode::BAD_REQUEST
            }
            SyncError::Store(_) | SyncError::Lock { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.to_string())
    }
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        let text = e.to_string();
        let status = if text.contains("no connection named") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError(status, text)
    }
}

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> Self {
        let status = match &e {
            TriggerError::Unknown(_) => StatusCode::NOT_FOUND,
            TriggerError::Paused(_) => StatusCode::CONFLICT,
            TriggerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            TriggerError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

pub mod alerts;
mod connection_update;
mod connections;
mod pipelines;
mod queues;
mod reviews;
mod survey;
use connection_update::update_connection;
use connections::*;
use pipelines::*;
use queues::*;

/// The `/api` routes (auth applied by the caller).
pub fn routes(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/overview", get(overview))
        .route("/api/plugins", get(plugins))
        .route("/api/connections", get(connections).post(add_connection))
        .route(
            "/api/connections/{name}",
            get(connection)
                .patch(update_connection)
                .delete(remove_connection),
        )
        .route("/api/connections/{name}/test", post(test_connection))
        .route(
            "/api/connections/{name}/authorize",
            post(crate::oauth::start),
        )
        .route("/api/pipelines", get(pipelines))
        .route(
            "/api/pipelines/{name}",
            get(pipeline).put(put_pipeline).delete(remove_pipeline),
        )
        .route("/api/pipelines/{name}/run", post(run_pipeline))
        .route("/api/pipelines/{name}/pause", post(pause_pipeline))
        .route("/api/pipelines/{name}/resume", post(resume_pipeline))
        .route("/api/pipelines/{name}/match", post(reviews::match_pipeline))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/stop", post(stop_run))
        .route("/api/errors", get(errors))
        .route("/api/dlq", get(dead_letters))
        .route("/api/dlq/{id}", get(dead_letter))
        .route("/api/dlq/{id}/replay", post(replay))
        .route("/api/dlq/{id}/discard", post(discard))
        .route("/api/conflicts", get(conflicts))
        .route("/api/conflicts/{id}", get(conflict))
        .route("/api/conflicts/{id}/resolve", post(resolve))
        .route("/api/reviews", get(reviews::reviews))
        .route("/api/reviews/{id}", get(reviews::review))
        .route("/api/reviews/{id}/accept", post(reviews::accept))
        .route("/api/reviews/{id}/reject", post(reviews::reject))
        .route("/api/identity", get(identity))
        .route("/api/hosts", get(hosts))
        .route("/api/audit", get(audit_trail))
        .route("/api/audit/export", get(audit_export))
        .route("/api/map", get(map))
        .route("/api/survey", post(survey::survey))
        .route(
            "/api/alerts/channels",
            get(alerts::channels).post(alerts::add_channel),
        )
        .route(
            "/api/alerts/channels/{name}",
            axum::routing::delete(alerts::remove_channel),
        )
        .route(
            "/api/alerts/channels/{name}/test",
            post(alerts::test_channel),
        )
        .route(
            "/api/alerts/rules",
            get(alerts::rules).post(alerts::add_rule),
        )
        .route(
            "/api/alerts/rules/{name}",
            axum::routing::delete(alerts::remove_rule),
        )
        .route("/api/alerts/incidents", get(alerts::incidents))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ))
        .with_state(app)
}

/// Who made the request: the token's name and role (put there by
/// [`require_token`]).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// The caller as the audit trail names it.
    pub(crate) fn actor(&self) -> Actor {
        Actor::Token(self.name.clone())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "send `Authorization: Bearer <token>`".into(),
            )
        })
    }
}

/// The token check in front of `/api` (and `/metrics`): the token must be
/// known and its role at least the one the API document gives the
/// endpoint ([`crate::roles`]) — the one place roles are enforced.
pub(crate) async fn require_token(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "send `Authorization: Bearer <token>`; create a token with `nexo token create --name NAME --role ROLE`"
                .into(),
        )
        .into_response();
    };
    let who = match app.registry.db().check_token(token) {
        Ok(Some(who)) => who,
        Ok(None) => {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "this token is not valid (revoked, or never created); create one with `nexo token create --name NAME --role ROLE`"
                    .into(),
            )
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    match roles::TABLE.needs(&method, &path) {
        Some(roles::Needs::Role(needed)) if who.role >= needed => {}
        Some(roles::Needs::Public) => {}
        Some(roles::Needs::Role(needed)) => {
            tracing::warn!(token = %who.name, role = %who.role, %method, %path, %needed, "refused: role too low");
            return ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "token `{}` is a {}; {method} {path} needs {needed} or above: ask an admin for a token with `nexo token create --name NAME --role {needed}`",
                    who.name, who.role
                ),
            )
            .into_response();
        }
        None => {
            // Fail closed: an endpoint the document does not list has no role.
            return ApiError(
                StatusCode::FORBIDDEN,
                format!("{method} {path} has no role in the API document, so it is refused to every token"),
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(Caller {
        name: who.name,
        role: who.role,
    });
    next.run(req).await
}

async fn session(caller: Caller) -> Json<Value> {
    Json(json!({"ok": true, "token_name": caller.name, "role": caller.role.as_str()}))
}

async fn overview(State(app): State<Arc<App>>) -> ApiResult {
    let conns = views::connections(&app)?;
    let mut pipes = Vec::new();
    for row in app.engine.store().pipelines()? {
        pipes.push(views::pipeline(&app, &row)?);
    }
    Ok(Json(json!({"connections": conns, "pipelines": pipes})))
}

/// `GET /api/audit` filters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    action: Option<String>,
    target: Option<String>,
    actor: Option<String>,
    after_id: Option<i64>,
    limit: Option<usize>,
}

impl AuditQuery {
    fn filter(self, limit: usize) -> nexo_db::audit::AuditFilter {
        nexo_db::audit::AuditFilter {
            action: self.action.filter(|s| !s.is_empty()),
            target: self.target.filter(|s| !s.is_empty()),
            actor: self.actor.filter(|s| !s.is_empty()),
            after_id: self.after_id,
            limit,
        }
    }
}

/// The audit trail, newest first (100 entries unless `limit` says).
async fn audit_trail(State(app): State<Arc<App>>, Query(q): Query<AuditQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = app.registry.db().audit_entries(&q.filter(limit))?;
    Ok(Json(json!({
        "entries": entries.iter().map(nexo_db::audit::AuditEntry::to_json).collect::<Vec<_>>()
    })))
}

/// Every matching entry of the trail, oldest first, as JSON lines.
async fn audit_export(
    State(app): State<Arc<App>>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let mut entries = app.registry.db().audit_entries(&q.filter(0))?;
    entries.reverse();
    let mut body = String::new();
    for e in &entries {
        body.push_str(&e.to_json().to_string());
        body.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"nexo-audit.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The living map (`nexo docs` as JSON): systems, connections, pipelines
/// and their health, with the diagram's layout.
async fn map(State(app): State<Arc<App>>) -> ApiResult {
    let map = crate::map::Map::build(
        app.registry.db(),
        app.engine.store().as_ref(),
        Some(&app.sealer),
    )?;
    let value = serde_json::to_value(&map)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(value))
}

/// The hosts sharing the database (none on SQLite).
async fn hosts(State(app): State<Arc<App>>) -> ApiResult {
    let db = app.registry.db();
    let Some(pg) = db.postgres() else {
        return Ok(Json(
            json!({"shared": false, "database": "sqlite", "lease_ms": null, "hosts": []}),
        ));
    };
    let lease = app.engine.host_lease();
    let lease_ms = lease.map(|l| l.lease.as_millis() as i64);
    let me = lease.map(|l| l.host.as_str());
    let hosts: Vec<Value> = db
        .hosts()?
        .into_iter()
        .map(|h| {
            let alive = h.stopped_at.is_none() && h.seen_ago_ms <= lease_ms.unwrap_or(30_000);
            json!({
                "id": h.id,
                "version": h.version,
                "address": h.address,
                "max_concurrent_runs": h.max_concurrent_runs,
                "started_at": h.started_at,
                "seen_ago_ms": h.seen_ago_ms,
                "alive": alive,
                "stopped_at": h.stopped_at,
                "holding": h.holding,
                "this_host": Some(h.id.as_str()) == me,
            })
        })
        .collect();
    Ok(Json(json!({
        "shared": true,
        "database": format!("postgres://{}", pg.target()),
        "lease_ms": lease_ms,
        "hosts": hosts,
    })))
}

//! The admin API under `/api` (docs/API.md, `openapi.json`): bearer-token
//! auth, JSON errors that say what to do, and handlers that go through the
//! same engine, registry and store as the CLI.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::scheduler::TriggerError;
use super::{App, views};
use crate::connections::{ConnectionError, NewConnection};
use crate::sandbox::redact;
use crate::store::StoreError;
use crate::store::connections::{ConnectionGrants, Environment};
use crate::sync::store::{ConflictStatus, DeadLetterStatus, RunFilter};
use crate::sync::{ApplyOptions, Pipeline, PipelineError, RunOptions, Side, SyncError};

/// An API error: status and a message for a person.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn not_found(what: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, what.into())
    }
    fn bad(what: impl Into<String>) -> Self {
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

mod connection_update;
use connection_update::update_connection;

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
        .route("/api/pipelines", get(pipelines))
        .route(
            "/api/pipelines/{name}",
            get(pipeline).put(put_pipeline).delete(remove_pipeline),
        )
        .route("/api/pipelines/{name}/run", post(run_pipeline))
        .route("/api/pipelines/{name}/pause", post(pause_pipeline))
        .route("/api/pipelines/{name}/resume", post(resume_pipeline))
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
        .route("/api/identity", get(identity))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ))
        .with_state(app)
}

/// The name of the token the request was made with.
#[derive(Debug, Clone)]
struct TokenName(String);

/// The admin token check in front of `/api` (and `/metrics`).
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
            "send `Authorization: Bearer <token>`; create a token with `nexo token create --name NAME`"
                .into(),
        )
        .into_response();
    };
    match app.registry.db().check_token(token) {
        Ok(Some(name)) => {
            req.extensions_mut().insert(TokenName(name));
            next.run(req).await
        }
        Ok(None) => ApiError(
            StatusCode::UNAUTHORIZED,
            "this token is not valid (revoked, or never created); create one with `nexo token create --name NAME`"
                .into(),
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn session(req: Request) -> Json<Value> {
    let name = req
        .extensions()
        .get::<TokenName>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    Json(json!({"ok": true, "token_name": name}))
}

async fn overview(State(app): State<Arc<App>>) -> ApiResult {
    let conns = views::connections(&app)?;
    let mut pipes = Vec::new();
    for row in app.engine.store().pipelines()? {
        pipes.push(views::pipeline(&app, &row)?);
    }
    Ok(Json(json!({"connections": conns, "pipelines": pipes})))
}

async fn plugins(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(Value::Array(views::plugins(&app)?)))
}

async fn connections(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(Value::Array(views::connections(&app)?)))
}

async fn connection(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
    let Some(mut view) = views::connection(&app, &name)? else {
        return Err(ApiError::not_found(format!("no connection named `{name}`")));
    };
    let row = app.connections.get(&name)?;
    let secrets = app.connections.secret_names(&name)?;
    if let Value::Object(m) = &mut view {
        m.insert(
            "config".into(),
            serde_json::from_str(&row.config).unwrap_or(Value::Null),
        );
        m.insert("secrets".into(), json!(secrets));
        m.insert(
            "grants".into(),
            serde_json::to_value(&row.grants).unwrap_or(Value::Null),
        );
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConnectionBody {
    name: String,
    plugin: String,
    #[serde(default)]
    version: Option<semver::Version>,
    environment: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    grants: Option<ConnectionGrants>,
}

async fn add_connection(
    State(app): State<Arc<App>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(mut body) = body.map_err(|e| ApiError::bad(format!("connection body: {e}")))?;
    let secrets = connection_update::take_secrets(&mut body)?;
    let body: NewConnectionBody =
        serde_json::from_value(body).map_err(|e| ApiError::bad(format!("connection body: {e}")))?;
    let environment: Environment = body.environment.parse().map_err(ApiError::bad)?;
    let new = NewConnection {
        name: body.name.clone(),
        plugin_id: body.plugin,
        pinned_version: body.version,
        environment,
        config: body.config.unwrap_or_else(|| json!({})),
        secrets,
        grants: body.grants.unwrap_or_default(),
    };
    app.connections.add(new)?;
    let view = views::connection(&app, &body.name)?
        .ok_or_else(|| ApiError::not_found(format!("no connection named `{}`", body.name)))?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn test_connection(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
    app.connections.get(&name)?;
    let result = app.connections.test(&name).await;
    let error = result.err().map(|e| e.to_string());
    app.registry.db().set_health(&name, error.as_deref())?;
    Ok(Json(json!({"ok": error.is_none(), "error": error})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove_connection(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    match app.connections.remove(&name, q.force) {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(ConnectionError::InUse {
            connection,
            pipelines,
        }) => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "connection `{connection}` is used by pipeline(s) {}: point them at another connection \
                 (PUT /api/pipelines/{{name}}) or delete them first, or add ?force=true to remove it \
                 anyway and pause them",
                pipelines.join(", ")
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn pipelines(State(app): State<Arc<App>>) -> ApiResult {
    let mut out = Vec::new();
    for row in app.engine.store().pipelines()? {
        out.push(views::pipeline(&app, &row)?);
    }
    Ok(Json(Value::Array(out)))
}

fn pipeline_view(app: &App, name: &str) -> ApiResult {
    let row = app
        .engine
        .store()
        .pipeline(name)?
        .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
    Ok(Json(views::pipeline(app, &row)?))
}

async fn pipeline(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
    let row = app
        .engine
        .store()
        .pipeline(&name)?
        .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
    let mut view = views::pipeline(&app, &row)?;
    let definition = toml::to_string(&row.pipeline).unwrap_or_default();
    if let Value::Object(m) = &mut view {
        m.insert("definition".into(), Value::String(definition));
    }
    Ok(Json(view))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    /// Accept an identity change and reset the cursor (`--reset`).
    #[serde(default)]
    reset: bool,
}

async fn put_pipeline(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<ApplyQuery>,
    body: String,
) -> ApiResult {
    // `apply` checks it, connections first.
    let pipeline = Pipeline::parse_toml(&body, "<request body>").map_err(SyncError::from)?;
    if pipeline.name != name {
        return Err(ApiError::bad(format!(
            "the definition names pipeline `{}` but the path says `{name}`",
            pipeline.name
        )));
    }
    app.engine
        .apply_with(&pipeline, ApplyOptions { reset: q.reset })
        .await?;
    app.scheduler.wake();
    pipeline_view(&app, &name)
}

async fn remove_pipeline(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.scheduler.view(&name).running {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("pipeline `{name}` is running; pause it and wait for the run to end"),
        ));
    }
    if !app.engine.store().delete_pipeline(&name)? {
        return Err(ApiError::not_found(format!("no pipeline named `{name}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    dry_run: bool,
}

async fn run_pipeline(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Option<Json<RunBody>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    if body.dry_run {
        let report = app
            .engine
            .run(
                &name,
                RunOptions {
                    dry_run: true,
                    ..RunOptions::default()
                },
            )
            .await?;
        return Ok((
            StatusCode::OK,
            Json(json!({"plan": report.plan, "counts": report.counts})),
        ));
    }
    app.scheduler.trigger(&name)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": true}))))
}

async fn pause_pipeline(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
    if !app.engine.store().set_paused(&name, true, None)? {
        return Err(ApiError::not_found(format!("no pipeline named `{name}`")));
    }
    pipeline_view(&app, &name)
}

async fn resume_pipeline(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
    if !app.engine.store().set_paused(&name, false, None)? {
        return Err(ApiError::not_found(format!("no pipeline named `{name}`")));
    }
    app.scheduler.wake();
    pipeline_view(&app, &name)
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    pipeline: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn runs(State(app): State<Arc<App>>, Query(q): Query<RunsQuery>) -> ApiResult {
    // A run whose process died is shown as it ended, not `running`.
    app.engine.reap_interrupted()?;
    let rows = app.engine.store().runs(&RunFilter {
        pipeline: q.pipeline.filter(|p| !p.is_empty()),
        status: q.status.filter(|s| !s.is_empty()),
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
    })?;
    Ok(Json(Value::Array(rows.iter().map(views::run).collect())))
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    outcome: Option<String>,
    limit: Option<usize>,
}

async fn run(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Query(q): Query<RunQuery>,
) -> ApiResult {
    app.engine.reap_interrupted()?;
    let store = app.engine.store();
    let row = store
        .run(id)?
        .ok_or_else(|| ApiError::not_found(format!("no run #{id}")))?;
    let log: Vec<Value> = store
        .run_log(id)?
        .into_iter()
        .map(|(at, level, message)| json!({"at": at, "level": level, "message": message}))
        .collect();
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let outcome = q.outcome.filter(|o| !o.is_empty());
    let records: Vec<Value> = store
        .run_records(id)?
        .into_iter()
        .filter(|r| outcome.as_deref().is_none_or(|o| r.outcome.as_str() == o))
        .take(limit)
        .map(|r| {
            json!({
                "source_id": r.source_id,
                "destination_id": r.destination_id,
                "outcome": r.outcome.as_str(),
                "detail": r.detail,
            })
        })
        .collect();
    Ok(Json(
        json!({"run": views::run(&row), "log": log, "records": records}),
    ))
}

/// Ask a running run to stop at its next page boundary.
async fn stop_run(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let row = crate::sync::request_stop(app.engine.store().as_ref(), id)?;
    Ok((StatusCode::ACCEPTED, Json(views::run(&row))))
}

#[derive(Debug, Deserialize)]
struct ErrorsQuery {
    days: Option<u32>,
}

async fn errors(State(app): State<Arc<App>>, Query(q): Query<ErrorsQuery>) -> ApiResult {
    let days = q.days.unwrap_or(14).clamp(1, 365);
    let rows = app.registry.db().error_days(days)?;
    let mut top: BTreeMap<(String, String), (u64, String, String)> = BTreeMap::new();
    for r in &rows {
        let e = top.entry((r.pipeline.clone(), r.class.clone())).or_insert((
            0,
            String::new(),
            String::new(),
        ));
        e.0 += r.count;
        if r.last_at >= e.2 {
            e.1 = r.last_error.clone();
            e.2 = r.last_at.clone();
        }
    }
    let mut top: Vec<Value> = top
        .into_iter()
        .map(|((pipeline, class), (count, last_error, last_at))| {
            json!({"pipeline": pipeline, "class": class, "count": count,
                   "last_error": last_error, "last_at": last_at})
        })
        .collect();
    top.sort_by_key(|v| std::cmp::Reverse(v["count"].as_u64().unwrap_or(0)));
    let by_day: Vec<Value> = rows
        .iter()
        .map(|r| json!({"day": r.day, "pipeline": r.pipeline, "class": r.class, "count": r.count}))
        .collect();
    Ok(Json(json!({"top": top, "by_day": by_day})))
}

#[derive(Debug, Deserialize)]
struct QueueQuery {
    pipeline: Option<String>,
    status: Option<String>,
}

fn letter(d: &crate::sync::store::DeadLetter, with_record: bool) -> Value {
    let mut v = json!({
        "id": d.id, "pipeline": d.pipeline, "run_id": d.run_id,
        "kind": d.letter.kind.as_str(), "source_id": d.letter.source_id,
        "error": d.letter.error, "class": d.letter.class, "field": d.letter.field,
        "attempts": d.letter.attempts, "status": d.status.as_str(), "created_at": d.created_at,
    });
    if with_record && let Value::Object(m) = &mut v {
        m.insert(
            "record".into(),
            serde_json::from_str(&d.letter.record)
                .unwrap_or_else(|_| Value::String(d.letter.record.clone())),
        );
    }
    v
}

/// The `status` filter of a queue listing: `open` when absent, none for
/// `all`, a 400 naming the statuses for anything else.
fn status_filter<T: Copy>(
    given: Option<&str>,
    open: T,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<Option<T>, ApiError> {
    match given.unwrap_or("open") {
        "all" => Ok(None),
        "open" => Ok(Some(open)),
        text => all
            .iter()
            .copied()
            .find(|s| name(*s) == text)
            .map(Some)
            .ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|s| name(*s)).collect();
                ApiError::bad(format!(
                    "unknown status `{text}`; use one of {} or all",
                    known.join(", ")
                ))
            }),
    }
}

async fn dead_letters(State(app): State<Arc<App>>, Query(q): Query<QueueQuery>) -> ApiResult {
    let status = status_filter(
        q.status.as_deref(),
        DeadLetterStatus::Open,
        &DeadLetterStatus::ALL,
        DeadLetterStatus::as_str,
    )?;
    let list = app
        .engine
        .store()
        .dead_letters(q.pipeline.as_deref().filter(|p| !p.is_empty()), status)?;
    Ok(Json(Value::Array(
        list.iter().map(|d| letter(d, false)).collect(),
    )))
}

async fn dead_letter(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    let d = app
        .engine
        .store()
        .dead_letter(id)?
        .ok_or_else(|| ApiError::not_found(format!("no dead letter #{id}")))?;
    Ok(Json(letter(&d, true)))
}

async fn replay(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    if app.engine.store().dead_letter(id)?.is_none() {
        return Err(ApiError::not_found(format!("no dead letter #{id}")));
    }
    let run_id = app.engine.replay(id).await?;
    Ok(Json(json!({"run_id": run_id})))
}

async fn discard(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    if app.engine.store().dead_letter(id)?.is_none() {
        return Err(ApiError::not_found(format!("no dead letter #{id}")));
    }
    app.engine.discard(id)?;
    Ok(Json(json!({"ok": true})))
}

fn conflict_view(c: &crate::sync::store::Conflict, with_payloads: bool) -> Value {
    let mut v = json!({
        "id": c.id, "pipeline": c.pipeline, "run_id": c.run_id,
        "entity_id": c.conflict.entity_id, "source_id": c.conflict.source_id,
        "destination_id": c.conflict.destination_id, "fields": c.conflict.fields,
        "status": c.status.as_str(), "resolution": c.conflict.resolution, "created_at": c.created_at,
    });
    if with_payloads && let Value::Object(m) = &mut v {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.into()));
        m.insert("source_record".into(), parse(&c.conflict.source_record));
        m.insert(
            "destination_payload".into(),
            parse(&c.conflict.destination_payload),
        );
    }
    v
}

async fn conflicts(State(app): State<Arc<App>>, Query(q): Query<QueueQuery>) -> ApiResult {
    let status = status_filter(
        q.status.as_deref(),
        ConflictStatus::Open,
        &ConflictStatus::ALL,
        ConflictStatus::as_str,
    )?;
    let list = app
        .engine
        .store()
        .conflicts(q.pipeline.as_deref().filter(|p| !p.is_empty()), status)?;
    Ok(Json(Value::Array(
        list.iter().map(|c| conflict_view(c, false)).collect(),
    )))
}

async fn conflict(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    let c = app
        .engine
        .store()
        .conflict(id)?
        .ok_or_else(|| ApiError::not_found(format!("no conflict #{id}")))?;
    Ok(Json(conflict_view(&c, true)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    keep: String,
}

async fn resolve(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    body: Result<Json<ResolveBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| ApiError::bad(format!("resolve body: {e}")))?;
    let side = match body.keep.as_str() {
        "source" => Side::Source,
        "destination" => Side::Destination,
        other => {
            return Err(ApiError::bad(format!(
                "keep `{other}`: use `source` or `destination`"
            )));
        }
    };
    if app.engine.store().conflict(id)?.is_none() {
        return Err(ApiError::not_found(format!("no conflict #{id}")));
    }
    app.engine.resolve(id, side).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
struct IdentityQuery {
    q: Option<String>,
}

async fn identity(State(app): State<Arc<App>>, Query(q): Query<IdentityQuery>) -> ApiResult {
    let q = q.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::bad(
            "give `q`: a record id, a name, an email or any text of a record",
        ));
    }
    Ok(Json(Value::Array(views::entities(&app, &q)?)))
}

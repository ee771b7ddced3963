//! `/api/pipelines…` and `/api/runs…`: applying, running, pausing and
//! removing pipelines, and their runs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Caller};
use crate::{App, audit, views};
use nexo_db::audit::{Action, Change};
use nexo_sync::store::{RunFilter, RunStatus};
use nexo_sync::{ApplyOptions, Pipeline, RunOptions, SyncError};

pub(super) async fn pipelines(State(app): State<Arc<App>>) -> ApiResult {
    let mut out = Vec::new();
    for row in app.engine.store().pipelines()? {
        out.push(views::pipeline(&app, &row)?);
    }
    Ok(Json(Value::Array(out)))
}

pub(super) fn pipeline_view(app: &App, name: &str) -> ApiResult {
    let row = app
        .engine
        .store()
        .pipeline(name)?
        .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
    Ok(Json(views::pipeline(app, &row)?))
}

pub(super) async fn pipeline(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
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
pub(super) struct ApplyQuery {
    /// Accept an identity change and reset the cursor (`--reset`).
    #[serde(default)]
    reset: bool,
}

pub(super) async fn put_pipeline(
    State(app): State<Arc<App>>,
    caller: Caller,
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
    let store = app.engine.store();
    let before = audit::pipeline(store.as_ref(), &name)?;
    app.engine
        .apply_with(&pipeline, ApplyOptions { reset: q.reset })
        .await?;
    let mut after = audit::pipeline(store.as_ref(), &name)?;
    if q.reset
        && let Some(Value::Object(a)) = after.as_mut()
    {
        a.insert("reset".into(), Value::Bool(true));
    }
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(Action::PipelineApply, format!("pipeline/{name}")),
            before,
            after,
        ),
    );
    app.scheduler.wake();
    pipeline_view(&app, &name)
}

pub(super) async fn remove_pipeline(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.scheduler.view(&name).running {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("pipeline `{name}` is running; pause it and wait for the run to end"),
        ));
    }
    let store = app.engine.store();
    let before = audit::pipeline(store.as_ref(), &name)?;
    if !store.delete_pipeline(&name)? {
        return Err(ApiError::not_found(format!("no pipeline named `{name}`")));
    }
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(Action::PipelineRemove, format!("pipeline/{name}")),
            before,
            None,
        ),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn run_pipeline(
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
            Json(
                json!({"plan": report.plan, "counts": report.counts, "matching": report.matching}),
            ),
        ));
    }
    app.scheduler.trigger(&name)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": true}))))
}

pub(super) async fn pause_pipeline(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    set_paused(&app, &caller, &name, true)?;
    pipeline_view(&app, &name)
}

pub(super) async fn resume_pipeline(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    set_paused(&app, &caller, &name, false)?;
    app.scheduler.wake();
    pipeline_view(&app, &name)
}

/// Pause or resume `name` for `caller`, and record it.
fn set_paused(app: &App, caller: &Caller, name: &str, paused: bool) -> Result<(), ApiError> {
    let store = app.engine.store();
    let before = audit::pipeline(store.as_ref(), name)?;
    if !store.set_paused(name, paused, None)? {
        return Err(ApiError::not_found(format!("no pipeline named `{name}`")));
    }
    let action = if paused {
        Action::PipelinePause
    } else {
        Action::PipelineResume
    };
    let after = audit::pipeline(store.as_ref(), name)?;
    let paused_of = |v: Option<Value>| {
        v.map(|v| json!({"paused": v["paused"], "paused_reason": v["paused_reason"]}))
    };
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(action, format!("pipeline/{name}")),
            paused_of(before),
            paused_of(after),
        ),
    );
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(super) struct RunsQuery {
    pipeline: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn runs(State(app): State<Arc<App>>, Query(q): Query<RunsQuery>) -> ApiResult {
    // A run whose process died is shown as it ended, not `running`.
    app.engine.reap_interrupted()?;
    let rows = app.engine.store().runs(&RunFilter {
        pipeline: q.pipeline.filter(|p| !p.is_empty()),
        status: q
            .status
            .filter(|s| !s.is_empty())
            .map(|s| RunStatus::from_filter(&s).map_err(ApiError::bad))
            .transpose()?,
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
    })?;
    Ok(Json(Value::Array(rows.iter().map(views::run).collect())))
}

#[derive(Debug, Deserialize)]
pub(super) struct RunQuery {
    outcome: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn run(
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
pub(super) async fn stop_run(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let row = nexo_sync::request_stop(app.engine.store().as_ref(), id)?;
    audit::record(
        app.registry.db(),
        &caller.actor(),
        Change::new(Action::RunStop, format!("run/{id}"))
            .after(json!({"pipeline": row.pipeline, "status": row.status.to_string()})),
    );
    Ok((StatusCode::ACCEPTED, Json(views::run(&row))))
}

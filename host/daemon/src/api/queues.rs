//! `/api/errors`, `/api/dead-letters…`, `/api/conflicts…` and
//! `/api/identity`: what failed, replaying or discarding it, resolving
//! conflicts, and one record in every system.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Caller};
use crate::{App, audit, views};
use nexo_db::audit::{Action, Change};
use nexo_sync::Side;
use nexo_sync::store::{ConflictStatus, DeadLetterStatus};

#[derive(Debug, Deserialize)]
pub(super) struct ErrorsQuery {
    days: Option<u32>,
}

pub(super) async fn errors(State(app): State<Arc<App>>, Query(q): Query<ErrorsQuery>) -> ApiResult {
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
pub(super) struct QueueQuery {
    pipeline: Option<String>,
    status: Option<String>,
}

pub(super) fn letter(d: &nexo_sync::store::DeadLetter, with_record: bool) -> Value {
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
pub(super) fn status_filter<T: Copy>(
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

pub(super) async fn dead_letters(
    State(app): State<Arc<App>>,
    Query(q): Query<QueueQuery>,
) -> ApiResult {
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

pub(super) async fn dead_letter(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    let d = app
        .engine
        .store()
        .dead_letter(id)?
        .ok_or_else(|| ApiError::not_found(format!("no dead letter #{id}")))?;
    Ok(Json(letter(&d, true)))
}

pub(super) async fn replay(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult {
    let store = app.engine.store();
    let Some(before) = audit::dead_letter(store.as_ref(), id)? else {
        return Err(ApiError::not_found(format!("no dead letter #{id}")));
    };
    let run_id = app.engine.replay(id).await?;
    let mut after = audit::dead_letter(store.as_ref(), id)?;
    if let Some(Value::Object(a)) = after.as_mut() {
        a.insert("run_id".into(), json!(run_id));
    }
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(Action::DeadLetterReplay, format!("dlq/{id}")),
            Some(before),
            after,
        ),
    );
    Ok(Json(json!({"run_id": run_id})))
}

pub(super) async fn discard(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult {
    let store = app.engine.store();
    let Some(before) = audit::dead_letter(store.as_ref(), id)? else {
        return Err(ApiError::not_found(format!("no dead letter #{id}")));
    };
    app.engine.discard(id)?;
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(Action::DeadLetterDiscard, format!("dlq/{id}")),
            Some(before),
            audit::dead_letter(store.as_ref(), id)?,
        ),
    );
    Ok(Json(json!({"ok": true})))
}

pub(super) fn conflict_view(c: &nexo_sync::store::Conflict, with_payloads: bool) -> Value {
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

pub(super) async fn conflicts(
    State(app): State<Arc<App>>,
    Query(q): Query<QueueQuery>,
) -> ApiResult {
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

pub(super) async fn conflict(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    let c = app
        .engine
        .store()
        .conflict(id)?
        .ok_or_else(|| ApiError::not_found(format!("no conflict #{id}")))?;
    Ok(Json(conflict_view(&c, true)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveBody {
    keep: String,
}

pub(super) async fn resolve(
    State(app): State<Arc<App>>,
    caller: Caller,
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
    let store = app.engine.store();
    let Some(before) = audit::conflict(store.as_ref(), id)? else {
        return Err(ApiError::not_found(format!("no conflict #{id}")));
    };
    app.engine.resolve(id, side).await?;
    let mut after = audit::conflict(store.as_ref(), id)?;
    if let Some(Value::Object(a)) = after.as_mut() {
        a.insert("kept".into(), json!(body.keep));
    }
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(Action::ConflictResolve, format!("conflict/{id}")),
            Some(before),
            after,
        ),
    );
    Ok(Json(json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
pub(super) struct IdentityQuery {
    q: Option<String>,
}

pub(super) async fn identity(
    State(app): State<Arc<App>>,
    Query(q): Query<IdentityQuery>,
) -> ApiResult {
    let q = q.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::bad(
            "give `q`: a record id, a name, an email or any text of a record",
        ));
    }
    Ok(Json(Value::Array(views::entities(&app, &q)?)))
}

//! `/api/alerts/…`: alert channels (never their secret), rules and
//! incidents, and a channel's test button. Changes go through
//! [`crate::alerts`]'s one function per change, as the CLI's do.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Caller};
use crate::App;
use crate::alerts::{self, AlertError, ChannelConfig, Rule};
use nexo_db::alerts::{ChannelRow, Incident};
use nexo_runtime::sandbox::secrets::SecretValue;

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> Self {
        let status = match &e {
            AlertError::Exists { .. } => StatusCode::CONFLICT,
            AlertError::Unknown { .. } => StatusCode::NOT_FOUND,
            AlertError::Invalid(_) => StatusCode::BAD_REQUEST,
            AlertError::Store(_) | AlertError::Seal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// A channel as the API and the CLI show it: settings, never the secret.
pub fn channel_view(row: &ChannelRow) -> Value {
    let config = alerts::channel_config(row)
        .ok()
        .and_then(|c| serde_json::to_value(c).ok())
        .unwrap_or(Value::Null);
    json!({
        "name": row.name,
        "kind": row.kind.as_str(),
        "config": config,
        "has_secret": row.has_secret,
        "created_at": row.created_at,
    })
}

/// An incident with its deliveries, as the API and the CLI show it.
pub fn incident_view(i: &Incident) -> Value {
    let deliveries: Vec<Value> = i
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "channel": d.channel,
                "notice": d.notice.as_str(),
                "status": d.status.as_str(),
                "attempts": d.attempts,
                "error": d.error,
                "sent_at": d.sent_at,
            })
        })
        .collect();
    json!({
        "id": i.id,
        "rule": i.rule,
        "subject": i.subject,
        "summary": i.summary,
        "opened_at": i.opened_at,
        "last_seen_at": i.last_seen_at,
        "resolved_at": i.resolved_at,
        "deliveries": deliveries,
    })
}

pub(super) async fn channels(State(app): State<Arc<App>>) -> ApiResult {
    let rows = app.registry.db().alert_channels()?;
    Ok(Json(Value::Array(rows.iter().map(channel_view).collect())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChannelBody {
    name: String,
    config: ChannelConfig,
}

pub(super) async fn add_channel(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(mut body) = body.map_err(|e| ApiError::bad(format!("channel body: {e}")))?;
    // Taken out before the rest is read: serde's errors quote what they
    // reject, and the secret must not come back in one.
    let secret = match body.as_object_mut().and_then(|m| m.remove("secret")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(SecretValue::new(s)),
        Some(_) => return Err(ApiError::bad("secret: must be a string")),
    };
    let body: NewChannelBody =
        serde_json::from_value(body).map_err(|e| ApiError::bad(format!("channel body: {e}")))?;
    let db = app.registry.db();
    alerts::add_channel(
        db,
        &caller.actor(),
        &app.sealer,
        &body.name,
        &body.config,
        secret.as_ref(),
    )?;
    let row = db
        .alert_channels()?
        .into_iter()
        .find(|c| c.name == body.name)
        .ok_or_else(|| ApiError::not_found(format!("no alert channel named `{}`", body.name)))?;
    Ok((StatusCode::CREATED, Json(channel_view(&row))))
}

pub(super) async fn remove_channel(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    alerts::remove_channel(app.registry.db(), &caller.actor(), &name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn test_channel(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> ApiResult {
    if !app
        .registry
        .db()
        .alert_channels()?
        .iter()
        .any(|c| c.name == name)
    {
        return Err(AlertError::Unknown {
            what: "channel",
            name,
        }
        .into());
    }
    let error = alerts::evaluator::test_channel(app.registry.db(), &app.sealer, &name)
        .await
        .err()
        .map(|e| e.to_string());
    Ok(Json(json!({"ok": error.is_none(), "error": error})))
}

pub(super) async fn rules(State(app): State<Arc<App>>) -> ApiResult {
    let mut out = Vec::new();
    for row in app.registry.db().alert_rules()? {
        out.push(serde_json::to_value(Rule::from_row(&row)?).unwrap_or(Value::Null));
    }
    Ok(Json(Value::Array(out)))
}

pub(super) async fn add_rule(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<Rule>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(rule) = body.map_err(|e| ApiError::bad(format!("rule body: {e}")))?;
    alerts::add_rule(app.registry.db(), &caller.actor(), &rule)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(&rule).unwrap_or(Value::Null)),
    ))
}

pub(super) async fn remove_rule(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    alerts::remove_rule(app.registry.db(), &caller.actor(), &name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IncidentQuery {
    #[serde(default)]
    open: bool,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

pub(super) async fn incidents(
    State(app): State<Arc<App>>,
    Query(q): Query<IncidentQuery>,
) -> ApiResult {
    let rows = app
        .registry
        .db()
        .alert_incidents(q.open, q.limit.clamp(1, 1000))?;
    Ok(Json(Value::Array(rows.iter().map(incident_view).collect())))
}

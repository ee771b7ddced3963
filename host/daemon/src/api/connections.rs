//! `/api/plugins` and `/api/connections…`: what is installed, and adding,
//! testing and removing connections.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Caller};
use crate::{App, audit, views};
use nexo_db::audit::{Action, Change};
use nexo_db::connections::{ConnectionGrants, Environment};
use nexo_registry::connections::{ConnectionError, NewConnection};
use nexo_runtime::sandbox::secrets::SecretValue;

pub(super) async fn plugins(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(Value::Array(views::plugins(&app)?)))
}

pub(super) async fn connections(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(Value::Array(views::connections(&app)?)))
}

pub(super) async fn connection(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
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
pub(super) struct NewConnectionBody {
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

pub(super) async fn add_connection(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(mut body) = body.map_err(|e| ApiError::bad(format!("connection body: {e}")))?;
    let secrets = take_secrets(&mut body)?;
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
    audit::record(
        app.registry.db(),
        &caller.actor(),
        audit::with(
            Change::new(Action::ConnectionAdd, format!("connection/{}", body.name)),
            None,
            audit::connection(&app.connections, &body.name),
        ),
    );
    let view = views::connection(&app, &body.name)?
        .ok_or_else(|| ApiError::not_found(format!("no connection named `{}`", body.name)))?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn test_connection(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> ApiResult {
    app.connections.get(&name)?;
    let result = app.connections.test(&name).await;
    let error = result.err().map(|e| e.to_string());
    app.registry.db().set_health(&name, error.as_deref())?;
    Ok(Json(json!({"ok": error.is_none(), "error": error})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

pub(super) async fn remove_connection(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let before = audit::connection(&app.connections, &name);
    match app.connections.remove(&name, q.force) {
        Ok(paused) => {
            audit::record(
                app.registry.db(),
                &caller.actor(),
                audit::with(
                    Change::new(Action::ConnectionRemove, format!("connection/{name}")),
                    before,
                    (!paused.is_empty()).then(|| json!({"paused_pipelines": paused})),
                ),
            );
            Ok(StatusCode::NO_CONTENT)
        }
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

/// Take the write-only `secrets` (`{name: value}`) out of a request body
/// before the rest is read: serde's errors quote the value they reject,
/// and a secret must not come back in an error (nor reach a log).
pub(super) fn take_secrets(body: &mut Value) -> Result<BTreeMap<String, SecretValue>, ApiError> {
    let Some(secrets) = body.as_object_mut().and_then(|m| m.remove("secrets")) else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(secrets) = secrets else {
        return Err(ApiError::bad(
            "secrets: must be an object of secret names to their values (strings)",
        ));
    };
    secrets
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(v) => Ok((name, SecretValue::new(v))),
            _ => Err(ApiError::bad(format!(
                "secrets: the value of `{}` must be a string",
                nexo_runtime::safe_text::SafeText::line(&name)
            ))),
        })
        .collect()
}

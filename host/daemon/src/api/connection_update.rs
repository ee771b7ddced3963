//! `PATCH /api/connections/{name}`: the body of a connection update, read
//! into [`ConnectionUpdate`] (absent fields stay, `requests_per_minute:
//! null` is the default), and errors answered as 400s that name the field.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::connections::{connection, take_secrets};
use super::{ApiError, ApiResult, Caller};
use crate::{App, audit};
use nexo_db::audit::{Action, Change};
use nexo_registry::connections::{ConnectionError, ConnectionUpdate, Origins, RequestsPerMinute};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginsBody {
    #[serde(default)]
    http: Vec<String>,
    #[serde(default)]
    private_http: Vec<String>,
}

/// `requests_per_minute` in a PATCH: absent (unchanged), `null` (the
/// default), a number of at least 1, or `"unlimited"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RequestsPerMinuteBody {
    Limit(u64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionPatch {
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    remove_secrets: Vec<String>,
    #[serde(default)]
    grants: Option<OriginsBody>,
    #[serde(default)]
    origin_overrides: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    remove_origin_overrides: Vec<String>,
    // `Some(None)` is an explicit `null`: back to the default.
    #[serde(default, deserialize_with = "present")]
    requests_per_minute: Option<Option<RequestsPerMinuteBody>>,
}

/// A field that is present, even as `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn requests_per_minute(body: Option<RequestsPerMinuteBody>) -> Result<RequestsPerMinute, ApiError> {
    let wrong = |what: String| {
        ApiError::bad(format!(
            "requests_per_minute: must be a whole number of at least 1, \"unlimited\", or null for the default of {}, not {what}",
            nexo_registry::connections::DEFAULT_REQUESTS_PER_MINUTE
        ))
    };
    match body {
        None => Ok(RequestsPerMinute::Default),
        Some(RequestsPerMinuteBody::Word(w)) if w == "unlimited" => {
            Ok(RequestsPerMinute::Unlimited)
        }
        Some(RequestsPerMinuteBody::Word(w)) => Err(wrong(format!("{w:?}"))),
        Some(RequestsPerMinuteBody::Limit(n)) => u32::try_from(n)
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .map(RequestsPerMinute::Limit)
            .ok_or_else(|| wrong(n.to_string())),
    }
}

/// The body field a connection error is about, for a 400 that names it.
fn field_of(e: &ConnectionError) -> Option<&'static str> {
    match e {
        ConnectionError::InvalidConfig { .. } => Some("config"),
        ConnectionError::Secrets(_) => Some("secrets"),
        ConnectionError::OriginNotGranted { .. } | ConnectionError::Origin(_) => Some("grants"),
        ConnectionError::OverrideOnProduction { .. }
        | ConnectionError::OverrideNotDeclared { .. }
        | ConnectionError::Override(_) => Some("origin_overrides"),
        _ => None,
    }
}

pub(super) async fn update_connection(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    app.connections.get(&name)?;
    let Json(mut body) = body.map_err(|e| ApiError::bad(format!("connection update body: {e}")))?;
    let secrets = take_secrets(&mut body)?;
    let body: ConnectionPatch = serde_json::from_value(body)
        .map_err(|e| ApiError::bad(format!("connection update body: {e}")))?;
    let secrets_set: Vec<String> = secrets.keys().cloned().collect();
    let before = audit::connection(&app.connections, &name);
    let update = ConnectionUpdate {
        config: body.config,
        secrets,
        remove_secrets: body.remove_secrets,
        origins: body.grants.map(|g| Origins {
            http: g.http,
            private_http: g.private_http,
        }),
        requests_per_minute: body
            .requests_per_minute
            .map(requests_per_minute)
            .transpose()?,
        origin_overrides: body.origin_overrides,
        remove_origin_overrides: body.remove_origin_overrides,
    };
    match app.connections.update(&name, update) {
        Ok(_) => {
            let mut after = audit::connection(&app.connections, &name);
            if !secrets_set.is_empty()
                && let Some(Value::Object(a)) = after.as_mut()
            {
                a.insert("secrets_replaced".into(), json!(secrets_set));
            }
            audit::record(
                app.registry.db(),
                &caller.actor(),
                audit::with(
                    Change::new(Action::ConnectionUpdate, format!("connection/{name}")),
                    before,
                    after,
                ),
            );
        }
        Err(ConnectionError::NothingToUpdate(_)) => {
            return Err(ApiError::bad(
                "the body changes nothing: give config, secrets, remove_secrets, grants, origin_overrides, remove_origin_overrides or requests_per_minute",
            ));
        }
        Err(e) => {
            return Err(match field_of(&e) {
                Some(field) => ApiError::bad(format!("{field}: {e}")),
                None => e.into(),
            });
        }
    }
    let Json(view) = connection(State(app), Path(name)).await?;
    Ok(Json(view))
}

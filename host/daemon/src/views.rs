//! The shapes the admin API answers with (docs/API.md), built from the
//! store, the registry and the scheduler. Nothing secret is ever put in
//! them: connections show secret names only.

use serde::Serialize;
use serde_json::{Value, json};

use super::App;
use nexo_bundle::manifest::Manifest;
use nexo_db::StoreError;
use nexo_registry::capabilities_of;
use nexo_sync::store::{PipelineRow, RunFilter, RunRow};

/// A run as the API shows it.
pub fn run(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "pipeline": r.pipeline,
        "status": r.status,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration_ms": r.duration_ms,
        "pages": r.pages,
        "counts": r.counts,
        "error": r.error,
    })
}

/// How many of the last finished runs count for the error rate.
const RATE_WINDOW: usize = 20;
/// Runs kept for the console's charts.
const HISTORY: usize = 30;

/// One pipeline with its schedule, last run, totals and recent history.
pub fn pipeline(app: &App, row: &PipelineRow) -> Result<Value, StoreError> {
    let p = &row.pipeline;
    let runs = app.engine.store().runs(&RunFilter {
        pipeline: Some(p.name.clone()),
        status: None,
        limit: 500,
    })?;
    let finished: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.status != "running")
        .take(RATE_WINDOW)
        .collect();
    let failed = finished.iter().filter(|r| r.status == "failed").count();
    let error_rate = if finished.is_empty() {
        0.0
    } else {
        failed as f64 / finished.len() as f64
    };
    let moved: u64 = runs
        .iter()
        .map(|r| r.counts.created + r.counts.updated + r.counts.deleted)
        .sum();
    let history: Vec<Value> = runs
        .iter()
        .take(HISTORY)
        .rev()
        .map(|r| {
            json!({
                "run_id": r.id,
                "started_at": r.started_at,
                "status": r.status,
                "read": r.counts.read,
                "written": r.counts.written(),
                "failed": r.counts.failed + r.counts.quarantined,
            })
        })
        .collect();
    let (kind, text, jitter) = match p.schedule() {
        Ok(s) => {
            let kind = match s.timing {
                nexo_sync::schedule::Timing::Manual => "manual",
                nexo_sync::schedule::Timing::Interval(_) => "interval",
                nexo_sync::schedule::Timing::Cron(_) => "cron",
            };
            (kind, s.to_string(), s.jitter.as_secs())
        }
        Err(e) => ("manual", format!("invalid: {e}"), 0),
    };
    let slot = app.scheduler.view(&p.name);
    Ok(json!({
        "name": p.name,
        "description": p.description,
        "entity": p.entity,
        "source": {"connection": p.source.connection, "stream": p.source.stream},
        "destination": {"connection": p.destination.connection, "stream": p.destination.stream},
        "mode": p.mode,
        "schedule": {"kind": kind, "text": text, "jitter_seconds": jitter},
        "paused": row.paused,
        "paused_reason": row.paused_reason,
        "running": slot.running,
        "last_run": runs.first().map(run),
        "next_run": if row.paused { None } else { slot.next_run.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) },
        "records_moved": moved,
        "error_rate": error_rate,
        "history": history,
    }))
}

/// The pipelines that read from or write to a connection.
pub fn pipelines_using(app: &App, connection: &str) -> Result<Vec<String>, StoreError> {
    Ok(app
        .engine
        .store()
        .pipelines()?
        .into_iter()
        .filter(|r| {
            r.pipeline.source.connection == connection
                || r.pipeline.destination.connection == connection
        })
        .map(|r| r.pipeline.name)
        .collect())
}

/// Every connection, by name.
pub fn connections(app: &App) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::new();
    for name in app.registry.db().connection_names(None)? {
        if let Some(c) = connection(app, &name)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// A connection: plugin, environment, health, who uses it.
pub fn connection(app: &App, name: &str) -> Result<Option<Value>, StoreError> {
    let db = app.registry.db();
    let Some(c) = db.connection(name)? else {
        return Ok(None);
    };
    let active = db
        .active_version(&c.plugin_id)?
        .map(|v| v.version.to_string());
    let health = match db.health(name)? {
        Some(h) => json!({
            "status": if h.ok { "ok" } else { "failing" },
            "checked_at": h.checked_at,
            "error": h.error,
        }),
        None => json!({"status": "unknown", "checked_at": null, "error": null}),
    };
    let used_by = pipelines_using(app, name)?;
    Ok(Some(json!({
        "name": c.name,
        "plugin": c.plugin_id,
        "version": c.pinned_version.map(|v| v.to_string()),
        "active_version": active,
        "environment": c.environment.as_str(),
        // Never hidden: where a sandbox connection's requests really go.
        "origin_overrides": c.grants.origin_overrides,
        "health": health,
        "used_by": used_by,
        // Where its OAuth authorization stands (never a token); null when
        // its plugin declares none.
        "oauth": app.connections.oauth_status(name).ok().flatten(),
    })))
}

#[derive(Serialize)]
struct SignedBy {
    key_id: String,
    name: String,
}

/// Every installed plugin with its versions, signatures, capabilities and
/// grants ("what is connected").
pub fn plugins(app: &App) -> Result<Vec<Value>, StoreError> {
    let db = app.registry.db();
    let mut out = Vec::new();
    for id in db.plugin_ids()? {
        let versions = db.plugin_versions(&id)?;
        let active = db.active_version(&id)?;
        let mut head: Option<Manifest> = None;
        let mut list = Vec::new();
        for v in versions.iter().rev() {
            let manifest: Option<Manifest> = serde_json::from_str(&v.manifest).ok();
            let capabilities: Vec<String> = manifest
                .as_ref()
                .map(|m| {
                    capabilities_of(&m.capabilities)
                        .iter()
                        .map(|c| sentence(&c.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let signed_by = match &v.signer_key_id {
                Some(key_id) => {
                    let name = db
                        .trusted_key(key_id)?
                        .map(|k| k.name)
                        .unwrap_or_else(|| "(key no longer trusted)".into());
                    serde_json::to_value(SignedBy {
                        key_id: key_id.clone(),
                        name,
                    })
                    .unwrap_or(Value::Null)
                }
                None => Value::Null,
            };
            list.push(json!({
                "version": v.version.to_string(),
                "wit_version": v.wit_version,
                "installed_at": v.installed_at,
                "component_sha256": v.component_sha256,
                "signed_by": signed_by,
                "capabilities": capabilities,
                "grants": {
                    "http_origins": v.grants.http_origins,
                    "secrets": v.grants.secrets,
                    "kv_bytes": v.grants.kv_bytes,
                    "connection_origins": v.grants.connection_origins,
                },
            }));
            if active.as_ref().is_some_and(|a| a.version == v.version) {
                head = manifest;
            }
        }
        out.push(json!({
            "id": id,
            "kind": active.as_ref().map(|a| a.kind.clone()),
            "description": head.as_ref().map(|m| m.description.clone()),
            "vendor": head.as_ref().map(|m| m.vendor.clone()),
            "homepage": head.as_ref().and_then(|m| m.homepage.clone()),
            "active_version": active.as_ref().map(|a| a.version.to_string()),
            "versions": list,
            "used_by": db.connection_names(Some(&id))?,
        }));
    }
    Ok(out)
}

/// "talk to x" → "Talk to x".
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Entities matching a search, with every linked record.
pub fn entities(app: &App, q: &str) -> Result<Vec<Value>, StoreError> {
    let store = app.engine.store();
    let db = app.registry.db();
    let mut out = Vec::new();
    for (entity_id, entity) in store.search_entities(q, 20)? {
        let mut records = Vec::new();
        for l in store.entity(entity_id)? {
            let environment = db
                .connection(&l.connection)?
                .map(|c| c.environment.as_str().to_string());
            records.push(json!({
                "connection": l.connection,
                "environment": environment,
                "stream": l.stream,
                "record_id": l.record_id,
                "version": l.version,
                "deleted": l.deleted,
                "known": l.known.as_deref().and_then(|k| serde_json::from_str::<Value>(k).ok()),
            }));
        }
        out.push(json!({"entity_id": entity_id, "entity": entity, "records": records}));
    }
    Ok(out)
}

//! How things look in the audit trail: the before/after snapshots of a
//! connection, a pipeline, a dead letter or a conflict, the same whether
//! the change came through the admin API or the command line — so a
//! change reads alike in the trail whoever made it and wherever. Secrets
//! appear by name only; their values are never read here.

use nexo_db::StoreError;
use nexo_db::audit::{Actor, Change};
use nexo_registry::connections::Connections;
use nexo_sync::store::{PipelineStore, QueueStore};
use serde_json::{Value, json};

/// A connection as the trail shows it: plugin, pinned version, environment,
/// config, grants and the *names* of its secrets; none if there is no such
/// connection.
pub fn connection(connections: &Connections, name: &str) -> Option<Value> {
    let row = connections.get(name).ok()?;
    let secrets = connections.secret_names(name).unwrap_or_default();
    let config: Value = serde_json::from_str(&row.config).unwrap_or(Value::String(row.config));
    Some(json!({
        "plugin": row.plugin_id,
        "pinned_version": row.pinned_version.map(|v| v.to_string()),
        "environment": row.environment.as_str(),
        "config": config,
        "grants": row.grants,
        "secrets": secrets,
    }))
}

/// A pipeline as the trail shows it: its definition and whether it is
/// paused; none if there is no such pipeline.
pub fn pipeline(store: &dyn PipelineStore, name: &str) -> Result<Option<Value>, StoreError> {
    Ok(store.pipeline(name)?.map(|row| {
        json!({
            "definition": row.pipeline,
            "paused": row.paused,
            "paused_reason": row.paused_reason,
        })
    }))
}

/// A dead letter's status and what it is about (never its record, which
/// is business data the trail need not copy); none if there is none.
pub fn dead_letter(store: &dyn QueueStore, id: i64) -> Result<Option<Value>, StoreError> {
    Ok(store.dead_letter(id)?.map(|d| {
        json!({
            "pipeline": d.pipeline,
            "status": d.status.as_str(),
            "source_id": d.letter.source_id,
        })
    }))
}

/// A conflict's status and the fields it is about; none if there is none.
pub fn conflict(store: &dyn QueueStore, id: i64) -> Result<Option<Value>, StoreError> {
    Ok(store.conflict(id)?.map(|c| {
        json!({
            "pipeline": c.pipeline,
            "status": c.status.as_str(),
            "fields": c.conflict.fields,
        })
    }))
}

/// `change` with `before` and `after` where there is something to show.
pub fn with(mut change: Change, before: Option<Value>, after: Option<Value>) -> Change {
    change.before = before;
    change.after = after;
    change
}

/// Record `change`, made by `actor` through the daemon. The change is
/// made already, so a trail that cannot be written is logged loudly
/// rather than undoing it.
pub fn record(db: &nexo_db::Database, actor: &Actor, change: Change) {
    if let Err(e) = db.record_change(actor, &change) {
        tracing::error!(
            action = %change.action,
            target = %change.target,
            %actor,
            error = %e,
            "a change was made but could not be written to the audit trail"
        );
    }
}

/// A plugin as the trail shows it: its active version, kind, signer,
/// bundle digest and grants; none if it is not installed.
pub fn plugin(db: &nexo_db::Database, id: &str) -> Result<Option<Value>, StoreError> {
    Ok(db.active_version(id)?.map(|v| {
        json!({
            "version": v.version.to_string(),
            "kind": v.kind,
            "signer": v.signer_key_id,
            "bundle_sha256": v.bundle_sha256,
            "grants": v.grants,
        })
    }))
}

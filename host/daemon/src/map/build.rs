//! Building the map from the live database: connections grouped by the
//! plugin they reach, with grants, secret names and last health check;
//! pipelines with their rules, last run and waiting queues; and the
//! scrubber that keeps every connection's secret values out of the errors
//! the map quotes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    ConnectionHealth, ConnectionMap, Diagram, End, Map, MapperMap, PipelineHealth, PipelineMap,
    System,
};
use nexo_bundle::manifest::Manifest;
use nexo_db::sealed::Sealer;
use nexo_db::{Database, StoreError};
use nexo_runtime::sandbox::redact::{self, Redactor};
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_sync::store::{ConflictStatus, DeadLetterStatus, RunFilter, RunStatus, SyncStore};

impl Map {
    /// Build the map from the live database: `db` for connections, plugins
    /// and health; `store` for pipelines, runs and queues; `sealer` opens
    /// the connections' secrets so that quoted errors can be scrubbed of
    /// them (without it, only values this process has opened are).
    pub fn build(
        db: &Database,
        store: &dyn SyncStore,
        sealer: Option<&Sealer>,
    ) -> Result<Map, StoreError> {
        let scrubber = Scrubber::new(db, sealer)?;
        let mut systems: BTreeMap<String, System> = BTreeMap::new();
        for name in db.connection_names(None)? {
            let Some(c) = db.connection(&name)? else {
                continue;
            };
            if !systems.contains_key(&c.plugin_id) {
                let active = db.active_version(&c.plugin_id)?;
                let manifest: Option<Manifest> = active
                    .as_ref()
                    .and_then(|a| serde_json::from_str(&a.manifest).ok());
                systems.insert(
                    c.plugin_id.clone(),
                    System {
                        plugin: c.plugin_id.clone(),
                        description: manifest.as_ref().map(|m| m.description.clone()),
                        vendor: manifest.as_ref().map(|m| m.vendor.clone()),
                        active_version: active.as_ref().map(|a| a.version.to_string()),
                        connections: Vec::new(),
                    },
                );
            }
            let plugin_origins = match &c.pinned_version {
                Some(v) => db
                    .plugin_versions(&c.plugin_id)?
                    .into_iter()
                    .find(|r| &r.version == v),
                None => db.active_version(&c.plugin_id)?,
            }
            .map(|r| r.grants.http_origins)
            .unwrap_or_default();
            let mut granted_hosts = c.grants.http.clone();
            for o in c.grants.private_http.iter().chain(&plugin_origins) {
                if !granted_hosts.contains(o) {
                    granted_hosts.push(o.clone());
                }
            }
            let health = match db.health(&name)? {
                Some(h) => ConnectionHealth {
                    status: if h.ok { "ok" } else { "failing" },
                    checked_at: Some(h.checked_at),
                    error: h.error.map(|e| scrubber.scrub(&e)),
                },
                None => ConnectionHealth {
                    status: "unknown",
                    checked_at: None,
                    error: None,
                },
            };
            // Names only: the sealed values are never opened here.
            let secrets = db
                .connection_secrets(&name)?
                .into_iter()
                .map(|s| s.name)
                .collect();
            if let Some(system) = systems.get_mut(&c.plugin_id) {
                let version = c
                    .pinned_version
                    .as_ref()
                    .map(ToString::to_string)
                    .or_else(|| system.active_version.clone());
                system.connections.push(ConnectionMap {
                    name: c.name,
                    environment: c.environment.as_str().to_string(),
                    plugin: c.plugin_id,
                    version,
                    pinned: c.pinned_version.is_some(),
                    granted_hosts,
                    origin_overrides: c.grants.origin_overrides,
                    requests_per_minute: c.grants.requests_per_minute,
                    secrets,
                    health,
                });
            }
        }
        let mut pipelines = Vec::new();
        for row in store.pipelines()? {
            pipelines.push(pipeline(db, store, &row, &scrubber)?);
        }
        let systems: Vec<System> = systems.into_values().collect();
        let diagram = Diagram::lay_out(&systems, &pipelines);
        Ok(Map {
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            systems,
            pipelines,
            diagram,
        })
    }

    /// Every connection of every system.
    pub fn connections(&self) -> impl Iterator<Item = &ConnectionMap> {
        self.systems.iter().flat_map(|s| s.connections.iter())
    }
}

/// Every connection's secret values, to scrub quoted errors with.
struct Scrubber {
    own: Redactor,
}

impl Scrubber {
    fn new(db: &Database, sealer: Option<&Sealer>) -> Result<Self, StoreError> {
        let mut values: Vec<(String, SecretValue)> = Vec::new();
        if let Some(sealer) = sealer {
            for name in db.connection_names(None)? {
                for s in db.connection_secrets(&name)? {
                    match sealer.open(&format!("{name}/{}", s.name), &s.nonce, &s.sealed) {
                        Ok(value) => values.push((s.name, value)),
                        // Another key: those values cannot be in errors
                        // this installation wrote.
                        Err(e) => {
                            tracing::warn!(connection = %name, secret = %s.name, error = %e, "cannot open a secret to scrub the map with")
                        }
                    }
                }
            }
        }
        Ok(Scrubber {
            own: Redactor::new(values.iter().map(|(n, v)| (n.as_str(), v))),
        })
    }

    fn scrub(&self, text: &str) -> String {
        let once = self.own.scrub(text);
        redact::scrub(&once).into_owned()
    }
}

fn kebab<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

fn pipeline(
    db: &Database,
    store: &dyn SyncStore,
    row: &nexo_sync::store::PipelineRow,
    scrubber: &Scrubber,
) -> Result<PipelineMap, StoreError> {
    let p = &row.pipeline;
    let last = store
        .runs(&RunFilter {
            pipeline: Some(p.name.clone()),
            status: None,
            limit: 1,
        })?
        .into_iter()
        .next();
    let open_dead_letters = store
        .dead_letters(Some(&p.name), Some(DeadLetterStatus::Open))?
        .len();
    let open_conflicts = store
        .conflicts(Some(&p.name), Some(ConflictStatus::Open))?
        .len();
    let status = pipeline_status(
        last.as_ref().map(|r| r.status),
        row.paused,
        open_dead_letters + open_conflicts,
    );
    let mut mappers = Vec::new();
    for step in &p.mappers {
        let version = match &step.version {
            Some(v) => Some(v.to_string()),
            None => db
                .active_version(&step.plugin)?
                .map(|v| v.version.to_string()),
        };
        mappers.push(MapperMap {
            plugin: step.plugin.clone(),
            version,
            pinned: step.version.is_some(),
            rules: rules(&step.config),
        });
    }
    let schedule = match p.schedule() {
        Ok(s) => s.to_string(),
        Err(e) => format!("invalid: {e}"),
    };
    Ok(PipelineMap {
        name: p.name.clone(),
        description: p.description.clone(),
        source: End {
            connection: p.source.connection.clone(),
            stream: p.source.stream.clone(),
        },
        destination: End {
            connection: p.destination.connection.clone(),
            stream: p.destination.stream.clone(),
        },
        entity: p.entity.clone(),
        model: p.model.clone(),
        mode: kebab(&p.mode),
        master_system: p
            .master
            .system
            .clone()
            .unwrap_or_else(|| p.source.connection.clone()),
        field_owners: p.master.fields.clone(),
        update_only: p.update_only,
        conflict_policy: kebab(&p.conflicts.policy),
        delete_policy: kebab(&p.deletes.policy),
        archive: p.deletes.archive.clone(),
        schedule,
        after: p.schedule.after.clone(),
        mappers,
        health: PipelineHealth {
            status,
            last_run: last.as_ref().map(|r| r.id),
            last_run_status: last.as_ref().map(|r| r.status.as_str().to_string()),
            last_run_at: last.as_ref().map(|r| {
                r.finished_at
                    .clone()
                    .unwrap_or_else(|| r.started_at.clone())
            }),
            last_error: last
                .as_ref()
                .and_then(|r| r.error.as_deref())
                .map(|e| scrubber.scrub(e)),
            open_dead_letters,
            open_conflicts,
            paused: row.paused,
        },
    })
}

/// The one word a pipeline's arrow is coloured by: a failed last run first,
/// then a pause, then work waiting for a person or a run cut short.
pub(super) fn pipeline_status(
    last: Option<RunStatus>,
    paused: bool,
    waiting: usize,
) -> &'static str {
    match last {
        Some(RunStatus::Failed) => "failing",
        _ if paused => "paused",
        Some(RunStatus::Running) => "running",
        Some(RunStatus::Interrupted | RunStatus::Cancelled) => "warning",
        Some(RunStatus::Succeeded) if waiting > 0 => "warning",
        Some(RunStatus::Succeeded) => "ok",
        None => "never-run",
    }
}

/// A mapper's config as rules a person reads: one line per top-level key;
/// a table becomes `from → to` pairs, a list its items.
fn rules(config: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let Value::Object(map) = config else {
        return vec![config.to_string()];
    };
    map.iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Object(pairs) => pairs
                    .iter()
                    .map(|(k, v)| format!("{k} → {}", plain(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
                other => plain(other),
            };
            format!("{key}: {text}")
        })
        .collect()
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

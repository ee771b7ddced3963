//! The living map of what is connected (`nexo docs`, `GET /api/map`, the
//! console's Map page): one model built from the live database — systems,
//! their connections, the pipelines between them with their rules, and the
//! health of each — and the renderers that turn it into Markdown and a
//! self-contained HTML page. The CLI and the daemon both build it here, so
//! the document and the console cannot drift apart.
//!
//! Nothing secret is put in it: connections carry the *names* of their
//! secrets, never values, and errors quoted from health checks and runs
//! (which a system may have echoed a credential into) have every secret
//! value of every connection replaced — the sealed values are opened for
//! that comparison only, as the scrubber of a run does.

mod build;
mod diagram;
mod html;
mod markdown;

use std::collections::BTreeMap;

use serde::Serialize;

pub use diagram::{Diagram, DiagramEdge, DiagramNode};
pub use html::html;
pub use markdown::markdown;

/// Everything connected, as of `generated_at`.
#[derive(Debug, Clone, Serialize)]
pub struct Map {
    /// When the map was built (RFC 3339, UTC).
    pub generated_at: String,
    /// Systems: the connections grouped by the plugin they reach.
    pub systems: Vec<System>,
    /// Pipelines, by name.
    pub pipelines: Vec<PipelineMap>,
    /// Where each box and arrow goes (the HTML page and the console draw
    /// the same picture from it).
    pub diagram: Diagram,
}

/// One kind of system (a connector plugin) and its connections.
#[derive(Debug, Clone, Serialize)]
pub struct System {
    /// Plugin id (`vendor/name`).
    pub plugin: String,
    /// What the plugin says it connects to (from its signed manifest).
    pub description: Option<String>,
    /// Who made the plugin.
    pub vendor: Option<String>,
    /// The version new runs use unless a connection pins another.
    pub active_version: Option<String>,
    /// Its connections, by name.
    pub connections: Vec<ConnectionMap>,
}

/// One connection as the map shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionMap {
    /// Name.
    pub name: String,
    /// `sandbox` or `production`.
    pub environment: String,
    /// Plugin id.
    pub plugin: String,
    /// The version its runs use: the pinned one, else the plugin's active.
    pub version: Option<String>,
    /// Whether `version` is pinned on the connection.
    pub pinned: bool,
    /// Origins granted to this connection (public ones, then exact
    /// internal ones) and to its plugin at install.
    pub granted_hosts: Vec<String>,
    /// A sandbox connection's requests to `FROM` really go to `TO`.
    pub origin_overrides: BTreeMap<String, String>,
    /// Most requests per minute (`None`: the default budget, `0`: none).
    pub requests_per_minute: Option<u32>,
    /// Names of its secrets (never their values).
    pub secrets: Vec<String>,
    /// Its last health check.
    pub health: ConnectionHealth,
}

/// A connection's last health check (`check`, run by `nexo serve`).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionHealth {
    /// `ok`, `failing` or `unknown` (never checked).
    pub status: &'static str,
    /// When.
    pub checked_at: Option<String>,
    /// Why it failed (secret values scrubbed).
    pub error: Option<String>,
}

/// One end of a pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct End {
    /// Connection name.
    pub connection: String,
    /// Stream.
    pub stream: String,
}

/// One mapper step and its rules.
#[derive(Debug, Clone, Serialize)]
pub struct MapperMap {
    /// Mapper plugin id.
    pub plugin: String,
    /// Pinned version, else the active one.
    pub version: Option<String>,
    /// Whether `version` is pinned in the pipeline.
    pub pinned: bool,
    /// Its config, one line per top-level rule (`rename: a → b, c → d`).
    pub rules: Vec<String>,
}

/// One pipeline as the map shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineMap {
    /// Name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Where records come from.
    pub source: End,
    /// Where they go.
    pub destination: End,
    /// Entity type in the identity map.
    pub entity: String,
    /// Canonical model checked by the gate.
    pub model: Option<String>,
    /// `incremental` or `full-refresh`.
    pub mode: String,
    /// The connection that owns the entity (the source unless set).
    pub master_system: String,
    /// Field → the connection that owns it.
    pub field_owners: BTreeMap<String, String>,
    /// Only updates records already linked; never creates.
    pub update_only: bool,
    /// `source-wins`, `destination-wins`, `newest-wins` or `hold`.
    pub conflict_policy: String,
    /// `propagate`, `archive` or `ignore`.
    pub delete_policy: String,
    /// Fields the `archive` delete policy sets.
    pub archive: BTreeMap<String, serde_json::Value>,
    /// The schedule in words (`every 1m`, `manual`, …).
    pub schedule: String,
    /// Pipelines it runs after.
    pub after: Vec<String>,
    /// Mappers, in order.
    pub mappers: Vec<MapperMap>,
    /// Its health.
    pub health: PipelineHealth,
}

/// How a pipeline is doing.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineHealth {
    /// `ok`, `warning` (records waiting for a person, or a run that did
    /// not finish), `failing`, `running`, `paused` or `never-run`.
    pub status: &'static str,
    /// The last run's id.
    pub last_run: Option<i64>,
    /// The last run's status.
    pub last_run_status: Option<String>,
    /// When the last run ended (or started, while running).
    pub last_run_at: Option<String>,
    /// Why the last run failed (secret values scrubbed).
    pub last_error: Option<String>,
    /// Dead letters waiting.
    pub open_dead_letters: usize,
    /// Conflicts held for a person.
    pub open_conflicts: usize,
    /// Paused by a person or by the host.
    pub paused: bool,
}

#[cfg(test)]
mod tests;

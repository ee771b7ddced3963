//! The schema, one history per component. Each component (plugins'
//! key-value data, trusted keys, the registry, connections, sync, the
//! daemon) has its own numbered migrations and its own version in
//! `schema_versions`, so a component can gain a migration without
//! renumbering the others — and another database (PostgreSQL, issue 21)
//! can carry the same histories. A database from before per-component
//! versions (SQLite `user_version` 1–10, one list for everything) is mapped
//! onto them when opened; `user_version` is then set to [`COMPONENT_ERA`]
//! so that an older `nexo` refuses the file instead of misreading it.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{StoreError, service, sync_schema as sync};

/// Key-value data of plugins.
const KV: &str = "CREATE TABLE IF NOT EXISTS plugin_kv (
         namespace TEXT NOT NULL,
         key TEXT NOT NULL,
         value BLOB NOT NULL,
         PRIMARY KEY (namespace, key)
     ) WITHOUT ROWID;";

/// Vendors' public keys trusted by the admin.
const TRUSTED_KEYS: &str = "CREATE TABLE trusted_keys (
         key_id TEXT PRIMARY KEY,
         public_key BLOB NOT NULL,
         name TEXT NOT NULL,
         added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
     );";

/// Installed plugins, every version side by side, each with its grants.
const PLUGINS: &str = "CREATE TABLE plugins (
         plugin_id TEXT PRIMARY KEY,
         active_version TEXT NOT NULL
     );
     CREATE TABLE plugin_versions (
         plugin_id TEXT NOT NULL,
         version TEXT NOT NULL,
         kind TEXT NOT NULL,
         wit_version TEXT NOT NULL,
         manifest TEXT NOT NULL,
         bundle_sha256 TEXT NOT NULL,
         component_sha256 TEXT NOT NULL,
         signer_key_id TEXT,
         grants TEXT NOT NULL,
         installed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
         PRIMARY KEY (plugin_id, version)
     );";

/// Connections: an installed plugin, its config, sealed secrets and grants, in one environment.
const CONNECTIONS: &str = "CREATE TABLE connections (
         name TEXT PRIMARY KEY,
         plugin_id TEXT NOT NULL REFERENCES plugins(plugin_id),
         pinned_version TEXT,
         environment TEXT NOT NULL CHECK (environment IN ('sandbox', 'production')),
         config TEXT NOT NULL,
         grants TEXT NOT NULL,
         created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
     );
     CREATE TABLE connection_secrets (
         connection TEXT NOT NULL REFERENCES connections(name) ON DELETE CASCADE,
         name TEXT NOT NULL,
         nonce BLOB NOT NULL,
         sealed BLOB NOT NULL,
         PRIMARY KEY (connection, name)
     );";

/// The OAuth 2.0 authorization of a connection: its client, its tokens
/// (sealed), their expiry and generation, the refresh claim, and the
/// pipelines paused while it needs re-authorization.
const CONNECTION_OAUTH: &str = "CREATE TABLE connection_oauth (
         connection TEXT PRIMARY KEY REFERENCES connections(name) ON DELETE CASCADE,
         flow TEXT NOT NULL CHECK (flow IN ('authorization-code', 'client-credentials')),
         client_id TEXT NOT NULL,
         client_secret_nonce BLOB,
         client_secret BLOB,
         access_nonce BLOB NOT NULL,
         access_token BLOB NOT NULL,
         refresh_nonce BLOB,
         refresh_token BLOB,
         issued_at_ms INTEGER NOT NULL,
         expires_at_ms INTEGER NOT NULL,
         generation INTEGER NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('authorized', 'needs-reauthorization')),
         reason TEXT,
         tenant TEXT,
         refreshing_until_ms INTEGER,
         paused_pipelines TEXT,
         authorized_at TEXT NOT NULL,
         refreshed_at TEXT
     );";

/// One component's part of the schema.
#[derive(Debug)]
pub struct Component {
    /// Its name in `schema_versions`.
    pub name: &'static str,
    /// Its migrations, in order: entry `n` takes it from version `n` to
    /// `n + 1`. Never edit a released one: add a new one.
    pub migrations: &'static [&'static str],
}

/// Every component, in the order a new database is built (a component's
/// first migration may refer to tables of those before it: the daemon's
/// adds a column to sync's `pipelines`).
pub const COMPONENTS: &[Component] = &[
    Component {
        name: "kv",
        migrations: &[KV],
    },
    Component {
        name: "trust",
        migrations: &[TRUSTED_KEYS],
    },
    Component {
        name: "registry",
        migrations: &[PLUGINS],
    },
    Component {
        name: "connections",
        // connections and their secrets; their OAuth authorizations
        migrations: &[CONNECTIONS, CONNECTION_OAUTH],
    },
    Component {
        name: "sync",
        migrations: &[
            // pipelines, identity map, runs, dead letters, conflicts, settings
            sync::MIGRATION,
            // identity links keyed by entity type as well
            sync::LINKS_PER_ENTITY,
            // superseded counts and stop requests on runs
            sync::RUN_CONTROL,
            // sync state per record and peer
            sync::SYNC_PER_PEER,
            // retry windows, run progress and matched counts, dead letters
            // resolved by delivery, conflicts auto-resolved
            sync::RUN_OUTAGES,
            // records the mappers left out, counted apart
            sync::RUN_SKIPPED,
            // the host holding a run, its lease, checked by each commit
            sync::RUN_LEASES,
            // matching before the first sync: review queue, passes, held
            sync::MATCHING,
        ],
    },
    Component {
        name: "daemon",
        // pause reasons, API tokens, webhook secrets, connection health;
        // then a role on every API token
        migrations: &[service::MIGRATION, service::ROLES],
    },
    Component {
        name: "audit",
        // who changed what, append-only
        migrations: &[crate::audit::MIGRATION],
    },
    Component {
        name: "alerts",
        // channels, rules, incidents and their notices' deliveries
        migrations: &[crate::alerts::MIGRATION],
    },
];

/// The schema's history before components had versions of their own: one
/// list, in the order it was applied (`user_version` n = its first n
/// entries). Frozen; only read to map an old database, and by tests that
/// build one.
pub const MIGRATIONS: &[&str] = &[
    KV,
    TRUSTED_KEYS,
    PLUGINS,
    CONNECTIONS,
    sync::MIGRATION,
    service::MIGRATION,
    sync::LINKS_PER_ENTITY,
    sync::RUN_CONTROL,
    sync::SYNC_PER_PEER,
    sync::RUN_OUTAGES,
];

/// Which component and version each entry of [`MIGRATIONS`] was.
const LEGACY: [(&str, i64); 10] = [
    ("kv", 1),
    ("trust", 1),
    ("registry", 1),
    ("connections", 1),
    ("sync", 1),
    ("daemon", 1),
    ("sync", 2),
    ("sync", 3),
    ("sync", 4),
    ("sync", 5),
];

/// `user_version` of a database whose versions are per component.
pub const COMPONENT_ERA: i64 = 1000;

/// Each component's version in `conn` (absent: not created yet).
pub fn versions(conn: &Connection) -> Result<BTreeMap<String, i64>, StoreError> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(BTreeMap::new());
    }
    let mut st = conn.prepare("SELECT component, version FROM schema_versions")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Bring every component of `conn` to its newest version, each migration in
/// its own transaction with the version it reaches; refuse a database that
/// a newer `nexo` wrote.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let era: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let too_new = |found: i64, known: i64| StoreError::TooNew {
        path: path.to_string(),
        found,
        known,
    };
    if era > COMPONENT_ERA || (era > LEGACY.len() as i64 && era != COMPONENT_ERA) {
        return Err(too_new(era, COMPONENT_ERA));
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_versions (
             component TEXT PRIMARY KEY,
             version INTEGER NOT NULL
         )",
    )?;
    if era != COMPONENT_ERA {
        // One list before: its first `era` entries were applied.
        let mut mapped: BTreeMap<&str, i64> = BTreeMap::new();
        for (component, version) in LEGACY.iter().take(era as usize) {
            mapped.insert(component, *version);
        }
        for (component, version) in mapped {
            tx.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?1, ?2)",
                params![component, version],
            )?;
        }
        tx.pragma_update(None, "user_version", COMPONENT_ERA)?;
    }
    tx.commit()?;
    let found = versions(conn)?;
    for (name, version) in &found {
        match COMPONENTS.iter().find(|c| c.name == name) {
            Some(c) if *version <= c.migrations.len() as i64 => {}
            Some(c) => return Err(too_new(*version, c.migrations.len() as i64)),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "the database has a schema component `{name}` this nexo does not know; it was written by a newer nexo: upgrade nexo"
                )));
            }
        }
    }
    for c in COMPONENTS {
        let at = found.get(c.name).copied().unwrap_or(0);
        for (i, sql) in c.migrations.iter().enumerate().skip(at as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?1, ?2)
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                params![c.name, i as i64 + 1],
            )?;
            tx.commit()?;
            tracing::debug!(component = c.name, version = i + 1, "database migrated");
        }
    }
    Ok(())
}

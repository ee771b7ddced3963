//! The host's SQLite database: one file under the data directory, WAL mode,
//! schema changed only by numbered migrations. Everything that must survive
//! a restart (trusted keys, the plugin registry, key-value data) lives here,
//! behind small typed APIs so another backend can replace SQLite later.
//!
//! **Owns** the SQLite connection, the migrations, sealing secrets at rest,
//! trusted keys, the rows of the plugin registry, connections and the
//! daemon's tokens, and the [`kv::SqliteKv`] backend of plugins' key-value
//! data. **Must not touch** plugins (it never loads a component), the
//! network or sync logic: the sync engine's statements live in `nexo-sync`,
//! only its tables' migrations are here, so the schema has one history.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub mod connections;
pub mod kv;
pub mod private;
pub mod registry;
pub mod sealed;
pub mod service;
mod sync_schema;
use sync_schema as sync;
pub mod trust;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database is newer than this build understands.
    #[error(
        "the database at {path} has schema version {found}, newer than this nexo ({known}); upgrade nexo"
    )]
    TooNew {
        /// Database file.
        path: String,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A stored value does not parse.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The connection lock was poisoned by a panic elsewhere.
    #[error("database lock poisoned")]
    Poisoned,
    /// The database file cannot be created or made private (mode 0600).
    #[error(
        "cannot create the database {path} with owner-only permissions (mode 0600), or tighten it: {source}; check that its directory exists and who owns it"
    )]
    Permissions {
        /// Database file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Migrations, in order; entry `n` moves the schema from version `n` to
/// `n + 1`. Never edit a released one: add a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: key-value data of plugins
    "CREATE TABLE IF NOT EXISTS plugin_kv (
         namespace TEXT NOT NULL,
         key TEXT NOT NULL,
         value BLOB NOT NULL,
         PRIMARY KEY (namespace, key)
     ) WITHOUT ROWID;",
    // 2: vendors' public keys trusted by the admin
    "CREATE TABLE trusted_keys (
         key_id TEXT PRIMARY KEY,
         public_key BLOB NOT NULL,
         name TEXT NOT NULL,
         added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
     );",
    // 3: installed plugins, every version side by side, each with its grants
    "CREATE TABLE plugins (
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
     );",
    // 4: connections (an installed plugin + config + sealed secrets + grants,
    // in one environment)
    "CREATE TABLE connections (
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
     );",
    // 5: pipelines, identity map, runs, dead letters, conflicts, settings
    sync::MIGRATION,
    // 6: pause reasons, API tokens, webhook secrets, connection health
    service::MIGRATION,
    // 7: identity links keyed by entity type as well
    sync::LINKS_PER_ENTITY,
    // 8: superseded counts and stop requests on runs
    sync::RUN_CONTROL,
    // 9: sync state per record and peer
    sync::SYNC_PER_PEER,
    // 10: retry windows, run progress and matched counts, dead letters
    // resolved by delivery, conflicts auto-resolved
    sync::RUN_OUTAGES,
];

/// The database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl Database {
    /// Open (creating if needed, mode 0600) and migrate the database at
    /// `path`; a database readable by others is tightened first.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        private::secure_database_file(path).map_err(|source| StoreError::Permissions {
            path: path.display().to_string(),
            source,
        })?;
        let conn = Connection::open(path)?;
        Self::init(conn, &path.display().to_string())
    }

    /// A private in-memory database (tests, one-off commands).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, ":memory:")
    }

    /// Set up and migrate an already opened connection: what `open` and
    /// `in_memory` do after opening; tests use it on a database they first
    /// gave an older schema. `path` names the database in errors.
    pub fn init(mut conn: Connection, path: &str) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -32768;",
        )?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::TooNew {
                path: path.to_string(),
                found,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
            tracing::debug!(version = i + 1, "database migrated");
        }
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, locked. Keep the guard short.
    pub fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()?
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexo.db");
        let db = Database::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(db);
        let again = Database::open(&path).unwrap();
        assert_eq!(again.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_newer_database_is_refused_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexo.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = Database::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 999"), "{err}");
    }
}

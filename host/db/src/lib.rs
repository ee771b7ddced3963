//! The host's database: one SQLite file under the data directory (WAL
//! mode), or a PostgreSQL database several hosts share; schema changed only
//! by numbered migrations. Everything that must survive a restart (trusted
//! keys, the plugin registry, key-value data) lives here, behind small typed
//! APIs whose methods run SQLite's statements or, on PostgreSQL, those of
//! `postgres/` ([`copy`] moves an installation from the one to the other).
//!
//! **Owns** the SQLite connection and the PostgreSQL pool, the migrations,
//! sealing secrets at rest, trusted keys, the rows of the plugin registry,
//! connections and the daemon's tokens, alerts' channels, rules and
//! incidents ([`alerts`]), the [`kv::SqliteKv`] backend of
//! plugins' key-value data, and what several hosts share ([`cluster`]:
//! hosts, pipeline leases, run requests, bundles). **Must not touch** plugins (it never loads a component), the
//! network or sync logic: the sync engine's statements live in `nexo-sync`,
//! only its tables' migrations are here, so the schema has one history.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

/// Each named test function (taking a [`Database`]) as two tests, one on
/// SQLite in memory and one on a fresh PostgreSQL database: `mod NAME {
/// sqlite, postgres }`.
#[cfg(test)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(crate::Database::in_memory().unwrap())
            }
            #[test]
            fn postgres() {
                super::$name(crate::test_sql::postgres())
            }
        }
    )* };
}

pub mod alerts;
pub mod audit;
pub mod backup;
pub mod cluster;
pub mod connections;
pub mod copy;
pub mod kv;
pub mod oauth;
pub mod postgres;
pub mod private;
pub mod registry;
pub mod rekey;
pub mod schema;
pub mod sealed;
pub mod service;
mod sync_schema;

pub use schema::MIGRATIONS;
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
    /// PostgreSQL (or the pool in front of it) failed.
    #[error("database error: {0}")]
    Postgres(String),
    /// A PostgreSQL database whose schema is older than this build (or
    /// empty): hosts never change a shared schema by themselves.
    #[error(
        "the database at {target} needs migrating to this nexo's schema: run `nexo db migrate --database URL` once (it is safe while other hosts run)"
    )]
    NotMigrated {
        /// `host:port/database`.
        target: String,
    },
    /// A run's commit found that its host no longer holds the run: the
    /// run was ended (marked interrupted, taken over by another host)
    /// or its lease ran out. Nothing of the commit was written.
    #[error(
        "run {run} no longer holds its lease (its host lost the database or stalled past the lease, and the run was taken over or ended); nothing of this commit was written, and the run that takes over resumes from the last committed page"
    )]
    LeaseLost {
        /// The run.
        run: i64,
    },
    /// An operation of several hosts, which share PostgreSQL.
    #[error(
        "{0} needs PostgreSQL (--database postgres://… or NEXO_DATABASE_URL); the embedded SQLite database serves one host"
    )]
    PostgresOnly(&'static str),
    /// `nexo db copy` refused its source or target (or a value in it),
    /// before anything was written: the message says what and what to do.
    #[error("cannot copy the database: {0}")]
    CopyRefused(String),
    /// An operation that only the embedded SQLite database has.
    #[error("{0} works on the embedded SQLite database only")]
    SqliteOnly(&'static str),
    /// A row someone else changed between its reading and this write (a
    /// review decided twice at once): nothing of the write was kept.
    #[error("{0}; nothing was changed, look again and retry")]
    Stale(String),
    /// A backup the database cannot make (a target that exists, or a
    /// database backed up by other means): the message says what to do.
    #[error("cannot back up: {0}")]
    Backup(String),
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

/// The database: the embedded SQLite file, or a PostgreSQL database that
/// several hosts share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite {
        conn: Arc<Mutex<Connection>>,
        /// A second connection to a database file, for reads that need
        /// only committed data (the sync's identity-map lookups): WAL lets
        /// it read while the first one commits a group of pages. None in
        /// memory.
        reader: Option<Arc<Mutex<Connection>>>,
    },
    Postgres(Arc<postgres::Postgres>),
}

/// Where the database is, as `--database` / `NEXO_DATABASE_URL` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (`sqlite:PATH`, or a plain path).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://…`, `postgresql://…`).
    Postgres(String),
}

impl Location {
    /// Read a `--database` value: a PostgreSQL URL, `sqlite:PATH`, or a
    /// path; anything else that looks like a URL is refused by name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if postgres::is_postgres_url(text) {
            return Ok(Location::Postgres(text.to_string()));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "`sqlite:` needs a file path, as in sqlite:/var/lib/nexo/nexo.db".into(),
                );
            }
            return Ok(Location::Sqlite(path.into()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "database URL scheme `{scheme}` is not supported: use postgres://USER:PASSWORD@HOST:PORT/DATABASE, or sqlite:PATH"
            ));
        }
        Ok(Location::Sqlite(text.into()))
    }
}

impl std::fmt::Display for Location {
    /// Without the password of a PostgreSQL URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Location::Postgres(url) => match std::str::FromStr::from_str(url) {
                Ok(config) => write!(f, "postgres://{}", postgres::describe(&config)),
                Err(_) => f.write_str("postgres://(unparsable URL)"),
            },
        }
    }
}

impl Database {
    /// Open the database at `location`: a SQLite file is created and
    /// migrated as [`Database::open`] does; a PostgreSQL database must
    /// already be migrated ([`Database::connect`]).
    pub fn at(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(path) => Self::open(path),
            Location::Postgres(url) => Self::connect(url),
        }
    }

    /// Connect to a PostgreSQL database whose schema is this build's. An
    /// older (or empty) one is refused with how to migrate it: with
    /// several hosts sharing it, the schema changes when an operator says
    /// so ([`Database::migrate_postgres`]), not when some host starts.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let pg = postgres::Postgres::connect(url)?;
        let found = pg.with(async |c| postgres::schema::versions(&*c).await)?;
        match postgres::schema::check(&found, pg.target())? {
            postgres::schema::State::Current => Ok(Database {
                backend: Backend::Postgres(Arc::new(pg)),
            }),
            postgres::schema::State::Behind => Err(StoreError::NotMigrated {
                target: pg.target().to_string(),
            }),
        }
    }

    /// Bring the PostgreSQL database at `url` to this build's schema (the
    /// components and versions applied), then connect to it.
    pub fn migrate_postgres(url: &str) -> Result<(Self, Vec<(String, i64)>), StoreError> {
        let pg = postgres::Postgres::connect(url)?;
        let applied = postgres::schema::migrate(&pg)?;
        Ok((
            Database {
                backend: Backend::Postgres(Arc::new(pg)),
            },
            applied,
        ))
    }

    /// The PostgreSQL pool, when the database is PostgreSQL: each store
    /// runs its PostgreSQL statements there instead of SQLite's.
    pub fn postgres(&self) -> Option<&postgres::Postgres> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite { .. } => None,
        }
    }

    /// Open (creating if needed, mode 0600) and migrate the database at
    /// `path`; a database readable by others is tightened first.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        private::secure_database_file(path).map_err(|source| StoreError::Permissions {
            path: path.display().to_string(),
            source,
        })?;
        let conn = Connection::open(path)?;
        let mut db = Self::init(conn, &path.display().to_string())?;
        let reader = Connection::open(path)?;
        reader.execute_batch(
            "PRAGMA query_only = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -16384;",
        )?;
        if let Backend::Sqlite { reader: slot, .. } = &mut db.backend {
            *slot = Some(Arc::new(Mutex::new(reader)));
        }
        Ok(db)
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
        schema::migrate(&mut conn, path)?;
        Ok(Database {
            backend: Backend::Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                reader: None,
            },
        })
    }

    /// The SQLite connection, locked. Keep the guard short. On PostgreSQL
    /// there is none: each store checks [`Database::postgres`] first.
    pub fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => conn.lock().map_err(|_| StoreError::Poisoned),
            Backend::Postgres(_) => Err(StoreError::SqliteOnly("a SQLite connection")),
        }
    }

    /// A connection for reads that need only what is committed, locked:
    /// the reader of a database file (it reads while the other connection
    /// commits), else the one connection. It refuses writes. Keep the
    /// guard short.
    pub fn read(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        match &self.backend {
            Backend::Sqlite {
                reader: Some(reader),
                ..
            } => reader.lock().map_err(|_| StoreError::Poisoned),
            _ => self.lock(),
        }
    }

    /// Each schema component's version (see [`schema`]).
    pub fn schema_versions(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        if let Some(pg) = self.postgres() {
            return pg.with(async |c| postgres::schema::versions(&*c).await);
        }
        let conn = self.lock()?;
        schema::versions(&conn)
    }
}

/// Raw SQL for tests that run on both databases: statements written in
/// the SQL both understand (`CAST(x AS TEXT)` to read any column).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_sql {
    use super::Database;

    /// A migrated database on this test process's PostgreSQL server.
    pub fn postgres() -> Database {
        let url = crate::postgres::testing::database().unwrap();
        Database::migrate_postgres(&url).unwrap().0
    }

    /// Run `sql` (several statements).
    pub fn exec(db: &Database, sql: &str) {
        match db.postgres() {
            Some(pg) => pg.with(async |c| Ok(c.batch_execute(sql).await?)).unwrap(),
            None => db.lock().unwrap().execute_batch(sql).unwrap(),
        }
    }

    /// The rows of `sql`, every column read as text (cast it).
    pub fn texts(db: &Database, sql: &str) -> Vec<Vec<Option<String>>> {
        match db.postgres() {
            Some(pg) => pg
                .with(async |c| {
                    let rows = c.query(sql, &[]).await?;
                    Ok(rows
                        .iter()
                        .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                        .collect())
                })
                .unwrap(),
            None => {
                let conn = db.lock().unwrap();
                let mut st = conn.prepare(sql).unwrap();
                let n = st.column_count();
                st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        }
    }

    /// The one text value `sql` selects.
    pub fn text(db: &Database, sql: &str) -> Option<String> {
        texts(db, sql).remove(0).remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_databases_reader_reads_committed_data_beside_a_write_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("nexo.db")).unwrap();
        db.lock()
            .unwrap()
            .execute("INSERT INTO settings (key, value) VALUES ('k', 'v1')", [])
            .unwrap();
        // A write in progress on the other connection: the reader is not
        // blocked, and sees the last committed value.
        let mut writer = db.lock().unwrap();
        let tx = writer.transaction().unwrap();
        tx.execute("UPDATE settings SET value = 'v2' WHERE key = 'k'", [])
            .unwrap();
        let read = |db: &Database| -> String {
            db.read()
                .unwrap()
                .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(read(&db), "v1");
        tx.commit().unwrap();
        drop(writer);
        assert_eq!(read(&db), "v2");
        assert!(
            db.read()
                .unwrap()
                .execute("DELETE FROM settings", [])
                .is_err(),
            "the reader wrote"
        );
        // In memory there is one connection.
        let mem = Database::in_memory().unwrap();
        mem.lock()
            .unwrap()
            .execute("INSERT INTO settings (key, value) VALUES ('k', 'v1')", [])
            .unwrap();
        assert_eq!(read(&mem), "v1");
    }

    /// Every table, index and trigger as SQLite keeps its definition.
    fn schema_of(db: &Database) -> Vec<String> {
        let conn = db.lock().unwrap();
        let mut st = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn newest() -> std::collections::BTreeMap<String, i64> {
        schema::COMPONENTS
            .iter()
            .map(|c| (c.name.to_string(), c.migrations.len() as i64))
            .collect()
    }

    #[test]
    fn each_component_is_migrated_once_to_its_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexo.db");
        let db = Database::open(&path).unwrap();
        assert_eq!(db.schema_versions().unwrap(), newest());
        let schema = schema_of(&db);
        drop(db);
        let again = Database::open(&path).unwrap();
        assert_eq!(again.schema_versions().unwrap(), newest());
        assert_eq!(schema_of(&again), schema);
    }

    /// A database from before per-component versions, at every step of the
    /// old single list, opens to the same schema as a new one, with its data.
    #[test]
    fn a_database_from_the_single_list_era_is_mapped_and_finished() {
        let fresh = schema_of(&Database::in_memory().unwrap());
        for step in 1..=MIGRATIONS.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nexo.db");
            {
                let c = Connection::open(&path).unwrap();
                for sql in &MIGRATIONS[..step] {
                    c.execute_batch(sql).unwrap();
                }
                c.execute(
                    "INSERT INTO plugin_kv (namespace, key, value) VALUES ('n', 'k', x'01')",
                    [],
                )
                .unwrap();
                c.pragma_update(None, "user_version", step as i64).unwrap();
            }
            let db = Database::open(&path).unwrap();
            assert_eq!(db.schema_versions().unwrap(), newest(), "from step {step}");
            assert_eq!(schema_of(&db), fresh, "from step {step}");
            let kept: i64 = db
                .lock()
                .unwrap()
                .query_row("SELECT COUNT(*) FROM plugin_kv", [], |r| r.get(0))
                .unwrap();
            assert_eq!(kept, 1, "from step {step}");
            let era: i64 = db
                .lock()
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(era, schema::COMPONENT_ERA, "an older nexo must refuse it");
        }
    }

    #[test]
    fn a_component_newer_than_this_build_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexo.db");
        drop(Database::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.execute(
                "UPDATE schema_versions SET version = 42 WHERE component = 'sync'",
                [],
            )
            .unwrap();
        }
        let err = Database::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 42"), "{err}");
        {
            let c = Connection::open(&path).unwrap();
            c.execute(
                "UPDATE schema_versions SET version = 5 WHERE component = 'sync'",
                [],
            )
            .unwrap();
            c.execute("INSERT INTO schema_versions VALUES ('reports', 1)", [])
                .unwrap();
        }
        let err = Database::open(&path).unwrap_err();
        assert!(err.to_string().contains("`reports`"), "{err}");
    }

    #[test]
    fn a_database_location_is_read_as_typed_and_shown_without_its_password() {
        let pg = Location::parse("postgres://nexo:s3cret@db.internal:5433/nexo").unwrap();
        assert!(matches!(pg, Location::Postgres(_)));
        assert_eq!(pg.to_string(), "postgres://db.internal:5433/nexo");
        assert!(matches!(
            Location::parse("postgresql://db/nexo").unwrap(),
            Location::Postgres(_)
        ));
        assert_eq!(
            Location::parse("sqlite:/var/lib/nexo/nexo.db").unwrap(),
            Location::Sqlite("/var/lib/nexo/nexo.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:///var/lib/nexo/nexo.db").unwrap(),
            Location::Sqlite("/var/lib/nexo/nexo.db".into())
        );
        assert_eq!(
            Location::parse("./nexo.db").unwrap(),
            Location::Sqlite("./nexo.db".into())
        );
        let err = Location::parse("mysql://db/nexo").unwrap_err();
        assert!(err.contains("`mysql` is not supported"), "{err}");
        let err = Location::parse("sqlite:").unwrap_err();
        assert!(err.contains("needs a file path"), "{err}");
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

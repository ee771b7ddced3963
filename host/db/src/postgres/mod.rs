//! PostgreSQL, for several `nexo serve` hosts sharing one database: the
//! pool, the bridge from the blocking store methods to the async client,
//! and the schema's migrations on PostgreSQL (`schema.rs`).
//!
//! The store traits stay blocking, as they are over SQLite: the engine
//! already calls them from blocking threads (the page commit) or briefly
//! in place. tokio-postgres's client futures only talk to their
//! connection through channels, so a store method polls them where it is
//! called ([`Postgres::with`]); the connections themselves (their sockets,
//! the pool's timers) live on a small runtime of this crate's own, which
//! keeps working whichever runtime — or none — the caller is on.

use std::future::Future;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::StoreError;

pub mod schema;

pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod connections;
pub(crate) mod kv;
pub(crate) mod oauth;
pub(crate) mod registry;
pub(crate) mod service;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub(crate) mod trust;

pub use deadpool_postgres::{Client, GenericClient, Transaction};
pub use tokio_postgres::Row;

/// How long a session may sit idle inside a transaction before PostgreSQL
/// ends it: a host cut off from the database mid-transaction must not hold
/// its row locks (its run's, its pipeline lease's) past the lease that
/// another host waits out to take the run over.
const IDLE_IN_TRANSACTION_MS: u64 = 10_000;

/// The longest a store call waits for the database: past it the call
/// fails, and its connection, whose state is then unknown, leaves the
/// pool.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How many connections one host keeps open at most. A host's runs share
/// them with its API; each store call holds one only while it runs.
const POOL_SIZE: usize = 8;

/// A pool of connections to one PostgreSQL database.
pub struct Postgres {
    pool: Pool,
    /// `host:port/database` of the URL, for messages: never the password.
    target: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The runtime the connections live on: one worker thread is enough, it
/// only moves bytes between sockets and channels.
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _one = BUILDING.lock().map_err(|_| StoreError::Poisoned)?;
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("nexo-postgres")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Postgres(format!("cannot start the database runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Whether `url` names a PostgreSQL database (`postgres://` or
/// `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `host:port/database` of a connection URL, without user or password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl Postgres {
    /// A pool for the database at `url` (`postgres://user:password@host:port/db`).
    /// Connects once to say at once whether the database can be reached.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Postgres(format!(
                "the database URL does not parse ({e}); write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        let target = describe(&config);
        let mut config = config;
        let options = config.get_options().unwrap_or_default().to_string();
        let mut options = options;
        if !options.contains("idle_in_transaction_session_timeout") {
            options.push_str(&format!(
                " -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
            ));
        }
        config.options(options.trim());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let rt = runtime()?;
        let pool = {
            let _in = rt.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .create_timeout(Some(Duration::from_secs(10)))
                .wait_timeout(Some(Duration::from_secs(30)))
                .build()
                .map_err(|e| StoreError::Postgres(format!("cannot build the pool: {e}")))?
        };
        let pg = Postgres { pool, target };
        pg.with(async |_| Ok(()))?;
        Ok(pg)
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Poll `future` here, with the database runtime entered so that what
    /// it opens (a connection, a timer) is driven there.
    ///
    /// Outside tokio's cooperative budget: called from a task of another
    /// tokio runtime, the pool's semaphore would find that task's budget
    /// spent after enough calls and defer its wake-up to a scheduler that
    /// this very call is blocking — a busy loop that never ends.
    pub fn block<F: Future>(&self, future: F) -> Result<F::Output, StoreError> {
        let rt = runtime()?;
        let _in = rt.enter();
        Ok(futures_executor::block_on(tokio::task::unconstrained(
            future,
        )))
    }

    /// Run `f` with a connection of the pool.
    pub fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.block(async {
            let mut client = self.pool.get().await.map_err(|e| self.unreachable(e))?;
            match tokio::time::timeout(CALL_TIMEOUT, f(&mut client)).await {
                Ok(answer) => answer,
                Err(_) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(StoreError::Postgres(format!(
                        "the database at {} did not answer within {} s; check that it is reachable from this host",
                        self.target,
                        CALL_TIMEOUT.as_secs()
                    )))
                }
            }
        })?
    }

    /// Run `f` in one transaction, committed when it returns `Ok`.
    pub fn transaction<T>(
        &self,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(async |client| {
            let tx = client.transaction().await?;
            let out = f(&tx).await?;
            tx.commit().await?;
            Ok(out)
        })
    }

    fn unreachable(&self, e: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Postgres(format!(
            "cannot reach the database at {}: {e}; check that PostgreSQL runs there and the URL's user, password and database",
            self.target
        ))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (constraint, column) when there is one:
        // tokio-postgres's Display says only "db error".
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Postgres(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Database;

    #[test]
    fn an_empty_database_is_refused_until_migrated_then_migrates_once() {
        let url = testing::database().unwrap();
        let err = Database::connect(&url).unwrap_err();
        assert!(matches!(err, StoreError::NotMigrated { .. }), "{err}");
        assert!(err.to_string().contains("nexo db migrate"), "{err}");
        let (db, applied) = Database::migrate_postgres(&url).unwrap();
        // One step per migration of each component.
        let steps: usize = schema::COMPONENTS.iter().map(|c| c.migrations.len()).sum();
        assert_eq!(applied.len(), steps);
        let versions = db.schema_versions().unwrap();
        for c in schema::COMPONENTS {
            assert_eq!(versions[c.name], c.migrations.len() as i64, "{}", c.name);
        }
        let (_, again) = Database::migrate_postgres(&url).unwrap();
        assert!(again.is_empty(), "{again:?}");
        Database::connect(&url).unwrap();
    }

    #[test]
    fn hosts_migrating_at_once_migrate_once() {
        let url = testing::database().unwrap();
        let applied: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Database::migrate_postgres(&url).unwrap().1.len()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(applied.iter().filter(|n| **n > 0).count(), 1, "{applied:?}");
    }

    #[test]
    fn a_newer_schema_is_refused_by_name() {
        let url = testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        db.postgres()
            .unwrap()
            .with(async |c| {
                c.execute(
                    "UPDATE schema_versions SET version = 42 WHERE component = 'sync'",
                    &[],
                )
                .await?;
                Ok(())
            })
            .unwrap();
        let err = Database::connect(&url).unwrap_err();
        assert!(err.to_string().contains("schema version 42"), "{err}");
        let err = Database::migrate_postgres(&url).unwrap_err();
        assert!(err.to_string().contains("schema version 42"), "{err}");
    }

    #[test]
    fn the_pool_works_from_inside_an_async_runtime_and_from_a_blocking_thread() {
        let url = testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let in_async = rt.block_on(async { db.schema_versions().unwrap().len() });
        assert_eq!(in_async, schema::COMPONENTS.len());
        let db2 = db.clone();
        let blocking = std::thread::spawn(move || db2.schema_versions().unwrap().len())
            .join()
            .unwrap();
        assert_eq!(blocking, schema::COMPONENTS.len());
    }

    /// Many calls from one task of another runtime, never yielding (as a
    /// daemon's request handler or a test's setup does), all complete:
    /// tokio's budget of that task is not the pool's.
    #[test]
    fn many_calls_from_one_task_of_another_runtime_complete() {
        let url = testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let n = rt.block_on(async {
                (0..500)
                    .map(|_| db.schema_versions().unwrap().len())
                    .sum::<usize>()
            });
            let _ = tx.send(n);
        });
        let n = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("500 calls from one task did not complete in 60 s");
        assert_eq!(n, 500 * schema::COMPONENTS.len());
    }

    #[test]
    fn sessions_do_not_sit_in_a_transaction() {
        let url = testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        let idle: String = db
            .postgres()
            .unwrap()
            .with(async |c| {
                Ok(c.query_one("SHOW idle_in_transaction_session_timeout", &[])
                    .await?
                    .try_get(0)?)
            })
            .unwrap();
        assert_eq!(idle, "10s");
    }

    #[test]
    fn an_unreachable_database_is_named_without_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Database::connect(&format!("postgres://u:hunter2@127.0.0.1:{port}/nexo"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}/nexo")), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

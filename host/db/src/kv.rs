//! Plugins' key-value data in the `plugin_kv` table: the SQLite
//! [`KvBackend`] (on PostgreSQL too: `postgres::kv`). The quota is
//! checked and the value written in one transaction, so two writers cannot
//! both pass the check.

use std::sync::Arc;

use nexo_runtime::sandbox::kv::{KvBackend, KvError, KvStore};
use rusqlite::{OptionalExtension, params};

use crate::{Database, StoreError};

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

/// Key-value namespaces kept in the host's database.
#[derive(Debug, Clone)]
pub struct SqliteKv {
    db: Database,
}

impl SqliteKv {
    /// The backend over `db` (its table comes with the database's migrations).
    pub fn new(db: Database) -> Self {
        SqliteKv { db }
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, KvError> {
        self.db.lock().map_err(|e: StoreError| storage(e))
    }
}

impl Database {
    /// Plugins' key-value store, kept in this database.
    pub fn kv_store(&self) -> KvStore {
        KvStore::new(Arc::new(SqliteKv::new(self.clone())))
    }
}

impl KvBackend for SqliteKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(pg) = self.db.postgres() {
            return crate::postgres::kv::get(pg, namespace, key);
        }
        self.conn()?
            .query_row(
                "SELECT value FROM plugin_kv WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)
    }

    fn set_within(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), KvError> {
        if let Some(pg) = self.db.postgres() {
            return crate::postgres::kv::set_within(pg, namespace, key, value, quota);
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(storage)?;
        let used: i64 = tx
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
                 FROM plugin_kv WHERE namespace = ?1 AND key <> ?2",
                params![namespace, key],
                |r| r.get(0),
            )
            .map_err(storage)?;
        let after = used as u64 + key.len() as u64 + value.len() as u64;
        if after > quota {
            return Err(KvError::QuotaExceeded { quota });
        }
        tx.execute(
            "INSERT INTO plugin_kv (namespace, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            params![namespace, key, value],
        )
        .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        if let Some(pg) = self.db.postgres() {
            return crate::postgres::kv::delete(pg, namespace, key);
        }
        self.conn()?
            .execute(
                "DELETE FROM plugin_kv WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
            )
            .map(drop)
            .map_err(storage)
    }

    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        if let Some(pg) = self.db.postgres() {
            return crate::postgres::kv::list_keys(pg, namespace, prefix);
        }
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT key FROM plugin_kv WHERE namespace = ?1 AND substr(key, 1, ?3) = ?2 ORDER BY key",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(
                params![namespace, prefix, prefix.chars().count() as i64],
                |r| r.get::<_, String>(0),
            )
            .map_err(storage)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexo_runtime::sandbox::kv::KvError;

    on_both!(
        the_database_backend_keeps_namespaces_apart_and_holds_the_quota,
        writers_of_one_namespace_at_once_cannot_both_pass_the_quota,
    );

    /// The same rules as the in-memory backend, on the database's.
    fn the_database_backend_keeps_namespaces_apart_and_holds_the_quota(db: Database) {
        let store = db.kv_store();
        let a = store.namespace("acme/crm/conn1", 20);
        let b = store.namespace("acme/crm/conn2", 20);
        a.set("k1", &[0; 10]).unwrap();
        assert_eq!(b.get("k1").unwrap(), None);
        assert_eq!(
            a.set("k2", &[0; 10]),
            Err(KvError::QuotaExceeded { quota: 20 })
        );
        a.set("k1", &[0; 18]).unwrap();
        for k in ["a/2", "a/1", "a%"] {
            b.set(k, b"v").unwrap();
        }
        assert_eq!(b.list_keys("a/").unwrap(), vec!["a/1", "a/2"]);
        b.delete("a/1").unwrap();
        assert_eq!(b.list_keys("a").unwrap(), vec!["a%", "a/2"]);
        // Multi-byte keys: the prefix is compared by characters, the quota
        // counts bytes.
        let c = store.namespace("acme/crm/conn3", 12);
        c.set("é1", b"vv").unwrap();
        c.set("é2", b"vv").unwrap();
        assert_eq!(c.list_keys("é").unwrap(), vec!["é1", "é2"]);
        assert_eq!(
            c.set("é3", b"vv"),
            Err(KvError::QuotaExceeded { quota: 12 })
        );
    }

    /// Eight writers of new keys in one namespace at once: the quota
    /// holds (each sees the others' committed keys).
    fn writers_of_one_namespace_at_once_cannot_both_pass_the_quota(db: Database) {
        let store = db.kv_store();
        std::thread::scope(|s| {
            for i in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    let _ = store
                        .namespace("acme/crm/race", 30)
                        .set(&format!("k{i}"), &[0; 8]);
                });
            }
        });
        let ns = store.namespace("acme/crm/race", 30);
        assert_eq!(
            ns.list_keys("").unwrap().len(),
            3,
            "3 × (2 + 8) bytes fit in 30"
        );
    }
}

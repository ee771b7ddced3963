//! Key-value storage for plugins: one namespace per installed plugin and
//! connection, in the host's SQLite database, with a byte quota.

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::Database;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The write would take the namespace past its quota.
    #[error("key-value quota of {quota} bytes exceeded")]
    QuotaExceeded {
        /// The quota in bytes.
        quota: u64,
    },
    /// The key is empty or too long.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// SQLite failed.
    #[error("key-value storage failed: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for KvError {
    fn from(e: rusqlite::Error) -> Self {
        KvError::Storage(e.to_string())
    }
}

/// The key-value data of all plugins of a host, in its database.
#[derive(Debug, Clone)]
pub struct KvStore {
    db: Database,
}

impl KvStore {
    /// The store in `db` (its schema comes with the database's migrations).
    pub fn new(db: Database) -> Self {
        KvStore { db }
    }

    /// A store in a private in-memory database (tests, one-off calls).
    pub fn in_memory() -> Result<Self, KvError> {
        Ok(KvStore {
            db: Database::in_memory().map_err(|e| KvError::Storage(e.to_string()))?,
        })
    }

    /// The namespace of one plugin and connection, with its quota.
    pub fn namespace(&self, namespace: impl Into<String>, quota: u64) -> KvNamespace {
        KvNamespace {
            store: self.clone(),
            namespace: namespace.into(),
            quota,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, KvError>) -> Result<T, KvError> {
        let mut conn = self
            .db
            .lock()
            .map_err(|e| KvError::Storage(e.to_string()))?;
        f(&mut conn)
    }
}

/// One plugin's (and connection's) view of the store.
#[derive(Debug, Clone)]
pub struct KvNamespace {
    store: KvStore,
    namespace: String,
    quota: u64,
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidKey("key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::InvalidKey(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

impl KvNamespace {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.store.with(|c| {
            Ok(c.query_row(
                "SELECT value FROM plugin_kv WHERE namespace = ?1 AND key = ?2",
                params![self.namespace, key],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// Store `value` under `key`, if the namespace stays within its quota
    /// (keys and values both count).
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        self.store.with(|c| {
            let tx = c.transaction()?;
            let used: i64 = tx.query_row(
                "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
                 FROM plugin_kv WHERE namespace = ?1 AND key <> ?2",
                params![self.namespace, key],
                |r| r.get(0),
            )?;
            let after = used as u64 + key.len() as u64 + value.len() as u64;
            if after > self.quota {
                return Err(KvError::QuotaExceeded { quota: self.quota });
            }
            tx.execute(
                "INSERT INTO plugin_kv (namespace, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                params![self.namespace, key, value],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Remove `key` (no error when absent).
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.store.with(|c| {
            c.execute(
                "DELETE FROM plugin_kv WHERE namespace = ?1 AND key = ?2",
                params![self.namespace, key],
            )?;
            Ok(())
        })
    }

    /// Keys starting with `prefix`, sorted.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.store.with(|c| {
            let mut stmt = c.prepare(
                "SELECT key FROM plugin_kv WHERE namespace = ?1 AND substr(key, 1, ?3) = ?2 ORDER BY key",
            )?;
            let rows = stmt.query_map(params![self.namespace, prefix, prefix.chars().count() as i64], |r| {
                r.get::<_, String>(0)
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_isolated() {
        let store = KvStore::in_memory().unwrap();
        let a = store.namespace("acme/crm/conn1", 1024);
        let b = store.namespace("acme/crm/conn2", 1024);
        a.set("cursor", b"42").unwrap();
        assert_eq!(a.get("cursor").unwrap().as_deref(), Some(&b"42"[..]));
        assert_eq!(b.get("cursor").unwrap(), None);
        assert!(b.list_keys("").unwrap().is_empty());
    }

    #[test]
    fn quota_counts_keys_and_values_and_overwrites_free_their_space() {
        let store = KvStore::in_memory().unwrap();
        let ns = store.namespace("p", 20);
        ns.set("k1", &[0; 10]).unwrap(); // 12 bytes
        assert_eq!(
            ns.set("k2", &[0; 10]),
            Err(KvError::QuotaExceeded { quota: 20 })
        );
        ns.set("k1", &[0; 18]).unwrap(); // replaces, 20 bytes
        assert_eq!(
            ns.get("k2").unwrap(),
            None,
            "a refused write leaves nothing behind"
        );
    }

    #[test]
    fn keys_are_validated_and_listed_by_prefix() {
        let store = KvStore::in_memory().unwrap();
        let ns = store.namespace("p", 1 << 20);
        assert!(matches!(ns.set("", b"x"), Err(KvError::InvalidKey(_))));
        assert!(matches!(
            ns.get(&"k".repeat(600)),
            Err(KvError::InvalidKey(_))
        ));
        for k in ["a/2", "a/1", "b/1", "a%"] {
            ns.set(k, b"v").unwrap();
        }
        assert_eq!(ns.list_keys("a/").unwrap(), vec!["a/1", "a/2"]);
        ns.delete("a/1").unwrap();
        assert_eq!(ns.list_keys("a").unwrap(), vec!["a%", "a/2"]);
    }
}

//! Key-value storage for plugins: one namespace per installed plugin and
//! connection, with a byte quota. The checks (key rules, the quota) live
//! here; where the bytes are kept is a [`KvBackend`] — the host's database
//! (`nexo-db`), or memory for one-off calls and tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
    /// The storage behind the namespace failed.
    #[error("key-value storage failed: {0}")]
    Storage(String),
}

/// Where namespaces keep their bytes. `set_within` must check the quota and
/// write in one step (a transaction), so that two calls cannot both pass
/// the check and together exceed it.
pub trait KvBackend: std::fmt::Debug + Send + Sync {
    /// The value under `key` in `namespace`.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Store `value` under `key` if the namespace's keys and values,
    /// this one replaced, stay within `quota` bytes.
    fn set_within(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), KvError>;
    /// Remove `key` (no error when absent).
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError>;
    /// Keys of `namespace` starting with `prefix`, sorted.
    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError>;
}

/// The key-value data of all plugins of a host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KvStore {
    backend: Arc<dyn KvBackend>,
}

impl KvStore {
    /// A store keeping its bytes in `backend`.
    pub fn new(backend: Arc<dyn KvBackend>) -> Self {
        KvStore { backend }
    }

    /// A store in memory, gone with the process (tests, one-off calls).
    pub fn in_memory() -> Self {
        KvStore::new(Arc::new(MemoryKv::default()))
    }

    /// The namespace of one plugin and connection, with its quota.
    pub fn namespace(&self, namespace: impl Into<String>, quota: u64) -> KvNamespace {
        KvNamespace {
            store: self.clone(),
            namespace: namespace.into(),
            quota,
        }
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
        self.store.backend.get(&self.namespace, key)
    }

    /// Store `value` under `key`, if the namespace stays within its quota
    /// (keys and values both count).
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        self.store
            .backend
            .set_within(&self.namespace, key, value, self.quota)
    }

    /// Remove `key` (no error when absent).
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.store.backend.delete(&self.namespace, key)
    }

    /// Keys starting with `prefix`, sorted.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        self.store.backend.list_keys(&self.namespace, prefix)
    }
}

/// Values by (namespace, key).
type Entries = BTreeMap<(String, String), Vec<u8>>;

/// Namespaces in memory.
#[derive(Debug, Default)]
pub struct MemoryKv {
    data: Mutex<Entries>,
}

impl MemoryKv {
    fn data(&self) -> Result<std::sync::MutexGuard<'_, Entries>, KvError> {
        self.data
            .lock()
            .map_err(|_| KvError::Storage("the in-memory store was poisoned by a panic".into()))
    }
}

impl KvBackend for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.data()?.get(&(namespace.into(), key.into())).cloned())
    }

    fn set_within(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), KvError> {
        let mut data = self.data()?;
        let used: u64 = data
            .iter()
            .filter(|((ns, k), _)| ns == namespace && k != key)
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum();
        if used + key.len() as u64 + value.len() as u64 > quota {
            return Err(KvError::QuotaExceeded { quota });
        }
        data.insert((namespace.into(), key.into()), value.to_vec());
        Ok(())
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.data()?.remove(&(namespace.into(), key.into()));
        Ok(())
    }

    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        Ok(self
            .data()?
            .keys()
            .filter(|(ns, k)| ns == namespace && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_isolated() {
        let store = KvStore::in_memory();
        let a = store.namespace("acme/crm/conn1", 1024);
        let b = store.namespace("acme/crm/conn2", 1024);
        a.set("cursor", b"42").unwrap();
        assert_eq!(a.get("cursor").unwrap().as_deref(), Some(&b"42"[..]));
        assert_eq!(b.get("cursor").unwrap(), None);
        assert!(b.list_keys("").unwrap().is_empty());
    }

    #[test]
    fn quota_counts_keys_and_values_and_overwrites_free_their_space() {
        let store = KvStore::in_memory();
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
        let store = KvStore::in_memory();
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

//! Key-value storage private to this plugin and connection (for tokens,
//! lookup caches, small state). The host enforces a byte quota; ask for it
//! with [`ConnectorSpec::kv_bytes`](crate::ConnectorSpec::kv_bytes).

use crate::Error;
use crate::wit::connector::nexo::connector::kv as wit;

fn to_error(e: wit::KvError) -> Error {
    match e {
        wit::KvError::QuotaExceeded(q) => {
            Error::AccessDenied(format!("key-value quota of {q} bytes exceeded"))
        }
        wit::KvError::InvalidKey(m) => Error::Internal(format!("key-value: {m}")),
        wit::KvError::Storage(m) => Error::Transient(format!("key-value storage: {m}")),
        wit::KvError::NotGranted => Error::AccessDenied(
            "this plugin has no key-value storage: declare it with `ConnectorSpec::kv_bytes` and have the admin grant it".into(),
        ),
    }
}

/// The value under `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    wit::get(key).map_err(to_error)
}

/// Store `value` under `key`.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    wit::set(key, value).map_err(to_error)
}

/// Remove `key`.
pub fn delete(key: &str) -> Result<(), Error> {
    wit::delete(key).map_err(to_error)
}

/// Keys starting with `prefix`, sorted.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, Error> {
    wit::list_keys(prefix).map_err(to_error)
}

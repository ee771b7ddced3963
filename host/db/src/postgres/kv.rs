//! Plugins' key-value data on PostgreSQL: [`crate::kv::SqliteKv`]'s
//! statements when the database is PostgreSQL. Hosts writing one
//! namespace at once take turns on a transaction-scoped advisory lock of
//! that namespace, so the quota's sum and the write it allows are one step
//! (row locks would not stop a second host inserting a new key).

use nexo_runtime::sandbox::kv::KvError;

use super::Postgres;

/// The advisory lock class of kv namespaces ("nexo"); the namespace's hash
/// is the second key.
const NAMESPACE_LOCK: i32 = 0x6e65_786f;

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

/// [`nexo_runtime::sandbox::kv::KvBackend::get`].
pub(crate) fn get(pg: &Postgres, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
    pg.with(async |c| {
        let st = c
            .prepare_cached("SELECT value FROM plugin_kv WHERE namespace = $1 AND key = $2")
            .await?;
        let row = c.query_opt(&st, &[&namespace, &key]).await?;
        Ok(row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?)
    })
    .map_err(storage)
}

/// [`nexo_runtime::sandbox::kv::KvBackend::set_within`].
pub(crate) fn set_within(
    pg: &Postgres,
    namespace: &str,
    key: &str,
    value: &[u8],
    quota: u64,
) -> Result<(), KvError> {
    let outcome = pg.transaction(async |tx| {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&NAMESPACE_LOCK, &namespace],
        )
        .await?;
        let used: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::bigint
                   FROM plugin_kv WHERE namespace = $1 AND key <> $2",
                &[&namespace, &key],
            )
            .await?
            .try_get(0)?;
        let after = used as u64 + key.len() as u64 + value.len() as u64;
        if after > quota {
            return Ok(Err(KvError::QuotaExceeded { quota }));
        }
        tx.execute(
            "INSERT INTO plugin_kv (namespace, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            &[&namespace, &key, &value],
        )
        .await?;
        Ok(Ok(()))
    });
    outcome.map_err(storage)?
}

/// [`nexo_runtime::sandbox::kv::KvBackend::delete`].
pub(crate) fn delete(pg: &Postgres, namespace: &str, key: &str) -> Result<(), KvError> {
    pg.with(async |c| {
        c.execute(
            "DELETE FROM plugin_kv WHERE namespace = $1 AND key = $2",
            &[&namespace, &key],
        )
        .await?;
        Ok(())
    })
    .map_err(storage)
}

/// [`nexo_runtime::sandbox::kv::KvBackend::list_keys`]: keys in byte
/// order, as SQLite sorts them.
pub(crate) fn list_keys(
    pg: &Postgres,
    namespace: &str,
    prefix: &str,
) -> Result<Vec<String>, KvError> {
    let chars = prefix.chars().count() as i32;
    pg.with(async |c| {
        let rows = c
            .query(
                "SELECT key FROM plugin_kv WHERE namespace = $1 AND substr(key, 1, $3) = $2
                  ORDER BY key COLLATE \"C\"",
                &[&namespace, &prefix, &chars],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, String>(0)?))
            .collect()
    })
    .map_err(storage)
}

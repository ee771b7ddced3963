//! Trusted vendor keys on PostgreSQL: the statements of [`crate::trust`].

use nexo_bundle::keys::PublicKey;

use super::Postgres;
use crate::StoreError;
use crate::trust::TrustedKey;

/// [`crate::Database::trust_key`].
pub(crate) fn trust_key(pg: &Postgres, key: &PublicKey) -> Result<bool, StoreError> {
    let bytes = key.to_bytes().to_vec();
    let n = pg.with(async |c| {
        Ok(c.execute(
            "INSERT INTO trusted_keys (key_id, public_key, name) VALUES ($1, $2, $3)
             ON CONFLICT (key_id) DO NOTHING",
            &[&key.key_id(), &bytes, &key.name],
        )
        .await?)
    })?;
    Ok(n == 1)
}

/// [`crate::Database::untrust_key`].
pub(crate) fn untrust_key(pg: &Postgres, key_id: &str) -> Result<bool, StoreError> {
    let n = pg.with(async |c| {
        Ok(
            c.execute("DELETE FROM trusted_keys WHERE key_id = $1", &[&key_id])
                .await?,
        )
    })?;
    Ok(n == 1)
}

/// [`crate::Database::trusted_key`].
pub(crate) fn trusted_key(pg: &Postgres, key_id: &str) -> Result<Option<PublicKey>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            "SELECT public_key, name FROM trusted_keys WHERE key_id = $1",
            &[&key_id],
        )
        .await?)
    })?;
    let Some(row) = row else { return Ok(None) };
    let bytes: Vec<u8> = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    Ok(PublicKey::from_bytes(&bytes, name).ok())
}

/// [`crate::Database::trusted_keys`].
pub(crate) fn trusted_keys(pg: &Postgres) -> Result<Vec<TrustedKey>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT public_key, name, added_at FROM trusted_keys
              ORDER BY added_at COLLATE \"C\", key_id COLLATE \"C\"",
            &[],
        )
        .await?)
    })?;
    let mut out = Vec::new();
    for row in rows {
        let bytes: Vec<u8> = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let added_at: String = row.try_get(2)?;
        if let Ok(key) = PublicKey::from_bytes(&bytes, name) {
            out.push(TrustedKey { key, added_at });
        }
    }
    Ok(out)
}

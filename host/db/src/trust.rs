//! Vendors' public keys the admin trusts to sign plugins.

use rusqlite::{OptionalExtension, params};

use super::{Database, StoreError};
use nexo_bundle::keys::PublicKey;

/// A trusted key as listed.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The key.
    pub key: PublicKey,
    /// When it was trusted (RFC 3339).
    pub added_at: String,
}

impl Database {
    /// Trust `key`. Returns false when it was already trusted.
    pub fn trust_key(&self, key: &PublicKey) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::trust::trust_key(pg, key);
        }
        let n = self.lock()?.execute(
            "INSERT INTO trusted_keys (key_id, public_key, name) VALUES (?1, ?2, ?3)
             ON CONFLICT (key_id) DO NOTHING",
            params![key.key_id(), key.to_bytes().to_vec(), key.name],
        )?;
        Ok(n == 1)
    }

    /// Stop trusting the key with this id. Returns false when it was unknown.
    pub fn untrust_key(&self, key_id: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::trust::untrust_key(pg, key_id);
        }
        Ok(self.lock()?.execute(
            "DELETE FROM trusted_keys WHERE key_id = ?1",
            params![key_id],
        )? == 1)
    }

    /// The trusted key with this id.
    pub fn trusted_key(&self, key_id: &str) -> Result<Option<PublicKey>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::trust::trusted_key(pg, key_id);
        }
        let row: Option<(Vec<u8>, String)> = self
            .lock()?
            .query_row(
                "SELECT public_key, name FROM trusted_keys WHERE key_id = ?1",
                params![key_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(bytes, name)| PublicKey::from_bytes(&bytes, name).ok()))
    }

    /// All trusted keys, oldest first.
    pub fn trusted_keys(&self) -> Result<Vec<TrustedKey>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::trust::trusted_keys(pg);
        }
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT public_key, name, added_at FROM trusted_keys ORDER BY added_at, key_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (bytes, name, added_at) = row?;
            if let Ok(key) = PublicKey::from_bytes(&bytes, name) {
                out.push(TrustedKey { key, added_at });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    on_both!(keys_are_trusted_once_listed_and_untrusted);

    fn keys_are_trusted_once_listed_and_untrusted(db: Database) {
        let a = nexo_bundle::keys::SecretKey::generate("acme")
            .unwrap()
            .public();
        let b = nexo_bundle::keys::SecretKey::generate("other")
            .unwrap()
            .public();
        assert!(db.trust_key(&a).unwrap());
        assert!(!db.trust_key(&a).unwrap(), "already trusted");
        assert!(db.trust_key(&b).unwrap());
        let got = db.trusted_key(&a.key_id()).unwrap().unwrap();
        assert_eq!((got.key_id(), got.name.as_str()), (a.key_id(), "acme"));
        assert!(db.trusted_key("nope").unwrap().is_none());
        let mut ids: Vec<String> = db
            .trusted_keys()
            .unwrap()
            .iter()
            .map(|k| k.key.key_id())
            .collect();
        ids.sort();
        let mut want = vec![a.key_id(), b.key_id()];
        want.sort();
        assert_eq!(ids, want);
        assert!(db.untrust_key(&a.key_id()).unwrap());
        assert!(!db.untrust_key(&a.key_id()).unwrap());
        assert_eq!(db.trusted_keys().unwrap().len(), 1);
    }
}

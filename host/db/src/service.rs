//! What the daemon keeps besides sync state: admin API tokens (only their
//! SHA-256), each pipeline's sealed webhook secret, and the last health
//! check of each connection.

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Database, StoreError};

/// Migration 6.
pub(crate) const MIGRATION: &str = "
    ALTER TABLE pipelines ADD COLUMN paused_reason TEXT;
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        last_used_at TEXT
    );
    CREATE TABLE webhook_secrets (
        pipeline TEXT PRIMARY KEY REFERENCES pipelines(name) ON DELETE CASCADE,
        nonce BLOB NOT NULL,
        sealed BLOB NOT NULL
    );
    CREATE TABLE connection_health (
        connection TEXT PRIMARY KEY REFERENCES connections(name) ON DELETE CASCADE,
        ok INTEGER NOT NULL,
        error TEXT,
        checked_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
";

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Name given at creation.
    pub name: String,
    /// When it was created.
    pub created_at: String,
    /// When it was last accepted.
    pub last_used_at: Option<String>,
}

/// The last health check of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether `check` succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// When.
    pub checked_at: String,
}

/// A pipeline's webhook secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedWebhook {
    /// Nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext.
    pub sealed: Vec<u8>,
}

/// Errors of one class in one pipeline on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDay {
    /// Pipeline.
    pub pipeline: String,
    /// Dead letter class, or `run failed`.
    pub class: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// How many.
    pub count: u64,
    /// When the last one happened.
    pub last_at: String,
    /// Its message.
    pub last_error: String,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Database {
    /// Store a new token under `name`. Returns false when the name is taken.
    pub fn insert_token(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        Ok(self.lock()?.execute(
            "INSERT INTO api_tokens (name, sha256) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, digest(token)],
        )? == 1)
    }

    /// The name of the token, if it is a known one (and note its use).
    pub fn check_token(&self, token: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        let name: Option<String> = conn
            .query_row(
                "SELECT name FROM api_tokens WHERE sha256 = ?1",
                [digest(token)],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(name) = &name {
            conn.execute(
                "UPDATE api_tokens SET last_used_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
                 WHERE name = ?1",
                [name],
            )?;
        }
        Ok(name)
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let conn = self.lock()?;
        let mut st =
            conn.prepare("SELECT name, created_at, last_used_at FROM api_tokens ORDER BY name")?;
        Ok(st
            .query_map([], |r| {
                Ok(TokenRow {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    last_used_at: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Revoke a token. Returns false when there was none by that name.
    pub fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()?
            .execute("DELETE FROM api_tokens WHERE name = ?1", [name])?
            == 1)
    }

    /// Save a pipeline's sealed webhook secret (replacing the old one).
    pub fn set_webhook_secret(
        &self,
        pipeline: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.lock()?.execute(
            "INSERT INTO webhook_secrets (pipeline, nonce, sealed) VALUES (?1, ?2, ?3)
             ON CONFLICT (pipeline) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed",
            params![pipeline, nonce, sealed],
        )?;
        Ok(())
    }

    /// A pipeline's sealed webhook secret.
    pub fn webhook_secret(&self, pipeline: &str) -> Result<Option<SealedWebhook>, StoreError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT nonce, sealed FROM webhook_secrets WHERE pipeline = ?1",
                [pipeline],
                |r| {
                    Ok(SealedWebhook {
                        nonce: r.get(0)?,
                        sealed: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Dead letters and failed runs of the last `days` days, per pipeline,
    /// class and day (SQLite's bare columns beside `MAX` come from the row
    /// holding the maximum: the last error's message).
    pub fn error_days(&self, days: u32) -> Result<Vec<ErrorDay>, StoreError> {
        let conn = self.lock()?;
        let since = format!("-{days} days");
        let mut st = conn.prepare(
            "SELECT pipeline, class, day, n, last_at, error FROM (
                 SELECT pipeline, class, substr(created_at, 1, 10) AS day, COUNT(*) AS n,
                        MAX(created_at) AS last_at, error
                   FROM dead_letters WHERE created_at >= strftime('%Y-%m-%d', 'now', ?1)
                  GROUP BY pipeline, class, day
                 UNION ALL
                 SELECT pipeline, 'run failed', substr(started_at, 1, 10) AS day, COUNT(*),
                        MAX(started_at), COALESCE(error, '')
                   FROM runs WHERE status = 'failed'
                    AND started_at >= strftime('%Y-%m-%d', 'now', ?1)
                  GROUP BY pipeline, day
             ) ORDER BY day, pipeline, class",
        )?;
        Ok(st
            .query_map([since], |r| {
                Ok(ErrorDay {
                    pipeline: r.get(0)?,
                    class: r.get(1)?,
                    day: r.get(2)?,
                    count: r.get::<_, i64>(3)? as u64,
                    last_at: r.get(4)?,
                    last_error: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Record a health check.
    pub fn set_health(&self, connection: &str, error: Option<&str>) -> Result<(), StoreError> {
        self.lock()?.execute(
            "INSERT INTO connection_health (connection, ok, error) VALUES (?1, ?2, ?3)
             ON CONFLICT (connection) DO UPDATE SET ok = excluded.ok, error = excluded.error,
                 checked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            params![connection, error.is_none(), error],
        )?;
        Ok(())
    }

    /// The last health check of a connection.
    pub fn health(&self, connection: &str) -> Result<Option<Health>, StoreError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT ok, error, checked_at FROM connection_health WHERE connection = ?1",
                [connection],
                |r| {
                    Ok(Health {
                        ok: r.get(0)?,
                        error: r.get(1)?,
                        checked_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_is_known_by_its_digest_only_and_can_be_revoked() {
        let db = Database::in_memory().unwrap();
        assert!(db.insert_token("ci", "nexo_secret_1").unwrap());
        assert!(!db.insert_token("ci", "nexo_other").unwrap(), "name taken");
        assert_eq!(
            db.check_token("nexo_secret_1").unwrap().as_deref(),
            Some("ci")
        );
        assert_eq!(db.check_token("nexo_secret_2").unwrap(), None);
        let stored: String = db
            .lock()
            .unwrap()
            .query_row("SELECT sha256 FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains("secret"), "only the digest is stored");
        assert!(db.tokens().unwrap()[0].last_used_at.is_some());
        assert!(db.revoke_token("ci").unwrap());
        assert_eq!(db.check_token("nexo_secret_1").unwrap(), None);
    }
}

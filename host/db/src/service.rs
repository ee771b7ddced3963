//! What the daemon keeps besides sync state: admin API tokens (only their
//! SHA-256, and the role each carries), each pipeline's sealed webhook
//! secret, and the last health check of each connection.

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

/// Migration 2 of the daemon component: every token carries a role. Tokens
/// from before roles could do everything, so they stay `admin`.
pub(crate) const ROLES: &str = "
    ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
        CHECK (role IN ('viewer', 'operator', 'admin'));
";

/// What a token (and the console session signed in with it) may do. Each
/// role can do everything the roles below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything except secrets.
    Viewer,
    /// Also runs, pauses and resumes pipelines, stops runs, replays and
    /// discards dead letters, resolves conflicts.
    Operator,
    /// Also changes plugins, trust, connections, grants, pipelines, tokens
    /// and settings.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// Its name as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `viewer`, `operator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a role: use viewer (reads everything but secrets), operator (also runs, pauses, replays, resolves) or admin (also changes plugins, connections, pipelines, tokens)"
)]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// A role as read from the database.
pub(crate) fn stored_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|e: UnknownRole| StoreError::Corrupt(format!("api_tokens.role: {e}")))
}

/// A token that was accepted: whose it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Name given at creation.
    pub name: String,
    /// What it may do.
    pub role: Role,
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
    /// Store a new token under `name` with `role`. Returns false when the
    /// name is taken.
    pub fn insert_token(&self, name: &str, token: &str, role: Role) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::insert_token(pg, name, &digest(token), role);
        }
        Ok(self.lock()?.execute(
            "INSERT INTO api_tokens (name, sha256, role) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, digest(token), role.as_str()],
        )? == 1)
    }

    /// Whose the token is and its role, if it is a known one (and note its
    /// use).
    pub fn check_token(&self, token: &str) -> Result<Option<TokenIdentity>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::check_token(pg, &digest(token));
        }
        let conn = self.lock()?;
        let found: Option<(String, String)> = conn
            .query_row(
                "SELECT name, role FROM api_tokens WHERE sha256 = ?1",
                [digest(token)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((name, role)) = found else {
            return Ok(None);
        };
        conn.execute(
            "UPDATE api_tokens SET last_used_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
             WHERE name = ?1",
            [&name],
        )?;
        Ok(Some(TokenIdentity {
            name,
            role: stored_role(&role)?,
        }))
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::tokens(pg);
        }
        let conn = self.lock()?;
        let mut st = conn
            .prepare("SELECT name, role, created_at, last_used_at FROM api_tokens ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, created_at, last_used_at) = row?;
            out.push(TokenRow {
                name,
                role: stored_role(&role)?,
                created_at,
                last_used_at,
            });
        }
        Ok(out)
    }

    /// Revoke a token. Returns false when there was none by that name.
    pub fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::revoke_token(pg, name);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::set_webhook_secret(pg, pipeline, nonce, sealed);
        }
        self.lock()?.execute(
            "INSERT INTO webhook_secrets (pipeline, nonce, sealed) VALUES (?1, ?2, ?3)
             ON CONFLICT (pipeline) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed",
            params![pipeline, nonce, sealed],
        )?;
        Ok(())
    }

    /// A pipeline's sealed webhook secret.
    pub fn webhook_secret(&self, pipeline: &str) -> Result<Option<SealedWebhook>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::webhook_secret(pg, pipeline);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::error_days(pg, days);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::set_health(pg, connection, error);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::service::health(pg, connection);
        }
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

    use crate::test_sql::{exec, text};

    on_both!(
        a_token_is_known_by_its_digest_only_and_can_be_revoked,
        webhook_secrets_and_health_are_replaced_in_place,
        error_days_count_per_pipeline_class_and_day_with_the_last_message,
    );

    fn a_token_is_known_by_its_digest_only_and_can_be_revoked(db: Database) {
        assert!(
            db.insert_token("ci", "nexo_secret_1", Role::Operator)
                .unwrap()
        );
        assert!(
            !db.insert_token("ci", "nexo_other", Role::Admin).unwrap(),
            "name taken"
        );
        assert!(
            db.insert_token("wall", "nexo_secret_3", Role::Viewer)
                .unwrap()
        );
        assert_eq!(
            db.check_token("nexo_secret_1").unwrap(),
            Some(TokenIdentity {
                name: "ci".into(),
                role: Role::Operator
            }),
            "the role it was created with, not the one asked for under a taken name"
        );
        assert_eq!(
            db.check_token("nexo_secret_3").unwrap().map(|t| t.role),
            Some(Role::Viewer)
        );
        let roles: Vec<(String, Role)> = db
            .tokens()
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.role))
            .collect();
        assert_eq!(
            roles,
            vec![("ci".into(), Role::Operator), ("wall".into(), Role::Viewer)]
        );
        assert_eq!(db.check_token("nexo_secret_2").unwrap(), None);
        let stored = text(&db, "SELECT sha256 FROM api_tokens").unwrap();
        assert!(!stored.contains("secret"), "only the digest is stored");
        assert!(db.tokens().unwrap()[0].last_used_at.is_some());
        assert!(db.revoke_token("ci").unwrap());
        assert_eq!(db.check_token("nexo_secret_1").unwrap(), None);
    }

    #[test]
    fn roles_read_as_typed_and_refuse_others_by_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        let e = "root".parse::<Role>().unwrap_err().to_string();
        assert!(
            e.contains("`root` is not a role") && e.contains("operator"),
            "{e}"
        );
    }

    fn webhook_secrets_and_health_are_replaced_in_place(db: Database) {
        exec(
            &db,
            "INSERT INTO plugins (plugin_id, active_version) VALUES ('a/b', '1.0.0');
             INSERT INTO connections (name, plugin_id, environment, config, grants)
                 VALUES ('crm', 'a/b', 'sandbox', '{}', '{}');
             INSERT INTO pipelines (name, definition) VALUES ('p', '{}');",
        );
        assert_eq!(db.webhook_secret("p").unwrap(), None);
        db.set_webhook_secret("p", &[1], &[2, 3]).unwrap();
        db.set_webhook_secret("p", &[4], &[5]).unwrap();
        assert_eq!(
            db.webhook_secret("p").unwrap(),
            Some(SealedWebhook {
                nonce: vec![4],
                sealed: vec![5]
            })
        );
        assert_eq!(db.health("crm").unwrap(), None);
        db.set_health("crm", Some("401 from the API")).unwrap();
        let h = db.health("crm").unwrap().unwrap();
        assert!(!h.ok);
        assert_eq!(h.error.as_deref(), Some("401 from the API"));
        assert_eq!(h.checked_at.len(), "2026-01-01T00:00:00Z".len());
        db.set_health("crm", None).unwrap();
        let h = db.health("crm").unwrap().unwrap();
        assert!(h.ok);
        assert_eq!(h.error, None);
    }

    fn error_days_count_per_pipeline_class_and_day_with_the_last_message(db: Database) {
        // Failed runs today and long ago (outside the window); dead letters
        // on a later day, the last of them not the last inserted.
        exec(
            &db,
            "INSERT INTO runs (run_id, pipeline, status, started_at, error)
                 VALUES (1, 'p', 'failed', '2000-01-01T00:00:00.000Z', 'old');
             INSERT INTO runs (run_id, pipeline, status, error) VALUES (2, 'p', 'failed', 'boom');
             INSERT INTO runs (run_id, pipeline, status) VALUES (3, 'p', 'failed');
             INSERT INTO runs (run_id, pipeline, status) VALUES (4, 'p', 'succeeded');",
        );
        for (id, at, error) in [
            (1, "00:00:01", "first"),
            (2, "00:00:03", "last"),
            (3, "00:00:02", "middle"),
        ] {
            exec(
                &db,
                &format!(
                    "INSERT INTO dead_letters (id, pipeline, run_id, kind, source_id, record, error, class, attempts, created_at)
                     VALUES ({id}, 'p', 2, 'k', 's', '{{}}', '{error}', 'rejected', 1, '2999-01-01T{at}.000Z')"
                ),
            );
        }
        let days = db.error_days(7).unwrap();
        assert_eq!(days.len(), 2, "{days:?}");
        assert_eq!((days[0].class.as_str(), days[0].count), ("run failed", 2));
        assert!(days[0].day.starts_with("20"), "{days:?}");
        assert_eq!(
            (
                days[1].class.as_str(),
                days[1].day.as_str(),
                days[1].count,
                days[1].last_error.as_str()
            ),
            ("rejected", "2999-01-01", 3, "last")
        );
        assert_eq!(days[1].last_at, "2999-01-01T00:00:03.000Z");
    }
}

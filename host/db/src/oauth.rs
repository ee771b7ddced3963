//! Rows of the OAuth 2.0 authorization of a connection: the client it
//! authorized as, its tokens (sealed, like every secret), their expiry and
//! generation, whether it needs an admin again, and the refresh claim that
//! keeps one refresh at a time per connection across runs and processes.
//!
//! A refresh is claimed by generation: the process that moves the claim
//! from empty (or expired) to itself for the generation it read is the only
//! one that spends the refresh token; it stores the new pair and bumps the
//! generation in one statement, so a rotating refresh token is never used
//! twice and a reader sees either the old pair or the new one.

use rusqlite::{OptionalExtension, params};

use super::{Database, StoreError};
use crate::connections::pipelines_using;

/// A value sealed by the host's [`crate::sealed::Sealer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext.
    pub sealed: Vec<u8>,
}

/// Where a connection's authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthStatus {
    /// Tokens are there and refresh.
    Authorized,
    /// The system refused the refresh token for good (revoked, expired):
    /// an admin must authorize again. The connection's pipelines were
    /// paused.
    NeedsReauthorization,
}

impl OAuthStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthStatus::Authorized => "authorized",
            OAuthStatus::NeedsReauthorization => "needs-reauthorization",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "authorized" => Ok(OAuthStatus::Authorized),
            "needs-reauthorization" => Ok(OAuthStatus::NeedsReauthorization),
            other => Err(StoreError::Corrupt(format!("OAuth status `{other}`"))),
        }
    }
}

/// A connection's OAuth 2.0 authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthRow {
    /// The connection.
    pub connection: String,
    /// `authorization-code` or `client-credentials`.
    pub flow: String,
    /// The OAuth client id (not a secret).
    pub client_id: String,
    /// The client secret, sealed (none for a public client).
    pub client_secret: Option<Sealed>,
    /// The access token, sealed.
    pub access_token: Sealed,
    /// The refresh token, sealed (none from the client-credentials flow).
    pub refresh_token: Option<Sealed>,
    /// When the access token was issued (ms since the epoch).
    pub issued_at_ms: i64,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: i64,
    /// Bumped by every new pair.
    pub generation: i64,
    /// Where it stands.
    pub status: OAuthStatus,
    /// Why it needs an admin, when it does.
    pub reason: Option<String>,
    /// The tenant chosen after authorizing, when the system has tenants.
    pub tenant: Option<String>,
}

/// What a refresh claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the claim for the generation it read.
    Won,
    /// The generation moved on: someone stored a new pair.
    Moved,
    /// Someone else holds an unexpired claim on this generation.
    Held,
    /// The connection needs re-authorization (or has no authorization).
    NotAuthorized,
}

pub(crate) const COLUMNS: &str =
    "connection, flow, client_id, client_secret_nonce, client_secret, access_nonce,
     access_token, refresh_nonce, refresh_token, issued_at_ms, expires_at_ms, generation, status,
     reason, tenant";

pub(crate) fn sealed_pair(nonce: Option<Vec<u8>>, sealed: Option<Vec<u8>>) -> Option<Sealed> {
    match (nonce, sealed) {
        (Some(nonce), Some(sealed)) => Some(Sealed { nonce, sealed }),
        _ => None,
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(OAuthRow, String)> {
    let status: String = r.get(12)?;
    Ok((
        OAuthRow {
            connection: r.get(0)?,
            flow: r.get(1)?,
            client_id: r.get(2)?,
            client_secret: sealed_pair(r.get(3)?, r.get(4)?),
            access_token: Sealed {
                nonce: r.get(5)?,
                sealed: r.get(6)?,
            },
            refresh_token: sealed_pair(r.get(7)?, r.get(8)?),
            issued_at_ms: r.get(9)?,
            expires_at_ms: r.get(10)?,
            generation: r.get(11)?,
            status: OAuthStatus::Authorized,
            reason: r.get(13)?,
            tenant: r.get(14)?,
        },
        status,
    ))
}

impl Database {
    /// The OAuth authorization of `connection`, if it has one.
    pub fn oauth(&self, connection: &str) -> Result<Option<OAuthRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::oauth::oauth(pg, connection);
        }
        let conn = self.lock()?;
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM connection_oauth WHERE connection = ?1"),
                params![connection],
                read_row,
            )
            .optional()?;
        row.map(|(mut row, status)| {
            row.status = OAuthStatus::parse(&status)?;
            Ok(row)
        })
        .transpose()
    }

    /// Save a new authorization of `row.connection` (replacing any before:
    /// its generation continues from the old one), with the connection's
    /// config set to `config` when the authorization chose a tenant; and
    /// resume the pipelines this host paused because the connection needed
    /// re-authorization, if they are still paused for that reason. All in
    /// one transaction. Returns the pipelines resumed.
    pub fn save_oauth(
        &self,
        row: &OAuthRow,
        config: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::oauth::save_oauth(pg, row, config);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE name = ?1)",
            params![row.connection],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::Corrupt(format!(
                "connection `{}` was removed while it was being authorized",
                row.connection
            )));
        }
        let previous: Option<(i64, Option<String>)> = tx
            .query_row(
                "SELECT generation, paused_pipelines FROM connection_oauth WHERE connection = ?1",
                params![row.connection],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let generation = previous.as_ref().map_or(1, |(g, _)| g + 1);
        let (client_secret_nonce, client_secret) = split(row.client_secret.as_ref());
        let (refresh_nonce, refresh_token) = split(row.refresh_token.as_ref());
        tx.execute(
            "INSERT INTO connection_oauth (connection, flow, client_id, client_secret_nonce,
                 client_secret, access_nonce, access_token, refresh_nonce, refresh_token,
                 issued_at_ms, expires_at_ms, generation, status, reason, tenant,
                 refreshing_until_ms, paused_pipelines, authorized_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'authorized', NULL, ?13,
                 NULL, NULL, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
             ON CONFLICT (connection) DO UPDATE SET flow = excluded.flow,
                 client_id = excluded.client_id, client_secret_nonce = excluded.client_secret_nonce,
                 client_secret = excluded.client_secret, access_nonce = excluded.access_nonce,
                 access_token = excluded.access_token, refresh_nonce = excluded.refresh_nonce,
                 refresh_token = excluded.refresh_token, issued_at_ms = excluded.issued_at_ms,
                 expires_at_ms = excluded.expires_at_ms, generation = excluded.generation,
                 status = 'authorized', reason = NULL, tenant = excluded.tenant,
                 refreshing_until_ms = NULL, paused_pipelines = NULL,
                 authorized_at = excluded.authorized_at",
            params![
                row.connection,
                row.flow,
                row.client_id,
                client_secret_nonce,
                client_secret,
                row.access_token.nonce,
                row.access_token.sealed,
                refresh_nonce,
                refresh_token,
                row.issued_at_ms,
                row.expires_at_ms,
                generation,
                row.tenant,
            ],
        )?;
        if let Some(config) = config {
            tx.execute(
                "UPDATE connections SET config = ?2 WHERE name = ?1",
                params![row.connection, config],
            )?;
        }
        let mut resumed = Vec::new();
        if let Some((_, Some(paused))) = previous {
            let paused: Vec<String> = serde_json::from_str(&paused)
                .map_err(|e| StoreError::Corrupt(format!("paused pipelines: {e}")))?;
            for pipeline in paused {
                let n = tx.execute(
                    "UPDATE pipelines SET paused = 0, paused_reason = NULL
                      WHERE name = ?1 AND paused = 1 AND paused_reason LIKE ?2",
                    params![pipeline, format!("{REAUTHORIZATION_REASON}%")],
                )?;
                if n > 0 {
                    resumed.push(pipeline);
                }
            }
        }
        tx.commit()?;
        Ok(resumed)
    }

    /// Claim the refresh of `connection`'s tokens of `generation` until
    /// `until_ms` (a claim older than `now_ms` is free again: its holder
    /// died or gave up).
    pub fn claim_oauth_refresh(
        &self,
        connection: &str,
        generation: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Claim, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::oauth::claim_oauth_refresh(
                pg, connection, generation, now_ms, until_ms,
            );
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: Option<(i64, String, Option<i64>)> = tx
            .query_row(
                "SELECT generation, status, refreshing_until_ms FROM connection_oauth
                  WHERE connection = ?1",
                params![connection],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let claim = match found {
            None => Claim::NotAuthorized,
            Some((_, status, _)) if OAuthStatus::parse(&status)? != OAuthStatus::Authorized => {
                Claim::NotAuthorized
            }
            Some((g, _, _)) if g != generation => Claim::Moved,
            Some((_, _, Some(until))) if until > now_ms => Claim::Held,
            Some(_) => {
                tx.execute(
                    "UPDATE connection_oauth SET refreshing_until_ms = ?2 WHERE connection = ?1",
                    params![connection, until_ms],
                )?;
                Claim::Won
            }
        };
        tx.commit()?;
        Ok(claim)
    }

    /// Store the pair a refresh of `generation` got (the refresh token
    /// unchanged when `refresh_token` is `None`: the system does not
    /// rotate it), bump the generation and release the claim. False when
    /// the generation had moved on (nothing stored).
    pub fn store_oauth_refresh(
        &self,
        connection: &str,
        generation: i64,
        access_token: &Sealed,
        refresh_token: Option<&Sealed>,
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::oauth::store_oauth_refresh(
                pg,
                connection,
                generation,
                access_token,
                refresh_token,
                issued_at_ms,
                expires_at_ms,
            );
        }
        let conn = self.lock()?;
        let (refresh_nonce, refresh) = split(refresh_token);
        let n = conn.execute(
            "UPDATE connection_oauth SET access_nonce = ?3, access_token = ?4,
                 refresh_nonce = COALESCE(?5, refresh_nonce), refresh_token = COALESCE(?6, refresh_token),
                 issued_at_ms = ?7, expires_at_ms = ?8, generation = generation + 1,
                 refreshing_until_ms = NULL, refreshed_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
              WHERE connection = ?1 AND generation = ?2 AND status = 'authorized'",
            params![
                connection,
                generation,
                access_token.nonce,
                access_token.sealed,
                refresh_nonce,
                refresh,
                issued_at_ms,
                expires_at_ms
            ],
        )?;
        Ok(n == 1)
    }

    /// Give up a refresh claim without a new pair (the token endpoint
    /// failed for a passing reason).
    pub fn release_oauth_refresh(&self, connection: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::oauth::release_oauth_refresh(pg, connection);
        }
        let conn = self.lock()?;
        conn.execute(
            "UPDATE connection_oauth SET refreshing_until_ms = NULL WHERE connection = ?1",
            params![connection],
        )?;
        Ok(())
    }

    /// The system refused `connection`'s refresh token for good: mark it as
    /// needing re-authorization with `reason`, and pause every pipeline
    /// using it that is not paused already, saying why — in one
    /// transaction. Returns the pipelines paused.
    pub fn oauth_needs_reauthorization(
        &self,
        connection: &str,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::oauth::oauth_needs_reauthorization(pg, connection, reason);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let pause = format!("{REAUTHORIZATION_REASON}: {reason}");
        let mut paused = Vec::new();
        for pipeline in pipelines_using(&tx, connection)? {
            let n = tx.execute(
                "UPDATE pipelines SET paused = 1, paused_reason = ?2 WHERE name = ?1 AND paused = 0",
                params![pipeline, pause],
            )?;
            if n > 0 {
                paused.push(pipeline);
            }
        }
        let previous: Option<Option<String>> = tx
            .query_row(
                "SELECT paused_pipelines FROM connection_oauth WHERE connection = ?1",
                params![connection],
                |r| r.get(0),
            )
            .optional()?;
        let mut all: Vec<String> = match previous.flatten() {
            Some(p) => serde_json::from_str(&p)
                .map_err(|e| StoreError::Corrupt(format!("paused pipelines: {e}")))?,
            None => Vec::new(),
        };
        for p in &paused {
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        let all = serde_json::to_string(&all).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "UPDATE connection_oauth SET status = 'needs-reauthorization', reason = ?2,
                 refreshing_until_ms = NULL, paused_pipelines = ?3
              WHERE connection = ?1",
            params![connection, reason, all],
        )?;
        tx.commit()?;
        Ok(paused)
    }
}

/// How every pause for a connection needing re-authorization begins.
pub const REAUTHORIZATION_REASON: &str = "needs re-authorization";

pub(crate) fn split(s: Option<&Sealed>) -> (Option<&[u8]>, Option<&[u8]>) {
    match s {
        Some(s) => (Some(s.nonce.as_slice()), Some(s.sealed.as_slice())),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::test_sql::{exec, text};

    on_both!(
        one_claim_per_generation_and_a_store_moves_the_generation,
        a_refused_refresh_pauses_the_connections_pipelines_and_a_new_authorization_resumes_them,
        removing_the_connection_removes_its_authorization,
    );

    fn setup(db: Database) -> Database {
        exec(
            &db,
            "INSERT INTO plugins (plugin_id, active_version) VALUES ('nexo/xero', '1.0.0');
             INSERT INTO connections (name, plugin_id, environment, config, grants)
                 VALUES ('books', 'nexo/xero', 'sandbox', '{}', '{}');
             INSERT INTO pipelines (name, definition) VALUES ('a',
                 '{\"source\":{\"connection\":\"crm\"},\"destination\":{\"connection\":\"books\"}}');
             INSERT INTO pipelines (name, definition, paused) VALUES ('b',
                 '{\"source\":{\"connection\":\"books\"},\"destination\":{\"connection\":\"crm\"}}', 0);
             INSERT INTO pipelines (name, definition, paused) VALUES ('c',
                 '{\"source\":{\"connection\":\"books\"},\"destination\":{\"connection\":\"crm\"}}', 1);
             INSERT INTO pipelines (name, definition) VALUES ('other',
                 '{\"source\":{\"connection\":\"crm\"},\"destination\":{\"connection\":\"crm\"}}');",
        );
        db
    }

    fn sealed(b: u8) -> Sealed {
        Sealed {
            nonce: vec![b],
            sealed: vec![b, b],
        }
    }

    fn row() -> OAuthRow {
        OAuthRow {
            connection: "books".into(),
            flow: "authorization-code".into(),
            client_id: "client".into(),
            client_secret: Some(sealed(9)),
            access_token: sealed(1),
            refresh_token: Some(sealed(2)),
            issued_at_ms: 0,
            expires_at_ms: 1_000,
            generation: 0,
            status: OAuthStatus::Authorized,
            reason: None,
            tenant: Some("t1".into()),
        }
    }

    fn paused(db: &Database, name: &str) -> (bool, Option<String>) {
        let row = crate::test_sql::texts(
            db,
            &format!(
                "SELECT CAST(paused AS TEXT), paused_reason FROM pipelines WHERE name = '{name}'"
            ),
        )
        .remove(0);
        (row[0].as_deref() == Some("1"), row[1].clone())
    }

    fn one_claim_per_generation_and_a_store_moves_the_generation(db: Database) {
        let db = setup(db);
        assert_eq!(
            db.claim_oauth_refresh("books", 1, 0, 100).unwrap(),
            Claim::NotAuthorized
        );
        db.save_oauth(&row(), None).unwrap();
        let g = db.oauth("books").unwrap().unwrap().generation;
        assert_eq!(g, 1);
        assert_eq!(
            db.claim_oauth_refresh("books", g, 0, 100).unwrap(),
            Claim::Won
        );
        // A second process, before the claim runs out: held.
        assert_eq!(
            db.claim_oauth_refresh("books", g, 50, 150).unwrap(),
            Claim::Held
        );
        // The holder stores the new pair; the refresh token is kept when the
        // system did not rotate it.
        assert!(
            db.store_oauth_refresh("books", g, &sealed(3), None, 10, 2_000)
                .unwrap()
        );
        let now = db.oauth("books").unwrap().unwrap();
        assert_eq!(now.generation, g + 1);
        assert_eq!(now.access_token, sealed(3));
        assert_eq!(now.refresh_token, Some(sealed(2)));
        // The waiter sees the generation moved; a late store of the old
        // generation changes nothing.
        assert_eq!(
            db.claim_oauth_refresh("books", g, 60, 160).unwrap(),
            Claim::Moved
        );
        assert!(
            !db.store_oauth_refresh("books", g, &sealed(4), Some(&sealed(5)), 10, 2_000)
                .unwrap()
        );
        assert_eq!(db.oauth("books").unwrap().unwrap().access_token, sealed(3));
        // A claim whose holder died runs out.
        let g = g + 1;
        assert_eq!(
            db.claim_oauth_refresh("books", g, 0, 100).unwrap(),
            Claim::Won
        );
        assert_eq!(
            db.claim_oauth_refresh("books", g, 101, 201).unwrap(),
            Claim::Won
        );
    }

    fn a_refused_refresh_pauses_the_connections_pipelines_and_a_new_authorization_resumes_them(
        db: Database,
    ) {
        let db = setup(db);
        db.save_oauth(&row(), None).unwrap();
        let paused_now = db
            .oauth_needs_reauthorization("books", "invalid_grant")
            .unwrap();
        assert_eq!(
            paused_now,
            vec!["a".to_string(), "b".to_string()],
            "c was paused already"
        );
        let (p, reason) = paused(&db, "a");
        assert!(p);
        assert_eq!(reason.unwrap(), "needs re-authorization: invalid_grant");
        assert!(!paused(&db, "other").0);
        let r = db.oauth("books").unwrap().unwrap();
        assert_eq!(r.status, OAuthStatus::NeedsReauthorization);
        assert_eq!(
            db.claim_oauth_refresh("books", r.generation, 0, 100)
                .unwrap(),
            Claim::NotAuthorized
        );
        // An admin pauses `b` for their own reason meanwhile: it stays paused.
        exec(
            &db,
            "UPDATE pipelines SET paused_reason = 'maintenance' WHERE name = 'b'",
        );
        let resumed = db
            .save_oauth(&row(), Some("{\"tenant_id\":\"t1\"}"))
            .unwrap();
        assert_eq!(resumed, vec!["a".to_string()]);
        assert!(!paused(&db, "a").0);
        assert!(paused(&db, "b").0);
        assert!(paused(&db, "c").0);
        let r = db.oauth("books").unwrap().unwrap();
        assert_eq!(r.status, OAuthStatus::Authorized);
        assert_eq!(
            r.generation, 2,
            "a new authorization continues the generations"
        );
        let config = text(&db, "SELECT config FROM connections WHERE name = 'books'").unwrap();
        assert_eq!(config, "{\"tenant_id\":\"t1\"}");
    }

    fn removing_the_connection_removes_its_authorization(db: Database) {
        let db = setup(db);
        db.save_oauth(&row(), None).unwrap();
        exec(&db, "DELETE FROM pipelines");
        db.remove_connection("books", None).unwrap();
        assert_eq!(db.oauth("books").unwrap(), None);
    }

    /// Eight hosts' threads claim the same refresh at once on PostgreSQL:
    /// exactly one wins, the others see it held.
    #[test]
    fn hosts_claiming_one_refresh_at_once_on_postgres_leave_one_winner() {
        let url = crate::postgres::testing::database().unwrap();
        let db = setup(Database::migrate_postgres(&url).unwrap().0);
        db.save_oauth(&row(), None).unwrap();
        for round in 0..5 {
            let generation = db.oauth("books").unwrap().unwrap().generation;
            let barrier = std::sync::Barrier::new(8);
            let claims: Vec<Claim> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        // Each its own pool, as separate hosts have.
                        let host = Database::connect(&url).unwrap();
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            host.claim_oauth_refresh("books", generation, 1_000, 2_000)
                                .unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let won = claims.iter().filter(|c| **c == Claim::Won).count();
            assert_eq!(won, 1, "round {round}: {claims:?}");
            assert!(
                claims.iter().all(|c| matches!(c, Claim::Won | Claim::Held)),
                "{claims:?}"
            );
            assert!(
                db.store_oauth_refresh("books", generation, &sealed(3), None, 10, 2_000)
                    .unwrap()
            );
        }
    }
}

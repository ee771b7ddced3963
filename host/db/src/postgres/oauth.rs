//! Connections' OAuth 2.0 authorizations on PostgreSQL: the statements of
//! [`crate::oauth`]. With several hosts on one database the refresh claim
//! is one conditional UPDATE: the row lock it takes makes a second host's
//! UPDATE wait and then re-check its condition on the claimed row, so
//! exactly one host spends a refresh token.

use super::{Postgres, Row};
use crate::StoreError;
use crate::connections::corrupt;
use crate::oauth::{
    COLUMNS, Claim, OAuthRow, OAuthStatus, REAUTHORIZATION_REASON, Sealed, sealed_pair, split,
};
use crate::postgres::connections::{lock_pipelines, pipelines_using};

fn oauth_row(r: &Row) -> Result<OAuthRow, StoreError> {
    Ok(OAuthRow {
        connection: r.try_get(0)?,
        flow: r.try_get(1)?,
        client_id: r.try_get(2)?,
        client_secret: sealed_pair(r.try_get(3)?, r.try_get(4)?),
        access_token: Sealed {
            nonce: r.try_get(5)?,
            sealed: r.try_get(6)?,
        },
        refresh_token: sealed_pair(r.try_get(7)?, r.try_get(8)?),
        issued_at_ms: r.try_get(9)?,
        expires_at_ms: r.try_get(10)?,
        generation: r.try_get(11)?,
        status: OAuthStatus::parse(r.try_get(12)?)?,
        reason: r.try_get(13)?,
        tenant: r.try_get(14)?,
    })
}

/// [`crate::Database::oauth`].
pub(crate) fn oauth(pg: &Postgres, connection: &str) -> Result<Option<OAuthRow>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!("SELECT {COLUMNS} FROM connection_oauth WHERE connection = $1"),
            &[&connection],
        )
        .await?)
    })?;
    row.as_ref().map(oauth_row).transpose()
}

fn paused_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("paused pipelines: {e}")))
}

/// [`crate::Database::save_oauth`]: the generation continues in the
/// upsert itself, so two authorizations at once still count up.
pub(crate) fn save_oauth(
    pg: &Postgres,
    row: &OAuthRow,
    config: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let (client_secret_nonce, client_secret) = split(row.client_secret.as_ref());
    let (refresh_nonce, refresh_token) = split(row.refresh_token.as_ref());
    pg.transaction(async |tx| {
        // Pipelines first, then the connection's rows: the order
        // remove_connection takes them in, so the two never deadlock.
        lock_pipelines(tx).await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM connections WHERE name = $1 FOR SHARE",
                &[&row.connection],
            )
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::Corrupt(format!(
                "connection `{}` was removed while it was being authorized",
                row.connection
            )));
        }
        let previous: Option<Option<String>> = tx
            .query_opt(
                "SELECT paused_pipelines FROM connection_oauth WHERE connection = $1 FOR UPDATE",
                &[&row.connection],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        tx.execute(
            "INSERT INTO connection_oauth (connection, flow, client_id, client_secret_nonce,
                 client_secret, access_nonce, access_token, refresh_nonce, refresh_token,
                 issued_at_ms, expires_at_ms, generation, status, reason, tenant,
                 refreshing_until_ms, paused_pipelines, authorized_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, 'authorized', NULL, $12,
                 NULL, NULL, nexo_now_s())
             ON CONFLICT (connection) DO UPDATE SET flow = excluded.flow,
                 client_id = excluded.client_id, client_secret_nonce = excluded.client_secret_nonce,
                 client_secret = excluded.client_secret, access_nonce = excluded.access_nonce,
                 access_token = excluded.access_token, refresh_nonce = excluded.refresh_nonce,
                 refresh_token = excluded.refresh_token, issued_at_ms = excluded.issued_at_ms,
                 expires_at_ms = excluded.expires_at_ms,
                 generation = connection_oauth.generation + 1,
                 status = 'authorized', reason = NULL, tenant = excluded.tenant,
                 refreshing_until_ms = NULL, paused_pipelines = NULL,
                 authorized_at = excluded.authorized_at",
            &[
                &row.connection,
                &row.flow,
                &row.client_id,
                &client_secret_nonce,
                &client_secret,
                &row.access_token.nonce,
                &row.access_token.sealed,
                &refresh_nonce,
                &refresh_token,
                &row.issued_at_ms,
                &row.expires_at_ms,
                &row.tenant,
            ],
        )
        .await?;
        if let Some(config) = config {
            tx.execute(
                "UPDATE connections SET config = $2 WHERE name = $1",
                &[&row.connection, &config],
            )
            .await?;
        }
        let mut resumed = Vec::new();
        if let Some(Some(paused)) = previous {
            let pattern = format!("{REAUTHORIZATION_REASON}%");
            for pipeline in paused_list(&paused)? {
                // ILIKE: SQLite's LIKE ignores ASCII case too.
                let n = tx
                    .execute(
                        "UPDATE pipelines SET paused = 0, paused_reason = NULL
                          WHERE name = $1 AND paused = 1 AND paused_reason ILIKE $2",
                        &[&pipeline, &pattern],
                    )
                    .await?;
                if n > 0 {
                    resumed.push(pipeline);
                }
            }
        }
        Ok(resumed)
    })
}

/// [`crate::Database::claim_oauth_refresh`]: one statement. The UPDATE
/// wins the claim or not (a host that waited on the row re-checks the
/// condition against the claim just committed); the row as read beside it
/// only says why not.
pub(crate) fn claim_oauth_refresh(
    pg: &Postgres,
    connection: &str,
    generation: i64,
    now_ms: i64,
    until_ms: i64,
) -> Result<Claim, StoreError> {
    let row = pg.with(async |c| {
        let st = c
            .prepare_cached(
                "WITH won AS (
                     UPDATE connection_oauth SET refreshing_until_ms = $4
                      WHERE connection = $1 AND generation = $2 AND status = 'authorized'
                        AND (refreshing_until_ms IS NULL OR refreshing_until_ms <= $3)
                     RETURNING 1
                 )
                 SELECT (SELECT COUNT(*) FROM won), o.generation, o.status
                   FROM (SELECT 1) one
                   LEFT JOIN connection_oauth o ON o.connection = $1",
            )
            .await?;
        Ok(
            c.query_one(&st, &[&connection, &generation, &now_ms, &until_ms])
                .await?,
        )
    })?;
    let won: i64 = row.try_get(0)?;
    let found: Option<i64> = row.try_get(1)?;
    let status: Option<&str> = row.try_get(2)?;
    Ok(match (found, status) {
        _ if won == 1 => Claim::Won,
        (Some(_), Some(status)) if OAuthStatus::parse(status)? != OAuthStatus::Authorized => {
            Claim::NotAuthorized
        }
        (Some(g), Some(_)) if g != generation => Claim::Moved,
        (Some(_), Some(_)) => Claim::Held,
        _ => Claim::NotAuthorized,
    })
}

/// [`crate::Database::store_oauth_refresh`].
pub(crate) fn store_oauth_refresh(
    pg: &Postgres,
    connection: &str,
    generation: i64,
    access_token: &Sealed,
    refresh_token: Option<&Sealed>,
    issued_at_ms: i64,
    expires_at_ms: i64,
) -> Result<bool, StoreError> {
    let (refresh_nonce, refresh) = split(refresh_token);
    let n = pg.with(async |c| {
        Ok(c.execute(
            "UPDATE connection_oauth SET access_nonce = $3, access_token = $4,
                 refresh_nonce = COALESCE($5, refresh_nonce), refresh_token = COALESCE($6, refresh_token),
                 issued_at_ms = $7, expires_at_ms = $8, generation = generation + 1,
                 refreshing_until_ms = NULL, refreshed_at = nexo_now_s()
              WHERE connection = $1 AND generation = $2 AND status = 'authorized'",
            &[
                &connection,
                &generation,
                &access_token.nonce,
                &access_token.sealed,
                &refresh_nonce,
                &refresh,
                &issued_at_ms,
                &expires_at_ms,
            ],
        )
        .await?)
    })?;
    Ok(n == 1)
}

/// [`crate::Database::release_oauth_refresh`].
pub(crate) fn release_oauth_refresh(pg: &Postgres, connection: &str) -> Result<(), StoreError> {
    pg.with(async |c| {
        c.execute(
            "UPDATE connection_oauth SET refreshing_until_ms = NULL WHERE connection = $1",
            &[&connection],
        )
        .await?;
        Ok(())
    })
}

/// [`crate::Database::oauth_needs_reauthorization`].
pub(crate) fn oauth_needs_reauthorization(
    pg: &Postgres,
    connection: &str,
    reason: &str,
) -> Result<Vec<String>, StoreError> {
    let pause = format!("{REAUTHORIZATION_REASON}: {reason}");
    pg.transaction(async |tx| {
        lock_pipelines(tx).await?;
        let mut paused = Vec::new();
        for pipeline in pipelines_using(tx, connection).await? {
            let n = tx
                .execute(
                    "UPDATE pipelines SET paused = 1, paused_reason = $2 WHERE name = $1 AND paused = 0",
                    &[&pipeline, &pause],
                )
                .await?;
            if n > 0 {
                paused.push(pipeline);
            }
        }
        let previous: Option<Option<String>> = tx
            .query_opt(
                "SELECT paused_pipelines FROM connection_oauth WHERE connection = $1 FOR UPDATE",
                &[&connection],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let mut all = match previous.flatten() {
            Some(p) => paused_list(&p)?,
            None => Vec::new(),
        };
        for p in &paused {
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        let all = serde_json::to_string(&all).map_err(corrupt)?;
        tx.execute(
            "UPDATE connection_oauth SET status = 'needs-reauthorization', reason = $2,
                 refreshing_until_ms = NULL, paused_pipelines = $3
              WHERE connection = $1",
            &[&connection, &reason, &all],
        )
        .await?;
        Ok(paused)
    })
}

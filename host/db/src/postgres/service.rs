//! The daemon's rows on PostgreSQL (API tokens, webhook secrets, health,
//! the error summary): the statements of [`crate::service`].

use super::{Postgres, Row};
use crate::StoreError;
use crate::service::{ErrorDay, Health, Role, SealedWebhook, TokenIdentity, TokenRow, stored_role};

/// [`crate::Database::insert_token`], given the token's digest.
pub(crate) fn insert_token(
    pg: &Postgres,
    name: &str,
    sha256: &str,
    role: Role,
) -> Result<bool, StoreError> {
    let n = pg.with(async |c| {
        Ok(c.execute(
            "INSERT INTO api_tokens (name, sha256, role) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &sha256, &role.as_str()],
        )
        .await?)
    })?;
    Ok(n == 1)
}

/// [`crate::Database::check_token`], given the token's digest: the lookup
/// and the note of its use are one statement.
pub(crate) fn check_token(
    pg: &Postgres,
    sha256: &str,
) -> Result<Option<TokenIdentity>, StoreError> {
    let row = pg.with(async |c| {
        let st = c
            .prepare_cached(
                "UPDATE api_tokens SET last_used_at = nexo_now_s() WHERE sha256 = $1
                 RETURNING name, role",
            )
            .await?;
        Ok(c.query_opt(&st, &[&sha256]).await?)
    })?;
    let Some(row) = row else {
        return Ok(None);
    };
    let role: String = row.try_get(1)?;
    Ok(Some(TokenIdentity {
        name: row.try_get(0)?,
        role: stored_role(&role)?,
    }))
}

/// [`crate::Database::tokens`].
pub(crate) fn tokens(pg: &Postgres) -> Result<Vec<TokenRow>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT name, role, created_at, last_used_at FROM api_tokens
             ORDER BY name COLLATE \"C\"",
            &[],
        )
        .await?)
    })?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(1)?;
            Ok(TokenRow {
                name: r.try_get(0)?,
                role: stored_role(&role)?,
                created_at: r.try_get(2)?,
                last_used_at: r.try_get(3)?,
            })
        })
        .collect()
}

/// [`crate::Database::revoke_token`].
pub(crate) fn revoke_token(pg: &Postgres, name: &str) -> Result<bool, StoreError> {
    let n = pg.with(async |c| {
        Ok(
            c.execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
                .await?,
        )
    })?;
    Ok(n == 1)
}

/// [`crate::Database::set_webhook_secret`].
pub(crate) fn set_webhook_secret(
    pg: &Postgres,
    pipeline: &str,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<(), StoreError> {
    pg.with(async |c| {
        c.execute(
            "INSERT INTO webhook_secrets (pipeline, nonce, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (pipeline) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed",
            &[&pipeline, &nonce, &sealed],
        )
        .await?;
        Ok(())
    })
}

/// [`crate::Database::webhook_secret`].
pub(crate) fn webhook_secret(
    pg: &Postgres,
    pipeline: &str,
) -> Result<Option<SealedWebhook>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            "SELECT nonce, sealed FROM webhook_secrets WHERE pipeline = $1",
            &[&pipeline],
        )
        .await?)
    })?;
    row.map(|r| {
        Ok(SealedWebhook {
            nonce: r.try_get(0)?,
            sealed: r.try_get(1)?,
        })
    })
    .transpose()
}

/// [`crate::Database::error_days`]. SQLite takes the last error's message
/// from the row holding `MAX`; here a window picks that row.
pub(crate) fn error_days(pg: &Postgres, days: u32) -> Result<Vec<ErrorDay>, StoreError> {
    // Past any stored time, within PostgreSQL's range of dates.
    let days = days.min(1_000_000) as i32;
    let rows = pg.with(async |c| {
        Ok(c.query(
            "WITH since AS (
                 SELECT to_char((now() AT TIME ZONE 'UTC') - make_interval(days => $1), 'YYYY-MM-DD') AS d
             )
             SELECT pipeline, class, day, n, last_at, error FROM (
                 SELECT pipeline, class, substr(created_at, 1, 10) AS day,
                        COUNT(*) OVER g AS n, MAX(created_at) OVER g AS last_at, error,
                        ROW_NUMBER() OVER (PARTITION BY pipeline, class, substr(created_at, 1, 10)
                                           ORDER BY created_at COLLATE \"C\" DESC, id DESC) AS last
                   FROM dead_letters WHERE created_at >= (SELECT d FROM since)
                 WINDOW g AS (PARTITION BY pipeline, class, substr(created_at, 1, 10))
                 UNION ALL
                 SELECT pipeline, 'run failed', substr(started_at, 1, 10),
                        COUNT(*) OVER g, MAX(started_at) OVER g, COALESCE(error, ''),
                        ROW_NUMBER() OVER (PARTITION BY pipeline, substr(started_at, 1, 10)
                                           ORDER BY started_at COLLATE \"C\" DESC, run_id DESC)
                   FROM runs WHERE status = 'failed' AND started_at >= (SELECT d FROM since)
                 WINDOW g AS (PARTITION BY pipeline, substr(started_at, 1, 10))
             ) e WHERE last = 1
             ORDER BY day COLLATE \"C\", pipeline COLLATE \"C\", class COLLATE \"C\"",
            &[&days],
        )
        .await?)
    })?;
    rows.iter()
        .map(|r: &Row| {
            Ok(ErrorDay {
                pipeline: r.try_get(0)?,
                class: r.try_get(1)?,
                day: r.try_get(2)?,
                count: r.try_get::<_, i64>(3)? as u64,
                last_at: r.try_get(4)?,
                last_error: r.try_get(5)?,
            })
        })
        .collect()
}

/// [`crate::Database::set_health`].
pub(crate) fn set_health(
    pg: &Postgres,
    connection: &str,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let ok = i64::from(error.is_none());
    pg.with(async |c| {
        c.execute(
            "INSERT INTO connection_health (connection, ok, error) VALUES ($1, $2, $3)
             ON CONFLICT (connection) DO UPDATE SET ok = excluded.ok, error = excluded.error,
                 checked_at = nexo_now_s()",
            &[&connection, &ok, &error],
        )
        .await?;
        Ok(())
    })
}

/// [`crate::Database::health`].
pub(crate) fn health(pg: &Postgres, connection: &str) -> Result<Option<Health>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            "SELECT ok, error, checked_at FROM connection_health WHERE connection = $1",
            &[&connection],
        )
        .await?)
    })?;
    row.map(|r| {
        Ok(Health {
            ok: r.try_get::<_, i64>(0)? != 0,
            error: r.try_get(1)?,
            checked_at: r.try_get(2)?,
        })
    })
    .transpose()
}

//! Connections, their sealed secrets and their removal on PostgreSQL: the
//! statements of [`crate::connections`]. Pipeline definitions are TEXT
//! holding JSON, read with `::jsonb` where SQLite uses `json_extract`.

use super::{GenericClient, Postgres};
use crate::StoreError;
use crate::connections::{
    ConnectionChange, ConnectionRow, Removal, SealedSecret, connection_row, corrupt,
};

/// Pipelines whose source or destination is `connection`, sorted.
pub(crate) async fn pipelines_using(
    c: &impl GenericClient,
    connection: &str,
) -> Result<Vec<String>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT name FROM pipelines
              WHERE definition::jsonb #>> '{source,connection}' = $1
                 OR definition::jsonb #>> '{destination,connection}' = $1
              ORDER BY name COLLATE \"C\"",
        )
        .await?;
    let rows = c.query(&st, &[&connection]).await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Stop other writers of `pipelines` until this transaction ends, so that a
/// pipeline saved meanwhile is seen by the statements after it (SQLite's
/// `BEGIN IMMEDIATE` does as much). Self-exclusive, so two of these queue
/// instead of deadlocking.
pub(crate) async fn lock_pipelines(c: &impl GenericClient) -> Result<(), StoreError> {
    c.batch_execute("LOCK TABLE pipelines IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    Ok(())
}

/// [`crate::Database::insert_connection`].
pub(crate) fn insert_connection(
    pg: &Postgres,
    row: &ConnectionRow,
    secrets: &[SealedSecret],
) -> Result<(), StoreError> {
    let grants = serde_json::to_string(&row.grants).map_err(corrupt)?;
    let pinned = row.pinned_version.as_ref().map(|v| v.to_string());
    pg.transaction(async |tx| {
        tx.execute(
            "INSERT INTO connections (name, plugin_id, pinned_version, environment, config, grants)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &row.name,
                &row.plugin_id,
                &pinned,
                &row.environment.as_str(),
                &row.config,
                &grants,
            ],
        )
        .await?;
        for s in secrets {
            tx.execute(
                "INSERT INTO connection_secrets (connection, name, nonce, sealed) VALUES ($1, $2, $3, $4)",
                &[&row.name, &s.name, &s.nonce, &s.sealed],
            )
            .await?;
        }
        Ok(())
    })
}

/// [`crate::Database::connection`].
pub(crate) fn connection(pg: &Postgres, name: &str) -> Result<Option<ConnectionRow>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            "SELECT name, plugin_id, pinned_version, environment, config, grants
               FROM connections WHERE name = $1",
            &[&name],
        )
        .await?)
    })?;
    row.map(|r| {
        connection_row((
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
        ))
    })
    .transpose()
}

/// [`crate::Database::connection_names`].
pub(crate) fn connection_names(
    pg: &Postgres,
    plugin_id: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT name FROM connections WHERE $1::text IS NULL OR plugin_id = $1
              ORDER BY name COLLATE \"C\"",
            &[&plugin_id],
        )
        .await?)
    })?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// [`crate::Database::connection_secrets`].
pub(crate) fn connection_secrets(
    pg: &Postgres,
    name: &str,
) -> Result<Vec<SealedSecret>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT name, nonce, sealed FROM connection_secrets WHERE connection = $1
              ORDER BY name COLLATE \"C\"",
            &[&name],
        )
        .await?)
    })?;
    rows.iter()
        .map(|r| {
            Ok(SealedSecret {
                name: r.try_get(0)?,
                nonce: r.try_get(1)?,
                sealed: r.try_get(2)?,
            })
        })
        .collect()
}

/// [`crate::Database::delete_connection`].
pub(crate) fn delete_connection(pg: &Postgres, name: &str) -> Result<bool, StoreError> {
    let n = pg.with(async |c| {
        Ok(
            c.execute("DELETE FROM connections WHERE name = $1", &[&name])
                .await?,
        )
    })?;
    Ok(n == 1)
}

/// [`crate::Database::delete_plugin`].
pub(crate) fn delete_plugin(pg: &Postgres, plugin_id: &str) -> Result<(), StoreError> {
    pg.transaction(async |tx| {
        tx.execute(
            "DELETE FROM plugin_versions WHERE plugin_id = $1",
            &[&plugin_id],
        )
        .await?;
        tx.execute("DELETE FROM plugins WHERE plugin_id = $1", &[&plugin_id])
            .await?;
        Ok(())
    })
}

/// [`crate::Database::pipelines_using_connection`].
pub(crate) fn pipelines_using_connection(
    pg: &Postgres,
    connection: &str,
) -> Result<Vec<String>, StoreError> {
    pg.with(async |c| pipelines_using(&*c, connection).await)
}

/// [`crate::Database::pipelines_using_mapper`].
pub(crate) fn pipelines_using_mapper(pg: &Postgres, id: &str) -> Result<Vec<String>, StoreError> {
    pg.with(async |c| {
        let st = c
            .prepare_cached(
                "SELECT name FROM pipelines
                  WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(
                                    CASE WHEN jsonb_typeof(definition::jsonb -> 'mappers') = 'array'
                                         THEN definition::jsonb -> 'mappers' ELSE '[]'::jsonb END) m
                                 WHERE m #>> '{plugin}' = $1)
                  ORDER BY name COLLATE \"C\"",
            )
            .await?;
        let rows = c.query(&st, &[&id]).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    })
}

/// [`crate::Database::update_connection`].
pub(crate) fn update_connection(
    pg: &Postgres,
    name: &str,
    change: &ConnectionChange,
) -> Result<bool, StoreError> {
    let grants = change
        .grants
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(corrupt)?;
    pg.transaction(async |tx| {
        let found = tx
            .execute(
                "UPDATE connections SET config = COALESCE($2, config), grants = COALESCE($3, grants)
                  WHERE name = $1",
                &[&name, &change.config, &grants],
            )
            .await?;
        if found == 0 {
            return Ok(false);
        }
        for secret in &change.remove_secrets {
            tx.execute(
                "DELETE FROM connection_secrets WHERE connection = $1 AND name = $2",
                &[&name, secret],
            )
            .await?;
        }
        for s in &change.set_secrets {
            tx.execute(
                "INSERT INTO connection_secrets (connection, name, nonce, sealed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (connection, name) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed",
                &[&name, &s.name, &s.nonce, &s.sealed],
            )
            .await?;
        }
        Ok(true)
    })
}

/// [`crate::Database::remove_connection`]: the check and the removal are
/// one transaction, with other writers of `pipelines` held off meanwhile.
pub(crate) fn remove_connection(
    pg: &Postgres,
    name: &str,
    pause_reason: Option<&str>,
) -> Result<Removal, StoreError> {
    pg.transaction(async |tx| {
        lock_pipelines(tx).await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM connections WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(Removal::Unknown);
        }
        let users = pipelines_using(tx, name).await?;
        if !users.is_empty() {
            let Some(reason) = pause_reason else {
                return Ok(Removal::InUse(users));
            };
            for pipeline in &users {
                tx.execute(
                    "UPDATE pipelines SET paused = 1, paused_reason = $2 WHERE name = $1",
                    &[pipeline, &reason],
                )
                .await?;
            }
        }
        tx.execute(
            "DELETE FROM connection_secrets WHERE connection = $1",
            &[&name],
        )
        .await?;
        tx.execute(
            "DELETE FROM connection_oauth WHERE connection = $1",
            &[&name],
        )
        .await?;
        tx.execute("DELETE FROM connections WHERE name = $1", &[&name])
            .await?;
        Ok(Removal::Removed { paused: users })
    })
}

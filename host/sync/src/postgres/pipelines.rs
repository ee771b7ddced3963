//! Pipeline definitions with their saved cursors and pause state, and the
//! engine's settings, on PostgreSQL.

use tokio_postgres::Row;

use super::corrupt;
use crate::pipeline::Pipeline;
use crate::store::PipelineRow;
use nexo_db::StoreError;
use nexo_db::postgres::Postgres;

/// Save a definition; replacing one keeps its cursors unless its source
/// (or destination) changed. The row is locked while the old definition
/// is compared, so two hosts saving at once apply one after the other.
pub(crate) fn save_pipeline(pg: &Postgres, pipeline: &Pipeline) -> Result<(), StoreError> {
    let definition = serde_json::to_string(pipeline).map_err(corrupt)?;
    pg.transaction(async |tx| {
        let inserted = tx
            .execute(
                "INSERT INTO pipelines (name, definition) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&pipeline.name, &definition],
            )
            .await?;
        if inserted == 1 {
            return Ok(());
        }
        let Some(old) = tx
            .query_opt(
                "SELECT definition FROM pipelines WHERE name = $1 FOR UPDATE",
                &[&pipeline.name],
            )
            .await?
        else {
            // Deleted between the two statements: saved anew.
            tx.execute(
                "INSERT INTO pipelines (name, definition) VALUES ($1, $2)",
                &[&pipeline.name, &definition],
            )
            .await?;
            return Ok(());
        };
        let old: Pipeline = serde_json::from_str(&old.try_get::<_, String>(0)?).map_err(corrupt)?;
        // A cursor belongs to one source stream; another source starts
        // from scratch.
        let reset = old.source != pipeline.source;
        let reset_destination = old.destination != pipeline.destination;
        tx.execute(
            "UPDATE pipelines SET definition = $2,
                 state = CASE WHEN $3 THEN NULL ELSE state END,
                 destination_state = CASE WHEN $4 THEN NULL ELSE destination_state END,
                 updated_at = nexo_now_ms()
             WHERE name = $1",
            &[&pipeline.name, &definition, &reset, &reset_destination],
        )
        .await?;
        Ok(())
    })
}

const PIPELINE_COLUMNS: &str = "definition, paused, state, destination_state, paused_reason";

fn pipeline_row(r: &Row) -> Result<PipelineRow, StoreError> {
    let definition: String = r.try_get(0)?;
    Ok(PipelineRow {
        pipeline: serde_json::from_str(&definition).map_err(corrupt)?,
        paused: r.try_get::<_, i64>(1)? != 0,
        state: r.try_get(2)?,
        destination_state: r.try_get(3)?,
        paused_reason: r.try_get(4)?,
    })
}

pub(crate) fn pipeline(pg: &Postgres, name: &str) -> Result<Option<PipelineRow>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE name = $1"),
            &[&name],
        )
        .await?)
    })?;
    row.as_ref().map(pipeline_row).transpose()
}

pub(crate) fn pipelines(pg: &Postgres) -> Result<Vec<PipelineRow>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!("SELECT {PIPELINE_COLUMNS} FROM pipelines ORDER BY name COLLATE \"C\""),
            &[],
        )
        .await?)
    })?;
    rows.iter().map(pipeline_row).collect()
}

pub(crate) fn delete_pipeline(pg: &Postgres, name: &str) -> Result<bool, StoreError> {
    pg.with(async |c| {
        Ok(c.execute("DELETE FROM pipelines WHERE name = $1", &[&name])
            .await?
            > 0)
    })
}

pub(crate) fn set_paused(
    pg: &Postgres,
    name: &str,
    paused: bool,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let reason = if paused { reason } else { None };
    let paused = i64::from(paused);
    pg.with(async |c| {
        Ok(c.execute(
            "UPDATE pipelines SET paused = $2, paused_reason = $3 WHERE name = $1",
            &[&name, &paused, &reason],
        )
        .await?
            > 0)
    })
}

pub(crate) fn reset_state(pg: &Postgres, name: &str) -> Result<(), StoreError> {
    pg.with(async |c| {
        c.execute(
            "UPDATE pipelines SET state = NULL, destination_state = NULL WHERE name = $1",
            &[&name],
        )
        .await?;
        Ok(())
    })
}

pub(crate) fn setting(pg: &Postgres, key: &str) -> Result<Option<String>, StoreError> {
    pg.with(async |c| {
        let row = c
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    })
}

pub(crate) fn set_setting(pg: &Postgres, key: &str, value: &str) -> Result<(), StoreError> {
    pg.with(async |c| {
        c.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
        Ok(())
    })
}

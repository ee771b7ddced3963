//! Pipeline definitions with their saved cursors and pause state.

use rusqlite::{OptionalExtension, params};

use super::corrupt;
use crate::pipeline::Pipeline;
use crate::store::{PipelineRow, PipelineStore, SettingStore};
use nexo_db::{Database, StoreError};

impl PipelineStore for Database {
    fn save_pipeline(&self, pipeline: &Pipeline) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::save_pipeline(pg, pipeline);
        }
        let definition = serde_json::to_string(pipeline).map_err(corrupt)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let old: Option<String> = tx
            .query_row(
                "SELECT definition FROM pipelines WHERE name = ?1",
                [&pipeline.name],
                |r| r.get(0),
            )
            .optional()?;
        match old {
            None => {
                tx.execute(
                    "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
                    params![pipeline.name, definition],
                )?;
            }
            Some(old) => {
                let old: Pipeline = serde_json::from_str(&old).map_err(corrupt)?;
                // A cursor belongs to one source stream; another source
                // starts from scratch.
                let reset = old.source != pipeline.source;
                let reset_destination = old.destination != pipeline.destination;
                tx.execute(
                    "UPDATE pipelines SET definition = ?2,
                         state = CASE WHEN ?3 THEN NULL ELSE state END,
                         destination_state = CASE WHEN ?4 THEN NULL ELSE destination_state END,
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                     WHERE name = ?1",
                    params![pipeline.name, definition, reset, reset_destination],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn pipeline(&self, name: &str) -> Result<Option<PipelineRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::pipeline(pg, name);
        }
        let conn = self.lock()?;
        let row = conn
            .query_row(
                "SELECT definition, paused, state, destination_state, paused_reason
                 FROM pipelines WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(d, paused, state, destination_state, paused_reason)| {
            Ok(PipelineRow {
                pipeline: serde_json::from_str(&d).map_err(corrupt)?,
                paused,
                paused_reason,
                state,
                destination_state,
            })
        })
        .transpose()
    }

    fn pipelines(&self) -> Result<Vec<PipelineRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::pipelines(pg);
        }
        let names: Vec<String> = {
            let conn = self.lock()?;
            let mut st = conn.prepare("SELECT name FROM pipelines ORDER BY name")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        names
            .iter()
            .filter_map(|n| self.pipeline(n).transpose())
            .collect()
    }

    fn delete_pipeline(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::delete_pipeline(pg, name);
        }
        let conn = self.lock()?;
        Ok(conn.execute("DELETE FROM pipelines WHERE name = ?1", [name])? > 0)
    }

    fn set_paused(
        &self,
        name: &str,
        paused: bool,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::set_paused(pg, name, paused, reason);
        }
        let conn = self.lock()?;
        let reason = if paused { reason } else { None };
        Ok(conn.execute(
            "UPDATE pipelines SET paused = ?2, paused_reason = ?3 WHERE name = ?1",
            params![name, paused, reason],
        )? > 0)
    }

    fn reset_state(&self, name: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::reset_state(pg, name);
        }
        let conn = self.lock()?;
        conn.execute(
            "UPDATE pipelines SET state = NULL, destination_state = NULL WHERE name = ?1",
            [name],
        )?;
        Ok(())
    }
}

impl SettingStore for Database {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::setting(pg, key);
        }
        let conn = self.lock()?;
        Ok(conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::pipelines::set_setting(pg, key, value);
        }
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

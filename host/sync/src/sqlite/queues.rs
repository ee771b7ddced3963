//! The dead-letter and conflict queues (their rows are written by the page
//! commit; here they are read and settled).

use rusqlite::{OptionalExtension, params};

use super::{CONFLICT_COLUMNS, DLQ_COLUMNS, conflict_row, dead_letter_row};
use crate::store::{Conflict, ConflictStatus, DeadLetter, DeadLetterStatus, QueueStore};
use nexo_db::{Database, StoreError};

impl QueueStore for Database {
    fn dead_letters(
        &self,
        pipeline: Option<&str>,
        status: Option<DeadLetterStatus>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::queues::dead_letters(pg, pipeline, status);
        }
        let status = status.map(DeadLetterStatus::as_str);
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {DLQ_COLUMNS} FROM dead_letters
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY id"
        ))?;
        Ok(st
            .query_map(params![pipeline, status], dead_letter_row)?
            .collect::<Result<_, _>>()?)
    }

    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::queues::dead_letter(pg, id);
        }
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE id = ?1"),
                [id],
                dead_letter_row,
            )
            .optional()?)
    }

    fn discard_dead_letter(&self, id: i64) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::queues::discard_dead_letter(pg, id);
        }
        let conn = self.lock()?;
        Ok(conn.execute(
            "UPDATE dead_letters SET status = 'discarded' WHERE id = ?1 AND status = 'open'",
            [id],
        )? > 0)
    }

    fn conflicts(
        &self,
        pipeline: Option<&str>,
        status: Option<ConflictStatus>,
    ) -> Result<Vec<Conflict>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::queues::conflicts(pg, pipeline, status);
        }
        let status = status.map(ConflictStatus::as_str);
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {CONFLICT_COLUMNS} FROM conflicts
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY id"
        ))?;
        Ok(st
            .query_map(params![pipeline, status], conflict_row)?
            .collect::<Result<_, _>>()?)
    }

    fn conflict(&self, id: i64) -> Result<Option<Conflict>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::queues::conflict(pg, id);
        }
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!("SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE id = ?1"),
                [id],
                conflict_row,
            )
            .optional()?)
    }

    fn has_open_conflict(&self, entity_id: i64, pipeline: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::queues::has_open_conflict(pg, entity_id, pipeline);
        }
        let conn = self.lock()?;
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM conflicts
                             WHERE entity_id = ?1 AND pipeline = ?2 AND status = 'open')",
            params![entity_id, pipeline],
            |r| r.get(0),
        )?)
    }
}

//! The dead-letter and conflict queues on PostgreSQL (their rows are
//! written by the page commit; here they are read and settled).

use super::{CONFLICT_COLUMNS, DLQ_COLUMNS, conflict_row, dead_letter_row};
use crate::store::{Conflict, ConflictStatus, DeadLetter, DeadLetterStatus};
use nexo_db::StoreError;
use nexo_db::postgres::Postgres;

pub(crate) fn dead_letters(
    pg: &Postgres,
    pipeline: Option<&str>,
    status: Option<DeadLetterStatus>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let status = status.map(DeadLetterStatus::as_str);
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT {DLQ_COLUMNS} FROM dead_letters
                 WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR status = $2)
                 ORDER BY id"
            ),
            &[&pipeline, &status],
        )
        .await?)
    })?;
    rows.iter().map(dead_letter_row).collect()
}

pub(crate) fn dead_letter(pg: &Postgres, id: i64) -> Result<Option<DeadLetter>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE id = $1"),
            &[&id],
        )
        .await?)
    })?;
    row.as_ref().map(dead_letter_row).transpose()
}

pub(crate) fn discard_dead_letter(pg: &Postgres, id: i64) -> Result<bool, StoreError> {
    pg.with(async |c| {
        Ok(c.execute(
            "UPDATE dead_letters SET status = 'discarded' WHERE id = $1 AND status = 'open'",
            &[&id],
        )
        .await?
            > 0)
    })
}

pub(crate) fn conflicts(
    pg: &Postgres,
    pipeline: Option<&str>,
    status: Option<ConflictStatus>,
) -> Result<Vec<Conflict>, StoreError> {
    let status = status.map(ConflictStatus::as_str);
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT {CONFLICT_COLUMNS} FROM conflicts
                 WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR status = $2)
                 ORDER BY id"
            ),
            &[&pipeline, &status],
        )
        .await?)
    })?;
    rows.iter().map(conflict_row).collect()
}

pub(crate) fn conflict(pg: &Postgres, id: i64) -> Result<Option<Conflict>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!("SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE id = $1"),
            &[&id],
        )
        .await?)
    })?;
    row.as_ref().map(conflict_row).transpose()
}

pub(crate) fn has_open_conflict(
    pg: &Postgres,
    entity_id: i64,
    pipeline: &str,
) -> Result<bool, StoreError> {
    pg.with(async |c| {
        let row = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM conflicts
                                 WHERE entity_id = $1 AND pipeline = $2 AND status = 'open')",
                &[&entity_id, &pipeline],
            )
            .await?;
        Ok(row.try_get(0)?)
    })
}

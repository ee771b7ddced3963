//! The PostgreSQL implementation of the sync engine's store traits, for
//! several hosts sharing one database. Each `impl … for Database` method of
//! `crate::sqlite` forwards here first when the database is PostgreSQL, so
//! the two backends answer the same calls with the same rows. One file per
//! concern, as on SQLite: pipelines (and settings), the identity map
//! (links), runs, the page commit (and its identity-map writes), the
//! queues; shared here are the column lists and row readers more than one
//! of them uses.
//!
//! What SQLite got from its single writer, these statements get from
//! PostgreSQL itself: atomic `UPDATE … WHERE`, `ON CONFLICT`, and row locks
//! (`FOR UPDATE`) where a method reads before it writes.

use tokio_postgres::Row;

use crate::pipeline::Endpoint;
use crate::store::{
    Conflict, ConflictStatus, Counts, DeadLetter, DeadLetterKind, DeadLetterStatus, Link,
    NewConflict, NewDeadLetter, RunRow, RunStatus,
};
use nexo_db::StoreError;

pub(crate) mod commit;
mod link_writes;
pub(crate) mod links;
pub(crate) mod pipelines;
pub(crate) mod queues;
pub(crate) mod reviews;
pub(crate) mod runs;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A link's columns, `l` being `entity_links`, with its sync state with
/// the peer whose connection and stream are the query's parameters $1 and
/// $2 (`NULL`: none): the row's own when that peer holds it, else the
/// peer's row in `link_sync` (looked up only then). As SQLite's
/// `LINK_COLUMNS`.
const LINK_COLUMNS: &str = "l.entity_id, l.connection, l.stream, l.record_id, l.known,
    CASE WHEN l.synced_connection = $1::text AND l.synced_stream = $2::text THEN l.synced_hash
         ELSE (SELECT s.synced_hash FROM link_sync s
                WHERE s.connection = l.connection AND s.stream = l.stream
                  AND s.record_id = l.record_id AND s.entity = l.entity
                  AND s.peer_connection = $1::text AND s.peer_stream = $2::text) END AS synced,
    l.version, l.deleted";

/// A link's columns without sync state (no peer named).
const LINK_COLUMNS_ALONE: &str =
    "l.entity_id, l.connection, l.stream, l.record_id, l.known, NULL::text, l.version, l.deleted";

/// The peer's connection and stream as query parameters (`NULL`: none).
fn peer_args(peer: Option<&Endpoint>) -> (Option<&str>, Option<&str>) {
    match peer {
        Some(p) => (Some(p.connection.as_str()), Some(p.stream.as_str())),
        None => (None, None),
    }
}

fn link_row(r: &Row) -> Result<Link, StoreError> {
    Ok(Link {
        entity_id: r.try_get(0)?,
        connection: r.try_get(1)?,
        stream: r.try_get(2)?,
        record_id: r.try_get(3)?,
        known: r.try_get(4)?,
        synced_hash: r.try_get(5)?,
        version: r.try_get(6)?,
        deleted: r.try_get::<_, i64>(7)? != 0,
    })
}

fn link_rows(rows: &[Row]) -> Result<Vec<Link>, StoreError> {
    rows.iter().map(link_row).collect()
}

const RUN_COLUMNS: &str = "run_id, pipeline, status, started_at, finished_at, duration_ms, pages, \
     read, created, updated, unchanged, deleted, failed, quarantined, conflicts, error, superseded, \
     matched, skipped, held";

fn run_row(r: &Row) -> Result<RunRow, StoreError> {
    let n = |i: usize| r.try_get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(RunRow {
        id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        status: parsed(r, 2, RunStatus::parse)?,
        started_at: r.try_get(3)?,
        finished_at: r.try_get(4)?,
        duration_ms: r.try_get(5)?,
        pages: r.try_get(6)?,
        counts: Counts {
            read: n(7)?,
            created: n(8)?,
            updated: n(9)?,
            unchanged: n(10)?,
            deleted: n(11)?,
            failed: n(12)?,
            quarantined: n(13)?,
            conflicts: n(14)?,
            superseded: n(16)?,
            matched: n(17)?,
            skipped: n(18)?,
            held: n(19)?,
        },
        error: r.try_get(15)?,
    })
}

const DLQ_COLUMNS: &str = "id, pipeline, run_id, status, created_at, kind, source_id, record, \
     error, class, field, attempts";

/// Column `i` parsed by `parse`; text it does not know is an error that
/// names it (a database written by a newer Nexo, or edited by hand).
fn parsed<T>(r: &Row, i: usize, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let text: String = r.try_get(i)?;
    parse(&text).ok_or_else(|| corrupt(format!("unknown status `{text}` in column {i}")))
}

fn dead_letter_row(r: &Row) -> Result<DeadLetter, StoreError> {
    let kind: String = r.try_get(5)?;
    let attempts: i64 = r.try_get(11)?;
    Ok(DeadLetter {
        id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        run_id: r.try_get(2)?,
        status: parsed(r, 3, DeadLetterStatus::parse)?,
        created_at: r.try_get(4)?,
        letter: NewDeadLetter {
            kind: DeadLetterKind::parse(&kind).unwrap_or(DeadLetterKind::Failed),
            source_id: r.try_get(6)?,
            record: r.try_get(7)?,
            error: r.try_get(8)?,
            class: r.try_get(9)?,
            field: r.try_get(10)?,
            attempts: u32::try_from(attempts)
                .map_err(|_| corrupt(format!("a dead letter's attempts: {attempts}")))?,
        },
    })
}

const CONFLICT_COLUMNS: &str = "id, pipeline, run_id, status, created_at, entity_id, source_id, \
     destination_id, source_record, destination_payload, fields, resolution";

fn conflict_row(r: &Row) -> Result<Conflict, StoreError> {
    let fields: String = r.try_get(10)?;
    Ok(Conflict {
        id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        run_id: r.try_get(2)?,
        status: parsed(r, 3, ConflictStatus::parse)?,
        created_at: r.try_get(4)?,
        conflict: NewConflict {
            entity_id: r.try_get(5)?,
            source_id: r.try_get(6)?,
            destination_id: r.try_get(7)?,
            source_record: r.try_get(8)?,
            destination_payload: r.try_get(9)?,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            resolution: r.try_get(11)?,
        },
    })
}

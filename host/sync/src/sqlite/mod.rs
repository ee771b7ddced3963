//! The SQLite implementation of the sync engine's store traits, one file
//! per concern: pipelines, the identity map (links), runs, the page commit
//! (one transaction per page), the queues and settings. Each method is one
//! short transaction on the host's `Database`; shared here are the column
//! lists and row readers more than one of them uses. When the `Database`
//! is PostgreSQL, each method's first line hands the call to
//! `crate::postgres`, which answers it with the same rows.

use rusqlite::Row;

use crate::pipeline::Endpoint;
use crate::store::{
    Conflict, ConflictStatus, Counts, DeadLetter, DeadLetterKind, DeadLetterStatus, Link,
    NewConflict, NewDeadLetter, RunRow, RunStatus,
};
use nexo_db::StoreError;

mod commit;
mod links;
mod pipelines;
mod queues;
mod reviews;
mod runs;

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A link's columns, `l` being `entity_links`, with its sync state with
/// the peer whose connection and stream are the query's parameters ?1 and
/// ?2 (`NULL`: none): the row's own when that peer holds it, else the
/// peer's row in `link_sync` (looked up only then).
pub(super) const LINK_COLUMNS: &str = "l.entity_id, l.connection, l.stream, l.record_id, l.known,
    CASE WHEN l.synced_connection = ?1 AND l.synced_stream = ?2 THEN l.synced_hash
         ELSE (SELECT s.synced_hash FROM link_sync s
                WHERE s.connection = l.connection AND s.stream = l.stream
                  AND s.record_id = l.record_id AND s.entity = l.entity
                  AND s.peer_connection = ?1 AND s.peer_stream = ?2) END AS synced,
    l.version, l.deleted";

/// A link's columns without sync state (no peer named).
pub(super) const LINK_COLUMNS_ALONE: &str =
    "l.entity_id, l.connection, l.stream, l.record_id, l.known, NULL, l.version, l.deleted";

/// The peer's connection and stream as query parameters (`NULL`: none).
pub(super) fn peer_args(peer: Option<&Endpoint>) -> [Option<&str>; 2] {
    match peer {
        Some(p) => [Some(p.connection.as_str()), Some(p.stream.as_str())],
        None => [None, None],
    }
}

pub(super) fn link_row(r: &Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        entity_id: r.get(0)?,
        connection: r.get(1)?,
        stream: r.get(2)?,
        record_id: r.get(3)?,
        known: r.get(4)?,
        synced_hash: r.get(5)?,
        version: r.get(6)?,
        deleted: r.get(7)?,
    })
}

pub(super) const RUN_COLUMNS: &str = "run_id, pipeline, status, started_at, finished_at, duration_ms, pages, \
     read, created, updated, unchanged, deleted, failed, quarantined, conflicts, error, superseded, \
     matched, skipped, held";

pub(super) fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(RunRow {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        status: parsed(r, 2, RunStatus::parse)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        duration_ms: r.get(5)?,
        pages: r.get(6)?,
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
        error: r.get(15)?,
    })
}

pub(super) const DLQ_COLUMNS: &str = "id, pipeline, run_id, status, created_at, kind, source_id, record, \
     error, class, field, attempts";

/// Column `i` parsed by `parse`; text it does not know is an error that
/// names it (a database written by a newer Nexo, or edited by hand).
pub(super) fn parsed<T>(
    r: &Row<'_>,
    i: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown status `{text}`").into(),
        )
    })
}

pub(super) fn dead_letter_row(r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let kind: String = r.get(5)?;
    Ok(DeadLetter {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        run_id: r.get(2)?,
        status: parsed(r, 3, DeadLetterStatus::parse)?,
        created_at: r.get(4)?,
        letter: NewDeadLetter {
            kind: DeadLetterKind::parse(&kind).unwrap_or(DeadLetterKind::Failed),
            source_id: r.get(6)?,
            record: r.get(7)?,
            error: r.get(8)?,
            class: r.get(9)?,
            field: r.get(10)?,
            attempts: r.get(11)?,
        },
    })
}

pub(super) const CONFLICT_COLUMNS: &str = "id, pipeline, run_id, status, created_at, entity_id, source_id, \
     destination_id, source_record, destination_payload, fields, resolution";

pub(super) fn conflict_row(r: &Row<'_>) -> rusqlite::Result<Conflict> {
    let fields: String = r.get(10)?;
    Ok(Conflict {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        run_id: r.get(2)?,
        status: parsed(r, 3, ConflictStatus::parse)?,
        created_at: r.get(4)?,
        conflict: NewConflict {
            entity_id: r.get(5)?,
            source_id: r.get(6)?,
            destination_id: r.get(7)?,
            source_record: r.get(8)?,
            destination_payload: r.get(9)?,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            resolution: r.get(11)?,
        },
    })
}

/// `?, ?, …` with `n` placeholders.
pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

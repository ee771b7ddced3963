//! SQLite implementation of the sync engine's storage: pipelines and their
//! cursors, the identity map, runs with per-record outcomes and logs, the
//! dead-letter and conflict queues. A page's effects go in one transaction.

use rusqlite::{OptionalExtension, Row, params, params_from_iter};

use super::{Database, StoreError};
use crate::sandbox::redact;
use crate::sync::pipeline::{Endpoint, Pipeline};
use crate::sync::store::{
    CancelReason, Conflict, ConflictStatus, Counts, DeadLetter, DeadLetterKind, DeadLetterStatus,
    Link, LinkUpdate, NewConflict, NewDeadLetter, PageCommit, PipelineRow, RecordOutcome,
    RecordResult, RunFilter, RunId, RunRow, RunStatus, SyncStore,
};

/// A link update's row as the commit's statements bind it (?1 to ?10).
fn link_params<'a>(
    l: &'a LinkUpdate,
    entity_id: &'a i64,
    run: &'a RunId,
    now: &'a dyn rusqlite::ToSql,
) -> [&'a dyn rusqlite::ToSql; 10] {
    [
        &l.connection,
        &l.stream,
        &l.record_id,
        entity_id,
        &l.known,
        &l.version,
        &l.deleted,
        run,
        now,
        &l.entity,
    ]
}

/// Open dead letters of `pipeline` whose source record this page
/// delivered (created, updated or deleted it) are resolved, in the page's
/// transaction: the record is where it should be now.
fn resolve_dead_letters(
    tx: &rusqlite::Transaction<'_>,
    pipeline: &str,
    results: &[RecordResult],
) -> Result<(), StoreError> {
    // Most pipelines have no open dead letter: one query, then nothing.
    let open: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE pipeline = ?1 AND status = 'open')",
        [pipeline],
        |r| r.get(0),
    )?;
    if !open {
        return Ok(());
    }
    let mut resolve = tx.prepare_cached(
        "UPDATE dead_letters SET status = 'resolved'
          WHERE pipeline = ?1 AND status = 'open' AND source_id = ?2",
    )?;
    for r in results {
        if matches!(
            r.outcome,
            RecordOutcome::Created
                | RecordOutcome::Matched
                | RecordOutcome::Updated
                | RecordOutcome::Deleted
        ) {
            resolve.execute(params![pipeline, r.source_id])?;
        }
    }
    Ok(())
}

/// Ends runs left `running` by a process that died (`WHERE` and the
/// filter's value in ?1 added by the caller, the error in ?2): their end
/// and duration are those of their last progress.
const INTERRUPT_RUNS: &str = "UPDATE runs SET status = 'interrupted', error = ?2,
         finished_at = COALESCE(last_progress_at, started_at),
         duration_ms = CAST((julianday(COALESCE(last_progress_at, started_at)) - julianday(started_at)) * 86400000 AS INTEGER)";

/// Why a run left `running` was ended by the pipeline's next run.
const INTERRUPTED_BY_NEXT: &str = "the process running it stopped before it finished; the next run resumed from the last committed page";

/// Why a run left `running` was ended when found with its pipeline free.
const INTERRUPTED_FOUND: &str = "the process running it stopped before it finished (killed, or the machine went down); the next run resumes from the last committed page";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A link's columns, `l` being `entity_links`, with its sync state with
/// the peer whose connection and stream are the query's parameters ?1 and
/// ?2 (`NULL`: none): the row's own when that peer holds it, else the
/// peer's row in `link_sync` (looked up only then).
const LINK_COLUMNS: &str = "l.entity_id, l.connection, l.stream, l.record_id, l.known,
    CASE WHEN l.synced_connection = ?1 AND l.synced_stream = ?2 THEN l.synced_hash
         ELSE (SELECT s.synced_hash FROM link_sync s
                WHERE s.connection = l.connection AND s.stream = l.stream
                  AND s.record_id = l.record_id AND s.entity = l.entity
                  AND s.peer_connection = ?1 AND s.peer_stream = ?2) END AS synced,
    l.version, l.deleted";

/// A link's columns without sync state (no peer named).
const LINK_COLUMNS_ALONE: &str =
    "l.entity_id, l.connection, l.stream, l.record_id, l.known, NULL, l.version, l.deleted";

/// The peer's connection and stream as query parameters (`NULL`: none).
fn peer_args(peer: Option<&Endpoint>) -> [Option<&str>; 2] {
    match peer {
        Some(p) => [Some(p.connection.as_str()), Some(p.stream.as_str())],
        None => [None, None],
    }
}

fn link_row(r: &Row<'_>) -> rusqlite::Result<Link> {
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

const RUN_COLUMNS: &str = "run_id, pipeline, status, started_at, finished_at, duration_ms, pages, \
     read, created, updated, unchanged, deleted, failed, quarantined, conflicts, error, superseded, \
     matched";

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(RunRow {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        status: r.get(2)?,
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
        },
        error: r.get(15)?,
    })
}

const DLQ_COLUMNS: &str = "id, pipeline, run_id, status, created_at, kind, source_id, record, \
     error, class, field, attempts";

/// Column `i` parsed by `parse`; text it does not know is an error that
/// names it (a database written by a newer Nexo, or edited by hand).
fn parsed<T>(r: &Row<'_>, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown status `{text}`").into(),
        )
    })
}

fn dead_letter_row(r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
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

const CONFLICT_COLUMNS: &str = "id, pipeline, run_id, status, created_at, entity_id, source_id, \
     destination_id, source_record, destination_payload, fields, resolution";

fn conflict_row(r: &Row<'_>) -> rusqlite::Result<Conflict> {
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
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SyncStore for Database {
    fn save_pipeline(&self, pipeline: &Pipeline) -> Result<(), StoreError> {
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
        let conn = self.lock()?;
        Ok(conn.execute("DELETE FROM pipelines WHERE name = ?1", [name])? > 0)
    }

    fn set_paused(
        &self,
        name: &str,
        paused: bool,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        let reason = if paused { reason } else { None };
        Ok(conn.execute(
            "UPDATE pipelines SET paused = ?2, paused_reason = ?3 WHERE name = ?1",
            params![name, paused, reason],
        )? > 0)
    }

    fn reset_state(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE pipelines SET state = NULL, destination_state = NULL WHERE name = ?1",
            [name],
        )?;
        Ok(())
    }

    fn links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        ids: &[&str],
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        let conn = self.lock()?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM entity_links l
                 WHERE l.connection = ?3 AND l.stream = ?4 AND l.record_id IN ({}) AND l.entity = ?",
                placeholders(chunk.len())
            );
            let mut st = conn.prepare_cached(&sql)?;
            // Borrowed: a lookup per page binds thousands of ids.
            let args = peer_args(peer)
                .into_iter()
                .chain([Some(connection), Some(stream)])
                .chain(chunk.iter().map(|id| Some(*id)))
                .chain([Some(entity)]);
            out.extend(
                st.query_map(params_from_iter(args), link_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(out)
    }

    fn links_of_entities(
        &self,
        entities: &[i64],
        connection: &str,
        stream: &str,
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        let conn = self.lock()?;
        let mut out = Vec::with_capacity(entities.len());
        for chunk in entities.chunks(500) {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM entity_links l
                 WHERE l.connection = ?3 AND l.stream = ?4 AND l.entity_id IN ({})",
                placeholders(chunk.len())
            );
            let mut st = conn.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = peer_args(peer)
                .into_iter()
                .map(|v| v.map(str::to_string).into())
                .collect();
            args.extend([connection.to_string().into(), stream.to_string().into()]);
            args.extend(chunk.iter().map(|e| rusqlite::types::Value::Integer(*e)));
            out.extend(
                st.query_map(params_from_iter(args), link_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(out)
    }

    fn search_entities(&self, q: &str, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let q = q.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.lock()?;
        // Exact ids first, then content matches; LIKE's wildcards in the
        // query are taken literally.
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let mut st = conn.prepare(
            "SELECT entity_id, entity, MIN(rank) FROM (
                 SELECT entity_id, entity, 0 AS rank FROM entity_links WHERE record_id = ?1
                 UNION ALL
                 SELECT entity_id, entity, 1 AS rank FROM entity_links
                  WHERE known LIKE ?2 ESCAPE '\\'
             ) GROUP BY entity_id ORDER BY MIN(rank), entity_id DESC LIMIT ?3",
        )?;
        Ok(st
            .query_map(params![q, pattern, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?)
    }

    fn entity(&self, entity_id: i64) -> Result<Vec<Link>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {LINK_COLUMNS_ALONE} FROM entity_links l
             WHERE l.entity_id = ?1 ORDER BY l.connection, l.stream"
        ))?;
        Ok(st
            .query_map([entity_id], link_row)?
            .collect::<Result<_, _>>()?)
    }

    fn record_links(
        &self,
        connection: &str,
        stream: &str,
        id: &str,
    ) -> Result<Vec<Link>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {LINK_COLUMNS_ALONE} FROM entity_links l
             WHERE l.connection = ?1 AND l.stream = ?2 AND l.record_id = ?3
             ORDER BY l.entity, l.entity_id"
        ))?;
        Ok(st
            .query_map(params![connection, stream, id], link_row)?
            .collect::<Result<_, _>>()?)
    }

    fn unswept_links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        peer: &Endpoint,
    ) -> Result<Vec<Link>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT * FROM (
                 SELECT {LINK_COLUMNS} FROM entity_links l
                  WHERE l.connection = ?3 AND l.stream = ?4 AND l.entity = ?5
             ) WHERE deleted = 0 OR COALESCE(synced, '') <> ?6
             ORDER BY record_id"
        ))?;
        Ok(st
            .query_map(
                params![
                    peer.connection,
                    peer.stream,
                    connection,
                    stream,
                    entity,
                    crate::sync::store::DELETED_IN_STEP
                ],
                link_row,
            )?
            .collect::<Result<_, _>>()?)
    }

    fn begin_run(&self, pipeline: &str) -> Result<RunId, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            &format!("{INTERRUPT_RUNS} WHERE pipeline = ?1 AND status = 'running'"),
            params![pipeline, INTERRUPTED_BY_NEXT],
        )?;
        tx.execute(
            "INSERT INTO runs (pipeline, status) VALUES (?1, 'running')",
            [pipeline],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    fn previous_run_start(
        &self,
        pipeline: &str,
        before: RunId,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                "SELECT started_at FROM runs WHERE pipeline = ?1 AND run_id < ?2
                 ORDER BY run_id DESC LIMIT 1",
                params![pipeline, before],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn commit_page(&self, pipeline: &str, run: RunId, page: &PageCommit) -> Result<(), StoreError> {
        // The second line: whatever a plugin or a system wrote (records,
        // errors, log lines, state) is stored without secret values. Ids
        // are keys, left as they are: they were scrubbed when read, and a
        // key changed here alone would no longer match its lookups.
        // Borrowed, no copy, when nothing matches.
        let redactor = redact::current();
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        // Once per page, not once per row.
        let now: String =
            tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
                r.get(0)
            })?;
        if let Some(state) = &page.state {
            tx.execute(
                "UPDATE pipelines SET state = ?2 WHERE name = ?1",
                params![pipeline, redactor.scrub(state)],
            )?;
        }
        if let Some(state) = &page.destination_state {
            tx.execute(
                "UPDATE pipelines SET destination_state = ?2 WHERE name = ?1",
                params![pipeline, redactor.scrub(state)],
            )?;
        }
        {
            // Entity ids are allocated here, under the write lock: one
            // query per page instead of a row per new entity.
            let mut next_entity: i64 = tx.query_row(
                "SELECT COALESCE(MAX(entity_id), 0) + 1 FROM entity_links",
                [],
                |r| r.get(0),
            )?;
            // No RETURNING: it costs SQLite an ephemeral table per row,
            // which made the commit of a 100 000-record first run half as
            // slow again. A new record is one INSERT; a known one is one
            // upsert, plus one UPDATE of its sync slot when it was synced.
            let mut insert_new = tx.prepare_cached(
                "INSERT INTO entity_links
                     (connection, stream, record_id, entity_id, known, version, deleted, seen_run,
                      updated_at, entity, synced_hash, synced_connection, synced_stream)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                         CASE WHEN ?11 IS NULL THEN NULL ELSE ?12 END,
                         CASE WHEN ?11 IS NULL THEN NULL ELSE ?13 END)
                 ON CONFLICT (connection, stream, record_id, entity) DO NOTHING",
            )?;
            let mut linked_to = tx.prepare_cached(
                "SELECT entity_id FROM entity_links
                  WHERE connection = ?1 AND stream = ?2 AND record_id = ?3 AND entity = ?4",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO entity_links
                     (connection, stream, record_id, entity_id, known, version, deleted, seen_run,
                      updated_at, entity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (connection, stream, record_id, entity) DO UPDATE SET
                     known = COALESCE(excluded.known, known),
                     version = COALESCE(excluded.version, version),
                     deleted = excluded.deleted,
                     seen_run = excluded.seen_run,
                     updated_at = excluded.updated_at",
            )?;
            // The row's own slot, when free or this peer's.
            let mut slot = tx.prepare_cached(
                "UPDATE entity_links
                    SET synced_hash = ?5, synced_connection = ?6, synced_stream = ?7
                  WHERE connection = ?1 AND stream = ?2 AND record_id = ?3 AND entity = ?4
                    AND (synced_connection IS NULL
                         OR (synced_connection = ?6 AND synced_stream = ?7))",
            )?;
            // Otherwise beside it.
            let mut aside = tx.prepare_cached(
                "INSERT INTO link_sync
                     (connection, stream, record_id, entity, peer_connection, peer_stream, synced_hash)
                 VALUES (?1, ?2, ?3, ?4, ?6, ?7, ?5)
                 ON CONFLICT (connection, stream, record_id, entity, peer_connection, peer_stream)
                 DO UPDATE SET synced_hash = excluded.synced_hash",
            )?;
            let mut groups: std::collections::HashMap<usize, i64> = Default::default();
            for l in &page.links {
                let key = params![l.connection, l.stream, l.record_id, l.entity];
                let first_of_group = l.entity_id.is_none() && !groups.contains_key(&l.group);
                let mut entity_id = match l.entity_id {
                    Some(e) => e,
                    None => *groups.entry(l.group).or_insert_with(|| {
                        next_entity += 1;
                        next_entity - 1
                    }),
                };
                if l.entity_id.is_none() {
                    let synced: [&dyn rusqlite::ToSql; 3] =
                        [&l.synced_hash, &l.peer.connection, &l.peer.stream];
                    let inserted = insert_new.execute(params_from_iter(
                        link_params(l, &entity_id, &run, &now)
                            .into_iter()
                            .chain(synced),
                    ))?;
                    if inserted == 1 {
                        continue;
                    }
                    // Linked since this page looked it up. The first update
                    // of a new group is its source record's: linked by a
                    // concurrent run of another pipeline with the same
                    // source and entity, the group joins that entity (two
                    // entities for one record would orphan a destination).
                    // A later one is a destination record answering for a
                    // second source record (two deals, one company's
                    // party): entities are not merged.
                    if first_of_group {
                        let existing: i64 = linked_to.query_row(key, |r| r.get(0))?;
                        groups.insert(l.group, existing);
                        entity_id = existing;
                    }
                }
                upsert.execute(params_from_iter(link_params(l, &entity_id, &run, &now)))?;
                if let Some(hash) = &l.synced_hash {
                    let args = params![
                        l.connection,
                        l.stream,
                        l.record_id,
                        l.entity,
                        hash,
                        l.peer.connection,
                        l.peer.stream
                    ];
                    if slot.execute(args)? == 0 {
                        aside.execute(args)?;
                    }
                }
            }
            let base: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM run_records WHERE run_id = ?1",
                [run],
                |r| r.get(0),
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO run_records (run_id, seq, source_id, destination_id, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (i, r) in page.results.iter().enumerate() {
                insert.execute(params![
                    run,
                    base + 1 + i as i64,
                    r.source_id,
                    r.destination_id,
                    r.outcome.as_str(),
                    r.detail.as_deref().map(|t| redactor.scrub(t))
                ])?;
            }
            resolve_dead_letters(&tx, pipeline, &page.results)?;
            let mut dlq = tx.prepare_cached(
                "INSERT INTO dead_letters
                     (pipeline, run_id, kind, source_id, record, error, class, field, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for d in &page.dead_letters {
                dlq.execute(params![
                    pipeline,
                    run,
                    d.kind.as_str(),
                    d.source_id,
                    redactor.scrub(&d.record),
                    redactor.scrub(&d.error),
                    d.class,
                    d.field,
                    d.attempts
                ])?;
            }
            let mut conflict = tx.prepare_cached(
                "INSERT INTO conflicts
                     (pipeline, run_id, entity_id, source_id, destination_id, source_record,
                      destination_payload, fields, status, resolution)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for c in &page.conflicts {
                let status = if c.resolution.is_some() {
                    ConflictStatus::AutoResolved
                } else {
                    ConflictStatus::Open
                }
                .as_str();
                conflict.execute(params![
                    pipeline,
                    run,
                    c.entity_id,
                    c.source_id,
                    c.destination_id,
                    redactor.scrub(&c.source_record),
                    redactor.scrub(&c.destination_payload),
                    serde_json::to_string(&c.fields).map_err(corrupt)?,
                    status,
                    c.resolution
                ])?;
            }
            let log_base: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM run_log WHERE run_id = ?1",
                [run],
                |r| r.get(0),
            )?;
            let mut log = tx.prepare_cached(
                "INSERT INTO run_log (run_id, seq, level, message) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (i, (level, message)) in page.log.iter().enumerate() {
                log.execute(params![
                    run,
                    log_base + 1 + i as i64,
                    level,
                    redactor.scrub(message)
                ])?;
            }
            for (id, status) in &page.settle_dead_letters {
                tx.execute(
                    "UPDATE dead_letters SET status = ?2 WHERE id = ?1",
                    params![id, status.as_str()],
                )?;
            }
            for (id, resolution) in &page.settle_conflicts {
                tx.execute(
                    "UPDATE conflicts SET status = 'resolved', resolution = ?2 WHERE id = ?1",
                    params![id, resolution],
                )?;
            }
        }
        let c = &page.counts;
        // A commit that only carries log lines (a run's last words) is not
        // a page.
        let log_only = page.state.is_none()
            && page.destination_state.is_none()
            && page.links.is_empty()
            && page.results.is_empty()
            && page.dead_letters.is_empty()
            && page.conflicts.is_empty();
        tx.execute(
            "UPDATE runs SET pages = pages + ?10, read = read + ?2, created = created + ?3,
                 updated = updated + ?4, unchanged = unchanged + ?5, deleted = deleted + ?6,
                 failed = failed + ?7, quarantined = quarantined + ?8, conflicts = conflicts + ?9,
                 superseded = superseded + ?11, last_progress_at = ?12,
                 matched = matched + ?13
             WHERE run_id = ?1",
            params![
                run,
                c.read as i64,
                c.created as i64,
                c.updated as i64,
                c.unchanged as i64,
                c.deleted as i64,
                c.failed as i64,
                c.quarantined as i64,
                c.conflicts as i64,
                i64::from(!log_only),
                c.superseded as i64,
                now,
                c.matched as i64
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn request_stop(&self, run: RunId) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        let changed = conn.execute(
            "UPDATE runs SET stop_requested = 1 WHERE run_id = ?1 AND status = 'running'",
            [run],
        )?;
        Ok(changed > 0)
    }

    fn cancel_reason(&self, run: RunId) -> Result<Option<CancelReason>, StoreError> {
        let conn = self.lock()?;
        let found: Option<(bool, Option<bool>)> = conn
            .query_row(
                "SELECT r.stop_requested, p.paused
                   FROM runs r LEFT JOIN pipelines p ON p.name = r.pipeline
                  WHERE r.run_id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match found {
            Some((true, _)) => Some(CancelReason::Requested),
            Some((false, Some(true))) => Some(CancelReason::Paused),
            _ => None,
        })
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let error = error.map(redact::scrub);
        let conn = self.lock()?;
        conn.execute(
            "UPDATE runs SET status = ?2, error = ?3,
                 finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                 duration_ms = CAST((julianday('now') - julianday(started_at)) * 86400000 AS INTEGER)
             WHERE run_id = ?1",
            params![run, status.as_str(), error],
        )?;
        Ok(())
    }

    fn interrupt_run(&self, run: RunId) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        Ok(conn.execute(
            &format!("{INTERRUPT_RUNS} WHERE run_id = ?1 AND status = 'running'"),
            params![run, INTERRUPTED_FOUND],
        )? > 0)
    }

    fn run(&self, run: RunId) -> Result<Option<RunRow>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                [run],
                run_row,
            )
            .optional()?)
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY run_id DESC LIMIT ?3"
        ))?;
        let limit = if filter.limit == 0 { 50 } else { filter.limit } as i64;
        Ok(st
            .query_map(params![filter.pipeline, filter.status, limit], run_row)?
            .collect::<Result<_, _>>()?)
    }

    fn run_records(&self, run: RunId) -> Result<Vec<RecordResult>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn.prepare(
            "SELECT source_id, destination_id, outcome, detail FROM run_records
             WHERE run_id = ?1 ORDER BY seq",
        )?;
        let rows = st
            .query_map([run], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(source_id, destination_id, outcome, detail)| {
                Ok(RecordResult {
                    source_id,
                    destination_id,
                    outcome: RecordOutcome::parse(&outcome)
                        .ok_or_else(|| corrupt(format!("unknown outcome `{outcome}`")))?,
                    detail,
                })
            })
            .collect()
    }

    fn run_log(&self, run: RunId) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.lock()?;
        let mut st =
            conn.prepare("SELECT at, level, message FROM run_log WHERE run_id = ?1 ORDER BY seq")?;
        Ok(st
            .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
    }

    fn prune_runs(&self, days: u32) -> Result<usize, StoreError> {
        let conn = self.lock()?;
        Ok(conn.execute(
            "DELETE FROM runs WHERE status <> 'running'
                 AND julianday(COALESCE(finished_at, started_at)) < julianday('now') - ?1",
            [days],
        )?)
    }

    fn dead_letters(
        &self,
        pipeline: Option<&str>,
        status: Option<DeadLetterStatus>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
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
        let conn = self.lock()?;
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM conflicts
                             WHERE entity_id = ?1 AND pipeline = ?2 AND status = 'open')",
            params![entity_id, pipeline],
            |r| r.get(0),
        )?)
    }

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::store::LinkUpdate;

    fn pipeline(name: &str) -> Pipeline {
        Pipeline::from_toml(
            &format!(
                "name = \"{name}\"\nentity = \"contact\"\n[source]\nconnection = \"a\"\nstream = \"s\"\n[destination]\nconnection = \"b\"\nstream = \"s\"\n"
            ),
            "t",
        )
        .unwrap()
    }

    fn link(conn: &str, id: &str, entity_id: Option<i64>, group: usize) -> LinkUpdate {
        LinkUpdate {
            entity_id,
            entity: "contact".into(),
            group,
            connection: conn.into(),
            stream: "s".into(),
            record_id: id.into(),
            known: Some(format!("{{\"id\":\"{id}\"}}")),
            synced_hash: Some(format!("h-{id}")),
            peer: std::sync::Arc::new(Endpoint {
                connection: if conn == "a" { "b" } else { "a" }.into(),
                stream: "s".into(),
            }),
            version: None,
            deleted: false,
        }
    }

    #[test]
    fn a_page_commits_links_results_and_queues_together() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        let page = PageCommit {
            state: Some("cursor-1".into()),
            links: vec![
                link("a", "a1", None, 1),
                link("b", "b1", None, 1),
                link("a", "a2", None, 2),
            ],
            results: vec![RecordResult {
                source_id: "a1".into(),
                destination_id: Some("b1".into()),
                outcome: RecordOutcome::Created,
                detail: None,
            }],
            counts: Counts {
                read: 2,
                created: 1,
                quarantined: 1,
                ..Counts::default()
            },
            dead_letters: vec![NewDeadLetter {
                kind: DeadLetterKind::Quarantined,
                source_id: "a2".into(),
                record: "{}".into(),
                error: "field `email`: bad".into(),
                class: "schema".into(),
                field: Some("email".into()),
                attempts: 0,
            }],
            log: vec![("info".into(), "page 1".into())],
            ..PageCommit::default()
        };
        db.commit_page("p", run, &page).unwrap();

        assert_eq!(
            db.pipeline("p").unwrap().unwrap().state.as_deref(),
            Some("cursor-1")
        );
        let a1 = &db.links("contact", "a", "s", &["a1"], None).unwrap()[0];
        let b1 = &db.links("contact", "b", "s", &["b1"], None).unwrap()[0];
        let a2 = &db.links("contact", "a", "s", &["a2"], None).unwrap()[0];
        assert_eq!(a1.entity_id, b1.entity_id, "one group, one entity");
        assert_ne!(a1.entity_id, a2.entity_id);
        assert_eq!(
            db.links_of_entities(&[a1.entity_id], "b", "s", None)
                .unwrap()[0]
                .record_id,
            "b1"
        );
        let r = db.run(run).unwrap().unwrap();
        assert_eq!((r.pages, r.counts.read, r.counts.created), (1, 2, 1));
        assert_eq!(db.run_records(run).unwrap().len(), 1);
        assert_eq!(
            db.dead_letters(Some("p"), Some(DeadLetterStatus::Open))
                .unwrap()[0]
                .letter
                .field
                .as_deref(),
            Some("email")
        );
        assert_eq!(db.run_log(run).unwrap()[0].2, "page 1");

        // The full refresh's sweep candidates for peer b: records whose
        // delete is not settled for b.
        db.finish_run(run, RunStatus::Succeeded, None).unwrap();
        let run2 = db.begin_run("p").unwrap();
        db.commit_page(
            "p",
            run2,
            &PageCommit {
                links: vec![LinkUpdate {
                    deleted: true,
                    ..link("a", "a1", Some(a1.entity_id), 0)
                }],
                ..PageCommit::default()
            },
        )
        .unwrap();
        let b = Endpoint {
            connection: "b".into(),
            stream: "s".into(),
        };
        let unswept = |db: &Database| -> Vec<String> {
            db.unswept_links("contact", "a", "s", &b)
                .unwrap()
                .into_iter()
                .map(|l| l.record_id)
                .collect()
        };
        // Deleted, but the delete is not settled for b yet.
        assert_eq!(unswept(&db), ["a1", "a2"]);
        db.commit_page(
            "p",
            run2,
            &PageCommit {
                links: vec![LinkUpdate {
                    deleted: true,
                    synced_hash: Some(crate::sync::store::DELETED_IN_STEP.into()),
                    ..link("a", "a1", Some(a1.entity_id), 0)
                }],
                ..PageCommit::default()
            },
        )
        .unwrap();
        assert_eq!(unswept(&db), ["a2"]);
    }

    #[test]
    fn a_record_is_synced_with_each_peer_on_its_own() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        // a1 delivered to b: in step with b, not with c.
        let page = PageCommit {
            links: vec![link("a", "a1", None, 1), link("b", "b1", None, 1)],
            ..PageCommit::default()
        };
        db.commit_page("p", run, &page).unwrap();
        let peer = |c: &str| Endpoint {
            connection: c.into(),
            stream: "s".into(),
        };
        let with = |p: Option<&Endpoint>| {
            db.links("contact", "a", "s", &["a1"], p).unwrap()[0]
                .synced_hash
                .clone()
        };
        assert_eq!(with(Some(&peer("b"))).as_deref(), Some("h-a1"));
        assert_eq!(with(Some(&peer("c"))), None, "never synced with c");
        assert_eq!(with(None), None);
        // Synced with c later: each peer keeps its own state.
        let to_c = LinkUpdate {
            entity_id: Some(db.links("contact", "a", "s", &["a1"], None).unwrap()[0].entity_id),
            synced_hash: Some("h-a1-for-c".into()),
            peer: peer("c").into(),
            ..link("a", "a1", None, 0)
        };
        db.commit_page(
            "p",
            run,
            &PageCommit {
                links: vec![to_c],
                ..PageCommit::default()
            },
        )
        .unwrap();
        assert_eq!(with(Some(&peer("b"))).as_deref(), Some("h-a1"));
        assert_eq!(with(Some(&peer("c"))).as_deref(), Some("h-a1-for-c"));
        let b1 = &db
            .links_of_entities(&[1], "b", "s", Some(&peer("a")))
            .unwrap()[0];
        assert_eq!(b1.synced_hash.as_deref(), Some("h-b1"));
    }

    #[test]
    fn a_record_linked_meanwhile_by_another_run_keeps_one_entity() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        let commit = |links| {
            db.commit_page(
                "p",
                run,
                &PageCommit {
                    links,
                    ..PageCommit::default()
                },
            )
            .unwrap()
        };
        // Two runs looked a1 up before either committed: both take it for
        // new. The second to commit joins the entity the first made.
        commit(vec![link("a", "a1", None, 1), link("b", "b1", None, 1)]);
        commit(vec![link("a", "a1", None, 1), link("c", "c1", None, 1)]);
        let entity = |conn: &str, id: &str| {
            db.links("contact", conn, "s", &[id], None).unwrap()[0].entity_id
        };
        assert_eq!(entity("a", "a1"), entity("b", "b1"));
        assert_eq!(entity("a", "a1"), entity("c", "c1"));
        // A destination record answering for a second source record (two
        // deals of one company, one party) does not merge their entities.
        commit(vec![link("a", "a2", None, 1), link("b", "b1", None, 1)]);
        assert_ne!(entity("a", "a2"), entity("a", "a1"));
    }

    /// A database of schema 8 (one synced hash per link) with two
    /// pipelines sharing a source and an entity, and a two-way pair.
    fn schema_8_database(path: &std::path::Path) {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        for sql in &crate::store::MIGRATIONS[..8] {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.commit().unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        let save = |p: &str, entity: &str, from: (&str, &str), to: (&str, &str)| {
            let def = serde_json::json!({
                "name": p, "entity": entity,
                "source": {"connection": from.0, "stream": from.1},
                "destination": {"connection": to.0, "stream": to.1},
            });
            conn.execute(
                "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
                params![p, def.to_string()],
            )
            .unwrap();
        };
        save("to-erp", "invoice", ("crm", "deals"), ("erp", "invoices"));
        save(
            "to-books",
            "invoice",
            ("crm", "deals"),
            ("books", "journal"),
        );
        save("a-to-b", "contact", ("a", "s"), ("b", "s"));
        save("b-to-a", "contact", ("b", "s"), ("a", "s"));
        let links = [
            ("crm", "deals", "d1", 1, "invoice"),
            ("erp", "invoices", "t1", 1, "invoice"),
            ("books", "journal", "j1", 1, "invoice"),
            ("crm", "deals", "d2", 2, "invoice"),
            ("erp", "invoices", "t2", 2, "invoice"),
            ("a", "s", "a1", 3, "contact"),
            ("b", "s", "b1", 3, "contact"),
            ("a", "s", "a2", 4, "contact"),
        ];
        for (c, st, id, e, entity) in links {
            conn.execute(
                "INSERT INTO entity_links (connection, stream, record_id, entity_id, entity, known, synced_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?6)",
                params![c, st, id, e, entity, format!("h-{id}")],
            )
            .unwrap();
        }
    }

    #[test]
    fn the_migration_keeps_every_link_and_only_unambiguous_sync_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexo.db");
        schema_8_database(&path);
        let db = Database::open(&path).unwrap();
        let end = |c: &str, s: &str| Endpoint {
            connection: c.into(),
            stream: s.into(),
        };
        let synced = |entity: &str, at: (&str, &str), id: &str, peer: (&str, &str)| {
            let found = db
                .links(entity, at.0, at.1, &[id], Some(&end(peer.0, peer.1)))
                .unwrap();
            assert_eq!(found.len(), 1, "link {id} lost");
            found[0].synced_hash.clone()
        };
        // The deals feed two destinations: which one their hash was for
        // is unknown, so both compare again (no skip).
        for peer in [("erp", "invoices"), ("books", "journal")] {
            assert_eq!(synced("invoice", ("crm", "deals"), "d1", peer), None);
            assert_eq!(synced("invoice", ("crm", "deals"), "d2", peer), None);
        }
        // Each destination's record was synced with the one source.
        let crm = ("crm", "deals");
        assert_eq!(
            synced("invoice", ("erp", "invoices"), "t1", crm).as_deref(),
            Some("h-t1")
        );
        assert_eq!(
            synced("invoice", ("books", "journal"), "j1", crm).as_deref(),
            Some("h-j1")
        );
        // A two-way pair: each side has one peer.
        assert_eq!(
            synced("contact", ("a", "s"), "a1", ("b", "s")).as_deref(),
            Some("h-a1")
        );
        assert_eq!(
            synced("contact", ("b", "s"), "b1", ("a", "s")).as_deref(),
            Some("h-b1")
        );
        // Never delivered to b: compared again.
        assert_eq!(synced("contact", ("a", "s"), "a2", ("b", "s")), None);
        let all: i64 = db
            .lock()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM entity_links", [], |r| r.get(0))
            .unwrap();
        assert_eq!(all, 8, "every link carried over");
    }

    #[test]
    fn one_record_links_to_an_entity_of_each_type() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        let typed = |entity: &str, conn: &str, id: &str, group| LinkUpdate {
            entity: entity.into(),
            ..link(conn, id, None, group)
        };
        // A won deal is the source of a customer and of an invoice.
        let page = PageCommit {
            links: vec![
                typed("customer", "a", "deal-1", 1),
                typed("customer", "b", "contact-9", 1),
                typed("invoice", "a", "deal-1", 2),
                typed("invoice", "b", "inv-4", 2),
            ],
            ..PageCommit::default()
        };
        db.commit_page("p", run, &page).unwrap();
        let customer = &db.links("customer", "a", "s", &["deal-1"], None).unwrap()[0];
        let invoice = &db.links("invoice", "a", "s", &["deal-1"], None).unwrap()[0];
        assert_ne!(customer.entity_id, invoice.entity_id);
        assert_eq!(
            db.links_of_entities(&[invoice.entity_id], "b", "s", None)
                .unwrap()[0]
                .record_id,
            "inv-4"
        );
        assert!(
            db.links("payment", "a", "s", &["deal-1"], None)
                .unwrap()
                .is_empty()
        );
        let both: Vec<i64> = db
            .record_links("a", "s", "deal-1")
            .unwrap()
            .iter()
            .map(|l| l.entity_id)
            .collect();
        assert_eq!(both, [customer.entity_id, invoice.entity_id]);
    }

    #[test]
    fn a_stop_is_asked_of_running_runs_only_and_a_pause_stops_too() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        assert_eq!(db.cancel_reason(run).unwrap(), None);
        db.set_paused("p", true, None).unwrap();
        assert_eq!(db.cancel_reason(run).unwrap(), Some(CancelReason::Paused));
        assert!(db.request_stop(run).unwrap());
        assert_eq!(
            db.cancel_reason(run).unwrap(),
            Some(CancelReason::Requested)
        );
        db.finish_run(run, RunStatus::Cancelled, Some("stopped"))
            .unwrap();
        assert!(!db.request_stop(run).unwrap());
        assert!(!db.request_stop(run + 1).unwrap());
        assert_eq!(db.run(run).unwrap().unwrap().status, "cancelled");
    }

    #[test]
    fn superseded_records_are_counted_with_the_run() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        let page = PageCommit {
            state: Some("1".into()),
            counts: Counts {
                read: 10,
                superseded: 9,
                ..Counts::default()
            },
            ..PageCommit::default()
        };
        db.commit_page("p", run, &page).unwrap();
        let row = db.run(run).unwrap().unwrap();
        assert_eq!((row.counts.read, row.counts.superseded), (10, 9));
    }

    #[test]
    fn upgrading_drops_the_old_attempts_cap_and_sorts_out_settled_conflicts() {
        // A database as the release before it left it.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let before = crate::store::MIGRATIONS.len() - 1;
        for sql in &crate::store::MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64)
            .unwrap();
        let mut old = serde_json::to_value(pipeline("old")).unwrap();
        old["retry"] = serde_json::json!({"max_attempts": 5, "initial_backoff_ms": 200, "max_backoff_ms": 30000});
        let mut kept = old.clone();
        kept["name"] = "kept".into();
        kept["retry"]["max_attempts"] = 3.into();
        for p in [&old, &kept] {
            conn.execute(
                "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
                params![p["name"].as_str(), p.to_string()],
            )
            .unwrap();
        }
        for (resolution, status) in [
            ("source written by policy", "resolved"),
            ("source written by a person", "resolved"),
        ] {
            conn.execute(
                "INSERT INTO conflicts (pipeline, run_id, entity_id, source_id, destination_id,
                     source_record, destination_payload, fields, status, resolution)
                 VALUES ('old', 1, 1, 's', 'd', '{}', '{}', '[]', ?1, ?2)",
                params![status, resolution],
            )
            .unwrap();
        }
        let db = Database::init(conn, ":memory:").unwrap();
        let old = db.pipeline("old").unwrap().unwrap().pipeline.retry;
        assert_eq!(
            old.max_attempts, None,
            "the old default would cap the window"
        );
        assert_eq!(old.window(), std::time::Duration::from_secs(600));
        let kept = db.pipeline("kept").unwrap().unwrap().pipeline.retry;
        assert_eq!(kept.max_attempts, Some(3), "a chosen cap stays");
        let statuses: Vec<ConflictStatus> = db
            .conflicts(None, None)
            .unwrap()
            .iter()
            .map(|c| c.status)
            .collect();
        assert_eq!(
            statuses,
            [ConflictStatus::AutoResolved, ConflictStatus::Resolved]
        );
    }

    #[test]
    fn a_killed_run_found_with_its_lock_free_ends_at_its_last_progress() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        {
            let conn = db.lock().unwrap();
            conn.execute(
                "UPDATE runs SET started_at = '2026-01-01T10:00:00.000Z' WHERE run_id = ?1",
                [run],
            )
            .unwrap();
        }
        let page = PageCommit {
            log: vec![("info".into(), "a page".into())],
            state: Some("c1".into()),
            ..PageCommit::default()
        };
        db.commit_page("p", run, &page).unwrap();
        {
            let conn = db.lock().unwrap();
            conn.execute(
                "UPDATE runs SET last_progress_at = '2026-01-01T10:00:42.000Z' WHERE run_id = ?1",
                [run],
            )
            .unwrap();
        }
        assert!(db.interrupt_run(run).unwrap());
        let row = db.run(run).unwrap().unwrap();
        assert_eq!(row.status, "interrupted");
        assert_eq!(row.duration_ms, Some(42_000));
        assert_eq!(row.finished_at.as_deref(), Some("2026-01-01T10:00:42.000Z"));
        assert!(!db.interrupt_run(run).unwrap(), "only a running run");
    }

    #[test]
    fn a_run_left_running_is_marked_interrupted_by_the_next() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let first = db.begin_run("p").unwrap();
        let second = db.begin_run("p").unwrap();
        assert_eq!(db.run(first).unwrap().unwrap().status, "interrupted");
        assert_eq!(db.run(second).unwrap().unwrap().status, "running");
        assert!(db.previous_run_start("p", second).unwrap().is_some());
    }

    #[test]
    fn a_failing_commit_leaves_nothing_behind() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        // Results for a run that does not exist: the foreign key fails
        // after the state and the links were written, inside the same
        // transaction.
        let page = PageCommit {
            state: Some("cursor-2".into()),
            links: vec![link("a", "a1", None, 1)],
            results: vec![RecordResult {
                source_id: "a1".into(),
                destination_id: None,
                outcome: RecordOutcome::Created,
                detail: None,
            }],
            ..PageCommit::default()
        };
        assert!(db.commit_page("p", run + 1000, &page).is_err());
        assert_eq!(db.pipeline("p").unwrap().unwrap().state, None);
        assert!(
            db.links("contact", "a", "s", &["a1"], None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(db.run(run).unwrap().unwrap().pages, 0);
    }

    #[test]
    fn old_runs_are_pruned_with_their_records() {
        let db = Database::in_memory().unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let old = db.begin_run("p").unwrap();
        db.commit_page(
            "p",
            old,
            &PageCommit {
                results: vec![RecordResult {
                    source_id: "a1".into(),
                    destination_id: None,
                    outcome: RecordOutcome::Unchanged,
                    detail: None,
                }],
                ..PageCommit::default()
            },
        )
        .unwrap();
        db.finish_run(old, RunStatus::Succeeded, None).unwrap();
        db.lock()
            .unwrap()
            .execute(
                "UPDATE runs SET finished_at = '2020-01-01T00:00:00Z' WHERE run_id = ?1",
                [old],
            )
            .unwrap();
        let recent = db.begin_run("p").unwrap();
        db.finish_run(recent, RunStatus::Succeeded, None).unwrap();
        assert_eq!(db.prune_runs(30).unwrap(), 1);
        assert!(db.run(old).unwrap().is_none());
        assert!(db.run_records(old).unwrap().is_empty(), "records cascade");
        assert!(db.run(recent).unwrap().is_some());
    }

    #[test]
    fn changing_the_source_resets_the_cursor() {
        let db = Database::in_memory().unwrap();
        let mut p = pipeline("p");
        db.save_pipeline(&p).unwrap();
        let run = db.begin_run("p").unwrap();
        db.commit_page(
            "p",
            run,
            &PageCommit {
                state: Some("c".into()),
                ..PageCommit::default()
            },
        )
        .unwrap();
        p.batch_size = 7;
        db.save_pipeline(&p).unwrap();
        assert_eq!(
            db.pipeline("p").unwrap().unwrap().state.as_deref(),
            Some("c")
        );
        p.source.stream = "other".into();
        db.save_pipeline(&p).unwrap();
        assert_eq!(db.pipeline("p").unwrap().unwrap().state, None);
    }
}

//! A page's commit: every effect of one page — cursor, identity links,
//! per-record results, dead letters, conflicts, log, counts — in one
//! transaction, so a run killed at any instant resumes from its last
//! committed page with nothing lost and nothing written twice.

use rusqlite::{OptionalExtension, params, params_from_iter};

use super::corrupt;
use crate::store::{ConflictStatus, LinkUpdate, PageCommit, RecordOutcome, RecordResult, RunId};
use nexo_db::{Database, StoreError};
use nexo_runtime::sandbox::redact;

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

/// Apply pages' effects, each in turn as if committed alone, in one
/// transaction (a group of pages costs one commit, not one per page).
pub(super) fn commit_in_one_transaction(
    db: &Database,
    pipeline: &str,
    run: RunId,
    pages: &[PageCommit],
) -> Result<(), StoreError> {
    let mut conn = db.lock()?;
    let tx = conn.transaction()?;
    // The fence: only a run that still holds itself commits (see
    // `RUN_LEASES`); checked inside the transaction that writes.
    let holds = tx
        .query_row(
            "SELECT 1 FROM runs WHERE run_id = ?1 AND status = 'running'
                AND (lease_until_ms IS NULL
                     OR lease_until_ms > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
            [run],
            |_| Ok(()),
        )
        .optional()?;
    if holds.is_none() {
        return Err(StoreError::LeaseLost { run });
    }
    // Once per transaction, not once per row.
    let now: String = tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
        r.get(0)
    })?;
    for page in pages {
        apply_page(&tx, pipeline, run, page, &now)?;
    }
    tx.commit()?;
    Ok(())
}

/// One page's effects inside the commit's transaction.
fn apply_page(
    tx: &rusqlite::Transaction<'_>,
    pipeline: &str,
    run: RunId,
    page: &PageCommit,
    now: &String,
) -> Result<(), StoreError> {
    // The second line: whatever a plugin or a system wrote (records,
    // errors, log lines, state) is stored without secret values. Ids
    // are keys, left as they are: they were scrubbed when read, and a
    // key changed here alone would no longer match its lookups.
    // Borrowed, no copy, when nothing matches.
    let redactor = redact::current();
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
        resolve_dead_letters(tx, pipeline, &page.results)?;
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
                level.as_str(),
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
        super::reviews::apply(tx, pipeline, run, page, now, &redactor)?;
    }
    let c = &page.counts;
    // A commit that only carries log lines (a run's last words) is not
    // a page.
    let log_only = page.state.is_none()
        && page.destination_state.is_none()
        && page.links.is_empty()
        && page.results.is_empty()
        && page.dead_letters.is_empty()
        && page.conflicts.is_empty()
        && page.new_reviews.is_empty()
        && page.decide_reviews.is_empty()
        && page.deliver_reviews.is_empty()
        && page.withdraw_reviews.is_empty();
    tx.execute(
        "UPDATE runs SET pages = pages + ?10, read = read + ?2, created = created + ?3,
                 updated = updated + ?4, unchanged = unchanged + ?5, deleted = deleted + ?6,
                 failed = failed + ?7, quarantined = quarantined + ?8, conflicts = conflicts + ?9,
                 superseded = superseded + ?11, last_progress_at = ?12,
                 matched = matched + ?13, skipped = skipped + ?14, held = held + ?15
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
            c.matched as i64,
            c.skipped as i64,
            c.held as i64
        ],
    )?;
    Ok(())
}

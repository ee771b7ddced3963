//! A group of pages' commit on PostgreSQL: every effect of each page —
//! cursor, identity links, per-record results, dead letters, conflicts,
//! log, counts — in one transaction, as on SQLite (`crate::sqlite::commit`),
//! with the same fence and the same merge rules.
//!
//! The fence takes the run's row with `FOR UPDATE`: a host taking the run
//! over (or ending it) waits for the commit, or the commit waits for it and
//! then finds the run no longer its own. That lock also serialises the
//! `seq` numbers of the run's records and log lines.
//!
//! This is the hot path, so a page costs a handful of round trips however
//! many records it has: each kind of row goes in one multi-row statement
//! over `UNNEST`ed arrays (prepared once per connection). The identity
//! map's statements keep SQLite's per-link order where it matters: links
//! are taken in runs ("segments") in which no link names a record twice;
//! within one, first the new entities' first records go in (a record some
//! other run linked meanwhile hands its entity to its group), then the rest
//! of the new groups, then the updates of known links and their per-peer
//! sync state. A page that names a record twice (one destination record
//! answering for two source records) just makes a second segment.
//!
//! Two commits that link the same new record at once (two pipelines with
//! the same source and entity type): the second's insert waits for the
//! first's transaction, then finds the row and joins its entity — both
//! succeed, with one link and one entity, as on SQLite. If two commits
//! wait on each other's rows, PostgreSQL ends one with a deadlock error;
//! that commit is run again from the start (it wrote nothing), up to
//! [`ATTEMPTS`] times, and then fails with an error that says nothing of
//! it was written (the run resumes from its last committed page).

use tokio_postgres::error::SqlState;

use super::corrupt;
use crate::store::{ConflictStatus, PageCommit, RecordOutcome, RecordResult, RunId};
use nexo_db::StoreError;
use nexo_db::postgres::{Postgres, Transaction};
use nexo_runtime::sandbox::redact::{self, Redactor};

/// How many times a commit PostgreSQL ended as a deadlock is tried.
const ATTEMPTS: usize = 3;

/// Why a commit attempt failed: a statement (maybe worth another
/// attempt), or the store's own verdict.
pub(super) enum Failure {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub(super) type Outcome<T> = Result<T, Failure>;

/// Apply pages' effects, each in turn as if committed alone, in one
/// transaction.
pub(crate) fn commit_pages(
    pg: &Postgres,
    pipeline: &str,
    run: RunId,
    pages: &[PageCommit],
) -> Result<(), StoreError> {
    pg.with(async |client| {
        let mut attempt = 1;
        loop {
            let tx = client.transaction().await?;
            match commit_in(&tx, pipeline, run, pages).await {
                Ok(()) => {
                    tx.commit().await?;
                    return Ok(());
                }
                Err(Failure::Db(e))
                    if attempt < ATTEMPTS
                        && matches!(
                            e.code(),
                            Some(&SqlState::T_R_DEADLOCK_DETECTED)
                                | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                        ) =>
                {
                    tracing::debug!(run, attempt, "page commit deadlocked; committing again");
                    // Nothing was written; the server already rolled back.
                    let _ = tx.rollback().await;
                    attempt += 1;
                }
                Err(Failure::Db(e))
                    if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
                {
                    return Err(StoreError::Postgres(format!(
                        "run {run}'s page commit met other hosts' commits in a deadlock {ATTEMPTS} times ({}); nothing of it was written: the run resumes from its last committed page",
                        StoreError::from(e)
                    )));
                }
                Err(Failure::Db(e)) => return Err(e.into()),
                Err(Failure::Store(e)) => return Err(e),
            }
        }
    })
}

async fn commit_in(
    tx: &Transaction<'_>,
    pipeline: &str,
    run: RunId,
    pages: &[PageCommit],
) -> Outcome<()> {
    // The fence: only a run that still holds itself commits; its row
    // stays locked until this transaction ends. And the time, once per
    // transaction, not once per row.
    let fence = tx
        .prepare_cached(
            "SELECT nexo_now_ms() FROM runs
              WHERE run_id = $1 AND status = 'running'
                AND (lease_until_ms IS NULL OR lease_until_ms > nexo_epoch_ms())
              FOR UPDATE",
        )
        .await?;
    let Some(now) = tx.query_opt(&fence, &[&run]).await? else {
        return Err(StoreError::LeaseLost { run }.into());
    };
    let now: String = now.try_get(0)?;
    for page in pages {
        apply_page(tx, pipeline, run, page, &now).await?;
    }
    Ok(())
}

/// One page's effects inside the commit's transaction.
async fn apply_page(
    tx: &Transaction<'_>,
    pipeline: &str,
    run: RunId,
    page: &PageCommit,
    now: &str,
) -> Outcome<()> {
    // The second line: whatever a plugin or a system wrote (records,
    // errors, log lines, state) is stored without secret values. Ids are
    // keys, left as they are (see the SQLite commit).
    let redactor = redact::current();
    if let Some(state) = &page.state {
        let st = tx
            .prepare_cached("UPDATE pipelines SET state = $2 WHERE name = $1")
            .await?;
        tx.execute(&st, &[&pipeline, &&*redactor.scrub(state)])
            .await?;
    }
    if let Some(state) = &page.destination_state {
        let st = tx
            .prepare_cached("UPDATE pipelines SET destination_state = $2 WHERE name = $1")
            .await?;
        tx.execute(&st, &[&pipeline, &&*redactor.scrub(state)])
            .await?;
    }
    super::link_writes::apply_links(tx, run, now, &page.links).await?;
    insert_results(tx, run, &page.results, &redactor).await?;
    resolve_dead_letters(tx, pipeline, &page.results).await?;
    insert_dead_letters(tx, pipeline, run, page, &redactor).await?;
    insert_conflicts(tx, pipeline, run, page, &redactor).await?;
    insert_log(tx, run, page, &redactor).await?;
    if !page.settle_dead_letters.is_empty() {
        let st = tx
            .prepare_cached("UPDATE dead_letters SET status = $2 WHERE id = $1")
            .await?;
        for (id, status) in &page.settle_dead_letters {
            tx.execute(&st, &[id, &status.as_str()]).await?;
        }
    }
    if !page.settle_conflicts.is_empty() {
        let st = tx
            .prepare_cached(
                "UPDATE conflicts SET status = 'resolved', resolution = $2 WHERE id = $1",
            )
            .await?;
        for (id, resolution) in &page.settle_conflicts {
            tx.execute(&st, &[id, resolution]).await?;
        }
    }
    super::reviews::apply(tx, pipeline, run, page, now, &redactor).await?;
    let c = &page.counts;
    // A commit that only carries log lines (a run's last words) is not a
    // page.
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
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let st = tx
        .prepare_cached(
            "UPDATE runs SET pages = pages + $10, read = read + $2, created = created + $3,
                 updated = updated + $4, unchanged = unchanged + $5, deleted = deleted + $6,
                 failed = failed + $7, quarantined = quarantined + $8, conflicts = conflicts + $9,
                 superseded = superseded + $11, last_progress_at = $12,
                 matched = matched + $13, skipped = skipped + $14, held = held + $15
             WHERE run_id = $1",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &run,
            &n(c.read),
            &n(c.created),
            &n(c.updated),
            &n(c.unchanged),
            &n(c.deleted),
            &n(c.failed),
            &n(c.quarantined),
            &n(c.conflicts),
            &i64::from(!log_only),
            &n(c.superseded),
            &now,
            &n(c.matched),
            &n(c.skipped),
            &n(c.held),
        ],
    )
    .await?;
    Ok(())
}

/// The page's per-record results, numbered after the run's last.
async fn insert_results(
    tx: &Transaction<'_>,
    run: RunId,
    results: &[RecordResult],
    redactor: &Redactor,
) -> Outcome<()> {
    if results.is_empty() {
        return Ok(());
    }
    let source: Vec<&str> = results.iter().map(|r| r.source_id.as_str()).collect();
    let destination: Vec<Option<&str>> = results
        .iter()
        .map(|r| r.destination_id.as_deref())
        .collect();
    let outcome: Vec<&str> = results.iter().map(|r| r.outcome.as_str()).collect();
    let detail: Vec<Option<std::borrow::Cow<'_, str>>> = results
        .iter()
        .map(|r| r.detail.as_deref().map(|t| redactor.scrub(t)))
        .collect();
    let detail: Vec<Option<&str>> = detail.iter().map(|d| d.as_deref()).collect();
    let st = tx
        .prepare_cached(
            "WITH base AS (SELECT COALESCE(MAX(seq), 0) AS b FROM run_records WHERE run_id = $1)
             INSERT INTO run_records (run_id, seq, source_id, destination_id, outcome, detail)
             SELECT $1, base.b + u.n, u.s, u.d, u.o, u.t
               FROM base, UNNEST($2::text[], $3::text[], $4::text[], $5::text[])
                          WITH ORDINALITY AS u(s, d, o, t, n)",
        )
        .await?;
    tx.execute(&st, &[&run, &source, &destination, &outcome, &detail])
        .await?;
    Ok(())
}

/// Open dead letters of `pipeline` whose source record this page
/// delivered (created, updated or deleted it) are resolved, in the page's
/// transaction: the record is where it should be now.
async fn resolve_dead_letters(
    tx: &Transaction<'_>,
    pipeline: &str,
    results: &[RecordResult],
) -> Outcome<()> {
    let delivered: Vec<&str> = results
        .iter()
        .filter(|r| {
            matches!(
                r.outcome,
                RecordOutcome::Created
                    | RecordOutcome::Matched
                    | RecordOutcome::Updated
                    | RecordOutcome::Deleted
            )
        })
        .map(|r| r.source_id.as_str())
        .collect();
    if delivered.is_empty() {
        return Ok(());
    }
    // One statement whatever the count (SQLite checks for open letters
    // first, then updates per record): `dead_letters_by_source` finds
    // them.
    let st = tx
        .prepare_cached(
            "UPDATE dead_letters SET status = 'resolved'
              WHERE pipeline = $1 AND status = 'open' AND source_id = ANY($2::text[])",
        )
        .await?;
    tx.execute(&st, &[&pipeline, &delivered]).await?;
    Ok(())
}

async fn insert_dead_letters(
    tx: &Transaction<'_>,
    pipeline: &str,
    run: RunId,
    page: &PageCommit,
    redactor: &Redactor,
) -> Outcome<()> {
    let letters = &page.dead_letters;
    if letters.is_empty() {
        return Ok(());
    }
    let kind: Vec<&str> = letters.iter().map(|d| d.kind.as_str()).collect();
    let source: Vec<&str> = letters.iter().map(|d| d.source_id.as_str()).collect();
    let record: Vec<std::borrow::Cow<'_, str>> =
        letters.iter().map(|d| redactor.scrub(&d.record)).collect();
    let record: Vec<&str> = record.iter().map(|t| &**t).collect();
    let error: Vec<std::borrow::Cow<'_, str>> =
        letters.iter().map(|d| redactor.scrub(&d.error)).collect();
    let error: Vec<&str> = error.iter().map(|t| &**t).collect();
    let class: Vec<&str> = letters.iter().map(|d| d.class.as_str()).collect();
    let field: Vec<Option<&str>> = letters.iter().map(|d| d.field.as_deref()).collect();
    let attempts: Vec<i64> = letters.iter().map(|d| i64::from(d.attempts)).collect();
    let st = tx
        .prepare_cached(
            "INSERT INTO dead_letters
                 (pipeline, run_id, kind, source_id, record, error, class, field, attempts)
             SELECT $1, $2, k, s, rec, e, cl, f, a
               FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                           $8::text[], $9::bigint[]) WITH ORDINALITY AS u(k, s, rec, e, cl, f, a, n)
              ORDER BY n",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &pipeline, &run, &kind, &source, &record, &error, &class, &field, &attempts,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_conflicts(
    tx: &Transaction<'_>,
    pipeline: &str,
    run: RunId,
    page: &PageCommit,
    redactor: &Redactor,
) -> Outcome<()> {
    let conflicts = &page.conflicts;
    if conflicts.is_empty() {
        return Ok(());
    }
    let entity: Vec<i64> = conflicts.iter().map(|c| c.entity_id).collect();
    let source: Vec<&str> = conflicts.iter().map(|c| c.source_id.as_str()).collect();
    let destination: Vec<&str> = conflicts
        .iter()
        .map(|c| c.destination_id.as_str())
        .collect();
    let record: Vec<std::borrow::Cow<'_, str>> = conflicts
        .iter()
        .map(|c| redactor.scrub(&c.source_record))
        .collect();
    let record: Vec<&str> = record.iter().map(|t| &**t).collect();
    let payload: Vec<std::borrow::Cow<'_, str>> = conflicts
        .iter()
        .map(|c| redactor.scrub(&c.destination_payload))
        .collect();
    let payload: Vec<&str> = payload.iter().map(|t| &**t).collect();
    let fields: Vec<String> = conflicts
        .iter()
        .map(|c| serde_json::to_string(&c.fields).map_err(corrupt))
        .collect::<Result<_, _>>()?;
    let status: Vec<&str> = conflicts
        .iter()
        .map(|c| {
            if c.resolution.is_some() {
                ConflictStatus::AutoResolved
            } else {
                ConflictStatus::Open
            }
            .as_str()
        })
        .collect();
    let resolution: Vec<Option<&str>> = conflicts.iter().map(|c| c.resolution.as_deref()).collect();
    let st = tx
        .prepare_cached(
            "INSERT INTO conflicts
                 (pipeline, run_id, entity_id, source_id, destination_id, source_record,
                  destination_payload, fields, status, resolution)
             SELECT $1, $2, e, s, d, sr, dp, f, st, r
               FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                           $8::text[], $9::text[], $10::text[])
                    WITH ORDINALITY AS u(e, s, d, sr, dp, f, st, r, n)
              ORDER BY n",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &pipeline,
            &run,
            &entity,
            &source,
            &destination,
            &record,
            &payload,
            &fields,
            &status,
            &resolution,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_log(
    tx: &Transaction<'_>,
    run: RunId,
    page: &PageCommit,
    redactor: &Redactor,
) -> Outcome<()> {
    if page.log.is_empty() {
        return Ok(());
    }
    let level: Vec<&str> = page.log.iter().map(|(l, _)| l.as_str()).collect();
    let message: Vec<std::borrow::Cow<'_, str>> =
        page.log.iter().map(|(_, m)| redactor.scrub(m)).collect();
    let message: Vec<&str> = message.iter().map(|t| &**t).collect();
    let st = tx
        .prepare_cached(
            "WITH base AS (SELECT COALESCE(MAX(seq), 0) AS b FROM run_log WHERE run_id = $1)
             INSERT INTO run_log (run_id, seq, level, message)
             SELECT $1, base.b + u.n, u.l, u.m
               FROM base, UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS u(l, m, n)",
        )
        .await?;
    tx.execute(&st, &[&run, &level, &message]).await?;
    Ok(())
}

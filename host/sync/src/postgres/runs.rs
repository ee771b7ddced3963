//! Runs on PostgreSQL: their start (ending those a dead process left
//! running), stop requests, their end, and their history read back
//! (records, log). Durations are the milliseconds between two text times
//! (`nexo_time`), as SQLite's `julianday` arithmetic gives them.

use super::{RUN_COLUMNS, corrupt, run_row};
use crate::store::{
    CancelReason, LogLevel, RecordOutcome, RecordResult, RunFilter, RunId, RunRow, RunStatus,
};
use nexo_db::StoreError;
use nexo_db::postgres::Postgres;
use nexo_runtime::sandbox::redact;

/// Ends runs left `running` by a process that died (`WHERE` and the
/// filter's value in $1 added by the caller, the error in $2): their end
/// and duration are those of their last progress.
const INTERRUPT_RUNS: &str = "UPDATE runs SET status = 'interrupted', error = $2,
         finished_at = COALESCE(last_progress_at, started_at),
         duration_ms = floor(extract(epoch FROM
             nexo_time(COALESCE(last_progress_at, started_at)) - nexo_time(started_at)) * 1000)::bigint";

/// Why a run left `running` was ended by the pipeline's next run (the
/// same words as SQLite's).
const INTERRUPTED_BY_NEXT: &str = "the process running it stopped before it finished; the next run resumed from the last committed page";

/// Why a run left `running` was ended when found with its pipeline free.
const INTERRUPTED_FOUND: &str = "the process running it stopped before it finished (killed, or the machine went down); the next run resumes from the last committed page";

/// The advisory lock class of a pipeline's run starts ("nexo" as an int4);
/// the pipeline's name hashes to the key within it.
const RUN_START_LOCK: i32 = 0x6e65_786f;

/// Start a run, ending those of the pipeline left running. Starts of one
/// pipeline take turns (an advisory lock on its name until the
/// transaction ends), as SQLite's single writer makes them: two hosts
/// starting it at once leave one run running, not two.
pub(crate) fn begin_run(pg: &Postgres, pipeline: &str) -> Result<RunId, StoreError> {
    pg.transaction(async |tx| {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&RUN_START_LOCK, &pipeline],
        )
        .await?;
        tx.execute(
            &format!("{INTERRUPT_RUNS} WHERE pipeline = $1 AND status = 'running'"),
            &[&pipeline, &INTERRUPTED_BY_NEXT],
        )
        .await?;
        let row = tx
            .query_one(
                "INSERT INTO runs (pipeline, status) VALUES ($1, 'running') RETURNING run_id",
                &[&pipeline],
            )
            .await?;
        Ok(row.try_get(0)?)
    })
}

pub(crate) fn previous_run_start(
    pg: &Postgres,
    pipeline: &str,
    before: RunId,
) -> Result<Option<String>, StoreError> {
    pg.with(async |c| {
        let row = c
            .query_opt(
                "SELECT started_at FROM runs WHERE pipeline = $1 AND run_id < $2
                 ORDER BY run_id DESC LIMIT 1",
                &[&pipeline, &before],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    })
}

pub(crate) fn request_stop(pg: &Postgres, run: RunId) -> Result<bool, StoreError> {
    pg.with(async |c| {
        Ok(c.execute(
            "UPDATE runs SET stop_requested = 1 WHERE run_id = $1 AND status = 'running'",
            &[&run],
        )
        .await?
            > 0)
    })
}

pub(crate) fn cancel_reason(pg: &Postgres, run: RunId) -> Result<Option<CancelReason>, StoreError> {
    let found = pg.with(async |c| {
        let row = c
            .query_opt(
                "SELECT r.stop_requested, p.paused
                   FROM runs r LEFT JOIN pipelines p ON p.name = r.pipeline
                  WHERE r.run_id = $1",
                &[&run],
            )
            .await?;
        row.map(|r| -> Result<(i64, Option<i64>), StoreError> {
            Ok((r.try_get(0)?, r.try_get(1)?))
        })
        .transpose()
    })?;
    Ok(match found {
        Some((stop, _)) if stop != 0 => Some(CancelReason::Requested),
        Some((_, Some(paused))) if paused != 0 => Some(CancelReason::Paused),
        _ => None,
    })
}

pub(crate) fn finish_run(
    pg: &Postgres,
    run: RunId,
    status: RunStatus,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let error = error.map(redact::scrub);
    let error = error.as_deref();
    let status = status.as_str();
    pg.with(async |c| {
        // The duration from the very text written as its end, as SQLite's
        // one `now` gives both.
        c.execute(
            "UPDATE runs SET status = $2, error = $3,
                 finished_at = nexo_now_ms(),
                 duration_ms = floor(extract(epoch FROM
                     nexo_time(nexo_now_ms()) - nexo_time(started_at)) * 1000)::bigint
             WHERE run_id = $1 AND status = 'running'",
            &[&run, &status, &error],
        )
        .await?;
        Ok(())
    })
}

pub(crate) fn interrupt_run(pg: &Postgres, run: RunId) -> Result<bool, StoreError> {
    pg.with(async |c| {
        Ok(c.execute(
            &format!("{INTERRUPT_RUNS} WHERE run_id = $1 AND status = 'running'"),
            &[&run, &INTERRUPTED_FOUND],
        )
        .await?
            > 0)
    })
}

pub(crate) fn run(pg: &Postgres, run: RunId) -> Result<Option<RunRow>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"),
            &[&run],
        )
        .await?)
    })?;
    row.as_ref().map(run_row).transpose()
}

pub(crate) fn runs(pg: &Postgres, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
    let limit = if filter.limit == 0 { 50 } else { filter.limit };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let status = filter.status.map(RunStatus::as_str);
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR status = $2)
                 ORDER BY run_id DESC LIMIT $3"
            ),
            &[&filter.pipeline, &status, &limit],
        )
        .await?)
    })?;
    rows.iter().map(run_row).collect()
}

pub(crate) fn run_records(pg: &Postgres, run: RunId) -> Result<Vec<RecordResult>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT source_id, destination_id, outcome, detail FROM run_records
             WHERE run_id = $1 ORDER BY seq",
            &[&run],
        )
        .await?)
    })?;
    rows.iter()
        .map(|r| {
            let outcome: String = r.try_get(2)?;
            Ok(RecordResult {
                source_id: r.try_get(0)?,
                destination_id: r.try_get(1)?,
                outcome: RecordOutcome::parse(&outcome)
                    .ok_or_else(|| corrupt(format!("unknown outcome `{outcome}`")))?,
                detail: r.try_get(3)?,
            })
        })
        .collect()
}

pub(crate) fn run_log(
    pg: &Postgres,
    run: RunId,
) -> Result<Vec<(String, LogLevel, String)>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT at, level, message FROM run_log WHERE run_id = $1 ORDER BY seq",
            &[&run],
        )
        .await?)
    })?;
    rows.iter()
        .map(|r| {
            let level: String = r.try_get(1)?;
            let level = LogLevel::parse(&level)
                .ok_or_else(|| corrupt(format!("unknown log level `{level}`")))?;
            Ok((r.try_get(0)?, level, r.try_get(2)?))
        })
        .collect()
}

/// Runs that ended more than `days` days ago go, with their records and
/// log (the foreign keys cascade).
pub(crate) fn prune_runs(pg: &Postgres, days: u32) -> Result<usize, StoreError> {
    let days = f64::from(days);
    pg.with(async |c| {
        let n = c
            .execute(
                "DELETE FROM runs WHERE status <> 'running'
                     AND nexo_time(COALESCE(finished_at, started_at))
                         < now() - $1::float8 * interval '1 day'",
                &[&days],
            )
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    })
}

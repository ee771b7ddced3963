//! Runs: their start (ending those a dead process left running), stop
//! requests, their end, and their history read back (records, log).

use rusqlite::{OptionalExtension, params};

use super::{RUN_COLUMNS, corrupt, run_row};
use crate::store::{
    CancelReason, LogLevel, PageCommit, RecordOutcome, RecordResult, RunFilter, RunId, RunRow,
    RunStatus, RunStore,
};
use nexo_db::{Database, StoreError};
use nexo_runtime::sandbox::redact;

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

impl RunStore for Database {
    fn begin_run(&self, pipeline: &str) -> Result<RunId, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::begin_run(pg, pipeline);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::previous_run_start(pg, pipeline, before);
        }
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

    fn commit_pages(
        &self,
        pipeline: &str,
        run: RunId,
        pages: &[PageCommit],
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::commit::commit_pages(pg, pipeline, run, pages);
        }
        super::commit::commit_in_one_transaction(self, pipeline, run, pages)
    }

    fn request_stop(&self, run: RunId) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::request_stop(pg, run);
        }
        let conn = self.lock()?;
        let changed = conn.execute(
            "UPDATE runs SET stop_requested = 1 WHERE run_id = ?1 AND status = 'running'",
            [run],
        )?;
        Ok(changed > 0)
    }

    fn cancel_reason(&self, run: RunId) -> Result<Option<CancelReason>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::cancel_reason(pg, run);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::finish_run(pg, run, status, error);
        }
        let error = error.map(redact::scrub);
        let conn = self.lock()?;
        conn.execute(
            "UPDATE runs SET status = ?2, error = ?3,
                 finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                 duration_ms = CAST((julianday('now') - julianday(started_at)) * 86400000 AS INTEGER)
             WHERE run_id = ?1 AND status = 'running'",
            params![run, status.as_str(), error],
        )?;
        Ok(())
    }

    fn interrupt_run(&self, run: RunId) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::interrupt_run(pg, run);
        }
        let conn = self.lock()?;
        Ok(conn.execute(
            &format!("{INTERRUPT_RUNS} WHERE run_id = ?1 AND status = 'running'"),
            params![run, INTERRUPTED_FOUND],
        )? > 0)
    }

    fn run(&self, run: RunId) -> Result<Option<RunRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::run(pg, run);
        }
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
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::runs(pg, filter);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY run_id DESC LIMIT ?3"
        ))?;
        let limit = if filter.limit == 0 { 50 } else { filter.limit } as i64;
        Ok(st
            .query_map(
                params![filter.pipeline, filter.status.map(RunStatus::as_str), limit],
                run_row,
            )?
            .collect::<Result<_, _>>()?)
    }

    fn run_records(&self, run: RunId) -> Result<Vec<RecordResult>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::run_records(pg, run);
        }
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

    fn run_log(&self, run: RunId) -> Result<Vec<(String, LogLevel, String)>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::run_log(pg, run);
        }
        let conn = self.lock()?;
        let mut st =
            conn.prepare("SELECT at, level, message FROM run_log WHERE run_id = ?1 ORDER BY seq")?;
        let rows = st
            .query_map([run], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(at, level, message)| {
                let level = LogLevel::parse(&level)
                    .ok_or_else(|| corrupt(format!("unknown log level `{level}`")))?;
                Ok((at, level, message))
            })
            .collect()
    }

    fn prune_runs(&self, days: u32) -> Result<usize, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::runs::prune_runs(pg, days);
        }
        let conn = self.lock()?;
        Ok(conn.execute(
            "DELETE FROM runs WHERE status <> 'running'
                 AND julianday(COALESCE(finished_at, started_at)) < julianday('now') - ?1",
            [days],
        )?)
    }
}

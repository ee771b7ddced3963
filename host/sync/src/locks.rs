//! Runs across processes: the per-pipeline lock file that keeps two runs
//! of a pipeline from overlapping (and tells a live run from one whose
//! process died), ending the runs a dead process left `running`, and
//! asking a run in another process to stop.

use std::fs::File;
use std::path::Path;

use super::SyncError;
use super::store::{RunFilter, RunId, RunRow, RunStatus, SyncStore};

/// Held for the length of a run: a lock file the OS releases if the
/// process dies, or, when hosts share the database, the pipeline's lease.
pub(super) struct RunLock {
    #[allow(dead_code)]
    file: Option<File>,
    hold: Option<super::lease::Hold>,
}

impl RunLock {
    /// No lock: a dry run, or an engine without lock files (tests on one
    /// process).
    pub fn none() -> Self {
        RunLock {
            file: None,
            hold: None,
        }
    }

    /// The pipeline's lease, claimed for this run.
    pub fn lease(hold: super::lease::Hold) -> Self {
        RunLock {
            file: None,
            hold: Some(hold),
        }
    }

    /// Tie `run` to the lease held, if one is (see `Hold::attach`).
    pub fn attach(&mut self, run: RunId) -> Result<(), SyncError> {
        match &mut self.hold {
            Some(hold) => hold.attach(run, super::retry::StopSignal::default()),
            None => Ok(()),
        }
    }
}

/// Ask run `id` to stop at its next page boundary, whichever process runs
/// it (the run reads the request from the store): it ends `cancelled`,
/// its committed pages kept. The run as it was when asked.
pub fn request_stop(store: &dyn SyncStore, id: RunId) -> Result<RunRow, SyncError> {
    let row = store.run(id)?.ok_or(SyncError::UnknownRun(id))?;
    if !store.request_stop(id)? {
        let status = store.run(id)?.map_or(row.status, |r| r.status);
        return Err(SyncError::NotRunning { run: id, status });
    }
    tracing::info!(run = id, pipeline = %row.pipeline, "stop requested");
    Ok(row)
}

/// Take the lock file of `pipeline` in `dir`, held while the returned
/// value lives (and by nobody once its process is gone).
pub(super) fn lock_pipeline(dir: &Path, pipeline: &str) -> Result<RunLock, SyncError> {
    let path = dir.join(format!("pipeline-{pipeline}.lock"));
    let fail = |reason: String| SyncError::Lock {
        pipeline: pipeline.to_string(),
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fail(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock {
            file: Some(file),
            hold: None,
        }),
        Err(std::fs::TryLockError::WouldBlock) => Err(SyncError::Busy(pipeline.to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e.to_string())),
    }
}

/// Mark `interrupted` every run still `running` whose pipeline lock
/// (in `locks`) is free: its process was killed or its machine went down,
/// since a live run holds the lock from before it is recorded until it
/// ends. Its end and duration are those of its last progress (a committed
/// page or a line in its log). Called by the commands that show runs and
/// by the daemon; returns the runs it ended.
pub fn reap_interrupted(store: &dyn SyncStore, locks: &Path) -> Result<Vec<RunId>, SyncError> {
    let running = store.runs(&RunFilter {
        pipeline: None,
        status: Some(RunStatus::Running),
        limit: 1_000,
    })?;
    let mut ended = Vec::new();
    for run in running {
        match lock_pipeline(locks, &run.pipeline) {
            Ok(_held) => {
                if store.interrupt_run(run.id)? {
                    tracing::warn!(run = run.id, pipeline = %run.pipeline, "run left running by a process that stopped; marked interrupted");
                    ended.push(run.id);
                }
            }
            Err(SyncError::Busy(_)) => {}
            Err(e) => {
                tracing::warn!(run = run.id, pipeline = %run.pipeline, error = %e, "cannot tell whether the run is still alive");
            }
        }
    }
    Ok(ended)
}

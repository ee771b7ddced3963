//! The sync engine: pipelines that move records from one connection to
//! another through mappers, exactly once. Each page read is mapped, checked
//! by the quality gate, written, and then its whole outcome — cursor,
//! identity links, per-record results, dead letters, conflicts, log — is
//! committed in one transaction, so a run killed at any instant resumes from
//! the last committed page with nothing lost and nothing written twice.
//!
//! **Owns** pipelines, runs, the identity map, the dead-letter and conflict
//! queues, their store traits (by concern) and their implementations on
//! SQLite and PostgreSQL. **Must not touch** wasmtime or generated bindings (plugins are
//! reached through `nexo-runtime`'s types and this crate's ports), HTTP
//! serving or the command line: the daemon and the CLI drive it.

mod apply;
pub mod bounds;
pub mod check;
mod commit;
pub mod compare;
pub mod content;
#[cfg(test)]
mod core_tests;
mod decide;
mod delivery;
mod driver;
mod dry_run;
mod engine;
pub mod gate;
pub mod gate_check;
pub mod going_live;
#[cfg(test)]
mod going_live_tests;
mod lease;
mod locks;
pub mod lookback;
mod mapping;
pub mod matching;
mod page;
pub mod pipeline;
pub mod plan;
mod ports;
mod postgres;
mod prepared;
pub mod promote;
mod queue;
pub mod retry;
pub mod review;
pub mod schedule;
mod settle;
pub(crate) mod sqlite;
pub mod store;
#[cfg(test)]
mod store_tests;
pub mod survey_read;
#[cfg(test)]
mod testkit;

pub use bounds::{LimitHit, RunLimits};
pub use engine::{
    ApplyOptions, Engine, PlannedChange, Progress, RunOptions, RunReport, StopSignal,
};
pub use lease::HostLease;
pub use locks::{reap_interrupted, request_stop};
pub use pipeline::{ConflictPolicy, DeletePolicy, Pipeline, PipelineError, SyncMode};
pub use queue::Side;
pub use store::{
    CancelReason, LinkStore, LogLevel, PageStore, PipelineStore, QueueStore, RecordOutcome, RunId,
    RunStatus, RunStore, SettingStore, SyncStore,
};

use nexo_db::StoreError;
use nexo_registry::RegistryError;
use nexo_registry::connections::ConnectionError;
use nexo_runtime::PluginError;

impl SyncError {
    /// A run's stop with its count of committed pages brought up to date
    /// (the count when the stop was seen can miss the page in hand).
    pub(crate) fn with_pages(mut self, committed: u64) -> Self {
        if let SyncError::Stopped { pages, .. }
        | SyncError::LeaseLost { pages, .. }
        | SyncError::Cancelled { pages, .. }
        | SyncError::Limit { pages, .. } = &mut self
        {
            *pages = committed;
        }
        self
    }

    /// A short class for metrics and error patterns.
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::UnknownPipeline(_)
            | SyncError::Pipeline(_)
            | SyncError::UnknownRun(_)
            | SyncError::Promote(_) => "config",
            SyncError::NotRunning { .. } => "busy",
            SyncError::Paused(_) => "paused",
            SyncError::Busy(_) | SyncError::Lock { .. } => "busy",
            SyncError::Connection { .. } => "connection",
            SyncError::Mapper { .. } => "mapper",
            // A system that refused the credentials (or a connection
            // needing re-authorization) is an `auth` failure: a person
            // must act, retrying does not help.
            SyncError::Plugin { source, .. }
                if matches!(
                    source.guest_error(),
                    Some(nexo_runtime::GuestError::Auth(_))
                ) =>
            {
                "auth"
            }
            SyncError::Plugin { .. } => "plugin",
            SyncError::Outage { .. } => "outage",
            SyncError::Malformed { .. } => "malformed",
            SyncError::Stream { .. } => "stream",
            SyncError::Stopped { .. }
            | SyncError::LeaseLost { .. }
            | SyncError::Cancelled { .. } => "stopped",
            SyncError::Limit { .. } => "limit",
            SyncError::Queue(_) | SyncError::Review(_) => "queue",
            SyncError::Store(_) => "storage",
            SyncError::Registry(_) => "registry",
            SyncError::Serialize { .. } => "internal",
        }
    }
}

/// A sync operation that failed. Pages committed before the failure stay
/// committed; the failing page left no trace and is redone by the next run.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No such pipeline.
    #[error("no pipeline named `{0}`; see `nexo pipeline list`")]
    UnknownPipeline(String),
    /// Paused.
    #[error("pipeline `{0}` is paused; resume it with `nexo pipeline resume {0}`")]
    Paused(String),
    /// Another run of the pipeline is in progress.
    #[error("pipeline `{0}` is already running (in another process); wait for it to finish")]
    Busy(String),
    /// The definition does not fit the installed connections and plugins.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A promotion to production that cannot go ahead.
    #[error(transparent)]
    Promote(#[from] promote::PromoteError),
    /// A connection could not be opened.
    #[error("pipeline `{pipeline}`: {source}")]
    Connection {
        /// Pipeline.
        pipeline: String,
        /// Why (boxed: connection errors are large).
        source: Box<ConnectionError>,
    },
    /// A mapper could not be loaded.
    #[error("pipeline `{pipeline}`: mapper {plugin}: {reason}")]
    Mapper {
        /// Pipeline.
        pipeline: String,
        /// Mapper plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A plugin call failed for the whole page (after retries).
    #[error("pipeline `{pipeline}`: {step} failed: {source}")]
    Plugin {
        /// Pipeline.
        pipeline: String,
        /// `read`, `map`, `write`, `discover`.
        step: &'static str,
        /// The plugin's error (boxed: plugin errors are large).
        source: Box<PluginError>,
    },
    /// A read or write kept failing with transient errors (the system is
    /// down, overloaded or rate-limiting) until the retries ran out.
    #[error(
        "pipeline `{pipeline}`: {step} on connection `{connection}` still failing after {attempts} attempts over {seconds} s: {source}; {limit}. Pages committed before stay committed and the next run resumes after them"
    )]
    Outage {
        /// Pipeline.
        pipeline: String,
        /// `read` or `write`.
        step: &'static str,
        /// The connection that is down.
        connection: String,
        /// Attempts made.
        attempts: u32,
        /// Seconds from the first failure to the last.
        seconds: u64,
        /// What ended the retries.
        limit: retry::OutageLimit,
        /// The last failure (boxed: plugin errors are large).
        source: Box<PluginError>,
    },
    /// A plugin answered something the engine cannot use.
    #[error("pipeline `{pipeline}`: {message}")]
    Malformed {
        /// Pipeline.
        pipeline: String,
        /// What is wrong.
        message: String,
    },
    /// Stream not offered, not readable or not writable.
    #[error("pipeline `{pipeline}`: {message}")]
    Stream {
        /// Pipeline.
        pipeline: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The run stopped at a page boundary because the host is shutting down.
    #[error(
        "pipeline `{pipeline}` stopped after {pages} committed pages because the host is shutting down; the next run resumes from there"
    )]
    Stopped {
        /// Pipeline.
        pipeline: String,
        /// Pages committed before stopping.
        pages: u64,
    },
    /// The run stopped at a page boundary because its host lost its lease
    /// on the pipeline (cut off from the database past it): another host
    /// took the pipeline over.
    #[error(
        "pipeline `{pipeline}` stopped after {pages} committed pages because this host lost its lease on it (cut off from the database for longer than the lease) and another host took it over, resuming from the last committed page"
    )]
    LeaseLost {
        /// Pipeline.
        pipeline: String,
        /// Pages committed before stopping.
        pages: u64,
    },
    /// The run stopped at a page boundary because a person asked: `nexo run
    /// stop`, the API or the console, or a pause of the pipeline.
    #[error(
        "pipeline `{pipeline}` stopped after {pages} committed pages because {why}; the next run resumes from there"
    )]
    Cancelled {
        /// Pipeline.
        pipeline: String,
        /// Pages committed before stopping.
        pages: u64,
        /// Who asked.
        why: CancelReason,
    },
    /// The run reached one of the pipeline's limits; the pages it
    /// committed stay committed.
    #[error(
        "pipeline `{pipeline}`: run stopped after {pages} committed pages: {hit}; the next run resumes from there"
    )]
    Limit {
        /// Pipeline.
        pipeline: String,
        /// Pages committed before stopping.
        pages: u64,
        /// The limit.
        hit: LimitHit,
    },
    /// No such run.
    #[error("no run #{0}; see `nexo runs`")]
    UnknownRun(RunId),
    /// A stop asked of a run that is not running.
    #[error("run #{run} is not running (it is {status}); only a running run can be stopped")]
    NotRunning {
        /// The run.
        run: RunId,
        /// Its status.
        status: RunStatus,
    },
    /// A dead letter or conflict that cannot be acted on.
    #[error("{0}")]
    Queue(String),
    /// A review that cannot be decided as asked (unknown, decided already,
    /// a pick that is not one of its candidates, a candidate linked
    /// already).
    #[error(transparent)]
    Review(#[from] review::ReviewError),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A record could not be turned into the JSON kept in the dead-letter
    /// or conflict queue. Never stored as an empty record: the page fails
    /// and is redone by the next run.
    #[error(
        "pipeline `{pipeline}`: cannot serialise {what} of record {record} for the queue: {source}; this is a bug in Nexo, please report it"
    )]
    Serialize {
        /// Pipeline.
        pipeline: String,
        /// What was being serialised (`the write to dead-letter`, …).
        what: &'static str,
        /// The source record's id.
        record: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Lock file trouble.
    #[error("cannot lock pipeline `{pipeline}` at {path}: {reason}")]
    Lock {
        /// Pipeline.
        pipeline: String,
        /// Lock file.
        path: String,
        /// Why.
        reason: String,
    },
}

//! The narrow storage interface the sync engine needs, split by concern so
//! each part of the engine asks only for what it uses: [`LinkStore`] (the
//! identity map, the page path's lookups), [`RunStore`] (runs and the
//! page commit that makes a page's effects atomic), [`QueueStore`] (dead
//! letters and conflicts), [`PipelineStore`] and [`SettingStore`].
//! [`PageStore`] is what a run's pages use (links, runs, queues);
//! [`SyncStore`] is their union, implemented by every type that has them
//! all. `nexo_db::Database` implements them on SQLite (`crate::sqlite`)
//! and, for several hosts sharing one database, on PostgreSQL
//! (`crate::postgres`, to which each SQLite method forwards first); the
//! unit tests of the core run on an in-memory one (`crate::testkit`).

mod links;
mod queues;
pub(crate) mod reviews;
mod runs;

pub use links::{DELETED_IN_STEP, Link, LinkUpdate};
pub use queues::{
    Conflict, ConflictStatus, DeadLetter, DeadLetterKind, DeadLetterStatus, NewConflict,
    NewDeadLetter,
};
pub use reviews::{
    HeldRecord, MatchCounts, NewReview, Review, ReviewCandidate, ReviewDecision, ReviewFilter,
    ReviewStatus,
};
pub use runs::{
    CancelReason, Counts, LogLevel, PageCommit, RecordOutcome, RecordResult, RunFilter, RunId,
    RunRow, RunStatus,
};

use crate::pipeline::{Endpoint, Pipeline};
use nexo_db::StoreError;

/// Pipeline row with its saved cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRow {
    /// The definition.
    pub pipeline: Pipeline,
    /// Paused by a person (or after failures).
    pub paused: bool,
    /// Why it was paused, when the host paused it (none when a person did).
    pub paused_reason: Option<String>,
    /// Saved read state.
    pub state: Option<String>,
    /// Saved destination change-tracking state.
    pub destination_state: Option<String>,
}

/// Pipeline definitions and their saved cursors.
pub trait PipelineStore: Send + Sync {
    /// Save (create or replace) a pipeline definition. Replacing keeps its
    /// cursor unless the source changed.
    fn save_pipeline(&self, pipeline: &Pipeline) -> Result<(), StoreError>;
    /// A pipeline with its state.
    fn pipeline(&self, name: &str) -> Result<Option<PipelineRow>, StoreError>;
    /// All pipelines.
    fn pipelines(&self) -> Result<Vec<PipelineRow>, StoreError>;
    /// Remove a pipeline and its state (run history stays).
    fn delete_pipeline(&self, name: &str) -> Result<bool, StoreError>;
    /// Pause or resume a pipeline (`false` if there is no such pipeline).
    fn set_paused(
        &self,
        name: &str,
        paused: bool,
        reason: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Forget the cursor so the next run reads everything.
    fn reset_state(&self, name: &str) -> Result<(), StoreError>;
}

/// The identity map: the page path's lookups (by record id, by entity,
/// the sweep's candidates) and the entity reads of the console.
pub trait LinkStore: Send + Sync {
    /// Links of these records of one connection/stream to entities of one
    /// type, by record id, with their sync state with `peer` (none without).
    fn links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        ids: &[&str],
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError>;
    /// Every link of one record, whatever the entity type (a won deal can be
    /// both a customer and an invoice).
    fn record_links(
        &self,
        connection: &str,
        stream: &str,
        id: &str,
    ) -> Result<Vec<Link>, StoreError>;
    /// The record of these entities in one connection/stream, with its
    /// sync state with `peer` (none without).
    fn links_of_entities(
        &self,
        entities: &[i64],
        connection: &str,
        stream: &str,
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError>;
    /// Entities with a record whose id is `q` or whose last known content
    /// contains `q` (case-insensitive): (entity id, entity type), at most
    /// `limit`.
    fn search_entities(&self, q: &str, limit: usize) -> Result<Vec<(i64, String)>, StoreError>;
    /// Every link of an entity (the 360° view).
    fn entity(&self, entity_id: i64) -> Result<Vec<Link>, StoreError>;
    /// Links of a connection/stream to entities of one type whose delete
    /// is not settled for `peer` — not deleted there, or deleted but not
    /// yet in step with `peer` as deleted ([`DELETED_IN_STEP`]): the
    /// candidates of a full refresh's sweep (those the run did not read
    /// are gone).
    fn unswept_links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        peer: &Endpoint,
    ) -> Result<Vec<Link>, StoreError>;
}

/// Runs: their start, each page's atomic commit, stop requests, their end,
/// and the history read back.
pub trait RunStore: Send + Sync {
    /// Start a run (marks runs of this pipeline left `running` by a dead
    /// process as interrupted).
    fn begin_run(&self, pipeline: &str) -> Result<RunId, StoreError>;
    /// When the previous run of a pipeline started (for look-back).
    fn previous_run_start(
        &self,
        pipeline: &str,
        before: RunId,
    ) -> Result<Option<String>, StoreError>;
    /// Apply several pages' effects, each in turn as if committed alone,
    /// all in one transaction: all of them or none.
    fn commit_pages(
        &self,
        pipeline: &str,
        run: RunId,
        pages: &[PageCommit],
    ) -> Result<(), StoreError>;
    /// Apply one page atomically.
    fn commit_page(&self, pipeline: &str, run: RunId, page: &PageCommit) -> Result<(), StoreError> {
        self.commit_pages(pipeline, run, std::slice::from_ref(page))
    }
    /// Ask a running run to stop at its next page boundary; `false` when
    /// the run is not running.
    fn request_stop(&self, run: RunId) -> Result<bool, StoreError>;
    /// Whether `run` should stop at this page boundary, and why: a stop
    /// was requested for it, or its pipeline was paused.
    fn cancel_reason(&self, run: RunId) -> Result<Option<CancelReason>, StoreError>;
    /// End a run.
    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// One run.
    fn run(&self, run: RunId) -> Result<Option<RunRow>, StoreError>;
    /// Mark a run left `running` by a process that died `interrupted`,
    /// ended at its last progress; false when it was not running.
    fn interrupt_run(&self, run: RunId) -> Result<bool, StoreError>;
    /// Runs, newest first.
    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError>;
    /// A run's per-record outcomes.
    fn run_records(&self, run: RunId) -> Result<Vec<RecordResult>, StoreError>;
    /// A run's log: (when, level, message), oldest first.
    fn run_log(&self, run: RunId) -> Result<Vec<(String, LogLevel, String)>, StoreError>;
    /// Delete runs (with records and logs) that ended before `days` ago.
    fn prune_runs(&self, days: u32) -> Result<usize, StoreError>;
}

/// The dead-letter and conflict queues (filled by page commits).
pub trait QueueStore: Send + Sync {
    /// Dead letters, optionally of one pipeline and status.
    fn dead_letters(
        &self,
        pipeline: Option<&str>,
        status: Option<DeadLetterStatus>,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    /// One dead letter.
    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError>;
    /// Mark a dead letter discarded.
    fn discard_dead_letter(&self, id: i64) -> Result<bool, StoreError>;
    /// Conflicts, optionally of one pipeline and status.
    fn conflicts(
        &self,
        pipeline: Option<&str>,
        status: Option<ConflictStatus>,
    ) -> Result<Vec<Conflict>, StoreError>;
    /// One conflict.
    fn conflict(&self, id: i64) -> Result<Option<Conflict>, StoreError>;
    /// Whether an entity has an open conflict in `pipeline` (a conflict
    /// with one destination does not hold the entity's other pipelines).
    fn has_open_conflict(&self, entity_id: i64, pipeline: &str) -> Result<bool, StoreError>;
}

/// Host-wide settings of the sync engine (run retention).
pub trait SettingStore: Send + Sync {
    /// A setting.
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Change a setting.
    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// The review queue of matching before the first sync (written by page
/// commits: a pass's new reviews, a decision, a delivery).
pub trait ReviewStore: Send + Sync {
    /// Of the source records `ids` of `pipeline`, those waiting in the
    /// queue undelivered: id → (review, status). An open one is held back;
    /// a decided one is delivered by the run that reads it.
    fn waiting_reviews(
        &self,
        pipeline: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, (i64, ReviewStatus)>, StoreError>;
    /// Reviews a person decided whose record no run delivered yet, oldest
    /// first.
    fn decided_reviews(&self, pipeline: &str) -> Result<Vec<Review>, StoreError>;
    /// Reviews, newest first.
    fn reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>, StoreError>;
    /// One review.
    fn review(&self, id: i64) -> Result<Option<Review>, StoreError>;
    /// The last matching pass of `pipeline`: when, and what it found.
    fn match_pass(&self, pipeline: &str) -> Result<Option<(String, MatchCounts)>, StoreError>;
}

/// What a run's pages use: the identity map, the run's commits, and the
/// conflict and review queues. The page path holds one of these (the real
/// store, or a dry run's recording wrapper).
pub trait PageStore: LinkStore + RunStore + QueueStore + ReviewStore {}

impl<T> PageStore for T where T: LinkStore + RunStore + QueueStore + ReviewStore + ?Sized {}

/// Everything the sync engine stores: the union of the traits above, so
/// code that needs the whole store (the CLI, the daemon) names one trait.
pub trait SyncStore: PipelineStore + PageStore + SettingStore {}

impl<T> SyncStore for T where T: PipelineStore + PageStore + SettingStore + ?Sized {}

impl nexo_runtime::metrics::OutcomeCounts for Counts {
    fn by_outcome(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("created", self.created),
            ("matched", self.matched),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("deleted", self.deleted),
            ("failed", self.failed),
            ("quarantined", self.quarantined),
            ("conflict", self.conflicts),
        ]
    }
}

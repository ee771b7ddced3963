//! The narrow storage interface the sync engine needs. SQLite implements it
//! today (`crate::store::sync`); a PostgreSQL backend for several hosts can
//! implement the same trait later. Every method is one short transaction;
//! [`SyncStore::commit_page`] is the one that makes a page's effects atomic.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use std::sync::Arc;

use crate::sync::pipeline::{Endpoint, Pipeline};

/// Identifies a run.
pub type RunId = i64;

/// One record of one system, as the identity map knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Entity it belongs to (shared by its copies in other systems).
    pub entity_id: i64,
    /// Connection.
    pub connection: String,
    /// Stream.
    pub stream: String,
    /// Its id in that system.
    pub record_id: String,
    /// Latest content known (JSON object, system fields removed).
    pub known: Option<String>,
    /// Hash of the content as of the last sync by Nexo with the peer the
    /// lookup named (the pipeline's other end): when the system's record
    /// still hashes to this, nothing changed since it was last in step
    /// with that peer. Sync state is kept per record *and* peer, so a
    /// record delivered to one destination is still news to another.
    /// `None` when never synced with that peer (or no peer was named).
    pub synced_hash: Option<String>,
    /// Its cursor value (modification time) when last seen.
    pub version: Option<String>,
    /// Whether it is deleted in that system.
    pub deleted: bool,
}

/// The synced hash of a source record whose delete is settled for a peer
/// (written, or nothing to do there): the record is in step with that peer
/// as deleted, and a full refresh's sweep does not offer it again. Not a
/// hash (those are hex), so no content can match it.
pub const DELETED_IN_STEP: &str = "deleted";

/// A change to the identity map, applied with a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUpdate {
    /// Entity: `None` creates a new one.
    pub entity_id: Option<i64>,
    /// Entity type (for new entities).
    pub entity: String,
    /// Other records of the same new entity in this commit: updates with the
    /// same `group` share the entity created for the first one.
    pub group: usize,
    /// Connection.
    pub connection: String,
    /// Stream.
    pub stream: String,
    /// Record id.
    pub record_id: String,
    /// New known content, if it changed.
    pub known: Option<String>,
    /// New synced hash with `peer`, if it changed.
    pub synced_hash: Option<String>,
    /// The other end of the pipeline making this update: `synced_hash`
    /// records that this record is in step with that connection/stream
    /// (and with no other).
    pub peer: Arc<Endpoint>,
    /// New version, if known.
    pub version: Option<String>,
    /// Deleted in that system.
    pub deleted: bool,
}

impl LinkUpdate {
    /// An update of `link`, an entity of type `entity`, seen by a pipeline
    /// whose other end is `peer`, that changes nothing of its content
    /// (callers set what they learnt).
    pub fn of_link(entity: &str, link: &Link, peer: &Arc<Endpoint>) -> Self {
        LinkUpdate {
            entity_id: Some(link.entity_id),
            entity: entity.to_string(),
            group: 0,
            connection: link.connection.clone(),
            stream: link.stream.clone(),
            record_id: link.record_id.clone(),
            known: None,
            synced_hash: None,
            peer: peer.clone(),
            version: None,
            deleted: false,
        }
    }
}

/// What happened to one record in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordOutcome {
    /// Created in the destination.
    Created,
    /// To be created, but the destination already held it: the connector
    /// found it by the idempotency key or a code (a lost answer, a record
    /// made there before) and answered with its id instead of creating one.
    Matched,
    /// Updated in the destination.
    Updated,
    /// Nothing to do (no change, an echo of Nexo's own write, or owned by
    /// the destination).
    Unchanged,
    /// Deleted (or archived) in the destination.
    Deleted,
    /// Write failed; in the dead-letter queue.
    Failed,
    /// Refused by the data-quality gate; in the dead-letter queue.
    Quarantined,
    /// Both sides changed; held or resolved by policy.
    Conflict,
}

impl RecordOutcome {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordOutcome::Created => "created",
            RecordOutcome::Matched => "matched",
            RecordOutcome::Updated => "updated",
            RecordOutcome::Unchanged => "unchanged",
            RecordOutcome::Deleted => "deleted",
            RecordOutcome::Failed => "failed",
            RecordOutcome::Quarantined => "quarantined",
            RecordOutcome::Conflict => "conflict",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => RecordOutcome::Created,
            "matched" => RecordOutcome::Matched,
            "updated" => RecordOutcome::Updated,
            "unchanged" => RecordOutcome::Unchanged,
            "deleted" => RecordOutcome::Deleted,
            "failed" => RecordOutcome::Failed,
            "quarantined" => RecordOutcome::Quarantined,
            "conflict" => RecordOutcome::Conflict,
            _ => return None,
        })
    }
}

/// One record's line in the run history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    /// Id in the source.
    pub source_id: String,
    /// Id in the destination, when there is one.
    pub destination_id: Option<String>,
    /// Outcome.
    pub outcome: RecordOutcome,
    /// Why (error, reason for unchanged, conflict resolution).
    pub detail: Option<String>,
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Records read from the source.
    pub read: u64,
    /// Created.
    pub created: u64,
    /// Updated.
    pub updated: u64,
    /// Unchanged.
    pub unchanged: u64,
    /// Deleted or archived.
    pub deleted: u64,
    /// Failed (dead-lettered).
    pub failed: u64,
    /// Quarantined by the quality gate.
    pub quarantined: u64,
    /// Conflicts met.
    pub conflicts: u64,
    /// Creates the destination answered with a record it already held.
    #[serde(default)]
    pub matched: u64,
    /// Records read but left out because a later record of the same page
    /// has the same id (the last one wins).
    #[serde(default)]
    pub superseded: u64,
}

impl Counts {
    /// Count one outcome.
    pub fn add(&mut self, outcome: RecordOutcome) {
        match outcome {
            RecordOutcome::Created => self.created += 1,
            RecordOutcome::Matched => self.matched += 1,
            RecordOutcome::Updated => self.updated += 1,
            RecordOutcome::Unchanged => self.unchanged += 1,
            RecordOutcome::Deleted => self.deleted += 1,
            RecordOutcome::Failed => self.failed += 1,
            RecordOutcome::Quarantined => self.quarantined += 1,
            RecordOutcome::Conflict => self.conflicts += 1,
        }
    }

    /// Add another set of counts.
    pub fn merge(&mut self, other: &Counts) {
        self.read += other.read;
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self.quarantined += other.quarantined;
        self.conflicts += other.conflicts;
        self.superseded += other.superseded;
        self.matched += other.matched;
    }

    /// Records written to the destination (a matched create was sent).
    pub fn written(&self) -> u64 {
        self.created + self.matched + self.updated + self.deleted
    }
}

/// Why a record is in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The destination refused the write, or retries ran out.
    Failed,
    /// The quality gate refused the mapped record.
    Quarantined,
    /// The source sent a record whose payload the engine cannot use (not a
    /// JSON object, too large, nested too deep, a number out of range). It
    /// cannot be replayed: it is fixed in the source, then read again.
    Malformed,
}

impl DeadLetterKind {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Failed => "failed",
            DeadLetterKind::Quarantined => "quarantined",
            DeadLetterKind::Malformed => "malformed",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "failed" => DeadLetterKind::Failed,
            "quarantined" => DeadLetterKind::Quarantined,
            "malformed" => DeadLetterKind::Malformed,
            _ => return None,
        })
    }
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterStatus {
    /// Waiting for a person (replay or discard) or a later run.
    Open,
    /// Written again by `nexo dlq replay`.
    Replayed,
    /// Dropped by a person.
    Discarded,
    /// A later run of the same pipeline delivered the same source record
    /// (marked in the transaction of that run's page).
    Resolved,
}

impl DeadLetterStatus {
    /// Every status, in the order shown.
    pub const ALL: [DeadLetterStatus; 4] = [
        DeadLetterStatus::Open,
        DeadLetterStatus::Replayed,
        DeadLetterStatus::Discarded,
        DeadLetterStatus::Resolved,
    ];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Discarded => "discarded",
            DeadLetterStatus::Resolved => "resolved",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for DeadLetterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a conflict stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictStatus {
    /// Held for a person (`policy = "hold"`).
    Open,
    /// Settled by a person (`nexo conflict resolve`, the API, the console).
    Resolved,
    /// Settled by the pipeline's conflict policy during the run that met it.
    AutoResolved,
}

impl ConflictStatus {
    /// Every status, in the order shown.
    pub const ALL: [ConflictStatus; 3] = [
        ConflictStatus::Open,
        ConflictStatus::Resolved,
        ConflictStatus::AutoResolved,
    ];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictStatus::Open => "open",
            ConflictStatus::Resolved => "resolved",
            ConflictStatus::AutoResolved => "auto-resolved",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for ConflictStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// Why.
    pub kind: DeadLetterKind,
    /// Source id.
    pub source_id: String,
    /// The mapped record as it would be written (JSON of the record).
    pub record: String,
    /// The error.
    pub error: String,
    /// Its class (`rejected`, `transient`, `schema`, `model`, …).
    pub class: String,
    /// The field at fault, when known.
    pub field: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Run that put it there.
    pub run_id: RunId,
    /// Where it stands.
    pub status: DeadLetterStatus,
    /// When.
    pub created_at: String,
    /// The letter.
    pub letter: NewDeadLetter,
}

/// A conflict met in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConflict {
    /// Entity.
    pub entity_id: i64,
    /// Source id.
    pub source_id: String,
    /// Destination id.
    pub destination_id: String,
    /// The mapped source version (JSON of the record to write).
    pub source_record: String,
    /// The destination's known version (JSON object).
    pub destination_payload: String,
    /// Fields that differ.
    pub fields: Vec<String>,
    /// `open` (held) or how the policy settled it.
    pub resolution: Option<String>,
}

/// A stored conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Run.
    pub run_id: RunId,
    /// Where it stands.
    pub status: ConflictStatus,
    /// When.
    pub created_at: String,
    /// The conflict.
    pub conflict: NewConflict,
}

/// Everything one page changes, committed atomically.
#[derive(Debug, Clone, Default)]
pub struct PageCommit {
    /// Read state to resume from (`None`: keep the current one).
    pub state: Option<String>,
    /// Destination change-tracking state, when it advanced.
    pub destination_state: Option<String>,
    /// Identity-map changes.
    pub links: Vec<LinkUpdate>,
    /// Per-record outcomes.
    pub results: Vec<RecordResult>,
    /// Counts to add to the run.
    pub counts: Counts,
    /// New dead letters.
    pub dead_letters: Vec<NewDeadLetter>,
    /// New conflicts.
    pub conflicts: Vec<NewConflict>,
    /// Log lines (level, message).
    pub log: Vec<(String, String)>,
    /// Dead letters settled by this commit (replay).
    pub settle_dead_letters: Vec<(i64, DeadLetterStatus)>,
    /// Conflicts settled by this commit (resolve).
    pub settle_conflicts: Vec<(i64, String)>,
}

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// In progress (or its process died: see `interrupted`).
    Running,
    /// Finished; every record has an outcome.
    Succeeded,
    /// Stopped by an error; committed pages stay committed.
    Failed,
    /// The process stopped before finishing; the next run resumes.
    Interrupted,
    /// A person stopped it (or paused its pipeline); committed pages stay
    /// committed and the next run resumes after them.
    Cancelled,
}

impl RunStatus {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// Why a run was asked to stop at its next page boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// Someone asked for this run to stop (`nexo run stop`, the API, the
    /// console).
    Requested,
    /// Its pipeline was paused.
    Paused,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelReason::Requested => {
                "a stop was requested (`nexo run stop`, the API or the console)"
            }
            CancelReason::Paused => {
                "the pipeline was paused (resume it with `nexo pipeline resume`)"
            }
        })
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Id.
    pub id: RunId,
    /// Pipeline.
    pub pipeline: String,
    /// Status text.
    pub status: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Pages committed.
    pub pages: i64,
    /// Counts.
    pub counts: Counts,
    /// Error, when failed.
    pub error: Option<String>,
}

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

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// At most this many (newest first).
    pub limit: usize,
}

/// The storage the sync engine runs on.
pub trait SyncStore: Send + Sync {
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
    /// Every link of an entity (the 360° view).
    /// Entities with a record whose id is `q` or whose last known content
    /// contains `q` (case-insensitive): (entity id, entity type), at most
    /// `limit`.
    fn search_entities(&self, q: &str, limit: usize) -> Result<Vec<(i64, String)>, StoreError>;
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
    /// Start a run (marks runs of this pipeline left `running` by a dead
    /// process as interrupted).
    fn begin_run(&self, pipeline: &str) -> Result<RunId, StoreError>;
    /// When the previous run of a pipeline started (for look-back).
    fn previous_run_start(
        &self,
        pipeline: &str,
        before: RunId,
    ) -> Result<Option<String>, StoreError>;
    /// Apply one page atomically.
    fn commit_page(&self, pipeline: &str, run: RunId, page: &PageCommit) -> Result<(), StoreError>;
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
    /// A run's log.
    fn run_log(&self, run: RunId) -> Result<Vec<(String, String, String)>, StoreError>;
    /// Delete runs (with records and logs) that ended before `days` ago.
    fn prune_runs(&self, days: u32) -> Result<usize, StoreError>;

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

    /// A setting.
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Change a setting.
    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

//! A run's records: what happened to each record, the run's counts and
//! status, its log lines, and the one commit that carries a page's effects.

use serde::{Deserialize, Serialize};

use super::links::LinkUpdate;
use super::queues::{DeadLetterStatus, NewConflict, NewDeadLetter};

/// Identifies a run.
pub type RunId = i64;

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
    /// Left out on purpose by the pipeline's mappers.
    Skipped,
    /// Held back: the record waits for a person to review its match with a
    /// destination record (`nexo review`); neither created nor dropped.
    Held,
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
            RecordOutcome::Skipped => "skipped",
            RecordOutcome::Held => "held",
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
            "skipped" => RecordOutcome::Skipped,
            "held" => RecordOutcome::Held,
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
    /// Records the pipeline's mappers left out on purpose.
    #[serde(default)]
    pub skipped: u64,
    /// Records held back because they wait for a review of their match.
    #[serde(default)]
    pub held: u64,
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
            RecordOutcome::Skipped => self.skipped += 1,
            RecordOutcome::Held => self.held += 1,
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
        self.skipped += other.skipped;
        self.held += other.held;
    }

    /// Records written to the destination (a matched create was sent).
    pub fn written(&self) -> u64 {
        self.created + self.matched + self.updated + self.deleted
    }
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
    pub log: Vec<(LogLevel, String)>,
    /// Dead letters settled by this commit (replay).
    pub settle_dead_letters: Vec<(i64, DeadLetterStatus)>,
    /// Conflicts settled by this commit (resolve).
    pub settle_conflicts: Vec<(i64, String)>,
    /// Records queued for review by a matching pass.
    pub new_reviews: Vec<super::reviews::NewReview>,
    /// Reviews a person decided (with the links an acceptance makes).
    pub decide_reviews: Vec<super::reviews::ReviewDecision>,
    /// Held records' newest copies, kept with their reviews.
    pub hold_reviews: Vec<(i64, super::reviews::HeldRecord)>,
    /// Open reviews whose record was deleted in the source.
    pub withdraw_reviews: Vec<i64>,
    /// Decided reviews whose record this commit delivered.
    pub deliver_reviews: Vec<i64>,
    /// A matching pass ended with this commit: what it found.
    pub match_pass: Option<super::reviews::MatchCounts>,
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
    /// Every status.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
    ];

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

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Parse what a person typed (`--status`, `?status=`), or say which
    /// statuses there are.
    pub fn from_filter(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
            format!("unknown run status `{s}`; use one of {}", known.join(", "))
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for RunStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A status compares with its text form (`run.status == "failed"`), as the
/// status did when it was a string.
impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for RunStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// How much a line of a run's log matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// What happened.
    Info,
    /// Something a person may want to look at (a record quarantined, a
    /// retry, a run stopped).
    Warn,
    /// Why a run failed.
    Error,
}

impl LogLevel {
    /// Every level.
    pub const ALL: [LogLevel; 3] = [LogLevel::Info, LogLevel::Warn, LogLevel::Error];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so `{level:5}` lines log levels up.
        f.pad(self.as_str())
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A level compares with its text form (`level == "warn"`), as the level
/// did when it was a string.
impl PartialEq<&str> for LogLevel {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for LogLevel {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
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
    /// Status.
    pub status: RunStatus,
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

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// At most this many (newest first).
    pub limit: usize,
}

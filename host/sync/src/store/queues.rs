//! The queues a person works through: dead letters (records that could not
//! be delivered) and conflicts (both sides changed), with their statuses.

use serde::{Deserialize, Serialize};

use super::runs::RunId;

/// Why a record is in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The destination refused the write, or retries ran out.
    Failed,
    /// The quality gate refused the mapped record.
    Quarantined,
    /// A mapper refused this record alone (a contract 1.1 `failed`
    /// outcome). The letter keeps the record as the source sent it; a
    /// replay maps it again with the pipeline's current mappers.
    Unmapped,
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
            DeadLetterKind::Unmapped => "unmapped",
            DeadLetterKind::Malformed => "malformed",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "failed" => DeadLetterKind::Failed,
            "quarantined" => DeadLetterKind::Quarantined,
            "unmapped" => DeadLetterKind::Unmapped,
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

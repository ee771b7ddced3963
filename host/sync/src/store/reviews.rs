//! The review queue's rows: a source record that matching could not be sure
//! of, waiting for a person to accept a candidate, pick another, or reject
//! them all. The record waits with it — a run neither creates nor drops it
//! — and the first run after the decision delivers it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RunId;

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewStatus {
    /// Waiting for a person; its record is held back by every run.
    Open,
    /// A person said which destination record it is: linked.
    Accepted,
    /// A person said it is none of them: it is created.
    Rejected,
    /// Its record was deleted in the source while it waited: nothing to
    /// decide any more.
    Withdrawn,
}

impl ReviewStatus {
    /// Every status.
    pub const ALL: [ReviewStatus; 4] = [
        ReviewStatus::Open,
        ReviewStatus::Accepted,
        ReviewStatus::Rejected,
        ReviewStatus::Withdrawn,
    ];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Open => "open",
            ReviewStatus::Accepted => "accepted",
            ReviewStatus::Rejected => "rejected",
            ReviewStatus::Withdrawn => "withdrawn",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => ReviewStatus::Open,
            "accepted" => ReviewStatus::Accepted,
            "rejected" => ReviewStatus::Rejected,
            "withdrawn" => ReviewStatus::Withdrawn,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A destination record a queued source record may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewCandidate {
    /// Its id in the destination.
    pub id: String,
    /// The key that found it (`email`, `name`…).
    pub key: String,
    /// 1.0 for an exact key, the similarity for a fuzzy one.
    pub score: f64,
    /// Its content as read when matching (system fields removed).
    pub record: Value,
    /// Its cursor value (modification time) as read.
    #[serde(default)]
    pub version: Option<String>,
}

/// The source record as read, kept so a run can deliver it once decided
/// (incremental reads will not bring it again unless it changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// Its id in the source.
    pub id: String,
    /// Its payload as read (JSON text).
    pub payload: String,
    /// Its cursor value.
    pub cursor: Option<String>,
}

/// A review to queue, committed with the matching pass.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReview {
    /// The source record.
    pub record: HeldRecord,
    /// The record as the mappers made it (destination shape).
    pub mapped: Value,
    /// Candidates, best first.
    pub candidates: Vec<ReviewCandidate>,
    /// Why matching was not sure.
    pub why: String,
}

/// A person's decision, committed with the links it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewDecision {
    /// The review.
    pub id: i64,
    /// Accepted or rejected.
    pub status: ReviewStatus,
    /// The destination record accepted.
    pub chosen: Option<String>,
    /// Who decided (`cli:ana`, `token:ops`).
    pub by: String,
}

/// One review as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// Its number.
    pub id: i64,
    /// The pipeline whose record waits.
    pub pipeline: String,
    /// The source record's id.
    pub source_id: String,
    /// The source record as read.
    pub record: HeldRecord,
    /// The record as the mappers made it.
    pub mapped: Value,
    /// Candidates, best first.
    pub candidates: Vec<ReviewCandidate>,
    /// Why matching was not sure.
    pub why: String,
    /// Where it stands.
    pub status: ReviewStatus,
    /// The destination record accepted.
    pub chosen: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// The run that delivered the record after the decision.
    pub delivered_run: Option<RunId>,
    /// When it was queued.
    pub created_at: String,
}

/// What one matching pass found, remembered per pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MatchCounts {
    /// Source records linked to the destination record they are.
    pub linked: u64,
    /// Queued for review.
    pub queued: u64,
    /// With no candidate: the run creates them.
    pub unmatched: u64,
    /// Linked before the pass (by an earlier pass or run), or waiting in
    /// the queue already.
    pub already: u64,
}

/// Which reviews to list.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// Of this pipeline.
    pub pipeline: Option<String>,
    /// In this status.
    pub status: Option<ReviewStatus>,
}

/// A review row's columns as text, in [`REVIEW_COLUMNS`] order, before
/// their JSON is parsed: one parser for both backends.
pub(crate) struct ReviewColumns {
    pub id: i64,
    pub pipeline: String,
    pub source_id: String,
    pub source_record: String,
    pub mapped: String,
    pub candidates: String,
    pub why: String,
    pub status: String,
    pub chosen: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub delivered_run: Option<RunId>,
    pub created_at: String,
}

/// The columns a review is read from, in [`ReviewColumns`] order.
pub(crate) const REVIEW_COLUMNS: &str = "id, pipeline, source_id, source_record, mapped, candidates, \
     why, status, chosen, decided_by, decided_at, delivered_run, created_at";

impl ReviewColumns {
    /// The review, or what in the row cannot be read.
    pub fn parse(self) -> Result<Review, String> {
        let bad = |what: &str, e: serde_json::Error| {
            format!("review {} has an unreadable {what}: {e}", self.id)
        };
        Ok(Review {
            id: self.id,
            record: serde_json::from_str(&self.source_record).map_err(|e| bad("record", e))?,
            mapped: serde_json::from_str(&self.mapped).map_err(|e| bad("mapped record", e))?,
            candidates: serde_json::from_str(&self.candidates)
                .map_err(|e| bad("candidate list", e))?,
            status: ReviewStatus::parse(&self.status).ok_or_else(|| {
                format!("review {} has an unknown status `{}`", self.id, self.status)
            })?,
            pipeline: self.pipeline,
            source_id: self.source_id,
            why: self.why,
            chosen: self.chosen,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            delivered_run: self.delivered_run,
            created_at: self.created_at,
        })
    }
}

impl NewReview {
    /// Its JSON columns: record, mapped record, candidates.
    pub(crate) fn json_columns(&self) -> Result<[String; 3], serde_json::Error> {
        Ok([
            serde_json::to_string(&self.record)?,
            serde_json::to_string(&self.mapped)?,
            serde_json::to_string(&self.candidates)?,
        ])
    }
}

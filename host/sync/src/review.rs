//! The engine's side of going live that people drive: the matching pass on
//! demand (`nexo pipeline match`), and the review queue's decisions —
//! accept a candidate (or pick another of them), or reject them all. Each
//! is recorded as a small run, so the history shows who linked what and
//! when; an acceptance writes its identity links in the same commit as the
//! decision, and the next run delivers the waiting record.

use std::sync::Arc;

use super::SyncError;
use super::dry_run::DryRun;
use super::engine::Engine;
use super::going_live::{self, MatchReport};
use super::page::PageContext;
use super::retry::Waiter;
use super::store::{
    LinkUpdate, LogLevel, PageCommit, PageStore, Review, ReviewDecision, ReviewStatus, RunId,
    RunStatus,
};

/// Why a review could not be decided as asked. Typed, so the admin API can
/// answer 404, 409 or 400 without reading the message; the messages are
/// the ones the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No review with this id.
    #[error("no review {0}; see `nexo review list`")]
    Unknown(i64),
    /// Decided already: a review is decided once.
    #[error("review {id} is already {status} (by {by}); see `nexo review show {id}`")]
    Decided {
        /// The review.
        id: i64,
        /// How it was decided.
        status: ReviewStatus,
        /// Who decided it (`someone` when the store does not say).
        by: String,
    },
    /// The pick is not one of the review's candidates.
    #[error(
        "review {id}: `{pick}` is not one of its candidates ({candidates}); pick one of them, or reject the review to create the record"
    )]
    NotCandidate {
        /// The review.
        id: i64,
        /// The destination id asked for.
        pick: String,
        /// Its candidates' ids, comma-separated.
        candidates: String,
    },
    /// An acceptance without a pick, of a review with no candidate.
    #[error("review {0} has no candidate to accept; reject it to create the record")]
    NoCandidate(i64),
    /// The chosen destination record is linked already (by another review
    /// decided meanwhile, or by a run).
    #[error(
        "review {id}: {connection} record {candidate} is linked already (entity {entity}, by another review or a run); pick another candidate or reject the review"
    )]
    Linked {
        /// The review.
        id: i64,
        /// The destination connection.
        connection: String,
        /// The candidate's destination id.
        candidate: String,
        /// The entity it belongs to.
        entity: i64,
    },
    /// Decided, then not found again: the store lost it.
    #[error("review {0} vanished after it was decided")]
    Vanished(i64),
}

/// What a person decided about a queued match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The source record is this destination record (one of the
    /// candidates; the best one when none is named).
    Accept(Option<String>),
    /// It is none of them: the next run creates it.
    Reject,
}

impl Engine {
    /// Run `pipeline`'s matching pass now (or, `dry`, say what it would
    /// do without writing anything). Records linked before, or waiting in
    /// the queue, are left as they are, so a second pass only looks at
    /// what is new.
    pub async fn match_pipeline(
        &self,
        pipeline: &str,
        dry: bool,
    ) -> Result<(MatchReport, Option<RunId>), SyncError> {
        let row = self.pipeline_row(pipeline)?;
        let prepared = self.prepare(&row.pipeline).await?;
        let store: Arc<dyn PageStore> = if dry {
            Arc::new(DryRun::over(self.store.clone()))
        } else {
            self.store.clone()
        };
        let waiter = Waiter {
            store: store.clone(),
            run: 0,
            stop: None,
            pipeline: pipeline.to_string(),
            retry: row.pipeline.retry.clone(),
        };
        let ctx = PageContext::over(&prepared, store.as_ref(), &waiter);
        if dry {
            let (_, report) = going_live::pass(ctx).await?;
            return Ok((report, None));
        }
        let mut lock = self.lock(pipeline)?;
        let run = self.store.begin_run(pipeline)?;
        if let Err(e) = lock.attach(run) {
            self.store
                .finish_run(run, RunStatus::Interrupted, Some(&e.to_string()))?;
            return Err(e);
        }
        match going_live::pass(ctx).await {
            Ok((commit, report)) => {
                self.store.commit_page(pipeline, run, &commit)?;
                self.store.finish_run(run, RunStatus::Succeeded, None)?;
                Ok((report, Some(run)))
            }
            Err(e) => {
                self.store
                    .finish_run(run, RunStatus::Failed, Some(&e.to_string()))?;
                Err(e)
            }
        }
    }

    /// Decide review `id` as `by` (`cli:ana`, `token:ops`). An acceptance
    /// links the source record and the chosen destination record as one
    /// entity; a rejection leaves it to be created. Either way the next run
    /// of the pipeline delivers the record.
    pub fn decide_review(&self, id: i64, verdict: Verdict, by: &str) -> Result<Review, SyncError> {
        let review = self.store.review(id)?.ok_or(ReviewError::Unknown(id))?;
        if review.status != ReviewStatus::Open {
            return Err(ReviewError::Decided {
                id,
                status: review.status,
                by: review
                    .decided_by
                    .clone()
                    .unwrap_or_else(|| "someone".into()),
            }
            .into());
        }
        let row = self.pipeline_row(&review.pipeline)?;
        let p = &row.pipeline;
        let mut commit = PageCommit::default();
        let decision = match verdict {
            Verdict::Reject => {
                commit.log.push((
                    LogLevel::Info,
                    format!(
                        "review {id} (record {}): none of the candidates, rejected by {by}; the next run creates it",
                        review.source_id
                    ),
                ));
                ReviewDecision {
                    id,
                    status: ReviewStatus::Rejected,
                    chosen: None,
                    by: by.to_string(),
                }
            }
            Verdict::Accept(chosen) => {
                let names = || {
                    review
                        .candidates
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let candidate = match &chosen {
                    None => review.candidates.first(),
                    Some(want) => review.candidates.iter().find(|c| &c.id == want),
                }
                .ok_or_else(|| match &chosen {
                    Some(want) => ReviewError::NotCandidate {
                        id,
                        pick: want.clone(),
                        candidates: names(),
                    },
                    None => ReviewError::NoCandidate(id),
                })?;
                let dest = self.store.links(
                    &p.entity,
                    &p.destination.connection,
                    &p.destination.stream,
                    &[&candidate.id],
                    None,
                )?;
                if let Some(other) = dest.first() {
                    return Err(ReviewError::Linked {
                        id,
                        connection: p.destination.connection.clone(),
                        candidate: candidate.id.clone(),
                        entity: other.entity_id,
                    }
                    .into());
                }
                let entity_id = self
                    .store
                    .links(
                        &p.entity,
                        &p.source.connection,
                        &p.source.stream,
                        &[&review.source_id],
                        None,
                    )?
                    .first()
                    .map(|l| l.entity_id);
                let (source_end, dest_end) =
                    (Arc::new(p.source.clone()), Arc::new(p.destination.clone()));
                commit.links.push(LinkUpdate {
                    entity_id,
                    entity: p.entity.clone(),
                    group: 1,
                    connection: p.destination.connection.clone(),
                    stream: p.destination.stream.clone(),
                    record_id: candidate.id.clone(),
                    known: Some(
                        super::content::Content(
                            candidate.record.as_object().cloned().unwrap_or_default(),
                        )
                        .to_json(),
                    ),
                    synced_hash: None,
                    peer: source_end,
                    version: candidate.version.clone(),
                    deleted: false,
                });
                commit.links.push(LinkUpdate {
                    entity_id,
                    entity: p.entity.clone(),
                    group: 1,
                    connection: p.source.connection.clone(),
                    stream: p.source.stream.clone(),
                    record_id: review.source_id.clone(),
                    known: None,
                    synced_hash: None,
                    peer: dest_end,
                    version: review.record.cursor.clone(),
                    deleted: false,
                });
                commit.log.push((
                    LogLevel::Info,
                    format!(
                        "review {id} (record {}): accepted by {by} as {} record {} (by {}); the next run updates it",
                        review.source_id, p.destination.connection, candidate.id, candidate.key
                    ),
                ));
                ReviewDecision {
                    id,
                    status: ReviewStatus::Accepted,
                    chosen: Some(candidate.id.clone()),
                    by: by.to_string(),
                }
            }
        };
        commit.decide_reviews.push(decision);
        let mut lock = self.lock(&review.pipeline)?;
        let run = self.store.begin_run(&review.pipeline)?;
        if let Err(e) = lock.attach(run) {
            self.store
                .finish_run(run, RunStatus::Interrupted, Some(&e.to_string()))?;
            return Err(e);
        }
        if let Err(e) = self.store.commit_page(&review.pipeline, run, &commit) {
            self.store
                .finish_run(run, RunStatus::Failed, Some(&e.to_string()))?;
            return Err(e.into());
        }
        self.store.finish_run(run, RunStatus::Succeeded, None)?;
        self.store
            .review(id)?
            .ok_or_else(|| ReviewError::Vanished(id).into())
    }
}

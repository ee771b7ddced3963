//! The queues a person works through: dead letters (replay or discard) and
//! held conflicts (resolve by taking one side). Each action is recorded as
//! a small run, so the history shows who fixed what and when.

use serde_json::Value;

use super::SyncError;
use super::content::Content;
use super::decide::PendingWrite;
use super::engine::Engine;
use super::page::PageContext;
use super::retry::Waiter;
use super::settle::deliver_one;
use super::store::{
    ConflictStatus, DeadLetterKind, DeadLetterStatus, LinkUpdate, LogLevel, PageCommit, RunId,
    RunStatus,
};
use nexo_runtime::plugin::{Operation, Record};

/// Which side of a conflict to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Write the source's version to the destination.
    Source,
    /// Keep the destination's version.
    Destination,
}

impl Engine {
    /// Make a queued write current: it targets the destination record the
    /// identity map knows *now* (a later run may have created it).
    fn refresh_target(
        &self,
        pipeline: &super::Pipeline,
        w: &mut PendingWrite,
    ) -> Result<(), SyncError> {
        if w.entity_id.is_none() {
            w.entity_id = self
                .store
                .links(
                    &pipeline.entity,
                    &pipeline.source.connection,
                    &pipeline.source.stream,
                    &[&w.source_id],
                    None,
                )?
                .first()
                .map(|l| l.entity_id);
        }
        if let Some(e) = w.entity_id {
            let dest = self.store.links_of_entities(
                &[e],
                &pipeline.destination.connection,
                &pipeline.destination.stream,
                None,
            )?;
            match dest.first() {
                Some(l) if !l.deleted => w.destination_id = Some(l.record_id.clone()),
                _ if !w.delete => w.destination_id = None,
                _ => {}
            }
        }
        Ok(())
    }

    async fn queued_run(
        &self,
        pipeline_name: &str,
        w: PendingWrite,
        settle: impl FnOnce(&mut PageCommit),
        what: String,
    ) -> Result<RunId, SyncError> {
        let row = self.pipeline_row(pipeline_name)?;
        let mut lock = self.lock(pipeline_name)?;
        let prepared = self.prepare(&row.pipeline).await?;
        let run = self.store.begin_run(pipeline_name)?;
        if let Err(e) = lock.attach(run) {
            self.store
                .finish_run(run, RunStatus::Interrupted, Some(&e.to_string()))?;
            return Err(e);
        }
        let waiter = Waiter {
            store: self.store.clone(),
            run,
            stop: None,
            pipeline: pipeline_name.to_string(),
            retry: prepared.pipeline.retry.clone(),
        };
        let ctx = PageContext::over(&prepared, self.store.as_ref(), &waiter);
        let outcome = deliver_one(ctx, w).await;
        match outcome {
            Ok((mut commit, None)) => {
                settle(&mut commit);
                commit.log.push((LogLevel::Info, what));
                self.store.commit_page(pipeline_name, run, &commit)?;
                self.store.finish_run(run, RunStatus::Succeeded, None)?;
                Ok(run)
            }
            Ok((commit, Some(failure))) => {
                self.store.commit_page(pipeline_name, run, &commit)?;
                let message = format!("{what} failed again: {failure}");
                self.store
                    .finish_run(run, RunStatus::Failed, Some(&message))?;
                Err(SyncError::Queue(message))
            }
            Err(e) => {
                self.store
                    .finish_run(run, RunStatus::Failed, Some(&e.to_string()))?;
                Err(e)
            }
        }
    }

    /// Write a dead letter again. A quarantined record is checked by the
    /// gate first (fix the source or the pipeline, then replay).
    pub async fn replay(&self, id: i64) -> Result<RunId, SyncError> {
        let letter = self
            .store
            .dead_letter(id)?
            .ok_or_else(|| SyncError::Queue(format!("no dead letter {id}; see `nexo dlq list`")))?;
        if letter.status != DeadLetterStatus::Open {
            return Err(SyncError::Queue(format!(
                "dead letter {id} is already {}",
                letter.status
            )));
        }
        if letter.letter.kind == DeadLetterKind::Malformed {
            return Err(SyncError::Queue(format!(
                "dead letter {id} (record {}) is a record the source sent malformed ({}); it cannot be replayed: fix it in the source system (the next run reads it again) or discard it with `nexo dlq discard {id}`",
                letter.letter.source_id, letter.letter.error
            )));
        }
        let row = self.pipeline_row(&letter.pipeline)?;
        let mut w: PendingWrite = serde_json::from_str(&letter.letter.record)
            .map_err(|e| SyncError::Queue(format!("dead letter {id} is unreadable: {e}")))?;
        self.refresh_target(&row.pipeline, &mut w)?;
        if letter.letter.kind == DeadLetterKind::Unmapped {
            self.map_again(id, &row.pipeline, &mut w).await?;
        }
        if letter.letter.kind == DeadLetterKind::Quarantined {
            let prepared = self.prepare(&row.pipeline).await?;
            if let Err(failure) = prepared.gate.check(&w.payload) {
                return Err(SyncError::Queue(format!(
                    "dead letter {id} (record {}) still fails the quality gate: {failure}; fix the data or the pipeline first",
                    w.source_id
                )));
            }
        }
        let what = format!("dead letter {id} (record {}) replayed", w.source_id);
        self.queued_run(
            &letter.pipeline,
            w,
            |c| c.settle_dead_letters.push((id, DeadLetterStatus::Replayed)),
            what,
        )
        .await
    }

    /// A record a mapper refused, mapped again by the pipeline's mappers as
    /// they are now (upgraded, or given a fixed config), and checked by the
    /// gate: `w`'s payload becomes what the run would have written.
    async fn map_again(
        &self,
        id: i64,
        pipeline: &super::Pipeline,
        w: &mut PendingWrite,
    ) -> Result<(), SyncError> {
        let prepared = self.prepare(pipeline).await?;
        let record = Record {
            stream: pipeline.source.stream.clone(),
            id: w.source_id.clone(),
            operation: Operation::Upsert,
            payload: w.payload.to_string(),
            cursor: w.source_version.clone(),
        };
        let mut mapped = prepared.mapping.map(&pipeline.name, vec![record]).await?;
        if let Some(failure) = mapped.failed.get(&w.source_id) {
            return Err(SyncError::Queue(format!(
                "dead letter {id} (record {}) is still refused: {}; fix the mapper (upgrade it or its config) or the source record first",
                w.source_id,
                failure.message()
            )));
        }
        let Some(out) = mapped.records.remove(&w.source_id) else {
            return Err(SyncError::Queue(format!(
                "dead letter {id} (record {}): the pipeline's mappers now leave it out, so there is nothing to write; discard it with `nexo dlq discard {id}`",
                w.source_id
            )));
        };
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&out.payload) else {
            return Err(SyncError::Malformed {
                pipeline: pipeline.name.clone(),
                message: format!("mapper output for {} is not a JSON object", w.source_id),
            });
        };
        let mut content = Content::from_map(m, &prepared.dest_system);
        if let Err(failure) = prepared.gate.check_content(&mut content) {
            return Err(SyncError::Queue(format!(
                "dead letter {id} (record {}) maps now but fails the quality gate: {failure}; fix the data or the pipeline first",
                w.source_id
            )));
        }
        prepared.dest_compare.strip_read_only(&mut content);
        w.payload = Value::Object(content.0);
        Ok(())
    }

    /// Discard a dead letter (a person decided it must not be delivered).
    pub fn discard(&self, id: i64) -> Result<(), SyncError> {
        if self.store.discard_dead_letter(id)? {
            Ok(())
        } else {
            Err(SyncError::Queue(format!(
                "no open dead letter {id}; see `nexo dlq list`"
            )))
        }
    }

    /// Settle a held conflict by keeping one side.
    pub async fn resolve(&self, id: i64, side: Side) -> Result<(), SyncError> {
        let conflict = self.store.conflict(id)?.ok_or_else(|| {
            SyncError::Queue(format!("no conflict {id}; see `nexo conflict list`"))
        })?;
        if conflict.status != ConflictStatus::Open {
            return Err(SyncError::Queue(format!(
                "conflict {id} is already resolved"
            )));
        }
        let row = self.pipeline_row(&conflict.pipeline)?;
        let p = &row.pipeline;
        let mut w: PendingWrite = serde_json::from_str(&conflict.conflict.source_record)
            .map_err(|e| SyncError::Queue(format!("conflict {id} is unreadable: {e}")))?;
        match side {
            Side::Source => {
                self.refresh_target(p, &mut w)?;
                let what = format!(
                    "conflict {id} (record {}) resolved: source written",
                    w.source_id
                );
                self.queued_run(
                    &conflict.pipeline,
                    w,
                    |c| {
                        c.settle_conflicts
                            .push((id, "source written by a person".into()))
                    },
                    what,
                )
                .await?;
            }
            Side::Destination => {
                // The destination's current content becomes the synced
                // state of both records: neither is a pending change now.
                let mut lock = self.lock(&conflict.pipeline)?;
                let run = self.store.begin_run(&conflict.pipeline)?;
                if let Err(e) = lock.attach(run) {
                    self.store
                        .finish_run(run, RunStatus::Interrupted, Some(&e.to_string()))?;
                    return Err(e);
                }
                let mut commit = PageCommit::default();
                let dest = self.store.links(
                    &p.entity,
                    &p.destination.connection,
                    &p.destination.stream,
                    &[&conflict.conflict.destination_id],
                    None,
                )?;
                let source = self.store.links(
                    &p.entity,
                    &p.source.connection,
                    &p.source.stream,
                    &[&w.source_id],
                    None,
                )?;
                let (source_end, dest_end) = (
                    std::sync::Arc::new(p.source.clone()),
                    std::sync::Arc::new(p.destination.clone()),
                );
                let peers = dest
                    .iter()
                    .map(|l| (l, &source_end))
                    .chain(source.iter().map(|l| (l, &dest_end)));
                for (l, peer) in peers {
                    let hash = l
                        .known
                        .as_deref()
                        .and_then(|k| serde_json::from_str(k).ok())
                        .map(|m| Content(m).hash());
                    commit.links.push(LinkUpdate {
                        synced_hash: hash,
                        deleted: l.deleted,
                        ..LinkUpdate::of_link(&p.entity, l, peer)
                    });
                }
                commit
                    .settle_conflicts
                    .push((id, "destination kept by a person".into()));
                commit.log.push((
                    LogLevel::Info,
                    format!(
                        "conflict {id} (record {}) resolved: destination kept",
                        w.source_id
                    ),
                ));
                self.store.commit_page(&conflict.pipeline, run, &commit)?;
                self.store.finish_run(run, RunStatus::Succeeded, None)?;
            }
        }
        Ok(())
    }
}

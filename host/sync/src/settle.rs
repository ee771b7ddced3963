//! A page's last steps: map what changed, decide (`decide`), deliver the
//! writes (`delivery`), and settle each record — its links, result, dead
//! letter or conflict — into the page's one [`PageCommit`]. Also the two
//! other ways records are settled: the full refresh's sweep and a queued
//! write delivered again (replay, resolution). Nothing here touches the
//! database; the caller commits.

use std::time::{Duration, Instant};

use super::SyncError;
use super::content::{Content, hash_text};
use super::decide::queue_json;
use super::decide::{PendingWrite, Step, decide_all};
use super::delivery::{Delivered, write_all};
use super::dry_run::PlannedChange;
use super::page::{Classified, Deduped, Item, PageContext, classify};
use super::plan::Decision;
use super::prepared::Prepared;
use super::store::{
    DeadLetterKind, Link, LinkUpdate, LogLevel, NewConflict, NewDeadLetter, PageCommit,
    RecordOutcome,
};
use nexo_runtime::plugin::{Operation, Record, WriteOutcome};

/// Where a page's time went.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Spent {
    pub map: Duration,
    pub write: Duration,
}

/// Map, decide, write and settle what [`classify`] left; `plan` collects
/// a dry run's planned changes.
pub(super) async fn finish(
    ctx: PageContext<'_>,
    page: Classified,
    mut plan: Option<&mut Vec<PlannedChange>>,
    spent: &mut Spent,
) -> Result<PageCommit, SyncError> {
    let Classified {
        mut commit,
        items,
        changed,
        dest_links,
        ..
    } = page;
    let p = &ctx.p.pipeline;
    let name = p.name.as_str();
    let t = Instant::now();
    let mapped = ctx.p.mapping.map(name, changed).await?;
    spent.map += t.elapsed();
    let steps = decide_all(ctx, &items, &mapped, &dest_links, &mut commit)?;

    // The records as sent: their payload text is what the destination link
    // will know, so it is not serialised a second time.
    let sent: Vec<Record> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Write(w, _) => Some(w.to_record(&p.destination.stream)),
            _ => None,
        })
        .collect();
    let t = Instant::now();
    let delivered = write_all(ctx, &sent).await?;
    spent.write += t.elapsed();
    let mut delivered = delivered.into_iter();
    let mut sent = sent.into_iter();

    for (item, step) in items.iter().zip(steps) {
        match step {
            Step::Done(outcome, dest, reason) => {
                commit
                    .links
                    .push(item.source_link(ctx.p, true, item.delete));
                commit.counts.add(outcome);
                commit
                    .results
                    .push(item.result(outcome, dest, Some(reason)));
            }
            Step::Quarantine(letter) => {
                commit.links.push(item.source_link(ctx.p, false, false));
                commit.counts.add(RecordOutcome::Quarantined);
                commit.results.push(item.result(
                    RecordOutcome::Quarantined,
                    None,
                    Some(letter.error.clone()),
                ));
                commit.log.push((
                    LogLevel::Warn,
                    format!("record {} quarantined: {}", item.source_id, letter.error),
                ));
                commit.dead_letters.push(letter);
            }
            Step::Hold(w, decision, already_open) => {
                commit.links.push(item.source_link(ctx.p, false, false));
                commit.counts.add(RecordOutcome::Conflict);
                let (id, fields) = match decision {
                    Decision::Hold { id, fields } => (id, fields),
                    _ => (String::new(), Vec::new()),
                };
                let detail = if already_open {
                    "held: an earlier conflict on this record waits for a person".to_string()
                } else {
                    format!(
                        "held for a person: both sides changed {}",
                        fields.join(", ")
                    )
                };
                commit.results.push(item.result(
                    RecordOutcome::Conflict,
                    Some(id.clone()),
                    Some(detail),
                ));
                if !already_open && let Some(entity_id) = item.entity_id {
                    let known = dest_links
                        .get(&entity_id)
                        .and_then(|l| l.known.clone())
                        .unwrap_or_default();
                    commit.conflicts.push(NewConflict {
                        entity_id,
                        source_id: item.source_id.clone(),
                        destination_id: id,
                        source_record: queue_json(&w, name, &item.source_id)?,
                        destination_payload: known,
                        fields,
                        resolution: None,
                    });
                }
            }
            Step::Write(w, decision) => {
                let Some(outcome) = delivered.next() else {
                    return Err(SyncError::Malformed {
                        pipeline: name.to_string(),
                        message: "fewer write results than writes".into(),
                    });
                };
                let text = sent.next().map(|r| r.payload);
                settle(
                    Settle {
                        p: ctx.p,
                        commit: &mut commit,
                        item,
                        plan: plan.as_deref_mut(),
                    },
                    w,
                    decision,
                    outcome,
                    text,
                )?;
            }
        }
    }
    Ok(commit)
}

/// What settling one write touches: the page's commit, the item written,
/// and the dry run's plan (none in a real run).
struct Settle<'s> {
    p: &'s Prepared,
    commit: &'s mut PageCommit,
    item: &'s Item,
    plan: Option<&'s mut Vec<PlannedChange>>,
}

/// Record what a delivered (or failed) write means. `sent` is the payload
/// text as written (`w.payload` serialised), when the caller has it.
fn settle(
    s: Settle<'_>,
    w: PendingWrite,
    decision: Decision,
    delivered: Delivered,
    sent: Option<String>,
) -> Result<(), SyncError> {
    let Settle {
        p: prepared,
        commit,
        item,
        plan,
    } = s;
    let p = &prepared.pipeline;
    let (conflict, diff) = match &decision {
        Decision::Update { conflict, diff, .. } => (conflict.clone(), diff.clone()),
        _ => (None, Vec::new()),
    };
    match delivered {
        Delivered::Failed { error, attempts } => {
            commit.links.push(item.source_link(prepared, false, false));
            commit.counts.add(RecordOutcome::Failed);
            commit.results.push(item.result(
                RecordOutcome::Failed,
                w.destination_id.clone(),
                Some(error.to_string()),
            ));
            commit.log.push((
                LogLevel::Warn,
                format!("record {} failed: {error}", item.source_id),
            ));
            commit.dead_letters.push(NewDeadLetter {
                kind: DeadLetterKind::Failed,
                source_id: item.source_id.clone(),
                record: queue_json(&w, &p.name, &item.source_id)?,
                error: error.to_string(),
                class: error.class().to_string(),
                field: None,
                attempts,
            });
        }
        Delivered::Done(outcome) => {
            let (outcome, dest_id) = match outcome {
                // The `archive` delete policy writes an update: it is the
                // delete as far as the run is concerned.
                WriteOutcome::Updated(id) if item.delete => (RecordOutcome::Deleted, id),
                WriteOutcome::Created(id) => (RecordOutcome::Created, id),
                WriteOutcome::Updated(id) | WriteOutcome::Unchanged(id) if found_existing(&w) => {
                    (RecordOutcome::Matched, id)
                }
                WriteOutcome::Updated(id) => (RecordOutcome::Updated, id),
                WriteOutcome::Unchanged(id) => (RecordOutcome::Unchanged, id),
                WriteOutcome::Deleted(id) => (RecordOutcome::Deleted, id),
                WriteOutcome::Failed(e) => {
                    let error = e;
                    return settle(
                        Settle {
                            p: prepared,
                            commit,
                            item,
                            plan,
                        },
                        w,
                        decision,
                        Delivered::Failed { error, attempts: 1 },
                        sent,
                    );
                }
            };
            let dest_id = if dest_id.is_empty() {
                w.destination_id.clone().unwrap_or_default()
            } else {
                dest_id
            };
            // A delete policy of `archive` writes an update: the source
            // record is gone all the same.
            let source_deleted = item.delete;
            commit
                .links
                .push(item.source_link(prepared, true, source_deleted));
            // The payload's JSON text is its canonical form (sorted keys);
            // a partial update leaves the rest of the record as it was.
            let written = match &w.merged {
                Some(whole) if !w.delete => Some(whole.clone()),
                _ => w
                    .payload
                    .is_object()
                    .then(|| sent.unwrap_or_else(|| w.payload.to_string())),
            };
            commit.links.push(LinkUpdate {
                entity_id: item.entity_id,
                entity: p.entity.clone(),
                group: item.group,
                connection: p.destination.connection.clone(),
                stream: p.destination.stream.clone(),
                record_id: dest_id.clone(),
                synced_hash: written.as_deref().map(hash_text),
                peer: prepared.source_end.clone(),
                known: written,
                version: None,
                deleted: outcome == RecordOutcome::Deleted && w.delete,
            });
            if let Some(fields) = conflict {
                commit.counts.conflicts += 1;
                commit.conflicts.push(NewConflict {
                    entity_id: item.entity_id.unwrap_or_default(),
                    source_id: item.source_id.clone(),
                    destination_id: dest_id.clone(),
                    source_record: queue_json(&w, &p.name, &item.source_id)?,
                    destination_payload: String::new(),
                    fields,
                    resolution: Some("source written by policy".into()),
                });
            }
            if let Some(plan) = plan {
                plan.push(PlannedChange {
                    action: match outcome {
                        RecordOutcome::Created => "create",
                        RecordOutcome::Deleted => "delete",
                        _ => "update",
                    },
                    source_id: item.source_id.clone(),
                    destination_id: w.destination_id.clone(),
                    diff,
                });
            }
            commit.counts.add(outcome);
            commit
                .results
                .push(item.result(outcome, Some(dest_id), None));
        }
    }
    Ok(())
}

/// Whether a write's answer means the destination already held the
/// record: it was sent to be created (no destination id), and the
/// connector answered with an existing one (found by the idempotency key
/// or a code) rather than `created`.
fn found_existing(w: &PendingWrite) -> bool {
    w.destination_id.is_none() && !w.delete
}

/// Classify, decide, write and settle a page with no page held (the
/// sweep, after the run's pages are committed).
async fn process(
    ctx: PageContext<'_>,
    records: Vec<Record>,
    plan: Option<&mut Vec<PlannedChange>>,
    spent: &mut Spent,
) -> Result<PageCommit, SyncError> {
    let mut classified = classify(ctx, Deduped::of(records, Vec::new()))?;
    classified.look_up_destinations(ctx)?;
    finish(ctx, classified, plan, spent).await
}

/// The full-refresh sweep: source records not seen by this run are gone.
pub(super) async fn sweep(
    ctx: PageContext<'_>,
    gone: Vec<Link>,
    plan: Option<&mut Vec<PlannedChange>>,
    spent: &mut Spent,
) -> Result<PageCommit, SyncError> {
    let records = gone
        .into_iter()
        .map(|l| Record {
            stream: l.stream,
            id: l.record_id,
            operation: Operation::Delete,
            payload: "{}".into(),
            cursor: None,
        })
        .collect::<Vec<_>>();
    let mut commit = process(ctx, records, plan, spent).await?;
    // Not read: the records are inferred gone.
    commit.counts.read = 0;
    commit.log.push((
        LogLevel::Info,
        format!(
            "full refresh: {} records no longer in the source",
            commit.results.len()
        ),
    ));
    Ok(commit)
}

/// Deliver one queued write (dead-letter replay, conflict resolution) and
/// gather its effects; `false` when it failed again (the error is in the
/// commit's results, no new dead letter is added).
pub(super) async fn deliver_one(
    ctx: PageContext<'_>,
    w: PendingWrite,
) -> Result<(PageCommit, Option<String>), SyncError> {
    let p = &ctx.p.pipeline;
    let mut item = Item {
        source_id: w.source_id.clone(),
        group: 1,
        entity_id: w.entity_id,
        delete: w.delete,
        content: None,
        canonical: None,
        version: w.source_version.clone(),
    };
    if let Some(content) = w
        .source_content
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .map(Content)
    {
        item.set_content(content);
    }
    let decision = if w.delete {
        Decision::Delete {
            id: w.destination_id.clone().unwrap_or_default(),
        }
    } else if let Some(id) = &w.destination_id {
        Decision::Update {
            id: id.clone(),
            payload: Content(w.payload.as_object().cloned().unwrap_or_default()),
            diff: Vec::new(),
            conflict: None,
        }
    } else {
        Decision::Create
    };
    let record = w.to_record(&p.destination.stream);
    let delivered = write_all(ctx, std::slice::from_ref(&record)).await?;
    let mut commit = PageCommit::default();
    let outcome = delivered
        .into_iter()
        .next()
        .ok_or_else(|| SyncError::Malformed {
            pipeline: p.name.clone(),
            message: "the write got no result".into(),
        })?;
    settle(
        Settle {
            p: ctx.p,
            commit: &mut commit,
            item: &item,
            plan: None,
        },
        w,
        decision,
        outcome,
        Some(record.payload),
    )?;
    let failure = commit
        .results
        .iter()
        .find(|r| r.outcome == RecordOutcome::Failed)
        .map(|r| r.detail.clone().unwrap_or_default());
    if failure.is_some() {
        commit.dead_letters.clear();
        commit.links.clear();
    }
    Ok((commit, failure))
}

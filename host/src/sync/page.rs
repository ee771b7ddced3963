//! One page of a run: classify what was read against the identity map, map
//! what changed, pass it through the quality gate, decide, write (with
//! retries), and gather everything the page changes into one
//! [`PageCommit`]. Nothing here touches the database; the caller commits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SyncError;
use super::compare::Comparison;
use super::content::{Content, SystemFields, hash_text, idempotency_key};
use super::delivery::write_all;
use super::driver::Driver;
use super::engine::PlannedChange;
use super::mapping::map_parallel;
pub use super::overlay::Overlay;
use super::pipeline::{Endpoint, SyncMode};
use super::plan::{self, Decision, ReadClass};
use super::store::{
    DELETED_IN_STEP, DeadLetterKind, Link, LinkUpdate, LogLevel, NewConflict, NewDeadLetter,
    PageCommit, RecordOutcome, RecordResult,
};
use crate::GuestError;
use crate::plugin::{Operation, PayloadFault, Record, RejectedRecord, WriteOutcome};

/// A write as the engine prepared it; kept in the dead-letter and conflict
/// queues so it can be replayed later exactly as it would have been sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// Source id.
    pub source_id: String,
    /// Entity, when known.
    pub entity_id: Option<i64>,
    /// `upsert` or `delete`.
    pub delete: bool,
    /// Destination id, when linked.
    pub destination_id: Option<String>,
    /// Content to write (destination system fields left out).
    pub payload: Value,
    /// Idempotency key.
    pub key: String,
    /// The source record's content and version, to record once delivered.
    pub source_content: Option<String>,
    /// Source version (cursor value).
    pub source_version: Option<String>,
    /// For an update carrying only some of the destination record's fields
    /// (a status sent back, say): the whole record as Nexo will know it once
    /// written — the known content with the payload applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<String>,
}

impl PendingWrite {
    /// The record handed to the destination's `write`.
    pub fn to_record(&self, stream: &str) -> Record {
        Record {
            stream: stream.to_string(),
            id: self.destination_id.clone().unwrap_or_default(),
            operation: if self.delete {
                Operation::Delete
            } else {
                Operation::Upsert
            },
            payload: self.payload.to_string(),
            cursor: Some(self.key.clone()),
        }
    }
}

/// What the delivery of one write came to.
#[derive(Debug, Clone)]
pub enum Delivered {
    /// Done; the destination's outcome.
    Done(WriteOutcome),
    /// Failed for good (or retries ran out).
    Failed {
        /// The error.
        error: GuestError,
        /// Attempts made.
        attempts: u32,
    },
}

/// The destination record's known content with `payload` applied, when the
/// payload leaves out fields Nexo knows the record has; `None` when it
/// covers them all (the payload is then the whole record).
fn merged_known(dest: &Link, payload: &Content) -> Option<String> {
    let mut known = plan::known_content(dest)?;
    if known.0.keys().all(|k| payload.0.contains_key(k)) {
        return None;
    }
    for (k, v) in &payload.0 {
        known.0.insert(k.clone(), v.clone());
    }
    Some(known.to_json())
}

/// A link update for a destination record read by change tracking.
/// `link` carries its sync state with `peer`, the pipeline's source.
pub fn tracked(
    entity: &str,
    link: &Link,
    peer: &Arc<Endpoint>,
    r: &Record,
    system: &SystemFields,
    cmp: &Comparison,
    changed: &mut usize,
) -> LinkUpdate {
    let mut update = LinkUpdate {
        version: r.cursor.clone(),
        // A record Nexo deleted stays deleted when the system still lists
        // it (voided, archived): reading it back is not a restore, and the
        // delete would be sent again at the next look-back.
        deleted: r.operation == Operation::Delete || link.deleted,
        ..LinkUpdate::of_link(entity, link, peer)
    };
    if r.operation == Operation::Delete {
        *changed += 1;
        return update;
    }
    let Ok(content) = Content::of(&r.payload, system) else {
        return update;
    };
    match plan::classify_read(Some(link), &content, cmp) {
        ReadClass::Unchanged { rebase } => {
            if let Some(r) = rebase {
                update.known = Some(r.known);
                update.synced_hash = Some(r.hash);
            }
        }
        ReadClass::Changed => {
            *changed += 1;
            update.known = Some(content.to_json());
        }
    }
    update
}

/// One source record on its way through the page.
struct Item {
    source_id: String,
    group: usize,
    entity_id: Option<i64>,
    delete: bool,
    content: Option<Content>,
    /// The content's canonical JSON and hash, computed once.
    canonical: Option<(String, String)>,
    version: Option<String>,
}

impl Item {
    fn set_content(&mut self, content: Content) {
        let json = content.to_json();
        let hash = hash_text(&json);
        self.canonical = Some((json, hash));
        self.content = Some(content);
    }
}

impl Item {
    fn source_link(&self, d: &Driver<'_>, synced: bool, deleted: bool) -> LinkUpdate {
        let p = &d.p.pipeline;
        LinkUpdate {
            entity_id: self.entity_id,
            entity: p.entity.clone(),
            group: self.group,
            connection: p.source.connection.clone(),
            stream: p.source.stream.clone(),
            record_id: self.source_id.clone(),
            known: self.canonical.as_ref().map(|(json, _)| json.clone()),
            synced_hash: match (synced, deleted) {
                (false, _) => None,
                // A delete settled for this destination (done, or nothing
                // to do there): in step with it as deleted.
                (true, true) => Some(DELETED_IN_STEP.to_string()),
                (true, false) => self.canonical.as_ref().map(|(_, hash)| hash.clone()),
            },
            peer: d.p.dest_end.clone(),
            version: self.version.clone(),
            deleted,
        }
    }
}

/// What was decided for one item.
enum Step {
    Done(RecordOutcome, Option<String>, String),
    Quarantine(NewDeadLetter),
    Write(PendingWrite, Decision),
    Hold(PendingWrite, Decision, bool),
}

fn result(
    item: &Item,
    outcome: RecordOutcome,
    dest: Option<String>,
    detail: Option<String>,
) -> RecordResult {
    RecordResult {
        source_id: item.source_id.clone(),
        destination_id: dest,
        outcome,
        detail,
    }
}

/// A page after its lookups in the identity map: what is unchanged is
/// settled, the rest waits to be mapped, decided and written.
pub struct Classified {
    commit: PageCommit,
    items: Vec<Item>,
    changed: Vec<Record>,
    dest_links: HashMap<i64, Link>,
}

/// Process one page of source records.
pub async fn process(d: &mut Driver<'_>, records: Vec<Record>) -> Result<PageCommit, SyncError> {
    let classified = classify(d, records, Vec::new()).await?;
    finish(d, classified).await
}

/// The last record of each id, valid (`records`, in page order) or not
/// (`rejected`, each with its place in the page), and how many earlier
/// copies they supersede: a page that names one record twice means its
/// newest version, and writing each copy would create it N times.
fn last_of_each_id(
    records: Vec<Record>,
    rejected: Vec<RejectedRecord>,
) -> (Vec<Record>, Vec<RejectedRecord>, u64) {
    let total = records.len() + rejected.len();
    // The place of each valid record in the page: the places the rejected
    // ones (in page order) did not take.
    let mut taken = rejected.iter().map(|r| r.position).peekable();
    let mut places = Vec::with_capacity(records.len());
    let mut place = 0;
    while places.len() < records.len() {
        if taken.next_if_eq(&place).is_none() {
            places.push(place);
        }
        place += 1;
    }
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(total);
    for (r, &at) in records.iter().zip(&places) {
        let e = last.entry(r.id.as_str()).or_insert(at);
        *e = (*e).max(at);
    }
    for r in &rejected {
        let e = last.entry(r.record.id.as_str()).or_insert(r.position);
        *e = (*e).max(r.position);
    }
    if last.len() == total {
        return (records, rejected, 0);
    }
    let keep: HashSet<usize> = last.into_values().collect();
    let superseded = (total - keep.len()) as u64;
    let records = records
        .into_iter()
        .zip(places)
        .filter_map(|(r, at)| keep.contains(&at).then_some(r))
        .collect();
    let rejected = rejected
        .into_iter()
        .filter(|r| keep.contains(&r.position))
        .collect();
    (records, rejected, superseded)
}

/// A source record the engine cannot use, quarantined with why: a dead
/// letter of kind `malformed`, the record's outcome, a log line. (A full
/// refresh counts it as read: it is not taken for deleted.)
fn quarantine_malformed(
    d: &Driver<'_>,
    commit: &mut PageCommit,
    record: &Record,
    fault: &PayloadFault,
) {
    let reason = fault.to_string();
    // The record as read, cut short: the payload may be what is wrong
    // with it (16 MiB), and the queue is for people to read.
    let excerpt: String = record.payload.chars().take(MALFORMED_EXCERPT).collect();
    let kept = serde_json::json!({
        "stream": record.stream,
        "id": record.id,
        "payload_bytes": record.payload.len(),
        "payload_start": excerpt,
    });
    commit.dead_letters.push(NewDeadLetter {
        kind: DeadLetterKind::Malformed,
        source_id: record.id.clone(),
        record: kept.to_string(),
        error: format!(
            "source record {} from {}: {reason}",
            record.id,
            d.p.source.plugin()
        ),
        class: fault.class().to_string(),
        field: None,
        attempts: 0,
    });
    commit.counts.add(RecordOutcome::Quarantined);
    commit.results.push(RecordResult {
        source_id: record.id.clone(),
        destination_id: None,
        outcome: RecordOutcome::Quarantined,
        detail: Some(reason.clone()),
    });
    commit.log.push((
        LogLevel::Warn,
        format!("record {} quarantined: {reason}", record.id),
    ));
}

/// Characters of a malformed payload kept in its dead letter.
const MALFORMED_EXCERPT: usize = 4096;

/// A page's reads of the identity map, and what they settle: every record
/// that is as last synced, every record the engine cannot use (`rejected`
/// by the plugin boundary's check, quarantined one by one), and the copies
/// of an id a later record of the page supersedes. The page held for
/// commit is committed first when these reads would see what it changes.
pub async fn classify(
    d: &mut Driver<'_>,
    records: Vec<Record>,
    rejected: Vec<RejectedRecord>,
) -> Result<Classified, SyncError> {
    let read = (records.len() + rejected.len()) as u64;
    let (records, rejected, superseded) = last_of_each_id(records, rejected);
    let ids: Vec<&str> = records
        .iter()
        .chain(rejected.iter().map(|r| &r.record))
        .map(|r| r.id.as_str())
        .collect();
    if d.held.as_ref().is_some_and(|h| h.links_any_record(&ids)) {
        d.commit_held()?;
    }
    if d.p.pipeline.mode == SyncMode::FullRefresh {
        d.seen.extend(ids.iter().map(|id| id.to_string()));
    }
    let mut changed = Vec::with_capacity(records.len());
    let prepared = d.p;
    let p = &prepared.pipeline;
    // Sized up front: grown by doubling, these page-sized vectors were a
    // visible share of the run's copying and page faults.
    let mut commit = PageCommit {
        links: Vec::with_capacity(2 * records.len()),
        results: Vec::with_capacity(records.len()),
        ..PageCommit::default()
    };
    commit.counts.read = read;
    commit.counts.superseded = superseded;
    if superseded > 0 {
        commit.log.push((
            LogLevel::Warn,
            format!(
                "{superseded} records left out: a later record of the same page has the same id (the last one wins)"
            ),
        ));
    }
    // The source's records with their sync state with this destination:
    // delivered elsewhere is not delivered here.
    let src_links: HashMap<String, Link> = d
        .links(&p.source, &ids, &p.destination)?
        .into_iter()
        .map(|l| (l.record_id.clone(), l))
        .collect();
    for bad in &rejected {
        quarantine_malformed(d, &mut commit, &bad.record, &bad.fault);
    }

    let mut items = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let link = src_links.get(&r.id);
        let mut item = Item {
            source_id: r.id.clone(),
            group: i + 1,
            entity_id: link.map(|l| l.entity_id),
            delete: r.operation == Operation::Delete,
            content: None,
            canonical: None,
            version: r.cursor.clone(),
        };
        if !item.delete {
            // Checked at the plugin boundary, so this parses; if it ever
            // does not, the record is quarantined all the same.
            let content = match Content::of(&r.payload, &d.p.source_system) {
                Ok(content) => content,
                Err(e) => {
                    let fault = PayloadFault::Invalid(e);
                    quarantine_malformed(d, &mut commit, &r, &fault);
                    continue;
                }
            };
            let json = content.to_json();
            let hash = hash_text(&json);
            let class =
                plan::classify_read_hashed(link, &content, &d.p.source_compare, || hash.clone());
            item.canonical = Some((json, hash));
            // Skipped only when exactly as last synced with this
            // destination. An echo of Nexo's own write that the system
            // added to (an invoice's number and status, defaults) holds
            // what this destination never saw: it is mapped and decided
            // like a change, and written only where the destination's copy
            // lacks what it maps to. (Reading back a destination, change
            // tracking takes such an echo as unchanged: `tracked`.)
            if let ReadClass::Unchanged { rebase: None } = class {
                // Nothing to record (a full refresh keeps what it read in
                // the run itself).
                commit.counts.add(RecordOutcome::Unchanged);
                commit.results.push(result(
                    &item,
                    RecordOutcome::Unchanged,
                    None,
                    Some(
                        "no change since last synced here (or an echo of Nexo's own write)".into(),
                    ),
                ));
                continue;
            }
            item.content = Some(content);
            changed.push(r);
        }
        items.push(item);
    }

    // The destination record of each entity.
    let entities: HashSet<i64> = items.iter().filter_map(|i| i.entity_id).collect();
    if d.held
        .as_ref()
        .is_some_and(|h| h.links_any_entity(&entities))
    {
        d.commit_held()?;
    }
    let dest_links: HashMap<i64, Link> = {
        let list: Vec<i64> = entities.iter().copied().filter(|e| *e > 0).collect();
        let mut found = d.engine.store.links_of_entities(
            &list,
            &p.destination.connection,
            &p.destination.stream,
            Some(&p.source),
        )?;
        d.overlay.patch_entities(
            &mut found,
            &entities,
            &p.destination.connection,
            &p.destination.stream,
        );
        found.into_iter().map(|l| (l.entity_id, l)).collect()
    };
    Ok(Classified {
        commit,
        items,
        changed,
        dest_links,
    })
}

/// Map, decide, write and settle what [`classify`] left.
pub async fn finish(d: &mut Driver<'_>, page: Classified) -> Result<PageCommit, SyncError> {
    let Classified {
        mut commit,
        items,
        changed,
        dest_links,
    } = page;
    let p = &d.p.pipeline;
    let name = p.name.clone();
    let t = std::time::Instant::now();
    let mapped = if d.p.mappers.is_empty() {
        changed.into_iter().map(|r| (r.id.clone(), r)).collect()
    } else {
        map_parallel(&d.p.mappers, &d.p.pipeline.name, changed).await?
    };
    d.timings.map += t.elapsed();

    let mut steps = Vec::with_capacity(items.len());
    for item in &items {
        let dest = item.entity_id.and_then(|e| dest_links.get(&e));
        let key = idempotency_key(&name, &p.source.connection, &item.source_id);
        let pending = |payload: Value, delete: bool, dest_id: Option<String>| PendingWrite {
            source_id: item.source_id.clone(),
            entity_id: item.entity_id,
            delete,
            destination_id: dest_id,
            payload,
            key: key.clone(),
            source_content: item.canonical.as_ref().map(|(json, _)| json.clone()),
            source_version: item.version.clone(),
            merged: None,
        };
        // The write an update or a delete decision asks for.
        let write_step = |decision: Decision| {
            let w = match &decision {
                Decision::Delete { id } => pending(Value::Null, true, Some(id.clone())),
                Decision::Update { id, payload, .. } => PendingWrite {
                    merged: dest.and_then(|l| merged_known(l, payload)),
                    ..pending(Value::Object(payload.0.clone()), false, Some(id.clone()))
                },
                _ => return Step::Done(RecordOutcome::Unchanged, None, "nothing to do".into()),
            };
            Step::Write(w, decision)
        };
        if item.delete {
            let decision = plan::decide_delete(p, dest);
            steps.push(match decision {
                d @ (Decision::Delete { .. } | Decision::Update { .. }) => write_step(d),
                Decision::Unchanged { id, reason, .. } => {
                    Step::Done(RecordOutcome::Unchanged, id, reason)
                }
                _ => Step::Done(RecordOutcome::Unchanged, None, "nothing to do".into()),
            });
            continue;
        }
        let Some(record) = mapped.get(&item.source_id) else {
            steps.push(Step::Done(
                RecordOutcome::Unchanged,
                dest.map(|l| l.record_id.clone()),
                "left out by the pipeline's mappers".into(),
            ));
            continue;
        };
        let payload: Value =
            serde_json::from_str(&record.payload).map_err(|e| SyncError::Malformed {
                pipeline: name.clone(),
                message: format!("mapper output for {}: {e}", item.source_id),
            })?;
        let content = match payload {
            Value::Object(m) => Content::from_map(m, &d.p.dest_system),
            _ => {
                return Err(SyncError::Malformed {
                    pipeline: name.clone(),
                    message: format!("mapper output for {} is not a JSON object", item.source_id),
                });
            }
        };
        let mut content = content;
        if let Err(failure) = d.p.gate.check_content(&mut content) {
            steps.push(Step::Quarantine(NewDeadLetter {
                kind: DeadLetterKind::Quarantined,
                source_id: item.source_id.clone(),
                record: queue_json(
                    &pending(
                        Value::Object(content.0),
                        false,
                        dest.map(|l| l.record_id.clone()),
                    ),
                    &name,
                    &item.source_id,
                )?,
                error: failure.to_string(),
                class: failure.class.to_string(),
                field: failure.field.clone(),
                attempts: 0,
            }));
            continue;
        }
        // Fields the destination derives itself are never sent.
        d.p.dest_compare.strip_read_only(&mut content);
        let cmp = &d.p.dest_compare;
        let mut decision =
            plan::decide_upsert(p, cmp, &content, dest, item.version.as_deref(), false);
        let mut already_open = false;
        if matches!(decision, Decision::Update { .. } | Decision::Hold { .. })
            && let Some(e) = item.entity_id.filter(|e| *e > 0)
            && d.engine.store.has_open_conflict(e, &name)?
        {
            already_open = true;
            decision = plan::decide_upsert(p, cmp, &content, dest, item.version.as_deref(), true);
        }
        // Decided: the content is now only the payload to send.
        let as_value = Value::Object(content.0);
        steps.push(match decision {
            Decision::Create => Step::Write(pending(as_value, false, None), decision),
            d @ Decision::Update { .. } => write_step(d),
            Decision::Hold { ref id, .. } => Step::Hold(
                pending(as_value, false, Some(id.clone())),
                decision,
                already_open,
            ),
            Decision::Unchanged {
                ref id,
                ref reason,
                ref conflict,
            } => {
                if let (Some(fields), Some(dest)) = (conflict, dest) {
                    commit.counts.conflicts += 1;
                    commit.conflicts.push(NewConflict {
                        entity_id: dest.entity_id,
                        source_id: item.source_id.clone(),
                        destination_id: dest.record_id.clone(),
                        source_record: queue_json(
                            &pending(as_value, false, Some(dest.record_id.clone())),
                            &name,
                            &item.source_id,
                        )?,
                        destination_payload: dest.known.clone().unwrap_or_default(),
                        fields: fields.clone(),
                        resolution: Some("destination kept by policy".into()),
                    });
                }
                Step::Done(RecordOutcome::Unchanged, id.clone(), reason.clone())
            }
            Decision::Delete { .. } => {
                Step::Done(RecordOutcome::Unchanged, None, "nothing to do".into())
            }
        });
    }

    // Deliver the writes.
    let writes: Vec<&PendingWrite> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Write(w, _) => Some(w),
            _ => None,
        })
        .collect();
    // The records as sent: their payload text is what the destination link
    // will know, so it is not serialised a second time.
    let mut sent: Vec<Record> = Vec::new();
    let delivered = if d.dry_run {
        writes
            .iter()
            .map(|w| {
                Delivered::Done(match (&w.destination_id, w.delete) {
                    (_, true) => {
                        WriteOutcome::Deleted(w.destination_id.clone().unwrap_or_default())
                    }
                    (None, false) => WriteOutcome::Created(format!("(new {})", w.source_id)),
                    (Some(id), false) => WriteOutcome::Updated(id.clone()),
                })
            })
            .collect()
    } else {
        sent = writes
            .iter()
            .map(|w| w.to_record(&p.destination.stream))
            .collect();
        let t = std::time::Instant::now();
        let out = write_all(d, &sent).await?;
        d.timings.write += t.elapsed();
        out
    };
    let mut delivered = delivered.into_iter();
    let mut sent = sent.into_iter();

    for (item, step) in items.iter().zip(steps) {
        match step {
            Step::Done(outcome, dest, reason) => {
                commit.links.push(item.source_link(d, true, item.delete));
                commit.counts.add(outcome);
                commit
                    .results
                    .push(result(item, outcome, dest, Some(reason)));
            }
            Step::Quarantine(letter) => {
                commit.links.push(item.source_link(d, false, false));
                commit.counts.add(RecordOutcome::Quarantined);
                commit.results.push(result(
                    item,
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
                commit.links.push(item.source_link(d, false, false));
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
                commit.results.push(result(
                    item,
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
                        source_record: queue_json(&w, &name, &item.source_id)?,
                        destination_payload: known,
                        fields,
                        resolution: None,
                    });
                }
            }
            Step::Write(w, decision) => {
                let Some(outcome) = delivered.next() else {
                    return Err(SyncError::Malformed {
                        pipeline: name.clone(),
                        message: "fewer write results than writes".into(),
                    });
                };
                let text = sent.next().map(|r| r.payload);
                settle(d, &mut commit, item, w, decision, outcome, text)?;
            }
        }
    }
    Ok(commit)
}

/// Record what a delivered (or failed) write means. `sent` is the payload
/// text as written (`w.payload` serialised), when the caller has it.
fn settle(
    d: &mut Driver<'_>,
    commit: &mut PageCommit,
    item: &Item,
    w: PendingWrite,
    decision: Decision,
    delivered: Delivered,
    sent: Option<String>,
) -> Result<(), SyncError> {
    let p = &d.p.pipeline;
    let (conflict, diff) = match &decision {
        Decision::Update { conflict, diff, .. } => (conflict.clone(), diff.clone()),
        _ => (None, Vec::new()),
    };
    match delivered {
        Delivered::Failed { error, attempts } => {
            commit.links.push(item.source_link(d, false, false));
            commit.counts.add(RecordOutcome::Failed);
            commit.results.push(result(
                item,
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
                    let error = GuestError::from(e);
                    return settle(
                        d,
                        commit,
                        item,
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
            commit.links.push(item.source_link(d, true, source_deleted));
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
                peer: d.p.source_end.clone(),
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
            if d.dry_run {
                d.plan.push(PlannedChange {
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
                .push(result(item, outcome, Some(dest_id), None));
        }
    }
    Ok(())
}

/// The JSON of a write kept in the dead-letter or conflict queue, to be
/// replayed later exactly as it would have been sent. A write that cannot
/// be serialised is an error (the page fails and is redone), never an
/// empty record in the queue that no replay could read.
fn queue_json<T: Serialize>(value: &T, pipeline: &str, record: &str) -> Result<String, SyncError> {
    serde_json::to_string(value).map_err(|source| SyncError::Serialize {
        pipeline: pipeline.to_string(),
        what: "the write",
        record: record.to_string(),
        source,
    })
}

/// Whether a write's answer means the destination already held the
/// record: it was sent to be created (no destination id), and the
/// connector answered with an existing one (found by the idempotency key
/// or a code) rather than `created`.
fn found_existing(w: &PendingWrite) -> bool {
    w.destination_id.is_none() && !w.delete
}

/// The full-refresh sweep: source records not seen by this run are gone.
pub async fn sweep(d: &mut Driver<'_>, gone: Vec<Link>) -> Result<PageCommit, SyncError> {
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
    let mut commit = process(d, records).await?;
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
pub async fn deliver_one(
    d: &mut Driver<'_>,
    w: PendingWrite,
) -> Result<(PageCommit, Option<String>), SyncError> {
    let p = &d.p.pipeline;
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
    let delivered = write_all(d, std::slice::from_ref(&record)).await?;
    let mut commit = PageCommit::default();
    let outcome = delivered
        .into_iter()
        .next()
        .ok_or_else(|| SyncError::Malformed {
            pipeline: p.name.clone(),
            message: "the write got no result".into(),
        })?;
    settle(
        d,
        &mut commit,
        &item,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, n: u32) -> Record {
        Record {
            stream: "s".into(),
            id: id.into(),
            operation: Operation::Upsert,
            payload: format!("{{\"n\":{n}}}"),
            cursor: None,
        }
    }

    #[test]
    fn the_last_record_of_each_id_wins_in_page_order() {
        let page = vec![
            record("a", 1),
            record("b", 1),
            record("a", 2),
            record("c", 1),
            record("a", 3),
        ];
        let (kept, _, superseded) = last_of_each_id(page, Vec::new());
        let seen: Vec<(&str, &str)> = kept
            .iter()
            .map(|r| (r.id.as_str(), r.payload.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("b", r#"{"n":1}"#),
                ("c", r#"{"n":1}"#),
                ("a", r#"{"n":3}"#)
            ]
        );
        assert_eq!(superseded, 2);
    }

    /// A value whose serialisation fails, as a write's could.
    struct Unserialisable;

    impl Serialize for Unserialisable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }

    #[test]
    fn a_write_that_cannot_be_serialised_is_an_error_not_an_empty_record() {
        // Before: `serde_json::to_string(&w).unwrap_or_default()` put ""
        // in the queue, which no replay can read.
        let err = queue_json(&Unserialisable, "p", "r1").unwrap_err();
        assert!(matches!(err, SyncError::Serialize { .. }), "{err}");
        assert!(err.to_string().contains("record r1"), "{err}");
        let w = PendingWrite {
            source_id: "r1".into(),
            entity_id: None,
            delete: false,
            destination_id: None,
            payload: serde_json::json!({"a": 1}),
            key: "k".into(),
            source_content: None,
            source_version: None,
            merged: None,
        };
        let json = queue_json(&w, "p", "r1").unwrap();
        assert_eq!(serde_json::from_str::<PendingWrite>(&json).unwrap(), w);
    }

    #[test]
    fn a_page_without_repeats_is_left_as_it_is() {
        let (kept, _, superseded) =
            last_of_each_id(vec![record("a", 1), record("b", 2)], Vec::new());
        assert_eq!(kept.len(), 2);
        assert_eq!(superseded, 0);
    }

    #[test]
    fn a_malformed_copy_competes_by_its_place_in_the_page() {
        let bad = |id: &str, position: usize| RejectedRecord {
            position,
            record: record(id, 0),
            fault: PayloadFault::NotObject,
        };
        // Page: a(valid) b(bad) a(bad) b(valid) c(valid)
        let (kept, rejected, superseded) = last_of_each_id(
            vec![record("a", 1), record("b", 2), record("c", 3)],
            vec![bad("b", 1), bad("a", 2)],
        );
        let ids: Vec<&str> = kept.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        let ids: Vec<(&str, usize)> = rejected
            .iter()
            .map(|r| (r.record.id.as_str(), r.position))
            .collect();
        assert_eq!(ids, [("a", 2)]);
        assert_eq!(superseded, 2);
    }
}

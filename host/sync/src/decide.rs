//! A page's decisions: each changed record, mapped, checked by the quality
//! gate and compared with the destination's copy, becomes one [`Step`] —
//! done (nothing to write), quarantined, a write, or held as a conflict.
//! The rules themselves are the pure functions of `plan`; this module
//! turns them into the writes to send and what to queue.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SyncError;
use super::content::{Content, idempotency_key};
use super::mapping::Mapped;
use super::page::{Item, PageContext};
use super::plan::{self, Decision};
use super::store::{DeadLetterKind, Link, NewConflict, NewDeadLetter, PageCommit, RecordOutcome};
use nexo_runtime::plugin::{Operation, Record};

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

/// What was decided for one item.
pub(super) enum Step {
    /// Nothing to write: the outcome, the destination id, why.
    Done(RecordOutcome, Option<String>, String),
    /// Refused by the quality gate.
    Quarantine(NewDeadLetter),
    /// A write to send.
    Write(PendingWrite, Decision),
    /// Held for a person (both sides changed); whether an earlier conflict
    /// on the record is still open.
    Hold(PendingWrite, Decision, bool),
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

/// Decide each item of a page: `mapped` is the mappers' output by source
/// id, `dest_links` the destination record of each entity. Conflicts the
/// policy settles at once go in `commit`.
pub(super) fn decide_all(
    ctx: PageContext<'_>,
    items: &[Item],
    mapped: &Mapped,
    dest_links: &HashMap<i64, Link>,
    commit: &mut PageCommit,
) -> Result<Vec<Step>, SyncError> {
    let p = &ctx.p.pipeline;
    let name = p.name.as_str();
    let mut steps = Vec::with_capacity(items.len());
    for item in items {
        let dest = item.entity_id.and_then(|e| dest_links.get(&e));
        let key = idempotency_key(name, &p.source.connection, &item.source_id);
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
        if let Some(failure) = mapped.failed.get(&item.source_id) {
            // Kept as the source sent it: a replay maps it again.
            let source = serde_json::from_str(&failure.source.payload).unwrap_or(Value::Null);
            steps.push(Step::Quarantine(NewDeadLetter {
                kind: DeadLetterKind::Unmapped,
                source_id: item.source_id.clone(),
                record: queue_json(
                    &pending(source, false, dest.map(|l| l.record_id.clone())),
                    name,
                    &item.source_id,
                )?,
                error: failure.message(),
                class: failure.error.class().to_string(),
                field: None,
                attempts: 0,
            }));
            continue;
        }
        let Some(record) = mapped.records.get(&item.source_id) else {
            steps.push(Step::Done(
                RecordOutcome::Skipped,
                dest.map(|l| l.record_id.clone()),
                "left out by the pipeline's mappers".into(),
            ));
            continue;
        };
        let payload: Value =
            serde_json::from_str(&record.payload).map_err(|e| SyncError::Malformed {
                pipeline: name.to_string(),
                message: format!("mapper output for {}: {e}", item.source_id),
            })?;
        let content = match payload {
            Value::Object(m) => Content::from_map(m, &ctx.p.dest_system),
            _ => {
                return Err(SyncError::Malformed {
                    pipeline: name.to_string(),
                    message: format!("mapper output for {} is not a JSON object", item.source_id),
                });
            }
        };
        let mut content = content;
        if let Err(failure) = ctx.p.gate.check_content(&mut content) {
            steps.push(Step::Quarantine(NewDeadLetter {
                kind: DeadLetterKind::Quarantined,
                source_id: item.source_id.clone(),
                record: queue_json(
                    &pending(
                        Value::Object(content.0),
                        false,
                        dest.map(|l| l.record_id.clone()),
                    ),
                    name,
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
        ctx.p.dest_compare.strip_read_only(&mut content);
        let cmp = &ctx.p.dest_compare;
        let mut decision =
            plan::decide_upsert(p, cmp, &content, dest, item.version.as_deref(), false);
        let mut already_open = false;
        if matches!(decision, Decision::Update { .. } | Decision::Hold { .. })
            && let Some(e) = item.entity_id.filter(|e| *e > 0)
            && ctx.queues.has_open_conflict(e, name)?
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
                            name,
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

    Ok(steps)
}

/// The JSON of a write kept in the dead-letter or conflict queue, to be
/// replayed later exactly as it would have been sent. A write that cannot
/// be serialised is an error (the page fails and is redone), never an
/// empty record in the queue that no replay could read.
pub(super) fn queue_json<T: Serialize>(
    value: &T,
    pipeline: &str,
    record: &str,
) -> Result<String, SyncError> {
    serde_json::to_string(value).map_err(|source| SyncError::Serialize {
        pipeline: pipeline.to_string(),
        what: "the write",
        record: record.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

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
}

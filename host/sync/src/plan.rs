//! Deciding what to do with each record, without side effects: whether a
//! read record is new, changed or an echo of Nexo's own write, and whether
//! a mapped record creates, updates, conflicts or leaves the destination
//! alone. Pure logic, so every rule is tested without plugins or servers.

use serde_json::Value;

use super::compare::Comparison;
use super::content::{Content, FieldChange, hash_text};
use super::pipeline::{ConflictPolicy, DeletePolicy, Pipeline};
use super::store::Link;

/// What a read record is, compared with what Nexo knew of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadClass {
    /// Not seen before, or changed since the last sync.
    Changed,
    /// Same as at the last sync: a re-read (look-back) or the echo of
    /// Nexo's own write (possibly with defaults the system added, or in
    /// the system's own form, in which case `rebase` is the new synced
    /// state).
    Unchanged {
        /// New known content and synced hash to store, when the read
        /// differs from what was synced only in the system's ways.
        rebase: Option<Rebase>,
    },
}

/// A link's new synced state after an echo (see [`Comparison::rebase`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebase {
    /// Canonical JSON of the content the link now knows.
    pub known: String,
    /// Its hash, the new synced hash.
    pub hash: String,
}

/// Classify a read record against its link; `cmp` is the stream's
/// comparison (what counts as the same value in the system's own form).
pub fn classify_read(link: Option<&Link>, content: &Content, cmp: &Comparison) -> ReadClass {
    classify_read_hashed(link, content, cmp, || content.hash())
}

/// [`classify_read`] with the content's hash supplied (computed once by
/// the caller, who stores it too).
pub fn classify_read_hashed(
    link: Option<&Link>,
    content: &Content,
    cmp: &Comparison,
    hash: impl FnOnce() -> String,
) -> ReadClass {
    let Some(link) = link else {
        return ReadClass::Changed;
    };
    let Some(synced) = link.synced_hash.as_deref() else {
        return ReadClass::Changed;
    };
    let hash = hash();
    if hash == synced {
        return ReadClass::Unchanged { rebase: None };
    }
    // The system may answer with more than Nexo wrote (defaults, computed
    // fields) and in its own form (`10` for `"10.00"`, its own ids): still
    // an echo when what Nexo knew at the sync is all there, as the
    // stream's comparison sees it. The read-back becomes the synced state,
    // so a later change is compared system form to system form.
    if let Some(known) = link.known.as_deref()
        && hash_text(known) == synced
        && let Ok(prior) = serde_json::from_str::<serde_json::Map<String, Value>>(known)
        && let prior = Content(prior)
        && cmp.contained(&prior, content)
    {
        let known = cmp.rebase(&prior, content).to_json();
        let hash = hash_text(&known);
        return ReadClass::Unchanged {
            rebase: Some(Rebase { known, hash }),
        };
    }
    ReadClass::Changed
}

/// How a conflict was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The source's version is written.
    Source,
    /// The destination's version is kept.
    Destination,
    /// Held for a person.
    Held,
}

/// What to do with one mapped record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Create it in the destination.
    Create,
    /// Update the linked destination record with this payload.
    Update {
        /// Destination id.
        id: String,
        /// The payload to write (destination-owned fields kept).
        payload: Content,
        /// What changes.
        diff: Vec<FieldChange>,
        /// Set when a conflict was settled in the source's favour.
        conflict: Option<Vec<String>>,
    },
    /// Delete the linked destination record.
    Delete {
        /// Destination id.
        id: String,
    },
    /// Nothing to write.
    Unchanged {
        /// Destination id, when linked.
        id: Option<String>,
        /// Why.
        reason: String,
        /// Set when a conflict was settled in the destination's favour.
        conflict: Option<Vec<String>>,
    },
    /// Both sides changed and the policy holds the pair for a person.
    Hold {
        /// Destination id.
        id: String,
        /// The fields that differ.
        fields: Vec<String>,
    },
}

/// Parse a link's known content.
pub fn known_content(link: &Link) -> Option<Content> {
    link.known
        .as_deref()
        .and_then(|k| serde_json::from_str(k).ok())
        .map(Content)
}

/// Whether the destination record changed since Nexo last synced it.
fn changed_since_sync(link: &Link, known: &Content) -> bool {
    link.synced_hash
        .as_deref()
        .is_some_and(|synced| known.hash() != synced)
}

/// Decide what an upsert does. `cmp` is the destination stream's
/// comparison, `dest` the linked destination record, `source_version` the
/// source record's cursor value (modification time), `open_conflict`
/// whether a person still has to settle this entity.
pub fn decide_upsert(
    p: &Pipeline,
    cmp: &Comparison,
    mapped: &Content,
    dest: Option<&Link>,
    source_version: Option<&str>,
    open_conflict: bool,
) -> Decision {
    let Some(dest) = dest.filter(|d| !d.deleted) else {
        if p.update_only {
            return Decision::Unchanged {
                id: None,
                reason: format!(
                    "not linked to a record of {}/{}, and this pipeline only updates linked records",
                    p.destination.connection, p.destination.stream
                ),
                conflict: None,
            };
        }
        return Decision::Create;
    };
    let id = dest.record_id.clone();
    if p.destination_is_master() {
        return Decision::Unchanged {
            id: Some(id),
            reason: format!(
                "{} is the master of this entity; only missing records are created",
                p.destination.connection
            ),
            conflict: None,
        };
    }
    let known = known_content(dest).unwrap_or(Content(Default::default()));
    let mut payload = mapped.clone();
    for field in p.destination_fields() {
        match known.0.get(field) {
            Some(v) => payload.0.insert(field.to_string(), v.clone()),
            None => payload.0.remove(field),
        };
    }
    let diff = cmp.diff(&payload, &known);
    if diff.is_empty() {
        return Decision::Unchanged {
            id: Some(id),
            reason: "the destination already has this content".into(),
            conflict: None,
        };
    }
    let fields: Vec<String> = diff.iter().map(|d| d.field.clone()).collect();
    if open_conflict {
        return Decision::Hold { id, fields };
    }
    if !changed_since_sync(dest, &known) {
        return Decision::Update {
            id,
            payload,
            diff,
            conflict: None,
        };
    }
    let source_wins = match p.conflicts.policy {
        ConflictPolicy::SourceWins => true,
        ConflictPolicy::DestinationWins => false,
        ConflictPolicy::Hold => return Decision::Hold { id, fields },
        // RFC 3339 UTC values of one form compare as strings; a side
        // without a modification time loses to one that has it.
        ConflictPolicy::NewestWins => match (source_version, dest.version.as_deref()) {
            (Some(s), Some(d)) => s > d,
            (Some(_), None) => true,
            (None, _) => false,
        },
    };
    if source_wins {
        Decision::Update {
            id,
            payload,
            diff,
            conflict: Some(fields),
        }
    } else {
        Decision::Unchanged {
            id: Some(id),
            reason: format!(
                "conflict on {}: the destination's version is kept ({:?} policy)",
                fields.join(", "),
                p.conflicts.policy
            ),
            conflict: Some(fields),
        }
    }
}

/// Decide what a source delete does.
pub fn decide_delete(p: &Pipeline, dest: Option<&Link>) -> Decision {
    let Some(dest) = dest.filter(|d| !d.deleted) else {
        return Decision::Unchanged {
            id: None,
            reason: "deleted in the source; nothing linked in the destination".into(),
            conflict: None,
        };
    };
    let id = dest.record_id.clone();
    if p.destination_is_master() {
        return Decision::Unchanged {
            id: Some(id),
            reason: format!(
                "deleted in the source, kept: {} is the master of this entity",
                p.destination.connection
            ),
            conflict: None,
        };
    }
    match p.deletes.policy {
        DeletePolicy::Ignore => Decision::Unchanged {
            id: Some(id),
            reason: "deleted in the source; the delete policy is `ignore`".into(),
            conflict: None,
        },
        DeletePolicy::Propagate => Decision::Delete { id },
        DeletePolicy::Archive => {
            let known = known_content(dest).unwrap_or(Content(Default::default()));
            let mut payload = known.clone();
            for (k, v) in &p.deletes.archive {
                payload.0.insert(k.clone(), v.clone());
            }
            let diff = payload.diff_from(&known);
            if diff.is_empty() {
                return Decision::Unchanged {
                    id: Some(id),
                    reason: "already archived".into(),
                    conflict: None,
                };
            }
            Decision::Update {
                id,
                payload,
                diff,
                conflict: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipeline(extra: &str) -> Pipeline {
        Pipeline::from_toml(
            &format!(
                "name = \"p\"\nentity = \"contact\"\n{extra}\n[source]\nconnection = \"a\"\nstream = \"s\"\n[destination]\nconnection = \"b\"\nstream = \"s\"\n"
            ),
            "t",
        )
        .unwrap()
    }

    fn exact() -> Comparison {
        Comparison::exact()
    }

    fn content(v: serde_json::Value) -> Content {
        match v {
            serde_json::Value::Object(m) => Content(m),
            _ => unreachable!(),
        }
    }

    fn link(known: serde_json::Value, synced: &serde_json::Value, version: Option<&str>) -> Link {
        Link {
            entity_id: 1,
            connection: "b".into(),
            stream: "s".into(),
            record_id: "b1".into(),
            known: Some(content(known).to_json()),
            synced_hash: Some(content(synced.clone()).hash()),
            version: version.map(str::to_string),
            deleted: false,
        }
    }

    #[test]
    fn reads_classify_as_changed_unchanged_or_echo() {
        let written = json!({"email": "a@x"});
        let l = link(written.clone(), &written, None);
        assert_eq!(
            classify_read(None, &content(written.clone()), &exact()),
            ReadClass::Changed
        );
        assert_eq!(
            classify_read(Some(&l), &content(written.clone()), &exact()),
            ReadClass::Unchanged { rebase: None }
        );
        let with_default = content(json!({"email": "a@x", "phone": null}));
        assert_eq!(
            classify_read(Some(&l), &with_default, &exact()),
            ReadClass::Unchanged {
                rebase: Some(Rebase {
                    known: with_default.to_json(),
                    hash: with_default.hash()
                })
            }
        );
        assert_eq!(
            classify_read(Some(&l), &content(json!({"email": "b@x"})), &exact()),
            ReadClass::Changed
        );
    }

    #[test]
    fn upserts_create_update_or_skip() {
        let p = pipeline("");
        let m = content(json!({"email": "a@x", "city": "Paris"}));
        assert_eq!(
            decide_upsert(&p, &exact(), &m, None, None, false),
            Decision::Create
        );
        let same = link(
            json!({"email": "a@x", "city": "Paris"}),
            &json!({"email": "a@x", "city": "Paris"}),
            None,
        );
        assert!(matches!(
            decide_upsert(&p, &exact(), &m, Some(&same), None, false),
            Decision::Unchanged { .. }
        ));
        let old = json!({"email": "a@x", "city": "Rome"});
        let prior = link(old.clone(), &old, None);
        match decide_upsert(&p, &exact(), &m, Some(&prior), None, false) {
            Decision::Update { diff, conflict, .. } => {
                assert_eq!(diff.len(), 1);
                assert_eq!(diff[0].field, "city");
                assert_eq!(conflict, None);
            }
            d => panic!("{d:?}"),
        }
        let mut deleted = prior.clone();
        deleted.deleted = true;
        assert_eq!(
            decide_upsert(&p, &exact(), &m, Some(&deleted), None, false),
            Decision::Create
        );
    }

    #[test]
    fn an_update_only_pipeline_updates_linked_records_and_creates_none() {
        let p = pipeline("update_only = true");
        let m = content(json!({"status": "paid"}));
        match decide_upsert(&p, &exact(), &m, None, None, false) {
            Decision::Unchanged {
                id: None, reason, ..
            } => {
                assert!(reason.contains("only updates linked records"), "{reason}")
            }
            d => panic!("{d:?}"),
        }
        let old = json!({"status": "draft", "name": "Deal"});
        let linked = link(old.clone(), &old, None);
        match decide_upsert(&p, &exact(), &m, Some(&linked), None, false) {
            Decision::Update { diff, .. } => {
                assert_eq!(diff.len(), 1, "only the fields it carries: {diff:?}");
                assert_eq!(diff[0].field, "status");
            }
            d => panic!("{d:?}"),
        }
    }

    fn conflicted(policy: &str, source_version: Option<&str>) -> Decision {
        let p = pipeline(&format!("[conflicts]\npolicy = \"{policy}\""));
        let base = json!({"email": "a@x", "city": "Rome"});
        // The destination changed the city to Milan since the last sync...
        let dest = link(
            json!({"email": "a@x", "city": "Milan"}),
            &base,
            Some("2026-01-02T00:00:00Z"),
        );
        // ...and the source changed it to Paris.
        let m = content(json!({"email": "a@x", "city": "Paris"}));
        decide_upsert(&p, &exact(), &m, Some(&dest), source_version, false)
    }

    #[test]
    fn conflicts_follow_the_policy() {
        assert!(matches!(
            conflicted("source-wins", None),
            Decision::Update {
                conflict: Some(_),
                ..
            }
        ));
        assert!(matches!(
            conflicted("destination-wins", None),
            Decision::Unchanged {
                conflict: Some(_),
                ..
            }
        ));
        assert!(matches!(conflicted("hold", None), Decision::Hold { .. }));
        assert!(matches!(
            conflicted("newest-wins", Some("2026-01-03T00:00:00Z")),
            Decision::Update {
                conflict: Some(_),
                ..
            }
        ));
        assert!(matches!(
            conflicted("newest-wins", Some("2026-01-01T00:00:00Z")),
            Decision::Unchanged {
                conflict: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn masters_keep_their_fields_and_entities() {
        let p = pipeline("[master]\nfields = { city = \"b\" }");
        let known = json!({"email": "a@x", "city": "Milan"});
        let dest = link(known.clone(), &known, None);
        let m = content(json!({"email": "new@x", "city": "Paris"}));
        match decide_upsert(&p, &exact(), &m, Some(&dest), None, false) {
            Decision::Update { payload, diff, .. } => {
                assert_eq!(payload.0["city"], json!("Milan"));
                assert_eq!(diff.len(), 1);
            }
            d => panic!("{d:?}"),
        }
        let p = pipeline("[master]\nsystem = \"b\"");
        assert!(matches!(
            decide_upsert(&p, &exact(), &m, Some(&dest), None, false),
            Decision::Unchanged { .. }
        ));
        assert_eq!(
            decide_upsert(&p, &exact(), &m, None, None, false),
            Decision::Create
        );
        assert!(matches!(
            decide_delete(&p, Some(&dest)),
            Decision::Unchanged { .. }
        ));
    }

    #[test]
    fn deletes_follow_the_policy() {
        let known = json!({"email": "a@x", "stage": "customer"});
        let dest = link(known.clone(), &known, None);
        assert_eq!(
            decide_delete(&pipeline("[deletes]\npolicy = \"propagate\""), Some(&dest)),
            Decision::Delete { id: "b1".into() }
        );
        assert!(matches!(
            decide_delete(&pipeline("[deletes]\npolicy = \"ignore\""), Some(&dest)),
            Decision::Unchanged { .. }
        ));
        match decide_delete(
            &pipeline("[deletes]\npolicy = \"archive\"\narchive = { stage = \"archived\" }"),
            Some(&dest),
        ) {
            Decision::Update { payload, .. } => assert_eq!(payload.0["stage"], json!("archived")),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            decide_delete(&pipeline("[deletes]\npolicy = \"propagate\""), None),
            Decision::Unchanged { .. }
        ));
    }

    /// The destination stream of a deals → invoices pipeline, as an ERP
    /// reads its invoices back: amounts as it stores them, the customer as
    /// its own id, the deal's reference not kept.
    fn erp_invoices() -> Comparison {
        let schema = json!({"type": "object", "properties": {
            "total": {"type": "string", "format": "decimal"},
            "customer": {"type": "object", "x-nexo-reference": true},
            "external_refs": {"type": "array", "writeOnly": true},
            "reference": {"type": "string"}
        }});
        Comparison::from_schema(&schema.to_string()).unwrap()
    }

    #[test]
    fn a_read_back_in_the_systems_form_is_an_echo_and_later_edits_conflict() {
        let cmp = erp_invoices();
        let written = json!({"total": "10.00", "reference": "Deal 1",
            "customer": {"system": "crm", "id": "c-9"}, "external_refs": [{"system": "crm", "id": "d-1"}]});
        let link = link(written.clone(), &written, None);
        let read = content(json!({"total": "10", "reference": "Deal 1",
            "customer": {"system": "erp", "id": "42"}, "status": "draft"}));
        // Before: compared byte for byte, the read-back looked changed.
        assert_eq!(
            classify_read(Some(&link), &read, &exact()),
            ReadClass::Changed
        );
        let rebase = match classify_read(Some(&link), &read, &cmp) {
            ReadClass::Unchanged { rebase: Some(r) } => r,
            c => panic!("{c:?}"),
        };
        // The ERP's form, with the reference it keeps as its own id and
        // the field it does not read back as written.
        let known: serde_json::Map<String, Value> = serde_json::from_str(&rebase.known).unwrap();
        assert_eq!(known["total"], json!("10"));
        assert_eq!(known["customer"], json!({"system": "crm", "id": "c-9"}));
        assert_eq!(known["status"], json!("draft"));
        assert_eq!(rebase.hash, hash_text(&rebase.known));
        // Rebased on the read-back: the deal's amount changes, an update
        // of the total alone, no conflict.
        let mut synced = link.clone();
        synced.known = Some(rebase.known.clone());
        synced.synced_hash = Some(rebase.hash.clone());
        let p = pipeline("[conflicts]\npolicy = \"hold\"");
        let mapped = content(json!({"total": "12.50", "reference": "Deal 1",
            "customer": {"system": "crm", "id": "c-9"}, "external_refs": [{"system": "crm", "id": "d-1"}]}));
        match decide_upsert(&p, &cmp, &mapped, Some(&synced), None, false) {
            Decision::Update {
                diff,
                conflict: None,
                ..
            } => {
                assert_eq!(diff.len(), 1, "{diff:?}");
                assert_eq!(diff[0].field, "total");
            }
            d => panic!("{d:?}"),
        }
        // The same deal mapped again: nothing to write (a dry run and the
        // run both say unchanged).
        let same = content(json!({"total": "10.00", "reference": "Deal 1",
            "customer": {"system": "crm", "id": "c-9"}}));
        assert!(matches!(
            decide_upsert(&p, &cmp, &same, Some(&synced), None, false),
            Decision::Unchanged { .. }
        ));
        // The deal moves to another company: the customer is updated,
        // though the ERP reads back only its own party id.
        let mut moved = same.clone();
        moved
            .0
            .insert("customer".into(), json!({"system": "crm", "id": "c-10"}));
        match decide_upsert(&p, &cmp, &moved, Some(&synced), None, false) {
            Decision::Update { diff, .. } => assert_eq!(diff[0].field, "customer"),
            d => panic!("{d:?}"),
        }
        // Someone edits the reference in the ERP: a real change, held.
        let mut edited = synced.clone();
        edited.known = Some(
            content(json!({"total": "10", "reference": "Edited",
            "customer": {"system": "erp", "id": "42"}, "status": "draft"}))
            .to_json(),
        );
        assert!(matches!(
            decide_upsert(&p, &cmp, &mapped, Some(&edited), None, false),
            Decision::Hold { .. }
        ));
    }
}

//! A page's first step: what was read, reduced to the last record of each
//! id, classified against the identity map. Records exactly as last synced
//! with this destination are settled here (unchanged), records the engine
//! cannot use are quarantined one by one, and the rest go on to be mapped,
//! decided and written (`decide`, `settle`). The held-commit rule lives in
//! the driver: it asks [`Deduped::ids`] and [`Classified::entities`] what
//! a page's lookups will read before they run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::SyncError;
use super::compare::Comparison;
use super::content::{Content, SystemFields, hash_text};
use super::pipeline::Endpoint;
use super::plan::{self, ReadClass};
use super::prepared::Prepared;
use super::retry::Waiter;
use super::store::{
    DELETED_IN_STEP, DeadLetterKind, HeldRecord, Link, LinkStore, LinkUpdate, LogLevel,
    NewDeadLetter, PageCommit, PageStore, QueueStore, RecordOutcome, RecordResult, ReviewStatus,
    ReviewStore,
};
use nexo_runtime::plugin::{Operation, PayloadFault, Record, RejectedRecord};

/// What the page steps use, and nothing else: the prepared pipeline, the
/// identity map, the conflict queue, and the run's waiter for retries.
#[derive(Clone, Copy)]
pub(super) struct PageContext<'a> {
    pub p: &'a Prepared,
    pub links: &'a dyn LinkStore,
    pub queues: &'a dyn QueueStore,
    pub reviews: &'a dyn ReviewStore,
    pub waiter: &'a Waiter,
}

impl<'a> PageContext<'a> {
    /// The page steps' view of `p` over `store` (a run's, a queue
    /// action's or a matching pass's), retrying through `waiter`.
    pub fn over(p: &'a Prepared, store: &'a dyn PageStore, waiter: &'a Waiter) -> Self {
        PageContext {
            p,
            links: store,
            queues: store,
            reviews: store,
            waiter,
        }
    }
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
pub(super) struct Item {
    pub source_id: String,
    pub group: usize,
    pub entity_id: Option<i64>,
    pub delete: bool,
    pub content: Option<Content>,
    /// The content's canonical JSON and hash, computed once.
    pub canonical: Option<(String, String)>,
    pub version: Option<String>,
}

impl Item {
    /// An item of a queued write (replay, resolution) with its content.
    pub fn set_content(&mut self, content: Content) {
        let json = content.to_json();
        let hash = hash_text(&json);
        self.canonical = Some((json, hash));
        self.content = Some(content);
    }

    /// The source record's link update: `synced` when it is now in step
    /// with the destination, `deleted` when it is gone from the source.
    pub fn source_link(&self, p: &Prepared, synced: bool, deleted: bool) -> LinkUpdate {
        let pipeline = &p.pipeline;
        LinkUpdate {
            entity_id: self.entity_id,
            entity: pipeline.entity.clone(),
            group: self.group,
            connection: pipeline.source.connection.clone(),
            stream: pipeline.source.stream.clone(),
            record_id: self.source_id.clone(),
            known: self.canonical.as_ref().map(|(json, _)| json.clone()),
            synced_hash: match (synced, deleted) {
                (false, _) => None,
                // A delete settled for this destination (done, or nothing
                // to do there): in step with it as deleted.
                (true, true) => Some(DELETED_IN_STEP.to_string()),
                (true, false) => self.canonical.as_ref().map(|(_, hash)| hash.clone()),
            },
            peer: p.dest_end.clone(),
            version: self.version.clone(),
            deleted,
        }
    }

    /// This record's line in the run history.
    pub fn result(
        &self,
        outcome: RecordOutcome,
        dest: Option<String>,
        detail: Option<String>,
    ) -> RecordResult {
        RecordResult {
            source_id: self.source_id.clone(),
            destination_id: dest,
            outcome,
            detail,
        }
    }
}

/// A page as read, each id once (its last record), with how many were
/// read and how many earlier copies were left out.
pub(super) struct Deduped {
    records: Vec<Record>,
    rejected: Vec<RejectedRecord>,
    read: u64,
    superseded: u64,
}

impl Deduped {
    /// Reduce a page as read.
    pub fn of(records: Vec<Record>, rejected: Vec<RejectedRecord>) -> Self {
        let read = (records.len() + rejected.len()) as u64;
        let (records, rejected, superseded) = last_of_each_id(records, rejected);
        Deduped {
            records,
            rejected,
            read,
            superseded,
        }
    }

    /// The ids of the page's records (valid or not), which its lookups
    /// read.
    pub fn ids(&self) -> Vec<&str> {
        self.records
            .iter()
            .chain(self.rejected.iter().map(|r| &r.record))
            .map(|r| r.id.as_str())
            .collect()
    }
}

/// A page after its lookups of the source's links: what is unchanged is
/// settled in `commit`, the rest waits to be mapped, decided and written.
pub(super) struct Classified {
    pub commit: PageCommit,
    pub items: Vec<Item>,
    pub changed: Vec<Record>,
    /// The entities of the page's linked records (whose destination
    /// records [`Classified::look_up_destinations`] reads).
    pub entities: HashSet<i64>,
    pub dest_links: HashMap<i64, Link>,
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
    source: &str,
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
        error: format!("source record {} from {}: {reason}", record.id, source),
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

/// A page's reads of the source's links, and what they settle: every
/// record that is as last synced, every record the engine cannot use
/// (`rejected` by the plugin boundary's check, quarantined one by one),
/// and the copies of an id a later record of the page supersedes.
pub(super) fn classify(ctx: PageContext<'_>, page: Deduped) -> Result<Classified, SyncError> {
    let p = &ctx.p.pipeline;
    let ids = page.ids();
    // Sized up front: grown by doubling, these page-sized vectors were a
    // visible share of the run's copying and page faults.
    let mut commit = PageCommit {
        links: Vec::with_capacity(2 * page.records.len()),
        results: Vec::with_capacity(page.records.len()),
        ..PageCommit::default()
    };
    commit.counts.read = page.read;
    commit.counts.superseded = page.superseded;
    if page.superseded > 0 {
        commit.log.push((
            LogLevel::Warn,
            format!(
                "{} records left out: a later record of the same page has the same id (the last one wins)",
                page.superseded
            ),
        ));
    }
    // The source's records with their sync state with this destination:
    // delivered elsewhere is not delivered here.
    let src_links: HashMap<String, Link> = ctx
        .links
        .links(
            &p.entity,
            &p.source.connection,
            &p.source.stream,
            &ids,
            Some(&p.destination),
        )?
        .into_iter()
        .map(|l| (l.record_id.clone(), l))
        .collect();
    // Records whose match waits for a person (only pipelines that match
    // have any): an open review holds its record back, a decided one is
    // delivered now, settled with this page.
    let waiting = if p.matching.is_some() {
        ctx.reviews.waiting_reviews(&p.name, &ids)?
    } else {
        HashMap::new()
    };
    drop(ids);
    let Deduped {
        records, rejected, ..
    } = page;
    // Named only in a quarantined record's error: asked for only then.
    let source = || ctx.p.source.label();
    for bad in &rejected {
        quarantine_malformed(&source(), &mut commit, &bad.record, &bad.fault);
    }

    let mut changed = Vec::with_capacity(records.len());
    let mut items = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        match waiting.get(&r.id) {
            Some(&(review, ReviewStatus::Open)) if r.operation != Operation::Delete => {
                hold(&mut commit, review, &r);
                continue;
            }
            // Deleted in the source while it waited: there is nothing
            // left to link or create, so its review is withdrawn (and the
            // delete goes on as for any record not linked).
            Some(&(review, ReviewStatus::Open)) => {
                commit.withdraw_reviews.push(review);
                commit.log.push((
                    LogLevel::Info,
                    format!(
                        "review {review} withdrawn: record {} was deleted in the source while it waited",
                        r.id
                    ),
                ));
            }
            Some(&(review, _)) => commit.deliver_reviews.push(review),
            None => {}
        }
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
            let content = match Content::of(&r.payload, &ctx.p.source_system) {
                Ok(content) => content,
                Err(e) => {
                    let fault = PayloadFault::Invalid(e);
                    quarantine_malformed(&source(), &mut commit, &r, &fault);
                    continue;
                }
            };
            let json = content.to_json();
            let hash = hash_text(&json);
            let class =
                plan::classify_read_hashed(link, &content, &ctx.p.source_compare, || hash.clone());
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
                commit.results.push(item.result(
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
    let entities = items.iter().filter_map(|i| i.entity_id).collect();
    Ok(Classified {
        commit,
        items,
        changed,
        entities,
        dest_links: HashMap::new(),
    })
}

/// A record held back while its review is open: neither created nor
/// dropped. Its review keeps this, the newest, copy for the run that
/// delivers it once a person decided.
fn hold(commit: &mut PageCommit, review: i64, r: &Record) {
    commit.counts.add(RecordOutcome::Held);
    commit.results.push(RecordResult {
        source_id: r.id.clone(),
        destination_id: None,
        outcome: RecordOutcome::Held,
        detail: Some(format!(
            "waits for review {review} of its match (`nexo review show {review}`)"
        )),
    });
    commit.hold_reviews.push((
        review,
        HeldRecord {
            id: r.id.clone(),
            payload: r.payload.clone(),
            cursor: r.cursor.clone(),
        },
    ));
}

impl Classified {
    /// The destination record of each of the page's entities.
    pub fn look_up_destinations(&mut self, ctx: PageContext<'_>) -> Result<(), SyncError> {
        let p = &ctx.p.pipeline;
        let list: Vec<i64> = self.entities.iter().copied().collect();
        self.dest_links = ctx
            .links
            .links_of_entities(
                &list,
                &p.destination.connection,
                &p.destination.stream,
                Some(&p.source),
            )?
            .into_iter()
            .map(|l| (l.entity_id, l))
            .collect();
        Ok(())
    }
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

//! The matching pass of a pipeline with `[match]`: before its first run
//! writes anything (or when `nexo pipeline match` asks), every source
//! record is mapped as the run would map it and compared with the records
//! the destination already holds. A sure match becomes an identity link —
//! the run then updates that record instead of creating one — an uncertain
//! one goes to the review queue and its record waits, and the rest are
//! created by the run as usual. The pass's links, reviews and counts are
//! one commit: all of it or nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::SyncError;
use super::content::Content;
use super::matching::{Candidate, Verdict, match_records};
use super::page::PageContext;
use super::ports::Source;
use super::store::{
    HeldRecord, LinkUpdate, LogLevel, MatchCounts, NewReview, PageCommit, ReviewCandidate,
};
use nexo_runtime::plugin::{Operation, Record};

/// How many pages one side may have: a source that never says it is done
/// is stopped rather than read forever.
const MAX_PAGES: u64 = 100_000;

/// Records mapped per call of the mappers.
const MAP_BATCH: usize = 500;

/// A source record linked to the destination record it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkedMatch {
    /// The source record.
    pub source_id: String,
    /// The destination record.
    pub destination_id: String,
    /// The key that found it.
    pub key: String,
}

/// A source record queued for a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedMatch {
    /// The source record.
    pub source_id: String,
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
    /// Why it is not sure.
    pub why: String,
}

/// What a matching pass found (or, in a dry run, would find).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatchReport {
    /// Counts.
    pub counts: MatchCounts,
    /// Linked, by source id.
    pub linked: Vec<LinkedMatch>,
    /// Queued for review.
    pub queued: Vec<QueuedMatch>,
    /// No candidate: the run creates them.
    pub unmatched: Vec<String>,
}

/// Every record of one side, read from the start (deletes left out), the
/// last copy of an id winning.
async fn read_all(
    source: &dyn Source,
    pipeline: &str,
    side: &str,
) -> Result<Vec<Record>, SyncError> {
    let mut out: BTreeMap<String, Record> = BTreeMap::new();
    let mut state: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let checked = source
            .read(state.as_deref())
            .await
            .map_err(|e| SyncError::Plugin {
                pipeline: pipeline.to_string(),
                step: "read",
                source: Box::new(e),
            })?;
        let page = checked.page;
        if page.has_more && page.state == state {
            return Err(SyncError::Malformed {
                pipeline: pipeline.to_string(),
                message: format!(
                    "matching: the {side} ({}) said more pages follow but returned the state it was given",
                    source.label()
                ),
            });
        }
        for r in page.records {
            if r.operation == Operation::Delete {
                out.remove(&r.id);
            } else {
                out.insert(r.id.clone(), r);
            }
        }
        if !page.has_more {
            return Ok(out.into_values().collect());
        }
        state = page.state;
    }
    Err(SyncError::Malformed {
        pipeline: pipeline.to_string(),
        message: format!(
            "matching: the {side} ({}) was still not done after {MAX_PAGES} pages",
            source.label()
        ),
    })
}

/// A reference field's ids on one side replaced by the entities the
/// identity map links them to (`E42`); an id linked to nothing compares
/// with nothing.
fn resolve(
    ctx: PageContext<'_>,
    side: &mut [(String, crate::matching::Record)],
    field: &str,
    entity: &str,
    connection: &str,
    stream: &str,
) -> Result<(), SyncError> {
    let ids: Vec<&str> = side
        .iter()
        .filter_map(|(_, r)| r.get(field).map(String::as_str))
        .collect();
    let entities: HashMap<String, i64> = ctx
        .links
        .links(entity, connection, stream, &ids, None)?
        .into_iter()
        .map(|l| (l.record_id, l.entity_id))
        .collect();
    for (_, record) in side.iter_mut() {
        match record.get(field).and_then(|id| entities.get(id)) {
            Some(e) => {
                record.insert(field.to_string(), format!("E{e}"));
            }
            None => {
                record.remove(field);
            }
        }
    }
    Ok(())
}

fn object(payload: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str(payload) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The pass: read both sides, match, and the commit that links and queues.
pub(super) async fn pass(ctx: PageContext<'_>) -> Result<(PageCommit, MatchReport), SyncError> {
    let p = &ctx.p.pipeline;
    let name = p.name.as_str();
    let rules = p.matching.as_ref().ok_or_else(|| SyncError::Queue(format!(
        "pipeline `{name}` has no `[match]` section; add one (see the README, \"Going live\") to match before the first sync"
    )))?;
    let keys = rules.compiled(p.model.as_deref()).map_err(|message| {
        SyncError::Pipeline(super::PipelineError::Invalid {
            name: name.to_string(),
            field: "match.keys".into(),
            message,
        })
    })?;
    let source = read_all(ctx.p.source.as_ref(), name, "source").await?;
    let dest = read_all(ctx.p.dest_reader.as_ref(), name, "destination").await?;
    let mut report = MatchReport::default();

    // Source records linked already, or waiting in the queue, are not
    // matched again.
    let ids: Vec<&str> = source.iter().map(|r| r.id.as_str()).collect();
    let src_links: HashMap<String, i64> = ctx
        .links
        .links(
            &p.entity,
            &p.source.connection,
            &p.source.stream,
            &ids,
            None,
        )?
        .into_iter()
        .map(|l| (l.record_id, l.entity_id))
        .collect();
    let entities: Vec<i64> = src_links.values().copied().collect();
    let linked_entities: HashSet<i64> = ctx
        .links
        .links_of_entities(
            &entities,
            &p.destination.connection,
            &p.destination.stream,
            None,
        )?
        .into_iter()
        .filter(|l| !l.deleted)
        .map(|l| l.entity_id)
        .collect();
    let waiting = ctx.reviews.waiting_reviews(name, &ids)?;
    let (done, open): (Vec<Record>, Vec<Record>) = source.into_iter().partition(|r| {
        waiting.contains_key(&r.id)
            || src_links
                .get(&r.id)
                .is_some_and(|e| linked_entities.contains(e))
    });
    report.counts.already = done.len() as u64;

    // Destination records another record of this entity type has are
    // not candidates.
    let dest_ids: Vec<&str> = dest.iter().map(|r| r.id.as_str()).collect();
    let taken: HashSet<String> = ctx
        .links
        .links(
            &p.entity,
            &p.destination.connection,
            &p.destination.stream,
            &dest_ids,
            None,
        )?
        .into_iter()
        .map(|l| l.record_id)
        .collect();
    let dest: BTreeMap<String, (Record, Content)> = dest
        .into_iter()
        .filter(|r| !taken.contains(&r.id))
        .filter_map(|r| {
            let content = Content::from_map(object(&r.payload)?, &ctx.p.dest_system);
            Some((r.id.clone(), (r, content)))
        })
        .collect();

    // The source as the run would write it.
    let mut mapped: HashMap<String, Value> = HashMap::new();
    for chunk in open.chunks(MAP_BATCH) {
        let out = ctx.p.mapping.map(name, chunk.to_vec()).await?;
        for (id, r) in out.records {
            if let Some(m) = object(&r.payload) {
                mapped.insert(id, Value::Object(m));
            }
        }
    }
    let as_record = |v: &Value| match v {
        Value::Object(m) => rules.record_of(&keys, m),
        _ => Default::default(),
    };
    let source_side: Vec<(String, _)> = open
        .iter()
        .filter_map(|r| Some((r.id.clone(), as_record(mapped.get(&r.id)?))))
        .collect();
    let dest_side: Vec<(String, _)> = dest
        .iter()
        .map(|(id, (_, c))| (id.clone(), rules.record_of(&keys, &c.0)))
        .collect();
    let (mut source_side, mut dest_side) = (source_side, dest_side);
    for (field, r) in &rules.references {
        let ends = [
            (&mut source_side, &p.source.connection, &r.source),
            (&mut dest_side, &p.destination.connection, &r.destination),
        ];
        for (side, connection, stream) in ends {
            resolve(ctx, side, field, &r.entity, connection, stream)?;
        }
    }
    let matches = match_records(&keys, &source_side, &dest_side);

    let mut commit = PageCommit::default();
    let by_id: HashMap<&str, &Record> = open.iter().map(|r| (r.id.as_str(), r)).collect();
    // Destination id → the group and entity of its first source record.
    let mut shared: HashMap<String, (usize, Option<i64>)> = HashMap::new();
    for (group, (id, verdict)) in matches.verdicts.into_iter().enumerate() {
        let Some(record) = by_id.get(id.as_str()) else {
            continue;
        };
        match verdict {
            Verdict::Sure(c) => {
                let Some((dest_record, content)) = dest.get(&c.id) else {
                    continue;
                };
                // Several source records of one party share the entity
                // (and so the destination record) of the first.
                let (group, entity_id) = match shared.get(&c.id) {
                    Some(&first) => first,
                    None => {
                        let first = (group + 1, src_links.get(&id).copied());
                        shared.insert(c.id.clone(), first);
                        commit.links.push(LinkUpdate {
                            entity_id: first.1,
                            entity: p.entity.clone(),
                            group: first.0,
                            connection: p.destination.connection.clone(),
                            stream: p.destination.stream.clone(),
                            record_id: c.id.clone(),
                            known: Some(content.to_json()),
                            synced_hash: None,
                            peer: ctx.p.source_end.clone(),
                            version: dest_record.cursor.clone(),
                            deleted: false,
                        });
                        first
                    }
                };
                let source_content = object(&record.payload)
                    .map(|m| Content::from_map(m, &ctx.p.source_system).to_json());
                commit.links.push(LinkUpdate {
                    entity_id,
                    entity: p.entity.clone(),
                    group,
                    connection: p.source.connection.clone(),
                    stream: p.source.stream.clone(),
                    record_id: id.clone(),
                    known: source_content,
                    synced_hash: None,
                    peer: ctx.p.dest_end.clone(),
                    version: record.cursor.clone(),
                    deleted: false,
                });
                report.linked.push(LinkedMatch {
                    source_id: id,
                    destination_id: c.id,
                    key: c.key,
                });
            }
            Verdict::Uncertain { candidates, why } => {
                let review_candidates = candidates
                    .iter()
                    .filter_map(|c| {
                        let (r, content) = dest.get(&c.id)?;
                        Some(ReviewCandidate {
                            id: c.id.clone(),
                            key: c.key.clone(),
                            score: c.score,
                            record: Value::Object(content.0.clone()),
                            version: r.cursor.clone(),
                        })
                    })
                    .collect();
                commit.new_reviews.push(NewReview {
                    record: HeldRecord {
                        id: id.clone(),
                        payload: record.payload.clone(),
                        cursor: record.cursor.clone(),
                    },
                    mapped: mapped.get(&id).cloned().unwrap_or(Value::Null),
                    candidates: review_candidates,
                    why: why.clone(),
                });
                report.queued.push(QueuedMatch {
                    source_id: id,
                    candidates,
                    why,
                });
            }
            Verdict::None => report.unmatched.push(id),
        }
    }
    report.counts.linked = report.linked.len() as u64;
    report.counts.queued = report.queued.len() as u64;
    report.counts.unmatched = report.unmatched.len() as u64;
    let c = report.counts;
    commit.log.push((
        LogLevel::Info,
        format!(
            "matching before the first sync: {} linked to records {} already held, {} queued for review (`nexo review list`), {} to create, {} linked or queued before",
            c.linked, p.destination.connection, c.queued, c.unmatched, c.already
        ),
    ));
    commit.match_pass = Some(c);
    Ok((commit, report))
}

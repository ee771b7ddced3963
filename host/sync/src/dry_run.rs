//! Dry run: the same run as a real one over stores that record instead of
//! writing. [`DryRun`] wraps the real store: its reads are the real
//! store's with what the run has "committed" so far laid over them (so
//! later pages decide as the real run would), its writes are recorded in
//! memory, and nothing reaches the database. [`DryDestination`] answers a
//! write as the destination would, without calling it. The engine runs the
//! page path unchanged over them; the planned changes are what it settled.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::content::FieldChange;
use super::pipeline::Endpoint;
use super::ports::{Call, Destination};
use super::store::{
    CancelReason, Conflict, ConflictStatus, DeadLetter, DeadLetterStatus, Link, LinkStore,
    LinkUpdate, LogLevel, MatchCounts, PageCommit, PageStore, QueueStore, RecordResult, Review,
    ReviewFilter, ReviewStatus, ReviewStore, RunFilter, RunId, RunRow, RunStatus, RunStore,
};
use nexo_db::StoreError;
use nexo_runtime::PluginError;
use nexo_runtime::plugin::{Operation, Record, WriteOutcome, WriteResult};

/// The run id of a dry run: after every real run (a look-back counts from
/// the last real run's start), and recorded nowhere.
pub(super) const DRY_RUN: RunId = RunId::MAX;

/// One change a dry run would make.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedChange {
    /// `create`, `update` or `delete`.
    pub action: &'static str,
    /// Source id.
    pub source_id: String,
    /// Destination id (none for a create).
    pub destination_id: Option<String>,
    /// Field-by-field changes against the last known destination state.
    pub diff: Vec<FieldChange>,
}

/// A store that serves reads from `real` merged with what the run
/// recorded, and records writes instead of making them.
pub(crate) struct DryRun {
    real: Arc<dyn PageStore>,
    recorded: Mutex<Recorded>,
}

/// What a dry run has "committed".
#[derive(Default)]
struct Recorded {
    overlay: Overlay,
    /// Entities with a conflict held for a person, per pipeline.
    open_conflicts: HashSet<(i64, String)>,
    /// Source records a dry matching pass queued for review.
    queued: HashMap<String, (i64, ReviewStatus)>,
    /// Decided reviews the dry run delivered.
    delivered: HashSet<i64>,
    /// The dry matching pass, once it "committed".
    pass: Option<MatchCounts>,
}

impl std::fmt::Debug for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRun").finish_non_exhaustive()
    }
}

impl DryRun {
    /// A dry run over `real`.
    pub fn over(real: Arc<dyn PageStore>) -> Self {
        DryRun {
            real,
            recorded: Mutex::new(Recorded::default()),
        }
    }

    fn recorded(&self) -> Result<MutexGuard<'_, Recorded>, StoreError> {
        self.recorded.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl LinkStore for DryRun {
    fn links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        ids: &[&str],
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        let mut found = self.real.links(entity, connection, stream, ids, peer)?;
        self.recorded()?
            .overlay
            .patch(&mut found, connection, stream, ids);
        Ok(found)
    }

    fn record_links(
        &self,
        connection: &str,
        stream: &str,
        id: &str,
    ) -> Result<Vec<Link>, StoreError> {
        self.real.record_links(connection, stream, id)
    }

    fn links_of_entities(
        &self,
        entities: &[i64],
        connection: &str,
        stream: &str,
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        // Entities the run created have negative ids, known only here.
        let stored: Vec<i64> = entities.iter().copied().filter(|e| *e > 0).collect();
        let mut found = self
            .real
            .links_of_entities(&stored, connection, stream, peer)?;
        let all: HashSet<i64> = entities.iter().copied().collect();
        self.recorded()?
            .overlay
            .patch_entities(&mut found, &all, connection, stream);
        Ok(found)
    }

    fn search_entities(&self, q: &str, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        self.real.search_entities(q, limit)
    }

    fn entity(&self, entity_id: i64) -> Result<Vec<Link>, StoreError> {
        self.real.entity(entity_id)
    }

    fn unswept_links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        peer: &Endpoint,
    ) -> Result<Vec<Link>, StoreError> {
        // The records this run read are left out by the run itself; the
        // others' links are as stored.
        self.real.unswept_links(entity, connection, stream, peer)
    }
}

impl RunStore for DryRun {
    fn begin_run(&self, _pipeline: &str) -> Result<RunId, StoreError> {
        Ok(DRY_RUN)
    }

    fn previous_run_start(
        &self,
        pipeline: &str,
        before: RunId,
    ) -> Result<Option<String>, StoreError> {
        self.real.previous_run_start(pipeline, before)
    }

    fn commit_pages(
        &self,
        pipeline: &str,
        _run: RunId,
        pages: &[PageCommit],
    ) -> Result<(), StoreError> {
        let mut recorded = self.recorded()?;
        for page in pages {
            recorded.overlay.apply(&page.links);
            for r in &page.new_reviews {
                // Numbered below every real review: recorded nowhere.
                let id = -(recorded.queued.len() as i64) - 1;
                recorded
                    .queued
                    .insert(r.record.id.clone(), (id, ReviewStatus::Open));
            }
            recorded
                .delivered
                .extend(page.deliver_reviews.iter().copied());
            recorded
                .delivered
                .extend(page.withdraw_reviews.iter().copied());
            if let Some(pass) = page.match_pass {
                recorded.pass = Some(pass);
            }
            for c in page.conflicts.iter().filter(|c| c.resolution.is_none()) {
                recorded
                    .open_conflicts
                    .insert((c.entity_id, pipeline.to_string()));
            }
        }
        Ok(())
    }

    fn request_stop(&self, _run: RunId) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn cancel_reason(&self, _run: RunId) -> Result<Option<CancelReason>, StoreError> {
        // Nobody can ask a run that is recorded nowhere to stop.
        Ok(None)
    }

    fn finish_run(
        &self,
        _run: RunId,
        _status: RunStatus,
        _error: Option<&str>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn run(&self, run: RunId) -> Result<Option<RunRow>, StoreError> {
        self.real.run(run)
    }

    fn interrupt_run(&self, _run: RunId) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        self.real.runs(filter)
    }

    fn run_records(&self, run: RunId) -> Result<Vec<RecordResult>, StoreError> {
        self.real.run_records(run)
    }

    fn run_log(&self, run: RunId) -> Result<Vec<(String, LogLevel, String)>, StoreError> {
        self.real.run_log(run)
    }

    fn prune_runs(&self, _days: u32) -> Result<usize, StoreError> {
        Ok(0)
    }
}

impl ReviewStore for DryRun {
    fn waiting_reviews(
        &self,
        pipeline: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, (i64, ReviewStatus)>, StoreError> {
        let recorded = self.recorded()?;
        let mut out = self.real.waiting_reviews(pipeline, ids)?;
        out.retain(|_, (id, _)| !recorded.delivered.contains(id));
        for id in ids {
            if let Some(queued) = recorded
                .queued
                .get(*id)
                .filter(|(review, _)| !recorded.delivered.contains(review))
            {
                out.insert(id.to_string(), *queued);
            }
        }
        Ok(out)
    }

    fn decided_reviews(&self, pipeline: &str) -> Result<Vec<Review>, StoreError> {
        let recorded = self.recorded()?;
        let mut out = self.real.decided_reviews(pipeline)?;
        out.retain(|r| !recorded.delivered.contains(&r.id));
        Ok(out)
    }

    fn reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>, StoreError> {
        self.real.reviews(filter)
    }

    fn review(&self, id: i64) -> Result<Option<Review>, StoreError> {
        self.real.review(id)
    }

    fn match_pass(&self, pipeline: &str) -> Result<Option<(String, MatchCounts)>, StoreError> {
        if let Some(pass) = self.recorded()?.pass {
            return Ok(Some(("(this dry run)".into(), pass)));
        }
        self.real.match_pass(pipeline)
    }
}

impl QueueStore for DryRun {
    fn dead_letters(
        &self,
        pipeline: Option<&str>,
        status: Option<DeadLetterStatus>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.real.dead_letters(pipeline, status)
    }

    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        self.real.dead_letter(id)
    }

    fn discard_dead_letter(&self, _id: i64) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn conflicts(
        &self,
        pipeline: Option<&str>,
        status: Option<ConflictStatus>,
    ) -> Result<Vec<Conflict>, StoreError> {
        self.real.conflicts(pipeline, status)
    }

    fn conflict(&self, id: i64) -> Result<Option<Conflict>, StoreError> {
        self.real.conflict(id)
    }

    fn has_open_conflict(&self, entity_id: i64, pipeline: &str) -> Result<bool, StoreError> {
        if self
            .recorded()?
            .open_conflicts
            .contains(&(entity_id, pipeline.to_string()))
        {
            return Ok(true);
        }
        self.real.has_open_conflict(entity_id, pipeline)
    }
}

/// A destination that answers each write as done without making it: a
/// create with a placeholder id, an update or a delete of the id sent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DryDestination;

impl Destination for DryDestination {
    fn write<'a>(&'a self, batch: &'a [Record]) -> Call<'a, Result<Vec<WriteResult>, PluginError>> {
        let results = batch
            .iter()
            .map(|r| WriteResult {
                id: r.id.clone(),
                outcome: match (r.operation, r.id.is_empty()) {
                    (Operation::Delete, _) => WriteOutcome::Deleted(r.id.clone()),
                    // Named after the write's idempotency key: one per
                    // source record, so the run's later pages find it.
                    (Operation::Upsert, true) => WriteOutcome::Created(format!(
                        "(new {})",
                        r.cursor.as_deref().unwrap_or_default()
                    )),
                    (Operation::Upsert, false) => WriteOutcome::Updated(r.id.clone()),
                },
            })
            .collect();
        Box::pin(async move { Ok(results) })
    }
}

/// In a dry run, the identity-map changes earlier pages would have made,
/// laid over what the store holds.
#[derive(Debug, Default)]
struct Overlay {
    links: HashMap<(String, String, String), Patch>,
    next_entity: i64,
}

/// The fields a link update changes (absent: unchanged).
#[derive(Debug, Clone)]
struct Patch {
    entity_id: i64,
    known: Option<String>,
    synced_hash: Option<String>,
    version: Option<String>,
    deleted: bool,
}

impl Patch {
    fn merge_into(&self, link: &mut Link) {
        link.entity_id = self.entity_id;
        if let Some(k) = &self.known {
            link.known = Some(k.clone());
        }
        if let Some(h) = &self.synced_hash {
            link.synced_hash = Some(h.clone());
        }
        if let Some(v) = &self.version {
            link.version = Some(v.clone());
        }
        link.deleted = self.deleted;
    }

    fn to_link(&self, connection: &str, stream: &str, record_id: &str) -> Link {
        let mut link = Link {
            entity_id: self.entity_id,
            connection: connection.to_string(),
            stream: stream.to_string(),
            record_id: record_id.to_string(),
            known: None,
            synced_hash: None,
            version: None,
            deleted: false,
        };
        self.merge_into(&mut link);
        link
    }
}

impl Overlay {
    /// Record updates as if committed (new entities get negative ids).
    fn apply(&mut self, updates: &[LinkUpdate]) {
        let mut groups: HashMap<usize, i64> = HashMap::new();
        for u in updates {
            let entity_id = match u.entity_id {
                Some(e) => e,
                None => *groups.entry(u.group).or_insert_with(|| {
                    self.next_entity -= 1;
                    self.next_entity
                }),
            };
            let key = (u.connection.clone(), u.stream.clone(), u.record_id.clone());
            let prior = self.links.get(&key);
            let patch = Patch {
                entity_id,
                known: u
                    .known
                    .clone()
                    .or_else(|| prior.and_then(|p| p.known.clone())),
                synced_hash: u
                    .synced_hash
                    .clone()
                    .or_else(|| prior.and_then(|p| p.synced_hash.clone())),
                version: u
                    .version
                    .clone()
                    .or_else(|| prior.and_then(|p| p.version.clone())),
                deleted: u.deleted,
            };
            self.links.insert(key, patch);
        }
    }

    /// Lay the overlay over links found by record id.
    fn patch(&self, found: &mut Vec<Link>, connection: &str, stream: &str, ids: &[&str]) {
        if self.links.is_empty() {
            return;
        }
        let key = |id: &str| (connection.to_string(), stream.to_string(), id.to_string());
        for l in found.iter_mut() {
            if let Some(p) = self.links.get(&key(&l.record_id)) {
                p.merge_into(l);
            }
        }
        for id in ids {
            if !found.iter().any(|l| l.record_id == *id)
                && let Some(p) = self.links.get(&key(id))
            {
                found.push(p.to_link(connection, stream, id));
            }
        }
    }

    /// Lay the overlay over links found by entity.
    fn patch_entities(
        &self,
        found: &mut Vec<Link>,
        entities: &HashSet<i64>,
        connection: &str,
        stream: &str,
    ) {
        for ((c, s, id), p) in &self.links {
            if c != connection || s != stream {
                continue;
            }
            match found.iter_mut().find(|l| &l.record_id == id) {
                Some(l) => p.merge_into(l),
                None if entities.contains(&p.entity_id) => {
                    found.push(p.to_link(connection, stream, id));
                }
                None => {}
            }
        }
    }
}

//! What the sync core's unit tests run on instead of SQLite and Wasm: an
//! in-memory store with the SQLite store's merge rules ([`MemoryStore`]),
//! a scripted source ([`FakeSource`]) and a destination that keeps its
//! records in memory and can be told to fail, lose an answer or reject a
//! record ([`FakeDestination`]), and a [`Prepared`] pipeline built from a
//! few lines of TOML. Nothing here opens a file or a socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::SyncError;
use super::compare::Comparison;
use super::content::SystemFields;
use super::driver::{Driver, RunSetup};
use super::gate::Gate;
use super::mapping::Mapped;
use super::pipeline::{Endpoint, Pipeline};
use super::ports::{Call, Destination, Mapping, Source};
use super::prepared::Prepared;
use super::store::{
    CancelReason, Conflict, ConflictStatus, Counts, DELETED_IN_STEP, DeadLetter, DeadLetterStatus,
    Link, LinkStore, LogLevel, MatchCounts, PageCommit, PipelineRow, QueueStore, RecordOutcome,
    RecordResult, Review, ReviewFilter, ReviewStatus, ReviewStore, RunFilter, RunId, RunRow,
    RunStatus, RunStore,
};
use nexo_db::StoreError;
use nexo_runtime::GuestError as WitError;
use nexo_runtime::plugin::{CheckedPage, Operation, Page, Record, WriteOutcome, WriteResult};
use nexo_runtime::{CallRef, GuestError, PluginError, PluginRef};

/// One identity-map row.
#[derive(Debug, Clone, Default)]
struct Row {
    entity_id: i64,
    known: Option<String>,
    version: Option<String>,
    deleted: bool,
    /// Synced hash per peer (connection, stream).
    synced: HashMap<(String, String), String>,
}

type Key = (String, String, String, String);

#[derive(Default)]
struct Mem {
    links: BTreeMap<Key, Row>,
    next_entity: i64,
    next_run: RunId,
    runs: BTreeMap<RunId, RunRow>,
    results: Vec<(RunId, RecordResult)>,
    log: Vec<(RunId, LogLevel, String)>,
    dead_letters: Vec<DeadLetter>,
    conflicts: Vec<Conflict>,
    stop: HashSet<RunId>,
    state: Option<String>,
    /// Transactions committed (log-only ones included; a group of pages
    /// is one).
    commits: usize,
    /// How long a commit takes before it applies anything (lookups go on
    /// meanwhile, as they do beside a real database's commit).
    commit_delay: std::time::Duration,
    /// The transaction (1: the first) that fails, applying nothing.
    failing_commit: Option<usize>,
    /// The review queue (all pipelines).
    reviews: Vec<Review>,
    /// Matching passes per pipeline.
    passes: HashMap<String, MatchCounts>,
}

impl Mem {
    /// One page's effects, as the SQLite store applies them.
    fn apply(&mut self, pipeline: &str, run: RunId, page: &PageCommit) -> Result<(), StoreError> {
        let m = self;
        if let Some(s) = &page.state {
            m.state = Some(s.clone());
        }
        for r in &page.new_reviews {
            let id = m.reviews.len() as i64 + 1;
            m.reviews.push(Review {
                id,
                pipeline: pipeline.to_string(),
                source_id: r.record.id.clone(),
                record: r.record.clone(),
                mapped: r.mapped.clone(),
                candidates: r.candidates.clone(),
                why: r.why.clone(),
                status: ReviewStatus::Open,
                chosen: None,
                decided_by: None,
                decided_at: None,
                delivered_run: None,
                created_at: String::new(),
            });
        }
        for (id, record) in &page.hold_reviews {
            if let Some(r) = m.reviews.iter_mut().find(|r| r.id == *id) {
                r.record = record.clone();
            }
        }
        for d in &page.decide_reviews {
            let Some(r) = m
                .reviews
                .iter_mut()
                .find(|r| r.id == d.id && r.status == ReviewStatus::Open)
            else {
                return Err(StoreError::Stale(format!("review {} is not open", d.id)));
            };
            r.status = d.status;
            r.chosen = d.chosen.clone();
            r.decided_by = Some(d.by.clone());
        }
        for id in &page.withdraw_reviews {
            if let Some(r) = m
                .reviews
                .iter_mut()
                .find(|r| r.id == *id && r.status == ReviewStatus::Open)
            {
                r.status = ReviewStatus::Withdrawn;
                r.delivered_run = Some(run);
            }
        }
        for id in &page.deliver_reviews {
            if let Some(r) = m.reviews.iter_mut().find(|r| r.id == *id) {
                r.delivered_run = Some(run);
            }
        }
        if let Some(pass) = page.match_pass {
            m.passes.insert(pipeline.to_string(), pass);
        }
        let mut groups: HashMap<usize, i64> = HashMap::new();
        for l in &page.links {
            let k = key(&l.connection, &l.stream, &l.record_id, &l.entity);
            let first_of_group = l.entity_id.is_none() && !groups.contains_key(&l.group);
            let mut entity_id = match l.entity_id {
                Some(e) => e,
                None => match groups.get(&l.group) {
                    Some(e) => *e,
                    None => {
                        m.next_entity += 1;
                        let e = m.next_entity;
                        groups.insert(l.group, e);
                        e
                    }
                },
            };
            if l.entity_id.is_none() && !m.links.contains_key(&k) {
                let mut row = Row {
                    entity_id,
                    known: l.known.clone(),
                    version: l.version.clone(),
                    deleted: l.deleted,
                    synced: HashMap::new(),
                };
                if let Some(h) = &l.synced_hash {
                    row.synced.insert(
                        (l.peer.connection.clone(), l.peer.stream.clone()),
                        h.clone(),
                    );
                }
                m.links.insert(k, row);
                continue;
            }
            if l.entity_id.is_none()
                && first_of_group
                && let Some(existing) = m.links.get(&k)
            {
                entity_id = existing.entity_id;
                groups.insert(l.group, entity_id);
            }
            let row = m.links.entry(k).or_insert_with(|| Row {
                entity_id,
                ..Row::default()
            });
            if l.known.is_some() {
                row.known = l.known.clone();
            }
            if l.version.is_some() {
                row.version = l.version.clone();
            }
            row.deleted = l.deleted;
            if let Some(h) = &l.synced_hash {
                row.synced.insert(
                    (l.peer.connection.clone(), l.peer.stream.clone()),
                    h.clone(),
                );
            }
        }
        for r in &page.results {
            if matches!(
                r.outcome,
                RecordOutcome::Created
                    | RecordOutcome::Matched
                    | RecordOutcome::Updated
                    | RecordOutcome::Deleted
            ) {
                for d in m.dead_letters.iter_mut().filter(|d| {
                    d.pipeline == pipeline
                        && d.status == DeadLetterStatus::Open
                        && d.letter.source_id == r.source_id
                }) {
                    d.status = DeadLetterStatus::Resolved;
                }
            }
            m.results.push((run, r.clone()));
        }
        for letter in &page.dead_letters {
            let id = m.dead_letters.len() as i64 + 1;
            m.dead_letters.push(DeadLetter {
                id,
                pipeline: pipeline.to_string(),
                run_id: run,
                status: DeadLetterStatus::Open,
                created_at: String::new(),
                letter: letter.clone(),
            });
        }
        for c in &page.conflicts {
            let id = m.conflicts.len() as i64 + 1;
            m.conflicts.push(Conflict {
                id,
                pipeline: pipeline.to_string(),
                run_id: run,
                status: if c.resolution.is_some() {
                    ConflictStatus::AutoResolved
                } else {
                    ConflictStatus::Open
                },
                created_at: String::new(),
                conflict: c.clone(),
            });
        }
        for (level, message) in &page.log {
            m.log.push((run, *level, message.clone()));
        }
        if let Some(row) = m.runs.get_mut(&run) {
            row.counts.merge(&page.counts);
            row.pages += 1;
        }
        Ok(())
    }
}

/// The sync store in memory, with the SQLite store's rules: a new
/// entity per group, known content and version kept when an update has
/// none, sync state per peer, a page's effects applied at once.
#[derive(Default)]
pub(crate) struct MemoryStore(Mutex<Mem>);

fn key(connection: &str, stream: &str, id: &str, entity: &str) -> Key {
    (
        connection.to_string(),
        stream.to_string(),
        id.to_string(),
        entity.to_string(),
    )
}

fn link_of(k: &Key, row: &Row, peer: Option<&Endpoint>) -> Link {
    Link {
        entity_id: row.entity_id,
        connection: k.0.clone(),
        stream: k.1.clone(),
        record_id: k.2.clone(),
        known: row.known.clone(),
        synced_hash: peer.and_then(|p| {
            row.synced
                .get(&(p.connection.clone(), p.stream.clone()))
                .cloned()
        }),
        version: row.version.clone(),
        deleted: row.deleted,
    }
}

impl MemoryStore {
    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.0.lock().unwrap()
    }

    /// Make transaction number `n` (1: the first) fail, applying nothing.
    pub fn fail_commit(&self, n: usize) {
        self.mem().failing_commit = Some(n);
    }

    /// Make each commit take `delay` before it applies anything.
    pub fn set_commit_delay(&self, delay: std::time::Duration) {
        self.mem().commit_delay = delay;
    }

    /// Link a record to a contact entity as synced with `peer`: its known
    /// content `known`, its synced hash `synced` (none: never synced).
    pub fn seed(
        &self,
        at: (&str, &str),
        id: &str,
        entity_id: i64,
        known: &str,
        peer: (&str, &str),
        synced: Option<&str>,
    ) {
        let mut m = self.mem();
        m.next_entity = m.next_entity.max(entity_id);
        let row = m.links.entry(key(at.0, at.1, id, "contact")).or_default();
        row.entity_id = entity_id;
        row.known = Some(known.to_string());
        if let Some(h) = synced {
            row.synced
                .insert((peer.0.to_string(), peer.1.to_string()), h.to_string());
        }
    }

    /// Every link, as (connection, record id, entity id, known).
    pub fn links_dump(&self) -> Vec<(String, String, i64, Option<String>)> {
        self.mem()
            .links
            .iter()
            .map(|(k, r)| (k.0.clone(), k.2.clone(), r.entity_id, r.known.clone()))
            .collect()
    }

    /// Transactions committed so far (a group of pages is one).
    pub fn commits(&self) -> usize {
        self.mem().commits
    }

    /// The saved read state.
    pub fn state(&self) -> Option<String> {
        self.mem().state.clone()
    }

    /// Every record result of every run, in order.
    pub fn results(&self) -> Vec<RecordResult> {
        self.mem().results.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Every dead letter.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.mem().dead_letters.clone()
    }

    /// Every conflict.
    pub fn all_conflicts(&self) -> Vec<Conflict> {
        self.mem().conflicts.clone()
    }
}

impl LinkStore for MemoryStore {
    fn links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        ids: &[&str],
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        let m = self.mem();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let k = key(connection, stream, id, entity);
                m.links.get(&k).map(|r| link_of(&k, r, peer))
            })
            .collect())
    }

    fn record_links(
        &self,
        connection: &str,
        stream: &str,
        id: &str,
    ) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .mem()
            .links
            .iter()
            .filter(|(k, _)| k.0 == connection && k.1 == stream && k.2 == id)
            .map(|(k, r)| link_of(k, r, None))
            .collect())
    }

    fn links_of_entities(
        &self,
        entities: &[i64],
        connection: &str,
        stream: &str,
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .mem()
            .links
            .iter()
            .filter(|(k, r)| k.0 == connection && k.1 == stream && entities.contains(&r.entity_id))
            .map(|(k, r)| link_of(k, r, peer))
            .collect())
    }

    fn search_entities(&self, _q: &str, _limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(Vec::new())
    }

    fn entity(&self, entity_id: i64) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .mem()
            .links
            .iter()
            .filter(|(_, r)| r.entity_id == entity_id)
            .map(|(k, r)| link_of(k, r, None))
            .collect())
    }

    fn unswept_links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        peer: &Endpoint,
    ) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .mem()
            .links
            .iter()
            .filter(|(k, _)| k.0 == connection && k.1 == stream && k.3 == entity)
            .map(|(k, r)| link_of(k, r, Some(peer)))
            .filter(|l| !l.deleted || l.synced_hash.as_deref() != Some(DELETED_IN_STEP))
            .collect())
    }
}

impl RunStore for MemoryStore {
    fn begin_run(&self, pipeline: &str) -> Result<RunId, StoreError> {
        let mut m = self.mem();
        m.next_run += 1;
        let id = m.next_run;
        m.runs.insert(
            id,
            RunRow {
                id,
                pipeline: pipeline.to_string(),
                status: RunStatus::Running,
                started_at: format!("t{id}"),
                finished_at: None,
                duration_ms: None,
                pages: 0,
                counts: Counts::default(),
                error: None,
            },
        );
        Ok(id)
    }

    fn previous_run_start(
        &self,
        _pipeline: &str,
        before: RunId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .mem()
            .runs
            .range(..before)
            .next_back()
            .map(|(_, r)| r.started_at.clone()))
    }

    fn commit_pages(
        &self,
        pipeline: &str,
        run: RunId,
        pages: &[PageCommit],
    ) -> Result<(), StoreError> {
        let delay = self.mem().commit_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut m = self.mem();
        if m.failing_commit == Some(m.commits + 1) {
            m.failing_commit = None;
            return Err(StoreError::Corrupt(
                "the disk is full (a test's failing commit)".into(),
            ));
        }
        m.commits += 1;
        for page in pages {
            m.apply(pipeline, run, page)?;
        }
        Ok(())
    }

    fn request_stop(&self, run: RunId) -> Result<bool, StoreError> {
        Ok(self.mem().stop.insert(run))
    }

    fn cancel_reason(&self, run: RunId) -> Result<Option<CancelReason>, StoreError> {
        Ok(self
            .mem()
            .stop
            .contains(&run)
            .then_some(CancelReason::Requested))
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.mem().runs.get_mut(&run) {
            r.status = status;
            r.error = error.map(str::to_string);
        }
        Ok(())
    }

    fn run(&self, run: RunId) -> Result<Option<RunRow>, StoreError> {
        Ok(self.mem().runs.get(&run).cloned())
    }

    fn interrupt_run(&self, _run: RunId) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn runs(&self, _filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        Ok(self.mem().runs.values().rev().cloned().collect())
    }

    fn run_records(&self, run: RunId) -> Result<Vec<RecordResult>, StoreError> {
        Ok(self
            .mem()
            .results
            .iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn run_log(&self, run: RunId) -> Result<Vec<(String, LogLevel, String)>, StoreError> {
        Ok(self
            .mem()
            .log
            .iter()
            .filter(|(r, _, _)| *r == run)
            .map(|(_, l, m)| (String::new(), *l, m.clone()))
            .collect())
    }

    fn prune_runs(&self, _days: u32) -> Result<usize, StoreError> {
        Ok(0)
    }
}

impl ReviewStore for MemoryStore {
    fn waiting_reviews(
        &self,
        pipeline: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, (i64, ReviewStatus)>, StoreError> {
        Ok(self
            .mem()
            .reviews
            .iter()
            .filter(|r| r.pipeline == pipeline && r.delivered_run.is_none())
            .filter(|r| ids.contains(&r.source_id.as_str()))
            .map(|r| (r.source_id.clone(), (r.id, r.status)))
            .collect())
    }

    fn decided_reviews(&self, pipeline: &str) -> Result<Vec<Review>, StoreError> {
        Ok(self
            .mem()
            .reviews
            .iter()
            .filter(|r| r.pipeline == pipeline && r.delivered_run.is_none())
            .filter(|r| r.status != ReviewStatus::Open)
            .cloned()
            .collect())
    }

    fn reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>, StoreError> {
        Ok(self
            .mem()
            .reviews
            .iter()
            .rev()
            .filter(|r| filter.pipeline.as_ref().is_none_or(|p| *p == r.pipeline))
            .filter(|r| filter.status.is_none_or(|s| s == r.status))
            .cloned()
            .collect())
    }

    fn review(&self, id: i64) -> Result<Option<Review>, StoreError> {
        Ok(self.mem().reviews.iter().find(|r| r.id == id).cloned())
    }

    fn match_pass(&self, pipeline: &str) -> Result<Option<(String, MatchCounts)>, StoreError> {
        Ok(self.mem().passes.get(pipeline).map(|c| (String::new(), *c)))
    }
}

impl QueueStore for MemoryStore {
    fn dead_letters(
        &self,
        pipeline: Option<&str>,
        status: Option<DeadLetterStatus>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .mem()
            .dead_letters
            .iter()
            .filter(|d| pipeline.is_none_or(|p| d.pipeline == p))
            .filter(|d| status.is_none_or(|s| d.status == s))
            .cloned()
            .collect())
    }

    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.mem().dead_letters.iter().find(|d| d.id == id).cloned())
    }

    fn discard_dead_letter(&self, _id: i64) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn conflicts(
        &self,
        pipeline: Option<&str>,
        status: Option<ConflictStatus>,
    ) -> Result<Vec<Conflict>, StoreError> {
        Ok(self
            .mem()
            .conflicts
            .iter()
            .filter(|c| pipeline.is_none_or(|p| c.pipeline == p))
            .filter(|c| status.is_none_or(|s| c.status == s))
            .cloned()
            .collect())
    }

    fn conflict(&self, id: i64) -> Result<Option<Conflict>, StoreError> {
        Ok(self.mem().conflicts.iter().find(|c| c.id == id).cloned())
    }

    fn has_open_conflict(&self, entity_id: i64, pipeline: &str) -> Result<bool, StoreError> {
        Ok(self.mem().conflicts.iter().any(|c| {
            c.conflict.entity_id == entity_id
                && c.pipeline == pipeline
                && c.status == ConflictStatus::Open
        }))
    }
}

/// A record of the source stream.
pub(crate) fn record(id: &str, payload: &str) -> Record {
    Record {
        stream: "contacts".into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.into(),
        cursor: None,
    }
}

/// A deletion read from the source.
pub(crate) fn deletion(id: &str) -> Record {
    Record {
        operation: Operation::Delete,
        payload: "{}".into(),
        ..record(id, "{}")
    }
}

/// A page of records (`more`: another follows).
pub(crate) fn page(records: Vec<Record>, state: &str, more: bool) -> CheckedPage {
    CheckedPage::of(Page {
        records,
        state: Some(state.to_string()),
        has_more: more,
    })
}

/// A plugin's error value as the runtime reports it.
pub(crate) fn guest(error: GuestError) -> PluginError {
    PluginError::Guest {
        plugin: PluginRef {
            id: "fake".into(),
            version: "1.0.0".into(),
        },
        call: CallRef("write".into()),
        error,
    }
}

/// A source that answers each read with the next scripted page (an empty
/// last page once they are used up).
#[derive(Default)]
pub(crate) struct FakeSource {
    pages: Mutex<VecDeque<Result<CheckedPage, PluginError>>>,
    /// How long each read takes.
    delay: std::time::Duration,
}

impl FakeSource {
    /// A source reading these pages in order.
    pub fn new(pages: Vec<Result<CheckedPage, PluginError>>) -> Self {
        FakeSource {
            pages: Mutex::new(pages.into()),
            delay: std::time::Duration::ZERO,
        }
    }

    /// The same, each read taking `delay`.
    pub fn slow(pages: Vec<Result<CheckedPage, PluginError>>, delay: std::time::Duration) -> Self {
        FakeSource {
            delay,
            ..FakeSource::new(pages)
        }
    }
}

impl Source for FakeSource {
    fn label(&self) -> String {
        "fake-source".into()
    }

    fn read<'a>(&'a self, _state: Option<&'a str>) -> Call<'a, Result<CheckedPage, PluginError>> {
        let next = self.pages.lock().unwrap().pop_front();
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            next.unwrap_or_else(|| {
                Ok(CheckedPage::of(Page {
                    records: Vec::new(),
                    state: None,
                    has_more: false,
                }))
            })
        })
    }
}

/// What the fake destination does with its next write call.
#[derive(Debug, Clone)]
pub(crate) enum Script {
    /// The whole call fails with this error, nothing written.
    Fail(GuestError),
    /// The writes are made, then the answer is lost (a timeout).
    LoseAnswer,
}

/// A destination keeping its records in memory: ids `d1`, `d2`, …; a
/// create whose idempotency key it already holds answers with the record
/// it holds (as real connectors do); a record whose payload has
/// `"reject": true` is refused alone.
#[derive(Default)]
pub(crate) struct FakeDestination {
    inner: Mutex<Dest>,
}

#[derive(Default)]
struct Dest {
    script: VecDeque<Script>,
    /// id → (idempotency key, payload).
    records: BTreeMap<String, (String, String)>,
    next: u64,
    /// Every batch as sent.
    calls: Vec<Vec<Record>>,
}

impl FakeDestination {
    /// A destination that first plays `script`, one entry per call.
    pub fn scripted(script: Vec<Script>) -> Self {
        FakeDestination {
            inner: Mutex::new(Dest {
                script: script.into(),
                ..Dest::default()
            }),
        }
    }

    /// Its records: id → payload.
    pub fn records(&self) -> BTreeMap<String, String> {
        let d = self.inner.lock().unwrap();
        d.records
            .iter()
            .map(|(id, (_, p))| (id.clone(), p.clone()))
            .collect()
    }

    /// Every batch it was sent.
    pub fn calls(&self) -> Vec<Vec<Record>> {
        self.inner.lock().unwrap().calls.clone()
    }
}

impl Dest {
    fn apply(&mut self, r: &Record) -> WriteOutcome {
        let key = r.cursor.clone().unwrap_or_default();
        if r.payload.contains("\"reject\":true") {
            return WriteOutcome::Failed(WitError::Rejected("refused by the fake".into()));
        }
        match r.operation {
            Operation::Delete => {
                self.records.remove(&r.id);
                WriteOutcome::Deleted(r.id.clone())
            }
            Operation::Upsert if r.id.is_empty() => {
                // Without a key there is nothing to find it by.
                if !key.is_empty()
                    && let Some((id, _)) = self.records.iter().find(|(_, (k, _))| *k == key)
                {
                    return WriteOutcome::Unchanged(id.clone());
                }
                self.next += 1;
                let id = format!("d{}", self.next);
                self.records.insert(id.clone(), (key, r.payload.clone()));
                WriteOutcome::Created(id)
            }
            Operation::Upsert => {
                self.records.insert(r.id.clone(), (key, r.payload.clone()));
                WriteOutcome::Updated(r.id.clone())
            }
        }
    }
}

impl Destination for FakeDestination {
    fn write<'a>(&'a self, batch: &'a [Record]) -> Call<'a, Result<Vec<WriteResult>, PluginError>> {
        let mut d = self.inner.lock().unwrap();
        d.calls.push(batch.to_vec());
        let answer = match d.script.pop_front() {
            Some(Script::Fail(e)) => Err(guest(e)),
            step => {
                let results: Vec<WriteResult> = batch
                    .iter()
                    .map(|r| WriteResult {
                        id: r.id.clone(),
                        outcome: d.apply(r),
                    })
                    .collect();
                match step {
                    Some(Script::LoseAnswer) => {
                        Err(guest(GuestError::Transient("the answer was lost".into())))
                    }
                    _ => Ok(results),
                }
            }
        };
        Box::pin(async move {
            // A write is I/O: the run's other tasks (the next page's read)
            // go on meanwhile.
            tokio::task::yield_now().await;
            answer
        })
    }
}

/// Mappers that pass records through unchanged.
pub(crate) struct Identity;

impl Mapping for Identity {
    fn map<'a>(
        &'a self,
        _pipeline: &'a str,
        records: Vec<Record>,
    ) -> Call<'a, Result<Mapped, SyncError>> {
        Box::pin(async move { Ok(Mapped::passing(records)) })
    }
}

/// A pipeline `p` of contacts from `crm` to `books`, with `extra` TOML
/// (`[conflicts]`, `[deletes]`, `mode`, …) and retries a millisecond
/// apart.
pub(crate) fn prepared(
    extra: &str,
    source: Arc<dyn Source>,
    dest: Arc<dyn Destination>,
) -> Prepared {
    let toml = format!(
        "name = \"p\"\nentity = \"contact\"\ntrack_destination = false\n{extra}\n[source]\nconnection = \"crm\"\nstream = \"contacts\"\n[destination]\nconnection = \"books\"\nstream = \"contacts\"\n[retry]\nwindow = \"1m\"\ninitial_backoff_ms = 1\nmax_backoff_ms = 2\n"
    );
    let pipeline = Pipeline::from_toml(&toml, "test").unwrap();
    let system = SystemFields::default();
    Prepared {
        source_end: Arc::new(pipeline.source.clone()),
        dest_end: Arc::new(pipeline.destination.clone()),
        pipeline,
        source,
        dest,
        dest_reader: Arc::new(FakeSource::default()),
        mapping: Arc::new(Identity),
        source_system: system.clone(),
        dest_system: system.clone(),
        source_compare: Comparison::default(),
        dest_compare: Comparison::default(),
        dest_readable: false,
        gate: Gate::new("", &system, None).unwrap(),
        opening_log: Vec::new(),
    }
}

/// Drive one run of `p` over `store` from its saved state; the run's
/// counts and planned changes (when `plan`).
pub(crate) async fn run_over(
    p: &Prepared,
    store: Arc<dyn super::store::PageStore>,
    state: Option<String>,
    plan: bool,
) -> Result<(Counts, Vec<super::dry_run::PlannedChange>), SyncError> {
    let run = store.begin_run(&p.pipeline.name)?;
    let setup = RunSetup {
        plan,
        ..RunSetup::default()
    };
    let mut driver = Driver::new(p, store, run, setup);
    let row = PipelineRow {
        pipeline: p.pipeline.clone(),
        paused: false,
        paused_reason: None,
        state,
        destination_state: None,
    };
    driver.drive(&row).await?;
    Ok((driver.counts(), driver.take_plan()))
}

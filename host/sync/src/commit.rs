//! Committing a run's pages beside its work: processed pages gather in a
//! group until the group is due (`[commit]`: enough records, or its
//! first page has waited long enough) and the next page has done its
//! identity-map lookups; then the group is committed — every page's
//! effects in turn, in one transaction — on a blocking thread, while the
//! next group gathers. Groups commit in page order, one at a time; a page
//! whose lookups would read what the gathering group or the committing
//! one changes waits for that commit first. The cursor committed is
//! always the last page's of its transaction, so a crash re-reads at most
//! the group committing, the group gathering and the page in hand, whose
//! writes the idempotency keys absorb. Dry runs take the same path: their
//! store records instead of writing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SyncError;
use super::pipeline::{CommitGrouping, Endpoint};
use super::store::{Counts, LogLevel, PageCommit, RunId, RunStore};
use nexo_db::StoreError;
use nexo_runtime::metrics::Metrics;

/// Processed pages whose commit has not started, with what they change
/// that a later page's lookups could read.
#[derive(Debug)]
pub(super) struct Held {
    pub pages: Vec<PageCommit>,
    /// Record ids of the source stream they link.
    records: HashSet<String>,
    /// Entities they link records to (new entities have no id yet, and
    /// are reachable only through their records).
    entities: HashSet<i64>,
    /// Records the pages settled (their results).
    settled: u64,
    /// When the first page was held.
    since: Instant,
}

impl Held {
    /// Hold `commit`, a page of the source `connection`/`stream`.
    pub fn new(commit: PageCommit, connection: &str, stream: &str) -> Self {
        let mut held = Held {
            pages: Vec::new(),
            records: HashSet::new(),
            entities: HashSet::new(),
            settled: 0,
            since: Instant::now(),
        };
        held.add(commit, connection, stream);
        held
    }

    /// Add a later page of the same source to the group.
    pub fn add(&mut self, commit: PageCommit, connection: &str, stream: &str) {
        self.records.extend(
            commit
                .links
                .iter()
                .filter(|l| l.connection == connection && l.stream == stream)
                .map(|l| l.record_id.clone()),
        );
        self.entities
            .extend(commit.links.iter().filter_map(|l| l.entity_id));
        self.settled += commit.results.len() as u64;
        self.pages.push(commit);
    }

    /// Whether the group is due for its commit under `grouping`.
    pub fn due(&self, grouping: &CommitGrouping) -> bool {
        grouping.due(self.settled, self.since.elapsed())
    }

    /// How long until the group falls due by its age.
    pub fn time_left(&self, grouping: &CommitGrouping) -> Duration {
        grouping.wait().saturating_sub(self.since.elapsed())
    }

    /// Whether it links any of these source records.
    pub fn links_any_record(&self, ids: &[&str]) -> bool {
        !self.records.is_empty() && ids.iter().any(|id| self.records.contains(*id))
    }

    /// Whether it links records to any of these entities.
    pub fn links_any_entity<'a>(&self, entities: impl IntoIterator<Item = &'a i64>) -> bool {
        !self.entities.is_empty() && entities.into_iter().any(|e| self.entities.contains(e))
    }
}

/// What a finished background commit hands back.
type Landed = (Result<(), StoreError>, Vec<PageCommit>, Duration);

/// A group of pages being committed on a blocking thread.
#[derive(Debug)]
pub(super) struct InFlight {
    task: tokio::task::JoinHandle<Landed>,
    /// What the group links (its pages are gone to the commit).
    links: Held,
}

impl InFlight {
    /// Start committing `pages` in one transaction (the store serialises
    /// it with every other use of the database).
    pub fn start(
        store: Arc<dyn RunStore>,
        pipeline: String,
        run: RunId,
        pages: Vec<PageCommit>,
        links: Held,
    ) -> Self {
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = store.commit_pages(&pipeline, run, &pages);
            (result, pages, started.elapsed())
        });
        InFlight { task, links }
    }

    /// Wait for the commit: the pages and how long committing them took,
    /// or why it failed.
    pub async fn land(self, pipeline: &str) -> Result<(Vec<PageCommit>, Duration), SyncError> {
        match self.task.await {
            Ok((Ok(()), pages, took)) => Ok((pages, took)),
            Ok((Err(e), _, _)) => Err(e.into()),
            Err(e) => Err(SyncError::Malformed {
                pipeline: pipeline.to_string(),
                message: format!("the commit task failed: {e}"),
            }),
        }
    }
}

/// Progress after each committed page.
pub type Progress = Arc<dyn Fn(&Counts) + Send + Sync>;

/// A run's side of committing: the pages it processed, in order, each
/// with what its commit brings along (the log lines not yet committed,
/// its counts, metrics, progress), one held for the next page's lookups
/// and one in flight beside the next page's work.
pub(super) struct Committer {
    store: Arc<dyn RunStore>,
    pipeline: String,
    run: RunId,
    /// The source stream, whose records a held page's links name.
    source: Endpoint,
    /// Lines for the run log, committed with the next page.
    pending_log: Vec<(LogLevel, String)>,
    counts: Counts,
    pages: u64,
    /// Processed pages waiting for their group to fall due and for the
    /// next page's lookups.
    held: Option<Held>,
    /// The group committing beside the current page's mapping and writing.
    in_flight: Option<InFlight>,
    /// When a group of pages is due for its commit.
    grouping: CommitGrouping,
    /// A group's commit failed: nothing after it may be committed (its
    /// cursor would skip the failed group's pages).
    broken: bool,
    /// Time spent committing.
    took: Duration,
    progress: Option<Progress>,
    /// Where dead letters are counted (none: a dry run's are not).
    metrics: Option<&'static Metrics>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("pipeline", &self.pipeline)
            .field("run", &self.run)
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Commits of `run` of `pipeline` (reading `source`) to `store`, in
    /// groups of pages as `grouping` says; the run log starts with `log`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn RunStore>,
        pipeline: &str,
        run: RunId,
        source: &Endpoint,
        grouping: CommitGrouping,
        log: Vec<(LogLevel, String)>,
        progress: Option<Progress>,
        metrics: Option<&'static Metrics>,
    ) -> Self {
        Committer {
            store,
            pipeline: pipeline.to_string(),
            run,
            source: source.clone(),
            pending_log: log,
            counts: Counts::default(),
            pages: 0,
            held: None,
            in_flight: None,
            grouping,
            broken: false,
            took: Duration::ZERO,
            progress,
            metrics,
        }
    }

    /// The counts of the pages committed (or handed to the store).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Pages committed (or handed to the store).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Time spent committing.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// Whether processed pages wait for their commit.
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// Whether the held group is due for its commit.
    pub fn held_due(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.due(&self.grouping))
    }

    /// How long until the held group falls due by its age (none held:
    /// zero).
    pub fn held_time_left(&self) -> Duration {
        self.held
            .as_ref()
            .map_or(Duration::ZERO, |h| h.time_left(&self.grouping))
    }

    /// Make what the uncommitted groups link for these source records
    /// visible to a page's lookups: the held group is committed (after
    /// the one in flight) when it links any of them, else the group in
    /// flight is waited for when it does.
    pub async fn expose_records(&mut self, ids: &[&str]) -> Result<(), SyncError> {
        if self.held.as_ref().is_some_and(|h| h.links_any_record(ids)) {
            self.commit_held().await
        } else if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.links.links_any_record(ids))
        {
            self.land().await
        } else {
            Ok(())
        }
    }

    /// The same for records linked to these entities.
    pub async fn expose_entities(&mut self, entities: &HashSet<i64>) -> Result<(), SyncError> {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.links_any_entity(entities))
        {
            self.commit_held().await
        } else if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.links.links_any_entity(entities))
        {
            self.land().await
        } else {
            Ok(())
        }
    }

    /// Commit a page now.
    pub fn commit(&mut self, commit: PageCommit) -> Result<(), SyncError> {
        let started = Instant::now();
        let commit = self.counted(commit);
        self.store.commit_page(&self.pipeline, self.run, &commit)?;
        self.took += started.elapsed();
        self.committed(std::slice::from_ref(&commit));
        Ok(())
    }

    /// Commit what is not a page of the run (the destination's changes
    /// read by tracking): no counts, no progress.
    pub fn commit_aside(&mut self, commit: &PageCommit) -> Result<(), SyncError> {
        self.store.commit_page(&self.pipeline, self.run, commit)?;
        Ok(())
    }

    /// A page about to be committed: the run log's pending lines go with
    /// it, and its counts count (even if the commit then fails, as the
    /// run's report always had it).
    fn counted(&mut self, mut commit: PageCommit) -> PageCommit {
        if !self.pending_log.is_empty() {
            let mut log = std::mem::take(&mut self.pending_log);
            log.append(&mut commit.log);
            commit.log = log;
        }
        self.counts.merge(&commit.counts);
        self.pages += 1;
        commit
    }

    /// After pages' commit: their metrics and the progress report.
    fn committed(&self, pages: &[PageCommit]) {
        if let Some(metrics) = self.metrics {
            for letter in pages.iter().flat_map(|p| &p.dead_letters) {
                metrics.error(&self.pipeline, &letter.class);
            }
        }
        if let Some(progress) = &self.progress {
            progress(&self.counts);
        }
    }

    /// Hold a processed page: it joins the held group, or starts one.
    pub fn hold(&mut self, commit: PageCommit) {
        let (connection, stream) = (&self.source.connection, &self.source.stream);
        match &mut self.held {
            Some(held) => held.add(commit, connection, stream),
            None => self.held = Some(Held::new(commit, connection, stream)),
        }
    }

    /// Commit the held group now, due or not (the next page's lookups
    /// need it, or the run is waiting anyway), after the group in flight.
    pub async fn commit_held(&mut self) -> Result<(), SyncError> {
        self.land().await?;
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        if self.broken {
            // Re-read by the next run: the cursor stays before them.
            return Ok(());
        }
        let started = Instant::now();
        let pages = self.counted_all(held.pages);
        self.store.commit_pages(&self.pipeline, self.run, &pages)?;
        self.took += started.elapsed();
        self.committed(&pages);
        Ok(())
    }

    /// Start committing the held group on a blocking thread when it is
    /// due (after the group in flight has landed: groups commit in
    /// order); otherwise it goes on gathering pages, while the group in
    /// flight commits beside them.
    pub async fn launch_due(&mut self) -> Result<(), SyncError> {
        if !self.held_due() {
            return Ok(());
        }
        self.land().await?;
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let pages = self.counted_all(std::mem::take(&mut held.pages));
        self.in_flight = Some(InFlight::start(
            self.store.clone(),
            self.pipeline.clone(),
            self.run,
            pages,
            held,
        ));
        Ok(())
    }

    /// Pages about to be committed together, each counted.
    fn counted_all(&mut self, pages: Vec<PageCommit>) -> Vec<PageCommit> {
        pages.into_iter().map(|p| self.counted(p)).collect()
    }

    /// Wait for the group committing in the background, if any.
    pub async fn land(&mut self) -> Result<(), SyncError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        let (pages, took) = match in_flight.land(&self.pipeline).await {
            Ok(landed) => landed,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        self.took += took;
        self.committed(&pages);
        Ok(())
    }

    /// Commit everything processed: the group in flight, then the held one
    /// (not if the one before it failed: its cursor would skip those pages).
    pub async fn flush(&mut self) -> Result<(), SyncError> {
        self.commit_held().await
    }

    /// Put why the run ended early in its log, with the lines not yet
    /// committed (a run that fails on its first page has no other log).
    pub fn log_ending(&mut self, level: LogLevel, message: &str) -> Result<(), SyncError> {
        let mut log = std::mem::take(&mut self.pending_log);
        log.push((level, message.to_string()));
        let commit = PageCommit {
            log,
            ..PageCommit::default()
        };
        self.store.commit_page(&self.pipeline, self.run, &commit)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LinkUpdate;

    fn link(connection: &str, id: &str, entity_id: Option<i64>) -> LinkUpdate {
        LinkUpdate {
            entity_id,
            entity: "contact".into(),
            group: 1,
            connection: connection.into(),
            stream: "contacts".into(),
            record_id: id.into(),
            known: None,
            synced_hash: None,
            peer: std::sync::Arc::new(crate::pipeline::Endpoint {
                connection: "crm-z".into(),
                stream: "contacts".into(),
            }),
            version: None,
            deleted: false,
        }
    }

    #[test]
    fn a_held_page_names_the_source_records_and_entities_it_links() {
        let commit = PageCommit {
            links: vec![
                link("crm-a", "a1", None),
                link("crm-b", "b1", None),
                link("crm-a", "a2", Some(7)),
                link("crm-b", "b2", Some(7)),
            ],
            ..PageCommit::default()
        };
        let held = Held::new(commit, "crm-a", "contacts");
        assert!(held.links_any_record(&["x", "a2"]));
        assert!(held.links_any_record(&["a1"]));
        // Destination records are not the source page's lookups.
        assert!(!held.links_any_record(&["b1", "b2"]));
        assert!(held.links_any_entity(&[3, 7]));
        assert!(!held.links_any_entity(&[3, 8]));
        let empty = Held::new(PageCommit::default(), "crm-a", "contacts");
        assert!(!empty.links_any_record(&["a1"]));
        assert!(!empty.links_any_entity(&[7]));
    }
}

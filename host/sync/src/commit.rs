//! Committing a run's pages beside its work: a processed page is held until
//! the next page has done its identity-map lookups, then committed on a
//! blocking thread while that next page is mapped and written. Each page is
//! still one transaction, committed in page order; a page whose lookups
//! would read what the held page changes waits for that commit first.
//! Dry runs take the same path: their store records instead of writing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SyncError;
use super::pipeline::Endpoint;
use super::store::{Counts, LogLevel, PageCommit, RunId, RunStore};
use nexo_db::StoreError;
use nexo_runtime::metrics::Metrics;

/// A processed page whose commit has not started, with what it changes
/// that a later page's lookups could read.
#[derive(Debug)]
pub(super) struct Held {
    pub commit: PageCommit,
    /// Record ids of the source stream it links.
    records: HashSet<String>,
    /// Entities it links records to (new entities have no id yet, and are
    /// reachable only through its records).
    entities: HashSet<i64>,
}

impl Held {
    /// Hold `commit`, a page of the source `connection`/`stream`.
    pub fn new(commit: PageCommit, connection: &str, stream: &str) -> Self {
        let records = commit
            .links
            .iter()
            .filter(|l| l.connection == connection && l.stream == stream)
            .map(|l| l.record_id.clone())
            .collect();
        let entities = commit.links.iter().filter_map(|l| l.entity_id).collect();
        Held {
            commit,
            records,
            entities,
        }
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
type Landed = (Result<(), StoreError>, PageCommit, Duration);

/// A page being committed on a blocking thread.
#[derive(Debug)]
pub(super) struct InFlight {
    task: tokio::task::JoinHandle<Landed>,
}

impl InFlight {
    /// Start committing `commit` (the store serialises it with every other
    /// use of the database).
    pub fn start(
        store: Arc<dyn RunStore>,
        pipeline: String,
        run: RunId,
        commit: PageCommit,
    ) -> Self {
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = store.commit_page(&pipeline, run, &commit);
            (result, commit, started.elapsed())
        });
        InFlight { task }
    }

    /// Wait for the commit: the page and how long committing it took, or
    /// why it failed.
    pub async fn land(self, pipeline: &str) -> Result<(PageCommit, Duration), SyncError> {
        match self.task.await {
            Ok((Ok(()), commit, took)) => Ok((commit, took)),
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
    /// A processed page waiting for the next page's lookups.
    held: Option<Held>,
    /// The page committing beside the current one's mapping and writing.
    in_flight: Option<InFlight>,
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
    /// Commits of `run` of `pipeline` (reading `source`) to `store`; the
    /// run log starts with `log`.
    pub fn new(
        store: Arc<dyn RunStore>,
        pipeline: &str,
        run: RunId,
        source: &Endpoint,
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

    /// Whether a processed page waits for the next one's lookups.
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// Whether the held page links any of these source records.
    pub fn held_links_any_record(&self, ids: &[&str]) -> bool {
        self.held.as_ref().is_some_and(|h| h.links_any_record(ids))
    }

    /// Whether the held page links records to any of these entities.
    pub fn held_links_any_entity<'a>(&self, entities: impl IntoIterator<Item = &'a i64>) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| h.links_any_entity(entities))
    }

    /// Commit a page now.
    pub fn commit(&mut self, commit: PageCommit) -> Result<(), SyncError> {
        let started = Instant::now();
        let commit = self.counted(commit);
        self.store.commit_page(&self.pipeline, self.run, &commit)?;
        self.took += started.elapsed();
        self.committed(&commit);
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

    /// After a page's commit: its metrics and the progress report.
    fn committed(&self, commit: &PageCommit) {
        if let Some(metrics) = self.metrics {
            for letter in &commit.dead_letters {
                metrics.error(&self.pipeline, &letter.class);
            }
        }
        if let Some(progress) = &self.progress {
            progress(&self.counts);
        }
    }

    /// Hold a processed page for the next one's lookups.
    pub fn hold(&mut self, commit: PageCommit) {
        self.held = Some(Held::new(
            commit,
            &self.source.connection,
            &self.source.stream,
        ));
    }

    /// Commit the held page now (the next page's lookups need it).
    pub fn commit_held(&mut self) -> Result<(), SyncError> {
        match self.held.take() {
            Some(held) => self.commit(held.commit),
            None => Ok(()),
        }
    }

    /// Start committing the held page on a blocking thread.
    pub fn launch_held(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let commit = self.counted(held.commit);
        self.in_flight = Some(InFlight::start(
            self.store.clone(),
            self.pipeline.clone(),
            self.run,
            commit,
        ));
    }

    /// Wait for the page committing in the background, if any.
    pub async fn land(&mut self) -> Result<(), SyncError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        let (commit, took) = in_flight.land(&self.pipeline).await?;
        self.took += took;
        self.committed(&commit);
        Ok(())
    }

    /// Commit everything processed: the page in flight, then the held one
    /// (not if the one before it failed: its cursor would skip that page).
    pub async fn flush(&mut self) -> Result<(), SyncError> {
        self.land().await?;
        self.commit_held()
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

//! Committing a run's pages beside its work: a processed page is held until
//! the next page has done its identity-map lookups, then committed on a
//! blocking thread while that next page is mapped and written. Each page is
//! still one transaction, committed in page order; a page whose lookups
//! would read what the held page changes waits for that commit first.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SyncError;
use super::driver::Driver;
use super::store::{PageCommit, RunId, SyncStore};
use crate::store::StoreError;

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
        store: Arc<dyn SyncStore>,
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

/// The run's side of committing: what a page's commit brings with it
/// (log lines, counts, metrics, progress) and the held and in-flight pages.
impl Driver<'_> {
    pub(super) fn commit(&mut self, commit: PageCommit) -> Result<(), SyncError> {
        let started = Instant::now();
        let commit = self.counted(commit);
        if self.dry_run {
            self.overlay.apply(&commit.links);
        } else if let Some(run) = self.run_id {
            self.engine.store.commit_page(self.name(), run, &commit)?;
        }
        self.timings.commit += started.elapsed();
        self.committed(&commit);
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
        if !self.dry_run && self.run_id.is_some() {
            let metrics = crate::metrics::Metrics::global();
            for letter in &commit.dead_letters {
                metrics.error(self.name(), &letter.class);
            }
        }
        if let Some(progress) = &self.progress {
            progress(&self.counts);
        }
    }

    /// A real run holds a processed page for the next one's lookups; a dry
    /// run (whose "commit" is its overlay, read by the next page) commits
    /// at once.
    pub(super) fn hold_or_commit(&mut self, commit: PageCommit) -> Result<(), SyncError> {
        if self.dry_run || self.run_id.is_none() {
            return self.commit(commit);
        }
        let source = &self.p.pipeline.source;
        self.held = Some(Held::new(commit, &source.connection, &source.stream));
        Ok(())
    }

    /// Commit the held page now (the next page's lookups need it).
    pub(super) fn commit_held(&mut self) -> Result<(), SyncError> {
        match self.held.take() {
            Some(held) => self.commit(held.commit),
            None => Ok(()),
        }
    }

    /// Start committing the held page on a blocking thread.
    pub(super) fn launch_held(&mut self) {
        let (Some(held), Some(run)) = (self.held.take(), self.run_id) else {
            return;
        };
        let commit = self.counted(held.commit);
        self.in_flight = Some(InFlight::start(
            self.engine.store.clone(),
            self.name().to_string(),
            run,
            commit,
        ));
    }

    /// Wait for the page committing in the background, if any.
    pub(super) async fn land(&mut self) -> Result<(), SyncError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        let (commit, took) = in_flight.land(self.name()).await?;
        self.timings.commit += took;
        self.committed(&commit);
        Ok(())
    }

    /// Commit everything processed: the page in flight, then the held one
    /// (not if the one before it failed: its cursor would skip that page).
    pub(super) async fn flush(&mut self) -> Result<(), SyncError> {
        self.land().await?;
        self.commit_held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::store::LinkUpdate;

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
            peer: std::sync::Arc::new(crate::sync::pipeline::Endpoint {
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

//! One run in progress: catch up on the destination's own changes, then
//! drive the source page by page (the next page read while the current one
//! is processed), hand each page to the page steps through a narrow
//! [`PageContext`], commit it through the [`Committer`], and sweep a full
//! refresh. Dry runs take the same path over a recording store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SyncError;
use super::bounds::LimitHit;
use super::commit::{Committer, Progress};
use super::dry_run::PlannedChange;
use super::going_live::{self, MatchReport};
use super::lookback;
use super::page::{self, Deduped, PageContext};
use super::pipeline::SyncMode;
use super::ports::Source;
use super::prepared::Prepared;
use super::retry::{Outage, StopSignal, Waiter};
use super::settle::{self, Spent};
use super::store::{
    Counts, Link, LogLevel, PageCommit, PageStore, PipelineRow, RecordOutcome, RunId, RunStore,
};
use nexo_runtime::metrics::Metrics;
use nexo_runtime::plugin::{CheckedPage, Operation, Record, RejectedRecord};

/// Where a run's time went (for the log and tuning).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Timings {
    pub read: Duration,
    pub map: Duration,
    pub write: Duration,
    pub commit: Duration,
}

/// How a run is driven besides its pipeline and store.
#[derive(Default)]
pub(super) struct RunSetup {
    /// Asks the run to stop at the next page boundary.
    pub stop: Option<StopSignal>,
    /// Called after each committed page.
    pub progress: Option<Progress>,
    /// Where dead letters are counted (none for a dry run).
    pub metrics: Option<&'static Metrics>,
    /// Collect the changes the run settles (a dry run's plan).
    pub plan: bool,
}

/// One run in progress.
pub(super) struct Driver<'a> {
    p: &'a Prepared,
    store: Arc<dyn PageStore>,
    run: RunId,
    committer: Committer,
    waiter: Waiter,
    stop: Option<StopSignal>,
    plan: Option<Vec<PlannedChange>>,
    timings: Timings,
    /// When the store was last asked whether this run must stop.
    polled: Option<Instant>,
    /// When the run started (for `[limits].max_seconds`).
    started: Instant,
    /// Ids of the source records this run read (full refresh only): the
    /// sweep takes the linked records not among them as gone. Kept by the
    /// run itself, not in the shared links, so another pipeline reading
    /// the same source at the same time cannot make a record look unread.
    seen: HashSet<String>,
    /// What the matching pass before the first run found.
    matching: Option<MatchReport>,
}

/// A source page being read in its own task.
type Pending = tokio::task::JoinHandle<Result<CheckedPage, SyncError>>;

/// How often a run asks the store whether someone wants it stopped.
const STOP_POLL: Duration = Duration::from_millis(500);

impl<'a> Driver<'a> {
    /// A driver for run `run` of `p` over `store`.
    pub fn new(p: &'a Prepared, store: Arc<dyn PageStore>, run: RunId, setup: RunSetup) -> Self {
        let name = &p.pipeline.name;
        let runs: Arc<dyn RunStore> = store.clone();
        let waiter = Waiter {
            store: runs.clone(),
            run,
            stop: setup.stop.clone(),
            pipeline: name.clone(),
            retry: p.pipeline.retry.clone(),
        };
        let committer = Committer::new(
            runs,
            name,
            run,
            &p.pipeline.source,
            p.pipeline.commit,
            p.opening_log.clone(),
            setup.progress,
            setup.metrics,
        );
        Driver {
            p,
            store,
            run,
            committer,
            waiter,
            stop: setup.stop,
            plan: setup.plan.then(Vec::new),
            timings: Timings::default(),
            polled: None,
            started: Instant::now(),
            seen: HashSet::new(),
            matching: None,
        }
    }

    /// What the matching pass of this run found, when it had one.
    pub fn take_matching(&mut self) -> Option<MatchReport> {
        self.matching.take()
    }

    fn name(&self) -> &str {
        &self.p.pipeline.name
    }

    /// The counts of the pages committed.
    pub fn counts(&self) -> Counts {
        self.committer.counts()
    }

    /// Pages committed.
    pub fn pages(&self) -> u64 {
        self.committer.pages()
    }

    /// Where the run's time went.
    pub fn timings(&self) -> Timings {
        Timings {
            commit: self.committer.took(),
            ..self.timings
        }
    }

    /// The changes the run settled, when asked to collect them.
    pub fn take_plan(&mut self) -> Vec<PlannedChange> {
        self.plan.take().unwrap_or_default()
    }

    /// Put why the run ended early in its log.
    pub fn log_ending(&mut self, level: LogLevel, message: &str) -> Result<(), SyncError> {
        self.committer.log_ending(level, message)
    }

    /// `Err(Stopped)` when this process is shutting down, `Err(Cancelled)`
    /// when a person asked this run to stop or paused its pipeline (read
    /// from the store, so another process can ask): called only between
    /// pages, so the next run resumes exactly after the last one.
    fn check_stop(&mut self) -> Result<(), SyncError> {
        if self.stop.as_ref().is_some_and(StopSignal::is_stopped) {
            return Err(SyncError::Stopped {
                pipeline: self.name().to_string(),
                pages: self.pages(),
            });
        }
        // Asked at most every STOP_POLL: the store's lock is shared with
        // the page committing in the background, and waiting on it every
        // page would undo that overlap.
        if self.polled.is_some_and(|t| t.elapsed() < STOP_POLL) {
            return Ok(());
        }
        self.polled = Some(Instant::now());
        if let Some(why) = self.store.cancel_reason(self.run)? {
            return Err(SyncError::Cancelled {
                pipeline: self.name().to_string(),
                pages: self.pages(),
                why,
            });
        }
        Ok(())
    }

    /// The error for a limit reached, after the pages in hand.
    fn limit(&self, hit: LimitHit) -> SyncError {
        SyncError::Limit {
            pipeline: self.name().to_string(),
            pages: self.pages(),
            hit,
        }
    }

    pub async fn drive(&mut self, row: &PipelineRow) -> Result<(), SyncError> {
        let pipeline = &self.p.pipeline;
        if pipeline.track_destination && self.p.dest_readable {
            self.track_destination(row.destination_state.clone())
                .await?;
        }
        self.go_live().await?;
        let state = match pipeline.mode {
            SyncMode::FullRefresh => None,
            SyncMode::Incremental if pipeline.look_back_seconds == 0 => row.state.clone(),
            SyncMode::Incremental => {
                let previous = self.store.previous_run_start(self.name(), self.run)?;
                lookback::rewind(
                    row.state.clone(),
                    previous.as_deref(),
                    pipeline.look_back_seconds,
                )
            }
        };
        // Whatever ends the page loop, every page it processed (and so
        // wrote) is committed before the run goes on or ends.
        let paged = self.pages_of_source(state).await;
        let flushed = self.committer.flush().await;
        paged?;
        flushed?;
        if pipeline.mode == SyncMode::FullRefresh {
            // Also in a dry run, which then predicts the deletes too.
            let gone: Vec<_> = self
                .store
                .unswept_links(
                    &pipeline.entity,
                    &pipeline.source.connection,
                    &pipeline.source.stream,
                    &pipeline.destination,
                )?
                .into_iter()
                .filter(|l| !self.seen.contains(&l.record_id))
                .collect();
            if !gone.is_empty() {
                let ctx = PageContext::over(self.p, self.store.as_ref(), &self.waiter);
                let mut spent = Spent::default();
                let commit = settle::sweep(ctx, gone, self.plan.as_mut(), &mut spent).await?;
                self.spent(spent);
                self.committer.commit(commit)?;
            }
        }
        Ok(())
    }

    /// Going live: a pipeline that matches, never matched, matches before
    /// its first page (linking what the destination holds, queueing what
    /// is uncertain); then the records people decided on since the last
    /// run are delivered, before the source's pages.
    async fn go_live(&mut self) -> Result<(), SyncError> {
        let pipeline = &self.p.pipeline;
        let Some(rules) = &pipeline.matching else {
            return Ok(());
        };
        if rules.first_run && self.store.match_pass(&pipeline.name)?.is_none() {
            let ctx = PageContext::over(self.p, self.store.as_ref(), &self.waiter);
            let (commit, report) = going_live::pass(ctx).await?;
            self.committer.commit_aside(&commit)?;
            self.matching = Some(report);
        }
        let decided = self.store.decided_reviews(&pipeline.name)?;
        if decided.is_empty() {
            return Ok(());
        }
        let records = decided
            .into_iter()
            .map(|r| Record {
                stream: pipeline.source.stream.clone(),
                id: r.record.id,
                operation: Operation::Upsert,
                payload: r.record.payload,
                cursor: r.record.cursor,
            })
            .collect();
        let commit = self.process(records, Vec::new()).await?;
        self.committer.hold(commit);
        Ok(())
    }

    fn spent(&mut self, spent: Spent) {
        self.timings.map += spent.map;
        self.timings.write += spent.write;
    }

    /// One page of the source: its lookups (after the held page's commit
    /// when they would read what it changes), then, while the held page
    /// commits beside it, its mapping, decisions, writes and settling.
    async fn process(
        &mut self,
        records: Vec<Record>,
        rejected: Vec<RejectedRecord>,
    ) -> Result<PageCommit, SyncError> {
        let deduped = Deduped::of(records, rejected);
        {
            let ids = deduped.ids();
            self.committer.expose_records(&ids).await?;
            if self.p.pipeline.mode == SyncMode::FullRefresh {
                self.seen.extend(ids.iter().map(|id| id.to_string()));
            }
        }
        let ctx = PageContext::over(self.p, self.store.as_ref(), &self.waiter);
        let mut classified = page::classify(ctx, deduped)?;
        self.committer.expose_entities(&classified.entities).await?;
        classified.look_up_destinations(ctx)?;
        self.committer.launch_due().await?;
        let mut spent = Spent::default();
        let commit = settle::finish(ctx, classified, self.plan.as_mut(), &mut spent).await?;
        self.spent(spent);
        if let Some(plan) = self.plan.as_mut() {
            let held = commit
                .results
                .iter()
                .filter(|r| r.outcome == RecordOutcome::Held);
            plan.extend(held.map(|r| PlannedChange {
                action: "hold",
                source_id: r.source_id.clone(),
                destination_id: None,
                diff: Vec::new(),
            }));
        }
        Ok(commit)
    }

    /// The source, page by page from `state`.
    async fn pages_of_source(&mut self, mut state: Option<String>) -> Result<(), SyncError> {
        // The next page is read while this one is mapped, written and
        // committed: reading is the source's time, the rest is ours.
        let limits = self.p.pipeline.limits;
        let (mut pages, mut records) = (0u64, 0u64);
        let mut next = Some(self.prefetch(state.clone()));
        while let Some(pending) = next.take() {
            let t = Instant::now();
            let CheckedPage { page, rejected } = match self.wait_for(pending).await? {
                Ok(page) => page?,
                Err(e) => {
                    return Err(SyncError::Malformed {
                        pipeline: self.name().to_string(),
                        message: format!("the read task failed: {e}"),
                    });
                }
            };
            self.timings.read += t.elapsed();
            if page.has_more && page.state == state {
                return Err(SyncError::Malformed {
                    pipeline: self.name().to_string(),
                    message: format!(
                        "{} said more pages follow but returned the state it was given; reading on would repeat this page forever",
                        self.p.source.label()
                    ),
                });
            }
            // A state over the cap is never saved: the pages before this
            // one are committed, this one is not processed.
            if let Err(hit) = limits.check_state(page.state.as_deref()) {
                self.committer.flush().await?;
                return Err(self.limit(hit));
            }
            pages += 1;
            records += (page.records.len() + rejected.len()) as u64;
            let limited = page
                .has_more
                .then(|| limits.reached(pages, records, self.started.elapsed()))
                .flatten();
            if page.has_more && limited.is_none() {
                next = Some(self.prefetch(page.state.clone()));
            }
            let mut commit = self.process(page.records, rejected).await?;
            commit.state = page.state.clone().or(state.clone());
            self.committer.hold(commit);
            state = page.state;
            if let Some(hit) = limited {
                self.committer.flush().await?;
                return Err(self.limit(hit));
            }
            if !page.has_more {
                continue;
            }
            if let Err(stopped) = self.check_stop() {
                if let Some(read) = next.take() {
                    read.abort();
                }
                // The page in hand commits before the run stops.
                self.committer.flush().await?;
                return Err(SyncError::with_pages(stopped, self.committer.pages()));
            }
        }
        Ok(())
    }

    /// Wait for the page being read. Held pages wait for it (its lookups
    /// go first, then their commit runs beside its mapping and writing)
    /// and for their group to fall due; a due group is never held back to
    /// wait for the source, and a group waiting on a slow source is
    /// committed when its time is up.
    async fn wait_for(
        &mut self,
        mut pending: Pending,
    ) -> Result<Result<Result<CheckedPage, SyncError>, tokio::task::JoinError>, SyncError> {
        if !self.committer.holds() || pending.is_finished() {
            return Ok(pending.await);
        }
        if !self.committer.held_due() {
            let left = self.committer.held_time_left();
            if let Ok(joined) = tokio::time::timeout(left, &mut pending).await {
                return Ok(joined);
            }
        }
        self.committer.commit_held().await?;
        Ok(pending.await)
    }

    /// Read the destination's changes since last time, so the identity map
    /// knows the destination's current content (conflict detection).
    async fn track_destination(&mut self, mut state: Option<String>) -> Result<(), SyncError> {
        let dest = &self.p.pipeline.destination;
        loop {
            // Records the engine cannot read are not tracked: tracking
            // only refreshes what the identity map knows.
            let CheckedPage { page, .. } = read_with_retry(
                self.p.dest_reader.as_ref(),
                state.as_deref(),
                &self.waiter,
                &dest.connection,
            )
            .await?;
            let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
            let links: HashMap<String, Link> = self
                .store
                .links(
                    &self.p.pipeline.entity,
                    &dest.connection,
                    &dest.stream,
                    &ids,
                    Some(&self.p.pipeline.source),
                )?
                .into_iter()
                .map(|l| (l.record_id.clone(), l))
                .collect();
            // The destination's state is capped like the source's, and
            // never saved when over the cap.
            self.p
                .pipeline
                .limits
                .check_state(page.state.as_deref())
                .map_err(|hit| self.limit(hit))?;
            let mut commit = PageCommit {
                destination_state: page.state.clone(),
                ..PageCommit::default()
            };
            let mut changed = 0;
            for r in &page.records {
                let Some(link) = links.get(&r.id) else {
                    continue; // not linked: not this pipeline's business
                };
                commit.links.push(page::tracked(
                    &self.p.pipeline.entity,
                    link,
                    &self.p.source_end,
                    r,
                    &self.p.dest_system,
                    &self.p.dest_compare,
                    &mut changed,
                ));
            }
            if changed > 0 {
                commit.log.push((
                    LogLevel::Info,
                    format!(
                        "destination: {changed} linked records changed there since the last sync"
                    ),
                ));
            }
            self.committer.commit_aside(&commit)?;
            if page.has_more && page.state == state {
                return Err(SyncError::Malformed {
                    pipeline: self.name().to_string(),
                    message: format!(
                        "{} said more pages of the destination follow but returned the state it was given",
                        self.p.dest_reader.label()
                    ),
                });
            }
            state = page.state;
            if !page.has_more {
                return Ok(());
            }
            self.check_stop()?;
        }
    }

    /// Start reading the source page after `state` in its own task.
    /// (Mapping stays in the page's own step: on two cores, mapping ahead
    /// records that turn out unchanged costs more than it overlaps.)
    fn prefetch(&self, state: Option<String>) -> Pending {
        let source = self.p.source.clone();
        let waiter = self.waiter.clone();
        let connection = self.p.pipeline.source.connection.clone();
        tokio::spawn(async move {
            read_with_retry(source.as_ref(), state.as_deref(), &waiter, &connection).await
        })
    }
}

/// `read` with retries for transient failures, for the retry window.
async fn read_with_retry(
    source: &dyn Source,
    state: Option<&str>,
    waiter: &Waiter,
    connection: &str,
) -> Result<CheckedPage, SyncError> {
    let mut outage: Option<Outage> = None;
    loop {
        match source.read(state).await {
            Ok(page) => return Ok(page),
            Err(e) => {
                let outage = outage.get_or_insert_with(Outage::begin);
                waiter.after_failure(outage, e, "read", connection).await?;
            }
        }
    }
}

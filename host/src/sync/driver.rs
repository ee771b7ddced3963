//! One run in progress: catch up on the destination's own changes, then
//! drive the source page by page (the next page read while the current one
//! is processed), commit each page, and sweep a full refresh. Also the
//! retry rules for reads and writes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::SyncError;
use super::bounds::LimitHit;
use super::commit::{Held, InFlight};
use super::engine::{Engine, PlannedChange, Prepared, Progress, StopSignal};
use super::lookback;
use super::page::{self, Overlay};
use super::pipeline::{Endpoint, SyncMode};
use super::retry::{Outage, Waiter};
use super::store::{Counts, LogLevel, PageCommit, PipelineRow, RunId};
use crate::plugin::{CheckedPage, ConnectorPlugin};

/// Where a run's time went (for the log and tuning).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Timings {
    pub read: Duration,
    pub map: Duration,
    pub write: Duration,
    pub commit: Duration,
}

/// One run in progress.
pub(super) struct Driver<'a> {
    pub engine: &'a Engine,
    pub p: &'a Prepared,
    pub run_id: Option<RunId>,
    pub dry_run: bool,
    pub overlay: Overlay,
    pub counts: Counts,
    pub pages: u64,
    pub plan: Vec<PlannedChange>,
    pub(super) progress: Option<Progress>,
    /// Asks the run to stop at the next page boundary.
    pub stop: Option<StopSignal>,
    /// Lines for the run log, committed with the next page.
    pub(super) pending_log: Vec<(LogLevel, String)>,
    /// A processed page waiting for the next page's lookups (real runs).
    pub(super) held: Option<Held>,
    /// The page committing beside the current one's mapping and writing.
    pub(super) in_flight: Option<InFlight>,
    /// Time per phase.
    pub timings: Timings,
    /// When the store was last asked whether this run must stop.
    polled: Option<Instant>,
    /// When the run started (for `[limits].max_seconds`).
    started: Instant,
    /// Ids of the source records this run read (full refresh only): the
    /// sweep takes the linked records not among them as gone. Kept by the
    /// run itself, not in the shared links, so another pipeline reading
    /// the same source at the same time cannot make a record look unread.
    pub seen: HashSet<String>,
}

/// How often a run asks the store whether someone wants it stopped.
const STOP_POLL: Duration = Duration::from_millis(500);

impl<'a> Driver<'a> {
    /// A driver for a real (not dry) run outside the page loop: replays
    /// and conflict resolutions.
    pub fn new(engine: &'a Engine, p: &'a Prepared, run_id: RunId) -> Self {
        Driver::start(engine, p, Some(run_id), false, None)
    }

    /// A driver for a run (`run_id` none: a dry run, recorded nowhere).
    pub fn start(
        engine: &'a Engine,
        p: &'a Prepared,
        run_id: Option<RunId>,
        dry_run: bool,
        progress: Option<Progress>,
    ) -> Self {
        Driver {
            engine,
            p,
            run_id,
            dry_run,
            overlay: Overlay::default(),
            counts: Counts::default(),
            pages: 0,
            plan: Vec::new(),
            progress,
            stop: None,
            pending_log: std::iter::once((LogLevel::Info, p.versions()))
                .chain(p.approval_warnings())
                .collect(),
            held: None,
            in_flight: None,
            timings: Timings::default(),
            polled: None,
            started: Instant::now(),
            seen: HashSet::new(),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.p.pipeline.name
    }

    /// Put why the run ended early in its log, with the lines not yet
    /// committed (a run that fails on its first page has no other log).
    pub(super) fn log_ending(&mut self, level: LogLevel, message: &str) -> Result<(), SyncError> {
        let Some(run) = self.run_id.filter(|_| !self.dry_run) else {
            return Ok(());
        };
        let mut log = std::mem::take(&mut self.pending_log);
        log.push((level, message.to_string()));
        let commit = PageCommit {
            log,
            ..PageCommit::default()
        };
        self.engine.store.commit_page(self.name(), run, &commit)?;
        Ok(())
    }

    /// `Err(Stopped)` when this process is shutting down, `Err(Cancelled)`
    /// when a person asked this run to stop or paused its pipeline (read
    /// from the store, so another process can ask): called only between
    /// pages, so the next run resumes exactly after the last one.
    fn check_stop(&mut self) -> Result<(), SyncError> {
        if self.stop.as_ref().is_some_and(StopSignal::is_stopped) {
            return Err(SyncError::Stopped {
                pipeline: self.name().to_string(),
                pages: self.pages,
            });
        }
        // Asked at most every STOP_POLL: the store's lock is shared with
        // the page committing in the background, and waiting on it every
        // page would undo that overlap.
        if self.polled.is_some_and(|t| t.elapsed() < STOP_POLL) {
            return Ok(());
        }
        self.polled = Some(Instant::now());
        if let Some(run) = self.run_id.filter(|_| !self.dry_run)
            && let Some(why) = self.engine.store.cancel_reason(run)?
        {
            return Err(SyncError::Cancelled {
                pipeline: self.name().to_string(),
                pages: self.pages,
                why,
            });
        }
        Ok(())
    }

    /// The error for a limit reached, after the pages in hand.
    fn limit(&self, hit: LimitHit) -> SyncError {
        SyncError::Limit {
            pipeline: self.name().to_string(),
            pages: self.pages,
            hit,
        }
    }

    pub(super) async fn drive(&mut self, row: &PipelineRow) -> Result<(), SyncError> {
        let pipeline = &self.p.pipeline;
        if pipeline.track_destination && self.p.dest_readable {
            self.track_destination(row.destination_state.clone())
                .await?;
        }
        let state = match pipeline.mode {
            SyncMode::FullRefresh => None,
            SyncMode::Incremental if pipeline.look_back_seconds == 0 => row.state.clone(),
            SyncMode::Incremental => {
                let previous = match self.run_id {
                    Some(id) => self.engine.store.previous_run_start(self.name(), id)?,
                    None => self
                        .engine
                        .store
                        .previous_run_start(self.name(), i64::MAX)?,
                };
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
        let flushed = self.flush().await;
        paged?;
        flushed?;
        if pipeline.mode == SyncMode::FullRefresh {
            // Also in a dry run, which then predicts the deletes too.
            let gone: Vec<_> = self
                .engine
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
                let commit = page::sweep(self, gone).await?;
                self.commit(commit)?;
            }
        }
        Ok(())
    }

    /// The source, page by page from `state`.
    async fn pages_of_source(&mut self, mut state: Option<String>) -> Result<(), SyncError> {
        // The next page is read while this one is mapped, written and
        // committed: reading is the source's time, the rest is ours.
        let limits = self.p.pipeline.limits;
        let (mut pages, mut records) = (0u64, 0u64);
        let mut next = Some(self.prefetch(state.clone()));
        while let Some(pending) = next.take() {
            // A page is held back only while the next one is already here
            // (its lookups go first, then the commit runs beside its
            // mapping and writing), never to wait for the source.
            if self.held.is_some() && !pending.is_finished() {
                self.commit_held()?;
            }
            let t = Instant::now();
            let CheckedPage { page, rejected } = match pending.await {
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
                        self.p.source.plugin()
                    ),
                });
            }
            // A state over the cap is never saved: the pages before this
            // one are committed, this one is not processed.
            if let Err(hit) = limits.check_state(page.state.as_deref()) {
                self.flush().await?;
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
            let classified = page::classify(self, page.records, rejected).await?;
            self.launch_held();
            let mut commit = page::finish(self, classified).await?;
            commit.state = page.state.clone().or(state.clone());
            self.land().await?;
            self.hold_or_commit(commit)?;
            state = page.state;
            if let Some(hit) = limited {
                self.flush().await?;
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
                self.flush().await?;
                return Err(SyncError::with_pages(stopped, self.pages));
            }
        }
        Ok(())
    }

    /// Read the destination's changes since last time, so the identity map
    /// knows the destination's current content (conflict detection).
    async fn track_destination(&mut self, mut state: Option<String>) -> Result<(), SyncError> {
        let dest = &self.p.pipeline.destination;
        loop {
            // Records the engine cannot read are not tracked: tracking
            // only refreshes what the identity map knows.
            let CheckedPage { page, .. } = self
                .read(
                    &self.p.dest,
                    &self.p.dest_config,
                    &dest.stream,
                    state.as_deref(),
                    &dest.connection,
                )
                .await?;
            let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
            let links: HashMap<String, super::store::Link> = self
                .links(dest, &ids, &self.p.pipeline.source)?
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
            if self.dry_run {
                self.overlay.apply(&commit.links);
            } else if let Some(run) = self.run_id {
                self.engine.store.commit_page(self.name(), run, &commit)?;
            }
            if page.has_more && page.state == state {
                return Err(SyncError::Malformed {
                    pipeline: self.name().to_string(),
                    message: format!(
                        "{} said more pages of the destination follow but returned the state it was given",
                        self.p.dest.plugin()
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

    /// Links of records of `end` to this pipeline's entity type, with
    /// their sync state with `peer` (the pipeline's other end), seen
    /// through the dry run's overlay.
    pub fn links(
        &self,
        end: &Endpoint,
        ids: &[&str],
        peer: &Endpoint,
    ) -> Result<Vec<super::store::Link>, SyncError> {
        let entity = &self.p.pipeline.entity;
        let mut found =
            self.engine
                .store
                .links(entity, &end.connection, &end.stream, ids, Some(peer))?;
        self.overlay
            .patch(&mut found, &end.connection, &end.stream, ids);
        Ok(found)
    }

    /// Start reading the source page after `state` in its own task.
    /// (Mapping stays in the page's own step: on two cores, mapping ahead
    /// records that turn out unchanged costs more than it overlaps.)
    fn prefetch(
        &self,
        state: Option<String>,
    ) -> tokio::task::JoinHandle<Result<CheckedPage, SyncError>> {
        let plugin = self.p.source.clone();
        let config = self.p.source_config.clone();
        let stream = self.p.pipeline.source.stream.clone();
        let waiter = self.waiter();
        let connection = self.p.pipeline.source.connection.clone();
        tokio::spawn(async move {
            read_with_retry(
                &plugin,
                &config,
                &stream,
                state.as_deref(),
                &waiter,
                &connection,
            )
            .await
        })
    }

    /// `read` with retries for transient failures.
    async fn read(
        &self,
        plugin: &ConnectorPlugin,
        config: &str,
        stream: &str,
        state: Option<&str>,
        connection: &str,
    ) -> Result<CheckedPage, SyncError> {
        read_with_retry(plugin, config, stream, state, &self.waiter(), connection).await
    }

    /// Waits between retries for this run: logged, and stoppable.
    pub(super) fn waiter(&self) -> Waiter {
        Waiter {
            store: self.engine.store.clone(),
            run: self.run_id.filter(|_| !self.dry_run),
            stop: self.stop.clone(),
            pipeline: self.name().to_string(),
            retry: self.p.pipeline.retry.clone(),
        }
    }
}

/// `read` with retries for transient failures, for the retry window.
async fn read_with_retry(
    plugin: &ConnectorPlugin,
    config: &str,
    stream: &str,
    state: Option<&str>,
    waiter: &Waiter,
    connection: &str,
) -> Result<CheckedPage, SyncError> {
    let mut outage: Option<Outage> = None;
    loop {
        match plugin
            .read_checked(config, stream, state)
            .await
            .into_result()
        {
            Ok(page) => return Ok(page),
            Err(e) => {
                let outage = outage.get_or_insert_with(Outage::begin);
                waiter.after_failure(outage, e, "read", connection).await?;
            }
        }
    }
}

//! Decides when pipelines run inside `nexo serve`: on their schedule, when
//! a webhook or a person asks, and again after a shutdown left a run
//! interrupted. A pipeline never runs twice at once, at most
//! `max_concurrent_runs` run in all (the rest wait for a slot instead of
//! failing), bursts of triggers coalesce, and a pipeline that keeps failing
//! is paused with the reason.
//!
//! On a PostgreSQL that several hosts share, what is due is decided in the
//! database instead (`nexo_db::cluster`): a host claims a pipeline for a
//! scheduled fire (compare-and-set on its last fire, so it fires once
//! across the hosts), for a run asked for through any host (requests
//! coalesce in the database), or to resume a run whose host died, and
//! only while it has a free slot of its own `max_concurrent_runs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, watch};

use super::clock::Clock;
use nexo_runtime::metrics::Metrics;
use nexo_sync::store::{RunFilter, RunStatus};
use nexo_sync::{Engine, RunOptions, StopSignal, SyncError};

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Runs in progress at once, over all pipelines.
    pub max_concurrent_runs: usize,
    /// Triggers arriving within this window start one run.
    pub coalesce: Duration,
    /// Longest sleep between looks at the pipeline list (definitions
    /// applied by another process are seen within this time).
    pub rescan: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_concurrent_runs: 4,
            coalesce: Duration::from_millis(250),
            rescan: Duration::from_secs(5),
        }
    }
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A run starts shortly.
    Queued,
    /// A run is in progress or already queued: one more follows it.
    Coalesced,
}

/// A trigger that was refused.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// No such pipeline.
    #[error("no pipeline named `{0}`")]
    Unknown(String),
    /// Paused.
    #[error("pipeline `{0}` is paused; resume it first")]
    Paused(String),
    /// Shutting down.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] nexo_db::StoreError),
}

/// The scheduler's view of one pipeline.
#[derive(Debug, Default, Clone)]
struct Slot {
    /// When the last run started (clock time), seeded from run history.
    last_start: Option<DateTime<Utc>>,
    seeded: bool,
    /// Next scheduled run.
    next: Option<DateTime<Utc>>,
    /// An asked-for run, due at this time.
    trigger_at: Option<DateTime<Utc>>,
    running: bool,
    /// A trigger arrived during the run.
    again: bool,
    /// When this scheduler first saw the pipeline: a cron schedule that
    /// never ran counts its first match from here (counting from each
    /// tick's `now` would put the match always ahead, never due).
    seen_at: Option<DateTime<Utc>>,
}

/// What a schedule counts its next run from: the last start, or — for a
/// cron schedule that never ran — when the pipeline was first seen.
fn count_from(
    schedule: Option<&nexo_sync::schedule::Schedule>,
    last: Option<DateTime<Utc>>,
    seen_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match schedule.map(|s| &s.timing) {
        Some(nexo_sync::schedule::Timing::Cron(_)) => last.or(seen_at),
        _ => last,
    }
}

/// What the console shows about a pipeline's schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotView {
    /// A run is in progress (or waiting for a free slot).
    pub running: bool,
    /// When the next run is due.
    pub next_run: Option<DateTime<Utc>>,
}

struct Inner {
    engine: Engine,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    stop: StopSignal,
    permits: Arc<Semaphore>,
    slots: Mutex<HashMap<String, Slot>>,
    wake: Notify,
    in_flight: watch::Sender<usize>,
    /// The clock time of the last completed look at the pipelines.
    ticked: watch::Sender<Option<DateTime<Utc>>>,
    /// How many runs have ended (the alert evaluator looks after each).
    runs_ended: watch::Sender<u64>,
}

/// The scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler running pipelines through `engine`.
    pub fn new(engine: Engine, clock: Arc<dyn Clock>, config: SchedulerConfig) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_runs.max(1)));
        Scheduler {
            inner: Arc::new(Inner {
                engine,
                clock,
                config,
                stop: StopSignal::default(),
                permits,
                slots: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                in_flight: watch::Sender::new(0),
                ticked: watch::Sender::new(None),
                runs_ended: watch::Sender::new(0),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a run of every pipeline whose last run was cut short (a
    /// shutdown or a crash): it resumes from its last committed page.
    pub fn resume_interrupted(&self) -> Result<Vec<String>, SyncError> {
        if self.inner.engine.host_lease().is_some() {
            // Every tick resumes what a host left: see `tick_shared`.
            return Ok(Vec::new());
        }
        let store = self.inner.engine.store();
        let mut resumed = Vec::new();
        for row in store.pipelines()? {
            if row.paused {
                continue;
            }
            let last = store.runs(&RunFilter {
                pipeline: Some(row.pipeline.name.clone()),
                status: None,
                limit: 1,
            })?;
            let cut = last.first().is_some_and(|r| {
                r.status == RunStatus::Interrupted.as_str()
                    || r.status == RunStatus::Running.as_str()
            });
            if cut && self.trigger(&row.pipeline.name).is_ok() {
                resumed.push(row.pipeline.name.clone());
            }
        }
        Ok(resumed)
    }

    /// Ask for a run (webhook, API). Triggers within the coalescing window,
    /// or while a run is in progress, make one run.
    pub fn trigger(&self, name: &str) -> Result<Triggered, TriggerError> {
        self.trigger_after(name, self.inner.config.coalesce)
    }

    /// Ask for a run of `name` in `delay` (none sooner than one already
    /// asked for).
    fn trigger_after(&self, name: &str, delay: Duration) -> Result<Triggered, TriggerError> {
        if self.inner.stop.is_stopped() {
            return Err(TriggerError::ShuttingDown);
        }
        let row = self
            .inner
            .engine
            .store()
            .pipeline(name)?
            .ok_or_else(|| TriggerError::Unknown(name.to_string()))?;
        if row.paused {
            return Err(TriggerError::Paused(name.to_string()));
        }
        if self.inner.engine.host_lease().is_some() {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            let asked = self
                .inner
                .engine
                .registry()
                .db()
                .request_run(name, delay_ms)?;
            self.inner.wake.notify_one();
            return Ok(match asked {
                nexo_db::cluster::Asked::Queued => Triggered::Queued,
                nexo_db::cluster::Asked::Coalesced => Triggered::Coalesced,
            });
        }
        let due = self.inner.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let outcome = {
            let mut slots = self.slots();
            let slot = slots.entry(name.to_string()).or_default();
            if slot.running {
                let first = !slot.again;
                slot.again = true;
                if first {
                    Triggered::Queued
                } else {
                    Triggered::Coalesced
                }
            } else if slot.trigger_at.is_some() {
                Triggered::Coalesced
            } else {
                slot.trigger_at = Some(due);
                Triggered::Queued
            }
        };
        self.inner.wake.notify_one();
        Ok(outcome)
    }

    /// The schedule state of a pipeline.
    pub fn view(&self, name: &str) -> SlotView {
        let slots = self.slots();
        slots
            .get(name)
            .map(|s| SlotView {
                running: s.running,
                next_run: match (s.next, s.trigger_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            })
            .unwrap_or_default()
    }

    /// Look at the pipelines again now (one was applied or resumed).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs in progress or waiting for a slot.
    pub fn in_flight(&self) -> usize {
        *self.inner.in_flight.borrow()
    }

    /// Wait until the loop has looked at the pipelines at clock time `at`
    /// or later (tests move a manual clock, then wait for this).
    pub async fn settled(&self, at: DateTime<Utc>) {
        let mut rx = self.inner.ticked.subscribe();
        let _ = rx.wait_for(|t| t.is_some_and(|t| t >= at)).await;
    }

    /// Wait until no run is in progress.
    pub async fn idle(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Stop: no new runs; runs in progress stop after their current page
    /// is committed. Returns once they have.
    pub async fn shutdown(&self) {
        self.inner.stop.stop();
        self.inner.wake.notify_one();
        self.idle().await;
    }

    /// The scheduling loop; returns after `shutdown`.
    pub async fn run(self) {
        loop {
            if self.inner.stop.is_stopped() {
                return;
            }
            let now = self.inner.clock.now();
            let wake_at = match self.tick(now) {
                Ok(earliest) => earliest,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler: cannot read the pipelines; retrying");
                    None
                }
            };
            self.inner.ticked.send_replace(Some(now));
            let rescan =
                now + chrono::Duration::from_std(self.inner.config.rescan).unwrap_or_default();
            let at = wake_at.map_or(rescan, |w| w.min(rescan));
            tokio::select! {
                () = self.inner.clock.sleep_until(at) => {}
                () = self.inner.wake.notified() => {}
            }
        }
    }

    /// Start what is due at `now`; return when the next thing is due.
    fn tick(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, SyncError> {
        if let Some(lease) = self.inner.engine.host_lease() {
            let host = lease.host.clone();
            return self.tick_shared(now, &host);
        }
        let store = self.inner.engine.store();
        // Runs left `running` by a process that died end `interrupted`.
        self.inner.engine.reap_interrupted()?;
        let rows = store.pipelines()?;
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut start = Vec::new();
        // History is read before taking the lock (never hold it over I/O),
        // once per pipeline the scheduler has not seen yet.
        let unseen: Vec<String> = {
            let slots = self.slots();
            rows.iter()
                .map(|r| &r.pipeline.name)
                .filter(|name| !slots.get(*name).is_some_and(|s| s.seeded))
                .cloned()
                .collect()
        };
        let mut seeded = HashMap::new();
        for name in unseen {
            let last = store.runs(&RunFilter {
                pipeline: Some(name.clone()),
                status: None,
                limit: 1,
            })?;
            let started = last
                .first()
                .and_then(|r| DateTime::parse_from_rfc3339(&r.started_at).ok())
                .map(|t| t.with_timezone(&Utc));
            seeded.insert(name, started);
        }
        {
            let mut slots = self.slots();
            slots.retain(|name, _| rows.iter().any(|r| &r.pipeline.name == name));
            for row in &rows {
                let name = &row.pipeline.name;
                let slot = slots.entry(name.clone()).or_default();
                if let Some(started) = seeded.remove(name) {
                    slot.last_start = slot.last_start.or(started);
                    slot.seeded = true;
                }
                if row.paused {
                    slot.next = None;
                    slot.trigger_at = None;
                    continue;
                }
                let schedule = match row.pipeline.schedule() {
                    Ok(schedule) => Some(schedule),
                    Err(e) => {
                        tracing::warn!(pipeline = %name, error = %e, "schedule ignored");
                        None
                    }
                };
                let seen_at = *slot.seen_at.get_or_insert(now);
                let next_after = |last| {
                    let from = count_from(schedule.as_ref(), last, Some(seen_at));
                    schedule.as_ref().and_then(|s| s.next_run(name, from, now))
                };
                slot.next = next_after(slot.last_start);
                let scheduled = slot.next.is_some_and(|t| t <= now);
                let asked = slot.trigger_at.is_some_and(|t| t <= now);
                if scheduled || asked {
                    if slot.running {
                        // Never twice at once: a tick during a run is
                        // skipped, an asked-for run follows it.
                        slot.again |= asked;
                        slot.trigger_at = None;
                        slot.last_start = Some(now);
                    } else {
                        slot.running = true;
                        slot.trigger_at = None;
                        slot.last_start = Some(now);
                        start.push(name.clone());
                    }
                    slot.next = next_after(slot.last_start);
                }
                for t in [slot.next, slot.trigger_at].into_iter().flatten() {
                    earliest = Some(earliest.map_or(t, |e: DateTime<Utc>| e.min(t)));
                }
            }
        }
        for name in start {
            self.spawn_run(name, false);
        }
        Ok(earliest)
    }

    /// `tick` on a shared database: claim what is due at `now` in the
    /// database, as host `host`, while this host has free slots; return
    /// when the next scheduled fire is due (requests and other hosts'
    /// leases are seen at the next rescan or wake).
    fn tick_shared(
        &self,
        now: DateTime<Utc>,
        host: &str,
    ) -> Result<Option<DateTime<Utc>>, SyncError> {
        let engine = &self.inner.engine;
        let db = engine.registry().db();
        db.host_seen(host)?;
        // Runs whose host stopped renewing their lease end `interrupted`.
        let ended = engine.reap_interrupted()?;
        if !ended.is_empty() {
            tracing::warn!(runs = ?ended, "runs whose host stopped renewing their lease ended interrupted; they resume on the next claim");
        }
        let rows = engine.store().pipelines()?;
        let leases: HashMap<String, nexo_db::cluster::LeaseRow> = db
            .leases()?
            .into_iter()
            .map(|l| (l.pipeline.clone(), l))
            .collect();
        let lease_ms = engine.host_lease().map_or(30_000, |l| {
            i64::try_from(l.lease.as_millis()).unwrap_or(i64::MAX)
        });
        // Each connection's request budget is shared by the live hosts.
        let alive = db
            .hosts()?
            .iter()
            .filter(|h| h.stopped_at.is_none() && h.seen_ago_ms <= lease_ms)
            .count();
        engine
            .connections()
            .request_budgets()
            .set_hosts(u32::try_from(alive).unwrap_or(u32::MAX));
        let mut free = self.inner.permits.available_permits();
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut start = Vec::new();
        for row in &rows {
            let name = &row.pipeline.name;
            if row.paused {
                let mut slots = self.slots();
                let slot = slots.entry(name.clone()).or_default();
                slot.next = None;
                continue;
            }
            let lease = leases.get(name);
            let seen = lease.and_then(|l| l.last_started.clone());
            let schedule = row.pipeline.schedule().ok();
            let timed = schedule
                .as_ref()
                .is_some_and(|s| !matches!(s.timing, nexo_sync::schedule::Timing::Manual));
            let last = match &seen {
                Some(text) => DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
                // Never fired through a lease: the run history says when
                // it last started (a database copied from one host). Not
                // looked up, every look, for a pipeline without a schedule.
                None if timed => self.last_start_in_history(name)?,
                None => None,
            };
            let seen_at = *self
                .slots()
                .entry(name.clone())
                .or_default()
                .seen_at
                .get_or_insert(now);
            let from = count_from(schedule.as_ref(), last, Some(seen_at));
            let next = schedule.as_ref().and_then(|s| s.next_run(name, from, now));
            let running = self.slots().get(name).is_some_and(|s| s.running);
            {
                let mut slots = self.slots();
                let slot = slots.entry(name.clone()).or_default();
                slot.next = next;
                slot.last_start = last;
                slot.seeded = true;
            }
            // Woken for the next fire, and for a run asked for through this
            // host once its coalescing window has passed (other hosts see
            // it at their next look).
            let asked_at = lease
                .and_then(|l| l.requested_in_ms)
                .map(|ms| now + chrono::Duration::milliseconds(ms));
            for t in [next.filter(|t| *t > now), asked_at].into_iter().flatten() {
                earliest = Some(earliest.map_or(t, |e: DateTime<Utc>| e.min(t)));
            }
            if running || lease.is_some_and(|l| l.held) || free == 0 {
                continue;
            }
            let cut = lease
                .and_then(|l| l.run.as_ref())
                .is_some_and(|(_, status)| status == RunStatus::Interrupted.as_str());
            let claim = if next.is_some_and(|t| t <= now) {
                nexo_db::cluster::Claim::Schedule {
                    seen,
                    now: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                }
            } else if cut {
                nexo_db::cluster::Claim::Resume
            } else if lease.is_some_and(|l| l.requested_due) {
                nexo_db::cluster::Claim::Asked
            } else {
                continue;
            };
            match db.claim_pipeline(name, host, lease_ms, &claim)? {
                Some(granted) => {
                    if let Some(run) = granted.interrupted {
                        tracing::warn!(pipeline = %name, run, "took over a run whose host stopped renewing its lease");
                    }
                    tracing::info!(pipeline = %name, ?claim, "claimed");
                    free -= 1;
                    let mut slots = self.slots();
                    let slot = slots.entry(name.clone()).or_default();
                    slot.running = true;
                    start.push(name.clone());
                }
                None => tracing::debug!(pipeline = %name, "claimed by another host first"),
            }
        }
        {
            let mut slots = self.slots();
            slots.retain(|name, _| rows.iter().any(|r| &r.pipeline.name == name));
        }
        // What this host holds now: the leases it held as the tick read
        // them, and the claims it just won.
        let held = leases
            .values()
            .filter(|l| l.held && l.host.as_deref() == Some(host))
            .count();
        Metrics::global().host_leases_held(held + start.len());
        for name in start {
            self.spawn_run(name, true);
        }
        Ok(earliest)
    }

    /// When `name`'s newest run started, from the history.
    fn last_start_in_history(&self, name: &str) -> Result<Option<DateTime<Utc>>, SyncError> {
        let last = self.inner.engine.store().runs(&RunFilter {
            pipeline: Some(name.to_string()),
            status: None,
            limit: 1,
        })?;
        Ok(last
            .first()
            .and_then(|r| DateTime::parse_from_rfc3339(&r.started_at).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    fn spawn_run(&self, name: String, claimed: bool) {
        self.inner.in_flight.send_modify(|n| *n += 1);
        let this = self.clone();
        tokio::spawn(async move {
            this.run_one(&name, claimed).await;
            this.inner.runs_ended.send_modify(|n| *n += 1);
            let again = {
                let mut slots = this.slots();
                match slots.get_mut(&name) {
                    Some(slot) => {
                        slot.running = false;
                        std::mem::take(&mut slot.again)
                    }
                    None => false,
                }
            };
            // The triggers that came during the run have waited for it
            // already: the run that follows starts at once, with no
            // further coalescing window (a change made just after the
            // run read would otherwise wait for it, then 250 ms more).
            if again && !this.inner.stop.is_stopped() {
                let _ = this.trigger_after(&name, Duration::ZERO);
            }
            this.inner
                .in_flight
                .send_modify(|n| *n = n.saturating_sub(1));
            this.inner.wake.notify_one();
        });
    }

    async fn run_one(&self, name: &str, claimed: bool) {
        // Backpressure: wait for a slot rather than fail.
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return;
        };
        if self.inner.stop.is_stopped() {
            return;
        }
        let opts = RunOptions {
            stop: Some(self.inner.stop.clone()),
            claimed,
            ..RunOptions::default()
        };
        tracing::info!(pipeline = name, "run starting");
        let result = self.inner.engine.run(name, opts).await;
        match &result {
            Ok(_) => self.trigger_followers(name),
            Err(e @ SyncError::Cancelled { .. }) => {
                tracing::info!(pipeline = name, "run stopped: {e}");
                return;
            }
            Err(SyncError::Busy(_)) | Err(SyncError::Paused(_)) => {
                tracing::info!(pipeline = name, "run skipped: {}", result_error(&result));
                return;
            }
            Err(e) => tracing::warn!(pipeline = name, error = %e, "run failed"),
        }
        if let Err(e) = self.pause_if_failing(name) {
            tracing::error!(pipeline = name, error = %e, "cannot check the failure count");
        }
    }

    /// Changes each time a run ends (or is skipped), after its failure
    /// count was checked: the alert evaluator looks then.
    pub fn runs_ended(&self) -> watch::Receiver<u64> {
        self.inner.runs_ended.subscribe()
    }

    /// Trigger the pipelines that run after `name` (`schedule.after`).
    fn trigger_followers(&self, name: &str) {
        let rows = match self.inner.engine.store().pipelines() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(pipeline = name, error = %e, "cannot list the pipelines that run after it");
                return;
            }
        };
        for row in rows {
            if !row.pipeline.schedule.after.iter().any(|a| a == name) {
                continue;
            }
            let follower = row.pipeline.name;
            match self.trigger(&follower) {
                Ok(_) => tracing::info!(pipeline = %follower, after = name, "run triggered"),
                Err(e) => {
                    tracing::info!(pipeline = %follower, after = name, "not triggered: {e}")
                }
            }
        }
    }

    /// Pause a pipeline whose last `pause_after_failures` runs all failed.
    fn pause_if_failing(&self, name: &str) -> Result<(), SyncError> {
        let store = self.inner.engine.store();
        let Some(row) = store.pipeline(name)? else {
            return Ok(());
        };
        let limit = row.pipeline.schedule.pause_after_failures as usize;
        if limit == 0 || row.paused {
            return Ok(());
        }
        let recent = store.runs(&RunFilter {
            pipeline: Some(name.to_string()),
            status: None,
            limit,
        })?;
        let failing = recent.len() == limit
            && recent
                .iter()
                .all(|r| r.status == RunStatus::Failed.as_str());
        if failing {
            let last = recent
                .first()
                .and_then(|r| r.error.clone())
                .unwrap_or_default();
            let reason = format!(
                "paused by the host after {limit} failed runs in a row; last error: {last}"
            );
            store.set_paused(name, true, Some(&reason))?;
            Metrics::global().auto_paused(name);
            tracing::warn!(pipeline = name, "{reason}");
        }
        Ok(())
    }
}

fn result_error<T>(r: &Result<T, SyncError>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

//! Request budgets shared per connection, so that several runs against one
//! external API account stay under that system's rate limit together.
//!
//! A connection with `requests_per_minute` gets one token bucket for the
//! whole process, kept in [`RequestBudgets`] (owned by
//! `nexo_registry::connections::Connections`, so every plugin instance
//! opened through it shares the bucket). Every outbound request takes one
//! token. A request that finds the bucket empty waits for its turn
//! (backpressure); only when that turn would come after the call's deadline
//! is it refused, at once, with [`BudgetExhausted`] and a retry-after.
//!
//! Several hosts sharing one database share each budget too: every host
//! keeps an equal share of it ([`RequestBudgets::set_hosts`], the number of
//! live hosts, kept current by the scheduler), so together they stay under
//! the connection's rate.
//!
//! The bucket is a GCRA ("virtual scheduling") limiter: each request
//! reserves the next free slot under a lock and then sleeps until it, so
//! waiters go out in arrival order, one per interval, and a crowd of
//! waiters does not wake up together to race for one token. After a quiet
//! spell it lets [`BURST_SECONDS`] worth of requests out back to back.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Seconds' worth of requests a budget lets out back to back after a quiet
/// spell (at least one request, at most a minute's worth). Kept short: many
/// systems also enforce a per-second limit under their per-minute one.
pub const BURST_SECONDS: u32 = 2;

/// The budget has no room for a request before the call's deadline. A
/// retryable condition: the request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "connection `{connection}` has used its budget of {per_minute} requests per minute: the next request could go out in {} ms, after this call's time limit; retry then, or raise the connection's requests-per-minute if the system allows more",
    .retry_after.as_millis()
)]
pub struct BudgetExhausted {
    /// The connection whose budget is used up.
    pub connection: String,
    /// Its budget.
    pub per_minute: u32,
    /// How long until the budget has room again for this request.
    pub retry_after: Duration,
}

/// The bucket's arithmetic, apart from any clock (tests pass instants).
#[derive(Debug, Clone)]
struct Bucket {
    /// Time one request's token takes to come back.
    interval: Duration,
    /// How far ahead of the steady schedule a request may go: the burst.
    tolerance: Duration,
    /// When the next request would go out at the steady rate (GCRA's
    /// "theoretical arrival time"); `None` for a bucket never used (full).
    next: Option<Instant>,
}

impl Bucket {
    fn new(per_minute: NonZeroU32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.get();
        Bucket {
            interval,
            tolerance: interval.saturating_mul(burst.saturating_sub(1)),
            next: None,
        }
    }

    /// Reserve the earliest slot for a request made at `now`: the moment it
    /// may go out. When that moment is after `deadline`, nothing is reserved
    /// and the answer is how long until it.
    fn reserve(&mut self, now: Instant, deadline: Instant) -> Result<Instant, Duration> {
        let next = self.next.map_or(now, |n| n.max(now));
        let send_at = next
            .checked_sub(self.tolerance)
            .map_or(now, |early| early.max(now));
        if send_at > deadline {
            return Err(send_at.duration_since(now));
        }
        self.next = Some(next + self.interval);
        Ok(send_at)
    }
}

/// The shared budget of one connection. Cheap to share through an [`Arc`].
#[derive(Debug)]
pub struct Budget {
    connection: String,
    per_minute: NonZeroU32,
    burst: u32,
    bucket: Mutex<Bucket>,
}

/// Time as a budget sees it: tokio's clock, or a hand-moved one in tests.
trait Clock {
    fn now(&self) -> Instant;
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send;
}

#[derive(Debug)]
struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(at.into())
    }
}

impl Budget {
    /// A full bucket of `per_minute` requests for `connection`.
    pub fn new(connection: impl Into<String>, per_minute: NonZeroU32) -> Self {
        let burst = burst_for(per_minute);
        Budget {
            connection: connection.into(),
            per_minute,
            burst,
            bucket: Mutex::new(Bucket::new(per_minute, burst)),
        }
    }

    /// The same connection at another rate, keeping the reservations made
    /// so far: a changed rate does not hand out a fresh burst.
    fn with_rate(&self, per_minute: NonZeroU32) -> Self {
        let next = self.bucket().next;
        let budget = Budget::new(self.connection.clone(), per_minute);
        budget.bucket().next = next;
        budget
    }

    /// The connection this budget belongs to.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Requests per minute.
    pub fn per_minute(&self) -> NonZeroU32 {
        self.per_minute
    }

    /// Requests that may go out back to back after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Wait until one request may go out, and take its token. Returns how
    /// long it waited. Refuses at once, without taking a token, when the
    /// request's turn would come after `deadline`.
    ///
    /// The token is taken before the wait: a caller dropped while waiting
    /// leaves its slot unused, which errs on the side of fewer requests.
    pub async fn acquire(&self, deadline: Instant) -> Result<Duration, BudgetExhausted> {
        self.acquire_on(&TokioClock, deadline).await
    }

    async fn acquire_on(
        &self,
        clock: &impl Clock,
        deadline: Instant,
    ) -> Result<Duration, BudgetExhausted> {
        let now = clock.now();
        let reserved = self.bucket().reserve(now, deadline);
        let send_at = reserved.map_err(|retry_after| BudgetExhausted {
            connection: self.connection.clone(),
            per_minute: self.per_minute.get(),
            retry_after,
        })?;
        let waited = send_at.saturating_duration_since(now);
        if !waited.is_zero() {
            clock.sleep_until(send_at).await;
            tracing::debug!(
                connection = %self.connection,
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                per_minute = self.per_minute.get(),
                "outbound request waited for the connection's request budget"
            );
        }
        Ok(waited)
    }

    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        // The bucket is consistent after every statement: a panic elsewhere
        // while the lock was held cannot have left it half-updated.
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The burst of a budget of `per_minute`: [`BURST_SECONDS`] worth of it,
/// at least 1.
pub fn burst_for(per_minute: NonZeroU32) -> u32 {
    let n = per_minute.get();
    let burst = (u64::from(n) * u64::from(BURST_SECONDS)).div_ceil(60);
    u32::try_from(burst).unwrap_or(n).clamp(1, n)
}

/// The budgets of every connection in this process, by connection name.
/// Clones share the same budgets.
#[derive(Debug, Clone, Default)]
pub struct RequestBudgets {
    by_connection: Arc<Mutex<HashMap<String, Arc<Budget>>>>,
    /// Live hosts sharing each budget (0 or 1: this process alone).
    hosts: Arc<AtomicU32>,
}

impl RequestBudgets {
    /// No budgets yet.
    pub fn new() -> Self {
        RequestBudgets::default()
    }

    /// The budget of `connection` at `per_minute`: the same one for every
    /// caller while the rate stays the same. A changed rate replaces it
    /// (keeping the reservations already made); requests already waiting
    /// on the old one keep their turn.
    pub fn for_connection(&self, connection: &str, per_minute: NonZeroU32) -> Arc<Budget> {
        let hosts = self.hosts.load(Ordering::Relaxed).max(1);
        // This host's share, never below one request a minute.
        let per_minute = NonZeroU32::new(per_minute.get() / hosts).unwrap_or(NonZeroU32::MIN);
        let mut map = self.map();
        let replaced = match map.get(connection) {
            Some(b) if b.per_minute == per_minute => return b.clone(),
            Some(old) => old.with_rate(per_minute),
            None => Budget::new(connection, per_minute),
        };
        let budget = Arc::new(replaced);
        map.insert(connection.to_string(), budget.clone());
        budget
    }

    /// `n` live hosts share the database, and so each connection's budget:
    /// this host keeps `1/n` of it from the next request on (a budget in
    /// use changes rate keeping its reservations).
    pub fn set_hosts(&self, n: u32) {
        self.hosts.store(n.max(1), Ordering::Relaxed);
    }

    /// Drop the budget of `connection` (removed, or no longer limited).
    pub fn forget(&self, connection: &str) {
        self.map().remove(connection);
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Budget>>> {
        // Each statement leaves the map consistent (see `Budget::bucket`).
        self.by_connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use futures_util::FutureExt;
    use tokio::sync::watch;

    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    const FAR: Duration = Duration::from_secs(3600);
    const MS: Duration = Duration::from_millis(1);

    /// Requests let out at `t0 + offset` for each offset, in order, with the
    /// deadline far away; returns how far after `t0` each may go.
    fn schedule(bucket: &mut Bucket, t0: Instant, offsets: &[Duration]) -> Vec<Duration> {
        offsets
            .iter()
            .map(|o| {
                let now = t0 + *o;
                bucket.reserve(now, now + FAR).unwrap() - t0
            })
            .collect()
    }

    #[test]
    fn bursts_are_a_few_seconds_worth_and_never_more_than_the_rate() {
        assert_eq!(burst_for(rate(600)), 20);
        assert_eq!(burst_for(rate(60)), 2);
        assert_eq!(burst_for(rate(61)), 3, "rounded up");
        assert_eq!(burst_for(rate(1)), 1);
        assert_eq!(burst_for(rate(u32::MAX)), u32::MAX.div_ceil(30));
    }

    #[test]
    fn a_full_bucket_lets_the_burst_out_then_one_request_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(600), burst_for(rate(600)));
        let out = schedule(&mut b, t0, &[Duration::ZERO; 25]);
        assert!(out[..20].iter().all(|d| d.is_zero()), "{out:?}");
        let steady: Vec<u128> = out[20..].iter().map(Duration::as_millis).collect();
        assert_eq!(steady, vec![100, 200, 300, 400, 500]);
    }

    #[test]
    fn an_idle_bucket_refills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(60), 2);
        assert_eq!(
            schedule(&mut b, t0, &[Duration::ZERO; 3]),
            vec![Duration::ZERO, Duration::ZERO, Duration::from_secs(1)]
        );
        // An hour of quiet buys two requests again, not 3600.
        let later = Duration::from_secs(3600);
        assert_eq!(
            schedule(&mut b, t0, &[later, later, later]),
            vec![later, later, later + Duration::from_secs(1)]
        );
    }

    #[test]
    fn in_any_window_no_more_than_the_burst_plus_the_rate_go_out() {
        // Requests arriving irregularly, faster than the rate.
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(600), 20);
        let arrivals: Vec<Duration> = (0..200u64).map(|i| MS * ((i * 37) % 90) as u32).collect();
        let mut sorted = arrivals.clone();
        sorted.sort();
        let mut out = schedule(&mut b, t0, &sorted);
        out.sort();
        for (i, start) in out.iter().enumerate() {
            for window_ms in [1u32, 100, 1000, 5000] {
                let end = *start + MS * window_ms;
                let inside = out[i..].iter().take_while(|t| **t < end).count();
                let allowed = 20 + window_ms.div_ceil(100) as usize;
                assert!(
                    inside <= allowed,
                    "{inside} in {window_ms} ms from {start:?}"
                );
            }
        }
    }

    #[test]
    fn a_turn_after_the_deadline_is_refused_with_the_wait_and_takes_no_token() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(60), 1);
        assert_eq!(b.reserve(t0, t0), Ok(t0));
        // The next turn is in 1 s; a deadline half a second away refuses it.
        let deadline = t0 + Duration::from_millis(500);
        assert_eq!(b.reserve(t0, deadline), Err(Duration::from_secs(1)));
        assert_eq!(
            b.reserve(t0 + Duration::from_millis(200), deadline),
            Err(Duration::from_millis(800))
        );
        // Refusals reserved nothing: the next patient request gets that turn.
        assert_eq!(b.reserve(t0, t0 + FAR), Ok(t0 + Duration::from_secs(1)));
    }

    /// A clock that only moves when told to.
    #[derive(Debug, Clone)]
    struct ManualClock {
        tick: watch::Sender<Instant>,
    }

    impl ManualClock {
        fn new(start: Instant) -> Self {
            ManualClock {
                tick: watch::Sender::new(start),
            }
        }
        fn advance(&self, by: Duration) {
            self.tick.send_modify(|now| *now += by);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.tick.borrow()
        }
        fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send {
            let mut rx = self.tick.subscribe();
            async move {
                let _ = rx.wait_for(|now| *now >= at).await;
            }
        }
    }

    #[tokio::test]
    async fn waiters_from_two_runs_go_out_in_turn_as_the_clock_moves() {
        let t0 = Instant::now();
        let clock = ManualClock::new(t0);
        let budgets = RequestBudgets::new();
        // Two runs of the same connection get the same budget: 60/min, burst 2.
        let a = budgets.for_connection("crm", rate(60));
        let b = budgets.for_connection("crm", rate(60));
        assert!(Arc::ptr_eq(&a, &b));
        let deadline = t0 + FAR;

        let mut first = Box::pin(a.acquire_on(&clock, deadline));
        let mut second = Box::pin(b.acquire_on(&clock, deadline));
        assert_eq!((&mut first).now_or_never(), Some(Ok(Duration::ZERO)));
        assert_eq!((&mut second).now_or_never(), Some(Ok(Duration::ZERO)));

        // The bucket is empty: the next two wait 1 s and 2 s, in order.
        let mut third = Box::pin(a.acquire_on(&clock, deadline));
        let mut fourth = Box::pin(b.acquire_on(&clock, deadline));
        assert!((&mut third).now_or_never().is_none());
        assert!((&mut fourth).now_or_never().is_none());
        clock.advance(Duration::from_millis(999));
        assert!((&mut third).now_or_never().is_none());
        assert!((&mut fourth).now_or_never().is_none());
        clock.advance(MS);
        assert_eq!(
            (&mut third).now_or_never(),
            Some(Ok(Duration::from_secs(1)))
        );
        assert!((&mut fourth).now_or_never().is_none(), "one per interval");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            (&mut fourth).now_or_never(),
            Some(Ok(Duration::from_secs(2)))
        );
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_fails_at_once_naming_the_connection() {
        let t0 = Instant::now();
        let clock = ManualClock::new(t0);
        let budget = Budget::new("crm-prod", rate(6));
        assert_eq!(budget.burst(), 1);
        let deadline = t0 + Duration::from_secs(5);
        assert_eq!(
            budget.acquire_on(&clock, deadline).now_or_never(),
            Some(Ok(Duration::ZERO))
        );
        // The next token is 10 s away, the deadline 5 s: refused without waiting.
        let err = budget
            .acquire_on(&clock, deadline)
            .now_or_never()
            .expect("refused without waiting")
            .unwrap_err();
        assert_eq!(
            err,
            BudgetExhausted {
                connection: "crm-prod".into(),
                per_minute: 6,
                retry_after: Duration::from_secs(10),
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("`crm-prod`"), "{msg}");
        assert!(msg.contains("6 requests per minute"), "{msg}");
        assert!(msg.contains("10000 ms"), "{msg}");

        // Once the clock has moved, the same call fits.
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            budget
                .acquire_on(&clock, clock.now() + Duration::from_secs(5))
                .now_or_never(),
            Some(Ok(Duration::ZERO))
        );
    }

    #[test]
    fn a_changed_rate_replaces_the_budget_without_a_fresh_burst() {
        let t0 = Instant::now();
        let budgets = RequestBudgets::new();
        let old = budgets.for_connection("crm", rate(60));
        for _ in 0..2 {
            old.bucket().reserve(t0, t0 + FAR).unwrap();
        }
        let new = budgets.for_connection("crm", rate(120));
        assert!(!Arc::ptr_eq(&old, &new));
        assert_eq!(new.per_minute().get(), 120);
        assert!(Arc::ptr_eq(&new, &budgets.for_connection("crm", rate(120))));
        // The old bucket was drained up to t0 + 2 s; the new one (burst 4,
        // interval 0.5 s) starts from there instead of full.
        let next = new.bucket().reserve(t0, t0 + FAR).unwrap();
        assert_eq!(next, t0 + Duration::from_millis(500));

        // Other connections have budgets of their own; forgetting drops one.
        let other = budgets.for_connection("erp", rate(120));
        assert!(!Arc::ptr_eq(&other, &new));
        budgets.forget("crm");
        assert!(!Arc::ptr_eq(
            &new,
            &budgets.for_connection("crm", rate(120))
        ));
    }

    #[test]
    fn hosts_sharing_a_database_each_keep_an_equal_share_of_a_budget() {
        let budgets = RequestBudgets::new();
        assert_eq!(
            budgets.for_connection("crm", rate(60)).per_minute().get(),
            60
        );
        budgets.set_hosts(3);
        assert_eq!(
            budgets.for_connection("crm", rate(60)).per_minute().get(),
            20
        );
        // Never below one a minute.
        assert_eq!(
            budgets.for_connection("tiny", rate(2)).per_minute().get(),
            1
        );
        budgets.set_hosts(1);
        assert_eq!(
            budgets.for_connection("crm", rate(60)).per_minute().get(),
            60
        );
    }
}

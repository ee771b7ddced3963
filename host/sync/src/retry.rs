//! Riding out an outage: a transient failure (5xx, timeout, rate limit)
//! of a read or a write is retried with exponential backoff and jitter for
//! the pipeline's `[retry].window`, each wait logged in the run's log and
//! stoppable like a page boundary (`nexo run stop`, a pause, a shutdown).
//! When the window runs out the run fails naming the outage; its committed
//! pages stay committed and the next run resumes after them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::SyncError;
use super::pipeline::Retry;
use super::store::{LogLevel, PageCommit, RunId, RunStore};
use nexo_runtime::{GuestError, PluginError};

/// How often a waiting run asks the store whether someone wants it
/// stopped (the same pace as between pages).
const STOP_POLL: Duration = Duration::from_millis(500);

/// Asks runs to stop after the page in hand is committed. Cheap to clone;
/// every clone sees the same request.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    own: Arc<AtomicBool>,
    /// The signal this one was made from: stopping it stops this one too.
    parent: Option<Arc<AtomicBool>>,
}

impl StopSignal {
    /// Ask every run holding this signal to stop.
    pub fn stop(&self) {
        self.own.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for (of this signal or the one it was made
    /// from).
    pub fn is_stopped(&self) -> bool {
        self.own.load(Ordering::SeqCst)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::SeqCst))
    }

    /// A signal of one run: stopped with this one (a shutdown), or alone
    /// (its lease was lost).
    pub fn child(&self) -> StopSignal {
        StopSignal {
            own: Arc::new(AtomicBool::new(false)),
            parent: Some(self.own.clone()),
        }
    }
}

/// What ended the retries of a failure that kept coming back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutageLimit {
    /// The `[retry].window` passed since the first failure.
    Window(String),
    /// `[retry].max_attempts` attempts were made.
    Attempts(u32),
}

impl std::fmt::Display for OutageLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutageLimit::Window(w) => write!(
                f,
                "the retry window of {w} ran out (raise [retry].window in the pipeline file to ride out longer outages)"
            ),
            OutageLimit::Attempts(n) => write!(
                f,
                "[retry].max_attempts = {n} was reached (raise it, or leave it out to retry for the whole [retry].window)"
            ),
        }
    }
}

/// The next step after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    /// Not a transient failure: no retry.
    Fail,
    /// Wait this long, then try again.
    Wait(Duration),
    /// Transient, but the retries are used up.
    GiveUp(OutageLimit),
}

/// One call's (or record's) run of failures.
#[derive(Debug, Clone)]
pub(super) struct Outage {
    first: Instant,
    /// Attempts made so far (the first included).
    pub attempts: u32,
}

impl Outage {
    /// Start counting at the first failure.
    pub fn begin() -> Self {
        Outage {
            first: Instant::now(),
            attempts: 1,
        }
    }

    /// Time since the first failure.
    pub fn elapsed(&self) -> Duration {
        self.first.elapsed()
    }

    /// After a failed attempt with `error`: what next (jittered by
    /// randomness).
    pub fn next(&self, error: &GuestError, retry: &Retry) -> Next {
        let jitter = getrandom::u32().map_or(0.0, |r| f64::from(r) / f64::from(u32::MAX));
        decide(error, self.attempts, self.elapsed(), retry, jitter)
    }
}

/// The pure rule: after attempt `attempt` failed with `error`, `elapsed`
/// after the first failure, wait (exponential backoff capped by the
/// longest wait, the upper half of it picked by `jitter` in 0..=1; at
/// least what a rate limit asks, even beyond that cap; never past the
/// window's end) or stop.
pub(super) fn decide(
    error: &GuestError,
    attempt: u32,
    elapsed: Duration,
    retry: &Retry,
    jitter: f64,
) -> Next {
    let asked = match error {
        GuestError::RateLimited { retry_after_ms } => Duration::from_millis(*retry_after_ms),
        GuestError::Transient(_) => Duration::ZERO,
        _ => return Next::Fail,
    };
    if let Some(max) = retry.max_attempts
        && attempt >= max
    {
        return Next::GiveUp(OutageLimit::Attempts(max));
    }
    let window = retry.window();
    let Some(left) = window.checked_sub(elapsed).filter(|l| !l.is_zero()) else {
        return Next::GiveUp(OutageLimit::Window(retry.window.clone()));
    };
    let backoff = retry.backoff(attempt);
    // "Equal jitter": half the backoff for sure, the other half at random,
    // so retries of many records or runs do not arrive in step.
    let jittered = backoff / 2 + backoff.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
    // A system that says when to come back is taken at its word: asking
    // earlier only earns another refusal.
    Next::Wait(jittered.max(asked).min(left))
}

/// Waits between attempts on behalf of one run: logged, and cut short by
/// a stop. Cheap to clone into the read-ahead task.
#[derive(Clone)]
pub(super) struct Waiter {
    /// The run's store (a dry run's records the waits and reads no stop
    /// request).
    pub store: Arc<dyn RunStore>,
    pub run: RunId,
    pub stop: Option<StopSignal>,
    pub pipeline: String,
    pub retry: Retry,
}

impl Waiter {
    /// After `outage.attempts` failed with `error` on `step` of
    /// `connection`: Ok once the wait is over (try again); Err with the
    /// error itself when it is not worth a retry, with the outage named
    /// when the retries are used up, or a stop asked for while waiting.
    pub async fn after_failure(
        &self,
        outage: &mut Outage,
        error: PluginError,
        step: &'static str,
        connection: &str,
    ) -> Result<(), SyncError> {
        let next = match error.guest_error() {
            Some(guest) => outage.next(guest, &self.retry),
            None => Next::Fail,
        };
        match next {
            Next::Fail => Err(SyncError::Plugin {
                pipeline: self.pipeline.clone(),
                step,
                source: Box::new(error),
            }),
            Next::GiveUp(limit) => Err(SyncError::Outage {
                pipeline: self.pipeline.clone(),
                step,
                connection: connection.to_string(),
                attempts: outage.attempts,
                seconds: outage.elapsed().as_secs(),
                limit,
                source: Box::new(error),
            }),
            Next::Wait(wait) => {
                self.wait(wait, step, connection, outage.attempts, &error.to_string())
                    .await?;
                outage.attempts += 1;
                Ok(())
            }
        }
    }

    /// Wait `wait` after attempt `attempt` failed with `error`, the wait in
    /// the run's log; Err(Stopped/Cancelled) as soon as a stop is seen.
    pub async fn wait(
        &self,
        wait: Duration,
        step: &str,
        connection: &str,
        attempt: u32,
        error: &str,
    ) -> Result<(), SyncError> {
        tracing::warn!(pipeline = %self.pipeline, step, connection, attempt, error, wait_ms = wait.as_millis() as u64, "transient failure; retrying");
        {
            let line = format!(
                "{step} on connection `{connection}` failed (attempt {attempt}): {error}; retrying in {:.1} s (retry window {})",
                wait.as_secs_f64(),
                self.retry.window
            );
            let commit = PageCommit {
                log: vec![(LogLevel::Warn, line)],
                ..PageCommit::default()
            };
            self.store.commit_page(&self.pipeline, self.run, &commit)?;
        }
        let until = Instant::now() + wait;
        loop {
            self.check_stop()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(left.min(STOP_POLL)).await;
        }
    }

    fn check_stop(&self) -> Result<(), SyncError> {
        if self.stop.as_ref().is_some_and(StopSignal::is_stopped) {
            return Err(SyncError::Stopped {
                pipeline: self.pipeline.clone(),
                pages: 0,
            });
        }
        if let Some(why) = self.store.cancel_reason(self.run)? {
            return Err(SyncError::Cancelled {
                pipeline: self.pipeline.clone(),
                pages: 0,
                why,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn retry(window: &str, max_attempts: Option<u32>) -> Retry {
        Retry {
            window: window.into(),
            max_attempts,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            max_delay: None,
        }
    }

    fn transient() -> GuestError {
        GuestError::Transient("503".into())
    }

    #[test]
    fn transient_failures_are_retried_until_the_window_ends_not_after_a_few_attempts() {
        let r = retry("10m", None);
        let s = Duration::from_secs;
        // Attempt 40, five minutes in: still waiting, capped by max_backoff.
        assert_eq!(
            decide(&transient(), 40, s(300), &r, 1.0),
            Next::Wait(Duration::from_millis(1_000))
        );
        assert_eq!(
            decide(&transient(), 40, s(600), &r, 1.0),
            Next::GiveUp(OutageLimit::Window("10m".into()))
        );
        // The last wait ends at the window's end, for one last attempt.
        assert_eq!(
            decide(&transient(), 3, Duration::from_millis(599_900), &r, 1.0),
            Next::Wait(Duration::from_millis(100))
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half() {
        let r = retry("10m", None);
        let ms = |attempt, jitter| match decide(&transient(), attempt, Duration::ZERO, &r, jitter) {
            Next::Wait(w) => w.as_millis(),
            other => panic!("{other:?}"),
        };
        assert_eq!((ms(1, 0.0), ms(1, 1.0)), (50, 100));
        assert_eq!((ms(2, 0.0), ms(2, 1.0)), (100, 200));
        assert_eq!((ms(9, 0.0), ms(9, 1.0)), (500, 1_000));
    }

    #[test]
    fn a_rate_limit_is_waited_for_as_asked_up_to_the_windows_end() {
        let r = retry("10m", None);
        let limited = |ms| GuestError::RateLimited { retry_after_ms: ms };
        assert_eq!(
            decide(&limited(700), 1, Duration::ZERO, &r, 0.0),
            Next::Wait(Duration::from_millis(700))
        );
        assert_eq!(
            decide(&limited(90_000), 1, Duration::ZERO, &r, 0.0),
            Next::Wait(Duration::from_millis(90_000))
        );
        assert_eq!(
            decide(&limited(u64::MAX), 1, Duration::from_secs(599), &r, 0.0),
            Next::Wait(Duration::from_secs(1))
        );
    }

    #[test]
    fn permanent_errors_are_not_retried_and_max_attempts_still_caps() {
        let r = retry("10m", Some(3));
        assert_eq!(
            decide(
                &GuestError::Rejected("bad".into()),
                1,
                Duration::ZERO,
                &r,
                0.5
            ),
            Next::Fail
        );
        assert!(matches!(
            decide(&transient(), 2, Duration::ZERO, &r, 0.5),
            Next::Wait(_)
        ));
        assert_eq!(
            decide(&transient(), 3, Duration::ZERO, &r, 0.5),
            Next::GiveUp(OutageLimit::Attempts(3))
        );
    }

    #[test]
    fn the_outage_names_the_window_and_the_setting() {
        let text = OutageLimit::Window("2m".into()).to_string();
        assert!(
            text.contains("2m") && text.contains("[retry].window"),
            "{text}"
        );
    }
}

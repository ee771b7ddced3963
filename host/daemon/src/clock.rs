//! Time for the scheduler, behind a trait so tests move it by hand: a
//! schedule is checked to fire at the right moment without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A future that resolves at (or after) a point in time.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The scheduler's notion of time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Resolve once `now() >= at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    tick: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
            tick: watch::Sender::new(start),
        }
    }

    /// Move forward by `by` and wake whoever sleeps past it.
    pub fn advance(&self, by: chrono::Duration) {
        let now = {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            *now += by;
            *now
        };
        self.tick.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, then each change.
            let _ = rx.wait_for(|now| *now >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_manual_sleep_ends_only_when_the_clock_passes_it() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        let mut sleep = clock.sleep_until(start + chrono::Duration::seconds(30));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(chrono::Duration::seconds(29));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), sleep)
            .await
            .unwrap();
    }
}

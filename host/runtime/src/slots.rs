//! Instance slots: the pooling allocator's capacity, shared fairly between
//! plugins. Every call takes a slot of the host's pool and one of its
//! plugin's share before its store is made, and gives both back when the
//! store is gone. A plugin whose calls sit in the pool (sleeping in a slow
//! request, spinning until their deadline) can hold at most its share, so
//! the other plugins always find slots; and a call that finds none waits
//! for one within its own time limit instead of failing on an exhausted
//! pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pool's slots and each plugin's share of them.
#[derive(Debug)]
pub(crate) struct Slots {
    total: u32,
    share: u32,
    pool: Arc<Semaphore>,
    shares: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A slot held for one call.
#[derive(Debug)]
pub(crate) struct Slot {
    _share: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

/// No slot came free before the call's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// The plugin's own calls held its whole share.
    ShareBusy {
        /// Slots one plugin may hold.
        share: u32,
    },
    /// Every slot of the host was held by other calls.
    PoolBusy {
        /// Slots of the host.
        total: u32,
    },
}

impl std::fmt::Display for NoSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoSlot::ShareBusy { share } => write!(
                f,
                "all {share} instances this plugin may run at once were busy until the call's deadline"
            ),
            NoSlot::PoolBusy { total } => write!(
                f,
                "all {total} plugin instances of the host were busy until the call's deadline (raise the pool size)"
            ),
        }
    }
}

impl Slots {
    /// `total` slots; one plugin may hold `share` of them (at least one, at
    /// most `total`).
    pub(crate) fn new(total: u32, share: u32) -> Self {
        let total = total.max(1);
        Slots {
            total,
            share: share.clamp(1, total),
            pool: Arc::new(Semaphore::new(total as usize)),
            shares: Mutex::new(HashMap::new()),
        }
    }

    /// Slots one plugin may hold at once.
    pub(crate) fn share(&self) -> u32 {
        self.share
    }

    fn share_of(&self, plugin: &str) -> Arc<Semaphore> {
        // A poisoned lock only means another call panicked while holding
        // it; the map itself is always whole.
        let mut shares = self
            .shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shares
            .entry(plugin.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.share as usize)))
            .clone()
    }

    /// Wait, until `deadline` at the latest, for a slot of `plugin`'s share
    /// and then for one of the pool. The share comes first, so a plugin
    /// over its share queues behind its own calls, not in the pool.
    pub(crate) async fn acquire(&self, plugin: &str, deadline: Instant) -> Result<Slot, NoSlot> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let share = tokio::time::timeout_at(deadline, self.share_of(plugin).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(NoSlot::ShareBusy { share: self.share })?;
        let pool = tokio::time::timeout_at(deadline, self.pool.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(NoSlot::PoolBusy { total: self.total })?;
        Ok(Slot {
            _share: share,
            _pool: pool,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_plugin_over_its_share_waits_while_others_get_slots() {
        let slots = Slots::new(4, 2);
        let a1 = slots.acquire("a", soon(1000)).await.unwrap();
        let _a2 = slots.acquire("a", soon(1000)).await.unwrap();
        // `a` holds its share: a third call of `a` waits, then gives up.
        assert_eq!(
            slots.acquire("a", soon(50)).await.unwrap_err(),
            NoSlot::ShareBusy { share: 2 }
        );
        // `b` is not affected.
        let _b1 = slots.acquire("b", soon(50)).await.unwrap();
        let _b2 = slots.acquire("b", soon(50)).await.unwrap();
        // The pool is full now; `c` waits for a slot, which `a` gives back.
        let waiting = tokio::spawn(async move {
            let slots = slots;
            slots.acquire("c", soon(2000)).await.map(drop)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a1);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_full_pool_is_named_as_such() {
        let slots = Slots::new(1, 1);
        let _held = slots.acquire("a", soon(1000)).await.unwrap();
        assert_eq!(
            slots.acquire("b", soon(30)).await.unwrap_err(),
            NoSlot::PoolBusy { total: 1 }
        );
    }

    #[test]
    fn the_share_stays_within_the_pool() {
        assert_eq!(Slots::new(8, 0).share(), 1);
        assert_eq!(Slots::new(8, 20).share(), 8);
    }
}

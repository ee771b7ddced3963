//! A pipeline's `[commit]` table: how many of a run's pages are committed
//! together. At the page sizes SaaS APIs serve (100 records), a
//! transaction per page costs more than the page's own work; grouping
//! pages keeps the guarantee (the cursor committed is always the last
//! page's whose outcome is in the same transaction) and bounds what a
//! crash re-reads: the group committing, the group gathering beside it
//! and the page in hand, whose writes the idempotency keys absorb when
//! they are sent again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Records a group gathers before it is committed, by default.
pub const DEFAULT_GROUP_RECORDS: u64 = 1000;
/// How long a group's first page waits for its commit at most, by
/// default, in milliseconds.
pub const DEFAULT_GROUP_WAIT_MS: u64 = 250;
/// Most records one group may gather (what a crash re-reads, and what is
/// held in memory until the commit).
const MAX_GROUP_RECORDS: u64 = 100_000;
/// Longest a group may wait (the run's progress is seen only at commits).
const MAX_GROUP_WAIT_MS: u64 = 60_000;

/// A pipeline's `[commit]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitGrouping {
    /// Pages are committed together until the group holds this many
    /// records (1: every page in its own transaction).
    #[serde(default = "default_records")]
    pub records: u64,
    /// …or until its first page has waited this long, in milliseconds.
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u64,
}

fn default_records() -> u64 {
    DEFAULT_GROUP_RECORDS
}
fn default_wait_ms() -> u64 {
    DEFAULT_GROUP_WAIT_MS
}

impl Default for CommitGrouping {
    fn default() -> Self {
        CommitGrouping {
            records: DEFAULT_GROUP_RECORDS,
            wait_ms: DEFAULT_GROUP_WAIT_MS,
        }
    }
}

impl CommitGrouping {
    /// Every page in its own transaction.
    pub const PER_PAGE: CommitGrouping = CommitGrouping {
        records: 1,
        wait_ms: 0,
    };

    /// The field at fault, and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=MAX_GROUP_RECORDS).contains(&self.records) {
            return Err((
                "commit.records",
                format!(
                    "must be between 1 (every page in its own transaction) and {MAX_GROUP_RECORDS}"
                ),
            ));
        }
        if self.wait_ms > MAX_GROUP_WAIT_MS {
            return Err((
                "commit.wait_ms",
                format!("must be at most {MAX_GROUP_WAIT_MS} (a minute)"),
            ));
        }
        Ok(())
    }

    /// How long a group's first page may wait.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }

    /// Whether a group of `records` records whose first page was held
    /// `age` ago is due for its commit.
    pub fn due(&self, records: u64, age: Duration) -> bool {
        records >= self.records || age >= self.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_due_at_its_records_or_its_wait() {
        let g = CommitGrouping {
            records: 1000,
            wait_ms: 250,
        };
        assert!(!g.due(999, Duration::from_millis(249)));
        assert!(g.due(1000, Duration::ZERO));
        assert!(g.due(1, Duration::from_millis(250)));
        // One record per group: every page is due at once.
        assert!(CommitGrouping::PER_PAGE.due(1, Duration::ZERO));
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        let zero = CommitGrouping {
            records: 0,
            ..Default::default()
        };
        assert_eq!(zero.check().unwrap_err().0, "commit.records");
        let long = CommitGrouping {
            wait_ms: 3_600_000,
            ..Default::default()
        };
        assert_eq!(long.check().unwrap_err().0, "commit.wait_ms");
        assert!(CommitGrouping::default().check().is_ok());
        assert!(CommitGrouping::PER_PAGE.check().is_ok());
    }
}

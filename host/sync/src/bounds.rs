//! How far one run may go: pages, records, wall time, and the size of the
//! state a connector hands back. A source that always answers "more
//! follows" with a new state — a bug, or a hostile connector — would
//! otherwise run for ever and grow the database page by page. The defaults
//! are far beyond any real sync and reached by a runaway in minutes; a
//! pipeline file changes them in its `[limits]` table.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default most pages one run reads.
pub const DEFAULT_MAX_PAGES: u64 = 100_000;
/// Default most records one run reads.
pub const DEFAULT_MAX_RECORDS: u64 = 10_000_000;
/// Default longest run, in seconds (6 h).
pub const DEFAULT_MAX_SECONDS: u64 = 6 * 60 * 60;
/// Default largest connector state (cursor), in bytes (1 MiB).
pub const DEFAULT_MAX_STATE_BYTES: u64 = 1 << 20;

/// A pipeline's `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLimits {
    /// Most pages one run reads from the source.
    #[serde(default = "default_max_pages")]
    pub max_pages: u64,
    /// Most records one run reads from the source.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Longest a run may take, in seconds.
    #[serde(default = "default_max_seconds")]
    pub max_seconds: u64,
    /// Largest state (cursor) the source connector — or the destination's,
    /// when its changes are tracked — may hand back, in bytes.
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: u64,
}

fn default_max_pages() -> u64 {
    DEFAULT_MAX_PAGES
}
fn default_max_records() -> u64 {
    DEFAULT_MAX_RECORDS
}
fn default_max_seconds() -> u64 {
    DEFAULT_MAX_SECONDS
}
fn default_max_state_bytes() -> u64 {
    DEFAULT_MAX_STATE_BYTES
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_pages: DEFAULT_MAX_PAGES,
            max_records: DEFAULT_MAX_RECORDS,
            max_seconds: DEFAULT_MAX_SECONDS,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
        }
    }
}

/// The limit a run reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `max_pages` pages were read and the source still had more.
    Pages(u64),
    /// `max_records` records were read and the source still had more.
    Records(u64),
    /// The run took `max_seconds` (from its start, the destination's change
    /// tracking included) and the source still had more.
    Time(u64),
    /// The source handed back a state larger than `max_state_bytes`.
    StateSize {
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Pages(n) => write!(
                f,
                "page limit of {n} reached with more pages to read (raise [limits].max_pages in the pipeline file if the source really holds that much)"
            ),
            LimitHit::Records(n) => write!(
                f,
                "record limit of {n} reached with more pages to read (raise [limits].max_records in the pipeline file if the source really holds that much)"
            ),
            LimitHit::Time(s) => write!(
                f,
                "time limit of {s} s reached with more pages to read (raise [limits].max_seconds in the pipeline file)"
            ),
            LimitHit::StateSize { bytes, max } => write!(
                f,
                "the connector's state is {bytes} bytes, over the limit of {max} bytes; a cursor should be small (fix the connector, or raise [limits].max_state_bytes in the pipeline file)"
            ),
        }
    }
}

impl RunLimits {
    /// Every limit must be positive: the field at fault, and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [
            ("limits.max_pages", self.max_pages),
            ("limits.max_records", self.max_records),
            ("limits.max_seconds", self.max_seconds),
            ("limits.max_state_bytes", self.max_state_bytes),
        ] {
            if value == 0 {
                return Err((
                    field,
                    "must be at least 1 (leave it out for the default)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The limit reached after `pages` pages and `records` records in
    /// `elapsed`, when the source has more to read.
    pub fn reached(&self, pages: u64, records: u64, elapsed: Duration) -> Option<LimitHit> {
        if pages >= self.max_pages {
            Some(LimitHit::Pages(self.max_pages))
        } else if records >= self.max_records {
            Some(LimitHit::Records(self.max_records))
        } else if elapsed.as_secs() >= self.max_seconds {
            Some(LimitHit::Time(self.max_seconds))
        } else {
            None
        }
    }

    /// A state the source handed back, checked against `max_state_bytes`.
    pub fn check_state(&self, state: Option<&str>) -> Result<(), LimitHit> {
        let bytes = state.map_or(0, str::len) as u64;
        if bytes > self.max_state_bytes {
            return Err(LimitHit::StateSize {
                bytes,
                max: self.max_state_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_reached_only_at_its_value() {
        let l = RunLimits {
            max_pages: 3,
            max_records: 10,
            max_seconds: 5,
            max_state_bytes: 4,
        };
        let s = Duration::from_secs;
        assert_eq!(l.reached(2, 9, s(4)), None);
        assert_eq!(l.reached(3, 0, s(0)), Some(LimitHit::Pages(3)));
        assert_eq!(l.reached(1, 10, s(0)), Some(LimitHit::Records(10)));
        assert_eq!(l.reached(1, 1, s(5)), Some(LimitHit::Time(5)));
        assert_eq!(l.check_state(Some("abcd")), Ok(()));
        assert_eq!(l.check_state(None), Ok(()));
        assert_eq!(
            l.check_state(Some("abcde")),
            Err(LimitHit::StateSize { bytes: 5, max: 4 })
        );
    }

    #[test]
    fn messages_name_the_setting_to_raise() {
        assert!(
            LimitHit::Pages(7)
                .to_string()
                .contains("page limit of 7 reached")
        );
        assert!(
            LimitHit::Pages(7)
                .to_string()
                .contains("[limits].max_pages")
        );
        let state = LimitHit::StateSize { bytes: 9, max: 4 }.to_string();
        assert!(state.contains("9 bytes") && state.contains("[limits].max_state_bytes"));
    }

    #[test]
    fn zero_is_refused_by_field() {
        let l = RunLimits {
            max_records: 0,
            ..RunLimits::default()
        };
        assert_eq!(l.check().unwrap_err().0, "limits.max_records");
        assert!(RunLimits::default().check().is_ok());
    }
}

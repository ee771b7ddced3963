//! A pipeline's `[retry]` table: how long and how often a transient
//! failure (5xx, timeout, rate limit) of a read or a write is retried, with
//! the checks that keep it sane. The retrying itself is `sync::retry`.

use serde::{Deserialize, Serialize};

/// Retry settings for transient failures (5xx, timeouts, rate limits) of
/// reads and writes: retried with exponential backoff and jitter for a
/// window of time, so a destination that is down for a few minutes does
/// not fail the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// How long a failing call or record is retried, from its first
    /// failure, before the run fails: `"90s"`, `"10m"`, `"1h"`.
    #[serde(default = "default_window")]
    pub window: String,
    /// At most this many attempts per call or record, the first included,
    /// even within the window (none: as many as the window allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// First backoff; doubles per attempt.
    #[serde(default = "default_backoff")]
    pub initial_backoff_ms: u64,
    /// Longest backoff between two attempts, in milliseconds (a rate limit
    /// asking for longer is waited for as asked, within the window).
    /// `max_delay` says the same as a duration.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// Longest wait between two attempts as a duration (`"1m"`, `"30s"`),
    /// in place of `max_backoff_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
}

/// Default retry window: a destination down for less is ridden out.
pub const DEFAULT_RETRY_WINDOW: &str = "10m";
/// Longest retry window accepted (a day): beyond, fix the destination.
const MAX_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

fn default_window() -> String {
    DEFAULT_RETRY_WINDOW.to_string()
}
fn default_backoff() -> u64 {
    200
}
fn default_max_backoff() -> u64 {
    60_000
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            window: default_window(),
            max_attempts: None,
            initial_backoff_ms: default_backoff(),
            max_backoff_ms: default_max_backoff(),
            max_delay: None,
        }
    }
}

impl Retry {
    /// The wait before attempt `attempt + 1` (attempt counts from 1),
    /// before jitter.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        std::time::Duration::from_millis(self.initial_backoff_ms.saturating_mul(factor))
            .min(self.max_delay())
    }

    /// The longest wait between two attempts: `max_delay`, else
    /// `max_backoff_ms` (checked when the pipeline was accepted).
    pub fn max_delay(&self) -> std::time::Duration {
        self.max_delay
            .as_deref()
            .and_then(|d| crate::schedule::parse_duration(d).ok())
            .unwrap_or(std::time::Duration::from_millis(self.max_backoff_ms))
    }

    /// The retry window (checked when the pipeline was accepted; a window
    /// that no longer parses counts as the default).
    pub fn window(&self) -> std::time::Duration {
        crate::schedule::parse_duration(&self.window)
            .or_else(|_| crate::schedule::parse_duration(DEFAULT_RETRY_WINDOW))
            .unwrap_or(std::time::Duration::from_secs(600))
    }

    /// Each setting in range: the field at fault, and why.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        let window =
            crate::schedule::parse_duration(&self.window).map_err(|e| ("retry.window", e))?;
        if window.is_zero() || window > MAX_RETRY_WINDOW {
            return Err((
                "retry.window",
                format!(
                    "`{}` is out of range; give between 1s and 24h (default \"{DEFAULT_RETRY_WINDOW}\")",
                    self.window
                ),
            ));
        }
        if let Some(n) = self.max_attempts
            && !(1..=1000).contains(&n)
        {
            return Err((
                "retry.max_attempts",
                "must be between 1 and 1000 (leave it out to retry for the whole window)".into(),
            ));
        }
        if let Some(text) = &self.max_delay {
            if self.max_backoff_ms != default_max_backoff() {
                return Err((
                    "retry.max_delay",
                    "says what retry.max_backoff_ms says; give only one of them".into(),
                ));
            }
            let delay =
                crate::schedule::parse_duration(text).map_err(|e| ("retry.max_delay", e))?;
            if delay.is_zero() || delay > MAX_RETRY_WINDOW {
                return Err((
                    "retry.max_delay",
                    format!("`{text}` is out of range; give between 1s and 24h (default \"1m\")"),
                ));
            }
        }
        if u128::from(self.max_backoff_ms) > MAX_RETRY_WINDOW.as_millis() {
            return Err((
                "retry.max_backoff_ms",
                "must be at most a day (86400000)".into(),
            ));
        }
        let cap = self.max_delay().as_millis();
        if self.initial_backoff_ms == 0 || u128::from(self.initial_backoff_ms) > cap {
            return Err((
                "retry.initial_backoff_ms",
                format!("must be at least 1 and at most the longest wait ({cap} ms)"),
            ));
        }
        Ok(())
    }
}

//! Plugin logging: into `tracing` with plugin, version and call as fields,
//! rate-limited per second and capped in volume per call.
//!
//! Lines beyond the rate are dropped and counted (a chatty plugin must not
//! drown the host's log); bytes beyond the volume cap stop the call with a
//! named limit error, because a plugin that floods is misbehaving. Each
//! line is escaped ([`SafeText::line`]): it cannot forge host log lines or
//! drive the terminal of whoever reads the log.

use std::time::Instant;

use crate::limits::{Limit, LimitHit};
use crate::safe_text::SafeText;

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// Per-call log state of one plugin.
#[derive(Debug)]
pub struct PluginLog {
    plugin: String,
    call: String,
    bytes: u64,
    cap: u64,
    per_second: u32,
    window_start: Instant,
    in_window: u32,
    dropped: u64,
}

impl PluginLog {
    /// A log for one call of `plugin`.
    pub fn new(plugin: String, call: String, cap: u64, per_second: u32) -> Self {
        PluginLog {
            plugin,
            call,
            bytes: 0,
            cap,
            per_second,
            window_start: Instant::now(),
            in_window: 0,
            dropped: 0,
        }
    }

    /// Lines dropped by the rate limit so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Log one line from the plugin, or fail with the volume limit.
    pub fn log(&mut self, level: Level, message: &str) -> Result<(), LimitHit> {
        self.bytes = self.bytes.saturating_add(message.len() as u64);
        if self.bytes > self.cap {
            return Err(LimitHit(Limit::LogVolume(self.cap)));
        }
        self.emit_rate_limited(level, message);
        Ok(())
    }

    fn emit_rate_limited(&mut self, level: Level, message: &str) {
        let now = Instant::now();
        if now.duration_since(self.window_start).as_secs() >= 1 {
            self.window_start = now;
            self.in_window = 0;
        }
        if self.in_window >= self.per_second {
            self.dropped += 1;
            return;
        }
        self.in_window += 1;
        emit(level, message);
    }

    /// Forward captured stdout/stderr line by line; its raw bytes count
    /// against the cap.
    pub fn forward_output(&mut self, level: Level, output: &[u8]) -> Result<(), LimitHit> {
        self.bytes = self.bytes.saturating_add(output.len() as u64);
        if self.bytes > self.cap {
            return Err(LimitHit(Limit::LogVolume(self.cap)));
        }
        let text = String::from_utf8_lossy(output);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.emit_rate_limited(level, line);
        }
        Ok(())
    }

    /// Report dropped lines, once, at the end of the call.
    pub fn finish(&self) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin = %self.plugin,
                call = %self.call,
                dropped = self.dropped,
                "plugin log lines dropped by the rate limit"
            );
        }
    }
}

/// One plugin log line. Plugin, version and call are fields of the
/// enclosing `plugin_call` span. Secret values are replaced, then the
/// message is escaped: one plugin call is one host log line (a newline
/// cannot start a forged host line) and carries no terminal control
/// sequence.
fn emit(level: Level, message: &str) {
    let scrubbed = super::redact::scrub(message);
    let message = SafeText::line(&scrubbed);
    match level {
        Level::Trace => tracing::trace!(target: "nexo::plugin", "{message}"),
        Level::Debug => tracing::debug!(target: "nexo::plugin", "{message}"),
        Level::Info => tracing::info!(target: "nexo::plugin", "{message}"),
        Level::Warn => tracing::warn!(target: "nexo::plugin", "{message}"),
        Level::Error => tracing::error!(target: "nexo::plugin", "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_drops_and_counts() {
        let mut log = PluginLog::new("p@1".into(), "read(x)".into(), 1 << 20, 3);
        for _ in 0..10 {
            log.log(Level::Info, "hello").unwrap();
        }
        assert_eq!(log.dropped(), 7);
    }

    #[test]
    fn volume_cap_is_a_limit_hit() {
        let mut log = PluginLog::new("p@1".into(), "read(x)".into(), 10, 1000);
        log.log(Level::Info, "12345").unwrap();
        let hit = log.log(Level::Info, "123456").unwrap_err();
        assert!(matches!(hit.0, Limit::LogVolume(10)));
    }
}

//! Per-plugin resource limits and the store-side limiter that enforces them.
//!
//! Every limit has a safe default and a name that shows up in errors, so an
//! admin reading "exceeded its 64 MiB memory limit" knows which knob to turn.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to every call of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// CPU budget per call, in wasmtime fuel units (about one per
    /// instruction); applies when the runtime counts fuel
    /// (`RuntimeConfig::consume_fuel`). The time limit applies always.
    pub fuel_per_call: u64,
    /// Wall-clock time a call may take, including host calls it makes.
    pub call_timeout_ms: u64,
    /// Time one outbound HTTP request may take.
    pub http_timeout_ms: u64,
    /// Largest HTTP response body the host reads for the plugin, in bytes.
    pub http_response_bytes: u64,
    /// Log bytes (log lines plus stdout/stderr) a call may produce.
    pub log_bytes_per_call: u64,
    /// Log lines per second passed on to the host log; the rest are dropped
    /// and counted.
    pub log_lines_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            fuel_per_call: 20_000_000_000,
            call_timeout_ms: 60_000,
            http_timeout_ms: 30_000,
            http_response_bytes: 16 << 20,
            log_bytes_per_call: 1 << 20,
            log_lines_per_second: 200,
        }
    }
}

impl Limits {
    /// The wall-clock limit of a call.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
    /// The per-request HTTP timeout.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }
}

/// Which limit a plugin hit; its `Display` is the phrase used in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The memory cap, in bytes.
    Memory(u64),
    /// The CPU (fuel) budget per call.
    Cpu(u64),
    /// The wall-clock time limit per call.
    Time(Duration),
    /// The log volume per call, in bytes.
    LogVolume(u64),
    /// The engine's wasm stack (deep recursion).
    Stack,
}

impl Limit {
    /// A short name for metrics: `memory`, `cpu`, `time`, `log`, `stack`.
    pub fn kind(&self) -> &'static str {
        match self {
            Limit::Memory(_) => "memory",
            Limit::Cpu(_) => "cpu",
            Limit::Time(_) => "time",
            Limit::LogVolume(_) => "log",
            Limit::Stack => "stack",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Memory(b) => write!(f, "{} memory limit", human_bytes(*b)),
            Limit::Cpu(fuel) => write!(f, "CPU budget of {fuel} fuel units"),
            Limit::Time(d) => write!(f, "time limit of {} ms", d.as_millis()),
            Limit::LogVolume(b) => write!(f, "log volume limit of {}", human_bytes(*b)),
            Limit::Stack => write!(f, "stack limit (recursion too deep)"),
        }
    }
}

/// `64 MiB`, `512 KiB`, `100 B`.
pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{} GiB", b >> 30)
    } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// A limit hit raised from inside the store (limiter, host import, epoch
/// callback). It travels through wasmtime as the trap's error and is
/// recognised again when the call returns.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("plugin exceeded its {0}")]
pub struct LimitHit(pub Limit);

/// The store's resource limiter: caps memory and tables, and traps (with a
/// [`LimitHit`]) instead of letting an allocation fail inside the guest,
/// where Rust would abort with an anonymous `unreachable`.
#[derive(Debug)]
pub struct StoreLimiter {
    memory_bytes: u64,
    max_table_elements: usize,
}

impl StoreLimiter {
    /// A limiter for these limits.
    pub fn new(limits: &Limits) -> Self {
        StoreLimiter {
            memory_bytes: limits.memory_bytes,
            max_table_elements: 100_000,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitHit(Limit::Memory(
                self.memory_bytes,
            ))));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_phrases() {
        assert_eq!(Limit::Memory(64 << 20).to_string(), "64 MiB memory limit");
        assert_eq!(
            Limit::LogVolume(256 << 10).to_string(),
            "log volume limit of 256 KiB"
        );
        assert_eq!(
            Limit::Time(Duration::from_secs(2)).to_string(),
            "time limit of 2000 ms"
        );
        assert_eq!(human_bytes(1000), "1000 B");
    }

    #[test]
    fn unknown_limit_fields_are_refused() {
        let err = serde_json::from_str::<Limits>(r#"{"memory_mb": 10}"#).unwrap_err();
        assert!(err.to_string().contains("memory_mb"));
        let l: Limits = serde_json::from_str(r#"{"memory_bytes": 1048576}"#).unwrap();
        assert_eq!(l.memory_bytes, 1 << 20);
        assert_eq!(l.call_timeout_ms, Limits::default().call_timeout_ms);
    }

    #[test]
    fn limiter_traps_past_the_cap() {
        use wasmtime::ResourceLimiter;
        let mut l = StoreLimiter::new(&Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        });
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        let err = l.memory_growing(0, (1 << 20) + 1, None).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitHit>(),
            Some(LimitHit(Limit::Memory(_)))
        ));
    }
}

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
    /// Linear memory a plugin instance may grow to, in bytes, unless its
    /// signed manifest asks for another amount (see [`Limits::memory_for`]).
    pub memory_bytes: u64,
    /// The admin's cap: the most memory a plugin's manifest may ask for
    /// (an interpreter-based plugin needs more than the default). A plugin
    /// asking for more is refused at install.
    pub memory_cap_bytes: u64,
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
            memory_cap_bytes: memory_cap(),
            fuel_per_call: 20_000_000_000,
            call_timeout_ms: 60_000,
            http_timeout_ms: 30_000,
            http_response_bytes: 16 << 20,
            log_bytes_per_call: 1 << 20,
            log_lines_per_second: 200,
        }
    }
}

/// The cap when the process sets none ([`set_memory_cap`]).
pub const DEFAULT_MEMORY_CAP: u64 = 256 << 20;

static MEMORY_CAP: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Set this process's memory cap ([`Limits::memory_cap_bytes`] of every
/// [`Limits::default`]), once, before any plugin runs: the `nexo` binary
/// sets it from `NEXO_PLUGIN_MEMORY_CAP`. Later calls change nothing and
/// return `false`.
pub fn set_memory_cap(bytes: u64) -> bool {
    MEMORY_CAP.set(bytes).is_ok()
}

fn memory_cap() -> u64 {
    MEMORY_CAP.get().copied().unwrap_or(DEFAULT_MEMORY_CAP)
}

/// A plugin's manifest asks for more memory than the admin's cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "it asks for {} of memory, more than this host's cap of {}; an admin who trusts it raises the cap with NEXO_PLUGIN_MEMORY_CAP (e.g. NEXO_PLUGIN_MEMORY_CAP={})",
    human_bytes(*asked),
    human_bytes(*cap),
    human_bytes(*asked).replace(' ', "")
)]
pub struct MemoryOverCap {
    /// What the manifest asks for, in bytes.
    pub asked: u64,
    /// The cap, in bytes.
    pub cap: u64,
}

impl Limits {
    /// The memory an instance of a plugin whose signed manifest asks for
    /// `asked` gets: its ask, within the admin's cap; without an ask, the
    /// default.
    pub fn memory_for(&self, asked: Option<u64>) -> Result<u64, MemoryOverCap> {
        match asked {
            None => Ok(self.memory_bytes),
            Some(asked) if asked <= self.memory_cap_bytes => Ok(asked),
            Some(asked) => Err(MemoryOverCap {
                asked,
                cap: self.memory_cap_bytes,
            }),
        }
    }

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

/// How much of the engine one plugin instance may hold, whatever its
/// shape: the runtime's caps on the things a component can multiply
/// (linear memories, tables, core instances). A component over one of them
/// is refused when it is loaded, and the store enforces them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceCaps {
    /// Linear memories, over all of the component's core instances.
    pub memories: u32,
    /// Tables, over all of the component's core instances.
    pub tables: u32,
    /// Core module instances.
    pub core_instances: u32,
}

impl Default for InstanceCaps {
    fn default() -> Self {
        // A Rust, C or Go component has one memory, two or three tables and
        // a handful of core instances; componentize-py links a dozen or so
        // shared libraries into one memory. These leave room for those and
        // stop the shapes that exist only to multiply resources.
        InstanceCaps {
            memories: 4,
            tables: 32,
            core_instances: 64,
        }
    }
}

/// Table elements one plugin instance may hold over all its tables.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The store's resource limiter: one budget per plugin instance. Memory is
/// counted over every linear memory of the instance (a component with many
/// core instances, each with its own memory, shares one cap), table
/// elements likewise, and the number of memories, tables and core instances
/// is capped. A refused memory traps with a [`LimitHit`] instead of letting
/// the allocation fail inside the guest, where Rust would abort with an
/// anonymous `unreachable`.
#[derive(Debug)]
pub struct StoreLimiter {
    memory_bytes: u64,
    memory_used: u64,
    table_elements: usize,
    caps: InstanceCaps,
}

impl StoreLimiter {
    /// A limiter for these limits and caps.
    pub fn new(limits: &Limits, caps: InstanceCaps) -> Self {
        StoreLimiter {
            memory_bytes: limits.memory_bytes,
            memory_used: 0,
            table_elements: 0,
            caps,
        }
    }

    /// Bytes of linear memory the instance holds now, over all its memories.
    pub fn memory_used(&self) -> u64 {
        self.memory_used
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called with `current == 0` when a memory is created, so a memory's
        // initial size counts as well as its growth.
        let grow = (desired as u64).saturating_sub(current as u64);
        let total = self.memory_used.saturating_add(grow);
        if total > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitHit(Limit::Memory(
                self.memory_bytes,
            ))));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The engine refused a growth this limiter allowed (a pool slot
        // smaller than the plugin's limit): the guest sees `memory.grow`
        // fail. The bytes were not added, but there is no amount here to
        // give back; counting them is the safe side of the error.
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.caps.core_instances as usize
    }

    fn tables(&self) -> usize {
        self.caps.tables as usize
    }

    fn memories(&self) -> usize {
        self.caps.memories as usize
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
        let mut l = StoreLimiter::new(
            &Limits {
                memory_bytes: 1 << 20,
                ..Limits::default()
            },
            InstanceCaps::default(),
        );
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        let err = l.memory_growing(0, (1 << 20) + 1, None).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitHit>(),
            Some(LimitHit(Limit::Memory(_)))
        ));
    }

    #[test]
    fn memory_is_counted_over_every_memory_of_the_instance() {
        use wasmtime::ResourceLimiter;
        let mut l = StoreLimiter::new(
            &Limits {
                memory_bytes: 4 << 20,
                ..Limits::default()
            },
            InstanceCaps::default(),
        );
        // Three memories created at 1 MiB each, one grown by 1 MiB: 4 MiB.
        for _ in 0..3 {
            assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        }
        assert!(l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(l.memory_used(), 4 << 20);
        // A fourth memory of any size is over the plugin's budget, although
        // it alone would fit.
        let err = l.memory_growing(0, 64 << 10, None).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitHit>(),
            Some(LimitHit(Limit::Memory(b))) if *b == 4 << 20
        ));
        assert_eq!(l.memory_used(), 4 << 20);
    }

    #[test]
    fn table_elements_are_counted_over_every_table() {
        use wasmtime::ResourceLimiter;
        let mut l = StoreLimiter::new(&Limits::default(), InstanceCaps::default());
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS / 2, None).unwrap());
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS / 2, None).unwrap());
        assert!(!l.table_growing(0, 1, None).unwrap());
    }

    #[test]
    fn the_store_counts_come_from_the_caps() {
        use wasmtime::ResourceLimiter;
        let caps = InstanceCaps {
            memories: 2,
            tables: 3,
            core_instances: 5,
        };
        let l = StoreLimiter::new(&Limits::default(), caps);
        assert_eq!((l.memories(), l.tables(), l.instances()), (2, 3, 5));
    }

    #[test]
    fn a_plugin_gets_the_memory_it_asks_for_within_the_cap_and_the_default_otherwise() {
        let limits = Limits {
            memory_bytes: 64 << 20,
            memory_cap_bytes: 256 << 20,
            ..Limits::default()
        };
        assert_eq!(limits.memory_for(None), Ok(64 << 20));
        assert_eq!(limits.memory_for(Some(16 << 20)), Ok(16 << 20));
        assert_eq!(limits.memory_for(Some(256 << 20)), Ok(256 << 20));
        let over = limits.memory_for(Some(512 << 20)).unwrap_err();
        assert_eq!(over.asked, 512 << 20);
        assert!(
            over.to_string().contains("NEXO_PLUGIN_MEMORY_CAP=512MiB"),
            "{over}"
        );
    }
}

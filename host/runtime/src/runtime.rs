//! The plugin runtime: one long-lived wasmtime `Engine` with the pooling
//! allocator, linkers built once per world, and the compile cache.
//! Components are loaded (compiled or mapped from the cache) once and
//! pre-instantiated; every call then gets a fresh `Store`.
//!
//! The pool is sized per plugin instance, not per memory: every instance
//! may hold at most [`InstanceCaps`] memories, tables and core instances, a
//! component over them is refused when it is loaded, and each plugin may
//! hold only its share of the pool's instance slots (the crate-private `slots`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{self as contract};
use crate::bindings::{Linkers, Pre};
use crate::cache::{CompileCache, sha256_hex};
use crate::error::{LoadError, RuntimeError};
use crate::inspect::{ComponentInfo, WorldKind};
use crate::limits::InstanceCaps;
use crate::slots::Slots;

/// Epoch tick: the granularity of time limits and of cooperative yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the runtime (not of one plugin: see [`crate::limits::Limits`]).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles in memory.
    pub cache_dir: Option<PathBuf>,
    /// Plugin instances alive at once (pool size).
    pub max_instances: u32,
    /// Instances one plugin may hold at once: its share of the pool, the
    /// rest staying free for the other plugins whatever this one does.
    /// `None`: a quarter of the pool.
    pub max_instances_per_plugin: Option<u32>,
    /// What one instance may hold: memories, tables, core instances.
    pub caps: InstanceCaps,
    /// The largest memory limit any plugin may be given.
    pub max_memory_bytes: u64,
    /// Wasm stack per call.
    pub max_wasm_stack: usize,
    /// Count fuel, so each call has a deterministic CPU budget
    /// ([`Limits::fuel_per_call`](crate::Limits)). Engine-wide, and it costs
    /// about a third of a plugin's throughput (see docs/BENCHMARKS.md); off,
    /// the wall-clock deadline alone stops runaway calls.
    pub consume_fuel: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_instances: 64,
            max_instances_per_plugin: None,
            caps: InstanceCaps::default(),
            max_memory_bytes: 1 << 30,
            max_wasm_stack: 1 << 20,
            consume_fuel: false,
        }
    }
}

/// The runtime. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    linkers: Linkers,
    cache: Option<CompileCache>,
    ticker_stop: Arc<AtomicBool>,
    fuel: bool,
    caps: InstanceCaps,
    max_memory_bytes: u64,
    slots: Slots,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Bytes of each pooled linear memory (and table) kept resident between
/// instances.
const KEEP_RESIDENT: usize = 32 << 20;

impl Runtime {
    /// Start a runtime: engine, pool, linkers, epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances.max(1);
        let caps = config.caps;
        // Every slot can hold a whole instance at its caps, so no instance,
        // however it is shaped, takes another instance's memories or
        // tables; only the number of instances is shared (see `Slots`).
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(caps.core_instances))
            .total_memories(n.saturating_mul(caps.memories))
            .total_tables(n.saturating_mul(caps.tables))
            .max_core_instances_per_component(caps.core_instances)
            .max_memories_per_component(caps.memories)
            .max_tables_per_component(caps.tables)
            .max_memories_per_module(caps.memories)
            .max_tables_per_module(caps.tables)
            .total_stacks(n)
            .max_memory_size(config.max_memory_bytes as usize)
            // Reset a reused slot with memset instead of giving its pages back
            // to the kernel: a sync calls the same plugins page after page, and
            // re-faulting every page of a fresh instance costs more than zeroing.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        // And reset only the pages an instance wrote (Linux 6.7+, else the
        // whole kept region): an interpreter's pre-initialised heap is
        // megabytes (CPython's ≈ 13 MiB), of which one instantiation
        // touches little; copying all of it back cost a Python plugin
        // ≈ 2 ms per instance, this ≈ 0.6 ms (docs/BENCHMARKS.md).
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(config.consume_fuel)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(err)?;

        let linkers = Linkers::new(&engine).map_err(err)?;

        let cache = match &config.cache_dir {
            Some(dir) => {
                Some(CompileCache::open(dir, &engine).map_err(|e| RuntimeError(e.to_string()))?)
            }
            None => None,
        };

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("nexo-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError(format!("cannot start the epoch ticker: {e}")))?;
        }

        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linkers,
                cache,
                ticker_stop,
                fuel: config.consume_fuel,
                caps,
                max_memory_bytes: config.max_memory_bytes,
                slots: Slots::new(n, config.max_instances_per_plugin.unwrap_or(n / 4)),
            }),
        })
    }

    /// Whether calls get a fuel (CPU) budget.
    pub fn fuel_enabled(&self) -> bool {
        self.inner.fuel
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// What one plugin instance may hold.
    pub fn caps(&self) -> InstanceCaps {
        self.inner.caps
    }

    /// Instances one plugin may run at once.
    pub fn instances_per_plugin(&self) -> u32 {
        self.inner.slots.share()
    }

    pub(crate) fn slots(&self) -> &Slots {
        &self.inner.slots
    }

    /// Compile `bytes` (or map them from the cache) without linking.
    pub fn compile(&self, bytes: &[u8], what: &str) -> Result<(Component, String), LoadError> {
        self.compile_digested(bytes, sha256_hex(bytes), what)
    }

    /// [`Runtime::compile`] for bytes whose SHA-256 the caller has just
    /// computed (a verified bundle), so it is not computed twice.
    fn compile_digested(
        &self,
        bytes: &[u8],
        sha: String,
        what: &str,
    ) -> Result<(Component, String), LoadError> {
        let component = match &self.inner.cache {
            Some(cache) => cache.load(&self.inner.engine, bytes, &sha, what)?,
            None => Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::Invalid {
                what: what.to_string(),
                reason: format!("{e:#}"),
            })?,
        };
        Ok((component, sha))
    }

    /// Load a plugin from bytes: compile (or map from cache), find its world,
    /// link and pre-instantiate it.
    pub fn load(&self, bytes: &[u8], what: &str) -> Result<LoadedPlugin, LoadError> {
        self.load_digested(bytes, sha256_hex(bytes), what)
    }

    /// Load the component of a bundle that was just verified: `sha256` is the
    /// digest `Bundle::parse` checked, so it is not computed again. Only for
    /// a bundle straight from [`nexo_bundle::Bundle::parse`]: bytes changed
    /// after parsing would be cached under the wrong digest.
    pub fn load_verified(
        &self,
        bundle: &nexo_bundle::Bundle,
        what: &str,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load_digested(
            &bundle.component,
            bundle.manifest.component.sha256.clone(),
            what,
        )
    }

    fn load_digested(
        &self,
        bytes: &[u8],
        sha: String,
        what: &str,
    ) -> Result<LoadedPlugin, LoadError> {
        let info = ComponentInfo::parse(bytes, what)?;
        self.check_shape(&info, what)?;
        self.check_contract(&info, what)?;
        let (component, sha256) = self.compile_digested(bytes, sha, what)?;
        self.check_resources(&component, what)?;
        let pre = Pre::new(&self.inner.linkers, &component, &info)
            .map_err(|e| link_error(what, &info, e))?;
        Ok(LoadedPlugin {
            inner: Arc::new(LoadedInner {
                runtime: self.clone(),
                sha256,
                info,
                pre,
            }),
        })
    }

    /// Load a plugin from a `.wasm` file.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        self.load(&bytes, &path.display().to_string())
    }
}

impl Runtime {
    /// Refuse a component built against a `nexo:connector` version no
    /// bindings module serves, naming its version, before compiling it. (One
    /// that names no version is left to the linker, which says what it
    /// imports.)
    fn check_contract(&self, info: &ComponentInfo, what: &str) -> Result<(), LoadError> {
        match info.wit_version() {
            Some(found) if !contract::serves(found) => Err(LoadError::UnsupportedContract {
                what: what.to_string(),
                found: found.to_string(),
                served: contract::served_text(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuse a component shaped to hold more than one plugin may (more
    /// core instances, memories or tables), before compiling it.
    fn check_shape(&self, info: &ComponentInfo, what: &str) -> Result<(), LoadError> {
        let caps = self.inner.caps;
        let shape = info.shape;
        for (found, max, resource) in [
            (shape.core_instances, caps.core_instances, "core instances"),
            (shape.memories, caps.memories, "linear memories"),
            (shape.tables, caps.tables, "tables"),
        ] {
            if found > max {
                return Err(too_large(what, resource, u64::from(found), u64::from(max)));
            }
        }
        Ok(())
    }

    /// Refuse a component whose instances could not fit one plugin's caps:
    /// more memories or tables than an instance may hold, or a memory that
    /// starts larger than any plugin may grow.
    fn check_resources(&self, component: &Component, what: &str) -> Result<(), LoadError> {
        let caps = self.inner.caps;
        // `None`: the component instantiates imported modules, which a
        // Nexo world never provides; linking refuses it.
        let Some(needs) = component.resources_required() else {
            return Ok(());
        };
        if needs.num_memories > caps.memories {
            return Err(too_large(
                what,
                "linear memories",
                u64::from(needs.num_memories),
                u64::from(caps.memories),
            ));
        }
        if needs.num_tables > caps.tables {
            return Err(too_large(
                what,
                "tables",
                u64::from(needs.num_tables),
                u64::from(caps.tables),
            ));
        }
        let initial = needs
            .max_initial_memory_size
            .unwrap_or(0)
            .saturating_mul(64 << 10);
        if initial > self.inner.max_memory_bytes {
            return Err(LoadError::TooLarge {
                what: what.to_string(),
                reason: format!(
                    "a linear memory starts at {}, more than the {} any plugin may have",
                    crate::limits::human_bytes(initial),
                    crate::limits::human_bytes(self.inner.max_memory_bytes)
                ),
            });
        }
        Ok(())
    }
}

fn too_large(what: &str, resource: &str, found: u64, max: u64) -> LoadError {
    LoadError::TooLarge {
        what: what.to_string(),
        reason: format!("it has {found} {resource}, and one plugin may have at most {max}"),
    }
}

fn link_error(what: &str, info: &ComponentInfo, e: wasmtime::Error) -> LoadError {
    let served = contract::served_text();
    let allowed = match info.world {
        WorldKind::Connector => {
            format!("nexo:connector/{{log,http,secrets,kv}} {served} and WASI 0.2")
        }
        WorldKind::Mapper => format!(
            "nexo:connector/log {served} and WASI 0.2 (mappers get no network and no storage)"
        ),
    };
    LoadError::NotAPlugin {
        what: what.to_string(),
        reason: format!(
            "its imports do not fit the {} world, which may import only {allowed}: {e:#}",
            info.world
        ),
    }
}

pub(crate) struct LoadedInner {
    pub(crate) runtime: Runtime,
    pub(crate) sha256: String,
    pub(crate) info: ComponentInfo,
    pub(crate) pre: Pre,
}

/// A compiled, linked plugin, ready to be instantiated per call. Cheap to
/// clone; a run holds its clone, so a newer version loaded meanwhile does
/// not affect it.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub(crate) inner: Arc<LoadedInner>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("sha256", &self.inner.sha256)
            .field("world", &self.inner.info.world)
            .finish()
    }
}

impl LoadedPlugin {
    /// What the component says about itself.
    pub fn info(&self) -> &ComponentInfo {
        &self.inner.info
    }
    /// SHA-256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }
    pub(crate) fn engine(&self) -> &Engine {
        self.inner.runtime.engine()
    }
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }
}

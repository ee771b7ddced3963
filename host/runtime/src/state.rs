//! The state of one `Store`: one part per capability, made fresh for every
//! plugin call.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::StoreLimiter;
use crate::sandbox::http::{HttpError, OutboundHttp};
use crate::sandbox::kv::{KvError, KvNamespace};
use crate::sandbox::log::PluginLog;

/// Something the sandbox refused or cut short during a call. The plugin
/// gets an error value; the host keeps this record for the caller, the run
/// log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxEvent {
    /// An outbound request was refused or failed at the policy level.
    HttpRefused(HttpError),
    /// A key-value operation was refused (quota, key).
    KvRefused(KvError),
    /// The key-value capability was used without a grant.
    KvNotGranted,
    /// Log lines dropped by the rate limit.
    LogLinesDropped(u64),
}

/// Data of one store.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: StoreLimiter,
    pub(crate) log: PluginLog,
    pub(crate) http: Option<OutboundHttp>,
    pub(crate) kv: Option<KvNamespace>,
    pub(crate) deadline: Instant,
    pub(crate) events: Vec<SandboxEvent>,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    /// A state granting WASI nothing: no files, sockets, env, args; stdout
    /// and stderr captured (bounded) for the plugin's log.
    pub(crate) fn new(
        limiter: StoreLimiter,
        log: PluginLog,
        http: Option<OutboundHttp>,
        kv: Option<KvNamespace>,
        deadline: Instant,
        output_cap: usize,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(output_cap);
        let stderr = MemoryOutputPipe::new(output_cap);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            log,
            http,
            kv,
            deadline,
            events: Vec::new(),
            stdout,
            stderr,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

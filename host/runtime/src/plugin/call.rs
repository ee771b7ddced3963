//! One call of a plugin: a fresh `Store` with the plugin's limits,
//! capabilities and log; traps and limit hits classified into a
//! [`PluginError`] naming the plugin, the call and the limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::{Core, MapOutcome, Outcome, Page, Record, Spec, StreamInfo, WriteResult};
use crate::bindings::Instance;
use crate::error::{CallRef, GuestError, PluginError};
use crate::limits::{Limit, LimitHit, StoreLimiter};
use crate::sandbox::log::{Level, PluginLog};
use crate::slots::Slot;
use crate::state::{PluginState, SandboxEvent};

/// Calls one kept instance serves before a fresh one takes its place (its
/// output pipes hold this many calls' output).
const WARM_CALLS: u32 = 64;

/// Kept instances per plugin: as many as a run calls at once (a page mapped
/// in two halves), so idle ones hold few of the pool's slots.
const WARM_IDLE: usize = 2;

/// How long an instance is kept unused before its slot goes back to the
/// pool: long enough for the next page of a run, short enough that a run
/// waiting out a rate limit holds no slot.
const WARM_FOR: Duration = Duration::from_secs(2);

/// An instance kept between calls, with its store and pool slot.
pub(crate) struct Warm {
    store: Store<PluginState>,
    slot: Slot,
    instance: Instance,
    calls: u32,
}

/// A plugin's kept instances (contract 1.1 lets the host call one instance
/// more than once within a run). Shared by the plugin's clones; the last
/// clone's drop releases them and their slots.
#[derive(Clone, Default)]
pub(crate) struct WarmPool(Arc<WarmInner>);

#[derive(Default)]
struct WarmInner {
    idle: Mutex<Vec<(Instant, Warm)>>,
    /// Told when an instance is kept: a call of this plugin waiting for a
    /// pool slot takes it instead (the slots its share allows may be the
    /// ones the kept instances hold).
    kept: tokio::sync::Notify,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.0.idle.lock().map(|v| v.len()).unwrap_or_default();
        f.debug_struct("WarmPool").field("idle", &idle).finish()
    }
}

impl WarmPool {
    fn take(&self) -> Option<Warm> {
        let mut idle = self.0.idle.lock().ok()?;
        idle.retain(|(since, _)| since.elapsed() < WARM_FOR);
        idle.pop().map(|(_, w)| w)
    }

    fn keep(&self, warm: Warm) {
        let Ok(mut idle) = self.0.idle.lock() else {
            return;
        };
        if idle.len() >= WARM_IDLE {
            return;
        }
        idle.push((Instant::now(), warm));
        drop(idle);
        self.0.kept.notify_one();
        // Released once unused for WARM_FOR, even if no call comes again.
        let pool = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            tokio::time::sleep(WARM_FOR).await;
            if let Some(pool) = pool.upgrade()
                && let Ok(mut idle) = pool.idle.lock()
            {
                idle.retain(|(since, _)| since.elapsed() < WARM_FOR);
            }
        });
    }

    /// Until an instance is kept.
    async fn kept(&self) {
        self.0.kept.notified().await;
    }
}

/// How a call gets its instance: one kept from an earlier call, or a slot
/// of the pool for a new one.
enum Start {
    Warm(Warm),
    Slot(Slot),
}

pub(crate) enum Op<'a> {
    Instantiate,
    Spec,
    Check(&'a str),
    Discover(&'a str),
    Read {
        config: &'a str,
        stream: &'a str,
        state: Option<&'a str>,
    },
    Write {
        config: &'a str,
        stream: &'a str,
        batch: &'a [Record],
    },
    Map {
        config: &'a str,
        batch: &'a [Record],
    },
}

pub(crate) enum Reply {
    Instantiated,
    Spec(Spec),
    Check(Result<(), GuestError>),
    Discover(Result<Vec<StreamInfo>, GuestError>),
    Read(Result<Page, GuestError>),
    Write(Result<Vec<WriteResult>, GuestError>),
    /// A 1.1 mapper's answer: one outcome per input.
    Map(Result<Vec<MapOutcome>, GuestError>),
    /// A 1.0 mapper's answer: one flat batch, tied to the inputs by id.
    MapBatch(Result<Vec<Record>, GuestError>),
}

impl Op<'_> {
    pub(super) fn label(&self) -> CallRef {
        CallRef(match self {
            Op::Instantiate => "instantiate".into(),
            Op::Spec => "spec".into(),
            Op::Check(_) => "check".into(),
            Op::Discover(_) => "discover".into(),
            Op::Read { stream, .. } => format!("read({stream})"),
            Op::Write { stream, batch, .. } => format!("write({stream}, {} records)", batch.len()),
            Op::Map { batch, .. } => format!("map({} records)", batch.len()),
        })
    }
}

pub(super) struct Raw {
    pub(super) result: Result<Reply, PluginError>,
    events: Vec<SandboxEvent>,
    elapsed: Duration,
    call: CallRef,
}

impl Raw {
    pub(super) fn then<T>(
        self,
        core: &Core,
        pick: impl FnOnce(Reply) -> Option<Result<T, GuestError>>,
    ) -> Outcome<T> {
        let result = match self.result {
            Err(e) => Err(e),
            Ok(reply) => match pick(reply) {
                Some(Ok(v)) => Ok(v),
                Some(Err(error)) => Err(PluginError::Guest {
                    plugin: core.sandbox.plugin.clone(),
                    call: self.call,
                    error,
                }),
                None => Err(core.mismatch(&self.call.0)),
            },
        };
        Outcome {
            result,
            events: self.events,
            elapsed: self.elapsed,
        }
    }
}

impl Core {
    pub(super) async fn warm_up(&self) -> Outcome<()> {
        self.invoke(Op::Instantiate).await.then(self, |r| match r {
            Reply::Instantiated => Some(Ok(())),
            _ => None,
        })
    }

    pub(super) fn mismatch(&self, call: &str) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.sandbox.plugin.clone(),
            call: CallRef(call.to_string()),
            reason: "host bug: reply of the wrong kind".into(),
        }
    }

    pub(super) async fn invoke(&self, op: Op<'_>) -> Raw {
        let call = op.label();
        let span = tracing::info_span!(
            "plugin_call",
            plugin = %self.sandbox.plugin.id,
            version = %self.sandbox.plugin.version,
            call = %call
        );
        let started = Instant::now();
        let limits = &self.sandbox.limits;
        let deadline = started + limits.call_timeout();
        let log = PluginLog::new(
            self.sandbox.plugin.to_string(),
            call.0.clone(),
            limits.log_bytes_per_call,
            limits.log_lines_per_second,
        );
        let reusable = self.plugin.inner.pre.reusable();
        // An instance kept from an earlier call of this plugin (1.1), its
        // slot and store with it; otherwise a new one. Warming up always
        // starts a new one (it proves the plugin starts under its limits),
        // which is then kept for the next call.
        let fresh = matches!(op, Op::Instantiate);
        let kept = if fresh { None } else { self.warm.take() };
        let start = match kept {
            Some(w) => Start::Warm(w),
            // A slot of the pool, within the plugin's share, before the
            // store exists: a plugin whose other calls hold its whole share
            // waits for one of them (or the instance one of them keeps),
            // never for (or instead of) another plugin's.
            None => match self.start(deadline, fresh).instrument(span.clone()).await {
                Ok(start) => start,
                Err(busy) => {
                    let _enter = span.enter();
                    let e = PluginError::Busy {
                        plugin: self.sandbox.plugin.clone(),
                        call: call.clone(),
                        reason: busy.to_string(),
                    };
                    tracing::warn!(error = %e, "plugin call found no instance slot");
                    return Raw {
                        result: Err(e),
                        events: Vec::new(),
                        elapsed: started.elapsed(),
                        call,
                    };
                }
            },
        };
        let (mut store, slot, instance, calls) = match start {
            Start::Warm(w) => {
                let mut store = w.store;
                let data = store.data_mut();
                data.log = log;
                data.deadline = deadline;
                data.events.clear();
                (store, w.slot, Some(w.instance), w.calls)
            }
            Start::Slot(slot) => {
                // One byte past the cap per call, so a plugin that tries
                // to write more than the cap is seen to have done so; a
                // kept instance's output pipes hold all its calls'.
                let per_call = limits.log_bytes_per_call.saturating_add(1);
                let calls = if reusable { WARM_CALLS } else { 1 };
                let state = PluginState::new(
                    StoreLimiter::new(limits, self.plugin.runtime().caps()),
                    log,
                    self.http.clone(),
                    self.kv.clone(),
                    deadline,
                    usize::try_from(per_call.saturating_mul(u64::from(calls)))
                        .unwrap_or(usize::MAX),
                );
                let mut store = Store::new(self.plugin.engine(), state);
                store.limiter(|s| &mut s.limiter);
                (store, slot, None, 0)
            }
        };
        // What the instance printed before this call is not this call's.
        let printed = (
            store.data().stdout.contents().len(),
            store.data().stderr.contents().len(),
        );
        // Fuel exists only when the runtime counts it (an engine-wide choice
        // that costs throughput); otherwise the epoch deadline bounds CPU.
        let fuel_ok = if self.plugin.runtime().fuel_enabled() {
            store.set_fuel(limits.fuel_per_call)
        } else {
            Ok(())
        };
        store.set_epoch_deadline(1);
        let time_limit = limits.call_timeout();
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(LimitHit(Limit::Time(time_limit))))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let (instance, result) = match fuel_ok {
            Err(e) => (None, Err(e)),
            Ok(()) => {
                // The epoch callback stops guest code at the deadline; this
                // timeout also covers time spent in host calls.
                let grace = time_limit + Duration::from_millis(500);
                match tokio::time::timeout(
                    grace,
                    self.call(&mut store, instance, op).instrument(span.clone()),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => (
                        None,
                        Err(wasmtime::Error::new(LimitHit(Limit::Time(time_limit)))),
                    ),
                }
            }
        };

        let data = store.data_mut();
        let stderr = data.stderr.contents().slice(printed.1..);
        let stdout = data.stdout.contents().slice(printed.0..);
        let _enter = span.enter();
        let mut result = result.map_err(|e| self.classify(e, &call, &stderr));
        // Output counts against the log cap too. A plugin that printed past
        // it failed because of the limit (its writes were refused), whatever
        // it returned, so the limit is what gets reported.
        for (level, bytes) in [(Level::Info, &stdout), (Level::Warn, &stderr)] {
            if let Err(LimitHit(limit)) = data.log.forward_output(level, bytes)
                && !matches!(result, Err(PluginError::LimitExceeded { .. }))
            {
                result = Err(PluginError::LimitExceeded {
                    plugin: self.sandbox.plugin.clone(),
                    limit,
                    call: call.clone(),
                });
            }
        }
        data.log.finish();
        let mut events = std::mem::take(&mut data.events);
        if data.log.dropped() > 0 {
            events.push(SandboxEvent::LogLinesDropped(data.log.dropped()));
        }
        if let Err(e) = &result {
            tracing::warn!(error = %e, "plugin call failed");
        }
        let metrics = crate::metrics::Metrics::global();
        let plugin = self.sandbox.plugin.to_string();
        let op = call.0.split('(').next().unwrap_or_default();
        metrics.plugin_call(&plugin, op, result.is_ok(), started.elapsed());
        if let Err(PluginError::LimitExceeded { limit, .. }) = &result {
            metrics.limit_hit(&plugin, limit.kind());
        }
        // Kept for the next call only after a call that went through: a
        // trap or a limit hit may leave the instance in any state.
        match instance {
            Some(instance) if reusable && result.is_ok() && calls + 1 < WARM_CALLS => {
                self.warm.keep(Warm {
                    store,
                    slot,
                    instance,
                    calls: calls + 1,
                });
            }
            _ => {
                drop(store);
                drop(slot);
            }
        }
        Raw {
            result,
            events,
            elapsed: started.elapsed(),
            call,
        }
    }

    /// A pool slot for a new instance, or, unless `fresh` (a new instance
    /// asked for), an instance one of this plugin's calls keeps meanwhile.
    async fn start(&self, deadline: Instant, fresh: bool) -> Result<Start, crate::slots::NoSlot> {
        let slots = self.plugin.runtime().slots();
        if fresh {
            return slots
                .acquire(self.plugin.sha256(), deadline)
                .await
                .map(Start::Slot);
        }
        loop {
            tokio::select! {
                slot = slots.acquire(self.plugin.sha256(), deadline) => {
                    return slot.map(Start::Slot);
                }
                () = self.warm.kept() => {
                    if let Some(w) = self.warm.take() {
                        return Ok(Start::Warm(w));
                    }
                }
            }
        }
    }

    /// The call itself, in `instance` or a new instance, through the
    /// bindings of the contract version the plugin was linked against; the
    /// instance comes back unless instantiating failed.
    async fn call(
        &self,
        store: &mut Store<PluginState>,
        instance: Option<Instance>,
        op: Op<'_>,
    ) -> (Option<Instance>, wasmtime::Result<Reply>) {
        let instance = match instance {
            Some(i) => i,
            None => match self.plugin.inner.pre.instantiate(store).await {
                Ok(i) => i,
                Err(e) => return (None, Err(e)),
            },
        };
        let reply = instance.call(store, op).await;
        (Some(instance), reply)
    }

    fn classify(&self, e: wasmtime::Error, call: &CallRef, stderr: &[u8]) -> PluginError {
        let plugin = self.sandbox.plugin.clone();
        let call = call.clone();
        let limits = &self.sandbox.limits;
        if let Some(LimitHit(limit)) = e.downcast_ref::<LimitHit>() {
            return PluginError::LimitExceeded {
                plugin,
                limit: *limit,
                call,
            };
        }
        let trap = e.downcast_ref::<Trap>();
        let limit = match trap {
            Some(Trap::OutOfFuel) => Some(Limit::Cpu(limits.fuel_per_call)),
            Some(Trap::StackOverflow) => Some(Limit::Stack),
            Some(Trap::Interrupt) => Some(Limit::Time(limits.call_timeout())),
            // Rust (and C) guests keep a shadow stack at the bottom of linear
            // memory; recursing past it wraps below address 0 and faults out
            // of bounds. A fault that deep in recursion is the stack limit,
            // not a wild pointer.
            Some(Trap::MemoryOutOfBounds) if is_runaway_recursion(&e) => Some(Limit::Stack),
            _ => None,
        };
        if let Some(limit) = limit {
            return PluginError::LimitExceeded {
                plugin,
                limit,
                call,
            };
        }
        let stderr = String::from_utf8_lossy(stderr);
        if let Some(message) = panic_message(&stderr) {
            return PluginError::Panic {
                plugin,
                call,
                message,
            };
        }
        if let Some(trap) = e.downcast_ref::<Trap>() {
            return PluginError::Trap {
                plugin,
                call,
                reason: trap.to_string(),
            };
        }
        PluginError::Instantiate {
            plugin,
            call,
            reason: format!("{e:#}"),
        }
    }
}

/// Whether the trap's backtrace (wasmtime keeps the innermost frames) is
/// one or two functions calling themselves over and over: runaway recursion.
fn is_runaway_recursion(e: &wasmtime::Error) -> bool {
    const FRAMES: usize = 16;
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    if frames.len() < FRAMES {
        return false;
    }
    let mut distinct: Vec<(Option<&str>, u32)> = Vec::new();
    for f in &frames[..FRAMES] {
        let key = (f.module().name(), f.func_index());
        if !distinct.contains(&key) {
            distinct.push(key);
        }
    }
    distinct.len() <= 2
}

/// The message of a Rust panic as printed by the guest's panic hook:
/// `thread '<unnamed>' panicked at src/lib.rs:3:5:\n<message>`.
fn panic_message(stderr: &str) -> Option<String> {
    let at = stderr.find("panicked at")?;
    let rest = &stderr[at..];
    let mut lines = rest.lines();
    let first = lines.next()?;
    let location = first
        .trim_start_matches("panicked at")
        .trim()
        .trim_end_matches(':');
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note:")).collect();
    Some(format!("{} (at {location})", message.join(" ").trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nindex out of bounds\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "index out of bounds (at src/lib.rs:12:9)"
        );
        assert_eq!(panic_message("nothing here"), None);
    }
}

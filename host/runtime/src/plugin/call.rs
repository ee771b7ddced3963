//! One call of a plugin: a fresh `Store` with the plugin's limits,
//! capabilities and log; traps and limit hits classified into a
//! [`PluginError`] naming the plugin, the call and the limit.

use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::{Core, MapOutcome, Outcome, Page, Record, Spec, StreamInfo, WriteResult};
use crate::error::{CallRef, GuestError, PluginError};
use crate::limits::{Limit, LimitHit, StoreLimiter};
use crate::sandbox::log::{Level, PluginLog};
use crate::state::{PluginState, SandboxEvent};

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
        // A slot of the pool, within the plugin's share, before the store
        // exists: a plugin whose other calls hold its whole share waits for
        // one of them, never for (or instead of) another plugin's.
        let slot = match self
            .plugin
            .runtime()
            .slots()
            .acquire(self.plugin.sha256(), deadline)
            .instrument(span.clone())
            .await
        {
            Ok(slot) => slot,
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
        };
        let state = PluginState::new(
            StoreLimiter::new(limits, self.plugin.runtime().caps()),
            log,
            self.http.clone(),
            self.kv.clone(),
            deadline,
            // One byte past the cap, so a plugin that tries to write more
            // than the cap is seen to have done so.
            usize::try_from(limits.log_bytes_per_call.saturating_add(1)).unwrap_or(usize::MAX),
        );
        let mut store = Store::new(self.plugin.engine(), state);
        store.limiter(|s| &mut s.limiter);
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

        let result = match fuel_ok {
            Err(e) => Err(e),
            Ok(()) => {
                // The epoch callback stops guest code at the deadline; this
                // timeout also covers time spent in host calls.
                let grace = time_limit + Duration::from_millis(500);
                match tokio::time::timeout(
                    grace,
                    self.call(&mut store, op).instrument(span.clone()),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(wasmtime::Error::new(LimitHit(Limit::Time(time_limit)))),
                }
            }
        };

        let data = store.data_mut();
        let stderr = data.stderr.contents();
        let stdout = data.stdout.contents();
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
        drop(store);
        drop(slot);
        Raw {
            result,
            events,
            elapsed: started.elapsed(),
            call,
        }
    }

    /// The call itself, through the bindings of the contract version the
    /// plugin was linked against.
    async fn call(&self, store: &mut Store<PluginState>, op: Op<'_>) -> wasmtime::Result<Reply> {
        self.plugin.inner.pre.call(store, op).await
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

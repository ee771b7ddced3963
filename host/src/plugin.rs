//! Calling a loaded plugin under its sandbox: a fresh `Store` per call with
//! the plugin's limits, capabilities and log; a trap or limit hit becomes a
//! [`PluginError`] naming the plugin, the call and the limit, and the next
//! call starts clean.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::wit_types as wit;
use crate::error::{CallRef, GuestError, PluginError, PluginRef};
use crate::inspect::WorldKind;
use crate::limits::{Limit, LimitHit, Limits, StoreLimiter};
use crate::runtime::{LoadedPlugin, Pre};
use crate::sandbox::http::{HttpSettings, OutboundHttp};
use crate::sandbox::kv::KvStore;
use crate::sandbox::log::{Level, PluginLog};
use crate::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy, PatternError};
use crate::sandbox::secrets::{BoundSecret, SecretSet, SecretValue};
use crate::state::{PluginState, SandboxEvent};

pub use crate::bindings::wit_types::{
    Capabilities, Operation, Page, PluginSpec as Spec, Record, SecretRequirement, StreamInfo,
    WriteOutcome, WriteResult,
};

/// What the admin granted one plugin for one connection.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Outbound HTTP grants.
    pub http: Vec<HttpGrant>,
    /// Key-value bytes granted (the quota is the smaller of this and what the
    /// plugin declared).
    pub kv_bytes: u64,
}

/// Everything a plugin instance runs with.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Who the plugin is (for messages and logs).
    pub plugin: PluginRef,
    /// Its limits.
    pub limits: Limits,
    /// Its grants.
    pub grants: Grants,
    /// Secret values by name (only those the plugin declares are used).
    pub secrets: BTreeMap<String, SecretValue>,
    /// Key-value store and namespace (plugin + connection); `None`: no storage.
    pub kv: Option<(KvStore, String)>,
}

/// The result of one call plus what the sandbox refused along the way.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The call's result.
    pub result: Result<T, PluginError>,
    /// Refusals and drops recorded during the call.
    pub events: Vec<SandboxEvent>,
    /// How long the call took.
    pub elapsed: Duration,
}

impl<T> Outcome<T> {
    /// The result alone.
    pub fn into_result(self) -> Result<T, PluginError> {
        self.result
    }
}

/// A connector plugin, opened with its sandbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectorPlugin {
    core: Core,
    spec: Spec,
}

/// A mapper plugin, opened with its sandbox.
#[derive(Debug, Clone)]
pub struct MapperPlugin {
    core: Core,
}

#[derive(Debug, Clone)]
struct Core {
    plugin: LoadedPlugin,
    sandbox: Sandbox,
    http: Option<OutboundHttp>,
    kv: Option<crate::sandbox::kv::KvNamespace>,
}

/// Opening a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The component implements the other world.
    #[error("plugin {plugin} is a {actual}, not a {expected}")]
    WrongWorld {
        /// Plugin.
        plugin: PluginRef,
        /// What it is.
        actual: WorldKind,
        /// What was asked for.
        expected: WorldKind,
    },
    /// `spec` failed.
    #[error(transparent)]
    Spec(#[from] PluginError),
    /// The plugin declared an origin that does not parse.
    #[error("plugin {plugin} declares a bad origin: {source}")]
    BadDeclaration {
        /// Plugin.
        plugin: PluginRef,
        /// The parse error.
        source: PatternError,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up HTTP for plugin {plugin}: {reason}")]
    Http {
        /// Plugin.
        plugin: PluginRef,
        /// Why.
        reason: String,
    },
}

enum Op<'a> {
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

enum Reply {
    Instantiated,
    Spec(Spec),
    Check(Result<(), wit::Error>),
    Discover(Result<Vec<StreamInfo>, wit::Error>),
    Read(Result<Page, wit::Error>),
    Write(Result<Vec<WriteResult>, wit::Error>),
    Map(Result<Vec<Record>, wit::Error>),
}

impl Op<'_> {
    fn label(&self) -> CallRef {
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

impl ConnectorPlugin {
    /// Open a connector: call `spec`, then build its policy from what it
    /// declares intersected with what `sandbox` grants.
    pub async fn open(plugin: &LoadedPlugin, sandbox: Sandbox) -> Result<Self, OpenError> {
        if plugin.info().world != WorldKind::Connector {
            return Err(OpenError::WrongWorld {
                plugin: sandbox.plugin.clone(),
                actual: plugin.info().world,
                expected: WorldKind::Connector,
            });
        }
        let bare = Core {
            plugin: plugin.clone(),
            sandbox: sandbox.clone(),
            http: None,
            kv: None,
        };
        let spec = match bare.invoke(Op::Spec).await.result? {
            Reply::Spec(s) => s,
            _ => return Err(OpenError::Spec(bare.mismatch("spec"))),
        };
        let bad = |source| OpenError::BadDeclaration {
            plugin: sandbox.plugin.clone(),
            source,
        };
        let declared = spec
            .capabilities
            .http_origins
            .iter()
            .map(|o| OriginPattern::parse(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let mut secrets = SecretSet::default();
        for req in &spec.capabilities.secrets {
            if let Some(value) = sandbox.secrets.get(&req.name) {
                let origins = req
                    .origins
                    .iter()
                    .map(|o| OriginPattern::parse(o))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                secrets.insert(
                    req.name.clone(),
                    BoundSecret {
                        value: value.clone(),
                        origins,
                    },
                );
            }
        }
        let policy = OutboundPolicy::new(declared, sandbox.grants.http.clone());
        let settings = HttpSettings {
            timeout: sandbox.limits.http_timeout(),
            max_response_bytes: sandbox.limits.http_response_bytes,
            ..HttpSettings::default()
        };
        let http = OutboundHttp::new(policy, secrets, settings).map_err(|e| OpenError::Http {
            plugin: sandbox.plugin.clone(),
            reason: e.to_string(),
        })?;
        let quota = spec.capabilities.kv_bytes.min(sandbox.grants.kv_bytes);
        let kv = match (&sandbox.kv, quota) {
            (Some((store, ns)), q) if q > 0 => Some(store.namespace(ns.clone(), q)),
            _ => None,
        };
        Ok(ConnectorPlugin {
            core: Core {
                plugin: plugin.clone(),
                sandbox,
                http: Some(http),
                kv,
            },
            spec,
        })
    }

    /// The spec returned at open.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Who the plugin is.
    pub fn plugin(&self) -> &PluginRef {
        &self.core.sandbox.plugin
    }

    /// Instantiate in a fresh store without calling anything.
    pub async fn warm_up(&self) -> Outcome<()> {
        self.core.warm_up().await
    }

    /// `check(config)`.
    pub async fn check(&self, config: &str) -> Outcome<()> {
        self.core
            .invoke(Op::Check(config))
            .await
            .then(&self.core, |r| match r {
                Reply::Check(r) => Some(r),
                _ => None,
            })
    }

    /// `discover(config)`.
    pub async fn discover(&self, config: &str) -> Outcome<Vec<StreamInfo>> {
        self.core
            .invoke(Op::Discover(config))
            .await
            .then(&self.core, |r| match r {
                Reply::Discover(r) => Some(r),
                _ => None,
            })
    }

    /// `read(config, stream, state)`: one page. Payloads are checked to be
    /// JSON objects.
    pub async fn read(&self, config: &str, stream: &str, state: Option<&str>) -> Outcome<Page> {
        let call = Op::Read {
            config,
            stream,
            state,
        };
        let label = call.label();
        let mut out = self.core.invoke(call).await.then(&self.core, |r| match r {
            Reply::Read(r) => Some(r),
            _ => None,
        });
        if let Ok(page) = &out.result
            && let Some(bad) = page.records.iter().find(|r| !is_json_object(&r.payload))
        {
            out.result = Err(PluginError::InvalidOutput {
                plugin: self.core.sandbox.plugin.clone(),
                call: label,
                reason: format!(
                    "record {}/{} has a payload that is not a JSON object",
                    bad.stream, bad.id
                ),
            });
        }
        out
    }

    /// `write(config, stream, batch)`: one result per record, in order.
    pub async fn write(
        &self,
        config: &str,
        stream: &str,
        batch: &[Record],
    ) -> Outcome<Vec<WriteResult>> {
        let call = Op::Write {
            config,
            stream,
            batch,
        };
        let label = call.label();
        let mut out = self.core.invoke(call).await.then(&self.core, |r| match r {
            Reply::Write(r) => Some(r),
            _ => None,
        });
        if let Ok(results) = &out.result
            && results.len() != batch.len()
        {
            out.result = Err(PluginError::InvalidOutput {
                plugin: self.core.sandbox.plugin.clone(),
                call: label,
                reason: format!("{} results for a batch of {}", results.len(), batch.len()),
            });
        }
        out
    }
}

impl MapperPlugin {
    /// Open a mapper. Mappers get no HTTP and no storage, whatever is granted.
    pub fn open(plugin: &LoadedPlugin, sandbox: Sandbox) -> Result<Self, OpenError> {
        if plugin.info().world != WorldKind::Mapper {
            return Err(OpenError::WrongWorld {
                plugin: sandbox.plugin,
                actual: plugin.info().world,
                expected: WorldKind::Mapper,
            });
        }
        Ok(MapperPlugin {
            core: Core {
                plugin: plugin.clone(),
                sandbox,
                http: None,
                kv: None,
            },
        })
    }

    /// Instantiate in a fresh store without calling anything: proves the
    /// plugin starts under its limits (and measures what a call costs
    /// before the plugin's own code runs).
    pub async fn warm_up(&self) -> Outcome<()> {
        self.core.warm_up().await
    }

    /// `map(config, batch)`.
    pub async fn map(&self, config: &str, batch: &[Record]) -> Outcome<Vec<Record>> {
        let call = Op::Map { config, batch };
        let label = call.label();
        let mut out = self.core.invoke(call).await.then(&self.core, |r| match r {
            Reply::Map(r) => Some(r),
            _ => None,
        });
        if let Ok(records) = &out.result
            && let Some(bad) = records.iter().find(|r| !is_json_object(&r.payload))
        {
            out.result = Err(PluginError::InvalidOutput {
                plugin: self.core.sandbox.plugin.clone(),
                call: label,
                reason: format!(
                    "mapped record {}/{} has a payload that is not a JSON object",
                    bad.stream, bad.id
                ),
            });
        }
        out
    }
}

fn is_json_object(s: &str) -> bool {
    matches!(
        serde_json::from_str::<serde_json::Value>(s),
        Ok(serde_json::Value::Object(_))
    )
}

struct Raw {
    result: Result<Reply, PluginError>,
    events: Vec<SandboxEvent>,
    elapsed: Duration,
    call: CallRef,
}

impl Raw {
    fn then<T>(
        self,
        core: &Core,
        pick: impl FnOnce(Reply) -> Option<Result<T, wit::Error>>,
    ) -> Outcome<T> {
        let result = match self.result {
            Err(e) => Err(e),
            Ok(reply) => match pick(reply) {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(PluginError::Guest {
                    plugin: core.sandbox.plugin.clone(),
                    call: self.call,
                    error: GuestError::from(e),
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
    async fn warm_up(&self) -> Outcome<()> {
        self.invoke(Op::Instantiate).await.then(self, |r| match r {
            Reply::Instantiated => Some(Ok(())),
            _ => None,
        })
    }

    fn mismatch(&self, call: &str) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.sandbox.plugin.clone(),
            call: CallRef(call.to_string()),
            reason: "host bug: reply of the wrong kind".into(),
        }
    }

    async fn invoke(&self, op: Op<'_>) -> Raw {
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
        let state = PluginState::new(
            StoreLimiter::new(limits),
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
        let fuel_ok = store.set_fuel(limits.fuel_per_call);
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
        Raw {
            result,
            events,
            elapsed: started.elapsed(),
            call,
        }
    }

    async fn call(&self, store: &mut Store<PluginState>, op: Op<'_>) -> wasmtime::Result<Reply> {
        match &self.plugin.inner.pre {
            Pre::Connector(pre) => {
                let bindings = pre.instantiate_async(&mut *store).await?;
                let c = bindings.nexo_connector_operations();
                Ok(match op {
                    Op::Instantiate => Reply::Instantiated,
                    Op::Spec => Reply::Spec(c.call_spec(&mut *store).await?),
                    Op::Check(config) => Reply::Check(c.call_check(&mut *store, config).await?),
                    Op::Discover(config) => {
                        Reply::Discover(c.call_discover(&mut *store, config).await?)
                    }
                    Op::Read {
                        config,
                        stream,
                        state,
                    } => Reply::Read(c.call_read(&mut *store, config, stream, state).await?),
                    Op::Write {
                        config,
                        stream,
                        batch,
                    } => Reply::Write(c.call_write(&mut *store, config, stream, batch).await?),
                    Op::Map { .. } => return Err(wasmtime::Error::msg("a connector has no map")),
                })
            }
            Pre::Mapper(pre) => {
                let bindings = pre.instantiate_async(&mut *store).await?;
                let m = bindings.nexo_connector_mapping();
                match op {
                    Op::Instantiate => Ok(Reply::Instantiated),
                    Op::Map { config, batch } => {
                        Ok(Reply::Map(m.call_map(&mut *store, config, batch).await?))
                    }
                    _ => Err(wasmtime::Error::msg("a mapper only has map")),
                }
            }
        }
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

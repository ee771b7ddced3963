//! Opening a loaded plugin with its sandbox: a fresh `Store` per call with
//! the plugin's limits, capabilities and log; a trap or limit hit becomes a
//! [`PluginError`] naming the plugin, the call and the limit, and the next
//! call starts clean.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{PluginError, PluginRef};
use crate::inspect::WorldKind;
use crate::limits::Limits;
use crate::runtime::LoadedPlugin;
use crate::sandbox::budget::Budget;
use crate::sandbox::http::{HttpSettings, OutboundHttp};
use crate::sandbox::kv::KvStore;
use crate::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy, PatternError};
use crate::sandbox::secrets::{BoundSecret, SecretSet, SecretValue};
use crate::state::SandboxEvent;

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
pub(crate) struct Core {
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

mod call;

use call::{Op, Reply};

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

    /// The same plugin, with each of its outbound requests waiting for a
    /// token of `budget` (shared with every other instance of the same
    /// connection) before it goes out.
    pub fn with_request_budget(mut self, budget: Arc<Budget>) -> Self {
        self.core.http = self.core.http.map(|http| http.with_budget(budget));
        self
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

    /// `read(config, stream, state)`: one page, whose payloads must all
    /// pass [`check_payload`] (a page with one that does not is an error
    /// naming it). The sync engine uses [`ConnectorPlugin::read_checked`].
    pub async fn read(&self, config: &str, stream: &str, state: Option<&str>) -> Outcome<Page> {
        let call = Op::Read {
            config,
            stream,
            state,
        };
        let label = call.label();
        let out = self.read_checked(config, stream, state).await;
        let Outcome {
            result,
            events,
            elapsed,
        } = out;
        let result = result.and_then(|checked| match checked.rejected.first() {
            None => Ok(checked.page),
            Some(bad) => Err(self.core.invalid_payload(label, bad)),
        });
        Outcome {
            result,
            events,
            elapsed,
        }
    }

    /// `read(config, stream, state)` with each payload checked by
    /// [`check_payload`]: the records that fail are set apart with why, so
    /// one bad record costs that record, not the page.
    pub async fn read_checked(
        &self,
        config: &str,
        stream: &str,
        state: Option<&str>,
    ) -> Outcome<CheckedPage> {
        let call = Op::Read {
            config,
            stream,
            state,
        };
        let out = self.core.invoke(call).await.then(&self.core, |r| match r {
            Reply::Read(r) => Some(r),
            _ => None,
        });
        let Outcome {
            result,
            events,
            elapsed,
        } = out;
        Outcome {
            result: result.map(CheckedPage::of),
            events,
            elapsed,
        }
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

    /// Who the plugin is.
    pub fn plugin(&self) -> &PluginRef {
        &self.core.sandbox.plugin
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
            && let Err(e) = self.core.check_payloads(label, records)
        {
            out.result = Err(e);
        }
        out
    }
}

impl Core {
    /// Every record a mapper returns must pass [`check_payload`].
    fn check_payloads(
        &self,
        call: crate::error::CallRef,
        records: &[Record],
    ) -> Result<(), PluginError> {
        for record in records {
            if let Err(fault) = check_payload(&record.payload) {
                let bad = RejectedRecord {
                    record: record.clone(),
                    fault,
                };
                return Err(self.invalid_payload(call, &bad));
            }
        }
        Ok(())
    }

    fn invalid_payload(&self, call: crate::error::CallRef, bad: &RejectedRecord) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.sandbox.plugin.clone(),
            call,
            reason: format!(
                "record {}/{}: {}",
                bad.record.stream, bad.record.id, bad.fault
            ),
        }
    }
}

/// Largest payload of one record, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// Deepest nesting of arrays and objects in a payload. The engine's parser
/// (serde_json) gives up at 128; a payload that passes this check always
/// parses, and real records are seldom deeper than 10.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Why a record's payload cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadFault {
    /// Larger than [`MAX_PAYLOAD_BYTES`].
    #[error("the payload is {bytes} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Nested deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error("the payload is nested deeper than {max} levels of arrays and objects")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// JSON, but not an object.
    #[error("the payload is not a JSON object")]
    NotObject,
    /// Not JSON the engine can read (a number out of range, a syntax error).
    #[error("the payload is not valid JSON: {0}")]
    Invalid(String),
}

impl PayloadFault {
    /// A short class for dead letters and metrics.
    pub fn class(&self) -> &'static str {
        "payload"
    }
}

/// A record a plugin returned whose payload failed [`check_payload`].
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    /// The record as returned.
    pub record: Record,
    /// Why it cannot be used.
    pub fault: PayloadFault,
}

/// A page whose records were checked: the usable ones, and the rest.
#[derive(Debug, Clone)]
pub struct CheckedPage {
    /// The page with only the records that passed.
    pub page: Page,
    /// The records that did not, in page order.
    pub rejected: Vec<RejectedRecord>,
}

impl CheckedPage {
    /// Check each record of `page`.
    pub fn of(mut page: Page) -> Self {
        let mut rejected = Vec::new();
        if page
            .records
            .iter()
            .any(|r| check_payload(&r.payload).is_err())
        {
            let records = std::mem::take(&mut page.records);
            for record in records {
                match check_payload(&record.payload) {
                    Ok(()) => page.records.push(record),
                    Err(fault) => rejected.push(RejectedRecord { record, fault }),
                }
            }
        }
        CheckedPage { page, rejected }
    }
}

/// Whether `payload` is one JSON object the sync engine can use: at most
/// [`MAX_PAYLOAD_BYTES`], nested at most [`MAX_PAYLOAD_DEPTH`] deep, every
/// number in range. Read with the engine's own parser without building
/// anything (this runs on every record a plugin returns).
pub fn check_payload(payload: &str) -> Result<(), PayloadFault> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadFault::TooLarge {
            bytes: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if !payload.trim_start().starts_with('{') {
        return Err(PayloadFault::NotObject);
    }
    if nesting_depth(payload) > MAX_PAYLOAD_DEPTH {
        return Err(PayloadFault::TooDeep {
            max: MAX_PAYLOAD_DEPTH,
        });
    }
    serde_json::from_str::<Parsed>(payload)
        .map(|_| ())
        .map_err(|e| PayloadFault::Invalid(e.to_string()))
}

/// The deepest nesting of `[` and `{` outside strings (counted without
/// recursion, so any depth is safe to measure).
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A JSON value read the way the engine reads one (`deserialize_any`:
/// numbers are parsed, so one out of range fails here as it would there)
/// and thrown away.
struct Parsed;

impl<'de> serde::Deserialize<'de> for Parsed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParsedVisitor)
    }
}

struct ParsedVisitor;

impl<'de> serde::de::Visitor<'de> for ParsedVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Parsed, E> {
        Ok(Parsed)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Parsed, E> {
        Ok(Parsed)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Parsed, E> {
        Ok(Parsed)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Parsed, E> {
        if v.is_finite() {
            Ok(Parsed)
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<Parsed, E> {
        Ok(Parsed)
    }
    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<Parsed>()?.is_some() {}
        Ok(Parsed)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, Parsed>()?.is_some() {}
        Ok(Parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAYLOAD_DEPTH, PayloadFault, check_payload};

    #[test]
    fn only_json_objects_pass() {
        assert_eq!(
            check_payload(r#" {"a": [1, {"b": null}], "c": "[[[{"}"#),
            Ok(())
        );
        for bad in [r#"[1]"#, r#""{}""#, "", "null"] {
            assert_eq!(check_payload(bad), Err(PayloadFault::NotObject), "{bad}");
        }
        for bad in ["{", r#"{"a": 1} {"b": 2}"#] {
            assert!(
                matches!(check_payload(bad), Err(PayloadFault::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn what_the_engine_cannot_parse_is_refused_by_name() {
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check_payload(&deep(MAX_PAYLOAD_DEPTH - 1)), Ok(()));
        assert_eq!(
            check_payload(&deep(10_000)),
            Err(PayloadFault::TooDeep {
                max: MAX_PAYLOAD_DEPTH
            })
        );
        // Brackets inside strings are not nesting.
        let quoted = format!("{{\"a\":\"{}\\\"\"}}", "[".repeat(10_000));
        assert_eq!(check_payload(&quoted), Ok(()));
        let huge = check_payload(r#"{"amount": 1e999999}"#).unwrap_err();
        assert!(huge.to_string().contains("number out of range"), "{huge}");
        assert_eq!(
            check_payload(r#"{"amount": 1e300, "n": -0.5e-999999}"#),
            Ok(())
        );
        // Whatever passes, the engine parses.
        for ok in [
            deep(MAX_PAYLOAD_DEPTH - 1),
            r#"{"x": 18446744073709551615}"#.into(),
        ] {
            assert_eq!(check_payload(&ok), Ok(()));
            assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        }
    }
}

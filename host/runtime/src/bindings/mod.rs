//! The `nexo:connector` contract versions this host serves, one bindings
//! module each — every `bindgen!` of the host lives under this module.
//!
//! `wit/<version>/` holds each released version side by side, never edited
//! once released. Each served version has a module here (`v1_0` for
//! `wit/1.0.0/`) that generates its bindings and converts its generated
//! types into the engine's own ([`crate::plugin::types`]) at the edge: the
//! engine never sees a generated type, so a new version only adds a module
//! and an entry in [`SERVED`].

/// The `Host` impls every version shares, for the generated modules named:
/// types, log, secrets, and HTTP and key-value storage over the sandbox.
/// The version's own words for failures come from three items the caller
/// defines beside it: `to_wit_http_result(HttpError)` (a refusal or failure
/// as the guest sees it), `to_wit_kv_error(KvError)` and `KV_NOT_GRANTED`.
macro_rules! host_adapters {
    ($types:ident, $log:ident, $http:ident, $secrets:ident, $kv:ident) => {
        impl $types::Host for PluginState {}

        impl $log::Host for PluginState {
            async fn log(&mut self, level: $log::Level, message: String) -> wasmtime::Result<()> {
                use crate::sandbox::log::Level;
                let level = match level {
                    $log::Level::Trace => Level::Trace,
                    $log::Level::Debug => Level::Debug,
                    $log::Level::Info => Level::Info,
                    $log::Level::Warn => Level::Warn,
                    $log::Level::Error => Level::Error,
                };
                self.log.log(level, &message).map_err(wasmtime::Error::new)
            }
        }

        impl $http::Host for PluginState {
            async fn send(
                &mut self,
                request: $http::Request,
            ) -> wasmtime::Result<Result<$http::Response, $http::HttpError>> {
                use crate::sandbox::http::{Method, OutboundRequest};
                let Some(http) = self.http.clone() else {
                    let e = HttpError::OriginNotAllowed("this plugin has no HTTP grant".into());
                    self.events.push(SandboxEvent::HttpRefused(e.clone()));
                    return Ok(to_wit_http_result(e));
                };
                let req = OutboundRequest {
                    method: match request.method {
                        $http::Method::Get => Method::Get,
                        $http::Method::Head => Method::Head,
                        $http::Method::Post => Method::Post,
                        $http::Method::Put => Method::Put,
                        $http::Method::Patch => Method::Patch,
                        $http::Method::Delete => Method::Delete,
                    },
                    url: request.url,
                    headers: request.headers,
                    basic_auth: request.basic_auth,
                    body: request.body,
                    timeout_ms: request.timeout_ms,
                };
                match http.send(req, self.deadline).await {
                    Ok(r) => Ok(Ok($http::Response {
                        status: r.status,
                        headers: r.headers,
                        body: to_wit_body(r.body),
                    })),
                    Err(e) => {
                        let e = e.redacted(http.secrets());
                        tracing::warn!(error = %e, "plugin HTTP request refused or failed");
                        self.events.push(SandboxEvent::HttpRefused(e.clone()));
                        Ok(to_wit_http_result(e))
                    }
                }
            }
        }

        impl $secrets::Host for PluginState {
            async fn is_set(&mut self, name: String) -> wasmtime::Result<bool> {
                Ok(self
                    .http
                    .as_ref()
                    .is_some_and(|h| h.secrets().is_set(&name)))
            }
        }

        /// `r`, a refusal recorded as the sandbox's event.
        fn kv_result<T>(state: &mut PluginState, r: Result<T, KvError>) -> Result<T, $kv::KvError> {
            r.map_err(|e| {
                state.events.push(SandboxEvent::KvRefused(e.clone()));
                to_wit_kv_error(e)
            })
        }

        /// The plugin's namespace, or the refusal when it has none.
        fn kv_namespace(
            state: &mut PluginState,
        ) -> Result<crate::sandbox::kv::KvNamespace, $kv::KvError> {
            state.kv.clone().ok_or_else(|| {
                state.events.push(SandboxEvent::KvNotGranted);
                KV_NOT_GRANTED
            })
        }

        impl $kv::Host for PluginState {
            async fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, $kv::KvError>> {
                Ok(kv_namespace(self).and_then(|ns| kv_result(self, ns.get(&key))))
            }

            async fn set(
                &mut self,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), $kv::KvError>> {
                // Stored in the host's database: no secret value goes there.
                let value = crate::sandbox::redact::scrub_bytes(&value);
                Ok(kv_namespace(self).and_then(|ns| kv_result(self, ns.set(&key, &value))))
            }

            async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), $kv::KvError>> {
                Ok(kv_namespace(self).and_then(|ns| kv_result(self, ns.delete(&key))))
            }

            async fn list_keys(
                &mut self,
                prefix: String,
            ) -> wasmtime::Result<Result<Vec<String>, $kv::KvError>> {
                Ok(kv_namespace(self).and_then(|ns| kv_result(self, ns.list_keys(&prefix))))
            }
        }
    };
}
pub(crate) use host_adapters;

/// The conversions of the record, operation and error types, between the
/// engine's types and a generated `types` module `$wit` whose result record
/// type is `$record`: what every world's bindings need.
macro_rules! record_conversions {
    ($wit:ident, $record:ident) => {
        use crate::error::GuestError;
        use crate::plugin::types::Operation;
        use crate::sandbox::redact;

        impl From<$wit::Operation> for Operation {
            fn from(o: $wit::Operation) -> Self {
                match o {
                    $wit::Operation::Upsert => Operation::Upsert,
                    $wit::Operation::Delete => Operation::Delete,
                }
            }
        }

        impl From<Operation> for $wit::Operation {
            fn from(o: Operation) -> Self {
                match o {
                    Operation::Upsert => $wit::Operation::Upsert,
                    Operation::Delete => $wit::Operation::Delete,
                }
            }
        }

        impl From<$wit::$record> for Record {
            fn from(r: $wit::$record) -> Self {
                Record {
                    stream: r.stream,
                    id: r.id,
                    operation: r.operation.into(),
                    payload: r.payload,
                    cursor: r.cursor,
                }
            }
        }

        /// Records from the guest, moved into the engine's type.
        pub fn records(records: Vec<$wit::$record>) -> Vec<Record> {
            records.into_iter().map(Record::from).collect()
        }

        impl From<$wit::Error> for GuestError {
            /// The plugin's error, with secret values replaced: its text often
            /// quotes what a system answered.
            fn from(e: $wit::Error) -> Self {
                use GuestError as G;
                let s = redact::scrub_string;
                match e {
                    $wit::Error::InvalidConfig(m) => G::InvalidConfig(s(m)),
                    $wit::Error::Auth(m) => G::Auth(s(m)),
                    $wit::Error::AccessDenied(m) => G::AccessDenied(s(m)),
                    $wit::Error::RateLimited(ms) => G::RateLimited { retry_after_ms: ms },
                    $wit::Error::Transient(m) => G::Transient(s(m)),
                    $wit::Error::Rejected(m) => G::Rejected(s(m)),
                    $wit::Error::Internal(m) => G::Internal(s(m)),
                }
            }
        }
    };
}
pub(crate) use record_conversions;

/// The conversions every version shares, between the engine's types and
/// the generated module `$wit` (a version's `types`): the types a minor
/// version has not changed.
macro_rules! conversions {
    ($wit:ident, $record:ident) => {
        crate::bindings::record_conversions!($wit, $record);
        use crate::plugin::types::{
            Capabilities, Page, SecretRequirement, Spec, StreamInfo, WriteOutcome, WriteResult,
        };

        impl From<$wit::Page> for Page {
            fn from(p: $wit::Page) -> Self {
                Page {
                    records: records(p.records),
                    state: p.state,
                    has_more: p.has_more,
                }
            }
        }

        impl From<$wit::SecretRequirement> for SecretRequirement {
            fn from(s: $wit::SecretRequirement) -> Self {
                SecretRequirement {
                    name: s.name,
                    description: s.description,
                    origins: s.origins,
                }
            }
        }

        impl From<$wit::Capabilities> for Capabilities {
            fn from(c: $wit::Capabilities) -> Self {
                Capabilities {
                    http_origins: c.http_origins,
                    secrets: c.secrets.into_iter().map(Into::into).collect(),
                    kv_bytes: c.kv_bytes,
                }
            }
        }

        impl From<$wit::PluginSpec> for Spec {
            fn from(s: $wit::PluginSpec) -> Self {
                Spec {
                    sdk_version: s.sdk_version,
                    config_schema: s.config_schema,
                    streams: s.streams,
                    capabilities: s.capabilities.into(),
                }
            }
        }

        impl From<$wit::StreamInfo> for StreamInfo {
            fn from(s: $wit::StreamInfo) -> Self {
                StreamInfo {
                    name: s.name,
                    json_schema: s.json_schema,
                    primary_key: s.primary_key,
                    cursor_field: s.cursor_field,
                    can_read: s.can_read,
                    can_write: s.can_write,
                }
            }
        }

        /// Streams from `discover`, moved into the engine's type.
        pub(crate) fn streams(streams: Vec<$wit::StreamInfo>) -> Vec<StreamInfo> {
            streams.into_iter().map(Into::into).collect()
        }

        impl From<$wit::WriteOutcome> for WriteOutcome {
            fn from(o: $wit::WriteOutcome) -> Self {
                match o {
                    $wit::WriteOutcome::Created(id) => WriteOutcome::Created(id),
                    $wit::WriteOutcome::Updated(id) => WriteOutcome::Updated(id),
                    $wit::WriteOutcome::Unchanged(id) => WriteOutcome::Unchanged(id),
                    $wit::WriteOutcome::Deleted(id) => WriteOutcome::Deleted(id),
                    $wit::WriteOutcome::Failed(e) => WriteOutcome::Failed(e.into()),
                }
            }
        }

        impl From<$wit::WriteResult> for WriteResult {
            fn from(r: $wit::WriteResult) -> Self {
                WriteResult {
                    id: r.id,
                    outcome: r.outcome.into(),
                }
            }
        }

        /// A `write`'s results, moved into the engine's type.
        pub(crate) fn write_results(results: Vec<$wit::WriteResult>) -> Vec<WriteResult> {
            results.into_iter().map(Into::into).collect()
        }
    };
}
pub(crate) use conversions;

/// The linker, pre-instance and calls of one version, whose generated
/// `connector` and `mapper` modules and `convert` module are in scope:
/// the same for every version but for how a write batch goes in (`write`),
/// how a map batch goes in (`map_in`) and which reply its answer makes
/// (`reply`, from `map_out`).
macro_rules! world_calls {
    (write: $write:path, map_in: $map_in:path, reply: $reply:ident, map_out: $map_out:path) => {
        /// The linker of `world` at this version: WASI 0.2 (which grants nothing by
        /// default) and the world's `nexo:connector` imports.
        pub(crate) fn linker(
            engine: &wasmtime::Engine,
            world: WorldKind,
        ) -> wasmtime::Result<Linker<PluginState>> {
            let mut linker = Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            match world {
                WorldKind::Connector => connector::Connector::add_to_linker::<
                    _,
                    HasSelf<PluginState>,
                >(&mut linker, |s| s)?,
                WorldKind::Mapper => {
                    mapper::Mapper::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
                }
            }
            Ok(linker)
        }

        /// A component linked and type-checked against one world, ready to
        /// instantiate.
        pub(crate) enum Pre {
            Connector(connector::ConnectorPre<PluginState>),
            Mapper(mapper::MapperPre<PluginState>),
        }

        impl Pre {
            /// Link `component` as a `world` with `linker` (made by [`linker`]).
            pub(crate) fn new(
                linker: &Linker<PluginState>,
                component: &Component,
                world: WorldKind,
            ) -> wasmtime::Result<Self> {
                let pre = linker.instantiate_pre(component)?;
                Ok(match world {
                    WorldKind::Connector => Pre::Connector(connector::ConnectorPre::new(pre)?),
                    WorldKind::Mapper => Pre::Mapper(mapper::MapperPre::new(pre)?),
                })
            }

            /// An instance in `store`.
            pub(crate) async fn instantiate(
                &self,
                store: &mut wasmtime::Store<PluginState>,
            ) -> wasmtime::Result<Instance> {
                Ok(match self {
                    Pre::Connector(pre) => {
                        Instance::Connector(pre.instantiate_async(&mut *store).await?)
                    }
                    Pre::Mapper(pre) => Instance::Mapper(pre.instantiate_async(&mut *store).await?),
                })
            }
        }

        /// An instance of a component in one store, ready for calls.
        pub(crate) enum Instance {
            Connector(connector::Connector),
            Mapper(mapper::Mapper),
        }

        impl Instance {
            /// Make the call `op`, its reply in the engine's types. A trap or limit
            /// hit is the `Err`; an error the guest returned is a value inside the
            /// reply.
            pub(crate) async fn call(
                &self,
                store: &mut wasmtime::Store<PluginState>,
                op: Op<'_>,
            ) -> wasmtime::Result<Reply> {
                let guest = |e: wit_types::Error| GuestError::from(e);
                match self {
                    Instance::Connector(bindings) => {
                        let c = bindings.nexo_connector_operations();
                        Ok(match op {
                            Op::Instantiate => Reply::Instantiated,
                            Op::Spec => Reply::Spec(c.call_spec(&mut *store).await?.into()),
                            Op::Check(config) => Reply::Check(
                                c.call_check(&mut *store, config).await?.map_err(guest),
                            ),
                            Op::Discover(config) => Reply::Discover(
                                c.call_discover(&mut *store, config)
                                    .await?
                                    .map(convert::streams)
                                    .map_err(guest),
                            ),
                            Op::Read {
                                config,
                                stream,
                                state,
                            } => Reply::Read(
                                c.call_read(&mut *store, config, stream, state)
                                    .await?
                                    .map(Into::into)
                                    .map_err(guest),
                            ),
                            Op::Write {
                                config,
                                stream,
                                batch,
                            } => {
                                let batch = $write(batch);
                                Reply::Write(
                                    c.call_write(&mut *store, config, stream, &batch)
                                        .await?
                                        .map(convert::write_results)
                                        .map_err(guest),
                                )
                            }
                            Op::Map { .. } => {
                                return Err(wasmtime::Error::msg("a connector has no map"));
                            }
                        })
                    }
                    Instance::Mapper(bindings) => {
                        let m = bindings.nexo_connector_mapping();
                        match op {
                            Op::Instantiate => Ok(Reply::Instantiated),
                            Op::Map { config, batch } => {
                                let batch = $map_in(batch);
                                Ok(Reply::$reply(
                                    m.call_map(&mut *store, config, &batch)
                                        .await?
                                        .map($map_out)
                                        .map_err(guest),
                                ))
                            }
                            _ => Err(wasmtime::Error::msg("a mapper only has map")),
                        }
                    }
                }
            }
        }
    };
}
pub(crate) use world_calls;

pub mod v1_0;
pub mod v1_1;

/// The bindings of the newest served version, for code that must talk to a
/// raw instance (the runtime benchmark); the engine goes through
/// [`crate::plugin`] instead.
pub use v1_1::{connector, mapper};

use wasmtime::component::{Component, Linker};

use crate::inspect::{ComponentInfo, WorldKind};
use crate::plugin::call::{Op, Reply};
use crate::state::PluginState;

/// The `nexo:connector` package versions this host serves, oldest first,
/// each with a folder `wit/<version>/` and a bindings module here (whose
/// `VERSION` is the entry). The one list of the host's contract versions: the
/// load, pack and review checks and their messages derive from it.
pub const SERVED: &[&str] = &[v1_0::VERSION, v1_1::VERSION];

/// The bindings module that serves a component: each minor version has its
/// own types (a 1.1 variant has cases 1.0's lacks), so a component is linked
/// and called with exactly the bindings of the `major.minor` it was built
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    V1_0,
    V1_1,
}

impl Served {
    /// The bindings for a component built against `version` (`None`: it
    /// names none, and the newest bindings' linker will say what it lacks).
    fn of(version: Option<&str>) -> Option<Served> {
        match version.map(major_minor) {
            None => Some(Served::V1_1),
            Some(Some((1, 0))) => Some(Served::V1_0),
            Some(Some((1, 1))) => Some(Served::V1_1),
            Some(_) => None,
        }
    }
}

/// One linker per served version and world, built once per engine.
pub(crate) struct Linkers {
    v1_0: [Linker<PluginState>; 2],
    v1_1: [Linker<PluginState>; 2],
}

impl Linkers {
    /// Every served version's linkers: WASI 0.2 (which grants nothing by
    /// default) and the world's `nexo:connector` imports.
    pub(crate) fn new(engine: &wasmtime::Engine) -> wasmtime::Result<Self> {
        use WorldKind::{Connector, Mapper};
        Ok(Linkers {
            v1_0: [
                v1_0::linker(engine, Connector)?,
                v1_0::linker(engine, Mapper)?,
            ],
            v1_1: [
                v1_1::linker(engine, Connector)?,
                v1_1::linker(engine, Mapper)?,
            ],
        })
    }
}

/// A component linked and type-checked against its version's world, ready
/// to instantiate once per call.
pub(crate) enum Pre {
    V1_0(v1_0::Pre),
    V1_1(v1_1::Pre),
}

impl Pre {
    /// Link `component` (described by `info`) with its version's bindings.
    pub(crate) fn new(
        linkers: &Linkers,
        component: &Component,
        info: &ComponentInfo,
    ) -> wasmtime::Result<Self> {
        let world = info.world;
        let slot = match world {
            WorldKind::Connector => 0,
            WorldKind::Mapper => 1,
        };
        let version = info.wit_version();
        match Served::of(version) {
            Some(Served::V1_0) => Ok(Pre::V1_0(v1_0::Pre::new(
                &linkers.v1_0[slot],
                component,
                world,
            )?)),
            Some(Served::V1_1) => Ok(Pre::V1_1(v1_1::Pre::new(
                &linkers.v1_1[slot],
                component,
                world,
            )?)),
            None => Err(wasmtime::Error::msg(format!(
                "no bindings serve nexo:connector {}; this host serves {}",
                version.unwrap_or("?"),
                served_text()
            ))),
        }
    }

    /// Whether the contract lets the host call one instance more than
    /// once: 1.1 says a plugin must not rely on its memory surviving, or
    /// not surviving, from one call to the next within a run; 1.0 says
    /// nothing, so a 1.0 plugin gets a fresh instance for every call.
    pub(crate) fn reusable(&self) -> bool {
        matches!(self, Pre::V1_1(_))
    }

    /// An instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V1_0(pre) => Instance::V1_0(pre.instantiate(store).await?),
            Pre::V1_1(pre) => Instance::V1_1(pre.instantiate(store).await?),
        })
    }
}

/// An instance of a component in one store, through its version's
/// bindings.
pub(crate) enum Instance {
    V1_0(v1_0::Instance),
    V1_1(v1_1::Instance),
}

impl Instance {
    /// Make the call `op`, its reply in the engine's types. A trap or limit
    /// hit is the `Err`; an error the guest returned is a value inside the
    /// reply.
    pub(crate) async fn call(
        &self,
        store: &mut wasmtime::Store<PluginState>,
        op: Op<'_>,
    ) -> wasmtime::Result<Reply> {
        match self {
            Instance::V1_0(i) => i.call(store, op).await,
            Instance::V1_1(i) => i.call(store, op).await,
        }
    }
}

/// `major.minor` of a version string; `None` when it is not `X.Y.Z`.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?;
    // A pre-release or build tail (`1.0.0-rc.1`) is not a released
    // contract: only plain `X.Y.Z` is served.
    patch.parse::<u64>().ok()?;
    parts.next().is_none().then_some((major, minor))
}

/// Whether this host serves a component built against `version`: the
/// same major as a served version, at that version's minor or below (a
/// component built against a newer minor may import what this host lacks).
pub fn serves(version: &str) -> bool {
    let Some((major, minor)) = major_minor(version) else {
        return false;
    };
    SERVED
        .iter()
        .filter_map(|v| major_minor(v))
        .any(|(m, n)| m == major && minor <= n)
}

/// What this host serves, for messages: `1.x` (`1.x, 2.x` with two majors),
/// the newest served minor of each major given in full.
pub fn served_text() -> String {
    let mut majors: Vec<(u64, &str)> = Vec::new();
    for v in SERVED {
        if let Some((major, _)) = major_minor(v) {
            match majors.iter_mut().find(|(m, _)| *m == major) {
                Some(entry) => entry.1 = v,
                None => majors.push((major, v)),
            }
        }
    }
    majors
        .iter()
        .map(|(major, newest)| format!("{major}.x (up to {newest})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_version_is_plain_semver_oldest_first() {
        let parsed: Vec<_> = SERVED.iter().map(|v| major_minor(v)).collect();
        assert!(parsed.iter().all(Option::is_some), "{SERVED:?}");
        assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{SERVED:?}");
    }

    #[test]
    fn a_served_major_is_served_up_to_its_newest_minor_and_no_further() {
        assert!(serves("1.0.0"));
        assert!(serves("1.0.3"));
        assert!(serves("1.1.0"));
        assert!(!serves("1.2.0"), "no 1.2 folder yet");
        assert!(!serves("2.0.0"));
        assert!(!serves("0.9.0"));
        assert!(!serves("1.0.0-rc.1"));
        assert!(!serves("1.0"));
        assert!(!serves("one"));
    }

    #[test]
    fn the_served_text_names_each_major_and_its_newest_version() {
        assert_eq!(served_text(), "1.x (up to 1.1.0)");
    }

    #[test]
    fn each_minor_is_served_by_its_own_bindings() {
        assert_eq!(Served::of(Some("1.0.0")), Some(Served::V1_0));
        assert_eq!(Served::of(Some("1.0.7")), Some(Served::V1_0));
        assert_eq!(Served::of(Some("1.1.0")), Some(Served::V1_1));
        assert_eq!(Served::of(Some("1.2.0")), None);
        assert_eq!(Served::of(Some("2.0.0")), None);
    }
}

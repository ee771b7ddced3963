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
use crate::sandbox::credential::Credential;
use crate::sandbox::http::{HttpSettings, OutboundHttp};
use crate::sandbox::kv::KvStore;
use crate::sandbox::overrides::Overrides;
use crate::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy, PatternError};
use crate::sandbox::redact;
use crate::sandbox::secrets::{BoundSecret, FreshSecret, SecretSet, SecretValue};
use crate::state::SandboxEvent;

pub use types::{
    Capabilities, MapOutcome, Operation, Page, Record, SecretRequirement, Spec, StreamInfo,
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
    /// Secrets whose value the host keeps fresh (OAuth 2.0 access tokens),
    /// by name; one here takes the place of a static value of that name.
    pub credentials: BTreeMap<String, Arc<dyn Credential>>,
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
    beyond_approval: Vec<String>,
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
    /// Instances kept between calls (contract 1.1 only), shared by this
    /// plugin's clones and dropped with the last: within a run.
    warm: call::WarmPool,
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
    /// Its manifest asks for more memory than the admin's cap (lowered
    /// since it was installed).
    #[error("plugin {plugin}: {source}")]
    MemoryOverCap {
        /// Plugin.
        plugin: PluginRef,
        /// The ask and the cap.
        source: crate::limits::MemoryOverCap,
    },
}

mod authority;
mod mapper;
mod output;
use output::{scrub_page, scrub_write_results};
pub(crate) mod call;
mod payload;
pub mod types;

pub use payload::{
    CheckedPage, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, PayloadFault, RejectedRecord, check_payload,
};

pub use authority::Approved;
use call::{Op, Reply};

impl ConnectorPlugin {
    /// Open a local connector (a file being developed or inspected, no
    /// install behind it): call `spec`, then build its policy from what it
    /// declares intersected with what `sandbox` grants.
    pub async fn open(plugin: &LoadedPlugin, sandbox: Sandbox) -> Result<Self, OpenError> {
        Self::open_with(plugin, sandbox, None).await
    }

    /// Open an installed connector under what the admin approved at
    /// install. `approved` is its only authority: origins, secret bindings,
    /// key-value quota and memory come from it (intersected with `sandbox`);
    /// what `spec()` asks beyond it is ignored and reported
    /// ([`ConnectorPlugin::beyond_approval`]).
    pub async fn open_approved(
        plugin: &LoadedPlugin,
        mut sandbox: Sandbox,
        approved: &Approved,
    ) -> Result<Self, OpenError> {
        sandbox.limits.memory_bytes =
            sandbox
                .limits
                .memory_for(approved.memory_bytes)
                .map_err(|source| OpenError::MemoryOverCap {
                    plugin: sandbox.plugin.clone(),
                    source,
                })?;
        Self::open_with(plugin, sandbox, Some(approved)).await
    }

    async fn open_with(
        plugin: &LoadedPlugin,
        sandbox: Sandbox,
        approved: Option<&Approved>,
    ) -> Result<Self, OpenError> {
        if plugin.info().world != WorldKind::Connector {
            return Err(OpenError::WrongWorld {
                plugin: sandbox.plugin.clone(),
                actual: plugin.info().world,
                expected: WorldKind::Connector,
            });
        }
        // Every value opened for a plugin joins the process-wide set the
        // host's sinks (logs, errors, records, run log) scrub with.
        for (name, value) in &sandbox.secrets {
            redact::register(name, value);
        }
        let bare = Core {
            plugin: plugin.clone(),
            sandbox: sandbox.clone(),
            http: None,
            kv: None,
            warm: Default::default(),
        };
        let spec = match bare.invoke(Op::Spec).await.result? {
            Reply::Spec(s) => s,
            _ => return Err(OpenError::Spec(bare.mismatch("spec"))),
        };
        let caps = &spec.capabilities;
        let (origins, bindings, kv_declared, beyond_approval) = match approved {
            Some(a) => {
                let excess = a.excess(caps);
                if !excess.is_empty() {
                    tracing::warn!(
                        plugin = %sandbox.plugin,
                        asked = ?excess,
                        "the plugin's spec() asks for more than was approved at install; ignored"
                    );
                }
                // The connection's own origins, for a plugin approved to
                // reach the server named on each connection.
                let on: Vec<String> = sandbox
                    .grants
                    .http
                    .iter()
                    .map(|g| g.pattern.to_string())
                    .collect();
                (a.origins_on(&on), a.secrets_on(&on), a.kv_bytes, excess)
            }
            None => (
                caps.http_origins.clone(),
                caps.secrets
                    .iter()
                    .map(|s| (s.name.clone(), s.origins.clone()))
                    .collect(),
                caps.kv_bytes,
                Vec::new(),
            ),
        };
        let bad = |source| OpenError::BadDeclaration {
            plugin: sandbox.plugin.clone(),
            source,
        };
        let declared = origins
            .iter()
            .map(|o| OriginPattern::parse(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let mut secrets = SecretSet::default();
        for (name, origins) in &bindings {
            if let Some(credential) = sandbox.credentials.get(name) {
                let origins = origins
                    .iter()
                    .map(|o| OriginPattern::parse(o))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                secrets.insert_fresh(
                    name.clone(),
                    FreshSecret {
                        credential: credential.clone(),
                        origins,
                    },
                );
            } else if let Some(value) = sandbox.secrets.get(name) {
                let origins = origins
                    .iter()
                    .map(|o| OriginPattern::parse(o))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                secrets.insert(
                    name.clone(),
                    BoundSecret {
                        value: value.clone(),
                        origins,
                    },
                );
            }
        }
        let mut policy = OutboundPolicy::new(declared, sandbox.grants.http.clone());
        if approved.is_some_and(|a| a.connection_origins) {
            policy = policy.for_connection_origins();
        }
        let settings = HttpSettings {
            timeout: sandbox.limits.http_timeout(),
            max_response_bytes: sandbox.limits.http_response_bytes,
            ..HttpSettings::default()
        };
        let http = OutboundHttp::new(policy, secrets, settings).map_err(|e| OpenError::Http {
            plugin: sandbox.plugin.clone(),
            reason: e.to_string(),
        })?;
        let quota = kv_declared.min(sandbox.grants.kv_bytes);
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
                warm: Default::default(),
            },
            spec,
            beyond_approval,
        })
    }

    /// What the plugin's `spec()` asked for beyond its approval at install,
    /// one sentence each: ignored, and worth an admin's look (a plugin
    /// whose behaviour changed after install, or a manifest that lied).
    pub fn beyond_approval(&self) -> &[String] {
        &self.beyond_approval
    }

    /// The same plugin, with each of its outbound requests waiting for a
    /// token of `budget` (shared with every other instance of the same
    /// connection) before it goes out.
    pub fn with_request_budget(mut self, budget: Arc<Budget>) -> Self {
        self.core.http = self.core.http.map(|http| http.with_budget(budget));
        self
    }

    /// The same plugin, with each request to an origin `overrides` names
    /// sent to that override's physical origin (a sandbox connection's
    /// `--origin-override`); checks and secrets stay on the logical origin.
    pub fn with_origin_overrides(mut self, overrides: Overrides) -> Result<Self, OpenError> {
        if let Some(http) = self.core.http.take() {
            self.core.http = Some(
                http.with_overrides(overrides)
                    .map_err(|e| OpenError::Http {
                        plugin: self.core.sandbox.plugin.clone(),
                        reason: e.to_string(),
                    })?,
            );
        }
        Ok(self)
    }

    /// The spec returned at open.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Who the plugin is.
    pub fn plugin(&self) -> &PluginRef {
        &self.core.sandbox.plugin
    }

    /// Instantiate in a fresh store without calling anything (a 1.1
    /// plugin's instance is then kept for its next call).
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
    /// naming it). Secret values in it are replaced by `[redacted:NAME]`
    /// before anything maps, writes or stores it. The sync engine uses
    /// [`ConnectorPlugin::read_checked`].
    pub async fn read(&self, config: &str, stream: &str, state: Option<&str>) -> Outcome<Page> {
        let label = Op::Read {
            config,
            stream,
            state,
        }
        .label();
        let Outcome {
            result,
            events,
            elapsed,
        } = self.read_checked(config, stream, state).await;
        let result = result.and_then(|checked| match checked.rejected.first() {
            None => Ok(checked.page),
            Some(bad) => Err(self.core.invalid_payload(label, &bad.record, &bad.fault)),
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
        let Outcome {
            result,
            events,
            elapsed,
        } = self.core.invoke(call).await.then(&self.core, |r| match r {
            Reply::Read(r) => Some(r),
            _ => None,
        });
        Outcome {
            result: result.map(|mut page| {
                scrub_page(&mut page);
                CheckedPage::of(page)
            }),
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
        if let Ok(results) = &mut out.result {
            scrub_write_results(results);
        }
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

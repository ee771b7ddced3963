//! # nexo-kit: the conformance kit
//!
//! `nexo plugin test` runs a plugin through named checks against a live
//! system, a vendor's sandbox service, or recorded fixtures: its spec, its
//! credentials check, reads to the end and resumed from every saved state,
//! idempotent writes, faults injected between it and the system, what its
//! sandbox saw, and — for a mapper — determinism, totality and time. Each
//! check has a name and a verdict that says what to fix ([`report`]).
//!
//! **Owns** the checks, the fault-injecting and recording proxy
//! ([`proxy`]) and the suite file ([`suite`]). **Must not touch** how a
//! plugin is run: it calls the runtime's `ConnectorPlugin` and
//! `MapperPlugin` with a sandbox built from the admin's flags, exactly as
//! `nexo plugin call` does, only with each granted origin sent through the
//! proxy.

mod connector;
pub mod drive;
pub mod logs;
mod mapper;
pub mod proxy;
pub mod report;
pub mod suite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::instrument::WithSubscriber as _;

use nexo_runtime::inspect::WorldKind;
use nexo_runtime::sandbox::kv::{KvBackend, KvError, KvStore, MemoryKv};
use nexo_runtime::sandbox::overrides::{Overrides, exact_origin};
use nexo_runtime::sandbox::policy::HttpGrant;
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_runtime::{
    ConnectorPlugin, Grants, Limits, LoadedPlugin, MapperPlugin, PluginRef, Sandbox,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use report::{Check, Format, Report, Verdict};
pub use suite::Suite;

use proxy::{Exchange, Proxy};

/// The plugin under test and the admin's flags for it.
#[derive(Clone)]
pub struct Target {
    /// The component.
    pub component: LoadedPlugin,
    /// Who it is (for messages).
    pub plugin: PluginRef,
    /// Its limits.
    pub limits: Limits,
    /// HTTP grants, as `plugin call` builds them (an overridden origin
    /// granted by its override).
    pub grants: Vec<HttpGrant>,
    /// Origin overrides `FROM` → `TO` (a sandbox service standing in for
    /// the vendor's API).
    pub overrides: Vec<(String, String)>,
    /// Secret values by name.
    pub secrets: BTreeMap<String, SecretValue>,
    /// The plugin's config (a JSON object).
    pub config: String,
    /// Key-value bytes granted (kept in memory for the suite, empty at its
    /// start).
    pub kv_bytes: u64,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("plugin", &self.plugin)
            .field("grants", &self.grants)
            .field("overrides", &self.overrides)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where answers come from.
#[derive(Debug, Clone)]
pub enum Mode {
    /// The system, live.
    Live,
    /// The system, live, with every exchange saved to the folder.
    Record(PathBuf),
    /// The folder's recording, with no system at all.
    Replay(PathBuf),
}

/// A suite that could not run at all (a failing check is a verdict, not
/// this).
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The plugin could not be opened.
    #[error("cannot open {plugin}: {reason}")]
    Open {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A proxy could not start.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// An origin the proxy would stand for is not one exact origin.
    #[error("{0}")]
    Origin(String),
    /// The recording folder.
    #[error("fixtures {path}: {reason}")]
    Fixtures {
        /// The folder or file.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// The recording's files.
const EXCHANGES: &str = "exchanges.json";
const RUN: &str = "run.json";

/// Runs the suite on `target`; every check's verdict.
pub async fn run(target: &Target, suite: &Suite, mode: &Mode) -> Result<Report, KitError> {
    let mut target = target.clone();
    if let Mode::Replay(_) = mode
        && target.component.info().world == WorldKind::Connector
    {
        // A vendor's CI replays without the account's secrets: each one the
        // plugin declares and the flags leave out gets a stand-in (the
        // recording holds none of the real ones anyway).
        let plain = Sandbox {
            plugin: target.plugin.clone(),
            limits: target.limits.clone(),
            grants: Grants::default(),
            secrets: BTreeMap::new(),
            credentials: Default::default(),
            kv: None,
        };
        let declared = ConnectorPlugin::open(&target.component, plain)
            .await
            .map_err(|e| KitError::Open {
                plugin: target.plugin.to_string(),
                reason: e.to_string(),
            })?
            .spec()
            .capabilities
            .secrets
            .clone();
        for s in declared {
            target
                .secrets
                .entry(s.name.clone())
                .or_insert_with(|| SecretValue::new(format!("nexo-kit-replay-{}", s.name)));
        }
    }
    let target = &target;
    let mut env = Env::start(target, mode).await?;
    let mut report = Report {
        plugin: target.plugin.to_string(),
        mode: match mode {
            Mode::Live => "live",
            Mode::Record(_) => "record",
            Mode::Replay(_) => "replay",
        }
        .into(),
        checks: Vec::new(),
        log: Vec::new(),
    };
    let (dispatch, captured) = logs::capture();
    match target.component.info().world {
        WorldKind::Mapper => {
            mapper::run(&env, suite, &mut report)
                .with_subscriber(dispatch)
                .await?;
            report
                .log
                .extend(captured.take().into_iter().map(|l| l.text));
        }
        _ => {
            connector::run(&mut env, suite, &mut report, &captured)
                .with_subscriber(dispatch)
                .await?
        }
    }
    env.finish(mode)?;
    Ok(report)
}

/// The plugin's world for the duration of a suite: a proxy per granted
/// exact origin, and a way to open the plugin through them.
pub(crate) struct Env {
    target: Target,
    /// (logical origin, its proxy).
    proxies: Vec<(String, Proxy)>,
    /// Unique part of sample values (`{{run}}`).
    pub(crate) run_id: String,
    /// The suite's key-value data, shared by every open of the plugin.
    kv: KvStore,
    /// Its operations, counted.
    kv_used: Arc<CountingKv>,
}

/// An in-memory key-value backend that counts the operations made on it,
/// so the kit can tell whether a plugin used the storage it asked for.
#[derive(Debug, Default)]
pub(crate) struct CountingKv {
    inner: MemoryKv,
    ops: AtomicU64,
}

impl CountingKv {
    fn count(&self) {
        self.ops.fetch_add(1, Ordering::SeqCst);
    }

    /// Operations so far.
    pub(crate) fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }
}

impl KvBackend for CountingKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.count();
        self.inner.get(namespace, key)
    }

    fn set_within(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), KvError> {
        self.count();
        self.inner.set_within(namespace, key, value, quota)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.count();
        self.inner.delete(namespace, key)
    }

    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        self.count();
        self.inner.list_keys(namespace, prefix)
    }
}

impl Env {
    async fn start(target: &Target, mode: &Mode) -> Result<Env, KitError> {
        let mut upstreams: BTreeMap<String, String> = BTreeMap::new();
        for g in &target.grants {
            if g.pattern.is_exact_host() && g.pattern.port.is_some() {
                let o = exact_origin("FROM", &g.pattern.to_string())
                    .map_err(|e| KitError::Origin(e.to_string()))?
                    .to_string();
                upstreams.insert(o.clone(), o);
            }
        }
        for (from, to) in &target.overrides {
            let o = exact_origin("FROM", from)
                .map_err(|e| KitError::Origin(e.to_string()))?
                .to_string();
            upstreams.insert(o, to.clone());
        }
        let secrets: Vec<(String, String)> = target
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        let kv_used = Arc::new(CountingKv::default());
        let mut proxies = Vec::new();
        let run_id = match mode {
            Mode::Replay(dir) => {
                let recorded = read_fixtures(dir)?;
                let mut by = proxy::by_origin(recorded.exchanges);
                for origin in upstreams.keys() {
                    let ex = by.remove(origin).unwrap_or_default();
                    proxies.push((
                        origin.clone(),
                        Proxy::replay(origin, ex, secrets.clone()).await?,
                    ));
                }
                recorded.run_id
            }
            Mode::Live | Mode::Record(_) => {
                let record = matches!(mode, Mode::Record(_));
                for (origin, upstream) in &upstreams {
                    let url = url::Url::parse(upstream)
                        .map_err(|e| KitError::Origin(format!("{upstream}: {e}")))?;
                    proxies.push((
                        origin.clone(),
                        Proxy::live(origin, url, record, secrets.clone()).await?,
                    ));
                }
                random_id()
            }
        };
        Ok(Env {
            target: target.clone(),
            proxies,
            run_id,
            kv: KvStore::new(kv_used.clone()),
            kv_used,
        })
    }

    fn sandbox(&self, secrets: BTreeMap<String, SecretValue>) -> Sandbox {
        Sandbox {
            plugin: self.target.plugin.clone(),
            limits: self.target.limits.clone(),
            grants: Grants {
                http: self.target.grants.clone(),
                kv_bytes: self.target.kv_bytes,
            },
            secrets,
            credentials: Default::default(),
            kv: (self.target.kv_bytes > 0)
                .then(|| (self.kv.clone(), format!("{}/kit", self.target.plugin.id))),
        }
    }

    /// The connector, its granted origins sent through the proxies, with
    /// `secrets` (the admin's, or wrong ones).
    pub(crate) async fn connector(
        &self,
        secrets: BTreeMap<String, SecretValue>,
    ) -> Result<ConnectorPlugin, KitError> {
        let pairs: Vec<(String, String)> = self
            .proxies
            .iter()
            .map(|(origin, p)| (origin.clone(), p.url()))
            .collect();
        let overrides = Overrides::parse(pairs.iter().map(|(a, b)| (a, b)))
            .map_err(|e| KitError::Origin(e.to_string()))?;
        let open_err = |reason: String| KitError::Open {
            plugin: self.target.plugin.to_string(),
            reason,
        };
        ConnectorPlugin::open(&self.target.component, self.sandbox(secrets))
            .await
            .map_err(|e| open_err(e.to_string()))?
            .with_origin_overrides(overrides)
            .map_err(|e| open_err(e.to_string()))
    }

    /// The mapper.
    pub(crate) fn mapper(&self) -> Result<MapperPlugin, KitError> {
        MapperPlugin::open(
            &self.target.component,
            self.sandbox(self.target.secrets.clone()),
        )
        .map_err(|e| KitError::Open {
            plugin: self.target.plugin.to_string(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Key-value operations the plugin made.
    pub(crate) fn kv_ops(&self) -> u64 {
        self.kv_used.ops()
    }

    /// The proxies, by logical origin.
    pub(crate) fn proxies(&self) -> &[(String, Proxy)] {
        &self.proxies
    }

    /// Arms `fault` on every proxy; the plugin's next matching request to
    /// any granted origin gets it.
    pub(crate) fn arm(&self, fault: proxy::Fault, only: proxy::Only) {
        for (_, p) in &self.proxies {
            p.arm(fault, only);
        }
    }

    /// Disarms every proxy; whether the fault fired on any.
    pub(crate) fn disarm(&self) -> bool {
        let mut fired = false;
        for (_, p) in &self.proxies {
            fired |= p.disarm();
        }
        fired
    }

    fn finish(&self, mode: &Mode) -> Result<(), KitError> {
        match mode {
            Mode::Record(dir) => {
                let exchanges: Vec<Exchange> = self
                    .proxies
                    .iter()
                    .flat_map(|(_, p)| p.recorded())
                    .collect();
                write_fixtures(dir, &self.run_id, &exchanges)?;
            }
            Mode::Replay(_) => {
                let unused: usize = self.proxies.iter().map(|(_, p)| p.unused()).sum();
                if unused > 0 {
                    tracing::info!(unused, "recorded exchanges the replay did not ask for");
                }
            }
            Mode::Live => {}
        }
        Ok(())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RunFile {
    run_id: String,
}

struct Recorded {
    run_id: String,
    exchanges: Vec<Exchange>,
}

fn write_fixtures(dir: &Path, run_id: &str, exchanges: &[Exchange]) -> Result<(), KitError> {
    let fail = |path: &Path, e: &dyn std::fmt::Display| KitError::Fixtures {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text + "\n").map_err(|e| fail(&path, &e))
    };
    write(EXCHANGES, pretty(&exchanges))?;
    write(
        RUN,
        pretty(&RunFile {
            run_id: run_id.to_string(),
        }),
    )
}

fn read_fixtures(dir: &Path) -> Result<Recorded, KitError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| KitError::Fixtures {
            path: path.display().to_string(),
            reason: format!(
                "{e} (record fixtures first with --record {})",
                dir.display()
            ),
        })
    };
    let bad = |name: &str, e: serde_json::Error| KitError::Fixtures {
        path: dir.join(name).display().to_string(),
        reason: format!("not a recording of nexo plugin test: {e}"),
    };
    let exchanges = serde_json::from_str(&read(EXCHANGES)?).map_err(|e| bad(EXCHANGES, e))?;
    let run: RunFile = serde_json::from_str(&read(RUN)?).map_err(|e| bad(RUN, e))?;
    Ok(Recorded {
        run_id: run.run_id,
        exchanges,
    })
}

/// `value` as pretty JSON (what serde_json cannot print is no fixture).
fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn random_id() -> String {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

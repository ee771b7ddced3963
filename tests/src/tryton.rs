//! A host for the Tryton connector's end-to-end tests: a real trytond
//! (`nexo_sandbox::tryton`, installed by `cargo xtask setup`), the shipped
//! plugins installed from their manifests as signed bundles, connections
//! and the sync engine.

use std::path::Path;
use std::sync::Arc;

use nexo::bundle::keys::SecretKey;
use nexo::connections::{Connections, NewConnection};
use nexo::registry::Registry;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::sync::store::SyncStore;
use nexo::sync::{Engine, Pipeline, RunOptions, RunReport};
use nexo_sandbox::hubspot::{HubSpotSandbox, ObjectType};
use nexo_sandbox::tryton::Tryton;
use serde_json::Value;

use crate::{programs, runtime, synckit};

/// Starts a real Tryton with a fresh database under `dir`; fails the test
/// (never skips it) when trytond is not installed.
pub async fn start(dir: &Path) -> Tryton {
    match Tryton::start(dir).await {
        Ok(t) => t,
        Err(e) => panic!("cannot start Tryton: {e}\n(run `cargo xtask setup` to install it)"),
    }
}

/// The shipped plugins, by id: manifest folder and component.
const PLUGINS: &[(&str, &str)] = &[
    ("tryton", programs::TRYTON),
    ("hledger", programs::HLEDGER),
    ("hubspot", programs::HUBSPOT),
    ("xero", programs::XERO),
    ("deal-to-invoice", programs::DEAL_TO_INVOICE),
    ("field-mapper", programs::FIELD_MAPPER),
];

/// A data directory with the shipped plugins installed and the engine.
#[allow(missing_debug_implementations)]
pub struct Host {
    /// Data directory (also holds the Tryton databases and logs).
    pub dir: tempfile::TempDir,
    /// Database.
    pub db: Database,
    /// Connections.
    pub connections: Connections,
    /// Engine.
    pub engine: Engine,
}

impl Host {
    /// A fresh host with the Tryton, hledger, HubSpot and Xero connectors
    /// and the deal-to-invoice and field-mapper mappers installed.
    pub async fn new() -> Host {
        Host::with_plugins(PLUGINS).await
    }

    /// A fresh host with `plugins` installed, each as (folder under
    /// `plugins/` whose manifest it is packed with, component path).
    pub async fn with_plugins(plugins: &[(&str, &str)]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("nexo.db")).unwrap();
        let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
        let key = SecretKey::generate("Nexo").unwrap();
        db.trust_key(&key.public()).unwrap();
        for (folder, wasm) in plugins {
            synckit::install_shipped(&registry, &key, folder, wasm).await;
        }
        let sealer = Sealer::from_env_or_file(&dir.path().join("secret.key")).unwrap();
        let connections = Connections::new(registry.clone(), sealer);
        let store: Arc<dyn SyncStore> = Arc::new(db.clone());
        let engine = Engine::new(
            store,
            connections.clone(),
            registry,
            Some(dir.path().join("locks")),
        );
        Host {
            dir,
            db,
            connections,
            engine,
        }
    }

    /// A sandbox connection `name` of `plugin` to `origin` (granted as a
    /// private address), with one secret.
    pub fn connect(
        &self,
        name: &str,
        plugin: &str,
        origin: &str,
        config: Value,
        secret: (&str, &str),
    ) {
        self.connect_with(name, plugin, origin, config, Some(secret));
    }

    /// [`Host::connect`] with one secret or none.
    pub fn connect_with(
        &self,
        name: &str,
        plugin: &str,
        origin: &str,
        config: Value,
        secret: Option<(&str, &str)>,
    ) {
        self.connections
            .add(NewConnection {
                name: name.into(),
                plugin_id: plugin.into(),
                pinned_version: None,
                environment: Environment::Sandbox,
                config,
                secrets: secret
                    .map(|(k, v)| (k.to_string(), SecretValue::new(v)))
                    .into_iter()
                    .collect(),
                grants: ConnectionGrants {
                    http: vec![],
                    private_http: vec![origin.to_string()],
                    ..Default::default()
                },
            })
            .unwrap();
    }

    /// A sandbox connection `name` to a vendor's API (`logical`, e.g.
    /// `https://api.xero.com`) whose origin override sends it to the
    /// sandbox at `physical`, as `nexo connection add --origin-override
    /// LOGICAL=PHYSICAL` makes it: no grant of its own, no private grant.
    pub fn connect_overridden(
        &self,
        name: &str,
        plugin: &str,
        (logical, physical): (&str, &str),
        config: Value,
        secret: (&str, &str),
    ) {
        self.connections
            .add(NewConnection {
                name: name.into(),
                plugin_id: plugin.into(),
                pinned_version: None,
                environment: Environment::Sandbox,
                config,
                secrets: [(secret.0.to_string(), SecretValue::new(secret.1))]
                    .into_iter()
                    .collect(),
                grants: ConnectionGrants {
                    origin_overrides: [(logical.to_string(), physical.to_string())]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                },
            })
            .unwrap();
    }

    /// A connection `name` to a Tryton server.
    pub fn connect_tryton(&self, name: &str, server: &Tryton, page_size: u32) {
        self.connect(
            name,
            "nexo/tryton",
            server.origin(),
            server.connector_config(page_size),
            ("application_key", server.application_key()),
        );
    }

    /// Saves a pipeline from TOML.
    pub async fn apply(&self, text: &str) {
        let p = Pipeline::from_toml(text, "test").unwrap();
        self.engine.apply(&p).await.unwrap();
    }

    /// A dry run of `name` then the run, asserting the dry run predicted
    /// it ([`synckit::predicted_run`]); the run's report.
    pub async fn predicted_run(&self, name: &str) -> RunReport {
        synckit::predicted_run(&self.engine, &self.db, name).await
    }

    /// Runs a pipeline; a run that fails fails the test, with its error.
    pub async fn run(&self, name: &str) -> RunReport {
        let report = self.engine.run(name, RunOptions::default()).await.unwrap();
        assert!(
            report.error.is_none(),
            "run of {name} failed: {:?} {:?}",
            report.error,
            report.counts
        );
        report
    }
}

/// `n` won EUR deals in `hub` without line items (one invoice line from
/// `amount`: 100.00, 107.10, 114.20…), named `Deal 0`…, each billed to one
/// of the sandbox's companies; their ids.
pub fn won_deals(hub: &HubSpotSandbox, n: u64) -> Vec<u64> {
    let companies: Vec<u64> = hub
        .objects(ObjectType::Companies)
        .iter()
        .map(|c| c.id)
        .collect();
    assert!(!companies.is_empty(), "the sandbox needs companies");
    (0..n)
        .map(|i| {
            let amount = format!("{}.{:02}", 100 + i * 7, i * 10);
            let deal = hub
                .create(
                    ObjectType::Deals,
                    &[
                        ("dealname", &format!("Deal {i}")),
                        ("amount", &amount),
                        ("dealstage", "closedwon"),
                        ("pipeline", "default"),
                        ("closedate", "2026-03-01T00:00:00.000Z"),
                        ("deal_currency_code", "EUR"),
                    ],
                )
                .unwrap();
            let company = companies[i as usize % companies.len()];
            hub.associate(ObjectType::Deals, deal.id, ObjectType::Companies, company);
            deal.id
        })
        .collect()
}

/// A pipeline from the `hubspot` connection's deals through the
/// deal-to-invoice mapper (`mapper` is its config's inner TOML, e.g.
/// `emit = "invoice", status = "draft"`) to `destination`'s `stream`;
/// `extra` (top-level keys, then tables) goes right after `entity`.
pub fn deals_pipeline(
    name: &str,
    entity: &str,
    mapper: &str,
    destination: &str,
    stream: &str,
    extra: &str,
) -> String {
    format!(
        "name = \"{name}\"\nentity = \"{entity}\"\n{extra}\n\
         [source]\nconnection = \"hubspot\"\nstream = \"deals\"\n\
         [[mappers]]\nplugin = \"nexo/deal-to-invoice\"\nconfig = {{ {mapper} }}\n\
         [destination]\nconnection = \"{destination}\"\nstream = \"{stream}\"\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n"
    )
}

/// Every deal's close time moves within its day: the deals are read and
/// mapped again, to the same invoices.
pub async fn touch_deals(hub: &HubSpotSandbox, deals: &[u64]) {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for d in deals {
        hub.edit(
            ObjectType::Deals,
            *d,
            &[("closedate", "2026-03-01T12:00:00.000Z")],
        )
        .unwrap();
    }
}

//! A host for the Tryton connector's end-to-end tests: a real trytond
//! (`nexo::vendors::tryton`, installed by `cargo xtask setup`), the shipped
//! plugins installed from their manifests as signed bundles, connections
//! and the sync engine.

use std::collections::BTreeMap;
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
use nexo::vendors::tryton::Tryton;
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
    /// A fresh host with the Tryton, HubSpot and Xero connectors and the
    /// deal-to-invoice and field-mapper mappers installed.
    pub async fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("nexo.db")).unwrap();
        let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
        let key = SecretKey::generate("Nexo").unwrap();
        db.trust_key(&key.public()).unwrap();
        for (folder, wasm) in PLUGINS {
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
        self.connections
            .add(NewConnection {
                name: name.into(),
                plugin_id: plugin.into(),
                pinned_version: None,
                environment: Environment::Sandbox,
                config,
                secrets: BTreeMap::from([(secret.0.to_string(), SecretValue::new(secret.1))]),
                grants: ConnectionGrants {
                    http: vec![],
                    private_http: vec![origin.to_string()],
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

//! A host set up for sync tests: a temporary data directory, the example
//! TinyCRM connector and the test mapper installed as signed bundles, two
//! real TinyCRM servers on 127.0.0.1 with a connection to each, and the
//! sync engine over it all.

use std::collections::BTreeMap;
use std::sync::Arc;

use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::pack;
use nexo::connections::{Connections, NewConnection};
use nexo::registry::{Registry, grant_all};
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::sync::store::{RunFilter, RunRow, RunStore, SyncStore};
use nexo::sync::{Engine, Pipeline, RunOptions, RunReport};
use serde_json::{Value, json};

use crate::{programs, runtime, tinycrm};

/// Bearer token of the test servers.
pub const TOKEN: &str = "sync-kit-token-7d1e";

/// Id of the installed TinyCRM connector.
pub const CRM_PLUGIN: &str = "acme/crm";
/// Id of the installed test mapper.
pub const MAPPER_PLUGIN: &str = "acme/test-mapper";

/// The fixture.
#[allow(missing_debug_implementations)]
pub struct Kit {
    /// Data directory (kept alive with the kit).
    pub dir: tempfile::TempDir,
    /// Database.
    pub db: Database,
    /// Registry.
    pub registry: Registry,
    /// Connections.
    pub connections: Connections,
    /// Engine.
    pub engine: Engine,
    /// Source system.
    pub a: tinycrm::Server,
    /// Destination system.
    pub b: tinycrm::Server,
    /// Vendor key the bundles were signed with.
    pub key: SecretKey,
}

async fn bundle(key: &SecretKey, manifest: &str, wasm: &str) -> Vec<u8> {
    let src: ManifestSource = toml::from_str(manifest).unwrap();
    pack(runtime(), src, std::fs::read(wasm).unwrap(), Some(key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// Install a plugin shipped in this repository as its vendor packs it:
/// `plugins/<folder>/nexo-plugin.toml` with the component `wasm`, signed by
/// `key` (which the caller trusts), granted everything it asks for.
pub async fn install_shipped(registry: &Registry, key: &SecretKey, folder: &str, wasm: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(folder)
        .join("nexo-plugin.toml");
    // As `nexo plugin pack` reads it: with the config schema file it names.
    let src = ManifestSource::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let bytes = pack(runtime(), src, std::fs::read(wasm).unwrap(), Some(key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap();
    let review = registry.review(bytes, "bundle", false, None).await.unwrap();
    let grant = grant_all(review.to_grant());
    registry.install(review, &grant).unwrap();
}

/// The TinyCRM connector's manifest at `version`.
fn crm_manifest(version: &str) -> String {
    format!(
        "id = \"{CRM_PLUGIN}\"\nversion = \"{version}\"\nkind = \"connector\"\ndescription = \"TinyCRM\"\nvendor = \"Acme\"\n\
         [capabilities]\nhttp_origins = [\"https://*:*\", \"http://*:*\"]\n\
         secrets = [{{ name = \"api_token\", description = \"t\", origins = [\"https://*:*\", \"http://*:*\"] }}]\n"
    )
}

/// Install both plugins into `registry`, signed by `key` (trusted).
pub async fn install_plugins(db: &Database, registry: &Registry, key: &SecretKey) {
    db.trust_key(&key.public()).unwrap();
    let crm = crm_manifest("1.0.0");
    let mapper = format!(
        "id = \"{MAPPER_PLUGIN}\"\nversion = \"1.0.0\"\nkind = \"mapper\"\ndescription = \"test mapper\"\nvendor = \"Acme\"\n"
    );
    for (manifest, wasm) in [
        (crm, programs::EXAMPLE_CRM),
        (mapper, programs::TEST_MAPPER),
    ] {
        let review = registry
            .review(bundle(key, &manifest, wasm).await, "bundle", false, None)
            .await
            .unwrap();
        let grant = grant_all(review.to_grant());
        registry.install(review, &grant).unwrap();
    }
}

/// A connection to `server` named `name`.
pub fn connection(name: &str, server: &tinycrm::Server, config: Value) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: CRM_PLUGIN.into(),
        pinned_version: None,
        environment: Environment::Sandbox,
        config,
        secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
        grants: ConnectionGrants {
            http: vec![],
            private_http: vec![server.url()],
            // Explicitly unlimited (`--requests-per-minute unlimited`): the
            // sync tests and the benchmark measure the engine, not the
            // default budget of 600 requests a minute.
            requests_per_minute: Some(0),
            ..Default::default()
        },
    }
}

impl Kit {
    /// A kit whose source holds `a` and destination holds `b`; connections
    /// `crm-a` and `crm-b` page by `page_size` with a 500 ms request timeout.
    pub async fn new(
        a: BTreeMap<String, Value>,
        b: BTreeMap<String, Value>,
        page_size: u32,
    ) -> Kit {
        Kit::with_config(a, b, json!({"page_size": page_size, "timeout_ms": 500})).await
    }

    /// The same with a connector config of its own (`base_url` is added).
    pub async fn with_config(
        a: BTreeMap<String, Value>,
        b: BTreeMap<String, Value>,
        config: Value,
    ) -> Kit {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("nexo.db")).unwrap();
        Kit::over(dir, db, a, b, config).await
    }

    /// The same kit on a fresh PostgreSQL database (this test process's
    /// server, `nexo_db::postgres::testing`), migrated: its URL is
    /// [`Kit::database_url`]. Plugins installed through it are stored in
    /// the database, as on any host sharing it.
    pub async fn on_postgres(
        a: BTreeMap<String, Value>,
        b: BTreeMap<String, Value>,
        page_size: u32,
    ) -> Kit {
        Kit::on_postgres_with_config(a, b, json!({"page_size": page_size, "timeout_ms": 500})).await
    }

    /// [`Kit::on_postgres`] with a connector config of its own (`base_url`
    /// is added), as [`Kit::with_config`] is to [`Kit::new`].
    pub async fn on_postgres_with_config(
        a: BTreeMap<String, Value>,
        b: BTreeMap<String, Value>,
        config: Value,
    ) -> Kit {
        let url = nexo::store::postgres::testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("database-url"), &url).unwrap();
        Kit::over(dir, db, a, b, config).await
    }

    /// The PostgreSQL URL of a kit made by [`Kit::on_postgres`].
    pub fn database_url(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("database-url")).ok()
    }

    /// The secret key its connections' secrets are sealed with, as
    /// `NEXO_SECRET_KEY` takes it (hosts with other data directories need
    /// it).
    pub fn secret_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("secret.key"))
            .unwrap()
            .trim()
            .to_string()
    }

    async fn over(
        dir: tempfile::TempDir,
        db: Database,
        a: BTreeMap<String, Value>,
        b: BTreeMap<String, Value>,
        config: Value,
    ) -> Kit {
        let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
        let key = SecretKey::generate("Acme").unwrap();
        install_plugins(&db, &registry, &key).await;
        // The key file the `nexo` binary also finds in the data directory.
        let sealer = Sealer::from_env_or_file(&dir.path().join("secret.key")).unwrap();
        let connections = Connections::new(registry.clone(), sealer);
        let a = tinycrm::start(a, TOKEN).await;
        let b = tinycrm::start(b, TOKEN).await;
        for (name, server) in [("crm-a", &a), ("crm-b", &b)] {
            let mut config = config.clone();
            config["base_url"] = json!(server.url());
            connections.add(connection(name, server, config)).unwrap();
        }
        let store: Arc<dyn SyncStore> = Arc::new(db.clone());
        let engine = Engine::new(
            store,
            connections.clone(),
            registry.clone(),
            Some(dir.path().join("locks")),
        );
        Kit {
            dir,
            db,
            registry,
            connections,
            engine,
            a,
            b,
            key,
        }
    }

    /// A signed bundle of the TinyCRM connector at `version` (what a vendor
    /// ships).
    pub async fn crm_bundle(&self, version: &str) -> Vec<u8> {
        bundle(&self.key, &crm_manifest(version), programs::EXAMPLE_CRM).await
    }

    /// Upgrade the TinyCRM connector to `version` (same component, new
    /// bundle), as an admin would while the host runs.
    pub async fn upgrade_crm(&self, version: &str) {
        let bytes = bundle(&self.key, &crm_manifest(version), programs::EXAMPLE_CRM).await;
        let review = self
            .registry
            .review(bytes, "upgrade", false, Some(CRM_PLUGIN))
            .await
            .unwrap();
        let grant = grant_all(review.to_grant());
        self.registry.install(review, &grant).unwrap();
    }

    /// Install a connector built in this repository under `id` (no
    /// capabilities asked, so none granted) and add a connection `name` to
    /// it with an empty config.
    pub async fn add_connector(&self, id: &str, wasm: &str, name: &str) {
        let manifest = format!(
            "id = \"{id}\"\nversion = \"1.0.0\"\nkind = \"connector\"\ndescription = \"test\"\nvendor = \"Acme\"\n"
        );
        let review = self
            .registry
            .review(
                bundle(&self.key, &manifest, wasm).await,
                "bundle",
                false,
                None,
            )
            .await
            .unwrap();
        let grant = grant_all(review.to_grant());
        self.registry.install(review, &grant).unwrap();
        self.connections
            .add(NewConnection {
                name: name.into(),
                plugin_id: id.into(),
                pinned_version: None,
                environment: Environment::Sandbox,
                config: json!({}),
                secrets: BTreeMap::new(),
                grants: ConnectionGrants::default(),
            })
            .unwrap();
    }

    /// Save a pipeline from TOML.
    pub async fn apply(&self, toml_text: &str) -> Pipeline {
        let p = Pipeline::from_toml(toml_text, "test").unwrap();
        self.engine.apply(&p).await.unwrap();
        p
    }

    /// Run a pipeline for real.
    pub async fn run(&self, name: &str) -> RunReport {
        self.engine.run(name, RunOptions::default()).await.unwrap()
    }

    /// The pipeline's runs, newest first (at most 100).
    pub fn runs(&self, name: &str) -> Vec<RunRow> {
        self.db
            .runs(&RunFilter {
                pipeline: Some(name.into()),
                status: None,
                limit: 100,
            })
            .unwrap()
    }

    /// Dry-run a pipeline.
    pub async fn dry_run(&self, name: &str) -> RunReport {
        self.engine
            .run(
                name,
                RunOptions {
                    dry_run: true,
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap()
    }
}

/// A one-way pipeline `crm-a/contacts → crm-b/contacts` with `extra` TOML
/// lines at the top level (before the tables) and `tables` after.
pub fn pipeline(name: &str, extra: &str, tables: &str) -> String {
    format!(
        "name = \"{name}\"\nentity = \"contact\"\n{extra}\n\
         [source]\nconnection = \"crm-a\"\nstream = \"contacts\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n{tables}\n"
    )
}

/// The business content of a contact (what the two systems should agree
/// on): everything but the server-owned `id` and `updated_at`, with an
/// absent field and a `null` one taken as the same.
pub fn business(contact: &Value) -> Value {
    let mut c = contact.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("id");
        m.remove("updated_at");
        m.retain(|_, v| !v.is_null());
    }
    c
}

/// Contents of a server, as a sorted list of business contents.
pub fn contents(server: &tinycrm::Server) -> Vec<String> {
    let mut v: Vec<String> = server
        .contacts()
        .iter()
        .map(|c| business(c).to_string())
        .collect();
    v.sort();
    v
}

/// What a run wrote, per source record: `create`, `update` or `delete`
/// or `hold` (records left unchanged or failed are in the counts only).
pub type Writes = BTreeMap<String, &'static str>;

/// The writes a dry run planned.
pub fn planned(dry: &RunReport) -> Writes {
    dry.plan
        .iter()
        .map(|c| (c.source_id.clone(), c.action))
        .collect()
}

/// The writes a real run made, from its per-record results.
pub fn written(store: &dyn SyncStore, real: &RunReport) -> Writes {
    use nexo::sync::RecordOutcome;
    let run = real.run_id.expect("a real run is recorded");
    store
        .run_records(run)
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            let action = match r.outcome {
                RecordOutcome::Created => "create",
                RecordOutcome::Updated => "update",
                RecordOutcome::Deleted => "delete",
                RecordOutcome::Held => "hold",
                _ => return None,
            };
            Some((r.source_id, action))
        })
        .collect()
}

/// Runs `name` as `pipeline run --dry-run` would, then for real, and
/// asserts the prediction: the same counts (read, created, updated,
/// unchanged, deleted, failed, quarantined, conflicts) and the same write
/// for each source record. The real run's report.
pub async fn predicted_run(engine: &Engine, store: &dyn SyncStore, name: &str) -> RunReport {
    let dry = engine
        .run(
            name,
            RunOptions {
                dry_run: true,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(
        dry.error.is_none(),
        "dry run of {name} failed: {:?}",
        dry.error
    );
    let real = engine.run(name, RunOptions::default()).await.unwrap();
    assert!(
        real.error.is_none(),
        "run of {name} failed: {:?} {:?}",
        real.error,
        real.counts
    );
    assert_eq!(
        dry.counts,
        real.counts,
        "{name}: the dry run predicted {:?}, the run did {:?}; planned changes: {:?}",
        dry.counts,
        real.counts,
        dry.plan
            .iter()
            .map(|c| (&c.source_id, c.action, &c.diff))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        planned(&dry),
        written(store, &real),
        "{name}: the dry run's writes (left) are not the run's (right)"
    );
    real
}

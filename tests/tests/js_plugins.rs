//! The JavaScript HubSpot connector (`plugins/js-hubspot`, built with
//! `sdk/js`) against the HubSpot sandbox, as the Rust connector is tested
//! (`hubspot.rs`): every request it sends is checked against HubSpot's own
//! OpenAPI files; it reads contacts incrementally without losing ties on
//! the cursor; and, packed and signed from its folder, installed and
//! driven by the sync engine as the source *and* the destination of a
//! pipeline, the first run creates every contact, the second writes
//! nothing, and an edit in the source is exactly one update.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nexo::bundle::keys::SecretKey;
use nexo::connections::{Connections, NewConnection};
use nexo::plugin::{MapOutcome, Operation, Record, WriteOutcome};
use nexo::registry::Registry;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::sync::store::SyncStore;
use nexo::sync::{Engine, Pipeline, RunReport};
use nexo::{GuestError, Limits, MapperPlugin, PluginRef, Sandbox};
use nexo_sandbox::hubspot::openapi::{Checked, SpecValidator};
use nexo_sandbox::hubspot::{self, Exchange, HubSpotConfig, HubSpotSandbox, ObjectType, SeedData};
use nexo_tests::connkit::{self, payload, read_all};
use nexo_tests::{programs, runtime, synckit};
use serde_json::json;

const TOKEN: &str = "pat-na1-js-7b21";
const PLUGIN: &str = "nexo/js-hubspot";
const API: &str = "https://api.hubapi.com";

async fn sandbox(seed: SeedData) -> HubSpotSandbox {
    hubspot::start(HubSpotConfig {
        token: TOKEN.into(),
        seed,
        record: true,
        ..HubSpotConfig::default()
    })
    .await
    .unwrap()
}

/// Validates every exchange against HubSpot's contacts description; the
/// operations seen.
fn assert_conforms(exchanges: &[Exchange]) -> BTreeSet<String> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/specs/hubspot/hubspot_contacts.json");
    let spec = SpecValidator::load(&[file.as_path()]).expect("HubSpot's OpenAPI file");
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for ex in exchanges {
        match spec.check(ex) {
            Ok(Checked::Valid(op)) => {
                seen.insert(op);
            }
            Ok(Checked::NotDescribed) => {
                panic!("{} {} is not in HubSpot's description", ex.method, ex.path)
            }
            Err(errors) => violations.extend(errors),
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_connector_reads_contacts_incrementally_in_hubspot_shapes() {
    let server = sandbox(SeedData::of_size(48, 3)).await;
    let c = connkit::open_overridden(
        programs::JS_HUBSPOT,
        PLUGIN,
        API,
        &server.url(),
        &[("api_token", TOKEN)],
    )
    .await;
    let cfg = json!({"page_size": 7}).to_string();
    c.check(&cfg).await.into_result().unwrap();

    let (first, state) = read_all(&c, &cfg, "contacts", None).await;
    assert_eq!(first.len(), 48);
    let unique: BTreeSet<&str> = first.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        unique.len(),
        48,
        "no contact twice despite ties on the cursor"
    );
    let cursors: Vec<&str> = first.iter().map(|r| r.cursor.as_deref().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] <= w[1]));
    let p = payload(&first[0]);
    assert!(p["email"].is_string() && p["updatedAt"].is_string(), "{p}");
    assert!(
        p.get("hs_lastmodifieddate").is_none(),
        "managed properties stay out: {p}"
    );

    let (again, state) = read_all(&c, &cfg, "contacts", state).await;
    assert!(again.is_empty(), "nothing changed: {again:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let edited = server.objects(ObjectType::Contacts)[11].id;
    server
        .edit(ObjectType::Contacts, edited, &[("city", "Lille")])
        .unwrap();
    let (changed, _) = read_all(&c, &cfg, "contacts", state).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, edited.to_string());
    assert_eq!(payload(&changed[0])["city"], "Lille");

    // A config the schema refuses names the field.
    let bad = c
        .check(r#"{"page_size": 0}"#)
        .await
        .into_result()
        .unwrap_err()
        .to_string();
    assert!(bad.contains("$.page_size: must be at least 1"), "{bad}");

    let ops = assert_conforms(&server.exchanges());
    assert!(
        ops.contains("POST /crm/v3/objects/contacts/search"),
        "{ops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_writes_create_once_per_key_and_an_invalid_contact_fails_alone() {
    let server = sandbox(SeedData::of_size(8, 4)).await;
    let c = connkit::open_overridden(
        programs::JS_HUBSPOT,
        PLUGIN,
        API,
        &server.url(),
        &[("api_token", TOKEN)],
    )
    .await;
    let cfg = json!({"page_size": 50}).to_string();
    // The host hands a write record's idempotency key over in `cursor`.
    let batch = |n: usize| -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                stream: "contacts".into(),
                id: String::new(),
                operation: Operation::Upsert,
                payload: json!({"firstname": "New", "lastname": format!("N{i}"),
                                "email": if i == 1 { "broken".to_string() } else { format!("new{i}@example.com") }})
                .to_string(),
                cursor: Some(format!("key-{i}")),
            })
            .collect()
    };
    let first = c
        .write(&cfg, "contacts", &batch(3))
        .await
        .into_result()
        .unwrap();
    assert!(
        matches!(first[0].outcome, WriteOutcome::Created(_)),
        "{:?}",
        first[0]
    );
    assert!(
        matches!(&first[1].outcome, WriteOutcome::Failed(e) if e.to_string().contains("broken")),
        "{:?}",
        first[1]
    );
    assert!(
        matches!(first[2].outcome, WriteOutcome::Created(_)),
        "{:?}",
        first[2]
    );
    assert_eq!(server.count(ObjectType::Contacts), 10);
    // The same batch again, as after a lost answer: found by key, updated.
    let replay = c
        .write(&cfg, "contacts", &batch(3))
        .await
        .into_result()
        .unwrap();
    assert_eq!(
        replay[0].id, first[0].id,
        "the same contact, found by its key"
    );
    assert_eq!(replay[2].id, first[2].id);
    assert!(
        matches!(replay[0].outcome, WriteOutcome::Updated(_)),
        "{:?}",
        replay[0]
    );
    assert_eq!(server.count(ObjectType::Contacts), 10, "no duplicate");
    assert_conforms(&server.exchanges());
}

/// A host with the JS connector installed from its folder (packed and
/// signed as `nexo plugin pack` does), and connections `hs-a`, `hs-b` to
/// two sandboxes through the origin override.
struct Host {
    _dir: tempfile::TempDir,
    db: Database,
    engine: Engine,
    a: HubSpotSandbox,
    b: HubSpotSandbox,
}

impl Host {
    async fn new(a: SeedData, page_size: u32) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("nexo.db")).unwrap();
        let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
        let key = SecretKey::generate("Nexo").unwrap();
        db.trust_key(&key.public()).unwrap();
        synckit::install_shipped(&registry, &key, "js-hubspot", programs::JS_HUBSPOT).await;
        let sealer = Sealer::from_env_or_file(&dir.path().join("secret.key")).unwrap();
        let connections = Connections::new(registry.clone(), sealer);
        let (a, b) = (sandbox(a).await, sandbox(SeedData::EMPTY).await);
        for (name, server) in [("hs-a", &a), ("hs-b", &b)] {
            connections
                .add(NewConnection {
                    name: name.into(),
                    plugin_id: PLUGIN.into(),
                    pinned_version: None,
                    environment: Environment::Sandbox,
                    config: json!({"page_size": page_size}),
                    secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
                    grants: ConnectionGrants {
                        origin_overrides: BTreeMap::from([(API.to_string(), server.url())]),
                        ..Default::default()
                    },
                })
                .unwrap();
        }
        let store: Arc<dyn SyncStore> = Arc::new(db.clone());
        let engine = Engine::new(store, connections, registry, Some(dir.path().join("locks")));
        let text = "name = \"a-to-b\"\nentity = \"contact\"\n[source]\nconnection = \"hs-a\"\nstream = \"contacts\"\n\
             [destination]\nconnection = \"hs-b\"\nstream = \"contacts\"\n[retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n";
        engine
            .apply(&Pipeline::from_toml(text, "test").unwrap())
            .await
            .unwrap();
        Host {
            _dir: dir,
            db,
            engine,
            a,
            b,
        }
    }

    async fn run(&self) -> RunReport {
        synckit::predicted_run(&self.engine, &self.db, "a-to-b").await
    }
}

/// Contacts of a sandbox by email (asserting there is no duplicate).
fn by_email(server: &HubSpotSandbox) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for c in server.objects(ObjectType::Contacts) {
        let mut p = c.properties.clone();
        p.remove("nexo_idempotency_key");
        let email = p["email"].clone();
        assert!(
            out.insert(email.clone(), p).is_none(),
            "duplicate contact {email}"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_js_connector_syncs_hubspot_to_hubspot_once_then_only_changes() {
    let host = Host::new(SeedData::of_size(60, 5), 25).await;

    let first = host.run().await;
    assert_eq!(first.counts.read, 60, "{:?}", first.counts);
    assert_eq!(first.counts.created, 60, "{:?}", first.counts);
    assert_eq!(by_email(&host.a), by_email(&host.b));

    let second = host.run().await;
    assert_eq!(second.counts.read, 0, "incremental: nothing read");
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let edited = host.a.objects(ObjectType::Contacts)[17].id;
    host.a
        .edit(ObjectType::Contacts, edited, &[("city", "Paris")])
        .unwrap();
    let third = host.run().await;
    assert_eq!(third.counts.read, 1, "{:?}", third.counts);
    assert_eq!(third.counts.updated, 1, "{:?}", third.counts);
    assert_eq!(
        third.counts.created + third.counts.failed,
        0,
        "{:?}",
        third.counts
    );
    assert_eq!(host.b.count(ObjectType::Contacts), 60);
    assert_eq!(by_email(&host.a), by_email(&host.b));

    assert_conforms(&host.a.exchanges());
    let b = assert_conforms(&host.b.exchanges());
    for op in [
        "POST /crm/v3/objects/contacts/batch/create",
        "POST /crm/v3/objects/contacts/batch/update",
    ] {
        assert!(b.contains(op), "{op}: {b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_mapper_answers_per_record_and_a_bad_record_fails_alone() {
    let m = MapperPlugin::open(
        &nexo_tests::load(programs::JS_MAPPER),
        Sandbox {
            plugin: PluginRef {
                id: "test/js-mapper".into(),
                version: "0.1.0".into(),
            },
            limits: Limits::default(),
            grants: Default::default(),
            secrets: BTreeMap::new(),
            credentials: Default::default(),
            kv: None,
        },
    )
    .unwrap();
    let input = |id: &str, payload: serde_json::Value| Record {
        stream: "contacts".into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(format!("c{id}")),
    };
    let batch = [
        input("1", json!({"email": "a@x.test", "lastname": "Lovelace"})),
        input("2", json!({"lastname": "Nomail"})),
        input("3", json!({"email": "c@x.test", "skip": true})),
        input(
            "4",
            json!({"email": "d@x.test", "lastname": "Byron", "split": true}),
        ),
    ];
    let out = m
        .map(r#"{"field": "lastname"}"#, &batch)
        .await
        .into_result()
        .unwrap();
    assert_eq!(out.len(), 4, "{out:?}");
    let MapOutcome::Mapped(first) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(first.len(), 1);
    assert_eq!(payload(&first[0])["lastname"], "LOVELACE");
    assert_eq!(first[0].cursor.as_deref(), Some("c1"));
    assert!(
        matches!(&out[1], MapOutcome::Failed(GuestError::Rejected(m)) if m == "contact 2 has no email"),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(&out[2], MapOutcome::Mapped(r) if r.is_empty()),
        "{:?}",
        out[2]
    );
    let MapOutcome::Mapped(split) = &out[3] else {
        panic!("{:?}", out[3])
    };
    assert_eq!(split.len(), 2);
    assert_eq!(split[1].stream, "notes");
    // A config the schema refuses fails the batch, naming the field.
    let err = m
        .map("{}", &batch)
        .await
        .into_result()
        .unwrap_err()
        .to_string();
    assert!(err.contains("$.field: is required"), "{err}");
}

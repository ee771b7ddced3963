//! The Python plugins end to end: built by `tests/build.rs` with the SDK's
//! build tool, packed and signed from their folders as `nexo plugin pack`
//! does (`synckit::install_shipped`), installed, and synced by the engine.
//!
//! - The contact cleaner (mapper) between two TinyCRMs: names and phones
//!   arrive cleaned; a record it cannot clean is quarantined alone with its
//!   reason while the 99 others of its batch are written (acceptance test);
//!   a second run writes nothing; a change updates.
//! - The hledger connector into a real hledger-web, fed by HubSpot deals
//!   through the Rust deal-to-invoice mapper: `hledger` sees balanced
//!   transactions; a second run writes nothing; a changed deal re-posts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use nexo::bundle::keys::SecretKey;
use nexo::connections::{Connections, NewConnection};
use nexo::registry::Registry;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::sync::store::{DeadLetterStatus, QueueStore, SyncStore};
use nexo::sync::{Engine, Pipeline};
use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
use nexo_tests::hledger::{HledgerWeb, hledger};
use nexo_tests::synckit::{self, Kit, pipeline};
use nexo_tests::{programs, runtime, tinycrm};
use serde_json::{Value, json};

const CLEANER: &str = "nexo-examples/py-contact-cleaner";

/// The SDK's build tool embedded what `inspect`, `pack` and the install
/// summary show; the load (a cranelift compile the first time, then the
/// shared cache) is timed for the report.
#[test]
fn the_components_name_their_sdk_plugin_and_contract() {
    for (path, id, world) in [
        (programs::PY_CONTACT_CLEANER, CLEANER, "mapper"),
        (
            programs::PY_HLEDGER,
            "nexo-examples/py-hledger",
            "connector",
        ),
    ] {
        let started = Instant::now();
        let plugin = runtime().load_file(std::path::Path::new(path)).unwrap();
        eprintln!(
            "{id}: {} bytes, loaded in {:?}",
            std::fs::metadata(path).unwrap().len(),
            started.elapsed()
        );
        let info = plugin.info();
        assert_eq!(info.embedded("sdk"), Some("python-1.1.0"));
        assert_eq!(info.embedded("plugin"), Some(id));
        assert_eq!(info.embedded("version"), Some("0.1.0"));
        assert_eq!(info.wit_version(), Some("1.1.0"));
        assert_eq!(format!("{:?}", info.world).to_lowercase(), world);
    }
}

/// 100 TinyCRM contacts, a few written carelessly, and one (`c0042`) whose
/// phone is not a phone.
fn messy_contacts() -> BTreeMap<String, Value> {
    let mut contacts = tinycrm::seed(100);
    let mut set = |id: &str, fields: Value| {
        let c = contacts.get_mut(id).unwrap();
        for (k, v) in fields.as_object().unwrap() {
            c[k] = v.clone();
        }
    };
    set(
        "c0001",
        json!({"first_name": "  dr.  ada ", "last_name": "LOVELACE", "phone": "020 7946 0001"}),
    );
    set(
        "c0002",
        json!({"first_name": "", "last_name": "HOPPER, grace", "phone": "0044 (20) 7946-0002"}),
    );
    set("c0042", json!({"phone": "ask reception"}));
    contacts
}

fn by_email(server: &tinycrm::Server, email: &str) -> Value {
    server
        .contacts()
        .into_iter()
        .find(|c| c["email"] == email)
        .unwrap_or_else(|| panic!("no contact {email} in the destination"))
}

/// Acceptance test of per-record map outcomes: the mapper fails one record
/// of a batch of 100; that record is quarantined with its reason, the 99
/// others are written, cleaned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_cleans_contacts_and_one_it_cannot_clean_is_dead_lettered_alone() {
    let kit = Kit::new(messy_contacts(), BTreeMap::new(), 100).await;
    synckit::install_shipped(
        &kit.registry,
        &kit.key,
        "py-contact-cleaner",
        programs::PY_CONTACT_CLEANER,
    )
    .await;
    kit.apply(&pipeline(
        "clean",
        "",
        &format!(
            "[[mappers]]\nplugin = \"{CLEANER}\"\nconfig = {{ default_country_code = \"44\" }}"
        ),
    ))
    .await;

    let first = kit.run("clean").await;
    assert_eq!(first.counts.read, 100, "{:?}", first.counts);
    assert_eq!(first.counts.created, 99, "{:?}", first.counts);
    assert_eq!(
        first.counts.failed + first.counts.quarantined,
        1,
        "{:?}",
        first.counts
    );
    let letters = kit
        .db
        .dead_letters(Some("clean"), Some(DeadLetterStatus::Open))
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].letter.source_id, "c0042");
    assert!(
        letters[0]
            .letter
            .error
            .contains("contact c0042: phone 'ask reception' is not a phone number"),
        "{:?}",
        letters[0].letter
    );
    assert_eq!(kit.b.contacts().len(), 99);
    let ada = by_email(&kit.b, "ada1@example.com");
    assert_eq!(
        (&ada["first_name"], &ada["last_name"], &ada["phone"]),
        (&json!("Ada"), &json!("Lovelace"), &json!("+442079460001"))
    );
    let grace = by_email(&kit.b, "ada2@example.com");
    assert_eq!(
        (&grace["first_name"], &grace["last_name"], &grace["phone"]),
        (&json!("Grace"), &json!("Hopper"), &json!("+442079460002"))
    );
    assert_eq!(
        by_email(&kit.b, "ada3@example.com")["phone"],
        "+442079460000"
    );

    let second = kit.run("clean").await;
    assert_eq!(
        second.counts.created + second.counts.updated,
        0,
        "{:?}",
        second.counts
    );

    let id = kit
        .a
        .contacts()
        .into_iter()
        .find(|c| c["email"] == "ada3@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    kit.a.edit(&id, "last_name", "BYRON-king");
    let third = kit.run("clean").await;
    assert_eq!(third.counts.updated, 1, "{:?}", third.counts);
    assert_eq!(
        by_email(&kit.b, "ada3@example.com")["last_name"],
        "Byron-King"
    );
}

/// A host with HubSpot, the deal-to-invoice mapper and the Python hledger
/// connector installed from their folders, connected to `hub` and `books`.
async fn ledger_host(
    hub: &nexo_sandbox::hubspot::HubSpotSandbox,
    books: &HledgerWeb,
) -> (tempfile::TempDir, Database, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("nexo.db")).unwrap();
    let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
    let key = SecretKey::generate("Nexo").unwrap();
    db.trust_key(&key.public()).unwrap();
    for (folder, wasm) in [
        ("hubspot", programs::HUBSPOT),
        ("deal-to-invoice", programs::DEAL_TO_INVOICE),
        ("py-hledger", programs::PY_HLEDGER),
    ] {
        synckit::install_shipped(&registry, &key, folder, wasm).await;
    }
    let sealer = Sealer::from_env_or_file(&dir.path().join("secret.key")).unwrap();
    let connections = Connections::new(registry.clone(), sealer);
    connections
        .add(NewConnection {
            name: "hubspot".into(),
            plugin_id: "nexo/hubspot".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"page_size": 50}),
            secrets: [("api_token".to_string(), SecretValue::new("pat-na1-py"))]
                .into_iter()
                .collect(),
            grants: ConnectionGrants {
                origin_overrides: [("https://api.hubapi.com".to_string(), hub.url())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
        })
        .unwrap();
    connections
        .add(NewConnection {
            name: "books".into(),
            plugin_id: "nexo-examples/py-hledger".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"base_url": books.url, "account_codes": {"200": "revenue:consulting"}}),
            secrets: BTreeMap::new(),
            grants: ConnectionGrants {
                private_http: vec![books.url.clone()],
                ..Default::default()
            },
        })
        .unwrap();
    let store: Arc<dyn SyncStore> = Arc::new(db.clone());
    let engine = Engine::new(store, connections, registry, Some(dir.path().join("locks")));
    (dir, db, engine)
}

/// `hledger bal` of the journal: account → balance, zero ones left out.
fn balances(books: &HledgerWeb) -> BTreeMap<String, String> {
    books.check();
    books.balances()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_sync_into_hledger_as_balanced_idempotent_transactions() {
    use nexo_tests::tryton::{deals_pipeline, touch_deals, won_deals};

    let books = HledgerWeb::start().await;
    let hub = hubspot::start(HubSpotConfig {
        token: "pat-na1-py".into(),
        seed: SeedData {
            seed: 7,
            companies: 2,
            contacts: 0,
            deals: 0,
        },
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let deals = won_deals(&hub, 3);
    let (_dir, db, engine) = ledger_host(&hub, &books).await;
    let text = deals_pipeline(
        "journal",
        "invoice",
        "emit = \"invoice\", status = \"authorised\", default_tax_rate = \"20\", account_code = \"200\"",
        "books",
        "invoices",
        "",
    );
    engine
        .apply(&Pipeline::from_toml(&text, "test").unwrap())
        .await
        .unwrap();

    let first = synckit::predicted_run(&engine, &db, "journal").await;
    assert_eq!(first.counts.created, 3, "{:?}", first.counts);
    // Deals of 100.00, 107.10 and 114.20 at 20 % tax.
    let after_first = balances(&books);
    assert_eq!(
        after_first.get("assets:receivable").map(String::as_str),
        Some("EUR 385.56"),
        "{after_first:?}"
    );
    assert_eq!(
        after_first.get("revenue:consulting").map(String::as_str),
        Some("EUR -321.30")
    );
    assert_eq!(books.codes().len(), 3, "{}", books.text());

    let again = synckit::predicted_run(&engine, &db, "journal").await;
    assert_eq!(again.counts.written(), 0, "{:?}", again.counts);
    touch_deals(&hub, &deals).await;
    let touched = synckit::predicted_run(&engine, &db, "journal").await;
    assert_eq!(touched.counts.written(), 0, "{:?}", touched.counts);
    assert_eq!(
        books.codes().len(),
        3,
        "nothing re-posted: {}",
        books.text()
    );

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    hub.edit(ObjectType::Deals, deals[0], &[("amount", "200.00")])
        .unwrap();
    let changed = synckit::predicted_run(&engine, &db, "journal").await;
    assert_eq!(changed.counts.updated, 1, "{:?}", changed.counts);
    let codes = books.codes();
    assert_eq!(codes.len(), 5, "a reversal and the new version: {codes:?}");
    assert!(
        codes[3].ends_with("/1-reversed") && codes[4].ends_with("/2"),
        "{codes:?}"
    );
    assert_eq!(
        balances(&books)
            .get("assets:receivable")
            .map(String::as_str),
        Some("EUR 505.56")
    );
    let out = hledger(&books.journal, &["print", "tag:nexo-key"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("nexo-key:")
            .count(),
        5
    );
}

//! The HubSpot sandbox and the HubSpot connector (`plugins/hubspot`):
//! every request the connector sends and every response the sandbox
//! returns is validated against HubSpot's own OpenAPI files
//! (`../shared/specs/hubspot/`, read at test time); the connector reads
//! deals with their companies and line items, reads incrementally, syncs
//! HubSpot → HubSpot through the engine without duplicates, survives a 429
//! storm, and a record HubSpot refuses lands in the dead-letter queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexo::ConnectorPlugin;
use nexo::bundle::keys::SecretKey;
use nexo::connections::{Connections, NewConnection};
use nexo::plugin::{Operation, Record, WriteOutcome};
use nexo::registry::Registry;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::sync::store::{QueueStore, SyncStore};
use nexo::sync::{Engine, Pipeline, RunOptions, RunReport};
use nexo_sandbox::hubspot::openapi::{Checked, SpecValidator};
use nexo_sandbox::hubspot::{
    self, Exchange, HubSpotConfig, HubSpotSandbox, ObjectType, RateLimit, SeedData,
};
use nexo_tests::connkit::{self, payload, read_all};
use nexo_tests::{programs, runtime, synckit};
use serde_json::{Value, json};

const TOKEN: &str = "pat-na1-test-5f0c";
const PLUGIN: &str = "nexo/hubspot";

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs/hubspot")
}

fn validator() -> SpecValidator {
    let dir = spec_dir();
    let files: Vec<PathBuf> = [
        "hubspot_contacts.json",
        "hubspot_companies.json",
        "hubspot_deals.json",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    SpecValidator::load(&refs).expect("the HubSpot OpenAPI files are beside the repository")
}

/// Validate every exchange; the operations validated, by name. Panics
/// listing every violation.
fn assert_conforms(exchanges: &[Exchange]) -> BTreeSet<String> {
    let spec = validator();
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for ex in exchanges {
        match spec.check(ex) {
            Ok(Checked::Valid(op)) => {
                seen.insert(op);
            }
            Ok(Checked::NotDescribed) => {
                // Only line items and the v4 associations API are outside
                // the three files.
                assert!(
                    ex.path.contains("/line_items") || ex.path.starts_with("/crm/v4/"),
                    "{} {} is not in HubSpot's description",
                    ex.method,
                    ex.path
                );
            }
            Err(errors) => violations.extend(errors),
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    seen
}

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

/// The connector, opened directly on one sandbox.
async fn connector(server: &HubSpotSandbox) -> ConnectorPlugin {
    connkit::open_overridden(
        programs::HUBSPOT,
        PLUGIN,
        "https://api.hubapi.com",
        &server.url(),
        &[("api_token", TOKEN)],
    )
    .await
}

fn config(_server: &HubSpotSandbox, page_size: u32) -> String {
    json!({"page_size": page_size}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_answers_in_hubspot_shapes_and_the_validator_can_fail() {
    let server = sandbox(SeedData::of_size(30, 1)).await;
    let http = reqwest::Client::new();
    let base = server.url();
    let get = |path: &str, token: &str| http.get(format!("{base}{path}")).bearer_auth(token).send();

    // List with paging and property selection, by name and by type id.
    let page: Value = get("/crm/v3/objects/0-1?limit=7&properties=email,city", TOKEN)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["results"].as_array().unwrap().len(), 7);
    assert!(page["results"][0]["properties"]["city"].is_string());
    let after = page["paging"]["next"]["after"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    let mut next = Some(String::new());
    while let Some(after) = next {
        let p: Value = get(
            &format!("/crm/v3/objects/contacts?limit=8&after={after}"),
            TOKEN,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        ids.extend(
            p["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        next = p["paging"]["next"]["after"].as_str().map(str::to_string);
    }
    assert_eq!(ids.len(), 30, "paging reaches every contact once");
    assert!(!after.is_empty());

    // Wrong token: 401 in HubSpot's error shape.
    let r = get("/crm/v3/objects/contacts", "wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");

    // Validation: 400 VALIDATION_ERROR naming the property.
    let id = ids.iter().next().unwrap();
    let r = http
        .patch(format!("{base}/crm/v3/objects/contacts/{id}"))
        .bearer_auth(TOKEN)
        .json(&json!({"properties": {"email": "not-an-email"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert_eq!(body["errors"][0]["code"], "INVALID_EMAIL");

    // A valid edit moves hs_lastmodifieddate and updatedAt.
    let before = server
        .get(ObjectType::Contacts, id.parse().unwrap())
        .unwrap()
        .updated_ms;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r: Value = http
        .patch(format!("{base}/crm/v3/objects/contacts/{id}"))
        .bearer_auth(TOKEN)
        .json(&json!({"properties": {"city": "Lille"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after_edit = server
        .get(ObjectType::Contacts, id.parse().unwrap())
        .unwrap()
        .updated_ms;
    assert!(after_edit > before);
    assert_eq!(r["updatedAt"], hubspot::iso(after_edit));

    // Search on hs_lastmodifieddate, ascending.
    let found: Value = http.post(format!("{base}/crm/v3/objects/contacts/search")).bearer_auth(TOKEN)
        .json(&json!({"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": after_edit.to_string()}]}],
                      "sorts": ["hs_lastmodifieddate"], "properties": ["city"], "limit": 10, "after": "0"}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["id"], id.as_str());

    // Batch create, update (207 for an unknown id), read; v3 associations;
    // single GET of an unknown id (404); archive.
    let created: Value = http
        .post(format!("{base}/crm/v3/objects/companies/batch/create"))
        .bearer_auth(TOKEN)
        .json(&json!({"inputs": [{"properties": {"name": "Acme"}, "associations": []}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let company = created["results"][0]["id"].as_str().unwrap().to_string();
    let r = http.post(format!("{base}/crm/v3/objects/companies/batch/update")).bearer_auth(TOKEN)
        .json(&json!({"inputs": [{"id": company, "properties": {"city": "Nantes"}}, {"id": "999", "properties": {"city": "X"}}]}))
        .send().await.unwrap();
    assert_eq!(r.status(), 207);
    let r = http.post(format!("{base}/crm/v3/objects/companies/batch/read")).bearer_auth(TOKEN)
        .json(&json!({"inputs": [{"id": company}], "properties": ["city"], "propertiesWithHistory": []})).send().await.unwrap();
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["results"][0]["properties"]["city"], "Nantes");
    let deal = server.objects(ObjectType::Deals)[0].id;
    let with: Value = get(
        &format!("/crm/v3/objects/deals/{deal}?associations=companies,line_items"),
        TOKEN,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(with["associations"]["companies"]["results"][0]["type"] == "deal_to_company");
    assert_eq!(
        get("/crm/v3/objects/deals/42", TOKEN)
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .delete(format!("{base}/crm/v3/objects/companies/{company}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Rate limit: 429 with Retry-After.
    server.set_rate_limit(Some(RateLimit {
        requests: 2,
        per: Duration::from_secs(10),
    }));
    let statuses: Vec<u16> = futures_statuses(&http, &base).await;
    assert_eq!(statuses, [200, 200, 429]);
    server.set_rate_limit(None);

    let seen = assert_conforms(&server.exchanges());
    for op in [
        "GET /crm/v3/objects/contacts",
        "PATCH /crm/v3/objects/contacts/{contactId}",
        "POST /crm/v3/objects/contacts/search",
        "POST /crm/v3/objects/companies/batch/create",
        "POST /crm/v3/objects/companies/batch/update",
        "POST /crm/v3/objects/companies/batch/read",
        "GET /crm/v3/objects/0-3/{dealId}",
        "DELETE /crm/v3/objects/companies/{companyId}",
    ] {
        assert!(seen.contains(op), "{op} not exercised: {seen:?}");
    }

    // The validator does fail on a response that breaks the contract.
    let mut broken = server
        .exchanges()
        .into_iter()
        .find(|e| e.path == "/crm/v3/objects/0-1" && e.status == 200)
        .unwrap();
    broken.response.as_mut().unwrap()["results"][0]["properties"]["email"] = json!(42);
    assert!(validator().check(&broken).is_err());
    let mut broken = server
        .exchanges()
        .into_iter()
        .find(|e| e.path.ends_with("/search"))
        .unwrap();
    broken
        .request
        .as_mut()
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("filterGroups");
    assert!(validator().check(&broken).is_err());
}

async fn futures_statuses(http: &reqwest::Client, base: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let r = http
            .get(format!("{base}/crm/v3/objects/contacts?limit=1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&wait), "Retry-After {wait}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["category"], "RATE_LIMITS");
            out.push(429);
        } else {
            out.push(r.status().as_u16());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_carry_their_companies_and_line_items_and_reads_are_incremental() {
    let server = sandbox(SeedData::of_size(48, 3)).await;
    let c = connector(&server).await;
    let cfg = config(&server, 7);
    c.check(&cfg).await.into_result().unwrap();

    let (deals, _) = read_all(&c, &cfg, "deals", None).await;
    assert_eq!(deals.len(), server.count(ObjectType::Deals));
    let won: Vec<Value> = deals
        .iter()
        .map(payload)
        .filter(|d| d["dealstage"] == "closedwon")
        .collect();
    assert!(won.len() >= 8, "{}", won.len());
    for deal in &won {
        let companies = deal["associations"]["companies"].as_array().unwrap();
        assert_eq!(companies.len(), 1, "{deal}");
        assert!(companies[0]["properties"]["name"].is_string());
        let lines = deal["associations"]["line_items"].as_array().unwrap();
        assert!((1..=3).contains(&lines.len()), "{deal}");
        for line in lines {
            let price = line["properties"]["price"].as_str().unwrap();
            assert!(price.contains('.'), "decimal price {price}");
            assert!(line["properties"]["quantity"].is_string());
        }
        assert!(
            deal.get("hs_lastmodifieddate").is_none(),
            "managed properties stay out"
        );
    }
    println!(
        "a won deal as the connector reads it:\n{}",
        serde_json::to_string_pretty(&won[0]).unwrap()
    );

    // Contacts: the first read returns all, in cursor order; after an
    // edit, only the edited contact.
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

    // Writes: creates keyed by the idempotency key; replaying the batch
    // (lost answer) creates nothing more; an invalid record fails alone.
    let batch = |n: usize| -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                stream: "contacts".into(),
                id: String::new(),
                operation: Operation::Upsert,
                payload: json!({"firstname": "New", "lastname": format!("N{i}"),
                                "email": if i == 1 { "broken".to_string() } else { format!("new{i}@example.com") }}).to_string(),
                cursor: Some(format!("key-{i}")),
            })
            .collect()
    };
    let first = c
        .write(&cfg, "contacts", &batch(3))
        .await
        .into_result()
        .unwrap();
    assert!(matches!(first[0].outcome, WriteOutcome::Created(_)));
    assert!(
        matches!(first[1].outcome, WriteOutcome::Failed(_)),
        "{:?}",
        first[1]
    );
    assert!(matches!(first[2].outcome, WriteOutcome::Created(_)));
    assert_eq!(server.count(ObjectType::Contacts), 50);
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
    assert_eq!(server.count(ObjectType::Contacts), 50, "no duplicate");

    assert_conforms(&server.exchanges());
}

/// A host with the HubSpot connector and the test mapper installed, and
/// connections `hs-a` and `hs-b` to two sandboxes.
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
        synckit::install_plugins(&db, &registry, &key).await;
        synckit::install_shipped(&registry, &key, "hubspot", programs::HUBSPOT).await;
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
                    // Each connection's own sandbox, through its override.
                    grants: ConnectionGrants {
                        origin_overrides: BTreeMap::from([(
                            "https://api.hubapi.com".to_string(),
                            server.url(),
                        )]),
                        ..Default::default()
                    },
                })
                .unwrap();
        }
        let store: Arc<dyn SyncStore> = Arc::new(db.clone());
        let engine = Engine::new(store, connections, registry, Some(dir.path().join("locks")));
        Host {
            _dir: dir,
            db,
            engine,
            a,
            b,
        }
    }

    async fn apply(&self, name: &str, tables: &str) {
        let text = format!(
            "name = \"{name}\"\nentity = \"contact\"\n[source]\nconnection = \"hs-a\"\nstream = \"contacts\"\n\
             [destination]\nconnection = \"hs-b\"\nstream = \"contacts\"\n{tables}\n"
        );
        let p = Pipeline::from_toml(&text, "test").unwrap();
        self.engine.apply(&p).await.unwrap();
    }

    async fn run(&self, name: &str) -> RunReport {
        self.engine.run(name, RunOptions::default()).await.unwrap()
    }

    /// A dry run, then the run it must have predicted.
    async fn predicted_run(&self, name: &str) -> RunReport {
        synckit::predicted_run(&self.engine, &self.db, name).await
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

const RETRY: &str = "[retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_to_hubspot_creates_once_then_nothing_then_exactly_the_changes() {
    let host = Host::new(SeedData::of_size(130, 9), 25).await;
    host.apply("a-to-b", RETRY).await;

    let first = host.predicted_run("a-to-b").await;
    assert_eq!(first.counts.read, 130, "{:?}", first.counts);
    assert_eq!(first.counts.created, 130, "{:?}", first.counts);
    assert_eq!(by_email(&host.a), by_email(&host.b));

    let second = host.predicted_run("a-to-b").await;
    assert_eq!(
        second.counts.read, 0,
        "incremental: nothing changed, nothing read"
    );
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);

    let edited: Vec<u64> = host
        .a
        .objects(ObjectType::Contacts)
        .iter()
        .step_by(29)
        .map(|c| c.id)
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for id in &edited {
        host.a
            .edit(
                ObjectType::Contacts,
                *id,
                &[("city", "Paris"), ("phone", "+33 1 00 00 00 00")],
            )
            .unwrap();
    }
    let third = host.predicted_run("a-to-b").await;
    assert_eq!(third.counts.read, edited.len() as u64, "{:?}", third.counts);
    assert_eq!(
        third.counts.updated,
        edited.len() as u64,
        "{:?}",
        third.counts
    );
    assert_eq!(
        third.counts.created + third.counts.failed,
        0,
        "{:?}",
        third.counts
    );
    assert_eq!(host.b.count(ObjectType::Contacts), 130);
    assert_eq!(by_email(&host.a), by_email(&host.b));

    // Every request the connector sent, and every answer, on both sides.
    let a = assert_conforms(&host.a.exchanges());
    let b = assert_conforms(&host.b.exchanges());
    assert!(a.contains("POST /crm/v3/objects/contacts/search"), "{a:?}");
    for op in [
        "POST /crm/v3/objects/contacts/batch/create",
        "POST /crm/v3/objects/contacts/batch/update",
    ] {
        assert!(b.contains(op), "{op}: {b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_slows_the_run_down_but_loses_nothing() {
    let host = Host::new(SeedData::of_size(60, 4), 10).await;
    let limit = RateLimit {
        requests: 4,
        per: Duration::from_secs(1),
    };
    host.a.set_rate_limit(Some(limit));
    host.b.set_rate_limit(Some(limit));
    host.apply(
        "storm",
        "[retry]\nmax_attempts = 60\ninitial_backoff_ms = 50\nmax_backoff_ms = 1000",
    )
    .await;
    let started = Instant::now();
    let run = host.run("storm").await;
    assert_eq!(run.counts.created, 60, "{:?} {:?}", run.counts, run.error);
    assert!(
        host.a.rate_limited() + host.b.rate_limited() > 0,
        "the storm happened"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "slowed down: {:?}",
        started.elapsed()
    );
    assert_eq!(by_email(&host.a), by_email(&host.b));
    assert_eq!(host.run("storm").await.counts.written(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_hubspot_refuses_lands_in_the_dead_letter_queue() {
    let host = Host::new(SeedData::of_size(12, 5), 50).await;
    let victim = host.a.objects(ObjectType::Contacts)[4].id;
    host.apply(
        "dlq",
        &format!("[[mappers]]\nplugin = \"{}\"\nconfig = {{ patch = {{ \"{victim}\" = {{ email = \"not-an-email\" }} }} }}\n{RETRY}", synckit::MAPPER_PLUGIN),
    )
    .await;
    let run = host.run("dlq").await;
    assert_eq!(run.counts.created, 11, "{:?}", run.counts);
    assert_eq!(run.counts.failed, 1, "{:?}", run.counts);
    assert_eq!(host.b.count(ObjectType::Contacts), 11);
    let letters = host
        .db
        .dead_letters(Some("dlq"), Some(nexo::sync::store::DeadLetterStatus::Open))
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.source_id, victim.to_string());
    assert_eq!(letters[0].letter.class, "rejected");
    assert!(
        letters[0].letter.error.contains("not-an-email"),
        "{}",
        letters[0].letter.error
    );
    assert_conforms(&host.b.exchanges());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_deal_is_associated_with_the_objects_it_names_and_bad_names_are_refused() {
    let server = sandbox(SeedData::of_size(12, 3)).await;
    let c = connector(&server).await;
    let cfg = config(&server, 50);
    let company = server.objects(ObjectType::Companies)[1].id;
    let contact = server.objects(ObjectType::Contacts)[4].id;
    let deal = |name: &str, associate: Value| {
        json!({"dealname": name, "amount": "1200", "dealstage": "appointmentscheduled",
               "pipeline": "default", "associate": associate})
    };
    let batch = [
        connkit::upsert(
            "deals",
            "",
            "k-deal-1",
            &deal(
                "Rollout",
                json!({"companies": [company.to_string()], "contacts": [contact]}),
            ),
        ),
        connkit::upsert(
            "deals",
            "",
            "k-deal-2",
            &deal("Bad link", json!({"companies": ["acme-ltd"]})),
        ),
        connkit::upsert(
            "deals",
            "",
            "k-deal-3",
            &deal("Unknown type", json!({"tickets": ["1"]})),
        ),
        connkit::upsert("deals", "", "k-deal-4", &deal("Alone", json!({}))),
    ];
    let out = connkit::write(&c, &cfg, "deals", &batch).await;
    assert!(out[0].starts_with("created "), "{out:?}");
    assert!(
        out[1].contains("`companies` id `acme-ltd` is not a HubSpot object id"),
        "{out:?}"
    );
    assert!(
        out[2].contains("names `tickets`, which deals cannot be associated with"),
        "{out:?}"
    );
    assert!(out[3].starts_with("created "), "{out:?}");
    let id: u64 = connkit::id_of(&out[0]).parse().unwrap();
    assert_eq!(
        server.associated(ObjectType::Deals, id, ObjectType::Companies),
        [company]
    );
    assert_eq!(
        server.associated(ObjectType::Deals, id, ObjectType::Contacts),
        [contact]
    );
    let alone: u64 = connkit::id_of(&out[3]).parse().unwrap();
    assert!(
        server
            .associated(ObjectType::Deals, alone, ObjectType::Companies)
            .is_empty()
    );
    // `associate` is not a property; the deal reads back with the company
    // among its associations.
    let stored = server.get(ObjectType::Deals, id).unwrap();
    assert_eq!(stored.property("associate"), None);
    let (deals, _) = read_all(&c, &cfg, "deals", None).await;
    let read = deals
        .iter()
        .map(payload)
        .find(|d| d["id"] == id.to_string().as_str())
        .unwrap();
    assert_eq!(
        read["associations"]["companies"][0]["id"],
        company.to_string().as_str()
    );
    // HubSpot's description names deals by their type id, 0-3.
    let ops = assert_conforms(&server.exchanges());
    assert!(
        ops.contains("POST /crm/v3/objects/0-3/batch/create"),
        "{ops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_deleted_in_hubspot_are_read_as_deletes_and_follow_the_delete_policy() {
    let host = Host::new(SeedData::of_size(40, 5), 15).await;
    host.apply(
        "a-to-b",
        &format!("{RETRY}\n[deletes]\npolicy = \"propagate\""),
    )
    .await;
    let first = host.predicted_run("a-to-b").await;
    assert_eq!(first.counts.created, 40, "{:?}", first.counts);

    // Four contacts deleted in HubSpot A: search no longer returns them,
    // the archived pass does, and the pipeline archives them in B.
    let gone: Vec<u64> = host
        .a
        .objects(ObjectType::Contacts)
        .iter()
        .step_by(13)
        .map(|c| c.id)
        .collect();
    assert_eq!(gone.len(), 4);
    for id in &gone {
        assert!(host.a.archive(ObjectType::Contacts, *id));
    }
    let second = host.predicted_run("a-to-b").await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(
        (
            second.counts.deleted,
            second.counts.created,
            second.counts.updated
        ),
        (4, 0, 0),
        "{:?}",
        second.counts
    );
    assert_eq!(host.b.count(ObjectType::Contacts), 36);
    assert_eq!(by_email(&host.a), by_email(&host.b));

    // Read again (the look-back window re-reads recent deletes): nothing
    // more is written anywhere.
    let third = host.predicted_run("a-to-b").await;
    assert_eq!(third.counts.written(), 0, "{:?}", third.counts);
    assert_eq!(host.b.count(ObjectType::Contacts), 36);

    // With deletes ignored, a delete in A leaves B's contact in place.
    host.apply(
        "a-to-b",
        &format!("{RETRY}\n[deletes]\npolicy = \"ignore\""),
    )
    .await;
    let kept = host.a.objects(ObjectType::Contacts)[0].id;
    assert!(host.a.archive(ObjectType::Contacts, kept));
    let fourth = host.predicted_run("a-to-b").await;
    assert_eq!(fourth.counts.written(), 0, "{:?}", fourth.counts);
    assert_eq!(host.b.count(ObjectType::Contacts), 36);

    let a = assert_conforms(&host.a.exchanges());
    assert!(a.contains("GET /crm/v3/objects/contacts"), "{a:?}");
    let b = assert_conforms(&host.b.exchanges());
    assert!(
        b.contains("POST /crm/v3/objects/contacts/batch/archive"),
        "{b:?}"
    );
}

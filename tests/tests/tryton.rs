//! The Tryton connector (`plugins/tryton`) against a real Tryton ERP:
//! trytond 8.2 and its modules from PyPI (`cargo xtask setup`), SQLite, a
//! fresh database per test copied from a template built once
//! (`nexo_sandbox::tryton`), the REST API with a validated user
//! application key. Tests check Tryton's own data through its REST API, not
//! the connector's view of it. Without trytond they fail (never skip),
//! saying to run `cargo xtask setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use nexo::ConnectorPlugin;
use nexo::sync::store::QueueStore;
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, ObjectType, SeedData};
use nexo_sandbox::tryton::Tryton;
use nexo_tests::connkit::{self, id_of, read_payloads, upsert, write, write_upsert};
use nexo_tests::programs;
use nexo_tests::tryton::{Host, deals_pipeline, start, touch_deals, won_deals};
use serde_json::{Value, json};

const HUBSPOT_TOKEN: &str = "pat-na1-tryton-test";

// ---- a plain REST client (not the connector) --------------------------------

/// A plain client of Tryton's REST API (not the connector).
#[derive(Debug, Clone)]
pub struct Rest {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Rest {
    /// A client of `server`.
    pub fn new(server: &Tryton) -> Rest {
        Rest {
            base: format!("{}/rest/model", server.base_url()),
            key: server.application_key().to_string(),
            http: reqwest::Client::new(),
        }
    }

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
    }

    fn context(&self) -> String {
        Self::b64(&json!({"company": 1, "active_test": false}))
    }

    /// Records of `model` matching `domain`, with `fields`, in id order.
    pub async fn search(&self, model: &str, domain: Value, fields: &[&str]) -> Vec<Value> {
        let mut query = format!(
            "d={}&o={}",
            Self::b64(&domain).replace('=', "%3D"),
            Self::b64(&json!([["id", "ASC"]])).replace('=', "%3D")
        );
        for f in fields {
            query.push_str(&format!("&f={f}"));
        }
        let r = self
            .http
            .get(format!("{}/{model}?{query}", self.base))
            .bearer_auth(&self.key)
            .header("X-Tryton-Context", self.context())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "search {model}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Writes `values` to `model` record `id` (as a person in Tryton would).
    pub async fn update(&self, model: &str, id: u64, values: Value) {
        let r = self
            .http
            .put(format!("{}/{model}/{id}", self.base))
            .bearer_auth(&self.key)
            .header("X-Tryton-Context", self.context())
            .json(&values)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "update {model} {id}: {status} {}",
            r.text().await.unwrap()
        );
    }

    /// Deletes `model` record `id`.
    pub async fn delete(&self, model: &str, id: u64) {
        let r = self
            .http
            .delete(format!("{}/{model}/{id}", self.base))
            .bearer_auth(&self.key)
            .header("X-Tryton-Context", self.context())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "delete {model} {id}: {}",
            r.status()
        );
    }

    /// Creates a `model` record; its id.
    pub async fn create(&self, model: &str, values: Value) -> u64 {
        let r = self
            .http
            .post(format!("{}/{model}?f=id", self.base))
            .bearer_auth(&self.key)
            .header("X-Tryton-Context", self.context())
            .json(&values)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "create {model}: {status} {body}");
        body["id"].as_u64().unwrap()
    }
}

/// Tryton's JSON decimal.
pub fn decimal(text: &str) -> Value {
    json!({"__class__": "Decimal", "decimal": text})
}

/// A decimal field of a Tryton record as text (normalised, e.g. `12.5`).
pub fn decimal_text(v: &Value) -> String {
    let s = v["decimal"].as_str().unwrap_or_default();
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    };
    s.to_string()
}

// ---- helpers ---------------------------------------------------------------

async fn connector(server: &Tryton) -> ConnectorPlugin {
    connkit::open(
        programs::TRYTON,
        "nexo/tryton",
        server.origin(),
        &[("application_key", server.application_key())],
    )
    .await
}

/// `hours` × 10.00 at 20 % plus 5.55 untaxed, billed to crm:`customer`.
fn invoice(customer: &str, hours: u32, total: Option<&str>) -> Value {
    json!({"customer": {"kind": "company", "system": "crm", "id": customer},
        "issue_date": "2026-03-01", "currency": "EUR", "status": "authorised", "reference": "PO 7",
        "lines": [{"description": "Consulting", "quantity": hours.to_string(), "unit_price": "10.00",
                   "tax_rate": "20", "line_amount": format!("{}.00", hours * 10)},
                  {"description": "Travel", "quantity": "1", "unit_price": "5.55", "line_amount": "5.55"}],
        "subtotal": format!("{}.55", hours * 10 + 5), "total_tax": format!("{}.00", hours * 2),
        "total": total.map_or(format!("{}.55", hours * 12 + 5), str::to_string),
        "customer_name": format!("Customer {customer}")})
}

fn product(sku: &str, name: &str, price: &str) -> Value {
    json!({"sku": sku, "name": name, "unit_price": price, "description": format!("{name}, by the hour")})
}

// ---- a wrong database in the base URL ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_database_in_the_base_url_is_named_with_the_field_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let c = connector(&server).await;
    let mut cfg = server.connector_config(50);
    cfg["base_url"] = json!(format!("{}/nexo-prod", server.origin()));
    let cfg = cfg.to_string();
    let e = c.check(&cfg).await.into_result().unwrap_err().to_string();
    let expected = "field `base_url`: Tryton at";
    assert!(e.contains(expected), "expected `{expected}` in: {e}");
    assert!(e.contains("has no database `nexo-prod`"), "{e}");
    assert!(!e.contains("no company"), "{e}");
    // A run says the same on its first read or write.
    let e = c
        .read(&cfg, "invoices", None)
        .await
        .into_result()
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no database `nexo-prod`"), "{e}");
    // The right database still checks.
    c.check(&server.connector_config(50).to_string())
        .await
        .into_result()
        .unwrap();
}

// ---- (c) writes: idempotent creates, updates, Tryton's refusals ------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_whose_answer_was_lost_are_not_duplicated_and_tryton_refusals_are_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let rest = Rest::new(&server);
    let c = connector(&server).await;
    let cfg = server.connector_config(50).to_string();
    c.check(&cfg).await.into_result().unwrap();

    // Invoices: created and posted; the same batch again (the host never
    // got the answer) finds them by their marker.
    let batch = [
        upsert("invoices", "", "key-inv-1", &invoice("c-9", 2, None)),
        upsert("invoices", "", "key-inv-2", &invoice("c-10", 3, None)),
    ];
    let first = write(&c, &cfg, "invoices", &batch).await;
    assert!(first.iter().all(|o| o.starts_with("created ")), "{first:?}");
    let replay = write(&c, &cfg, "invoices", &batch).await;
    let found: Vec<String> = first
        .iter()
        .map(|o| o.replacen("created ", "unchanged ", 1))
        .collect();
    assert_eq!(
        replay, found,
        "a replay finds the same invoices and says so (the host counts them matched, not created)"
    );
    let invoices = rest
        .search(
            "account.invoice",
            json!([["description", "like", "nexo:%"]]),
            &[
                "state",
                "number",
                "total_amount",
                "party.code",
                "party.name",
                "description",
            ],
        )
        .await;
    assert_eq!(invoices.len(), 2, "no duplicate: {invoices:?}");
    for inv in &invoices {
        assert_eq!(inv["state"], "posted", "{inv}");
        assert!(
            inv["number"].as_str().unwrap().starts_with("INV/2026/"),
            "{inv}"
        );
    }
    assert_eq!(decimal_text(&invoices[0]["total_amount"]), "29.55");
    assert_eq!(invoices[0]["party"]["code"], "crm:c-9");
    assert_eq!(invoices[0]["party"]["name"], "Customer c-9");
    let parties = rest
        .search("party.party", json!([["code", "like", "crm:%"]]), &["code"])
        .await;
    assert_eq!(parties.len(), 2, "one party per customer: {parties:?}");

    // Sent again with its id: unchanged. A posted invoice cannot change in
    // Tryton: rejected, naming it, and nothing is touched.
    let id1 = id_of(&first[0]);
    assert_eq!(
        write(
            &c,
            &cfg,
            "invoices",
            &[upsert(
                "invoices",
                &id1,
                "key-inv-1",
                &invoice("c-9", 2, None)
            )]
        )
        .await,
        [format!("unchanged {id1}")]
    );
    let out = write(
        &c,
        &cfg,
        "invoices",
        &[upsert(
            "invoices",
            &id1,
            "key-inv-1",
            &invoice("c-9", 5, None),
        )],
    )
    .await;
    assert!(
        out[0].starts_with("failed: rejected:") && out[0].contains("is posted"),
        "{}",
        out[0]
    );

    // A draft invoice is updated in place: lines replaced, then posted.
    let mut draft = invoice("c-11", 1, None);
    draft["status"] = json!("draft");
    let d = write_upsert(&c, &cfg, "invoices", "", "key-draft", &draft).await;
    let did = id_of(&d[0]);
    let mut posted = invoice("c-11", 4, None);
    posted["reference"] = json!("PO 8");
    assert_eq!(
        write_upsert(&c, &cfg, "invoices", &did, "key-draft", &posted).await,
        [format!("updated {did}")]
    );
    let now = rest
        .search(
            "account.invoice",
            json!([["description", "=", "nexo:key-draft"]]),
            &["state", "total_amount", "reference"],
        )
        .await;
    assert_eq!(now.len(), 1);
    assert_eq!(
        (now[0]["state"].as_str(), now[0]["reference"].as_str()),
        (Some("posted"), Some("PO 8"))
    );
    assert_eq!(decimal_text(&now[0]["total_amount"]), "53.55");

    // Totals Tryton does not agree with: rejected with both sums, and the
    // draft is removed again; the rest of the batch goes on.
    let out = write(
        &c,
        &cfg,
        "invoices",
        &[
            upsert("invoices", "", "key-bad", &invoice("c-9", 1, Some("18.00"))),
            upsert("invoices", "", "key-inv-3", &invoice("c-9", 1, None)),
        ],
    )
    .await;
    assert!(out[0].starts_with("failed: rejected:"), "{}", out[0]);
    assert!(out[0].contains("total"), "{}", out[0]);
    assert!(out[1].starts_with("created "), "{}", out[1]);
    let bad = rest
        .search(
            "account.invoice",
            json!([["description", "=", "nexo:key-bad"]]),
            &["id"],
        )
        .await;
    assert!(bad.is_empty(), "nothing left behind: {bad:?}");
    // A currency Tryton does not have is Tryton's refusal, for that record.
    let mut yen = invoice("c-9", 1, None);
    yen["currency"] = json!("CHF");
    let out = write_upsert(&c, &cfg, "invoices", "", "key-chf", &yen).await;
    assert!(out[0].contains("no currency CHF"), "{}", out[0]);

    // Parties: a create found by its code; a changed one is updated once.
    let acme = json!({"name": "Acme", "email": "billing@acme.test", "roles": ["customer"],
        "external_refs": [{"system": "crm", "id": "c-42"}],
        "address": {"lines": ["1 Main St"], "city": "Lyon", "postal_code": "69001"}});
    let p1 = write_upsert(&c, &cfg, "parties", "", "key-p", &acme).await;
    let p2 = write_upsert(&c, &cfg, "parties", "", "key-p", &acme).await;
    let pid = id_of(&p1[0]);
    assert_eq!(p1, [format!("created {pid}")]);
    assert_eq!(p2, [format!("unchanged {pid}")], "found by its code");
    let mut acme2 = acme.clone();
    acme2["email"] = json!("accounts@acme.test");
    assert_eq!(
        write_upsert(&c, &cfg, "parties", &pid, "key-p", &acme2).await,
        [format!("updated {pid}")]
    );
    assert_eq!(
        write_upsert(&c, &cfg, "parties", &pid, "key-p", &acme2).await,
        [format!("unchanged {pid}")]
    );
    let found = rest
        .search(
            "party.party",
            json!([["code", "=", "crm:c-42"]]),
            &["contact_mechanisms.value", "addresses.city"],
        )
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]["contact_mechanisms"][0]["value"],
        "accounts@acme.test"
    );
    assert_eq!(found[0]["addresses"][0]["city"], "Lyon");

    // Products: matched on their code.
    let w = product("SKU-1", "Widget", "12.50");
    let a = write_upsert(&c, &cfg, "products", "", "key-w", &w).await;
    let b = write_upsert(&c, &cfg, "products", "", "key-w", &w).await;
    assert!(a[0].starts_with("created "), "{a:?}");
    assert_eq!(
        b,
        [a[0].replacen("created ", "unchanged ", 1)],
        "found by its code"
    );
    assert_eq!(
        rest.search("product.product", json!([["code", "=", "SKU-1"]]), &["id"])
            .await
            .len(),
        1
    );

    // Writing the read-only stream is refused, not ignored.
    let e = c
        .write(&cfg, "sales", &[upsert("sales", "", "x", &json!({}))])
        .await
        .into_result()
        .unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
}

// ---- reads: canonical records, keyset paging, incremental -----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_page_to_the_end_in_the_canonical_model_and_then_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let rest = Rest::new(&server);
    let c = connector(&server).await;
    let cfg = server.connector_config(2).to_string();
    let mut templates = Vec::new();
    for i in 0..5 {
        let id = rest
            .create(
                "product.template",
                json!({"name": format!("Service {i}"), "code": format!("S-{i}"), "type": "service",
                    "list_price": decimal(&format!("{}.25", 10 + i)), "default_uom": 1, "salable": true,
                    "sale_uom": 1, "account_category": server.ids().account_category,
                    "products": [["create", [{"description": format!("Service number {i}")}]]]}),
            )
            .await;
        templates.push(id);
    }
    let (products, state) = read_payloads(&c, &cfg, "products", None).await;
    let skus: BTreeSet<&str> = products
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus.len(), 5, "{products:?}");
    let p0 = products.iter().find(|p| p["sku"] == "S-0").unwrap();
    assert_eq!(p0["unit_price"], "10.25");
    assert_eq!(p0["tax_rate"], "20", "from the account category: {p0}");
    assert_eq!(p0["name"], "Service 0");
    assert_eq!(p0["description"], "Service number 0");
    // Nothing changed: nothing read.
    let (again, state) = read_payloads(&c, &cfg, "products", state).await;
    assert!(again.is_empty(), "{again:?}");
    // A price changed on the template: exactly that product, once.
    tokio::time::sleep(Duration::from_millis(5)).await;
    rest.update(
        "product.template",
        templates[3],
        json!({"list_price": decimal("99.90")}),
    )
    .await;
    let (changed, _) = read_payloads(&c, &cfg, "products", state).await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        (
            changed[0]["sku"].as_str(),
            changed[0]["unit_price"].as_str()
        ),
        (Some("S-3"), Some("99.9"))
    );

    // Invoices and sales read back with their lines.
    let wc = server.connector_config(50).to_string();
    write(
        &c,
        &wc,
        "invoices",
        &[upsert("invoices", "", "k1", &invoice("c-1", 2, None))],
    )
    .await;
    let (invoices, _) = read_payloads(&c, &cfg, "invoices", None).await;
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    assert_eq!(inv["status"], "authorised");
    assert_eq!(
        (
            inv["subtotal"].as_str(),
            inv["total_tax"].as_str(),
            inv["total"].as_str()
        ),
        (Some("25.55"), Some("4"), Some("29.55"))
    );
    assert_eq!(inv["lines"][0]["tax_rate"], "20");
    assert_eq!(inv["lines"].as_array().unwrap().len(), 2);
    let party = inv["customer"]["id"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let sale = rest
        .create(
            "sale.sale",
            json!({"company": 1, "party": party, "currency": 1, "invoice_address": null,
                "lines": [["create", [{"type": "line", "product": 1, "quantity": 3.0, "unit": 1,
                    "unit_price": decimal("10.25"), "description": "Three hours"}]]]}),
        )
        .await;
    let (sales, _) = read_payloads(&c, &cfg, "sales", None).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(sales[0]["id"], sale.to_string());
    assert_eq!(sales[0]["lines"][0]["amount"], "30.75");
    assert_eq!(sales[0]["untaxed_amount"], "30.75");
    // Parties: the company's own party and the invoice's customer.
    let (parties, _) = read_payloads(&c, &cfg, "parties", None).await;
    let refs: Vec<&Value> = parties
        .iter()
        .filter_map(|p| p["external_refs"].get(0))
        .collect();
    assert_eq!(
        refs,
        [&json!({"system": "crm", "id": "c-1"})],
        "{parties:?}"
    );
}

// ---- (a) HubSpot won deals → Tryton parties and posted invoices ------------

fn pipeline(name: &str, entity: &str, model: &str, emit: &str, stream: &str) -> String {
    format!(
        "name = \"{name}\"\nentity = \"{entity}\"\nmodel = \"{model}\"\n\
         [source]\nconnection = \"hubspot\"\nstream = \"deals\"\n\
         [[mappers]]\nplugin = \"nexo/deal-to-invoice\"\n\
         config = {{ emit = \"{emit}\", status = \"authorised\", default_tax_rate = \"20\" }}\n\
         [destination]\nconnection = \"tryton\"\nstream = \"{stream}\"\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn won_hubspot_deals_become_tryton_customers_and_posted_invoices_once() {
    let host = Host::new().await;
    let server = start(host.dir.path()).await;
    let rest = Rest::new(&server);
    let hub = hubspot::start(HubSpotConfig {
        token: HUBSPOT_TOKEN.into(),
        seed: SeedData::of_size(36, 11),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    host.connect_overridden(
        "hubspot",
        "nexo/hubspot",
        ("https://api.hubapi.com", &hub.url()),
        json!({"page_size": 50}),
        ("api_token", HUBSPOT_TOKEN),
    );
    host.connect_tryton("tryton", &server, 20);
    host.apply(&pipeline(
        "customers",
        "customer",
        "company",
        "customer",
        "parties",
    ))
    .await;
    host.apply(&pipeline(
        "invoices", "invoice", "invoice", "invoice", "invoices",
    ))
    .await;

    let won: Vec<u64> = hub
        .objects(ObjectType::Deals)
        .iter()
        .filter(|d| d.property("dealstage").as_deref() == Some("closedwon"))
        .map(|d| d.id)
        .collect();
    let companies: BTreeSet<u64> = won
        .iter()
        .map(|d| hub.associated(ObjectType::Deals, *d, ObjectType::Companies)[0])
        .collect();
    assert!(won.len() >= 4, "{won:?}");

    let first = host.run("customers").await;
    assert_eq!(
        first.counts.created,
        companies.len() as u64,
        "{:?}",
        first.counts
    );
    let first = host.run("invoices").await;
    let letters = host
        .db
        .dead_letters(
            Some("invoices"),
            Some(nexo::sync::store::DeadLetterStatus::Open),
        )
        .unwrap();
    let errors: Vec<&str> = letters.iter().map(|l| l.letter.error.as_str()).collect();
    assert_eq!(
        first.counts.created,
        won.len() as u64,
        "{:?} {errors:?}",
        first.counts
    );
    assert_eq!(first.counts.failed, 0, "{:?}", first.counts);

    // In Tryton: one party per company, one posted invoice per won deal,
    // billed to the deal's company, with the deal's total.
    let check = |invoices: &[Value], parties: &[Value]| {
        assert_eq!(parties.len(), companies.len(), "{parties:?}");
        let codes: BTreeSet<String> = parties
            .iter()
            .map(|p| p["code"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = companies.iter().map(|c| format!("hubspot:{c}")).collect();
        assert_eq!(codes, expected);
        assert_eq!(
            invoices.len(),
            won.len(),
            "no duplicate invoice: {invoices:?}"
        );
        for inv in invoices {
            assert_eq!(inv["state"], "posted", "{inv}");
        }
    };
    // What Tryton holds: customer invoices, and the parties made from HubSpot.
    let in_tryton = || async {
        let invoices = rest
            .search(
                "account.invoice",
                json!([["type", "=", "out"]]),
                &[
                    "state",
                    "reference",
                    "party.code",
                    "untaxed_amount",
                    "total_amount",
                ],
            )
            .await;
        let parties = rest
            .search(
                "party.party",
                json!([["code", "like", "hubspot:%"]]),
                &["code", "name"],
            )
            .await;
        (invoices, parties)
    };
    let (invoices, parties) = in_tryton().await;
    check(&invoices, &parties);
    for d in &won {
        let deal = hub.get(ObjectType::Deals, *d).unwrap();
        let company = hub.associated(ObjectType::Deals, *d, ObjectType::Companies)[0];
        let name = deal.property("dealname").unwrap();
        let inv = invoices
            .iter()
            .find(|i| i["reference"] == name.as_str())
            .unwrap();
        assert_eq!(inv["party"]["code"], format!("hubspot:{company}"));
    }

    // Nothing changed: nothing written.
    for name in ["customers", "invoices"] {
        let again = host.run(name).await;
        assert_eq!(again.counts.written(), 0, "{name}: {:?}", again.counts);
    }

    // One deal renamed in HubSpot after its invoice was posted: Tryton
    // does not change a posted invoice, so that one record is rejected
    // (dead-lettered with the reason); nothing is created or duplicated.
    tokio::time::sleep(Duration::from_millis(5)).await;
    hub.edit(ObjectType::Deals, won[0], &[("dealname", "Renamed deal")])
        .unwrap();
    let third = host.run("invoices").await;
    assert_eq!(
        (third.counts.read, third.counts.created, third.counts.failed),
        (1, 0, 1),
        "{:?}",
        third.counts
    );
    let letters = host
        .db
        .dead_letters(
            Some("invoices"),
            Some(nexo::sync::store::DeadLetterStatus::Open),
        )
        .unwrap();
    assert!(
        letters.iter().any(|l| l.letter.error.contains("is posted")),
        "{:?}",
        letters.iter().map(|l| &l.letter.error).collect::<Vec<_>>()
    );
    let (invoices, parties) = in_tryton().await;
    check(&invoices, &parties);
}

// ---- (b) Tryton products as the source ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_products_sync_once_then_only_the_changed_one() {
    let host = Host::new().await;
    let a_dir = host.dir.path().join("a");
    let b_dir = host.dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let (a, b) = (start(&a_dir).await, start(&b_dir).await);
    let (ra, rb) = (Rest::new(&a), Rest::new(&b));
    let mut templates = Vec::new();
    for i in 0..7 {
        templates.push(
            ra.create(
                "product.template",
                json!({"name": format!("Item {i}"), "code": format!("ITEM-{i:02}"), "type": "service",
                    "list_price": decimal(&format!("{}.50", 3 + i)), "default_uom": 1, "salable": true,
                    "sale_uom": 1, "products": [["create", [{}]]]}),
            )
            .await,
        );
    }
    host.connect_tryton("tryton-a", &a, 3);
    host.connect_tryton("tryton-b", &b, 3);
    host.apply(
        "name = \"products\"\nentity = \"product\"\nmodel = \"product\"\n\
         [source]\nconnection = \"tryton-a\"\nstream = \"products\"\n\
         [destination]\nconnection = \"tryton-b\"\nstream = \"products\"\n",
    )
    .await;
    let first = host.run("products").await;
    assert_eq!(first.counts.created, 7, "{:?}", first.counts);
    let second = host.run("products").await;
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);

    tokio::time::sleep(Duration::from_millis(5)).await;
    ra.update(
        "product.template",
        templates[2],
        json!({"list_price": decimal("42.00")}),
    )
    .await;
    let third = host.run("products").await;
    assert_eq!(
        (third.counts.updated, third.counts.created),
        (1, 0),
        "{:?}",
        third.counts
    );

    let in_b = rb
        .search("product.product", json!([]), &["code", "list_price_used"])
        .await;
    assert_eq!(in_b.len(), 7, "no duplicates: {in_b:?}");
    let prices: BTreeMap<String, String> = in_b
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_string(),
                decimal_text(&p["list_price_used"]),
            )
        })
        .collect();
    assert_eq!(prices["ITEM-02"], "42");
    assert_eq!(prices["ITEM-03"], "6.5");
}

// ---- read-backs are not conflicts; the dry run predicts the run -------------

/// A host with Tryton at `tryton` and a HubSpot sandbox at `hubspot` whose
/// five won deals (see `won_deals`) have no invoice yet.
async fn deals_and_tryton(host: &Host) -> (Tryton, HubSpotSandbox, Vec<u64>) {
    let server = start(host.dir.path()).await;
    let hub = hubspot::start(HubSpotConfig {
        token: HUBSPOT_TOKEN.into(),
        seed: SeedData {
            seed: 3,
            companies: 2,
            contacts: 0,
            deals: 0,
        },
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    // Five won deals without line items: one invoice line from `amount`.
    let deals = won_deals(&hub, 5);
    host.connect_overridden(
        "hubspot",
        "nexo/hubspot",
        ("https://api.hubapi.com", &hub.url()),
        json!({"page_size": 50}),
        ("api_token", HUBSPOT_TOKEN),
    );
    host.connect_tryton("tryton", &server, 20);
    (server, hub, deals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_predicts_deals_mapped_again_to_the_same_posted_invoices_as_unchanged() {
    let host = Host::new().await;
    let (_server, hub, deals) = deals_and_tryton(&host).await;
    host.apply(&deals_pipeline(
        "invoices",
        "invoice",
        "emit = \"invoice\", status = \"authorised\", default_tax_rate = \"20\"",
        "tryton",
        "invoices",
        "model = \"invoice\"",
    ))
    .await;
    let first = host.predicted_run("invoices").await;
    assert_eq!(first.counts.created, 5, "{:?}", first.counts);
    let second = host.predicted_run("invoices").await;
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);
    // Compared byte for byte with Tryton's read-back, each invoice looked
    // different: the dry run said "update 5", Tryton answered "unchanged".
    touch_deals(&hub, &deals).await;
    let touched = host.predicted_run("invoices").await;
    assert_eq!(
        (
            touched.counts.read,
            touched.counts.unchanged,
            touched.counts.conflicts
        ),
        (5, 5, 0),
        "{:?}",
        touched.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_read_backs_are_no_conflict_an_edit_there_is_one_and_dry_runs_predict_each_run() {
    let host = Host::new().await;
    let (server, hub, deals) = deals_and_tryton(&host).await;
    let rest = Rest::new(&server);
    host.apply(&deals_pipeline(
        "invoices",
        "invoice",
        "emit = \"invoice\", status = \"draft\", default_tax_rate = \"20\"",
        "tryton",
        "invoices",
        "model = \"invoice\"\n[conflicts]\npolicy = \"hold\"",
    ))
    .await;
    let open_conflicts = || {
        host.db
            .conflicts(
                Some("invoices"),
                Some(nexo::sync::store::ConflictStatus::Open),
            )
            .unwrap()
            .len()
    };

    // First run: five draft invoices, as the dry run said.
    let first = host.predicted_run("invoices").await;
    assert_eq!(first.counts.created, 5, "{:?}", first.counts);
    // Nothing changed: Tryton's read-back (its own decimals, party ids, no
    // external_refs) is recognised as Nexo's own write.
    let second = host.predicted_run("invoices").await;
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);

    // Every deal read and mapped again to the same invoice: nothing to
    // write, no conflict (byte for byte, Tryton's form differed).
    touch_deals(&hub, &deals).await;
    let touched = host.predicted_run("invoices").await;
    assert_eq!(
        (touched.counts.read, touched.counts.unchanged),
        (5, 5),
        "{:?}",
        touched.counts
    );
    assert_eq!(open_conflicts(), 0);

    // Only the amounts of three deals change: three updates, no conflict.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for (i, d) in deals.iter().take(3).enumerate() {
        hub.edit(
            ObjectType::Deals,
            *d,
            &[("amount", &format!("{}.50", 200 + i))],
        )
        .unwrap();
    }
    let third = host.predicted_run("invoices").await;
    assert_eq!(
        (third.counts.updated, third.counts.conflicts),
        (3, 0),
        "{:?}",
        third.counts
    );
    assert_eq!(open_conflicts(), 0, "a read-back was taken for an edit");
    let totals: BTreeSet<String> = rest
        .search(
            "account.invoice",
            json!([["type", "=", "out"]]),
            &["total_amount"],
        )
        .await
        .iter()
        .map(|i| decimal_text(&i["total_amount"]))
        .collect();
    for i in 0..3u64 {
        // (200.50 + i) × 1.2, in cents, as Tryton's normalised text.
        let cents = (20_050 + 100 * i) * 12 / 10;
        let total = decimal_text(&decimal(&format!("{}.{:02}", cents / 100, cents % 100)));
        assert!(totals.contains(&total), "{total} in {totals:?}");
    }

    // Someone edits an invoice in Tryton (its reference, a field Nexo
    // writes) and its deal changes too: exactly one conflict, held.
    let invoice = rest
        .search(
            "account.invoice",
            json!([["reference", "=", "Deal 4"]]),
            &["id"],
        )
        .await;
    let invoice = invoice[0]["id"].as_u64().unwrap();
    rest.update(
        "account.invoice",
        invoice,
        json!({"reference": "Deal 4, as the customer asked"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    hub.edit(ObjectType::Deals, deals[4], &[("amount", "999.00")])
        .unwrap();
    let fourth = host.predicted_run("invoices").await;
    assert_eq!(
        (fourth.counts.conflicts, fourth.counts.updated),
        (1, 0),
        "{:?}",
        fourth.counts
    );
    assert_eq!(open_conflicts(), 1);
    let kept = rest
        .search(
            "account.invoice",
            json!([["id", "=", invoice]]),
            &["reference"],
        )
        .await;
    assert_eq!(kept[0]["reference"], "Deal 4, as the customer asked");
}

// ---- going live: the ERP already holds the CRM's customers ----------------

/// The CRM's people flow to a real Tryton that already holds most of them
/// (typed by someone else: other case, format, accents, legal forms) and a
/// few namesakes. The pipeline matches before its first run: the sure
/// matches are linked and updated in place, the uncertain ones wait in the
/// review queue, only the rest are created — read back from Tryton itself.
/// Accepting a queued match makes the next run update that party; rejecting
/// one makes it create a new party.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_live_links_the_parties_tryton_holds_and_creates_only_the_rest() {
    use nexo::sync::review::Verdict;
    use nexo::sync::store::{ReviewFilter, ReviewStatus, ReviewStore};
    use nexo_tests::going_live::{self, CRM, EXISTING, Expect};

    let host = Host::new().await;
    let tryton = start(host.dir.path()).await;
    let rest = Rest::new(&tryton);
    for (code, name) in [
        ("GB", "United Kingdom"),
        ("PT", "Portugal"),
        ("FR", "France"),
        ("DE", "Germany"),
        ("TR", "Türkiye"),
        ("LB", "Lebanon"),
        ("HR", "Croatia"),
        ("JP", "Japan"),
    ] {
        rest.create("country.country", json!({"code": code, "name": name}))
            .await;
    }
    // The parties a person typed into Tryton before Nexo was connected.
    let c = connector(&tryton).await;
    let cfg = tryton.connector_config(50).to_string();
    let mut existing: BTreeMap<&str, String> = BTreeMap::new();
    for (i, e) in EXISTING.iter().enumerate() {
        let mut party = json!({"name": e.name, "roles": ["customer"],
            "address": {"lines": [], "country": e.country}});
        if let Some(m) = e.email {
            party["email"] = json!(m);
        }
        if let Some(p) = e.phone {
            party["phone"] = json!(p);
        }
        let out = write_upsert(&c, &cfg, "parties", "", &format!("typed-{i}"), &party).await;
        existing.insert(e.name, id_of(&out[0]));
    }
    let hub = hubspot::start(HubSpotConfig {
        token: HUBSPOT_TOKEN.into(),
        seed: SeedData::EMPTY,
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let crm_ids = going_live::seed_crm(&hub);
    host.connect_overridden(
        "hubspot",
        "nexo/hubspot",
        ("https://api.hubapi.com", &hub.url()),
        json!({"page_size": 4}),
        ("api_token", HUBSPOT_TOKEN),
    );
    host.connect_tryton("erp", &tryton, 3);
    host.apply(&going_live::pipeline("customers", ("erp", "parties")))
        .await;
    let names = async || -> BTreeMap<String, String> {
        rest.search("party.party", json!([]), &["name"])
            .await
            .into_iter()
            .map(|p| (p["id"].to_string(), p["name"].as_str().unwrap().to_string()))
            .collect()
    };
    let before = names().await;
    assert_eq!(
        before.len(),
        EXISTING.len() + 1,
        "the company's own party too: {before:?}"
    );

    let first = host.predicted_run("customers").await;
    let report = first.matching.clone().expect("the first run matches first");
    assert_eq!(
        (
            report.counts.linked,
            report.counts.queued,
            report.counts.unmatched
        ),
        (3, 3, 2),
        "{report:?}"
    );
    for (i, p) in CRM.iter().enumerate() {
        match p.expect {
            Expect::Linked(name) => assert!(
                report
                    .linked
                    .iter()
                    .any(|l| l.source_id == crm_ids[i] && l.destination_id == existing[name]),
                "{}: {report:?}",
                p.first
            ),
            Expect::Queued(_) => assert!(
                report.queued.iter().any(|q| q.source_id == crm_ids[i]),
                "{}",
                p.first
            ),
            Expect::Created => assert!(report.unmatched.contains(&crm_ids[i]), "{}", p.first),
        }
    }
    assert_eq!(
        (
            first.counts.created,
            first.counts.updated,
            first.counts.held,
            first.counts.failed
        ),
        (2, 3, 3, 0),
        "{:?}",
        first.counts
    );
    // Read from Tryton: two parties more, the linked ones renamed in place.
    let after = names().await;
    assert_eq!(after.len(), before.len() + 2, "{after:?}");
    for p in CRM {
        let full = format!("{} {}", p.first, p.last);
        let holders = after.values().filter(|n| **n == full).count();
        match p.expect {
            Expect::Linked(name) => {
                assert_eq!(after[&existing[name]], full, "{} updated in place", p.first);
                assert_eq!(holders, 1, "{}", p.first);
            }
            Expect::Created => assert_eq!(holders, 1, "{}", p.first),
            Expect::Queued(_) => assert_eq!(holders, 0, "{} was written: {after:?}", p.first),
        }
    }

    // A person accepts the similar name and rejects the namesake.
    let open = host
        .db
        .reviews(&ReviewFilter {
            pipeline: Some("customers".into()),
            status: Some(ReviewStatus::Open),
        })
        .unwrap();
    let review_of = |first_name: &str| {
        let i = CRM.iter().position(|p| p.first == first_name).unwrap();
        open.iter().find(|r| r.source_id == crm_ids[i]).unwrap().id
    };
    host.engine
        .decide_review(review_of("Farah"), Verdict::Accept(None), "cli:test")
        .unwrap();
    host.engine
        .decide_review(review_of("Elif"), Verdict::Reject, "cli:test")
        .unwrap();
    let next = host.predicted_run("customers").await;
    assert_eq!(
        (next.counts.created, next.counts.updated, next.counts.held),
        (1, 1, 0),
        "{:?}",
        next.counts
    );
    // The namesakes' review still waits, and so does its record.
    let dmitri = host.db.review(review_of("Dmitri")).unwrap().unwrap();
    assert_eq!(dmitri.status, ReviewStatus::Open);
    let last = names().await;
    assert_eq!(last.len(), after.len() + 1, "{last:?}");
    assert_eq!(last[&existing["Farrah Hadad"]], "Farah Haddad");
    assert_eq!(last[&existing["ELIF YILMAZ"]], "ELIF YILMAZ");
    assert_eq!(last.values().filter(|n| *n == "Elif Yilmaz").count(), 1);
}

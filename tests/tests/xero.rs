//! The Xero connector against the Xero-like sandbox (`nexo_sandbox::xero`),
//! in-process on 127.0.0.1: incremental reads, idempotent writes (a lost
//! answer does not duplicate), Xero's validation messages as `rejected`, a
//! 429 storm waited out — and every request the connector sends and every
//! response the sandbox returns checked against the schemas of Xero's
//! OpenAPI description (`../shared/specs/xero/xero_accounting.yaml`).
//!
//! These tests drive `read` and `write` as the sync engine does (`id` "" for
//! a create, the idempotency key in `cursor`, the same batch again after a
//! failed call).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nexo::ConnectorPlugin;
use nexo::plugin::Record;
use nexo_sandbox::xero::{self, Collection, XeroConfig, XeroSandbox};
use nexo_tests::connkit::{self, id_of, read_payloads, upsert, write_retrying};
use nexo_tests::programs;
use serde_json::{Value, json};

const TOKEN: &str = "xero-test-token";
const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000aa";

async fn sandbox(seed: usize, rate_limit: Option<u32>) -> XeroSandbox {
    xero::start(XeroConfig {
        token: TOKEN.into(),
        tenant_id: TENANT.into(),
        rate_limit,
        rate_window: Duration::from_secs(1),
        seed,
        ..XeroConfig::default()
    })
    .await
    .unwrap()
}

async fn connector(server: &XeroSandbox) -> ConnectorPlugin {
    connkit::open_overridden(
        programs::XERO,
        "nexo/xero",
        "https://api.xero.com",
        &server.url(),
        &[("access_token", TOKEN)],
    )
    .await
}

fn config(_server: &XeroSandbox) -> String {
    json!({"tenant_id": TENANT, "timeout_ms": 1500}).to_string()
}

fn company(name: &str, source_id: &str) -> Value {
    json!({"name": name, "email": format!("{}@example.com", source_id), "roles": ["customer"],
           "external_refs": [{"system": "crm", "id": source_id}]})
}

/// `hours` × 10.00 at 20 % plus 5.55 untaxed, billed to crm:`customer`.
fn invoice(customer: &str, hours: u32, total: Option<&str>) -> Value {
    json!({"customer": {"kind": "company", "system": "crm", "id": customer},
        "issue_date": "2024-03-01", "due_date": "2024-03-31", "currency": "EUR", "status": "authorised",
        "reference": "PO 7",
        "lines": [{"description": "Consulting", "quantity": hours.to_string(), "unit_price": "10.00",
                   "tax_rate": "20", "line_amount": format!("{}.00", hours * 10), "account_code": "200"},
                  {"description": "Travel", "quantity": "1", "unit_price": "5.55", "line_amount": "5.55",
                   "account_code": "200", "tax_rate": "0"}],
        "subtotal": format!("{}.55", hours * 10 + 5), "total_tax": format!("{}.00", hours * 2),
        "total": total.map_or(format!("{}.55", hours * 12 + 5), str::to_string)})
}

// ---- OpenAPI schema validation -------------------------------------------

/// The vendor's description as JSON, with OpenAPI's `nullable` turned into
/// JSON Schema and `x-` keywords dropped.
fn openapi() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/specs/xero/xero_accounting.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut spec: Value = serde_norway::from_str(&text).unwrap();
    fn fix(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !k.starts_with("x-") && k != "example");
                if m.remove("nullable") == Some(Value::Bool(true))
                    && let Some(Value::String(t)) = m.get("type").cloned()
                {
                    m.insert("type".into(), json!([t, "null"]));
                }
                m.values_mut().for_each(fix);
            }
            Value::Array(a) => a.iter_mut().for_each(fix),
            _ => {}
        }
    }
    fix(&mut spec);
    spec
}

/// Validators for `#/components/schemas/NAME` of each collection, and for
/// `Error` (a 400's body).
fn validators(spec: &Value) -> BTreeMap<String, jsonschema::Validator> {
    ["Contacts", "Items", "Invoices", "Payments", "Accounts", "Error"]
        .into_iter()
        .map(|name| {
            let schema = json!({"$ref": format!("#/components/schemas/{name}"), "components": spec["components"]});
            (name.to_string(), jsonschema::validator_for(&schema).unwrap())
        })
        .collect()
}

fn check_schemas(server: &XeroSandbox) -> usize {
    let v = validators(&openapi());
    let mut checked = 0;
    for ex in server.exchanges() {
        let Some(c) = ex.collection else { continue };
        let what = format!("{} {}?{} → {}", ex.method, ex.path, ex.query, ex.status);
        if let Some(body) = &ex.request {
            let errors: Vec<String> = v[c.name()]
                .iter_errors(body)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "request of {what} breaks #/components/schemas/{}: {errors:?}\n{body}",
                c.name()
            );
            checked += 1;
        }
        if let Some(body) = &ex.response {
            let schema = match ex.status {
                200 => c.name(),
                400 => "Error",
                _ => continue,
            };
            let errors: Vec<String> = v[schema]
                .iter_errors(body)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "response of {what} breaks #/components/schemas/{schema}: {errors:?}\n{body}"
            );
            checked += 1;
        }
    }
    checked
}

// ---- tests ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_speaks_xeros_http_auth_paging_validation_and_rate_limit() {
    let server = sandbox(120, Some(1000)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api.xro/2.0/Invoices", server.url());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Title"], "Unauthorized");
    let r = http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("xero-tenant-id", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let get = |page: u32| {
        http.get(format!("{url}?page={page}"))
            .bearer_auth(TOKEN)
            .header("xero-tenant-id", TENANT)
    };
    let p1: Value = get(1).send().await.unwrap().json().await.unwrap();
    let p2: Value = get(2).send().await.unwrap().json().await.unwrap();
    assert_eq!(p1["Invoices"].as_array().unwrap().len(), 100);
    assert_eq!(p2["Invoices"].as_array().unwrap().len(), 20);
    assert_eq!(p1["pagination"]["itemCount"], 120);
    let inv = &p1["Invoices"][0];
    assert!(
        inv["UpdatedDateUTC"]
            .as_str()
            .unwrap()
            .starts_with("/Date("),
        "{inv}"
    );
    // Totals are exact: SubTotal + TotalTax = Total.
    for inv in p1["Invoices"].as_array().unwrap() {
        let n = |k: &str| xero::Amount::from_json(&inv[k]).unwrap();
        assert_eq!(
            n("SubTotal").checked_add(n("TotalTax")).unwrap(),
            n("Total"),
            "{inv}"
        );
    }
    // Totals that do not add up: a validation error per record, not a 500.
    let contact = p1["Invoices"][0]["Contact"]["ContactID"].clone();
    let bad = json!({"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": contact}, "Date": "2024-03-01",
        "LineItems": [{"Description": "x", "Quantity": 3, "UnitAmount": 1.85, "AccountCode": "200", "TaxType": "NONE"}],
        "Total": 5.56},
        {"Type": "ACCREC", "Contact": {"ContactID": contact}, "Date": "2024-03-01",
        "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 1, "AccountCode": "999"}]},
        {"Type": "ACCREC", "Date": "2024-03-01", "LineItems": []}]});
    let r = http
        .put(format!("{url}?summarizeErrors=false"))
        .bearer_auth(TOKEN)
        .header("xero-tenant-id", TENANT)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let msgs: Vec<String> = body["Invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["HasErrors"], true, "{i}");
            i["ValidationErrors"][0]["Message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        msgs[0].contains("The document total does not equal the sum of the lines"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("Account code '999' is not a valid code"),
        "{msgs:?}"
    );
    assert!(msgs[2].contains("A Contact must be specified"), "{msgs:?}");
    let r = http
        .put(&url)
        .bearer_auth(TOKEN)
        .header("xero-tenant-id", TENANT)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        server.records(Collection::Invoices).len(),
        120,
        "nothing applied"
    );
    // 429 with Retry-After past the rate.
    server.set_rate_limit(Some(2));
    let mut limited = None;
    for _ in 0..4 {
        let r = get(1).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r.headers()["retry-after"].to_str().unwrap().to_string());
        }
    }
    assert_eq!(limited.as_deref(), Some("1"));
    assert!(check_schemas(&server) > 5);
    // The validators are not vacuous: a malformed body breaks them.
    let v = validators(&openapi());
    assert!(!v["Invoices"].is_valid(&json!({"Invoices": [{"Total": "29.55", "LineItems": {}}]})));
    assert!(!v["Contacts"].is_valid(&json!({"Contacts": [{"Name": 7}]})));
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_incrementally_in_the_canonical_model_and_match_the_openapi_schemas() {
    let server = sandbox(150, None).await;
    let c = connector(&server).await;
    let cfg = config(&server);
    c.check(&cfg).await.into_result().unwrap();
    let (invoices, state) = read_payloads(&c, &cfg, "invoices", None).await;
    assert_eq!(invoices.len(), 150);
    let first = &invoices[0];
    assert_eq!(first["customer"]["system"], "xero");
    assert!(
        first["status"] == "authorised" || first["status"] == "paid",
        "{first}"
    );
    assert!(
        first["total"].is_string() && first["lines"][0]["line_amount"].is_string(),
        "{first}"
    );
    // Every emitted invoice is a valid canonical invoice.
    for inv in &invoices {
        let parsed: nexo_sdk::model::Invoice = serde_json::from_value(inv.clone()).unwrap();
        nexo_sdk::model::Validate::validate(&parsed).unwrap_or_else(|e| panic!("{e}: {inv}"));
    }
    // Nothing changed: nothing read.
    let (again, state) = read_payloads(&c, &cfg, "invoices", state).await;
    assert!(again.is_empty(), "{again:?}");
    // One invoice changed: only it is read.
    let target = server.records(Collection::Invoices)[7]["InvoiceID"]
        .as_str()
        .unwrap()
        .to_string();
    server
        .edit(
            Collection::Invoices,
            &target,
            json!({"Reference": "changed"}),
        )
        .unwrap();
    let (changed, _) = read_payloads(&c, &cfg, "invoices", state).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["id"], target.as_str());
    assert_eq!(changed[0]["reference"], "changed");
    for stream in ["contacts", "items", "payments", "accounts"] {
        let (rows, _) = read_payloads(&c, &cfg, stream, None).await;
        assert!(!rows.is_empty(), "{stream}");
    }
    let (contacts, _) = read_payloads(&c, &cfg, "contacts", None).await;
    assert!(
        contacts.iter().all(|c| c["roles"] == json!(["customer"])),
        "{:?}",
        contacts[0]
    );
    assert!(check_schemas(&server) >= 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_create_once_skip_unchanged_update_changes_and_survive_a_lost_answer() {
    let server = sandbox(0, None).await;
    let c = connector(&server).await;
    let cfg = config(&server);
    let contacts = [upsert("contacts", "", "k-c-9", &company("Acme Ltd", "c-9"))];
    let out = write_retrying(&c, &cfg, "contacts", &contacts).await;
    assert!(out[0].starts_with("created "), "{out:?}");
    let contact_id = id_of(&out[0]);
    assert_eq!(
        server.record(Collection::Contacts, &contact_id).unwrap()["ContactNumber"],
        "crm:c-9"
    );
    // An invoice to crm:c-9 resolves to that contact.
    let batch = [upsert("invoices", "", "k-inv-1", &invoice("c-9", 2, None))];
    let out = write_retrying(&c, &cfg, "invoices", &batch).await;
    assert!(out[0].starts_with("created "), "{out:?}");
    let invoice_id = id_of(&out[0]);
    let stored = server.record(Collection::Invoices, &invoice_id).unwrap();
    assert_eq!(stored["Contact"]["ContactID"], contact_id.as_str());
    assert_eq!(stored["Total"], json!(29.55));
    // Second sync: nothing to write.
    let out = write_retrying(
        &c,
        &cfg,
        "contacts",
        &[upsert(
            "contacts",
            &contact_id,
            "k-c-9",
            &company("Acme Ltd", "c-9"),
        )],
    )
    .await;
    assert_eq!(out, [format!("unchanged {contact_id}")]);
    let out = write_retrying(
        &c,
        &cfg,
        "invoices",
        &[upsert(
            "invoices",
            &invoice_id,
            "k-inv-1",
            &invoice("c-9", 2, None),
        )],
    )
    .await;
    assert_eq!(out, [format!("unchanged {invoice_id}")]);
    // A change updates.
    let out = write_retrying(
        &c,
        &cfg,
        "invoices",
        &[upsert(
            "invoices",
            &invoice_id,
            "k-inv-1",
            &invoice("c-9", 3, None),
        )],
    )
    .await;
    assert_eq!(out, [format!("updated {invoice_id}")]);
    assert_eq!(
        server.record(Collection::Invoices, &invoice_id).unwrap()["Total"],
        json!(41.55)
    );
    let out = write_retrying(
        &c,
        &cfg,
        "contacts",
        &[upsert(
            "contacts",
            &contact_id,
            "k-c-9",
            &company("Acme Group Ltd", "c-9"),
        )],
    )
    .await;
    assert_eq!(out, [format!("updated {contact_id}")]);
    // A lost answer: applied, then no answer within the timeout; the retry
    // of the same batch finds it and does not duplicate.
    server.stall_next_write(Collection::Invoices, Duration::from_secs(4));
    let batch = [upsert("invoices", "", "k-inv-2", &invoice("c-9", 1, None))];
    let out = write_retrying(&c, &cfg, "invoices", &batch).await;
    // Found, not created: the host counts it as matched.
    assert!(out[0].starts_with("unchanged "), "{out:?}");
    let marked: Vec<Value> = server
        .records(Collection::Invoices)
        .into_iter()
        .filter(|i| {
            i["Reference"]
                .as_str()
                .unwrap_or_default()
                .contains("k-inv-2")
        })
        .collect();
    assert_eq!(marked.len(), 1, "duplicated: {marked:?}");
    assert_eq!(id_of(&out[0]), marked[0]["InvoiceID"].as_str().unwrap());
    server.stall_next_write(Collection::Contacts, Duration::from_secs(4));
    let out = write_retrying(
        &c,
        &cfg,
        "contacts",
        &[upsert(
            "contacts",
            "",
            "k-c-10",
            &company("Beta GmbH", "c-10"),
        )],
    )
    .await;
    // Found by its ContactNumber, not created: matched.
    assert!(out[0].starts_with("unchanged "), "{out:?}");
    assert_eq!(server.records(Collection::Contacts).len(), 2);
    // Invalid totals: rejected with Xero's message; the batch goes on.
    let batch = [
        upsert("invoices", "", "k-bad", &invoice("c-9", 2, Some("30.55"))),
        upsert("invoices", "", "k-unknown", &invoice("c-404", 1, None)),
        upsert("invoices", "", "k-inv-3", &invoice("c-10", 1, None)),
    ];
    let out = write_retrying(&c, &cfg, "invoices", &batch).await;
    assert!(
        out[0].starts_with("failed: rejected:")
            && out[0].contains("The document total does not equal the sum of the lines"),
        "{out:?}"
    );
    assert!(
        out[1].contains("customer crm:c-404 has no Xero contact"),
        "{out:?}"
    );
    assert!(out[2].starts_with("created "), "{out:?}");
    // A payment on the invoice (by its Xero id) is applied once.
    let pay = json!({"invoice": {"system": "xero", "id": invoice_id}, "amount": "41.55", "currency": "EUR",
        "date": "2024-03-15", "account_code": "090", "reference": "SEPA 1"});
    let out = write_retrying(
        &c,
        &cfg,
        "payments",
        &[upsert("payments", "", "k-pay-1", &pay)],
    )
    .await;
    assert!(out[0].starts_with("created "), "{out:?}");
    let out2 = write_retrying(
        &c,
        &cfg,
        "payments",
        &[upsert("payments", "", "k-pay-1", &pay)],
    )
    .await;
    assert_eq!(
        out2,
        [out[0].replacen("created ", "unchanged ", 1)],
        "a replayed create finds the same payment (matched, not created)"
    );
    assert_eq!(server.records(Collection::Payments).len(), 1);
    assert_eq!(
        server.record(Collection::Invoices, &invoice_id).unwrap()["Status"],
        "PAID"
    );
    assert!(check_schemas(&server) >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_in_one_batch_cost_two_calls_and_a_refused_one_fails_alone() {
    // Xero allows 60 calls a minute: a batch of updates is one read of
    // the current records by IDs and one POST of the changed ones, not
    // two calls per record.
    let server = sandbox(0, None).await;
    let c = connector(&server).await;
    let cfg = config(&server);
    let names = [
        "Able Ltd",
        "Baker Ltd",
        "Carter Ltd",
        "Dyer Ltd",
        "Ellis Ltd",
    ];
    let creates: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            upsert(
                "contacts",
                "",
                &format!("k-{i}"),
                &company(n, &format!("c-{i}")),
            )
        })
        .collect();
    let out = write_retrying(&c, &cfg, "contacts", &creates).await;
    let ids: Vec<String> = out.iter().map(|o| id_of(o)).collect();
    assert!(out.iter().all(|o| o.starts_with("created ")), "{out:?}");
    let calls_before = server.exchanges().len();
    let update = |i: usize, name: &str| {
        upsert(
            "contacts",
            &ids[i],
            &format!("k-{i}"),
            &company(name, &format!("c-{i}")),
        )
    };
    let batch = [
        update(0, "Able Group Ltd"),
        update(1, "Baker Ltd"), // unchanged
        update(2, "Able Ltd"),  // taken by no one now: Able was renamed first
        update(3, "Baker Ltd"), // Baker's name: refused by Xero
        update(4, "Ellis and Sons Ltd"),
    ];
    let out = write_retrying(&c, &cfg, "contacts", &batch).await;
    assert_eq!(out[0], format!("updated {}", ids[0]));
    assert_eq!(out[1], format!("unchanged {}", ids[1]));
    assert_eq!(out[2], format!("updated {}", ids[2]));
    assert!(
        out[3].starts_with("failed: ") && out[3].contains("already assigned"),
        "{out:?}"
    );
    assert_eq!(out[4], format!("updated {}", ids[4]));
    let calls: Vec<String> = server.exchanges()[calls_before..]
        .iter()
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert_eq!(calls.len(), 2, "one read and one write: {calls:?}");
    let name = |i: usize| server.record(Collection::Contacts, &ids[i]).unwrap()["Name"].clone();
    assert_eq!(name(0), "Able Group Ltd");
    assert_eq!(name(2), "Able Ltd");
    assert_eq!(name(3), "Dyer Ltd", "the refused update changed nothing");
    assert_eq!(name(4), "Ellis and Sons Ltd");
    assert!(check_schemas(&server) > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_slows_reads_and_writes_without_losing_anything() {
    let server = sandbox(250, Some(3)).await;
    let c = connector(&server).await;
    let cfg = config(&server);
    let started = Instant::now();
    let (invoices, _) = read_payloads(&c, &cfg, "invoices", None).await;
    assert_eq!(invoices.len(), 250);
    let (contacts, _) = read_payloads(&c, &cfg, "contacts", None).await;
    assert_eq!(contacts.len(), 250);
    let batch: Vec<Record> = (0..5)
        .map(|i| {
            upsert(
                "contacts",
                "",
                &format!("k-s-{i}"),
                &company(&format!("Storm {i}"), &format!("s-{i}")),
            )
        })
        .collect();
    let out = write_retrying(&c, &cfg, "contacts", &batch).await;
    assert!(out.iter().all(|o| o.starts_with("created ")), "{out:?}");
    assert_eq!(server.records(Collection::Contacts).len(), 255);
    assert!(server.rate_limited() > 0, "no 429 was sent");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

fn product(sku: &str, name: &str, price: &str) -> Value {
    json!({"sku": sku, "name": name, "unit_price": price, "tax_rate": "20", "active": true})
}

#[tokio::test(flavor = "multi_thread")]
async fn items_are_written_once_by_code_updated_on_change_and_retired_on_delete() {
    let server = sandbox(0, None).await;
    let c = connector(&server).await;
    let cfg = config(&server);
    let items = || server.records(Collection::Items);
    let seeded = items().len();
    let batch = [
        upsert(
            "items",
            "",
            "k-i-1",
            &product("SKU-1", "Consulting hour", "95.00"),
        ),
        upsert(
            "items",
            "",
            "k-i-2",
            &product("SKU-2", "Support plan", "12.5"),
        ),
    ];
    let out = write_retrying(&c, &cfg, "items", &batch).await;
    assert!(out.iter().all(|o| o.starts_with("created ")), "{out:?}");
    let id = id_of(&out[0]);
    let stored = server.record(Collection::Items, &id).unwrap();
    assert_eq!(stored["Code"], "SKU-1");
    assert_eq!(stored["SalesDetails"]["UnitPrice"].as_f64(), Some(95.0));
    assert_eq!(stored["SalesDetails"]["TaxType"], "OUTPUT2");
    assert_eq!(stored["IsSold"], true);
    assert_eq!(items().len(), seeded + 2);

    // The same product again: unchanged; a new price: updated.
    let again = [upsert(
        "items",
        &id,
        "k-i-1",
        &product("SKU-1", "Consulting hour", "95"),
    )];
    assert_eq!(
        write_retrying(&c, &cfg, "items", &again).await,
        [format!("unchanged {id}")]
    );
    let changed = [upsert(
        "items",
        &id,
        "k-i-1",
        &product("SKU-1", "Consulting hour", "99.90"),
    )];
    assert_eq!(
        write_retrying(&c, &cfg, "items", &changed).await,
        [format!("updated {id}")]
    );
    assert_eq!(
        server.record(Collection::Items, &id).unwrap()["SalesDetails"]["UnitPrice"].as_f64(),
        Some(99.9)
    );

    // A create whose answer was lost is found again by its code.
    server.stall_next_write(Collection::Items, Duration::from_secs(4));
    let lost = [upsert(
        "items",
        "",
        "k-i-3",
        &product("SKU-3", "Training day", "800"),
    )];
    let out = write_retrying(&c, &cfg, "items", &lost).await;
    // Found by its code, not created: the host counts it as matched.
    assert!(out[0].starts_with("unchanged "), "{out:?}");
    let with_code: Vec<Value> = items()
        .into_iter()
        .filter(|i| i["Code"] == "SKU-3")
        .collect();
    assert_eq!(with_code.len(), 1, "duplicated: {with_code:?}");
    assert_eq!(id_of(&out[0]), with_code[0]["ItemID"].as_str().unwrap());

    // A name longer than Xero allows, or no sku, is rejected per record;
    // the rest of the batch goes on.
    let long = "x".repeat(51);
    let batch = [
        upsert("items", "", "k-i-4", &product("SKU-4", &long, "1")),
        upsert("items", "", "k-i-5", &product(" ", "No code", "1")),
        upsert("items", "", "k-i-6", &product("SKU-6", "Licence", "49")),
    ];
    let out = write_retrying(&c, &cfg, "items", &batch).await;
    assert!(
        out[0].contains("longer than Xero's 50 characters"),
        "{out:?}"
    );
    assert!(out[1].contains("no sku"), "{out:?}");
    assert!(out[2].starts_with("created "), "{out:?}");
    assert_eq!(items().len(), seeded + 4);

    // A delete retires the item from sale; it stays for the invoices that
    // refer to it, and reads back as an inactive product.
    let delete = [connkit::delete("items", &id, "k-i-1")];
    assert_eq!(
        write_retrying(&c, &cfg, "items", &delete).await,
        [format!("deleted {id}")]
    );
    assert_eq!(
        server.record(Collection::Items, &id).unwrap()["IsSold"],
        false
    );
    let (rows, _) = read_payloads(&c, &cfg, "items", None).await;
    let read_back = rows.iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!(read_back["active"], false);
    assert_eq!(read_back["unit_price"], "99.9");
    assert!(check_schemas(&server) >= 10);
}

// ---- pipelines into Xero: the dry run predicts each run -------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_into_xero_each_run_as_its_dry_run_predicted() {
    use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
    use nexo_tests::tryton::{Host, deals_pipeline, touch_deals, won_deals};

    let host = Host::new().await;
    let server = sandbox(0, None).await;
    let hub = hubspot::start(HubSpotConfig {
        token: "pat-na1-xero".into(),
        seed: SeedData {
            seed: 6,
            companies: 2,
            contacts: 0,
            deals: 0,
        },
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let deals = won_deals(&hub, 4);
    host.connect_overridden(
        "hubspot",
        "nexo/hubspot",
        ("https://api.hubapi.com", &hub.url()),
        json!({"page_size": 50}),
        ("api_token", "pat-na1-xero"),
    );
    host.connect_overridden(
        "xero",
        "nexo/xero",
        ("https://api.xero.com", &server.url()),
        json!({"tenant_id": TENANT}),
        ("access_token", TOKEN),
    );
    host.apply(&deals_pipeline(
        "customers",
        "customer",
        "emit = \"customer\"",
        "xero",
        "contacts",
        "model = \"company\"",
    ))
    .await;
    host.apply(&deals_pipeline(
        "invoices",
        "invoice",
        "emit = \"invoice\", status = \"draft\", default_tax_rate = \"0\", account_code = \"200\"",
        "xero",
        "invoices",
        "model = \"invoice\"\n[deletes]\npolicy = \"propagate\"",
    ))
    .await;

    let customers = host.predicted_run("customers").await;
    assert_eq!(customers.counts.created, 2, "{:?}", customers.counts);
    let first = host.predicted_run("invoices").await;
    assert_eq!(first.counts.created, 4, "{:?}", first.counts);
    for name in ["customers", "invoices"] {
        let again = host.predicted_run(name).await;
        assert_eq!(again.counts.written(), 0, "{name}: {:?}", again.counts);
    }

    // Deals mapped again to the same invoices: nothing to write.
    touch_deals(&hub, &deals).await;
    let touched = host.predicted_run("invoices").await;
    assert_eq!(
        (touched.counts.read, touched.counts.unchanged),
        (4, 4),
        "{:?}",
        touched.counts
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    for d in deals.iter().take(2) {
        hub.edit(ObjectType::Deals, *d, &[("amount", "321.00")])
            .unwrap();
    }
    let edited = host.predicted_run("invoices").await;
    assert_eq!(
        (edited.counts.updated, edited.counts.created),
        (2, 0),
        "{:?}",
        edited.counts
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(hub.archive(ObjectType::Deals, deals[3]));
    let deleted = host.predicted_run("invoices").await;
    assert_eq!(deleted.counts.deleted, 1, "{:?}", deleted.counts);
    // The look-back reads the delete again. Xero still lists the deleted
    // draft (status DELETED, read as a voided invoice); the invoice Nexo
    // deleted stays deleted in the identity map, so nothing is sent again.
    let last = host.predicted_run("invoices").await;
    assert_eq!(last.counts.written(), 0, "{:?}", last.counts);
}

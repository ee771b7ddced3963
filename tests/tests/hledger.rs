//! The hledger connector against a real hledger-web (Debian packages
//! `hledger` and `hledger-web`, 1.25): invoices and payments become balanced
//! journal transactions, a replayed batch adds nothing, a changed invoice is
//! reversed and re-posted, an unbalanced invoice is refused before anything
//! is written — and after every step `hledger check` accepts the journal and
//! `hledger bal` shows the balances of the latest versions.
//!
//! There is no source of invoices among the test systems (TinyCRM only has
//! contacts), so these tests drive `write` batches as the sync engine sends
//! them (`id` "" for a create, the idempotency key in `cursor`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nexo::ConnectorPlugin;
use nexo::plugin::{Operation, Record};
use nexo_tests::connkit::{self, upsert, write, write_upsert};
use nexo_tests::hledger::HledgerWeb;
use nexo_tests::programs;
use serde_json::{Value, json};

fn balances(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn connector(server: &HledgerWeb) -> ConnectorPlugin {
    connkit::open(programs::HLEDGER, "nexo/hledger", &server.url, &[]).await
}

/// An invoice to customer c-9: `hours` × 10.00 consulting at 20 % tax plus
/// 5.55 travel untaxed; `total` as given (a wrong one does not balance).
fn invoice(number: &str, hours: u32, total: Option<&str>) -> Value {
    let consulting = format!("{}.00", hours * 10);
    let tax = format!("{}.00", hours * 2);
    let subtotal = format!("{}.55", hours * 10 + 5);
    let computed = format!("{}.55", hours * 12 + 5);
    json!({"customer": {"kind": "company", "system": "crm", "id": "c-9"},
        "number": number, "issue_date": "2024-03-01", "currency": "EUR", "status": "authorised",
        "lines": [{"description": "Consulting", "quantity": hours.to_string(), "unit_price": "10.00",
                   "tax_rate": "20", "line_amount": consulting, "account_code": "200"},
                  {"description": "Travel", "quantity": "1", "unit_price": "5.55", "line_amount": "5.55"}],
        "subtotal": subtotal, "total_tax": tax, "total": total.map_or(computed, str::to_string)})
}

fn payment(amount: &str) -> Value {
    json!({"invoice": {"system": "hledger", "id": "key-inv-1"}, "amount": amount,
        "currency": "EUR", "date": "2024-03-15", "account_code": "090", "reference": "SEPA 77"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_and_payments_post_balanced_idempotent_transactions() {
    let web = HledgerWeb::start().await;
    let c = connector(&web).await;
    let cfg = web.config();
    c.check(&cfg).await.into_result().unwrap();

    // 1. First write: one transaction per record.
    let invoices = [upsert(
        "invoices",
        "",
        "key-inv-1",
        &invoice("INV-1", 2, None),
    )];
    let payments = [upsert("payments", "", "key-pay-1", &payment("20.00"))];
    assert_eq!(
        write(&c, &cfg, "invoices", &invoices).await,
        ["created key-inv-1"]
    );
    assert_eq!(
        write(&c, &cfg, "payments", &payments).await,
        ["created key-pay-1"]
    );
    web.check();
    assert_eq!(web.codes(), ["nexo:key-inv-1/1", "nexo:key-pay-1/1"]);
    let after_first = balances(&[
        ("assets:bank", "EUR 20.00"),
        ("assets:receivable", "EUR 9.55"),
        ("liabilities:tax payable", "EUR -4.00"),
        ("revenue:consulting", "EUR -20.00"),
        ("revenue:sales", "EUR -5.55"),
    ]);
    assert_eq!(web.balances(), after_first);

    // 2. The same batches again (a lost answer retried, or a re-run):
    //    the same ids, nothing added, answered as found (the host counts
    //    them matched, not created).
    let journal = web.text();
    assert_eq!(
        write(&c, &cfg, "invoices", &invoices).await,
        ["unchanged key-inv-1"]
    );
    assert_eq!(
        write(&c, &cfg, "payments", &payments).await,
        ["unchanged key-pay-1"]
    );
    assert_eq!(web.text(), journal, "a replay must not touch the journal");
    web.check();

    // 3. The invoice changes (3 hours instead of 2): the first version is
    //    reversed and the second posted; balances are the latest version's.
    let changed = [upsert(
        "invoices",
        "key-inv-1",
        "key-inv-1",
        &invoice("INV-1", 3, None),
    )];
    assert_eq!(
        write(&c, &cfg, "invoices", &changed).await,
        ["updated key-inv-1"]
    );
    web.check();
    assert_eq!(
        web.codes(),
        [
            "nexo:key-inv-1/1",
            "nexo:key-pay-1/1",
            "nexo:key-inv-1/1-reversed",
            "nexo:key-inv-1/2"
        ]
    );
    let after_update = balances(&[
        ("assets:bank", "EUR 20.00"),
        ("assets:receivable", "EUR 21.55"),
        ("liabilities:tax payable", "EUR -6.00"),
        ("revenue:consulting", "EUR -30.00"),
        ("revenue:sales", "EUR -5.55"),
    ]);
    assert_eq!(web.balances(), after_update);
    // ...and again: already there.
    let journal = web.text();
    assert_eq!(
        write(&c, &cfg, "invoices", &changed).await,
        ["unchanged key-inv-1"],
        "{}",
        web.text()
    );
    assert_eq!(web.text(), journal);

    // 4. An invoice whose total is not subtotal + tax is refused with the
    //    difference and nothing is written for it; the rest of the batch
    //    goes on.
    let batch = [
        upsert(
            "invoices",
            "",
            "key-bad",
            &invoice("INV-BAD", 1, Some("18.00")),
        ),
        upsert("invoices", "", "key-inv-2", &invoice("INV-2", 1, None)),
    ];
    let out = write(&c, &cfg, "invoices", &batch).await;
    assert!(
        out[0].starts_with("failed: rejected: invoices record (key key-bad)")
            && out[0].contains("would not balance: debits 18.00 ≠ credits 17.55 (difference 0.45)"),
        "{}",
        out[0]
    );
    assert_eq!(out[1], "created key-inv-2");
    assert!(!web.text().contains("key-bad") && !web.text().contains("INV-BAD"));
    web.check();
    let mut expected = after_update.clone();
    expected.insert("assets:receivable".into(), "EUR 39.10".into());
    expected.insert("liabilities:tax payable".into(), "EUR -8.00".into());
    expected.insert("revenue:consulting".into(), "EUR -40.00".into());
    expected.insert("revenue:sales".into(), "EUR -11.10".into());
    assert_eq!(web.balances(), expected);

    // A payment breaking the model (negative amount) is refused as well.
    let out = write(
        &c,
        &cfg,
        "payments",
        &[upsert("payments", "", "key-pay-neg", &payment("-5.00"))],
    )
    .await;
    assert!(
        out[0].contains("amount: must be greater than zero"),
        "{}",
        out[0]
    );
    assert!(!web.text().contains("key-pay-neg"));

    // 5. A deleted payment is reversed; deleting again changes nothing.
    let delete = [connkit::delete("payments", "key-pay-1", "key-pay-1")];
    for _ in 0..2 {
        assert_eq!(
            write(&c, &cfg, "payments", &delete).await,
            ["deleted key-pay-1"]
        );
    }
    web.check();
    assert_eq!(
        web.codes()
            .iter()
            .filter(|c| c.contains("key-pay-1"))
            .count(),
        2,
        "{}",
        web.text()
    );
    expected.remove("assets:bank");
    expected.insert("assets:receivable".into(), "EUR 59.10".into());
    assert_eq!(web.balances(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_reads_back_as_documents_and_transactions() {
    let web = HledgerWeb::start().await;
    let c = connector(&web).await;
    let cfg = web.config();
    let v1 = invoice("INV-7", 2, None);
    let v2 = invoice("INV-7", 4, None);
    write_upsert(&c, &cfg, "invoices", "", "k7", &v1).await;
    write_upsert(&c, &cfg, "invoices", "k7", "k7", &v2).await;
    write(
        &c,
        &cfg,
        "payments",
        &[upsert("payments", "", "p7", &payment("1.00"))],
    )
    .await;
    write(
        &c,
        &cfg,
        "payments",
        &[Record {
            stream: "payments".into(),
            id: "p7".into(),
            operation: Operation::Delete,
            payload: "{}".into(),
            cursor: None,
        }],
    )
    .await;
    web.check();

    // The invoice reads back as the latest version, exactly as written.
    let page = c.read(&cfg, "invoices", None).await.into_result().unwrap();
    assert!(!page.has_more);
    assert_eq!(page.records.len(), 1);
    let r = &page.records[0];
    assert_eq!((r.id.as_str(), r.operation), ("k7", Operation::Upsert));
    let mut expected = v2.clone();
    expected["id"] = json!("k7");
    assert_eq!(serde_json::from_str::<Value>(&r.payload).unwrap(), expected);
    assert_eq!(r.cursor.as_deref(), Some("nexo:k7/2"));

    // The reversed payment reads back as a delete.
    let page = c.read(&cfg, "payments", None).await.into_result().unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(
        (page.records[0].id.as_str(), page.records[0].operation),
        ("p7", Operation::Delete)
    );

    // Every transaction, with the code parsed back, including one an
    // accountant entered by hand.
    let mut text = web.text();
    text.push_str("\n2024-04-01 Office rent\n    expenses:rent    EUR 500.00\n    assets:bank\n");
    web.edit(&text).await;
    web.check();
    let page = c
        .read(&cfg, "transactions", None)
        .await
        .into_result()
        .unwrap();
    let payloads: Vec<Value> = page
        .records
        .iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect();
    let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "nexo:k7/1",
            "nexo:k7/1-reversed",
            "nexo:k7/2",
            "nexo:p7/1",
            "nexo:p7/1-reversed",
            "t6"
        ]
    );
    assert_eq!(payloads[1]["nexo_document"], "k7");
    assert_eq!(payloads[1]["nexo_reversal"], true);
    assert_eq!(payloads[2]["nexo_revision"], 2);
    assert_eq!(payloads[5]["description"], "Office rent");
    assert_eq!(payloads[5]["postings"][1]["amount"], "-500.00");
    assert!(payloads[5].get("nexo_document").is_none());

    // Writing the read-only stream is refused, not ignored.
    let e = c
        .write(
            &cfg,
            "transactions",
            &[upsert("transactions", "", "x", &json!({}))],
        )
        .await
        .into_result()
        .unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_interrupted_between_reversal_and_new_version_is_completed() {
    let web = HledgerWeb::start().await;
    let c = connector(&web).await;
    let cfg = web.config();
    write(
        &c,
        &cfg,
        "invoices",
        &[upsert("invoices", "", "k1", &invoice("INV-1", 1, None))],
    )
    .await;
    // The update's first step (the reversal) landed, then the call died:
    // simulate by appending the reversal only, as the connector writes it.
    let first = web.text();
    let v2 = invoice("INV-1", 5, None);
    write_upsert(&c, &cfg, "invoices", "k1", "k1", &v2).await;
    let full = web.text();
    let reversal_end = full.find("(nexo:k1/2)").unwrap();
    let until_reversal = full[..reversal_end].rfind("\n\n").unwrap();
    web.edit(&format!("{}\n", &full[..until_reversal])).await;
    assert!(web.text().len() > first.len());
    assert_eq!(web.codes(), ["nexo:k1/1", "nexo:k1/1-reversed"]);

    // The retry posts only what is missing.
    assert_eq!(
        write_upsert(&c, &cfg, "invoices", "k1", "k1", &v2).await,
        ["updated k1"]
    );
    assert_eq!(
        web.codes(),
        ["nexo:k1/1", "nexo:k1/1-reversed", "nexo:k1/2"]
    );
    web.check();
    assert_eq!(
        web.balances()["assets:receivable"],
        "EUR 65.55",
        "{}",
        web.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_manifest_packs_with_the_component() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/hledger/nexo-plugin.toml"),
    )
    .unwrap();
    let src: nexo::bundle::manifest::ManifestSource = toml::from_str(&manifest).unwrap();
    let key = nexo::bundle::keys::SecretKey::generate("Nexo").unwrap();
    let bundle = nexo::bundle::pack(
        nexo_tests::runtime(),
        src,
        std::fs::read(programs::HLEDGER).unwrap(),
        Some(&key),
    )
    .await
    .unwrap();
    let text = format!("{bundle:?}");
    assert!(text.contains("nexo/hledger"), "{text}");
}

// ---- a pipeline into the journal: the dry run predicts each run -----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_into_the_journal_each_run_as_its_dry_run_predicted() {
    use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
    use nexo_tests::tryton::{Host, deals_pipeline, touch_deals, won_deals};

    let host = Host::new().await;
    let server = HledgerWeb::start().await;
    let hub = hubspot::start(HubSpotConfig {
        token: "pat-na1-hledger".into(),
        seed: SeedData {
            seed: 5,
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
        ("api_token", "pat-na1-hledger"),
    );
    let config: Value = serde_json::from_str(&server.config()).unwrap();
    host.connect_with("books", "nexo/hledger", &server.url, config, None);
    host.apply(&deals_pipeline(
        "journal",
        "invoice",
        "emit = \"invoice\", status = \"authorised\", default_tax_rate = \"20\", account_code = \"200\"",
        "books",
        "invoices",
        "model = \"invoice\"\n[deletes]\npolicy = \"propagate\"",
    ))
    .await;

    let first = host.predicted_run("journal").await;
    assert_eq!(first.counts.created, 4, "{:?}", first.counts);
    server.check();
    let again = host.predicted_run("journal").await;
    assert_eq!(again.counts.written(), 0, "{:?}", again.counts);

    // Deals mapped again to the same invoices: nothing to write.
    touch_deals(&hub, &deals).await;
    let touched = host.predicted_run("journal").await;
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
    let edited = host.predicted_run("journal").await;
    assert_eq!(
        (edited.counts.updated, edited.counts.created),
        (2, 0),
        "{:?}",
        edited.counts
    );
    server.check();

    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(hub.archive(ObjectType::Deals, deals[3]));
    let deleted = host.predicted_run("journal").await;
    assert_eq!(deleted.counts.deleted, 1, "{:?}", deleted.counts);
    server.check();
    let last = host.predicted_run("journal").await;
    assert_eq!(last.counts.written(), 0, "{:?}", last.counts);
}

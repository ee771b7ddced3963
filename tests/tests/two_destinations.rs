//! One source, one entity, two destinations: won HubSpot deals become
//! customers and posted invoices in a real Tryton ERP *and* customers and
//! invoices in the Xero sandbox, through four pipelines that share the
//! source, the mapper and the entity names. Before the identity map kept
//! sync state per destination, the second destination's pipelines found
//! every deal "unchanged" (synced — to the first destination) and wrote
//! nothing, reporting success. Without trytond this fails (never skips),
//! saying to run `cargo xtask setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use nexo::sync::store::{RecordOutcome, RunStore};
use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
use nexo_sandbox::xero::{self, Collection, XeroConfig};
use nexo_tests::tryton::{Host, start};
use serde_json::json;

const HUBSPOT_TOKEN: &str = "pat-na1-two-destinations";
const XERO_TOKEN: &str = "xero-two-destinations-token";
const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000bb";

/// A pipeline from HubSpot's deals through deal-to-invoice.
fn pipeline(name: &str, entity: &str, emit: &str, to: (&str, &str), extra: &str) -> String {
    let model = if entity == "customer" {
        "company"
    } else {
        "invoice"
    };
    format!(
        "name = \"{name}\"\nentity = \"{entity}\"\nmodel = \"{model}\"\n\
         [source]\nconnection = \"hubspot\"\nstream = \"deals\"\n\
         [[mappers]]\nplugin = \"nexo/deal-to-invoice\"\n\
         config = {{ emit = \"{emit}\", status = \"authorised\", default_tax_rate = \"20\"{extra} }}\n\
         [destination]\nconnection = \"{}\"\nstream = \"{}\"\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n",
        to.0, to.1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn won_deals_reach_the_erp_and_the_books_each_once_through_pipelines_sharing_source_and_entity()
 {
    let host = Host::new().await;
    let tryton = start(host.dir.path()).await;
    let hub = hubspot::start(HubSpotConfig {
        token: HUBSPOT_TOKEN.into(),
        seed: SeedData::of_size(30, 5),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let books = xero::start(XeroConfig {
        token: XERO_TOKEN.into(),
        tenant_id: TENANT.into(),
        rate_limit: None,
        ..XeroConfig::default()
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
    host.connect_tryton("tryton", &tryton, 20);
    host.connect_overridden(
        "xero",
        "nexo/xero",
        ("https://api.xero.com", &books.url()),
        json!({"tenant_id": TENANT}),
        ("access_token", XERO_TOKEN),
    );
    let xero_account = ", account_code = \"200\"";
    for (name, entity, emit, to, extra) in [
        (
            "erp-customers",
            "customer",
            "customer",
            ("tryton", "parties"),
            "",
        ),
        (
            "erp-invoices",
            "invoice",
            "invoice",
            ("tryton", "invoices"),
            "",
        ),
        (
            "books-customers",
            "customer",
            "customer",
            ("xero", "contacts"),
            "",
        ),
        (
            "books-invoices",
            "invoice",
            "invoice",
            ("xero", "invoices"),
            xero_account,
        ),
    ] {
        host.apply(&pipeline(name, entity, emit, to, extra)).await;
    }
    let won = || -> Vec<u64> {
        hub.objects(ObjectType::Deals)
            .iter()
            .filter(|d| d.property("dealstage").as_deref() == Some("closedwon"))
            .map(|d| d.id)
            .collect()
    };
    let companies = |won: &[u64]| -> BTreeSet<u64> {
        won.iter()
            .map(|d| hub.associated(ObjectType::Deals, *d, ObjectType::Companies)[0])
            .collect()
    };
    let deals = won();
    assert!(deals.len() >= 3, "{deals:?}");

    // Into the ERP first.
    let c = host.run("erp-customers").await;
    assert_eq!(
        c.counts.created,
        companies(&deals).len() as u64,
        "{:?}",
        c.counts
    );
    let i = host.run("erp-invoices").await;
    assert_eq!(i.counts.created, deals.len() as u64, "{:?}", i.counts);

    // Then the books: the same deals, the same entities, another
    // destination. Before: "unchanged" for every deal, nothing in Xero.
    let c = host.run("books-customers").await;
    assert_eq!(
        c.counts.created,
        companies(&deals).len() as u64,
        "{:?}",
        c.counts
    );
    let i = host.run("books-invoices").await;
    assert_eq!(
        (i.counts.created, i.counts.failed, i.counts.quarantined),
        (deals.len() as u64, 0, 0),
        "{:?}",
        i.counts
    );
    let never_sent: Vec<_> = host
        .db
        .run_records(i.run_id.unwrap())
        .unwrap()
        .into_iter()
        .filter(|r| r.outcome == RecordOutcome::Unchanged)
        .filter(|r| deals.iter().any(|d| d.to_string() == r.source_id))
        .collect();
    assert!(
        never_sent.is_empty(),
        "won deals taken as unchanged: {never_sent:?}"
    );
    let in_books = |collection| {
        books
            .records(collection)
            .iter()
            .filter(|r| collection != Collection::Invoices || r["Type"].as_str() == Some("ACCREC"))
            .count()
    };
    assert_eq!(in_books(Collection::Invoices), deals.len());
    assert_eq!(in_books(Collection::Contacts), companies(&deals).len());

    // Nothing changed: nothing written anywhere.
    for name in [
        "erp-customers",
        "erp-invoices",
        "books-customers",
        "books-invoices",
    ] {
        let again = host.run(name).await;
        assert_eq!(again.counts.written(), 0, "{name}: {:?}", again.counts);
    }

    // A deal won now reaches both, whichever pipeline runs first.
    let open = hub
        .objects(ObjectType::Deals)
        .iter()
        .find(|d| {
            d.property("dealstage").as_deref() != Some("closedwon")
                && !hub
                    .associated(ObjectType::Deals, d.id, ObjectType::Companies)
                    .is_empty()
        })
        .map(|d| d.id)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    hub.edit(ObjectType::Deals, open, &[("dealstage", "closedwon")])
        .unwrap();
    let deals = won();
    for name in [
        "books-customers",
        "books-invoices",
        "erp-customers",
        "erp-invoices",
    ] {
        let report = host.run(name).await;
        assert_eq!(report.counts.failed, 0, "{name}: {:?}", report.counts);
    }
    assert_eq!(in_books(Collection::Invoices), deals.len());
    assert_eq!(in_books(Collection::Contacts), companies(&deals).len());
    let erp_invoices = host
        .db
        .runs(&nexo::sync::store::RunFilter {
            pipeline: Some("erp-invoices".into()),
            status: None,
            limit: 10,
        })
        .unwrap();
    let created: u64 = erp_invoices.iter().map(|r| r.counts.created).sum();
    assert_eq!(
        created,
        deals.len() as u64,
        "one Tryton invoice per won deal"
    );
}

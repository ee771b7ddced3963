//! Plugins built against contract 1.0 keep working on a host that serves
//! 1.1, without a rebuild: the reference plugins as they were built before
//! 1.1 existed (`tests/fixtures/contract-1.0/`, built at 0db7d5c with the
//! 1.0 SDK) are packed from their manifests, installed and synced through
//! the engine — each through the 1.0 bindings, next to 1.1 plugins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
use nexo_sandbox::xero::{self, Collection, XeroConfig};
use nexo_tests::tryton::{Host, start};
use nexo_tests::{runtime, tinycrm};
use serde_json::json;

/// A frozen 1.0 component by file name.
fn frozen(file: &str) -> String {
    format!(
        "{}/fixtures/contract-1.0/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Every reference plugin as built against 1.0: its folder under
/// `plugins/` (the manifest it is packed with) and its frozen component.
fn frozen_plugins() -> Vec<(&'static str, String)> {
    [
        ("example-crm", "example_crm.wasm"),
        ("contact-mapper", "contact_mapper.wasm"),
        ("field-mapper", "field_mapper.wasm"),
        ("deal-to-invoice", "deal_to_invoice.wasm"),
        ("hledger", "hledger.wasm"),
        ("hubspot", "hubspot.wasm"),
        ("xero", "xero.wasm"),
        ("tryton", "tryton.wasm"),
    ]
    .into_iter()
    .map(|(folder, file)| (folder, frozen(file)))
    .collect()
}

async fn host() -> Host {
    let plugins = frozen_plugins();
    let refs: Vec<(&str, &str)> = plugins.iter().map(|(f, w)| (*f, w.as_str())).collect();
    Host::with_plugins(&refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_1_0_reference_plugin_installs_and_is_served_by_the_1_0_bindings() {
    for (folder, wasm) in frozen_plugins() {
        let plugin = runtime()
            .load(&std::fs::read(&wasm).unwrap(), folder)
            .unwrap_or_else(|e| panic!("{folder}: {e}"));
        assert_eq!(plugin.info().wit_version(), Some("1.0.0"), "{folder}");
        assert_eq!(plugin.info().embedded("wit"), Some("1.0.0"), "{folder}");
    }
    // Packed from their manifests, reviewed and installed (panics if not).
    host().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_0_connector_and_mapper_sync_tinycrm_to_tinycrm_unchanged() {
    let host = host().await;
    let (token_a, token_b) = ("tinycrm-token-a", "tinycrm-token-b");
    let a = tinycrm::start(tinycrm::seed(12), token_a).await;
    let b = tinycrm::start(Default::default(), token_b).await;
    for (name, server, token) in [("crm-a", &a, token_a), ("crm-b", &b, token_b)] {
        host.connect(
            name,
            "nexo-examples/tinycrm",
            &server.url(),
            json!({"base_url": server.url(), "page_size": 5}),
            ("api_token", token),
        );
    }
    host.apply(
        "name = \"crm-copy\"\nentity = \"contact\"\n\
         [source]\nconnection = \"crm-a\"\nstream = \"contacts\"\n\
         [[mappers]]\nplugin = \"nexo/field-mapper\"\nconfig = { defaults = { company = \"Acme\" } }\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n",
    )
    .await;
    let first = host.run("crm-copy").await;
    assert_eq!(
        (first.counts.read, first.counts.created),
        (12, 12),
        "{:?}",
        first.counts
    );
    assert_eq!(b.contacts().len(), 12);
    // The 1.0 mapper ran: the contacts without a company (every third) got
    // its default.
    let defaulted = b
        .contacts()
        .iter()
        .filter(|c| c["company"] == "Acme")
        .count();
    assert_eq!(defaulted, 4, "{:?}", b.contacts());

    let again = host.run("crm-copy").await;
    assert_eq!(again.counts.written(), 0, "{:?}", again.counts);

    a.edit("c0004", "last_name", "Changed");
    let third = host.run("crm-copy").await;
    assert_eq!(
        (third.counts.updated, third.counts.created),
        (1, 0),
        "{:?}",
        third.counts
    );
    assert!(b.contacts().iter().any(|c| c["last_name"] == "Changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn won_deals_reach_xero_and_tryton_through_1_0_plugins_once() {
    let host = host().await;
    let tryton = start(host.dir.path()).await;
    let hub = hubspot::start(HubSpotConfig {
        token: "pat-na1-frozen".into(),
        seed: SeedData::of_size(20, 4),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let tenant = "7a0c1f2e-0000-4000-8000-0000000000cc";
    let books = xero::start(XeroConfig {
        token: "xero-frozen-token".into(),
        tenant_id: tenant.into(),
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
        ("api_token", "pat-na1-frozen"),
    );
    host.connect_tryton("tryton", &tryton, 20);
    host.connect_overridden(
        "xero",
        "nexo/xero",
        ("https://api.xero.com", &books.url()),
        json!({"tenant_id": tenant}),
        ("access_token", "xero-frozen-token"),
    );
    let pipeline = |name: &str, entity: &str, emit: &str, to: (&str, &str), extra: &str| {
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
             [destination]\nconnection = \"{}\"\nstream = \"{}\"\n",
            to.0, to.1
        )
    };
    let account = ", account_code = \"200\"";
    let pipelines = [
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
            account,
        ),
    ];
    for (name, entity, emit, to, extra) in pipelines {
        host.apply(&pipeline(name, entity, emit, to, extra)).await;
    }
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
    assert!(won.len() >= 2, "{won:?}");
    for (name, ..) in pipelines {
        let report = host.run(name).await;
        let expected = if name.ends_with("customers") {
            companies.len()
        } else {
            won.len()
        };
        assert_eq!(
            (
                report.counts.created,
                report.counts.failed,
                report.counts.quarantined
            ),
            (expected as u64, 0, 0),
            "{name}: {:?}",
            report.counts
        );
    }
    let invoices = books
        .records(Collection::Invoices)
        .iter()
        .filter(|r| r["Type"].as_str() == Some("ACCREC"))
        .count();
    assert_eq!(invoices, won.len());
    assert_eq!(books.records(Collection::Contacts).len(), companies.len());

    // Nothing changed: the 1.0 plugins write nothing anywhere.
    for (name, ..) in pipelines {
        let again = host.run(name).await;
        assert_eq!(again.counts.written(), 0, "{name}: {:?}", again.counts);
    }
}

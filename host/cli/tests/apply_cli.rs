//! `nexo pipeline apply` catches, before anything is saved, the mistakes
//! that used to surface only when a record arrived: a mapper config its
//! schema or the mapper itself refuses, a field-mapper target the
//! destination stream does not have, a misspelled connection, and a change
//! of a saved pipeline's identity under its cursor (accepted with
//! `--reset`). The shipped plugins are installed from their manifests, as
//! `nexo plugin pack` packs them; the systems are never called (the checks
//! need only the plugins' schemas).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use nexo::sync::Pipeline;
use nexo::sync::store::PipelineStore;
use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;
use nexo_tests::tryton::Host;
use serde_json::json;

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn apply(dir: &Path, path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["pipeline", "apply", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    nexo(dir, &args)
}

/// A host with a HubSpot connection `crm` and a Tryton connection
/// `tryton-prod`, neither reachable (nothing here calls them).
async fn host() -> Host {
    let host = Host::new().await;
    host.connect_overridden(
        "crm",
        "nexo/hubspot",
        ("https://api.hubapi.com", "http://127.0.0.1:9"),
        json!({}),
        ("api_token", "apply-test-token"),
    );
    host.connect(
        "tryton-prod",
        "nexo/tryton",
        "http://127.0.0.1:9",
        json!({"base_url": "http://127.0.0.1:9/nexo/", "page_size": 50, "company": 1,
               "account_category": 1, "payment_term": 1}),
        ("application_key", "apply-test-key"),
    );
    host
}

/// Won deals → deal-to-invoice (`invoice_config`) → field-mapper
/// (`rules`) → Tryton invoices; `extra` lines at the end.
fn deals_to_tryton(invoice_config: &str, rules: &str, destination: &str, extra: &str) -> String {
    format!(
        "name = \"deals-to-tryton\"\nentity = \"invoice\"\nmodel = \"invoice\"\n\
         [source]\nconnection = \"crm\"\nstream = \"deals\"\n\
         [[mappers]]\nplugin = \"nexo/deal-to-invoice\"\nconfig = {{ {invoice_config} }}\n\
         [[mappers]]\nplugin = \"nexo/field-mapper\"\nconfig = {{ {rules} }}\n\
         [destination]\nconnection = \"{destination}\"\nstream = \"invoices\"\n{extra}\n"
    )
}

fn saved(host: &Host) -> Option<Pipeline> {
    host.db
        .pipeline("deals-to-tryton")
        .unwrap()
        .map(|r| r.pipeline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mapper_configs_are_refused_at_apply_naming_the_field() {
    let host = host().await;
    let dir = host.dir.path();
    let good = deals_to_tryton(
        "default_currency = \"EUR\", status = \"draft\"",
        "rename = { number = \"reference\" }",
        "tryton-prod",
        "",
    );
    ok(apply(dir, &file(dir, "good.toml", &good), &[]));
    let before = saved(&host).unwrap();
    let cases = [
        (
            "staus = \"draft\"",
            "",
            "mappers[0].config.staus: unknown field; did you mean `status`?",
        ),
        (
            "status = \"posted\"",
            "",
            "mappers[0].config.status: \"posted\" is not one of \"draft\", \"submitted\"",
        ),
        (
            "default_tax_rate = 20",
            "",
            "mappers[0].config.default_tax_rate: 20 is not a decimal string like \"20\"",
        ),
        // Passes the schema; the mapper's own check (called with an empty
        // batch) refuses it.
        (
            "",
            "templates = { reference = \"{number\" }",
            "mappers[1].config: nexo/field-mapper@0.1.0 refused it",
        ),
    ];
    for (i, (invoice, rules, expected)) in cases.into_iter().enumerate() {
        let text = deals_to_tryton(invoice, rules, "tryton-prod", "");
        let e = fails(apply(dir, &file(dir, &format!("bad-{i}.toml"), &text), &[]));
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
        assert_eq!(
            saved(&host).as_ref(),
            Some(&before),
            "the previous definition stays"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_mapper_target_is_refused_naming_the_nearest_field() {
    let host = host().await;
    let dir = host.dir.path();
    let text = deals_to_tryton(
        "default_currency = \"EUR\"",
        "rename = { reference = \"refrence\" }",
        "tryton-prod",
        "",
    );
    let e = fails(apply(dir, &file(dir, "p.toml", &text), &[]));
    let expected = "mappers[1].config.rename.reference: target `refrence` is not a field of tryton-prod `invoices` (did you mean `reference`?)";
    assert!(e.contains(expected), "expected `{expected}` in: {e}");
    assert_eq!(saved(&host), None, "nothing saved");
    let text = deals_to_tryton(
        "default_currency = \"EUR\"",
        "rename = { number = \"reference\" }, defaults = { statsu = \"draft\" }",
        "tryton-prod",
        "",
    );
    let e = fails(apply(dir, &file(dir, "p.toml", &text), &[]));
    assert!(
        e.contains("mappers[1].config.defaults.statsu: target `statsu` is not a field of tryton-prod `invoices` (did you mean `status`?)"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_connection_is_named_as_such() {
    let host = host().await;
    let dir = host.dir.path();
    // `master.fields` names the real connection, so the definition alone
    // would blame that field for the destination's typo.
    let text = deals_to_tryton(
        "default_currency = \"EUR\"",
        "",
        "tryton-prdo",
        "[master]\nfields = { due_date = \"tryton-prod\" }",
    );
    let e = fails(apply(dir, &file(dir, "p.toml", &text), &[]));
    let expected = "destination.connection`: no connection named `tryton-prdo` (connections: crm, tryton-prod); did you mean `tryton-prod`?";
    assert!(e.contains(expected), "expected `{expected}` in: {e}");
    assert!(!e.contains("master.fields"), "{e}");
    assert_eq!(saved(&host), None, "nothing saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_entity_of_a_synced_pipeline_needs_reset() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    let dir = kit.dir.path();
    let first = file(dir, "p.toml", &pipeline("a-to-b", "", ""));
    ok(apply(dir, &first, &[]));
    kit.run("a-to-b").await;
    let cursor = || kit.db.pipeline("a-to-b").unwrap().unwrap().state;
    assert!(cursor().is_some(), "the run saved a cursor");
    // The same identity again: no question.
    ok(apply(dir, &first, &[]));
    let renamed = pipeline("a-to-b", "", "").replace("entity = \"contact\"", "entity = \"person\"");
    let second = file(dir, "p2.toml", &renamed);
    let e = fails(apply(dir, &second, &[]));
    assert!(e.contains("entity `contact` → `person`"), "{e}");
    assert!(e.contains("--reset"), "{e}");
    let row = kit.db.pipeline("a-to-b").unwrap().unwrap();
    assert_eq!(row.pipeline.entity, "contact", "nothing saved");
    assert!(row.state.is_some(), "cursor kept");
    let out = ok(apply(dir, &second, &["--reset"]));
    assert!(out.contains("reset a-to-b"), "{out}");
    let row = kit.db.pipeline("a-to-b").unwrap().unwrap();
    assert_eq!(row.pipeline.entity, "person");
    assert_eq!(row.state, None, "reset with the apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_without_a_schema_still_checks_its_config_at_apply() {
    // The kit's test mapper is packed without `config_schema`, as every
    // mapper installed before mappers shipped one.
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 10).await;
    let dir = kit.dir.path();
    let step = |config: &str| {
        format!("[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = {{ {config} }}\n")
    };
    let good = file(
        dir,
        "good.toml",
        &pipeline("a-to-b", "", &step("drop = [\"phone\"]")),
    );
    ok(apply(dir, &good, &[]));
    let bad = file(
        dir,
        "bad.toml",
        &pipeline("a-to-b", "", &step("dorp = [\"phone\"]")),
    );
    let e = fails(apply(dir, &bad, &[]));
    assert!(
        e.contains("mappers[0].config: acme/test-mapper@1.0.0 refused it") && e.contains("dorp"),
        "{e}"
    );
    let saved = kit.db.pipeline("a-to-b").unwrap().unwrap().pipeline;
    assert_eq!(
        saved.mappers[0].config,
        json!({"drop": ["phone"]}),
        "the previous definition stays"
    );
}

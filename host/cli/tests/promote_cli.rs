//! `nexo pipeline promote`, from sandbox to production, as an admin runs
//! it against four real TinyCRMs on 127.0.0.1 (two sandbox, two
//! production): refused before the sandbox pipeline has succeeded; dry-run
//! against production and shown but not applied without confirmation;
//! applied with `--yes`, after which the twin's first run creates every
//! production record — though the production CRM holds the very record ids
//! the sandbox's links already know — and the sandbox's links and cursor
//! are as they were. A typo in a connection name is named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use nexo::connections::NewConnection;
use nexo::store::connections::Environment;
use nexo::sync::pipeline::Endpoint;
use nexo::sync::store::{Link, LinkStore, PipelineStore};
use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::{Kit, TOKEN, connection, contents, pipeline};
use nexo_tests::{programs, tinycrm};
use serde_json::json;

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

const PAIRS: &str = "crm-a=crm-a-prod,crm-b=crm-b-prod";

/// Every identity link of the sandbox pair, and the sandbox pipeline's
/// cursor.
fn sandbox_state(kit: &Kit, ids: &[String]) -> (Vec<Link>, Vec<Link>, Option<String>) {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let end = |c: &str| Endpoint {
        connection: c.into(),
        stream: "contacts".into(),
    };
    let a = kit
        .db
        .links("contact", "crm-a", "contacts", &ids, Some(&end("crm-b")))
        .unwrap();
    let b_ids: Vec<String> = kit
        .b
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let b_ids: Vec<&str> = b_ids.iter().map(String::as_str).collect();
    let b = kit
        .db
        .links("contact", "crm-b", "contacts", &b_ids, Some(&end("crm-a")))
        .unwrap();
    let cursor = kit.db.pipeline("contacts").unwrap().unwrap().state;
    (a, b, cursor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_proven_in_the_sandbox_gets_a_confirmed_production_twin_of_its_own() {
    let kit = Kit::new(tinycrm::seed(8), Default::default(), 50).await;
    // Production: the same record ids as the sandbox's first five.
    let prod_a = tinycrm::start(tinycrm::seed(5), TOKEN).await;
    let prod_b = tinycrm::start(Default::default(), TOKEN).await;
    for (name, server) in [("crm-a-prod", &prod_a), ("crm-b-prod", &prod_b)] {
        let config = json!({"page_size": 50, "timeout_ms": 500, "base_url": server.url()});
        kit.connections
            .add(NewConnection {
                environment: Environment::Production,
                ..connection(name, server, config)
            })
            .unwrap();
    }
    kit.apply(&pipeline("contacts", "", "")).await;
    let dir = kit.dir.path();
    let twin = || kit.db.pipeline("contacts-production").unwrap();

    // Not proven in the sandbox yet: refused, nothing created.
    let e = fails(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            PAIRS,
            "--yes",
        ],
    ));
    assert!(e.contains("no succeeded run"), "{e}");
    assert!(twin().is_none());

    let sandbox = kit.run("contacts").await;
    assert_eq!(sandbox.counts.created, 8);
    let ids: Vec<String> = tinycrm::seed(8).into_keys().collect();
    let before = sandbox_state(&kit, &ids);
    assert_eq!(before.0.len(), 8, "the sandbox's links");
    assert!(before.2.is_some(), "the sandbox's cursor");

    // A typo in a production connection's name is named, with the nearest.
    let e = fails(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            "crm-a=crm-a-prd,crm-b=crm-b-prod",
            "--yes",
        ],
    ));
    assert!(
        e.contains("no connection named `crm-a-prd`") && e.contains("did you mean `crm-a-prod`"),
        "{e}"
    );
    // A sandbox connection left out, and production on the wrong side.
    let e = fails(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            "crm-a=crm-a-prod",
            "--yes",
        ],
    ));
    assert!(
        e.contains("destination `crm-b` has no production counterpart"),
        "{e}"
    );
    let e = fails(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            "crm-a=crm-b,crm-b=crm-b-prod",
            "--yes",
        ],
    ));
    assert!(e.contains("`crm-b` is a sandbox connection"), "{e}");
    // A production system of another kind than the sandbox's.
    kit.add_connector("acme/other-crm", programs::WIT_1_0_FIXTURE, "other-sandbox")
        .await;
    kit.connections
        .add(NewConnection {
            name: "other-prod".into(),
            plugin_id: "acme/other-crm".into(),
            pinned_version: None,
            environment: Environment::Production,
            config: json!({}),
            secrets: Default::default(),
            grants: Default::default(),
        })
        .unwrap();
    let e = fails(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            "crm-a=crm-a-prod,crm-b=other-prod",
            "--yes",
        ],
    ));
    assert!(
        e.contains("`crm-b` uses plugin acme/crm but `other-prod` uses acme/other-crm"),
        "{e}"
    );
    // The twin's name taken by another pipeline.
    let e = fails(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            PAIRS,
            "--as",
            "contacts",
            "--yes",
        ],
    ));
    assert!(
        e.contains("`contacts` already exists and is not this pipeline's production twin"),
        "{e}"
    );
    assert!(twin().is_none());

    // No terminal and no --yes: the dry run against production is shown,
    // nothing is applied or written.
    let out = nexo(
        dir,
        &["pipeline", "promote", "contacts", "--connections", PAIRS],
    );
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let e = fails(out);
    assert!(e.contains("pass --yes"), "{e}");
    assert!(
        shown.contains("dry run of contacts-production against production"),
        "{shown}"
    );
    assert!(shown.contains("would: read 5, created 5,"), "{shown}");
    assert!(twin().is_none(), "applied without confirmation");
    assert!(
        prod_b.contacts().is_empty(),
        "the dry run wrote to production"
    );

    // Confirmed: the dry run first, then the twin through `apply`.
    let said = ok(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            PAIRS,
            "--yes",
        ],
    ));
    let dry = said.find("would: read 5, created 5,").expect(&said);
    let created = said
        .find("created pipeline contacts-production: crm-a-prod/contacts → crm-b-prod/contacts")
        .expect(&said);
    assert!(dry < created, "{said}");
    let saved = twin().unwrap();
    assert_eq!(saved.pipeline.source.connection, "crm-a-prod");
    assert_eq!(saved.pipeline.destination.connection, "crm-b-prod");
    assert!(
        saved.state.is_none(),
        "the twin starts with a cursor of its own"
    );

    // Its first run creates every production record, none taken for one
    // the sandbox's links know.
    let ran = ok(nexo(dir, &["pipeline", "run", "contacts-production"]));
    assert!(ran.contains("created 5,"), "{ran}");
    assert_eq!(contents(&prod_b), contents(&prod_a));
    assert_eq!(
        sandbox_state(&kit, &ids),
        before,
        "the sandbox's links or cursor changed"
    );
    assert_eq!(kit.b.contacts().len(), 8);

    // Promoting again updates the twin, showing what changes.
    let again = ok(nexo(
        dir,
        &[
            "pipeline",
            "promote",
            "contacts",
            "--connections",
            PAIRS,
            "--yes",
        ],
    ));
    assert!(
        again.contains("already the production twin of contacts"),
        "{again}"
    );
    assert!(again.contains("would: read 5, created 0,"), "{again}");
}

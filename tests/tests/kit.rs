//! The conformance kit (`nexo plugin test`) on the reference connectors and
//! mappers, and on plugins with seeded faults: each fault is caught by the
//! check named for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use nexo::kit::{self, Mode, Report, Suite, Target, Verdict};
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{Limits, PluginRef};
use nexo_tests::{load, programs, tinycrm};
use serde_json::json;

const TOKEN: &str = "kit-test-token-7d1f";

fn suite(path: &str) -> Suite {
    Suite::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

fn target(component: &str, origin: &str, config: serde_json::Value) -> Target {
    Target {
        component: load(component),
        plugin: PluginRef {
            id: "test/kit".into(),
            version: "0.1.0".into(),
        },
        limits: Limits::default(),
        grants: vec![HttpGrant::private(origin).unwrap()],
        overrides: Vec::new(),
        secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
        config: config.to_string(),
    }
}

/// Every check passed; the report when not.
fn assert_passed(report: &Report) {
    assert!(report.passed(), "{}", report.render(kit::Format::Text));
}

fn verdict<'a>(report: &'a Report, name: &str) -> &'a Verdict {
    &report
        .get(name)
        .unwrap_or_else(|| panic!("no check {name}:\n{}", report.render(kit::Format::Text)))
        .verdict
}

#[tokio::test]
async fn tinycrm_connector_passes_every_check() {
    let crm = tinycrm::start(tinycrm::seed(45), TOKEN).await;
    let t = target(
        programs::EXAMPLE_CRM,
        &crm.url(),
        json!({"base_url": crm.url(), "page_size": 10}),
    );
    let report = kit::run(
        &t,
        &suite("plugins/example-crm/nexo-test.toml"),
        &Mode::Live,
    )
    .await
    .unwrap();
    assert_passed(&report);
    for name in [
        "spec.config-schema",
        "spec.streams",
        "check.credentials",
        "check.wrong-credentials",
        "read.contacts.pages",
        "read.contacts.resume",
        "read.contacts.incremental",
        "write.contacts.idempotent-create",
        "write.contacts.update",
        "write.contacts.refused-alone",
        "write.contacts.delete",
        "faults.contacts.read-429",
        "faults.contacts.read-500",
        "faults.contacts.read-503",
        "faults.contacts.read-dropped-connection",
        "faults.contacts.read-slow-answer",
        "faults.contacts.write-lost-answer",
        "sandbox.granted-origins",
        "sandbox.secrets",
        "spec.capabilities",
    ] {
        assert_eq!(verdict(&report, name), &Verdict::Pass, "{name}");
    }
    // The suite cleaned up after itself: only the seeded contacts are left.
    assert_eq!(crm.contacts().len(), 45);
}

/// Verdicts by check name, reasons left out.
fn verdicts(report: &Report) -> Vec<(String, &'static str)> {
    report
        .checks
        .iter()
        .map(|c| {
            let v = match c.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail(_) => "fail",
                Verdict::Skip(_) => "skip",
            };
            (c.name.clone(), v)
        })
        .collect()
}

#[tokio::test]
async fn recorded_fixtures_replay_the_same_verdicts_with_the_system_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    let crm = tinycrm::start(tinycrm::seed(25), TOKEN).await;
    let url = crm.url();
    let t = target(
        programs::EXAMPLE_CRM,
        &url,
        json!({"base_url": url, "page_size": 10}),
    );
    let suite = suite("plugins/example-crm/nexo-test.toml");
    let recorded = kit::run(&t, &suite, &Mode::Record(fixtures.clone()))
        .await
        .unwrap();
    assert_passed(&recorded);
    drop(crm);
    // The system is gone: a live run cannot even check.
    let live = kit::run(&t, &suite, &Mode::Live).await.unwrap();
    assert_ne!(verdict(&live, "check.credentials"), &Verdict::Pass);

    // Replay without the secret: the recording holds no secret value.
    let saved = std::fs::read_to_string(fixtures.join("exchanges.json")).unwrap();
    assert!(!saved.contains(TOKEN), "the token is in the recording");
    let mut offline = t.clone();
    offline.secrets.clear();
    let replayed = kit::run(&offline, &suite, &Mode::Replay(fixtures.clone()))
        .await
        .unwrap();
    assert_eq!(
        verdicts(&replayed),
        verdicts(&recorded),
        "{}",
        replayed.render(kit::Format::Text)
    );

    // Fixtures that are not there name the fix.
    let e = kit::run(&offline, &suite, &Mode::Replay(dir.path().join("nowhere")))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--record"), "{e}");
}

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

/// `component` as plugin `test/kit`@0.1.0 with default limits, no grants
/// and no secrets.
fn bare(component: &str, config: serde_json::Value) -> Target {
    Target {
        component: load(component),
        plugin: PluginRef {
            id: "test/kit".into(),
            version: "0.1.0".into(),
        },
        limits: Limits::default(),
        grants: Vec::new(),
        overrides: Vec::new(),
        secrets: BTreeMap::new(),
        config: config.to_string(),
        kv_bytes: 0,
    }
}

/// A connector granted the private `origin`, with TinyCRM's token.
fn target(component: &str, origin: &str, config: serde_json::Value) -> Target {
    Target {
        grants: vec![HttpGrant::private(origin).unwrap()],
        secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
        ..bare(component, config)
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
        "faults.contacts.write-500",
        "faults.contacts.write-lost-answer",
        "read.contacts.schema",
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

/// A connector on a vendor's API (`logical`), sent to a sandbox
/// (`physical`) by an origin override.
fn overridden(
    component: &str,
    logical: &str,
    physical: &str,
    secrets: &[(&str, &str)],
    config: serde_json::Value,
) -> Target {
    Target {
        grants: vec![HttpGrant::public(logical).unwrap()],
        overrides: vec![(logical.to_string(), physical.to_string())],
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::new(*v)))
            .collect(),
        ..bare(component, config)
    }
}

async fn hubspot_sandbox(token: &str) -> nexo_sandbox::hubspot::HubSpotSandbox {
    use nexo_sandbox::hubspot::{self, HubSpotConfig, SeedData};
    hubspot::start(HubSpotConfig {
        token: token.into(),
        seed: SeedData::of_size(30, 3),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_connectors_in_rust_and_js_pass_every_check() {
    for (component, suite_file) in [
        (programs::HUBSPOT, "plugins/hubspot/nexo-test.toml"),
        (programs::JS_HUBSPOT, "plugins/js-hubspot/nexo-test.toml"),
    ] {
        let server = hubspot_sandbox("pat-kit-1").await;
        let t = overridden(
            component,
            "https://api.hubapi.com",
            &server.url(),
            &[("api_token", "pat-kit-1")],
            json!({"page_size": 7}),
        );
        let report = kit::run(&t, &suite(suite_file), &Mode::Live).await.unwrap();
        assert_passed(&report);
        for name in [
            "write.contacts.idempotent-create",
            "write.contacts.refused-alone",
            "faults.contacts.write-lost-answer",
        ] {
            assert_eq!(verdict(&report, name), &Verdict::Pass, "{name}");
        }
    }
}

fn mapper_target(component: &str, memory_mib: u64, config: serde_json::Value) -> Target {
    Target {
        limits: Limits {
            memory_bytes: memory_mib << 20,
            ..Limits::default()
        },
        ..bare(component, config)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_mappers_in_rust_python_and_js_pass_every_check() {
    for (component, memory, config, suite_file) in [
        (
            programs::DEAL_TO_INVOICE,
            64,
            json!({}),
            "plugins/deal-to-invoice/nexo-test.toml",
        ),
        (
            programs::PY_CONTACT_CLEANER,
            256,
            json!({"default_country_code": "44"}),
            "plugins/py-contact-cleaner/nexo-test.toml",
        ),
        (
            programs::CONTACT_MAPPER,
            64,
            json!({"system": "crm"}),
            "plugins/contact-mapper/nexo-test.toml",
        ),
        (
            programs::FIELD_MAPPER,
            64,
            json!({
                "filters": [{"field": "Status", "not_equals": "archiviert"}],
                "rename": {"Kunde": "name", "Land": "address.country", "Betrag": "amount", "Datum": "date", "Aktiv": "active"},
                "lookups": {"address.country": {"table": {"Deutschland": "DE"}}, "active": {"table": {"ja": true, "nein": false}}},
                "convert": {"amount": {"to": "decimal_string", "decimal_separator": ","},
                            "date": {"to": "date", "formats": ["DD.MM.YYYY"]}},
                "drop": ["Status"],
                "stream": "companies"
            }),
            "plugins/field-mapper/nexo-test.toml",
        ),
        (
            programs::JS_MAPPER,
            64,
            json!({"field": "lastname"}),
            "tests/programs/js-mapper/nexo-test.toml",
        ),
    ] {
        let report = kit::run(
            &mapper_target(component, memory, config),
            &suite(suite_file),
            &Mode::Live,
        )
        .await
        .unwrap();
        assert_passed(&report);
        for name in ["mapper.total", "mapper.deterministic", "mapper.budget"] {
            assert_eq!(verdict(&report, name), &Verdict::Pass, "{name}");
        }
    }
}

/// Each seeded fault fails the check named for it — and the same
/// connector without the fault passes every check, so the failure is the
/// fault's and nothing else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_are_each_caught_by_their_check() {
    let suite = suite("plugins/example-crm/nexo-test.toml");
    for (component, fault, check) in [
        (programs::KIT_FAULTY_CONNECTOR, "none", None),
        (
            programs::KIT_FAULTY_CONNECTOR,
            "duplicate-on-lost-answer",
            Some("faults.contacts.write-lost-answer"),
        ),
        (
            programs::KIT_FAULTY_CONNECTOR,
            "ignores-state",
            Some("read.contacts.incremental"),
        ),
        (
            programs::KIT_FAULTY_CONNECTOR,
            "non-granted-origin",
            Some("sandbox.granted-origins"),
        ),
        (
            programs::KIT_FAULTY_CONNECTOR,
            "auth-as-internal",
            Some("check.wrong-credentials"),
        ),
        (
            programs::KIT_FAULTY_CONNECTOR,
            "loses-ties",
            Some("read.contacts.resume"),
        ),
        (
            programs::KIT_WIDE_CONNECTOR,
            "none",
            Some("spec.capabilities"),
        ),
    ] {
        let crm = tinycrm::start(tinycrm::seed(35), TOKEN).await;
        let t = target(
            component,
            &crm.url(),
            json!({"base_url": crm.url(), "page_size": 10, "fault": fault}),
        );
        let mut t = t;
        if component == programs::KIT_WIDE_CONNECTOR {
            t.secrets
                .insert("analytics_key".into(), SecretValue::new("ak-never-sent-1"));
        }
        let report = kit::run(&t, &suite, &Mode::Live).await.unwrap();
        let text = report.render(kit::Format::Text);
        if component == programs::KIT_WIDE_CONNECTOR {
            let reason = format!("{:?}", verdict(&report, "spec.capabilities"));
            assert!(
                reason.contains("https://analytics.example.com")
                    && reason.contains("analytics_key"),
                "{reason}"
            );
        }
        match check {
            None => assert_passed(&report),
            Some(check) => {
                assert!(
                    matches!(verdict(&report, check), Verdict::Fail(_)),
                    "{fault}: {check} did not fail:\n{text}"
                );
            }
        }
    }
    let report = kit::run(
        &mapper_target(programs::KIT_FAULTY_MAPPER, 64, json!({"fault": "none"})),
        &mapper_suite(),
        &Mode::Live,
    )
    .await
    .unwrap();
    assert_passed(&report);
    let report = kit::run(
        &mapper_target(
            programs::KIT_FAULTY_MAPPER,
            64,
            json!({"fault": "non-deterministic"}),
        ),
        &mapper_suite(),
        &Mode::Live,
    )
    .await
    .unwrap();
    assert!(
        matches!(verdict(&report, "mapper.deterministic"), Verdict::Fail(_)),
        "{}",
        report.render(kit::Format::Text)
    );
}

fn mapper_suite() -> Suite {
    Suite::parse(
        "[mapper]\nstream = \"contacts\"\n\
         [[mapper.input]]\nid = \"1\"\npayload = { name = \"Ada\" }\n\
         [[mapper.input]]\nid = \"2\"\npayload = { name = \"Skip\", skip = true }\n\
         [[mapper.input]]\nid = \"3\"\npayload = { name = \"Bad\", fail = true }\n",
    )
    .unwrap()
}

/// A connector that carries a secret out (an echoing API's answer put into
/// records and its log) fails `sandbox.secrets`, which names where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_carried_into_records_and_logs_is_caught() {
    let api = nexo_tests::echo::start_echo().await;
    let drop_box = nexo_tests::echo::start_collector().await;
    let api_origin = format!("http://localhost:{}", api.port());
    let t = Target {
        grants: vec![
            HttpGrant::private(&api_origin).unwrap(),
            HttpGrant::private(&drop_box.url()).unwrap(),
        ],
        secrets: BTreeMap::from([(
            "token".to_string(),
            SecretValue::new("s3cr3t-kit-leak-value"),
        )]),
        kv_bytes: 1 << 20,
        ..bare(
            programs::HOSTILE_SECRETS,
            json!({"api": api_origin, "drop": drop_box.url(), "user": "ada"}),
        )
    };
    // Without its storage granted, the use is refused and named.
    let mut ungranted = t.clone();
    ungranted.kv_bytes = 0;
    let report = kit::run(&ungranted, &Suite::default(), &Mode::Live)
        .await
        .unwrap();
    assert!(
        matches!(
            verdict(&report, "sandbox.granted-storage"),
            Verdict::Fail(_)
        ),
        "{}",
        report.render(kit::Format::Text)
    );
    let report = kit::run(&t, &Suite::default(), &Mode::Live).await.unwrap();
    assert_eq!(verdict(&report, "sandbox.granted-storage"), &Verdict::Pass);
    let Verdict::Fail(reason) = verdict(&report, "sandbox.secrets") else {
        panic!("{}", report.render(kit::Format::Text));
    };
    assert!(
        reason.contains("a record of leads"),
        "{}",
        report.render(kit::Format::Text)
    );
    assert!(reason.contains("a log line"), "{reason}");
    assert!(
        !report
            .render(kit::Format::Json)
            .contains("s3cr3t-kit-leak-value")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xero_connector_passes_every_check() {
    use nexo_sandbox::xero::{self, XeroConfig};
    const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000aa";
    let server = xero::start(XeroConfig {
        token: "xero-kit-token".into(),
        tenant_id: TENANT.into(),
        seed: 12,
        ..XeroConfig::default()
    })
    .await
    .unwrap();
    let t = overridden(
        programs::XERO,
        "https://api.xero.com",
        &server.url(),
        &[("access_token", "xero-kit-token")],
        json!({"tenant_id": TENANT, "timeout_ms": 1500}),
    );
    let report = kit::run(&t, &suite("plugins/xero/nexo-test.toml"), &Mode::Live)
        .await
        .unwrap();
    assert_passed(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hledger_connectors_in_rust_and_python_pass_every_check() {
    for (component, memory, suite_file) in [
        (programs::HLEDGER, 64, "plugins/hledger/nexo-test.toml"),
        (
            programs::PY_HLEDGER,
            256,
            "plugins/py-hledger/nexo-test.toml",
        ),
    ] {
        let web = nexo_tests::hledger::HledgerWeb::start().await;
        let mut t = target(
            component,
            &web.url,
            serde_json::from_str(&web.config()).unwrap(),
        );
        t.secrets.clear();
        t.limits.memory_bytes = memory << 20;
        let report = kit::run(&t, &suite(suite_file), &Mode::Live).await.unwrap();
        assert_passed(&report);
    }
}

/// Against a real trytond (installed by `cargo xtask setup`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryton_connector_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = nexo_tests::tryton::start(dir.path()).await;
    let mut t = target(
        programs::TRYTON,
        server.origin(),
        server.connector_config(5),
    );
    t.secrets = BTreeMap::from([(
        "application_key".to_string(),
        SecretValue::new(server.application_key()),
    )]);
    let report = kit::run(&t, &suite("plugins/tryton/nexo-test.toml"), &Mode::Live)
        .await
        .unwrap();
    assert_passed(&report);
}

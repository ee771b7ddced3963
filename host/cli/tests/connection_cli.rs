//! An admin's path end to end through the `nexo` binary: trust a vendor,
//! install its signed plugin with a grant, connect it to a real TinyCRM,
//! test the connection, and see that the plugin cannot be removed from
//! under it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use nexo_tests::cli::{fails, ok};
use nexo_tests::{programs, tinycrm};

const TOKEN: &str = "cli-token-7c1d";

fn nexo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexo"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env("NEXO_LOG", "warn")
        .env("CRM_TOKEN", TOKEN)
        .env_remove("NEXO_SECRET_KEY")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_connect_test_and_guarded_remove() {
    let crm = tinycrm::start(tinycrm::seed(2), TOKEN).await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example-crm/nexo-plugin.toml");
    ok(nexo(
        d,
        &[
            "plugin",
            "keygen",
            "--name",
            "Nexo examples",
            "--out",
            &p("v.key"),
        ],
    ));
    ok(nexo(d, &["trust", "add", &p("v.key.pub")]));
    ok(nexo(
        d,
        &[
            "plugin",
            "pack",
            "--manifest",
            manifest.to_str().unwrap(),
            "--component",
            programs::EXAMPLE_CRM,
            "--key",
            &p("v.key"),
            "--out",
            &p("crm.nexo"),
        ],
    ));
    ok(nexo(
        d,
        &["plugin", "install", &p("crm.nexo"), "--grant", "all"],
    ));

    let id = "nexo-examples/tinycrm";
    std::fs::write(
        d.join("bad.json"),
        r#"{"base_url": "x", "page_size": "ten"}"#,
    )
    .unwrap();
    let err = fails(nexo(
        d,
        &[
            "connection",
            "add",
            "crm",
            "--plugin",
            id,
            "--config",
            &p("bad.json"),
            "--secret",
            "api_token=env:CRM_TOKEN",
            "--grant-private-http",
            &crm.url(),
        ],
    ));
    assert!(err.contains("field `/page_size`"), "{err}");

    std::fs::write(
        d.join("good.json"),
        format!(r#"{{"base_url": "{}"}}"#, crm.url()),
    )
    .unwrap();
    let add = |budget: &str| {
        nexo(
            d,
            &[
                "connection",
                "add",
                "crm",
                "--plugin",
                id,
                "--config",
                &p("good.json"),
                "--secret",
                "api_token=env:CRM_TOKEN",
                "--grant-private-http",
                &crm.url(),
                "--requests-per-minute",
                budget,
            ],
        )
    };
    for bad in ["0", "1.5", "lots"] {
        let err = fails(add(bad));
        assert!(err.contains("--requests-per-minute"), "{err}");
        assert!(err.contains("at least 1"), "{err}");
    }
    ok(add("120"));
    assert!(ok(nexo(d, &["connection", "test", "crm"])).contains("connection crm: OK"));
    let shown = ok(nexo(d, &["connection", "show", "crm"]));
    assert!(
        shown.contains("secrets      api_token (values are sealed and never shown)"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "requests     at most 120 per minute, shared by all runs (bursts of up to 4)"
        ),
        "{shown}"
    );
    assert!(!shown.contains(TOKEN));
    assert!(ok(nexo(d, &["plugin", "list"])).contains("used by  crm"));

    let err = fails(nexo(d, &["plugin", "remove", id]));
    assert!(err.contains("is used by connection(s) crm"), "{err}");
    ok(nexo(d, &["connection", "remove", "crm"]));
    assert!(ok(nexo(d, &["plugin", "remove", id])).contains("removed nexo-examples/tinycrm"));
    assert!(ok(nexo(d, &["plugin", "list"])).contains("no plugins installed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_call_reaches_a_sandbox_only_through_an_origin_override() {
    let sandbox = nexo_tests::echo::start_echo().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let config = d.join("hubspot.json");
    std::fs::write(&config, "{}").unwrap();
    let call = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "call",
            programs::HUBSPOT,
            "check",
            "--config",
            config.to_str().unwrap(),
            "--secret",
            "api_token=env:CRM_TOKEN",
        ];
        args.extend_from_slice(extra);
        nexo(d, &args)
    };
    // The connector names only https://api.hubapi.com: the sandbox's own
    // address, granted as a private origin, is not what it calls.
    let _ = call(&["--grant-private-http", &sandbox.url()]);
    assert!(
        sandbox.received_text().is_empty(),
        "{}",
        sandbox.received_text()
    );
    // Through the override, the sandbox gets the request and the token.
    let over = format!("https://api.hubapi.com={}", sandbox.url());
    let out = call(&["--origin-override", &over]);
    assert!(
        sandbox.received_text().contains(TOKEN),
        "{}",
        sandbox.received_text()
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(TOKEN), "{printed}");
}

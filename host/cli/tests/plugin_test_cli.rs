//! `nexo plugin test` through the binary, as a vendor's CI runs it: the
//! verdicts as text, JSON and JUnit XML, the exit status, and a suite file
//! with a typo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nexo_tests::{programs, tinycrm};
use serde_json::{Value, json};

const TOKEN: &str = "kit-cli-token-91c3";

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example-crm/nexo-test.toml")
}

fn nexo_test(
    dir: &Path,
    component: &str,
    crm: &tinycrm::Server,
    config: Value,
    extra: &[&str],
) -> Output {
    let config_file = dir.join("config.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_nexo"))
        .arg("--data-dir")
        .arg(dir)
        .args(["plugin", "test", component, "--config"])
        .arg(&config_file)
        .args(["--grant-private-http", &crm.url()])
        .args(["--secret", "api_token=env:KIT_TOKEN"])
        .args(extra)
        .env("KIT_TOKEN", TOKEN)
        .env("NEXO_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_suite_exits_zero_and_writes_junit() {
    let crm = tinycrm::start(tinycrm::seed(25), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("report.xml");
    let out = nexo_test(
        dir.path(),
        programs::EXAMPLE_CRM,
        &crm,
        json!({"base_url": crm.url(), "page_size": 10}),
        &[
            "--suite",
            suite().to_str().unwrap(),
            "--format",
            "junit",
            "--report",
            junit.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml, stdout);
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        xml.contains("classname=\"nexo.kit.faults\" name=\"contacts.write-lost-answer\""),
        "{xml}"
    );
    assert!(!xml.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_exits_non_zero_and_is_named() {
    let crm = tinycrm::start(tinycrm::seed(25), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let out = nexo_test(
        dir.path(),
        programs::KIT_FAULTY_CONNECTOR,
        &crm,
        json!({"base_url": crm.url(), "page_size": 10, "fault": "auth-as-internal"}),
        &["--suite", suite().to_str().unwrap(), "--format", "json"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("check.wrong-credentials"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "check.wrong-credentials")
        .unwrap();
    assert_eq!(check["verdict"], "fail");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .contains("`internal`, not `auth`"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_in_the_suite_file_is_named_before_anything_runs() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("nexo-test.toml");
    std::fs::write(&bad, "[streams.contacts]\ncreat = { email = \"a@b.c\" }\n").unwrap();
    let out = nexo_test(
        dir.path(),
        programs::EXAMPLE_CRM,
        &crm,
        json!({"base_url": crm.url()}),
        &["--suite", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("creat") && stderr.contains("nexo-test.toml"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran");
    assert_eq!(crm.contacts().len(), 1, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_bundle_is_tested_as_its_manifest_names_it() {
    let crm = tinycrm::start(tinycrm::seed(12), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("tinycrm.nexo");
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example-crm/nexo-plugin.toml");
    let packed = Command::new(env!("CARGO_BIN_EXE_nexo"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["plugin", "pack", "--unsigned", "--manifest"])
        .arg(&manifest)
        .args(["--component", programs::EXAMPLE_CRM, "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let out = nexo_test(
        dir.path(),
        bundle.to_str().unwrap(),
        &crm,
        json!({"base_url": crm.url(), "page_size": 5}),
        &["--suite", suite().to_str().unwrap(), "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["plugin"], "nexo-examples/tinycrm@0.1.0");
    assert_eq!(report["failed"], 0);

    // Neither a component nor a bundle: named, nothing run.
    let junk = dir.path().join("junk.nexo");
    std::fs::write(&junk, b"not a bundle").unwrap();
    let out = nexo_test(dir.path(), junk.to_str().unwrap(), &crm, json!({}), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("junk.nexo"), "{stderr}");
}

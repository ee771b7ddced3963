//! The port scan of issue 14, as it was reproduced: `nexo plugin call` with
//! `--grant-private-http http://127.0.0.1:A` and `--grant-http 'http://*:*'`
//! runs a hostile connector that asks for another port of 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use nexo_tests::cli::{fails, ok};
use nexo_tests::{programs, tinycrm};

fn call_hostile(dir: &std::path::Path, private: &str, url: &str) -> Output {
    let config = dir.join("hostile.json");
    std::fs::write(&config, serde_json::json!({ "url": url }).to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_nexo"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "plugin",
            "call",
            programs::HOSTILE,
            "read",
            "--stream",
            "http",
        ])
        .arg("--config")
        .arg(&config)
        .args([
            "--grant-private-http",
            private,
            "--grant-http",
            "http://*:*",
        ])
        .env("NEXO_LOG", "error")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_call_with_a_private_grant_cannot_reach_another_port() {
    let a = tinycrm::start(tinycrm::seed(1), "t").await;
    let b = tinycrm::start(tinycrm::seed(1), "t").await;
    let dir = tempfile::tempdir().unwrap();

    let own = ok(call_hostile(
        dir.path(),
        &a.url(),
        &format!("{}/api/ping", a.url()),
    ));
    assert!(own.contains("status 401"), "A answered (no token): {own}");

    for url in [
        format!("{}/api/ping", b.url()),
        format!("http://localhost:{}/api/ping", b.addr.port()),
        format!("{}/redirect?to={}/api/ping", a.url(), b.url()),
    ] {
        let err = fails(call_hostile(dir.path(), &a.url(), &url));
        assert!(err.contains("access denied"), "{url}: {err}");
        assert!(err.contains("--grant-private-http"), "says how: {err}");
    }
    assert_eq!(
        a.crm.lock().unwrap().requests.len(),
        2,
        "ping, then redirect"
    );
    assert!(
        b.crm.lock().unwrap().requests.is_empty(),
        "nothing reached B: {:?}",
        b.crm.lock().unwrap().requests
    );
}

//! `nexo-sandbox start` as a person starts it: both services answer with the
//! seeded data and the credentials it printed, refuse anything else, and
//! stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_serves_seeded_hubspot_and_xero_apis_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexo-sandbox"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "start",
            "--hubspot-port",
            "0",
            "--xero-port",
            "0",
            "--size",
            "12",
        ])
        .env("NEXO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let url = |line: &str| {
        line.split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string()
    };
    let (hub, books) = (url(&lines[0]), url(&lines[1]));
    let http = reqwest::Client::new();

    let deals: Value = http
        .get(format!("{hub}/crm/v3/objects/deals?limit=100"))
        .bearer_auth("pat-na1-sandbox")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deals = deals["results"].as_array().unwrap();
    assert_eq!(deals.len(), 6, "size 12 seeds 6 deals");
    assert!(
        deals
            .iter()
            .any(|d| d["properties"]["dealstage"] == "closedwon")
    );
    let refused = http
        .get(format!("{hub}/crm/v3/objects/deals"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let invoices: Value = http
        .get(format!("{books}/api.xro/2.0/Invoices"))
        .bearer_auth("xero-sandbox-token")
        .header("xero-tenant-id", "00000000-0000-4000-8000-00000000a001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invoices["Invoices"].as_array().unwrap().len(), 12);
    let no_tenant = http
        .get(format!("{books}/api.xro/2.0/Invoices"))
        .bearer_auth("xero-sandbox-token")
        .send()
        .await
        .unwrap();
    assert!(no_tenant.status().is_client_error());

    let status = nexo_tests::cli::terminate(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

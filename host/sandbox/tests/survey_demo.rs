//! Issue 23's acceptance: `nexo survey` on the demo's systems reports the
//! duplicates seeded inside each — companies typed in twice in the
//! HubSpot-like CRM (a misspelt name, the same phone in another format,
//! a legal form written differently) and contacts in the Xero-like books
//! (an e-mail in another case, a tax number with spaces, a legal form
//! added) — and nothing else: the demo's other records, each held once,
//! are in no group. The demo runs as a person starts it (`nexo-sandbox
//! demo`, without the ERP), and the survey is the `nexo` binary on its
//! data directory while it serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use nexo_tests::cli::{ok, terminate};
use serde_json::Value;
use support::{nexo, pack_bundles, serving_demo, stdout_lines};

mod support;

/// The `(by, value)` of every likely-duplicate group of a survey's only
/// stream, each checked to hold two records, none in two groups of the
/// same kind.
fn groups(report: &Value) -> BTreeSet<(String, String)> {
    let s = &report["streams"][0];
    let mut out = BTreeSet::new();
    for g in s["duplicates"].as_array().unwrap() {
        let ids = g["ids"].as_array().unwrap();
        assert_eq!(ids.len(), 2, "a pair, not {g}");
        out.insert((
            g["by"].as_str().unwrap().to_string(),
            g["value"].as_str().unwrap().to_string(),
        ));
    }
    out
}

fn expected(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(by, value)| (by.to_string(), value.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_of_the_demos_systems_finds_the_records_typed_in_twice() {
    let work = tempfile::tempdir().unwrap();
    let bundles = work.path().join("bundles");
    pack_bundles(work.path(), &bundles);
    let data = work.path().join("data");
    let mut child = serving_demo(&data, &bundles, &["--no-erp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let serving = line.starts_with("nexo serving on http://");
                out.push(line);
                if serving {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not reach the console:\n{}", out.join("\n"));
            }
        }
    }

    let survey = |connection: &str, stream: &str| -> Value {
        let text = ok(nexo(&data)
            .args(["survey", connection, stream, "--json"])
            .output()
            .unwrap());
        serde_json::from_str(&text).unwrap()
    };
    let crm = survey("hubspot-sandbox", "companies");
    let books = survey("xero-sandbox", "contacts");
    terminate(&mut child, Duration::from_secs(30));

    // The CRM: "Acme Widgets Ltd" / "ACME Widgetz" (a typo), "Northwind
    // Traders GmbH" / "Northwind Traders" (the phone in national format),
    // "Blue Harbor Foods Inc" / "Blue Harbor Foods, Inc." (same phone).
    // The generated companies ("Lovelace GmbH 1", …) are each there once.
    assert_eq!(
        groups(&crm),
        expected(&[
            ("similar-name", "acme widgets"),
            ("phone", "012345678"),
            ("name", "northwind traders"),
            ("phone", "125550142"),
            ("name", "blue harbor foods"),
        ]),
        "{crm}"
    );
    // The books: the same e-mail in another case, the same VAT number
    // written with spaces (under a name a letter or two away), a legal
    // form added. The seeded customers and
    // the ones the demo's pipeline created are each there once.
    assert_eq!(
        groups(&books),
        expected(&[
            ("email", "accounts@harbourlights.example"),
            ("name", "harbour lights trading"),
            ("tax-id", "811234567"),
            ("similar-name", "meridian tooling"),
            ("name", "oakfield bakery"),
        ]),
        "{books}"
    );
    assert!(books["streams"][0]["records"].as_u64().unwrap() > 6);
}

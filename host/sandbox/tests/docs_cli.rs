//! `nexo docs` on the demo's configuration, as a person runs it: the demo
//! sets up its systems, connections and pipelines (and runs them), then
//! `nexo docs` writes the Markdown and the HTML map. The Markdown names
//! every connection and pipeline with its rules; the HTML page is opened in
//! a headless Chromium and screenshotted, and so is the console's Map page
//! served by `nexo serve` on the same installation — into
//! `target/test-artifacts/docs-map/`. No secret is in any of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use nexo_tests::browser::{self, Browser, Screenshots, wait, wait_text};
use nexo_tests::cli::{listening_url, ok, terminate};
use support::{nexo, nexo_sandbox, pack_bundles};

mod support;

const CONNECTIONS: [&str; 2] = ["hubspot-sandbox", "xero-sandbox"];
const PIPELINES: [&str; 3] = [
    "won-deals-to-xero-customers",
    "won-deals-to-xero-invoices",
    "invoice-payments-to-deals",
];
/// The demo's sandbox credentials: in the database, sealed, and nowhere else.
const SECRETS: [(&str, &str); 2] = [
    ("HubSpot token", "pat-na1-sandbox"),
    ("Xero token", "xero-sandbox-token"),
];

fn no_secret(what: &str, text: &str) {
    for (name, value) in SECRETS {
        assert!(!text.contains(value), "the {name} is in the {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexo_docs_maps_the_demo_as_markdown_and_html_and_the_console_shows_it() {
    let work = tempfile::tempdir().unwrap();
    let bundles = work.path().join("bundles");
    pack_bundles(work.path(), &bundles);
    let data = work.path().join("data");
    let demo = nexo_sandbox(&data)
        .env("NEXO_CACHE_DIR", nexo_tests::cache_dir())
        .args(["demo", "--no-serve", "--no-erp", "--bundles"])
        .arg(&bundles)
        .args(["--hubspot-port", "0", "--xero-port", "0"])
        .output()
        .unwrap();
    ok(demo);

    let out = browser::artefacts("docs-map");
    for old in ["nexo-map.md", "nexo-map.html"] {
        let _ = std::fs::remove_file(out.join(old));
    }
    let said = ok(nexo(&data)
        .args(["docs", "--out"])
        .arg(&out)
        .output()
        .unwrap());
    assert!(
        said.contains("nexo-map.md") && said.contains("nexo-map.html"),
        "{said}"
    );
    let md = std::fs::read_to_string(out.join("nexo-map.md")).unwrap();
    for name in CONNECTIONS.iter().chain(&PIPELINES) {
        assert!(
            md.contains(&format!("**{name}**")) || md.contains(&format!("### {name} ")),
            "{name} is not in\n{md}"
        );
    }
    // Each pipeline with its direction, mappers and their rules, and health.
    for needle in [
        "`hubspot-sandbox`/`deals` → `xero-sandbox`/`contacts`",
        "`xero-sandbox`/`invoices` → `hubspot-sandbox`/`deals`",
        "`nexo/deal-to-invoice`",
        "emit: customer",
        "rename: number → nexo_invoice_number",
        "updates linked records only, never creates",
        "**Schedule:** every 1m",
        "### won-deals-to-xero-invoices — ok",
        "last run #",
        "```mermaid",
    ] {
        assert!(md.contains(needle), "no {needle:?} in\n{md}");
    }
    no_secret("Markdown", &md);
    let page = std::fs::read_to_string(out.join("nexo-map.html")).unwrap();
    no_secret("HTML", &page);
    assert!(!page.contains("<script"), "the page runs a script");

    // With --check, each connection is checked first: the demo's sandbox
    // services are gone, so both are mapped failing, saying why.
    let checked = out.join("checked");
    let _ = std::fs::remove_dir_all(&checked);
    ok(nexo(&data)
        .args(["docs", "--check", "--format", "markdown", "--out"])
        .arg(&checked)
        .output()
        .unwrap());
    assert!(!checked.join("nexo-map.html").exists());
    let md = std::fs::read_to_string(checked.join("nexo-map.md")).unwrap();
    for name in CONNECTIONS {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| **{name}** |")))
            .unwrap_or_else(|| panic!("no row of {name} in\n{md}"));
        assert!(row.contains("| **failing** at "), "{row}");
    }
    no_secret("checked Markdown", &md);

    // The HTML page as a person opens it from the disk.
    let chromium = Browser::start("docs-map").await;
    let mut shots = Screenshots::new("docs-map", &SECRETS);
    let c = chromium.open().await;
    c.goto(&format!("file://{}", out.join("nexo-map.html").display()))
        .await
        .unwrap();
    for name in PIPELINES {
        wait(
            &c,
            &format!(r#"#diagram g[data-pipeline="{name}"] path.edge.h-ok"#),
        )
        .await;
    }
    for name in CONNECTIONS {
        wait(&c, &format!(r#"#diagram g[data-connection="{name}"]"#)).await;
    }
    shots.step(&c, "html-map").await;

    // The console's Map page on the same installation.
    let token = ok(nexo(&data)
        .args([
            "token",
            "create",
            "--name",
            "map-viewer",
            "--role",
            "viewer",
        ])
        .output()
        .unwrap())
    .trim()
    .to_string();
    let mut serve = nexo(&data)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = listening_url(&mut serve);
    // The model behind the page, as the API serves it to a viewer.
    let client = reqwest::Client::new();
    let refused = client.get(format!("{url}/api/map")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let json = client
        .get(format!("{url}/api/map"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    no_secret("API's map", &json);
    let model: serde_json::Value = serde_json::from_str(&json).unwrap();
    let edges: Vec<&str> = model["diagram"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pipeline"].as_str().unwrap())
        .collect();
    for name in PIPELINES {
        assert!(edges.contains(&name), "{name} has no arrow: {json}");
    }
    c.goto(&format!("{url}/")).await.unwrap();
    browser::login(&c, &token).await;
    wait_text(&c, "#session-name", "token: map-viewer").await;
    browser::click(&c, r#"a[data-nav="map"]"#).await;
    for name in PIPELINES {
        let arrow = wait(&c, &format!(r#"#map-diagram g[data-pipeline="{name}"]"#)).await;
        assert_eq!(
            arrow.attr("data-health").await.unwrap().as_deref(),
            Some("ok"),
            "{name}"
        );
        wait_text(
            &c,
            &format!(r#"#map-diagram g[data-pipeline="{name}"] text"#),
            "· ok",
        )
        .await;
    }
    for name in CONNECTIONS {
        wait(&c, &format!(r#"#map-diagram g[data-connection="{name}"]"#)).await;
    }
    wait_text(
        &c,
        r#"table.map-pipelines tr[data-pipeline="invoice-payments-to-deals"]"#,
        "rename: number → nexo_invoice_number",
    )
    .await;
    shots.step(&c, "console-map").await;
    c.close().await.unwrap();
    drop(chromium);
    let status = terminate(&mut serve, Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

//! `nexo-sandbox demo`, the product's main job, driven as a person runs it: the
//! reference plugins signed and packed by their vendor with the `nexo`
//! binary, then `nexo-sandbox demo` moves records CRM → accounting → CRM, shows a
//! second round writes nothing, and serves the console until SIGTERM. With
//! Tryton ERP installed (`cargo xtask setup`, part of the test command) it
//! also syncs a real trytond's products to Xero items; without it the test
//! fails, saying so, rather than skip that part.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::Locator;
use nexo_tests::browser::{self, Browser, Screenshots, wait, wait_text};
use nexo_tests::cli::{ok, terminate};
use support::{nexo, nexo_sandbox, pack_bundles, serving_demo, stdout_lines};

mod support;

/// The demo binary.
/// The number after `what ` in a counts line.
fn count(line: &str, what: &str) -> u64 {
    let at = line
        .find(&format!("{what} "))
        .unwrap_or_else(|| panic!("no `{what}` in {line:?}"));
    line[at + what.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_moves_records_crm_to_accounting_and_back_then_serves_the_console() {
    assert!(
        nexo_sandbox::tryton::Tryton::find().is_some(),
        "Tryton ERP is not installed: run `cargo xtask setup` (the demo's ERP pipeline needs it)"
    );
    let work = tempfile::tempdir().unwrap();
    let bundles = work.path().join("bundles");
    pack_bundles(work.path(), &bundles);
    let data = work.path().join("data");

    let mut child = serving_demo(&data, &bundles, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Everything up to the line the daemon prints once it serves.
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
                panic!(
                    "the demo did not reach the console:\n{}\nstderr:\n{}",
                    out.join("\n"),
                    errors.join().unwrap()
                );
            }
        }
    }
    let text = out.join("\n");
    let line_of = |prefix: &str, nth: usize| -> String {
        out.iter()
            .filter(|l| l.starts_with(prefix))
            .nth(nth)
            .unwrap_or_else(|| panic!("no line {nth} starting {prefix:?} in\n{text}"))
            .clone()
    };

    // CRM → accounting: customers and invoices created.
    let customers = line_of("won-deals-to-xero-customers: succeeded", 0);
    let invoices = line_of("won-deals-to-xero-invoices: succeeded", 0);
    assert!(count(&customers, "created") > 0, "{customers}");
    let made = count(&invoices, "created");
    assert!(made >= 3, "{invoices}");
    // Payments in Xero → back to the deals.
    assert_eq!(text.matches("\npaid INV-").count(), 3, "{text}");
    let back = line_of("invoice-payments-to-deals: succeeded", 0);
    assert_eq!(count(&back, "updated"), made, "every linked deal: {back}");
    assert_eq!(count(&back, "created"), 0, "update-only: {back}");
    // The second round writes nothing anywhere.
    // ERP → accounting: the real Tryton's six products became Xero items.
    let products = line_of("tryton-products-to-xero-items: succeeded", 0);
    assert_eq!(count(&products, "created"), 6, "{products}");
    assert_eq!(count(&products, "failed"), 0, "{products}");
    assert_eq!(
        out.iter()
            .filter(|l| l.starts_with("Tryton product ") && l.contains("→ Xero item"))
            .count(),
        3,
        "{text}"
    );
    for name in [
        "won-deals-to-xero-customers",
        "won-deals-to-xero-invoices",
        "invoice-payments-to-deals",
        "tryton-products-to-xero-items",
    ] {
        let again = line_of(&format!("{name}: succeeded"), 1);
        for what in ["created", "updated", "deleted", "failed", "conflicts"] {
            assert_eq!(count(&again, what), 0, "{again}");
        }
    }
    // The linked records, shown across the three steps.
    assert_eq!(
        text.matches("nexo_invoice_status = paid").count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches("now PAID (amount due 0)").count(), 3, "{text}");
    assert!(text.contains("→ Xero contact"), "{text}");

    // The console is served, and its API knows the demo's pipelines.
    let login = line_of("Log in at http://", 0);
    let mut words = login.split_whitespace();
    let url = words
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let token = login.split_whitespace().last().unwrap().to_string();
    assert!(token.starts_with("nexo_"), "{login}");
    let client = reqwest::Client::new();
    let page = client.get(format!("{url}/")).send().await.unwrap();
    assert!(page.status().is_success());
    let pipelines: serde_json::Value = client
        .get(format!("{url}/api/pipelines"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = pipelines
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{pipelines}");
    assert!(
        names.contains(&"tryton-products-to-xero-items"),
        "{names:?}"
    );
    assert!(names.contains(&"invoice-payments-to-deals"), "{names:?}");
    // Secrets stay in the host.
    let connections = client
        .get(format!("{url}/api/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(connections.contains("hubspot-sandbox"), "{connections}");
    assert!(
        !connections.contains("pat-na1-sandbox") && !connections.contains("xero-sandbox-token"),
        "a secret leaked: {connections}"
    );

    // The console in a real Chromium: the demo's four pipelines on the
    // dashboard, and a paid invoice looked up across the CRM and the books.
    let paid = out
        .iter()
        .find_map(|l| l.strip_prefix("paid "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let chromium = Browser::start("demo-console").await;
    let mut shots = Screenshots::new(
        "demo-console",
        &[
            ("console token", token.as_str()),
            ("HubSpot token", "pat-na1-sandbox"),
            ("Xero token", "xero-sandbox-token"),
        ],
    );
    let c = chromium.open().await;
    c.goto(&format!("{url}/")).await.unwrap();
    browser::login(&c, &token).await;
    wait_text(&c, "#session-name", "token: demo").await;
    for name in [
        "won-deals-to-xero-customers",
        "won-deals-to-xero-invoices",
        "invoice-payments-to-deals",
        "tryton-products-to-xero-items",
    ] {
        wait_text(&c, &format!(r#"tr[data-pipeline="{name}"]"#), "succeeded").await;
    }
    shots.step(&c, "dashboard").await;
    browser::click(&c, r#"a[data-nav="lookup"]"#).await;
    wait(&c, "#lookup-q").await.send_keys(&paid).await.unwrap();
    browser::click(&c, "#lookup-go").await;
    wait(&c, ".entity").await;
    let mut systems = Vec::new();
    for cell in c
        .find_all(Locator::Css(
            ".entity table.entity-records > tbody > tr > td:first-child",
        ))
        .await
        .unwrap()
    {
        systems.push(cell.text().await.unwrap());
    }
    assert!(
        systems.iter().any(|s| s == "hubspot-sandbox")
            && systems.iter().any(|s| s == "xero-sandbox"),
        "invoice {paid} is not linked across the CRM and the books: {systems:?}"
    );
    shots.step(&c, "lookup").await;
    c.close().await.unwrap();
    drop(chromium);

    // Past one machine: `nexo db copy` moves the installation to a
    // PostgreSQL (rows, sealed secrets, identity map, cursors, and the
    // plugins' bundles), and a host with another data directory — the same
    // secret key — runs every pipeline from there: nothing new is written,
    // since nothing changed in the systems (still served by the demo).
    let database = nexo_db::postgres::testing::database().unwrap();
    let copied = ok(nexo(&data)
        .args(["db", "copy", "--from"])
        .arg(format!("sqlite:{}", data.join("nexo.db").display()))
        .args(["--to", &database])
        .output()
        .unwrap());
    assert!(copied.contains("and 5 plugin bundles"), "{copied}");
    assert!(copied.contains("entity_links: "), "{copied}");
    let key = std::fs::read_to_string(data.join("secret.key")).unwrap();
    let other_host = work.path().join("other-host");
    for name in [
        "won-deals-to-xero-customers",
        "won-deals-to-xero-invoices",
        "invoice-payments-to-deals",
        "tryton-products-to-xero-items",
    ] {
        let ran = ok(nexo(&other_host)
            .env("NEXO_DATABASE_URL", &database)
            .env("NEXO_SECRET_KEY", key.trim())
            .args(["pipeline", "run", name])
            .output()
            .unwrap());
        for what in ["created", "updated", "deleted", "failed", "conflicts"] {
            assert_eq!(count(&ran, what), 0, "{name} on PostgreSQL: {ran}");
        }
    }

    let status = terminate(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let errors = errors.join().unwrap();
    assert!(!errors.contains("ERROR"), "{errors}");

    // A second demo on the same data directory is refused, not mixed in.
    let again = nexo_sandbox(&data)
        .args(["demo", "--no-serve", "--bundles"])
        .arg(&bundles)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already has connections"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

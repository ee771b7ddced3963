//! The web console in a real headless Chromium: an operator replaces a
//! connection's secret from the dashboard, and the system behind it (an
//! echo API on 127.0.0.1) sees the new value on the next call and never
//! the old one; the value is nowhere in the page afterwards.
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo xtask setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use nexo::connections::NewConnection;
use nexo::sandbox::secrets::SecretValue;
use nexo::serve::ServeConfig;
use nexo::serve::clock::SystemClock;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo_tests::browser::{Browser, Screenshots, click, login, wait, wait_text};
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{CRM_PLUGIN, Kit, TOKEN};
use nexo_tests::{echo, tinycrm};
use serde_json::json;

const API_TOKEN: &str = "nexo_console_secret_3c9e1a";
const OLD_TOKEN: &str = "old-echo-token-9f3b27";
const NEW_TOKEN: &str = "new-echo-token-c48e01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replaces_a_secret_and_the_next_call_carries_it() {
    let browser = Browser::start("console-secret").await;
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 10).await;
    let api = echo::start_echo().await;
    kit.connections
        .add(NewConnection {
            name: "echo".into(),
            plugin_id: CRM_PLUGIN.into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"base_url": api.url()}),
            secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(OLD_TOKEN))]),
            grants: ConnectionGrants {
                http: vec![],
                private_http: vec![api.url()],
                requests_per_minute: None,
                ..Default::default()
            },
        })
        .unwrap();
    kit.db
        .insert_token("operator", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let mut shots = Screenshots::new(
        "console-secret",
        &[
            ("TinyCRM token", TOKEN),
            ("API token", API_TOKEN),
            ("old token", OLD_TOKEN),
            ("new token", NEW_TOKEN),
        ],
    );
    let c = browser.open().await;
    c.goto(&format!("{url}/")).await.unwrap();
    login(&c, API_TOKEN).await;
    wait_text(&c, "#session-name", "token: operator").await;

    let row = r#"tr[data-connection="echo"]"#;
    click(&c, &format!("{row} button.replace-secret")).await;
    wait_text(&c, "#secret-dialog", "Replace a secret of echo").await;
    wait(&c, "#secret-value")
        .await
        .send_keys(NEW_TOKEN)
        .await
        .unwrap();
    shots.step(&c, "replace-secret").await;
    click(&c, "#secret-save").await;
    wait_text(
        &c,
        "#notice:not([hidden])",
        "Secret api_token of echo replaced",
    )
    .await;
    shots.step(&c, "secret-replaced").await;
    let page = c.source().await.unwrap();
    assert!(
        !page.contains(NEW_TOKEN) && !page.contains(OLD_TOKEN),
        "a secret is in the page"
    );

    // The next call to the system carries the new value, never the old.
    let seen_before = api.received.lock().unwrap().len();
    let tested = reqwest::Client::new()
        .post(format!("{url}/api/connections/echo/test"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status(), 200);
    let after = api.received.lock().unwrap()[seen_before..].join("\n");
    assert!(after.contains(NEW_TOKEN), "the call after: {after}");
    assert!(
        !after.contains(OLD_TOKEN),
        "the old token was sent: {after}"
    );

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
}

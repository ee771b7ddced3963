//! The authorization-code flow end to end in a real headless Chromium: an
//! admin signs in to the console, presses Authorize on a Xero connection,
//! signs in at the Xero-like sandbox's authorization page, consents, is
//! sent back to the console, picks the organisation, and the connection
//! works — with no token or client secret in any page or API answer.
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo xtask setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use fantoccini::Locator;
use nexo::connections::NewConnection;
use nexo::registry::Registry;
use nexo::serve::clock::SystemClock;
use nexo::serve::scheduler::SchedulerConfig;
use nexo::serve::{App, ServeConfig};
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo_sandbox::oauth::{
    CLIENT_ID, CLIENT_SECRET, USER_EMAIL, USER_PASSWORD, XERO_EMPTY_TENANT, XERO_ORGANISATION,
};
use nexo_sandbox::xero::{self, XeroConfig};
use nexo_tests::browser::{Browser, Screenshots, click, login, wait, wait_text};
use nexo_tests::daemon::serve;
use nexo_tests::tryton::Host;
use serde_json::{Value, json};

const API_TOKEN: &str = "nexo_console_oauth_7d2e9b";
const STATIC_TOKEN: &str = "xero-console-oauth-static";
const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000dd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_authorizes_a_xero_connection_in_the_browser_and_picks_the_organisation() {
    let browser = Browser::start("console-oauth").await;
    let books = xero::start(XeroConfig {
        token: STATIC_TOKEN.into(),
        tenant_id: TENANT.into(),
        rate_limit: None,
        ..XeroConfig::default()
    })
    .await
    .unwrap();
    let host = Host::new().await;
    host.connections
        .add(NewConnection {
            name: "books".into(),
            plugin_id: "nexo/xero".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({}),
            secrets: BTreeMap::new(),
            grants: sandbox_grants(&books.url()),
        })
        .unwrap();
    host.db
        .insert_token("admin", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    let registry = Registry::new(
        host.db.clone(),
        nexo_tests::runtime().clone(),
        host.dir.path().join("bundles"),
    );
    let app = App::new(
        host.engine.clone(),
        registry,
        host.connections.clone(),
        Sealer::from_env_or_file(&host.dir.path().join("secret.key")).unwrap(),
        Arc::new(SystemClock),
        SchedulerConfig::default(),
    );
    let (url, stop, daemon) = serve(app, ServeConfig::default()).await;
    let api = |path: &str| {
        let url = format!("{url}{path}");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let before: Value = serde_json::from_str(&api("/api/connections/books").await).unwrap();
    assert_eq!(before["oauth"]["status"], "not-authorized", "{before}");

    let mut shots = Screenshots::new(
        "console-oauth",
        &[
            ("API token", API_TOKEN),
            // (The sandbox user's password is the word `sandbox`, which the
            // console shows as an environment: not checked here.)
            ("client secret", CLIENT_SECRET),
        ],
    );
    let c = browser.open().await;
    c.goto(&format!("{url}/")).await.unwrap();
    login(&c, API_TOKEN).await;
    let row = r#"tr[data-connection="books"]"#;
    wait_text(&c, row, "OAuth: not authorized yet").await;
    shots.step(&c, "not-authorized").await;
    click(&c, &format!("{row} button.authorize")).await;
    wait_text(&c, "#oauth-dialog", "Authorize books").await;
    wait(&c, "#oauth-client-id")
        .await
        .send_keys(CLIENT_ID)
        .await
        .unwrap();
    wait(&c, "#oauth-client-secret")
        .await
        .send_keys(CLIENT_SECRET)
        .await
        .unwrap();
    shots.step(&c, "client").await;
    click(&c, "#oauth-continue").await;

    // The sandbox's sign-in page, reached through the connection's override.
    wait(&c, "#email")
        .await
        .send_keys(USER_EMAIL)
        .await
        .unwrap();
    wait(&c, "#password")
        .await
        .send_keys(USER_PASSWORD)
        .await
        .unwrap();
    let signin = c.current_url().await.unwrap();
    assert!(
        signin.as_str().starts_with(&books.url()),
        "the sign-in page is the sandbox's: {signin}"
    );
    shots.step(&c, "sign-in").await;
    click(&c, "#login").await;
    wait(&c, "#allow").await;
    shots.step(&c, "consent").await;
    click(&c, "#allow").await;

    // Back at the console: the authorization reaches two organisations.
    wait_text(&c, "#oauth-title", "Choose the organisation").await;
    let page = c.source().await.unwrap();
    assert!(page.contains(XERO_ORGANISATION), "{page}");
    assert!(page.contains(XERO_EMPTY_TENANT), "{page}");
    let callback = c.current_url().await.unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{url}/oauth/callback?")),
        "{callback}"
    );
    click(&c, &format!(r#"input[name="tenant"][value="{TENANT}"]"#)).await;
    shots.step(&c, "tenant").await;
    click(&c, "#choose-tenant").await;
    let done = wait_text(&c, "#oauth-message", "books is authorized").await;
    assert!(done.contains(XERO_ORGANISATION), "{done}");
    assert!(done.contains("Its check passed"), "{done}");
    shots.step(&c, "authorized").await;
    let page = c.source().await.unwrap();
    assert!(
        !page.contains(CLIENT_SECRET),
        "the client secret is in the page"
    );

    // The redirect replayed, a forged one, and the choice posted again are
    // each refused, changing nothing.
    let http = reqwest::Client::new();
    let forged = callback.replace("state=", "state=forged");
    for (what, address) in [("replayed", callback.as_str()), ("forged", forged.as_str())] {
        let answer = http.get(address).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{what}");
        let page = answer.text().await.unwrap();
        assert!(
            page.contains("does not belong to an authorization in progress"),
            "{what}: {page}"
        );
    }
    let state = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let again = http
        .post(format!("{url}/oauth/tenant"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("state={state}&tenant={XERO_EMPTY_TENANT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "a tenant choice made twice");

    // The console shows it, and the connection works on the new tokens.
    c.find(Locator::Css("#back"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, row, "OAuth: authorized").await;
    // Checked when it was authorized, not hours later.
    wait(&c, &format!("{row} td.health .dot.st-ok")).await;
    shots.step(&c, "console").await;
    let tested: Value = serde_json::from_str(
        &reqwest::Client::new()
            .post(format!("{url}/api/connections/books/test"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    let after: Value = serde_json::from_str(&api("/api/connections/books").await).unwrap();
    assert_eq!(after["oauth"]["status"], "authorized", "{after}");
    assert_eq!(after["oauth"]["tenant"], TENANT, "{after}");
    assert_eq!(after["config"]["tenant_id"], TENANT, "{after}");

    // No token anywhere the admin looks.
    let access = host
        .connections
        .credential("books")
        .unwrap()
        .unwrap()
        .current()
        .await
        .unwrap();
    let page = c.source().await.unwrap();
    // The authorization is in the audit trail once, as the admin's, who
    // started it (the browser's redirect carries no token).
    let trail: Value =
        serde_json::from_str(&api("/api/audit?action=connection.authorize").await).unwrap();
    let entries = trail["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{trail}");
    assert_eq!(entries[0]["actor"], "token:admin", "{trail}");
    assert_eq!(entries[0]["target"], "connection/books", "{trail}");
    for (what, text) in [
        ("API", serde_json::to_string(&after).unwrap()),
        ("overview", api("/api/overview").await),
        ("audit", trail.to_string()),
        ("console", page),
    ] {
        assert!(
            !text.contains(access.value.expose()) && !text.contains(CLIENT_SECRET),
            "a token or the client secret is in the {what}"
        );
    }

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
}

/// A sandbox connection reaching Xero's hosts at `url`.
fn sandbox_grants(url: &str) -> ConnectionGrants {
    ConnectionGrants {
        origin_overrides: [
            "https://api.xero.com",
            "https://login.xero.com",
            "https://identity.xero.com",
        ]
        .iter()
        .map(|o| (o.to_string(), url.to_string()))
        .collect(),
        ..ConnectionGrants::default()
    }
}

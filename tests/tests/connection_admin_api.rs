//! Connection maintenance through the admin API over real HTTP:
//! `PATCH /api/connections/{name}` replaces a secret (the next call to the
//! system carries the new one only), and refuses what `add` refuses with a
//! 400 naming the field, changing nothing; `DELETE` answers 409 naming the
//! pipelines that use the connection unless `?force=true`, which pauses
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use nexo::connections::NewConnection;
use nexo::sandbox::secrets::SecretValue;
use nexo::serve::ServeConfig;
use nexo::serve::clock::SystemClock;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::sync::store::PipelineStore;
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{CRM_PLUGIN, Kit, pipeline};
use nexo_tests::{echo, tinycrm};
use serde_json::{Value, json};

const API_TOKEN: &str = "nexo_admin_api_token_1";
const OLD_TOKEN: &str = "old-echo-token-9f3b27";
const NEW_TOKEN: &str = "new-echo-token-c48e01";
/// A value the host never sealed: its redaction cannot hide it.
const UNSEEN: &str = "never-sealed-token-77aa01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_replaces_what_is_given_and_delete_guards_pipelines() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.apply(
        &pipeline("b-to-a", "", "")
            .replace("\"crm-a\"", "\"crm-x\"")
            .replace("\"crm-b\"", "\"crm-a\"")
            .replace("\"crm-x\"", "\"crm-b\""),
    )
    .await;
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
    let app = app(&kit, Arc::new(SystemClock));
    kit.db
        .insert_token("admin", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    let (url, stop, handle) = serve(app, ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let patch = |name: &str, body: Value| {
        http.patch(format!("{url}/api/connections/{name}"))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
    };
    let test = |name: &str| {
        http.post(format!("{url}/api/connections/{name}/test"))
            .bearer_auth(API_TOKEN)
            .send()
    };
    let get = |name: &str| {
        http.get(format!("{url}/api/connections/{name}"))
            .bearer_auth(API_TOKEN)
            .send()
    };
    let mut answers = Vec::new();

    // The secret replaced: the next call carries the new one, never the old.
    let _ = test("echo").await.unwrap();
    assert!(api.received_text().contains(OLD_TOKEN), "the first call");
    let seen_before = api.received.lock().unwrap().len();
    let resp = patch("echo", json!({"secrets": {"api_token": NEW_TOKEN}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["secrets"], json!(["api_token"]));
    answers.push(body.to_string());
    answers.push(test("echo").await.unwrap().text().await.unwrap());
    let after = api.received.lock().unwrap()[seen_before..].join("\n");
    assert!(
        after.contains(NEW_TOKEN),
        "the call after the update: {after}"
    );
    assert!(
        !after.contains(OLD_TOKEN),
        "the old token was sent: {after}"
    );

    // A bad config: 400 naming the field; the old config still works.
    let resp = patch(
        "crm-a",
        json!({"config": {"base_url": kit.a.url(), "page_size": "ten"}}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let err = resp.text().await.unwrap();
    assert!(
        err.contains("config: ") && err.contains("/page_size"),
        "{err}"
    );
    let tested: Value = test("crm-a").await.unwrap().json().await.unwrap();
    assert_eq!(tested["ok"], true, "{tested}");

    // An unknown secret, given with a good config: 400 naming it, and the
    // config is not saved either.
    let resp = patch(
        "crm-a",
        json!({
            "config": {"base_url": kit.a.url(), "page_size": 7},
            "secrets": {"api_key": NEW_TOKEN},
        }),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let err = resp.text().await.unwrap();
    assert!(
        err.contains("secrets: ") && err.contains("`api_key`"),
        "{err}"
    );
    answers.push(err);
    let detail: Value = get("crm-a").await.unwrap().json().await.unwrap();
    assert_eq!(detail["config"]["page_size"], 10, "unchanged: {detail}");

    // An origin outside the install's approval: 400 naming it.
    let resp = patch(
        "crm-a",
        json!({"grants": {"http": ["https://*.evil.example"]}}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let err = resp.text().await.unwrap();
    assert!(
        err.contains("grants: ") && err.contains("https://*.evil.example is not covered"),
        "{err}"
    );

    // The request budget: a number, "unlimited", or null for the default.
    let resp = patch("crm-a", json!({"requests_per_minute": 0}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("requests_per_minute"));
    let resp = patch(
        "crm-a",
        json!({"requests_per_minute": "unlimited", "config": {"base_url": kit.a.url(), "page_size": 7}}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let detail: Value = resp.json().await.unwrap();
    assert_eq!(detail["grants"]["requests_per_minute"], 0, "{detail}");
    assert_eq!(detail["config"]["page_size"], 7, "{detail}");
    let resp = patch("crm-a", json!({"requests_per_minute": null}))
        .await
        .unwrap();
    let detail: Value = resp.json().await.unwrap();
    assert_eq!(
        detail["grants"].get("requests_per_minute"),
        None,
        "{detail}"
    );
    assert_eq!(detail["grants"]["private_http"], json!([kit.a.url()]));

    // A malformed secret is refused without its value coming back (serde
    // quotes the value it rejects), on update and on creation alike.
    let resp = patch("crm-a", json!({"secrets": UNSEEN})).await.unwrap();
    assert_eq!(resp.status(), 400);
    answers.push(resp.text().await.unwrap());
    let resp = patch("crm-a", json!({"secrets": [UNSEEN]})).await.unwrap();
    assert_eq!(resp.status(), 400);
    answers.push(resp.text().await.unwrap());
    let resp = http
        .post(format!("{url}/api/connections"))
        .bearer_auth(API_TOKEN)
        .json(&json!({
            "name": "crm-c", "plugin": CRM_PLUGIN, "environment": "sandbox",
            "config": {"base_url": kit.a.url()}, "secrets": UNSEEN,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err = resp.text().await.unwrap();
    assert!(err.contains("secrets"), "{err}");
    answers.push(err);

    let resp = patch("nope", json!({"requests_per_minute": 5}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = patch("crm-a", json!({})).await.unwrap();
    assert_eq!(resp.status(), 400);

    // Removing a connection two pipelines use.
    let delete = |path: &str| {
        http.delete(format!("{url}/api/connections/{path}"))
            .bearer_auth(API_TOKEN)
            .send()
    };
    let resp = delete("crm-a").await.unwrap();
    assert_eq!(resp.status(), 409);
    let err = resp.text().await.unwrap();
    assert!(
        err.contains("a-to-b, b-to-a") && err.contains("force=true"),
        "{err}"
    );
    assert!(kit.db.connection("crm-a").unwrap().is_some());
    let resp = delete("crm-a?force=true").await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(kit.db.connection("crm-a").unwrap().is_none());
    for name in ["a-to-b", "b-to-a"] {
        let row = kit.db.pipeline(name).unwrap().unwrap();
        assert!(row.paused, "{name}");
        let reason = row.paused_reason.unwrap_or_default();
        assert!(reason.contains("connection crm-a was removed"), "{reason}");
    }
    assert_eq!(delete("crm-a").await.unwrap().status(), 404);

    for text in &answers {
        assert!(
            !text.contains(NEW_TOKEN) && !text.contains(OLD_TOKEN) && !text.contains(UNSEEN),
            "{text}"
        );
    }
    let _ = stop.send(());
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_connections_origin_override_is_shown_and_checked_by_the_api() {
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 10).await;
    nexo_tests::synckit::install_shipped(
        &kit.registry,
        &kit.key,
        "hubspot",
        nexo_tests::programs::HUBSPOT,
    )
    .await;
    kit.connections
        .add(NewConnection {
            name: "hs".into(),
            plugin_id: "nexo/hubspot".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({}),
            secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(OLD_TOKEN))]),
            grants: ConnectionGrants {
                origin_overrides: BTreeMap::from([(
                    "https://api.hubapi.com".to_string(),
                    "http://127.0.0.1:9".to_string(),
                )]),
                ..Default::default()
            },
        })
        .unwrap();
    let app = app(&kit, Arc::new(SystemClock));
    kit.db
        .insert_token("admin", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    let (url, stop, handle) = serve(app, ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("{url}{path}"))
            .bearer_auth(API_TOKEN)
            .send()
    };
    let patch = |body: Value| {
        http.patch(format!("{url}/api/connections/hs"))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
    };
    let shown = json!({"https://api.hubapi.com:443": "http://127.0.0.1:9"});

    // Shown in the connection's view and in the list, never hidden.
    let view: Value = get("/api/connections/hs".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["origin_overrides"], shown, "{view}");
    assert_eq!(view["grants"]["origin_overrides"], shown, "{view}");
    let list: Value = get("/api/connections".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hs = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hs")
        .unwrap();
    assert_eq!(hs["origin_overrides"], shown, "{list}");

    // An origin the plugin does not declare: 400 naming the field and the
    // origins it may override; nothing changes.
    let resp = patch(json!({"origin_overrides": {"https://evil.example": "http://127.0.0.1:9"}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err = resp.text().await.unwrap();
    assert!(
        err.contains("origin_overrides: ") && err.contains("https://api.hubapi.com:443"),
        "{err}"
    );
    // Removed through the API: gone from the view.
    let resp = patch(json!({"remove_origin_overrides": ["https://api.hubapi.com"]}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let view: Value = get("/api/connections/hs".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["origin_overrides"], json!({}), "{view}");

    stop.send(()).unwrap();
    handle.await.unwrap();
}

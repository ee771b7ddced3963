//! A pipeline's webhook set to HubSpot's scheme, attacked and then fed by
//! the HubSpot-like sandbox's own webhooks: a wrong client secret, a
//! tampered body, a delivery signed for another pipeline's URL, a
//! timestamp older than 5 minutes, a replay, and each scheme's headers sent
//! to a pipeline of the other scheme are all refused and run nothing; the
//! sandbox's deliveries (signed by its code, not the host's) queue runs,
//! and a burst of changes makes a few runs, not one per change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nexo::serve::clock::SystemClock;
use nexo::serve::{ServeConfig, webhook, webhook_hubspot};
use nexo_sandbox::hubspot::webhooks::sign_v3;
use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
use nexo_tests::cli::until;
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{Kit, contents, pipeline};
use nexo_tests::tinycrm;
use serde_json::Value;

/// What it is, where it goes, its body, its headers, the status expected.
type Attack<'a> = (&'a str, String, &'a str, Vec<(&'static str, String)>, u16);

const CLIENT_SECRET: &str = "4e3b1a2c-9d8f-4c7e-b6a5-112233445566";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_replayed_and_cross_scheme_deliveries_run_nothing() {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    kit.apply(&pipeline("hs", "", "")).await;
    kit.apply(&pipeline("nx", "", "")).await;
    let app = app(&kit, Arc::new(SystemClock));
    webhook_hubspot::set_secret(kit.registry.db(), &app.sealer, "hs", CLIENT_SECRET).unwrap();
    let nexo_secret = webhook::rotate_secret(kit.registry.db(), &app.sealer, "nx").unwrap();
    let (url, stop, handle) = serve(app.clone(), ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let hs = format!("{url}/hooks/hs");
    let nx = format!("{url}/hooks/nx");
    let body = r#"[{"eventId":1,"subscriptionId":1,"portalId":62515,"appId":1160452,"occurredAt":1,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":7,"propertyName":"lastname","propertyValue":"X"}]"#;
    let post = |to: &str, body: &str, headers: Vec<(&'static str, String)>| {
        let mut req = http.post(to).body(body.to_string());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            (status, v["error"].as_str().unwrap_or_default().to_string())
        }
    };
    let hubspot_headers = |secret: &str, to: &str, body: &str, ts: i64| {
        vec![
            (
                "X-HubSpot-Signature-v3",
                sign_v3(secret, "POST", to, body, ts),
            ),
            ("X-HubSpot-Request-Timestamp", ts.to_string()),
        ]
    };

    let t = now_ms();
    let attacks: Vec<Attack> = vec![
        (
            "a wrong client secret",
            hs.clone(),
            body,
            hubspot_headers("not-the-secret", &hs, body, t),
            401,
        ),
        (
            "a tampered body",
            hs.clone(),
            r#"[{"eventId":1,"objectId":8}]"#,
            hubspot_headers(CLIENT_SECRET, &hs, body, t),
            401,
        ),
        (
            "signed for another pipeline's URL",
            hs.clone(),
            body,
            hubspot_headers(CLIENT_SECRET, &nx, body, t),
            401,
        ),
        (
            "a timestamp six minutes old",
            hs.clone(),
            body,
            hubspot_headers(CLIENT_SECRET, &hs, body, t - 360_000),
            401,
        ),
        (
            "the Nexo scheme's header to a HubSpot-scheme pipeline",
            hs.clone(),
            body,
            vec![(
                webhook::SIGNATURE_HEADER,
                webhook::sign_now(CLIENT_SECRET, body.as_bytes()),
            )],
            401,
        ),
        (
            "HubSpot's headers to a Nexo-scheme pipeline",
            nx.clone(),
            body,
            hubspot_headers(&nexo_secret, &nx, body, t),
            401,
        ),
        (
            "HubSpot's headers under the client secret to a Nexo-scheme pipeline",
            nx.clone(),
            body,
            hubspot_headers(CLIENT_SECRET, &nx, body, t),
            401,
        ),
    ];
    for (what, to, sent, headers, status) in attacks {
        let (got, error) = post(&to, sent, headers).await;
        assert_eq!(got, status, "{what}: {error}");
        let expected = if to == hs {
            "X-HubSpot-Signature-v3"
        } else {
            "X-Nexo-Signature"
        };
        assert!(
            error.contains(expected) || error.contains("seconds") || error.contains(" s "),
            "{what}: {error}"
        );
    }
    app.scheduler.idle().await;
    assert!(kit.runs("hs").is_empty(), "an attack ran hs");
    assert!(kit.runs("nx").is_empty(), "an attack ran nx");

    // The genuine delivery queues a run; the same delivery again is a
    // replay, refused, and runs nothing more.
    let genuine = hubspot_headers(CLIENT_SECRET, &hs, body, now_ms());
    let (got, error) = post(&hs, body, genuine.clone()).await;
    assert_eq!(got, 202, "{error}");
    until("the run of hs", || {
        kit.runs("hs").iter().any(|r| r.status == "succeeded")
    })
    .await;
    app.scheduler.idle().await;
    let (got, error) = post(&hs, body, genuine).await;
    assert_eq!(got, 409, "a replay: {error}");
    app.scheduler.idle().await;
    assert_eq!(kit.runs("hs").len(), 1, "the replay ran again");
    assert!(kit.runs("nx").is_empty());
    let _ = stop.send(());
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandboxs_webhooks_trigger_runs_and_a_burst_coalesces() {
    let kit = Kit::new(tinycrm::seed(5), Default::default(), 50).await;
    kit.apply(&pipeline("crm-hook", "", "")).await;
    let app = app(&kit, Arc::new(SystemClock));
    let hub = hubspot::start(HubSpotConfig {
        seed: SeedData::of_size(300, 9),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    webhook_hubspot::set_secret(
        kit.registry.db(),
        &app.sealer,
        "crm-hook",
        &hub.client_secret(),
    )
    .unwrap();
    let (url, stop, handle) = serve(app.clone(), ServeConfig::default()).await;
    hub.set_webhook_target(&format!("{url}/hooks/crm-hook"));
    hub.subscribe("contact.propertyChange", Some("lastname"))
        .unwrap();

    let contacts = hub.objects(ObjectType::Contacts);
    hub.edit(ObjectType::Contacts, contacts[0].id, &[("lastname", "One")])
        .unwrap();
    until("the first delivery's run", || {
        kit.runs("crm-hook").iter().any(|r| r.status == "succeeded")
    })
    .await;
    app.scheduler.idle().await;
    let before = kit.runs("crm-hook").len();

    // 300 changes as fast as the store takes them.
    for (i, c) in contacts.iter().enumerate() {
        hub.edit(
            ObjectType::Contacts,
            c.id,
            &[("lastname", &format!("L{i}"))],
        )
        .unwrap();
    }
    until("every event delivered", || {
        hub.webhook_counts().delivered_events > contacts.len() as u64
    })
    .await;
    until("the runs done", || {
        app.scheduler.in_flight() == 0 && app.scheduler.view("crm-hook").next_run.is_none()
    })
    .await;
    app.scheduler.idle().await;
    let counts = hub.webhook_counts();
    assert_eq!(counts.failed, 0, "{counts:?}");
    let runs = kit.runs("crm-hook").len() - before;
    assert!(
        (1..=4).contains(&runs),
        "{} deliveries made {runs} runs",
        counts.requests
    );
    assert_eq!(contents(&kit.a), contents(&kit.b));
    let _ = stop.send(());
    handle.await.unwrap();
}

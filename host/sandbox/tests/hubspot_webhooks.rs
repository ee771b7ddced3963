//! The HubSpot-like sandbox sends webhooks as HubSpot does for an app's
//! subscriptions, to a receiver on 127.0.0.1: set up through the webhooks
//! API, the right events for each subscription, batches of at most 100,
//! HubSpot's v3 signature (checked here with code of its own, as a
//! receiver would write it from HubSpot's documentation), and a retry with
//! the next `attemptNumber` after a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use nexo_sandbox::hubspot::{self, HubSpotConfig, ObjectType, SeedData};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Default)]
struct Received {
    /// (signature, timestamp, body) of each request.
    requests: Vec<(String, String, String)>,
    /// Requests to answer 500 before answering 200.
    fail: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn receive(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut r = r.lock().unwrap();
    r.requests.push((
        h("x-hubspot-signature-v3"),
        h("x-hubspot-request-timestamp"),
        String::from_utf8(body.to_vec()).unwrap(),
    ));
    if r.fail > 0 {
        r.fail -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receiver(fail: usize) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Received {
        fail,
        ..Received::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/crm", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hooks/crm", axum::routing::post(receive))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

/// HubSpot's documented check, written apart from the sandbox's code.
fn valid(secret: &str, url: &str, signature: &str, timestamp: &str, body: &str) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("POST{url}{body}{timestamp}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    expected == signature
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn events(r: &Shared) -> Vec<Value> {
    r.lock()
        .unwrap()
        .requests
        .iter()
        .flat_map(|(_, _, body)| serde_json::from_str::<Vec<Value>>(body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_receive_their_events_signed_the_v3_way_in_batches_of_100() {
    let hub = hubspot::start(HubSpotConfig {
        seed: SeedData::of_size(150, 3),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let (target, received) = receiver(0).await;
    let http = reqwest::Client::new();
    let api = format!("{}/webhooks/v3/{}", hub.url(), hub.app_id());
    let token = HubSpotConfig::default().token;

    // Set up as a developer does, through the webhooks API.
    let put = http
        .put(format!("{api}/settings"))
        .bearer_auth(&token)
        .json(&json!({"targetUrl": target, "throttling": {"maxConcurrentRequests": 10, "period": "SECONDLY"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut ids = Vec::new();
    for sub in [
        json!({"eventType": "contact.propertyChange", "propertyName": "lastname"}),
        json!({"eventType": "deal.creation"}),
        json!({"eventType": "deal.propertyChange", "propertyName": "dealstage"}),
    ] {
        let resp = http
            .post(format!("{api}/subscriptions"))
            .bearer_auth(&token)
            .json(&sub)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    let missing_property = http
        .post(format!("{api}/subscriptions"))
        .bearer_auth(&token)
        .json(&json!({"eventType": "contact.propertyChange"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_property.status(), 400);
    let listed: Value = http
        .get(format!("{api}/subscriptions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["results"].as_array().unwrap().len(), 3);

    // A change of a watched property, of an unwatched one, a new deal.
    let contact = hub.objects(ObjectType::Contacts)[0].id;
    hub.edit(ObjectType::Contacts, contact, &[("lastname", "Lovelace")])
        .unwrap();
    hub.edit(ObjectType::Contacts, contact, &[("city", "London")])
        .unwrap();
    let deal = hub
        .create(ObjectType::Deals, &[("dealname", "New"), ("amount", "10")])
        .unwrap();
    wait_for("two events", || events(&received).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = events(&received);
    assert_eq!(got.len(), 2, "{got:?}");
    let change = got
        .iter()
        .find(|e| e["subscriptionType"] == "contact.propertyChange")
        .unwrap();
    assert_eq!(change["objectId"], json!(contact));
    assert_eq!(change["propertyName"], "lastname");
    assert_eq!(change["propertyValue"], "Lovelace");
    assert_eq!(change["subscriptionId"], json!(ids[0]));
    assert_eq!(change["appId"], json!(hub.app_id()));
    assert_eq!(change["attemptNumber"], 0);
    assert!(change["occurredAt"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(change["portalId"].as_u64().is_some() && change["eventId"].as_u64().is_some());
    let created = got
        .iter()
        .find(|e| e["subscriptionType"] == "deal.creation")
        .unwrap();
    assert_eq!(created["objectId"], json!(deal.id));
    assert!(created.get("propertyName").is_none());

    // Signatures verify under the client secret, and only under it.
    let secret = hub.client_secret();
    for (sig, ts, body) in &received.lock().unwrap().requests {
        assert!(valid(&secret, &target, sig, ts, body), "{sig} {ts} {body}");
        assert!(!valid("another-secret", &target, sig, ts, body));
        let age = chrono::Utc::now().timestamp_millis() - ts.parse::<i64>().unwrap();
        assert!((0..60_000).contains(&age), "timestamp in ms, now: {age}");
    }

    // 250 changes at once: every event, at most 100 per request.
    let before = received.lock().unwrap().requests.len();
    let deals: Vec<u64> = hub
        .objects(ObjectType::Deals)
        .iter()
        .filter(|d| d.property("dealstage").as_deref() != Some("closedlost"))
        .map(|d| d.id)
        .take(250)
        .collect();
    assert!(deals.len() >= 50, "{}", deals.len());
    for id in &deals {
        hub.set_deal_stage(*id, "closedlost").unwrap();
    }
    let want = got.len() + deals.len();
    wait_for("the stage changes", || events(&received).len() >= want).await;
    let r = received.lock().unwrap();
    assert!(r.requests[before..].iter().all(|(_, _, body)| {
        let n = serde_json::from_str::<Vec<Value>>(body).unwrap().len();
        (1..=100).contains(&n)
    }));
    drop(r);
    let stages: Vec<Value> = events(&received)
        .into_iter()
        .filter(|e| e["propertyName"] == "dealstage")
        .collect();
    assert_eq!(stages.len(), deals.len());
    assert!(stages.iter().all(|e| e["propertyValue"] == "closedlost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_once_gets_the_retry_with_the_next_attempt_number() {
    let hub = hubspot::start(HubSpotConfig {
        seed: SeedData::of_size(5, 3),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    hub.set_webhook_retry_after(Duration::from_millis(50));
    let (target, received) = receiver(1).await;
    hub.set_webhook_target(&target);
    hub.subscribe("contact.propertyChange", Some("email"))
        .unwrap();
    let contact = hub.objects(ObjectType::Contacts)[0].id;
    hub.edit(
        ObjectType::Contacts,
        contact,
        &[("email", "ada@example.com")],
    )
    .unwrap();
    wait_for("the retry", || received.lock().unwrap().requests.len() >= 2).await;
    let got = events(&received);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["eventId"], got[1]["eventId"], "the same event again");
    assert_eq!(got[0]["attemptNumber"], 0);
    assert_eq!(got[1]["attemptNumber"], 1);
    let secret = hub.client_secret();
    for (sig, ts, body) in &received.lock().unwrap().requests {
        assert!(valid(&secret, &target, sig, ts, body));
    }
    wait_for("the counts", || hub.webhook_counts().delivered_events == 1).await;
    let counts = hub.webhook_counts();
    assert_eq!((counts.requests, counts.failed), (2, 1));
}

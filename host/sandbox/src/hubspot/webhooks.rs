//! Webhooks as HubSpot sends them for an app's subscriptions: the app's
//! settings (target URL, concurrency) and subscriptions
//! (`contact.propertyChange` on `lastname`, `deal.creation`, …) through an
//! API shaped like HubSpot's (`/webhooks/v3/{appId}/settings`,
//! `/webhooks/v3/{appId}/subscriptions`), and every change of the store
//! delivered promptly as a JSON array of at most 100 events, signed the v3
//! way (`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 under the app's client
//! secret of method + URI + body + timestamp, `X-HubSpot-Request-Timestamp`
//! in ms) and retried on failure with the next `attemptNumber`.
//!
//! The store keeps a journal of its changes once a subscription exists
//! (seeding a large store journals nothing); a dispatcher task drains it,
//! matches the changes against the active subscriptions and posts them.
//! HubSpot retries for a day; the sandbox retries [`MAX_ATTEMPTS`] times
//! within seconds, so tests see the retry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};

use super::api::{Answer, ApiError};
use super::store::{ObjectType, Store, iso};
use super::{App, HubSpotSandbox, lock, now_ms};

/// The header of the v3 signature.
pub const SIGNATURE_V3: &str = "X-HubSpot-Signature-v3";
/// The header of the signing time, ms since the epoch.
pub const TIMESTAMP: &str = "X-HubSpot-Request-Timestamp";
/// Events in one request at most (HubSpot's figure).
pub const MAX_BATCH: usize = 100;
/// Attempts of one delivery at most (HubSpot's figure).
pub const MAX_ATTEMPTS: u32 = 10;
/// HubSpot's answer time limit; a slower receiver counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The sandbox's portal (hub) id.
pub const PORTAL_ID: u64 = 62_515;
/// The sandbox's app id.
pub const APP_ID: u64 = 1_160_452;

/// One change of the store, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    ty: ObjectType,
    id: u64,
    kind: ChangeKind,
    at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChangeKind {
    Creation,
    Deletion,
    PropertyChange { name: String, value: String },
}

/// The changes not yet dispatched, and who to wake for them.
#[derive(Debug)]
pub(super) struct Journal {
    changes: Vec<Change>,
    wake: Arc<Notify>,
}

impl Journal {
    fn push(&mut self, change: Change) {
        self.changes.push(change);
        self.wake.notify_one();
    }

    /// An object was created.
    pub(super) fn created(&mut self, ty: ObjectType, id: u64, at_ms: i64) {
        let kind = ChangeKind::Creation;
        self.push(Change {
            ty,
            id,
            kind,
            at_ms,
        });
    }

    /// A property of an object took a new value (`""`: cleared).
    pub(super) fn changed(&mut self, ty: ObjectType, id: u64, name: &str, value: &str, at: i64) {
        let kind = ChangeKind::PropertyChange {
            name: name.to_string(),
            value: value.to_string(),
        };
        self.push(Change {
            ty,
            id,
            kind,
            at_ms: at,
        });
    }

    /// An object was archived.
    pub(super) fn archived(&mut self, ty: ObjectType, id: u64, at_ms: i64) {
        let kind = ChangeKind::Deletion;
        self.push(Change {
            ty,
            id,
            kind,
            at_ms,
        });
    }
}

/// One subscription of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its id (`subscriptionId` in events).
    pub id: u64,
    /// `contact.propertyChange`, `deal.creation`, …
    pub event_type: String,
    /// The property a `*.propertyChange` subscription watches.
    pub property_name: Option<String>,
    /// Inactive subscriptions send nothing.
    pub active: bool,
    created_ms: i64,
    updated_ms: i64,
}

impl Subscription {
    fn json(&self) -> Value {
        let mut v = json!({"id": self.id.to_string(), "eventType": self.event_type,
            "active": self.active, "createdAt": iso(self.created_ms), "updatedAt": iso(self.updated_ms)});
        if let Some(p) = &self.property_name {
            v["propertyName"] = json!(p);
        }
        v
    }

    /// The event type of `change` when this subscription wants it.
    fn wants(&self, change: &Change) -> bool {
        let Some((object, action)) = self.event_type.split_once('.') else {
            return false;
        };
        let object_matches = ObjectType::parse(object) == Some(change.ty);
        let action_matches = match (&change.kind, action) {
            (ChangeKind::Creation, "creation") | (ChangeKind::Deletion, "deletion") => true,
            (ChangeKind::PropertyChange { name, .. }, "propertyChange") => {
                self.property_name.as_deref() == Some(name.as_str())
            }
            _ => false,
        };
        self.active && object_matches && action_matches
    }
}

/// The app's webhook settings and what it has sent.
#[derive(Debug)]
pub(super) struct Webhooks {
    state: Mutex<Settings>,
    wake: Arc<Notify>,
    sent: AtomicU64,
    failed: AtomicU64,
    delivered_events: AtomicU64,
}

#[derive(Debug)]
struct Settings {
    client_secret: String,
    target_url: Option<String>,
    max_concurrent: usize,
    settings_ms: (i64, i64),
    subscriptions: Vec<Subscription>,
    next_subscription: u64,
    next_event: u64,
    retry_after: Duration,
    stopped: bool,
}

impl Webhooks {
    /// No settings, no subscriptions, a fresh random client secret.
    pub(super) fn new() -> Webhooks {
        let mut bytes = [0u8; 16];
        // Without randomness the secret is merely predictable: a sandbox.
        let _ = getrandom::fill(&mut bytes);
        let h = hex::encode(bytes);
        Webhooks {
            state: Mutex::new(Settings {
                client_secret: format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ),
                target_url: None,
                max_concurrent: 10,
                settings_ms: (0, 0),
                subscriptions: Vec::new(),
                next_subscription: 1,
                next_event: 1,
                retry_after: Duration::from_millis(200),
                stopped: false,
            }),
            wake: Arc::new(Notify::new()),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered_events: AtomicU64::new(0),
        }
    }

    /// Stop the dispatcher (the sandbox is dropped).
    pub(super) fn stop(&self) {
        lock(&self.state).stopped = true;
        self.wake.notify_one();
    }
}

/// Start the dispatcher of `app`'s webhooks; it ends once the app is gone
/// or stopped.
pub(super) fn spawn_dispatcher(app: &Arc<App>) {
    let weak = Arc::downgrade(app);
    let wake = app.webhooks.wake.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        let mut permits = Arc::new(Semaphore::new(10));
        let mut concurrency = 10;
        loop {
            wake.notified().await;
            let Some(app) = weak.upgrade() else { return };
            let changes = match lock(&app.store).journal.as_mut() {
                Some(j) => std::mem::take(&mut j.changes),
                None => Vec::new(),
            };
            let (batches, target, secret, max) = {
                let mut s = lock(&app.webhooks.state);
                if s.stopped {
                    return;
                }
                let events = events(&mut s, &changes);
                let batches: Vec<Vec<Value>> =
                    events.chunks(MAX_BATCH).map(<[Value]>::to_vec).collect();
                (
                    batches,
                    s.target_url.clone(),
                    s.client_secret.clone(),
                    s.max_concurrent,
                )
            };
            let Some(target) = target else { continue };
            if max != concurrency {
                concurrency = max;
                permits = Arc::new(Semaphore::new(max.max(1)));
            }
            for batch in batches {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let delivery = Delivery {
                    app: Arc::downgrade(&app),
                    http: http.clone(),
                    target: target.clone(),
                    secret: secret.clone(),
                    events: batch,
                };
                tokio::spawn(async move {
                    delivery.send(1).await;
                    drop(permit);
                });
            }
        }
    });
}

/// The events `changes` make for the active subscriptions, in order.
fn events(s: &mut Settings, changes: &[Change]) -> Vec<Value> {
    let mut out = Vec::new();
    for change in changes {
        for sub in s.subscriptions.iter().filter(|sub| sub.wants(change)) {
            let mut event = json!({
                "eventId": s.next_event,
                "subscriptionId": sub.id,
                "portalId": PORTAL_ID,
                "appId": APP_ID,
                "occurredAt": change.at_ms,
                "subscriptionType": sub.event_type,
                "attemptNumber": 0,
                "objectId": change.id,
                "changeSource": "CRM",
            });
            if let ChangeKind::PropertyChange { name, value } = &change.kind {
                event["propertyName"] = json!(name);
                event["propertyValue"] = json!(value);
            }
            s.next_event += 1;
            out.push(event);
        }
    }
    out
}

/// One request's events, on their way.
struct Delivery {
    app: Weak<App>,
    http: reqwest::Client,
    target: String,
    secret: String,
    events: Vec<Value>,
}

impl Delivery {
    /// Send as attempt `attempt` (1-based; `attemptNumber` is 0-based),
    /// retrying after a failure until [`MAX_ATTEMPTS`].
    async fn send(mut self, mut attempt: u32) {
        loop {
            for e in &mut self.events {
                e["attemptNumber"] = json!(attempt - 1);
            }
            let body = Value::Array(self.events.clone()).to_string();
            let timestamp = now_ms();
            let signature = sign_v3(&self.secret, "POST", &self.target, &body, timestamp);
            let answered = self
                .http
                .post(&self.target)
                .header("content-type", "application/json")
                .header(SIGNATURE_V3, signature)
                .header(TIMESTAMP, timestamp.to_string())
                .body(body)
                .send()
                .await;
            let Some(app) = self.app.upgrade() else {
                return;
            };
            let ok = matches!(&answered, Ok(r) if r.status().is_success());
            app.webhooks.sent.fetch_add(1, Ordering::Relaxed);
            if ok {
                app.webhooks
                    .delivered_events
                    .fetch_add(self.events.len() as u64, Ordering::Relaxed);
                return;
            }
            app.webhooks.failed.fetch_add(1, Ordering::Relaxed);
            let wait = lock(&app.webhooks.state).retry_after;
            drop(app);
            if attempt >= MAX_ATTEMPTS {
                tracing::warn!(target = %self.target, "webhook delivery dropped after {MAX_ATTEMPTS} attempts");
                return;
            }
            tokio::time::sleep(wait * 2u32.saturating_pow(attempt - 1).min(16)).await;
            attempt += 1;
        }
    }
}

/// HubSpot's v3 signature: base64 of the HMAC-SHA256 under `client_secret`
/// of `method + uri + body + timestamp`, where `uri` is the full URL with
/// the percent-encoded characters HubSpot decodes decoded.
pub fn sign_v3(client_secret: &str, method: &str, uri: &str, body: &str, timestamp: i64) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(client_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(method.as_bytes());
    mac.update(decode_uri(uri).as_bytes());
    mac.update(body.as_bytes());
    mac.update(timestamp.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URI as HubSpot signs it: these escapes decoded, others kept.
pub fn decode_uri(uri: &str) -> String {
    const DECODED: [(&str, &str); 12] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    'outer: while !rest.is_empty() {
        if rest.starts_with('%') && rest.len() >= 3 {
            for (from, to) in DECODED {
                if rest[..3].eq_ignore_ascii_case(from) {
                    out.push_str(to);
                    rest = &rest[3..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

// ---- the API --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsInput {
    target_url: String,
    #[serde(default)]
    throttling: Option<Throttling>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Throttling {
    max_concurrent_requests: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionInput {
    event_type: String,
    #[serde(default)]
    property_name: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Patch {
    active: bool,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::Validation {
        message: message.into(),
        errors: Vec::new(),
    }
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Some(body)))
}

fn settings_json(s: &Settings) -> Value {
    json!({"targetUrl": s.target_url, "throttling": {"maxConcurrentRequests": s.max_concurrent, "period": "SECONDLY"},
           "createdAt": iso(s.settings_ms.0), "updatedAt": iso(s.settings_ms.1)})
}

/// `/webhooks/v3/{appId}/…`: `rest` is what follows the app id.
pub(super) fn route(
    app: &App,
    store: &mut Store,
    method: &Method,
    app_id: &str,
    rest: &[&str],
    body: &[u8],
) -> Answer {
    if app_id != APP_ID.to_string() {
        return Err(ApiError::NotFound(format!("App {app_id} not found")));
    }
    let parse = |body: &[u8]| -> Result<Value, ApiError> {
        serde_json::from_slice(body).map_err(|e| bad(format!("Invalid input JSON: {e}")))
    };
    let mut s = lock(&app.webhooks.state);
    match (method, rest) {
        (&Method::GET, ["settings"]) => match s.target_url {
            Some(_) => ok(StatusCode::OK, settings_json(&s)),
            None => Err(ApiError::NotFound(format!(
                "No webhook settings for app {app_id}"
            ))),
        },
        (&Method::PUT, ["settings"]) => {
            let input: SettingsInput = serde_json::from_value(parse(body)?)
                .map_err(|e| bad(format!("Invalid input JSON: {e}")))?;
            let url = url::Url::parse(&input.target_url)
                .map_err(|e| bad(format!("targetUrl is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("targetUrl must be an http(s) URL"));
            }
            let now = now_ms();
            s.settings_ms = (
                if s.target_url.is_some() {
                    s.settings_ms.0
                } else {
                    now
                },
                now,
            );
            s.target_url = Some(input.target_url);
            if let Some(t) = input.throttling {
                s.max_concurrent = t.max_concurrent_requests.clamp(1, 100);
            }
            ok(StatusCode::OK, settings_json(&s))
        }
        (&Method::DELETE, ["settings"]) => {
            s.target_url = None;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (&Method::GET, ["subscriptions"]) => {
            let results: Vec<Value> = s.subscriptions.iter().map(Subscription::json).collect();
            ok(StatusCode::OK, json!({"results": results}))
        }
        (&Method::POST, ["subscriptions"]) => {
            let input: SubscriptionInput = serde_json::from_value(parse(body)?)
                .map_err(|e| bad(format!("Invalid input JSON: {e}")))?;
            let sub = subscribe(&mut s, store, &app.webhooks, input)?;
            ok(StatusCode::CREATED, sub.json())
        }
        (&Method::GET, ["subscriptions", id]) => {
            let sub = find(&mut s, id)?;
            ok(StatusCode::OK, sub.json())
        }
        (&Method::PATCH, ["subscriptions", id]) => {
            let patch: Patch = serde_json::from_value(parse(body)?)
                .map_err(|e| bad(format!("Invalid input JSON: {e}")))?;
            let sub = find(&mut s, id)?;
            sub.active = patch.active;
            sub.updated_ms = now_ms();
            ok(StatusCode::OK, sub.json())
        }
        (&Method::DELETE, ["subscriptions", id]) => {
            let id = find(&mut s, id)?.id;
            s.subscriptions.retain(|sub| sub.id != id);
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(ApiError::NotFound(format!(
            "No route for {method} /webhooks/v3/{app_id}/{}",
            rest.join("/")
        ))),
    }
}

fn find<'s>(s: &'s mut Settings, id: &str) -> Result<&'s mut Subscription, ApiError> {
    let id: Option<u64> = id.parse().ok();
    s.subscriptions
        .iter_mut()
        .find(|sub| Some(sub.id) == id)
        .ok_or_else(|| ApiError::NotFound("Subscription not found".into()))
}

fn subscribe(
    s: &mut Settings,
    store: &mut Store,
    hooks: &Webhooks,
    input: SubscriptionInput,
) -> Result<Subscription, ApiError> {
    let (object, action) = input.event_type.split_once('.').unwrap_or(("", ""));
    if !matches!(object, "contact" | "company" | "deal")
        || !matches!(action, "creation" | "deletion" | "propertyChange")
    {
        return Err(bad(format!(
            "Unknown event type {}: expected contact|company|deal . creation|deletion|propertyChange",
            input.event_type
        )));
    }
    if (action == "propertyChange") != input.property_name.is_some() {
        return Err(bad(
            "propertyName is required for a propertyChange subscription, and only for one",
        ));
    }
    if s.subscriptions
        .iter()
        .any(|sub| sub.event_type == input.event_type && sub.property_name == input.property_name)
    {
        return Err(bad(
            "A subscription for this event type and property exists",
        ));
    }
    let now = now_ms();
    let sub = Subscription {
        id: s.next_subscription,
        event_type: input.event_type,
        property_name: input.property_name,
        active: input.active,
        created_ms: now,
        updated_ms: now,
    };
    s.next_subscription += 1;
    s.subscriptions.push(sub.clone());
    // From now on the store journals its changes.
    store.journal.get_or_insert_with(|| Journal {
        changes: Vec::new(),
        wake: hooks.wake.clone(),
    });
    Ok(sub)
}

/// What the sandbox's webhooks have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryCounts {
    /// Requests sent (each attempt counts).
    pub requests: u64,
    /// Requests that failed (not answered 2xx in time).
    pub failed: u64,
    /// Events in requests answered 2xx.
    pub delivered_events: u64,
}

/// Webhooks from the test side, as the app's developer would set them up.
impl HubSpotSandbox {
    /// The app id webhooks are configured under.
    pub fn app_id(&self) -> u64 {
        APP_ID
    }

    /// The app's client secret, which signs its webhooks.
    pub fn client_secret(&self) -> String {
        lock(&self.app.webhooks.state).client_secret.clone()
    }

    /// Set the app's client secret (what a developer copies from the app).
    pub fn set_client_secret(&self, secret: &str) {
        lock(&self.app.webhooks.state).client_secret = secret.to_string();
    }

    /// Point the app's webhooks at `url` (`PUT …/settings`).
    pub fn set_webhook_target(&self, url: &str) {
        let now = now_ms();
        let mut s = lock(&self.app.webhooks.state);
        s.settings_ms = (now, now);
        s.target_url = Some(url.to_string());
    }

    /// How long the first retry waits (doubled each time, at most 16×).
    pub fn set_webhook_retry_after(&self, wait: Duration) {
        lock(&self.app.webhooks.state).retry_after = wait;
    }

    /// Subscribe the app to `event_type` (`contact.propertyChange` with
    /// `property`, `deal.creation` without); the subscription's id.
    pub fn subscribe(&self, event_type: &str, property: Option<&str>) -> Result<u64, String> {
        let mut store = lock(&self.app.store);
        let mut s = lock(&self.app.webhooks.state);
        let input = SubscriptionInput {
            event_type: event_type.to_string(),
            property_name: property.map(str::to_string),
            active: true,
        };
        subscribe(&mut s, &mut store, &self.app.webhooks, input)
            .map(|sub| sub.id)
            .map_err(|e| format!("{e:?}"))
    }

    /// What the webhooks have done so far.
    pub fn webhook_counts(&self) -> DeliveryCounts {
        let w = &self.app.webhooks;
        DeliveryCounts {
            requests: w.sent.load(Ordering::Relaxed),
            failed: w.failed.load(Ordering::Relaxed),
            delivered_events: w.delivered_events.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_is_signed_with_hubspots_escapes_decoded() {
        assert_eq!(
            decode_uri("https://h.test/a%3Ab%2Fc?x=%40%20%3b"),
            "https://h.test/a:b/c?x=@%20;"
        );
        let a = sign_v3("secret", "POST", "https://h.test/hook", "[]", 1);
        assert_eq!(a, sign_v3("secret", "POST", "https://h.test/hook", "[]", 1));
        assert_ne!(a, sign_v3("secret", "POST", "https://h.test/hook", "[]", 2));
        assert_ne!(a, sign_v3("other", "POST", "https://h.test/hook", "[]", 1));
        // 32 bytes in base64.
        assert_eq!(a.len(), 44);
    }

    #[test]
    fn a_subscription_wants_its_object_action_and_property_only() {
        let sub = Subscription {
            id: 1,
            event_type: "contact.propertyChange".into(),
            property_name: Some("lastname".into()),
            active: true,
            created_ms: 0,
            updated_ms: 0,
        };
        let change = |ty, kind| Change {
            ty,
            id: 7,
            kind,
            at_ms: 0,
        };
        let prop = |name: &str| ChangeKind::PropertyChange {
            name: name.into(),
            value: "x".into(),
        };
        assert!(sub.wants(&change(ObjectType::Contacts, prop("lastname"))));
        assert!(!sub.wants(&change(ObjectType::Contacts, prop("email"))));
        assert!(!sub.wants(&change(ObjectType::Deals, prop("lastname"))));
        assert!(!sub.wants(&change(ObjectType::Contacts, ChangeKind::Creation)));
        let off = Subscription {
            active: false,
            ..sub
        };
        assert!(!off.wants(&change(ObjectType::Contacts, prop("lastname"))));
    }
}

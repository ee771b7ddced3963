//! Origin overrides in the outbound HTTP capability, without Wasm in
//! between: a request to the logical origin (`https://api.vendor.test`) is
//! checked and credentialled as that origin and sent to the physical one (a
//! server on loopback, no private grant needed); the physical origin named
//! directly is refused; a redirect from the sandbox to anywhere but itself
//! is checked as any redirect is, and the echoed secret never reaches the
//! plugin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use nexo::sandbox::http::{HttpError, HttpSettings, Method, OutboundHttp, OutboundRequest};
use nexo::sandbox::overrides::Overrides;
use nexo::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy};
use nexo::sandbox::secrets::{BoundSecret, SecretSet, SecretValue};

const LOGICAL: &str = "https://api.vendor.test";
const TOKEN: &str = "override-token-7d41c0";

/// A server on 127.0.0.1 that answers every request with the
/// `Authorization` it got (as a careless sandbox might), keeps each one,
/// and redirects `/hop?to=URL`.
struct Echo {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.abort();
    }
}

async fn echo() -> Echo {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = axum::Router::new()
        .route(
            "/hop",
            axum::routing::get(|Query(q): Query<BTreeMap<String, String>>| async move {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, q.get("to").cloned().unwrap_or_default())],
                )
                    .into_response()
            }),
        )
        .fallback(move |headers: HeaderMap| {
            let keep = keep.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or_default().to_string())
                    .unwrap_or_default();
                keep.lock().unwrap().push(auth.clone());
                format!("you sent: {auth}")
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Echo { port, seen, stop }
}

/// A client for a plugin that declares only [`LOGICAL`] (its token bound
/// there), granted [`LOGICAL`] on public addresses only, with `overrides`.
fn client(overrides: &[(&str, String)]) -> OutboundHttp {
    let policy = OutboundPolicy::new(
        vec![OriginPattern::parse(LOGICAL).unwrap()],
        vec![HttpGrant::public(LOGICAL).unwrap()],
    );
    let mut set = SecretSet::default();
    set.insert(
        "token",
        BoundSecret {
            value: SecretValue::new(TOKEN),
            origins: vec![OriginPattern::parse(LOGICAL).unwrap()],
        },
    );
    let pairs: Vec<(String, String)> = overrides
        .iter()
        .map(|(a, b)| (a.to_string(), b.clone()))
        .collect();
    OutboundHttp::new(policy, set, HttpSettings::default())
        .unwrap()
        .with_overrides(Overrides::parse(pairs.iter().map(|(a, b)| (a, b))).unwrap())
        .unwrap()
}

fn get(url: String) -> OutboundRequest {
    OutboundRequest {
        method: Method::Get,
        url,
        headers: vec![("authorization".into(), "Bearer {{secret:token}}".into())],
        basic_auth: None,
        body: None,
        timeout_ms: None,
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn the_logical_origin_reaches_the_sandbox_on_loopback_with_its_secret() {
    let sandbox = echo().await;
    // A host name that resolves to loopback, not only a literal address.
    let physical = format!("http://localhost:{}", sandbox.port);
    let http = client(&[(LOGICAL, physical)]);
    let resp = http
        .send(get(format!("{LOGICAL}/v1/ping?x=1")), deadline())
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        sandbox.seen.lock().unwrap().clone(),
        vec![format!("Bearer {TOKEN}")],
        "the secret bound to the logical origin went to its override"
    );
    let body = String::from_utf8(resp.body).unwrap();
    assert!(
        !body.contains(TOKEN),
        "the echoed token is scrubbed: {body}"
    );
}

#[tokio::test]
async fn without_the_override_the_logical_origin_is_not_the_sandbox() {
    let sandbox = echo().await;
    let http = client(&[]);
    let err = http
        .send(get(format!("{LOGICAL}/v1/ping")), deadline())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionFailed(_)), "{err:?}");
    assert!(sandbox.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_plugin_naming_the_physical_origin_itself_is_refused() {
    let sandbox = echo().await;
    let physical = format!("http://127.0.0.1:{}", sandbox.port);
    let http = client(&[(LOGICAL, physical.clone())]);
    let err = http
        .send(get(format!("{physical}/v1/ping")), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::OriginNotAllowed(m) if m.contains("not declared")),
        "{err:?}"
    );
    assert!(sandbox.seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_redirect_to_another_loopback_port_carries_nothing_and_reaches_nothing() {
    let sandbox = echo().await;
    let other = echo().await;
    let physical = format!("http://127.0.0.1:{}", sandbox.port);
    let http = client(&[(LOGICAL, physical.clone())]);

    // To another port of loopback: checked as any redirect, and refused.
    let to = format!("http://127.0.0.1:{}/steal", other.port);
    let err = http
        .send(get(format!("{LOGICAL}/hop?to={to}")), deadline())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::RedirectNotAllowed(_)), "{err:?}");
    assert!(
        other.seen.lock().unwrap().is_empty(),
        "the other port got {:?}",
        other.seen.lock().unwrap()
    );

    // To the sandbox's own (physical) address: the logical origin again,
    // so the same-origin hop keeps its credentials.
    let to = format!("{physical}/back");
    let resp = http
        .send(get(format!("{LOGICAL}/hop?to={to}")), deadline())
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        sandbox.seen.lock().unwrap().clone(),
        vec![format!("Bearer {TOKEN}")]
    );
    let body = String::from_utf8(resp.body).unwrap();
    assert!(!body.contains(TOKEN), "{body}");
}

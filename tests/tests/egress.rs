//! Egress from the attacker's side: a hostile connector with a private
//! grant for one test server (port A) and a public grant for every origin
//! tries to reach a second server (port B) on the same host, to route its
//! request with headers of its own, and to make the host follow a
//! `Location` that is not a redirect. Both servers are real, on 127.0.0.1,
//! and record every request they see.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use nexo::sandbox::http::{HttpError, HttpSettings, Method, OutboundHttp, OutboundRequest};
use nexo::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy};
use nexo::sandbox::secrets::SecretSet;
use nexo::state::SandboxEvent;
use nexo::{ConnectorPlugin, Grants, GuestError, Limits, PluginError, PluginRef, Sandbox};
use nexo_tests::{load, loopback, programs};

/// One request as a [`Recorder`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    host: Option<String>,
    transfer_encoding: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A server that records every request. `/status/CODE?location=URL`
/// answers CODE with that `Location`; any other path answers 200.
struct Recorder {
    addr: SocketAddr,
    seen: Log,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Recorder {
    async fn start() -> Self {
        let seen = Log::default();
        let app = Router::new().fallback(answer).with_state(seen.clone());
        let (addr, tx) = loopback::serve(app).await;
        Recorder {
            addr,
            seen,
            shutdown: Some(tx),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn answer(
    State(seen): State<Log>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .map(|v: &header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        host: text(header::HOST),
        transfer_encoding: text(header::TRANSFER_ENCODING),
    });
    let status = uri
        .path()
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = Response::builder().status(status);
    if let Some(location) = query.get("location") {
        resp = resp.header(header::LOCATION, location);
    }
    resp.body(Body::empty()).unwrap()
}

/// The hostile connector with `grants`: it declares `http://*:*`.
async fn hostile(grants: Vec<HttpGrant>) -> ConnectorPlugin {
    let sandbox = Sandbox {
        plugin: PluginRef {
            id: "test/hostile".into(),
            version: "6.6.6".into(),
        },
        limits: Limits::default(),
        grants: Grants {
            http: grants,
            kv_bytes: 0,
        },
        secrets: BTreeMap::new(),
        credentials: Default::default(),
        kv: None,
    };
    ConnectorPlugin::open(&load(programs::HOSTILE), sandbox)
        .await
        .unwrap()
}

/// A private grant for `private` and a public grant for every http origin.
fn private_and_world(private: &str) -> Vec<HttpGrant> {
    vec![
        HttpGrant::private(private).unwrap(),
        HttpGrant::public("http://*:*").unwrap(),
    ]
}

/// The outcome of the hostile `http` stream: the status the plugin got
/// back, or the request's refusal.
#[derive(Debug)]
enum Outcome {
    Answered(String),
    Refused(GuestError, HttpError),
}

async fn attack(p: &ConnectorPlugin, url: &str, header: Option<(&str, &str)>) -> Outcome {
    let config = serde_json::json!({ "url": url, "header": header });
    let out = p.read(&config.to_string(), "http", None).await;
    match (out.result, out.events.as_slice()) {
        (Ok(page), []) => Outcome::Answered(page.records[0].payload.clone()),
        (Err(PluginError::Guest { error, .. }), [SandboxEvent::HttpRefused(refused)]) => {
            Outcome::Refused(error, refused.clone())
        }
        (result, events) => panic!("{url}: unexpected {result:?} with events {events:?}"),
    }
}

fn answered(outcome: Outcome) -> String {
    match outcome {
        Outcome::Answered(payload) => payload,
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_grant_reaches_its_own_port_and_no_other_on_the_host() {
    let a = Recorder::start().await;
    let b = Recorder::start().await;
    let (pa, pb) = (a.port(), b.port());
    // (private grant for A, the attack's URL for B on the same host)
    let cases = [
        // The grant's own spelling, another port: a port scan.
        (
            format!("http://127.0.0.1:{pa}"),
            format!("http://127.0.0.1:{pb}/"),
        ),
        (
            format!("http://localhost:{pa}"),
            format!("http://localhost:{pb}/"),
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{pa}"),
            format!("http://[::ffff:127.0.0.1]:{pb}/"),
        ),
        // Other spellings of the same host.
        (
            format!("http://127.0.0.1:{pa}"),
            format!("http://localhost:{pb}/"),
        ),
        (
            format!("http://127.0.0.1:{pa}"),
            format!("http://[::ffff:127.0.0.1]:{pb}/"),
        ),
        (
            format!("http://127.0.0.1:{pa}"),
            format!("http://2130706433:{pb}/"),
        ),
    ];
    for (grant, url) in &cases {
        let p = hostile(private_and_world(grant)).await;
        let own = format!("{grant}/own");
        assert!(
            answered(attack(&p, &own, None).await).contains("status 200"),
            "{own}"
        );
        match attack(&p, url, None).await {
            Outcome::Refused(GuestError::AccessDenied(_), HttpError::AddressNotAllowed(m)) => {
                assert!(m.contains("127.0.0.1"), "{url}: {m}");
            }
            other => panic!("{url} with a private grant for {grant}: {other:?}"),
        }
    }
    assert_eq!(a.paths().len(), cases.len(), "A was reached once per case");
    assert_eq!(b.seen(), vec![], "nothing reached B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_private_origin_to_another_port_is_refused() {
    let a = Recorder::start().await;
    let b = Recorder::start().await;
    let grant = format!("http://127.0.0.1:{}", a.port());
    let p = hostile(private_and_world(&grant)).await;
    for target in [
        format!("http://127.0.0.1:{}/secret", b.port()),
        format!("http://localhost:{}/secret", b.port()),
    ] {
        let url = format!("{grant}/status/302?location={target}");
        match attack(&p, &url, None).await {
            Outcome::Refused(GuestError::AccessDenied(_), HttpError::RedirectNotAllowed(m))
                if target.contains("127.0.0.1") =>
            {
                assert!(m.contains(&target[..target.len() - "/secret".len()]), "{m}");
            }
            // A name is refused by the resolver at connect time.
            Outcome::Refused(GuestError::AccessDenied(_), HttpError::AddressNotAllowed(m)) => {
                assert!(m.contains("localhost"), "{m}");
            }
            other => panic!("redirect to {target}: {other:?}"),
        }
    }
    assert_eq!(a.paths(), vec!["/status/302", "/status/302"]);
    assert_eq!(
        b.seen(),
        vec![],
        "the redirect's target was never requested"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_framing_headers_are_the_hosts() {
    let a = Recorder::start().await;
    let grant = format!("http://127.0.0.1:{}", a.port());
    let p = hostile(private_and_world(&grant)).await;
    for (name, value) in [
        ("Host", "admin.internal"),
        ("host", "127.0.0.1:22"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "0"),
        ("Connection", "upgrade"),
        ("X-Forwarded-Host", "admin.internal"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1;host=admin.internal"),
        ("Proxy-Authorization", "Basic YTpi"),
    ] {
        match attack(&p, &format!("{grant}/api"), Some((name, value))).await {
            Outcome::Refused(GuestError::Internal(_), HttpError::InvalidRequest(m)) => {
                assert!(m.contains(&format!("`{name}`")), "{name}: {m}");
                assert!(!m.contains(value), "{name}: the value is not echoed: {m}");
            }
            other => panic!("{name}: {value}: {other:?}"),
        }
    }
    assert_eq!(a.seen(), vec![], "no request was sent");
    // An ordinary header still goes through, and the host sets `Host`.
    let ok = attack(&p, &format!("{grant}/api"), Some(("X-Request-Id", "7"))).await;
    assert!(answered(ok).contains("status 200"));
    assert_eq!(
        a.seen(),
        vec![Seen {
            path: "/api".into(),
            host: Some(format!("127.0.0.1:{}", a.port())),
            transfer_encoding: None,
        }]
    );
}

/// Every routing and framing header, in any case, is refused by the
/// client itself (no Wasm in between); ordinary headers pass.
#[tokio::test]
async fn the_client_refuses_each_host_owned_header_and_passes_the_rest() {
    let a = Recorder::start().await;
    let grant = format!("http://127.0.0.1:{}", a.port());
    let policy = OutboundPolicy::new(
        vec![OriginPattern::parse("http://*:*").unwrap()],
        private_and_world(&grant),
    );
    let http = OutboundHttp::new(policy, SecretSet::default(), HttpSettings::default()).unwrap();
    let request = |name: &str| OutboundRequest {
        method: Method::Post,
        url: format!("{grant}/api"),
        headers: vec![(name.to_string(), "x".to_string())],
        basic_auth: None,
        body: Some(b"{}".to_vec()),
        timeout_ms: None,
    };
    let deadline = || Instant::now() + Duration::from_secs(10);
    for name in [
        "Host",
        "HOST",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Expect",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "x-forwarded-proto",
        "X-Real-IP",
        "Via",
    ] {
        match http.send(request(name), deadline()).await {
            Err(HttpError::InvalidRequest(m)) => assert!(m.contains(name), "{name}: {m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(a.seen(), vec![], "nothing was sent");
    for name in ["Content-Type", "Accept", "Authorization", "X-Request-Id"] {
        let resp = http.send(request(name), deadline()).await.unwrap();
        assert_eq!(resp.status, 200, "{name}");
    }
    assert_eq!(a.paths().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_redirect_statuses_are_followed() {
    let a = Recorder::start().await;
    let grant = format!("http://127.0.0.1:{}", a.port());
    let p = hostile(private_and_world(&grant)).await;
    for status in [300, 304, 305, 306] {
        let url = format!("{grant}/status/{status}?location=/target");
        let payload = answered(attack(&p, &url, None).await);
        assert!(
            payload.contains(&format!("status {status}")),
            "{status} came back as it was: {payload}"
        );
    }
    assert!(
        !a.paths().iter().any(|p| p == "/target"),
        "no Location of a non-redirect was requested: {:?}",
        a.paths()
    );
    for status in [301, 302, 303, 307, 308] {
        let url = format!("{grant}/status/{status}?location=/target");
        assert!(answered(attack(&p, &url, None).await).contains("status 200"));
    }
    let followed = a.paths().iter().filter(|p| *p == "/target").count();
    assert_eq!(followed, 5, "each redirect status was followed once");
}

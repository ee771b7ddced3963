//! Two servers on 127.0.0.1 for the secrets tests: an API that echoes every
//! request header back (in its body, its response headers, and encoded as
//! base64, hex and percent-encoding), answering `/401` with a body and a
//! `WWW-Authenticate` header quoting the `Authorization` it got, and
//! encoding its answer with `x-xor` when the request accepts it (a stand-in
//! for gzip, br or zstd: bytes the host cannot search), and redirecting
//! `/redirect` to a host named after the credential; and a
//! collector that records every request it receives, as an attacker's
//! drop box would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// A running server; stopped on drop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    /// Every request received, as text: request line, headers, body.
    pub received: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// All that was received, joined.
    pub fn received_text(&self) -> String {
        self.received.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn record(received: &Mutex<Vec<String>>, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
    let mut text = format!("{uri}\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    text.push_str(&String::from_utf8_lossy(body));
    received.lock().unwrap().push(text);
}

fn echo(uri: Uri, headers: HeaderMap) -> Response {
    let authorization = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if uri.path() == "/redirect" {
        // The credential as a host name: refused redirects are named in
        // the error the plugin gets.
        let host = authorization
            .trim_start_matches("Bearer ")
            .replace(['"', '/', '+'], "-");
        let mut resp = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("http://{host}.invalid/")) {
            resp.headers_mut().insert("location", v);
        }
        return resp;
    }
    if uri.path() == "/401" {
        let body = serde_json::json!({
            "error": "invalid_token",
            "message": format!("the credential `{authorization}` is not valid"),
        });
        let mut resp = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "Bearer error=\"invalid_token\", got=\"{authorization}\""
        )) {
            resp.headers_mut().insert("www-authenticate", v);
        }
        return resp;
    }
    let mut echoed = serde_json::Map::new();
    let mut out = HeaderMap::new();
    for (k, v) in &headers {
        let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
        // Every encoding an API might answer with.
        let b64 = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
        let hex: String = v.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let pct: String = v
            .as_bytes()
            .iter()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (*b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        echoed.insert(
            k.as_str().to_string(),
            serde_json::json!({"value": text, "base64": b64, "hex": hex, "url": pct}),
        );
        if let Ok(name) = HeaderName::from_bytes(format!("x-echo-{k}").as_bytes()) {
            out.append(name, v.clone());
        }
    }
    let body = serde_json::json!({ "path": uri.to_string(), "headers": echoed });
    let accepts_xor = headers
        .get("accept-encoding")
        .is_some_and(|v| v.as_bytes().windows(5).any(|w| w == b"x-xor"));
    if accepts_xor {
        out.insert("content-encoding", HeaderValue::from_static("x-xor"));
        let encoded: Vec<u8> = body.to_string().bytes().map(|b| b ^ 0x55).collect();
        return (StatusCode::OK, out, encoded).into_response();
    }
    (StatusCode::OK, out, body.to_string()).into_response()
}

async fn serve(app: Router, received: Arc<Mutex<Vec<String>>>) -> Server {
    let (addr, tx) = crate::loopback::serve(app).await;
    Server {
        addr,
        received,
        stop: Some(tx),
    }
}

/// A server that records every request, then answers it with `answer`.
async fn start_recording(answer: fn(Uri, HeaderMap) -> Response) -> Server {
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let log = log.clone();
        async move {
            record(&log, &uri, &headers, &body);
            answer(uri, headers)
        }
    });
    serve(app, received).await
}

/// The echoing API.
pub async fn start_echo() -> Server {
    start_recording(echo).await
}

/// The collector: records every request, answers 204.
pub async fn start_collector() -> Server {
    start_recording(|_, _| StatusCode::NO_CONTENT.into_response()).await
}

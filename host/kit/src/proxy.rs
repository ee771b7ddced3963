//! The proxy the kit puts between a plugin and each system it was granted:
//! the plugin's origin is overridden to the proxy (on 127.0.0.1, a free
//! port), which forwards every request to the system and back — unless a
//! fault is armed, which it injects into the next matching request once.
//! It sees every request the plugin's sandbox let out, so the kit knows
//! which origins the plugin used, and it can record the exchanges (secret
//! values redacted) and later answer from the recording with the system
//! stopped.
//!
//! One request per connection (`Connection: close`), bodies by
//! `Content-Length` — what the host's client sends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use url::Url;

/// Largest request head the proxy reads.
const MAX_HEAD: usize = 64 << 10;
/// Largest request body the proxy reads.
const MAX_BODY: usize = 64 << 20;
/// How long a slow answer waits.
pub const SLOW: Duration = Duration::from_millis(1_500);

/// A failure the proxy injects once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After: 1`.
    TooManyRequests,
    /// `500 Internal Server Error`.
    ServerError,
    /// `503 Service Unavailable` with `Retry-After: 1`.
    Unavailable,
    /// The connection is closed without an answer; nothing reaches the
    /// system.
    Dropped,
    /// The request reaches the system, which acts on it; its answer is
    /// lost (the connection is closed instead).
    LostAnswer,
    /// The answer comes, [`SLOW`] late.
    Slow,
}

impl Fault {
    /// Its name in check names (`read-429`).
    pub fn label(self) -> &'static str {
        match self {
            Fault::TooManyRequests => "429",
            Fault::ServerError => "500",
            Fault::Unavailable => "503",
            Fault::Dropped => "dropped-connection",
            Fault::LostAnswer => "lost-answer",
            Fault::Slow => "slow-answer",
        }
    }
}

/// Which requests an armed fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// The next request.
    Any,
    /// The next request that changes data (not GET, HEAD or OPTIONS).
    Writes,
}

/// One request and its answer, as recorded (secret values redacted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// The plugin's (logical) origin.
    pub origin: String,
    /// The method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The request body as text (empty when none).
    pub body: String,
    /// The answer's status.
    pub status: u16,
    /// The answer's headers (hop-by-hop ones left out).
    pub headers: Vec<(String, String)>,
    /// The answer's body: text, or base64 when `binary`.
    pub response: String,
    /// Whether `response` is base64.
    #[serde(default)]
    pub binary: bool,
}

/// Where the proxy's answers come from.
#[derive(Debug)]
enum Upstream {
    /// The system at this base URL (recording when asked).
    Live { base: Url, client: reqwest::Client },
    /// The recording, each exchange answered once, in order.
    Replay { used: Vec<bool> },
}

#[derive(Debug)]
struct Shared {
    origin: String,
    upstream: Upstream,
    armed: Option<(Fault, Only)>,
    fired: Vec<Fault>,
    exchanges: Vec<Exchange>,
    record: bool,
    secrets: Vec<(String, String)>,
    /// Names of the secrets whose value requests carried.
    sent: std::collections::BTreeSet<String>,
}

/// A running proxy for one origin; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No port on 127.0.0.1.
    #[error("cannot listen on 127.0.0.1 for the kit's proxy: {0}")]
    Listen(std::io::Error),
    /// The client for the system.
    #[error("cannot build the HTTP client for {origin}: {source}")]
    Client {
        /// The system's origin.
        origin: String,
        /// Why.
        source: reqwest::Error,
    },
}

impl Proxy {
    /// A proxy for the plugin's `origin`, forwarding to `upstream` (the
    /// system's base URL), recording when `record`. `secrets` (name, value)
    /// are redacted from what it records.
    pub async fn live(
        origin: &str,
        upstream: Url,
        record: bool,
        secrets: Vec<(String, String)>,
    ) -> Result<Proxy, ProxyError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|source| ProxyError::Client {
                origin: origin.to_string(),
                source,
            })?;
        Self::start(Shared {
            origin: origin.to_string(),
            upstream: Upstream::Live {
                base: upstream,
                client,
            },
            armed: None,
            fired: Vec::new(),
            exchanges: Vec::new(),
            record,
            secrets,
            sent: Default::default(),
        })
        .await
    }

    /// A proxy for `origin` answering from `exchanges` (those of this
    /// origin), with no system behind it.
    pub async fn replay(
        origin: &str,
        exchanges: Vec<Exchange>,
        secrets: Vec<(String, String)>,
    ) -> Result<Proxy, ProxyError> {
        let used = vec![false; exchanges.len()];
        Self::start(Shared {
            origin: origin.to_string(),
            upstream: Upstream::Replay { used },
            armed: None,
            fired: Vec::new(),
            exchanges,
            record: false,
            secrets,
            sent: Default::default(),
        })
        .await
    }

    async fn start(shared: Shared) -> Result<Proxy, ProxyError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ProxyError::Listen)?;
        let addr = listener.local_addr().map_err(ProxyError::Listen)?;
        let shared = Arc::new(Mutex::new(shared));
        let requests = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let shared = shared.clone();
            let requests = requests.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let shared = shared.clone();
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream, &shared, &requests).await {
                            tracing::debug!(error = %e, "kit proxy: connection ended");
                        }
                    });
                }
            }
        });
        Ok(Proxy {
            addr,
            shared,
            requests,
            task,
        })
    }

    /// Where the plugin's origin is overridden to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Injects `fault` into the next request `only` matches (once).
    pub fn arm(&self, fault: Fault, only: Only) {
        self.lock().armed = Some((fault, only));
    }

    /// Disarms a fault that did not fire; whether one fired since the
    /// last call.
    pub fn disarm(&self) -> bool {
        let mut s = self.lock();
        s.armed = None;
        !std::mem::take(&mut s.fired).is_empty()
    }

    /// Names of the secrets whose value a request carried (in a header,
    /// basic auth, the URL or the body).
    pub fn secrets_sent(&self) -> std::collections::BTreeSet<String> {
        self.lock().sent.clone()
    }

    /// The exchanges recorded (live) so far.
    pub fn recorded(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    /// Recorded exchanges no request asked for (replay).
    pub fn unused(&self) -> usize {
        let s = self.lock();
        match &s.upstream {
            Upstream::Replay { used } => used.iter().filter(|u| !**u).count(),
            Upstream::Live { .. } => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One parsed request.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One answer to send.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn serve(
    mut stream: TcpStream,
    shared: &Mutex<Shared>,
    requests: &AtomicU64,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let fault = {
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let carried = carried(&req, &s.secrets);
        s.sent.extend(carried);
        let applies = match s.armed {
            Some((_, Only::Any)) => true,
            Some((_, Only::Writes)) => !matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS"),
            None => false,
        };
        if applies {
            let fault = s.armed.take().map(|(f, _)| f);
            if let Some(f) = fault {
                s.fired.push(f);
            }
            fault
        } else {
            None
        }
    };
    let injected = |status: u16, retry: bool| Answer {
        status,
        headers: {
            let mut h = vec![("content-type".to_string(), "application/json".to_string())];
            if retry {
                h.push(("retry-after".into(), "1".into()));
            }
            h
        },
        body: br#"{"error":"injected by nexo plugin test"}"#.to_vec(),
    };
    let answer = match fault {
        Some(Fault::TooManyRequests) => injected(429, true),
        Some(Fault::ServerError) => injected(500, false),
        Some(Fault::Unavailable) => injected(503, true),
        Some(Fault::Dropped) => return Ok(()),
        Some(Fault::LostAnswer) => {
            let _ = forward(shared, &req).await;
            return Ok(());
        }
        Some(Fault::Slow) => {
            tokio::time::sleep(SLOW).await;
            forward(shared, &req).await
        }
        None => forward(shared, &req).await,
    };
    write_answer(&mut stream, &answer).await
}

/// The answer of the system (or of the recording) to `req`.
async fn forward(shared: &Mutex<Shared>, req: &Request) -> Answer {
    let live = {
        let s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        match &s.upstream {
            Upstream::Live { base, client } => Some((base.clone(), client.clone())),
            Upstream::Replay { .. } => None,
        }
    };
    let Some((base, client)) = live else {
        return replay(shared, req);
    };
    let answer = match send(&client, &base, req).await {
        Ok(a) => a,
        Err(e) => {
            // The system could not be reached: the plugin sees a closed
            // connection would be truer, but a 502 names the cause.
            tracing::warn!(error = %e, "kit proxy: the system did not answer");
            Answer {
                status: 502,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: format!("nexo plugin test: the system did not answer: {e}").into_bytes(),
            }
        }
    };
    let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
    if s.record {
        let redact = |text: &str| redact(text, &s.secrets);
        let (response, binary) = match std::str::from_utf8(&answer.body) {
            Ok(t) => (redact(t), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&answer.body),
                true,
            ),
        };
        let exchange = Exchange {
            origin: s.origin.clone(),
            method: req.method.clone(),
            target: redact(&req.target),
            body: redact(&String::from_utf8_lossy(&req.body)),
            status: answer.status,
            headers: answer
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), redact(v)))
                .collect(),
            response,
            binary,
        };
        s.exchanges.push(exchange);
    }
    answer
}

async fn send(client: &reqwest::Client, base: &Url, req: &Request) -> Result<Answer, String> {
    let url = base.join(&req.target).map_err(|e| e.to_string())?;
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = client.request(method, url);
    for (k, v) in &req.headers {
        if !hop_by_hop(k)
            && !k.eq_ignore_ascii_case("host")
            && !k.eq_ignore_ascii_case("accept-encoding")
        {
            builder = builder.header(k.as_str(), v.as_str());
        }
    }
    if !req.body.is_empty() {
        builder = builder.body(req.body.clone());
    }
    let resp = builder.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| !hop_by_hop(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = resp.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The recorded answer to `req`: the first unused exchange with the same
/// method, target and body, else the first unused with the same method and
/// path; a 599 naming the request when there is none.
fn replay(shared: &Mutex<Shared>, req: &Request) -> Answer {
    let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let Shared {
        upstream,
        exchanges,
        secrets,
        ..
    } = &mut *s;
    let Upstream::Replay { used } = upstream else {
        return missing(req);
    };
    // The recording has `[redacted:NAME]` where a secret went out; the
    // replay's stand-in values read the same.
    let target = redact(&req.target, secrets);
    let body = redact(&String::from_utf8_lossy(&req.body), secrets);
    let path = |t: &str| t.split('?').next().unwrap_or_default().to_string();
    let free = |i: &usize| !used[*i];
    let exact = (0..exchanges.len()).filter(free).find(|&i| {
        let e = &exchanges[i];
        e.method == req.method && e.target == target && e.body == body
    });
    let found = exact.or_else(|| {
        (0..exchanges.len()).filter(free).find(|&i| {
            exchanges[i].method == req.method && path(&exchanges[i].target) == path(&target)
        })
    });
    let Some(i) = found else {
        return missing(req);
    };
    used[i] = true;
    let e = &exchanges[i];
    let body = if e.binary {
        base64::engine::general_purpose::STANDARD
            .decode(&e.response)
            .unwrap_or_default()
    } else {
        e.response.clone().into_bytes()
    };
    Answer {
        status: e.status,
        headers: e.headers.clone(),
        body,
    }
}

fn missing(req: &Request) -> Answer {
    Answer {
        status: 599,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: format!(
            "nexo plugin test --replay: no recorded answer for {} {}; record the fixtures again with --record",
            req.method, req.target
        )
        .into_bytes(),
    }
}

/// Names of the secrets whose value `req` carries: in a header (a basic
/// auth header decoded), the target or the body.
fn carried(req: &Request, secrets: &[(String, String)]) -> Vec<String> {
    let mut texts: Vec<String> = vec![
        req.target.clone(),
        String::from_utf8_lossy(&req.body).into_owned(),
    ];
    for (k, v) in &req.headers {
        texts.push(v.clone());
        if k.eq_ignore_ascii_case("authorization")
            && let Some(b) = v.strip_prefix("Basic ")
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim())
        {
            texts.push(String::from_utf8_lossy(&raw).into_owned());
        }
    }
    secrets
        .iter()
        .filter(|(_, value)| !value.is_empty() && texts.iter().any(|t| t.contains(value.as_str())))
        .map(|(name, _)| name.clone())
        .collect()
}

/// `text` with every secret value replaced by `[redacted:NAME]`.
pub fn redact(text: &str, secrets: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in secrets {
        if !value.is_empty() {
            out = out.replace(value.as_str(), &format!("[redacted:{name}]"));
        }
    }
    out
}

fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed
        .parse(&buf[..head_end])
        .map_err(|e| std::io::Error::other(format!("bad request head: {e}")))?;
    let method = parsed.method.unwrap_or("GET").to_string();
    let target = parsed.path.unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(std::io::Error::other("request body too large"));
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
    }))
}

async fn write_answer(stream: &mut TcpStream, a: &Answer) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", a.status, reason(a.status));
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        a.body.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&a.body).await?;
    stream.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The exchanges of a recording, by origin.
pub fn by_origin(exchanges: Vec<Exchange>) -> BTreeMap<String, Vec<Exchange>> {
    let mut map: BTreeMap<String, Vec<Exchange>> = BTreeMap::new();
    for e in exchanges {
        map.entry(e.origin.clone()).or_default().push(e);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(target: &str, response: &str) -> Exchange {
        Exchange {
            origin: "https://api.example.com:443".into(),
            method: "GET".into(),
            target: target.into(),
            body: String::new(),
            status: 200,
            headers: Vec::new(),
            response: response.into(),
            binary: false,
        }
    }

    fn get(target: &str) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn a_replay_matches_requests_whose_secret_was_redacted_from_the_recording() {
        let recorded = vec![
            exchange("/a?key=[redacted:key]", "first"),
            exchange("/a?key=[redacted:key]&page=2", "second"),
        ];
        let shared = Mutex::new(Shared {
            origin: "https://api.example.com:443".into(),
            upstream: Upstream::Replay {
                used: vec![false; recorded.len()],
            },
            armed: None,
            fired: Vec::new(),
            exchanges: recorded,
            record: false,
            secrets: vec![("key".into(), "stand-in-value".into())],
            sent: Default::default(),
        });
        // Asked out of order: the exact match wins over the first free one.
        let a = replay(&shared, &get("/a?key=stand-in-value&page=2"));
        assert_eq!(a.body, b"second");
        let a = replay(&shared, &get("/a?key=stand-in-value"));
        assert_eq!(a.body, b"first");
        // Each answer once; then the request is named.
        let a = replay(&shared, &get("/a?key=stand-in-value"));
        assert_eq!(a.status, 599);
        assert!(String::from_utf8_lossy(&a.body).contains("GET /a?key="));
    }

    #[test]
    fn secrets_are_found_in_headers_basic_auth_and_bodies() {
        let secrets = vec![
            ("token".to_string(), "tok-123456".to_string()),
            ("password".to_string(), "pw-abcdef".to_string()),
            ("unused".to_string(), "never-sent".to_string()),
        ];
        let basic = base64::engine::general_purpose::STANDARD.encode("ada:pw-abcdef");
        let req = Request {
            method: "POST".into(),
            target: "/x".into(),
            headers: vec![
                ("x-api-key".into(), "tok-123456".into()),
                ("Authorization".into(), format!("Basic {basic}")),
            ],
            body: b"{}".to_vec(),
        };
        assert_eq!(carried(&req, &secrets), ["token", "password"]);
    }
}

//! TinyCRM: a small, stateful REST CRM served on 127.0.0.1, the system the
//! example connector talks to. It also serves the hostile endpoints tests
//! need: redirects, oversized bodies, rate limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// Shared server state.
#[derive(Debug, Default)]
pub struct Crm {
    /// Contacts by id.
    pub contacts: BTreeMap<String, Value>,
    /// Requests seen, as `METHOD path?query` (for assertions).
    pub requests: Vec<String>,
    /// Authorization headers seen.
    pub auth_headers: Vec<String>,
    next_id: u64,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    /// Its address.
    pub addr: SocketAddr,
    /// Its state.
    pub crm: Arc<Mutex<Crm>>,
    /// The token it accepts.
    pub token: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

type Shared = (Arc<Mutex<Crm>>, Arc<String>);

/// `n` generated contacts, updated one second apart (some sharing a time).
pub fn seed(n: usize) -> BTreeMap<String, Value> {
    (1..=n)
        .map(|i| {
            let id = format!("c{i:04}");
            let second = (i / 2) % 60; // pairs share a timestamp: cursor ties
            let minute = i / 120;
            let v = json!({
                "id": id,
                "first_name": format!("Ada{i}"),
                "last_name": "Lovelace",
                "email": format!("ada{i}@example.com"),
                "company": if i % 3 == 0 { Value::Null } else { json!(format!("Engines {i} Ltd")) },
                "phone": "+44 20 7946 0000",
                "lifecycle_stage": if i % 2 == 0 { "customer" } else { "lead" },
                "country": "gb",
                "city": "London",
                "updated_at": format!("2026-01-01T00:{minute:02}:{second:02}Z"),
            });
            (id, v)
        })
        .collect()
}

/// Start a TinyCRM with `contacts`, accepting bearer `token`.
pub async fn start(contacts: BTreeMap<String, Value>, token: &str) -> Server {
    let crm = Arc::new(Mutex::new(Crm {
        next_id: contacts.len() as u64 + 1,
        contacts,
        ..Crm::default()
    }));
    let state: Shared = (crm.clone(), Arc::new(token.to_string()));
    let app = Router::new()
        .route("/api/ping", get(ping))
        .route("/api/contacts", get(list).post(create))
        .route("/api/contacts/{id}", get(fetch).put(update).delete(remove))
        .route("/redirect", get(redirect))
        .route("/big", get(big))
        .route("/limited", get(limited))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Server {
        addr,
        crm,
        token: token.to_string(),
        shutdown: Some(tx),
    }
}

/// Records the request; `false` when the bearer token is wrong.
fn authorized(state: &Shared, headers: &HeaderMap, what: String) -> bool {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut crm = state.0.lock().unwrap();
    crm.requests.push(what);
    crm.auth_headers.push(auth.clone());
    auth == format!("Bearer {}", state.1)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "bad token"})),
    )
        .into_response()
}

async fn ping(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers, "GET /api/ping".into()) {
        return unauthorized();
    }
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    updated_after: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

async fn list(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if !authorized(
        &s,
        &headers,
        format!(
            "GET /api/contacts after={:?} token={:?}",
            q.updated_after, q.page_token
        ),
    ) {
        return unauthorized();
    }
    let crm = s.0.lock().unwrap();
    // Inclusive bound: records at the cursor value come back and the
    // client's tie set filters them, as many real APIs require.
    let mut rows: Vec<&Value> = crm
        .contacts
        .values()
        .filter(|c| {
            q.updated_after
                .as_deref()
                .is_none_or(|a| c["updated_at"].as_str().unwrap_or("") >= a)
        })
        .collect();
    rows.sort_by(|a, b| {
        (a["updated_at"].as_str(), a["id"].as_str())
            .cmp(&(b["updated_at"].as_str(), b["id"].as_str()))
    });
    let offset: usize = q
        .page_token
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|v| (*v).clone())
        .collect();
    let next = (offset + limit < rows.len()).then(|| (offset + limit).to_string());
    Json(json!({"results": page, "next_page_token": next})).into_response()
}

async fn fetch(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&s, &headers, format!("GET /api/contacts/{id}")) {
        return unauthorized();
    }
    match s.0.lock().unwrap().contacts.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such contact"})),
        )
            .into_response(),
    }
}

fn invalid(body: &Value) -> Option<Response> {
    let email = body.get("email").and_then(Value::as_str).unwrap_or("");
    (!email.contains('@')).then(|| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "email is invalid", "field": "email"})),
        )
            .into_response()
    })
}

async fn create(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(mut body): Json<Value>,
) -> Response {
    if !authorized(&s, &headers, "POST /api/contacts".into()) {
        return unauthorized();
    }
    if let Some(r) = invalid(&body) {
        return r;
    }
    let mut crm = s.0.lock().unwrap();
    let id = format!("c{:04}", crm.next_id);
    crm.next_id += 1;
    body["id"] = json!(id);
    body["updated_at"] = json!("2026-06-01T00:00:00Z");
    crm.contacts.insert(id, body.clone());
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(mut body): Json<Value>,
) -> Response {
    if !authorized(&s, &headers, format!("PUT /api/contacts/{id}")) {
        return unauthorized();
    }
    if let Some(r) = invalid(&body) {
        return r;
    }
    let mut crm = s.0.lock().unwrap();
    body["id"] = json!(id);
    body["updated_at"] = json!("2026-06-01T00:00:00Z");
    crm.contacts.insert(id, body.clone());
    Json(body).into_response()
}

async fn remove(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&s, &headers, format!("DELETE /api/contacts/{id}")) {
        return unauthorized();
    }
    s.0.lock().unwrap().contacts.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct RedirectQuery {
    to: String,
}

async fn redirect(State(s): State<Shared>, Query(q): Query<RedirectQuery>) -> Response {
    s.0.lock()
        .unwrap()
        .requests
        .push(format!("GET /redirect to={}", q.to));
    (StatusCode::FOUND, [(header::LOCATION, q.to)]).into_response()
}

#[derive(Deserialize)]
struct BigQuery {
    bytes: usize,
}

async fn big(Query(q): Query<BigQuery>) -> Response {
    vec![b'x'; q.bytes].into_response()
}

async fn limited(State(s): State<Shared>) -> Response {
    let mut crm = s.0.lock().unwrap();
    crm.requests.push("GET /limited".into());
    let n = crm.requests.iter().filter(|r| *r == "GET /limited").count();
    if n <= 1 {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "slow down",
        )
            .into_response()
    } else {
        Json(json!({"ok": true, "attempt": n})).into_response()
    }
}

//! TinyCRM: a small, stateful REST CRM served on 127.0.0.1, the system the
//! example connector talks to and the sync engine's tests sync between. It
//! behaves like a serious API (server-owned `updated_at`, idempotent creates,
//! deletes with tombstones, keyset paging) and can be told to fail the ways
//! real ones do. It also serves the hostile endpoints tests need: redirects,
//! oversized bodies, rate limits.
//!
//! The API:
//! - `GET /api/ping`
//! - `GET /api/contacts?updated_after=T&limit=N&page_token=P`: contacts and
//!   tombstones (`{"id", "deleted": true, "updated_at"}`) in one stream
//!   ordered by (`updated_at`, `id`), `updated_after` inclusive; answers
//!   `{"results": [...], "next_page_token": "..."|null}`. The page token is
//!   opaque to clients (keyset: it names the last row served).
//! - `POST /api/contacts` (header `Idempotency-Key` optional): 201 with the
//!   new contact, or 200 with the contact already created for that key.
//! - `GET|PUT|DELETE /api/contacts/{id}`: 404 for an unknown (or deleted) id;
//!   PUT replaces the contact.
//!
//! POST and PUT validate the e-mail (422); `id` and `updated_at` in bodies
//! are ignored. All of it needs `Authorization: Bearer <token>`.

mod api;
mod clock;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};

use clock::Clock;

/// Shared server state. Tests read it, and set the fault injection fields,
/// through [`Server::crm`]; the lock is never held across an await.
#[derive(Debug, Default)]
pub struct Crm {
    /// Contacts by id. Writing here directly bypasses the clock; prefer
    /// [`Server::edit`], [`Server::insert`] and [`Server::delete`].
    pub contacts: BTreeMap<String, Value>,
    /// Deleted contacts: id → `updated_at` of the delete.
    pub tombstones: BTreeMap<String, String>,
    /// Requests seen, as `METHOD path` plus what matters to assertions (the
    /// list query, a create's `key=` idempotency key).
    pub requests: Vec<String>,
    /// Authorization headers seen.
    pub auth_headers: Vec<String>,
    /// Contacts created through `POST /api/contacts`. A replayed idempotency
    /// key creates nothing and is not counted, nor is [`Server::insert`].
    pub creates: usize,
    /// The next this many POST/PUT requests answer 500 without applying
    /// (500, not 503: the host's HTTP client retries 503 by itself).
    pub fail_writes: usize,
    /// The next this many POST/PUT requests answer 422 without applying, as
    /// a system does when it refuses a record for a while (a locked period,
    /// a missing reference that appears later).
    pub reject_writes: usize,
    /// The next this many successful POST/PUT requests apply the write, then
    /// wait [`Crm::stall`] before answering: a client with a shorter timeout
    /// loses the answer of a write that happened.
    pub apply_then_stall: usize,
    /// How long a stalled answer waits.
    pub stall: Duration,
    /// Added to every POST, PUT and DELETE before it is handled. Keep it
    /// below the client's request timeout: a client that gives up during
    /// this wait may or may not see its write applied (the server may drop
    /// the request with the connection); lose answers with
    /// [`Crm::apply_then_stall`] instead.
    pub write_latency: Duration,
    /// Idempotency key → the contact as first created for it.
    idempotency: BTreeMap<String, Value>,
    clock: Clock,
    next_id: u64,
}

impl Crm {
    /// A fresh id, never used by a contact or a tombstone.
    fn new_id(&mut self) -> String {
        loop {
            self.next_id += 1;
            let id = format!("c{:04}", self.next_id);
            if !self.contacts.contains_key(&id) && !self.tombstones.contains_key(&id) {
                return id;
            }
        }
    }

    /// Create a contact from `body` (its `id`/`updated_at` are ignored).
    fn create(&mut self, mut body: Map<String, Value>) -> Value {
        let id = self.new_id();
        body.insert("id".into(), json!(id));
        body.insert("updated_at".into(), json!(self.clock.tick()));
        let contact = Value::Object(body);
        self.contacts.insert(id, contact.clone());
        contact
    }

    /// Replace contact `id` by `body`; `None` when there is no such contact.
    fn replace(&mut self, id: &str, mut body: Map<String, Value>) -> Option<Value> {
        if !self.contacts.contains_key(id) {
            return None;
        }
        body.insert("id".into(), json!(id));
        body.insert("updated_at".into(), json!(self.clock.tick()));
        let contact = Value::Object(body);
        self.contacts.insert(id.to_string(), contact.clone());
        Some(contact)
    }

    /// Delete contact `id`, leaving a tombstone; its stamp, or `None` when
    /// there is no such contact.
    fn remove(&mut self, id: &str) -> Option<String> {
        self.contacts.remove(id)?;
        let stamp = self.clock.tick();
        self.tombstones.insert(id.to_string(), stamp.clone());
        Some(stamp)
    }

    /// Contacts and tombstones at or after `after`, ordered by
    /// (`updated_at`, `id`).
    fn changes(&self, after: Option<&str>) -> Vec<Value> {
        let tombstones = self
            .tombstones
            .iter()
            .map(|(id, at)| json!({"id": id, "deleted": true, "updated_at": at}));
        let mut rows: Vec<Value> = self
            .contacts
            .values()
            .cloned()
            .chain(tombstones)
            .filter(|c| after.is_none_or(|a| c["updated_at"].as_str().unwrap_or("") >= a))
            .collect();
        rows.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        rows
    }
}

/// The (`updated_at`, `id`) a change stream is ordered and paged by.
fn sort_key(v: &Value) -> (&str, &str) {
    (
        v["updated_at"].as_str().unwrap_or(""),
        v["id"].as_str().unwrap_or(""),
    )
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

    /// All contacts (not the deleted ones), ordered by id.
    pub fn contacts(&self) -> Vec<Value> {
        self.crm
            .lock()
            .unwrap()
            .contacts
            .values()
            .cloned()
            .collect()
    }

    /// One contact, if it exists.
    pub fn contact(&self, id: &str) -> Option<Value> {
        self.crm.lock().unwrap().contacts.get(id).cloned()
    }

    /// Change one field of contact `id` as a user would in the CRM's UI,
    /// which stamps a new `updated_at` (returned). Panics on an unknown id.
    pub fn edit(&self, id: &str, field: &str, value: impl Into<Value>) -> String {
        assert!(
            field != "id" && field != "updated_at",
            "TinyCRM owns `{field}`"
        );
        let mut crm = self.crm.lock().unwrap();
        let stamp = crm.clock.tick();
        let contact = crm
            .contacts
            .get_mut(id)
            .unwrap_or_else(|| panic!("no contact {id} to edit"));
        contact[field] = value.into();
        contact["updated_at"] = json!(stamp);
        stamp
    }

    /// Delete contact `id` as a user would, leaving a tombstone; returns its
    /// `updated_at`. Panics on an unknown id.
    pub fn delete(&self, id: &str) -> String {
        self.crm
            .lock()
            .unwrap()
            .remove(id)
            .unwrap_or_else(|| panic!("no contact {id} to delete"))
    }

    /// Create a contact as a user would (its `id` and `updated_at` are
    /// ignored); returns the new id. Not counted in [`Crm::creates`].
    pub fn insert(&self, contact: Value) -> String {
        let Value::Object(body) = contact else {
            panic!("a contact is a JSON object, not {contact}")
        };
        let created = self.crm.lock().unwrap().create(body);
        created["id"].as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

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

/// Start a TinyCRM with `contacts`, accepting bearer `token`. Its clock
/// stamps wall time (milliseconds), always after the newest seeded contact.
pub async fn start(contacts: BTreeMap<String, Value>, token: &str) -> Server {
    let clock = Clock::after(contacts.values().filter_map(|c| c["updated_at"].as_str()));
    let crm = Arc::new(Mutex::new(Crm {
        next_id: contacts.len() as u64,
        contacts,
        clock,
        ..Crm::default()
    }));
    let state: api::Shared = (crm.clone(), Arc::new(token.to_string()));
    let app = Router::new()
        .route("/api/ping", get(api::ping))
        .route("/api/contacts", get(api::list).post(api::create))
        .route(
            "/api/contacts/{id}",
            get(api::fetch).put(api::update).delete(api::remove),
        )
        .route("/redirect", get(api::redirect))
        .route("/big", get(api::big))
        .route("/limited", get(api::limited))
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

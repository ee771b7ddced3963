//! TinyCRM: a small, stateful REST CRM served on 127.0.0.1, the system the
//! example connector talks to and the sync engine's tests sync between. It
//! behaves like a serious API (server-owned `updated_at`, idempotent creates,
//! deletes with tombstones, keyset paging, a batch endpoint for bulk loads)
//! and can be told to fail the ways real ones do. It also serves the hostile
//! endpoints tests need: redirects, oversized bodies, rate limits.
//!
//! The API:
//! - `GET /api/ping`
//! - `GET /api/contacts?updated_after=T&limit=N&page_token=P`: contacts and
//!   tombstones (`{"id", "deleted": true, "updated_at"}`) in one stream
//!   ordered by (`updated_at`, `id`), `updated_after` inclusive, `limit`
//!   1–5000 (default 100); answers
//!   `{"results": [...], "next_page_token": "..."|null}`. The page token is
//!   opaque to clients (keyset: it names the last row served).
//! - `POST /api/contacts` (header `Idempotency-Key` optional): 201 with the
//!   new contact, or 200 with the contact already created for that key.
//! - `GET|PUT|DELETE /api/contacts/{id}`: 404 for an unknown (or deleted) id;
//!   PUT replaces the contact.
//! - `POST /api/contacts/batch` with `{"inputs": [{"key", "id", "delete",
//!   "properties"}, ...]}` (at most 5000 inputs, else 400): creates (no
//!   `id`; `key` is the idempotency key), updates (`id`) and deletes (`id`
//!   and `"delete": true`) in one request, applied in order with the single
//!   endpoints' semantics. Answers 200 with `{"results": [{"status", "id",
//!   "error"?, "contact"?}, ...]}`, one per input in order: 201 created,
//!   200 updated, deleted (also when already gone) or replayed (a create
//!   whose `key` was seen: nothing is created, and `contact` is the contact
//!   as it is now so that the client can bring it up to date), 404 unknown
//!   id, 422 invalid contact. The fault knobs apply once per request.
//!
//! Writes validate the e-mail (422); `id` and `updated_at` in bodies are
//! ignored. All of it needs `Authorization: Bearer <token>`.

mod api;
mod bulk;
mod clock;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::{Bound, Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use clock::Clock;

/// Shared server state. Tests read it, and set the fault injection fields,
/// through [`Server::crm`]; the lock is never held across an await.
#[derive(Debug, Default)]
pub struct Crm {
    /// Contacts by id. Writing here directly bypasses the clock; prefer
    /// [`Server::edit`], [`Server::insert`] and [`Server::delete`].
    pub contacts: Watched<BTreeMap<String, Value>>,
    /// Deleted contacts: id → `updated_at` of the delete.
    pub tombstones: Watched<BTreeMap<String, String>>,
    /// Requests seen, as `METHOD path` plus what matters to assertions (the
    /// list query, a create's `key=` idempotency key, a batch's `inputs=`
    /// count).
    pub requests: Vec<String>,
    /// Authorization headers seen.
    pub auth_headers: Vec<String>,
    /// Contacts created through `POST /api/contacts` or the batch endpoint.
    /// A replayed idempotency key creates nothing and is not counted, nor is
    /// [`Server::insert`].
    pub creates: usize,
    /// The next this many POST/PUT requests (a batch is one) answer 500
    /// without applying (500, not 503: the host's HTTP client retries 503
    /// by itself).
    pub fail_writes: usize,
    /// The next this many POST/PUT requests (a batch is one) answer 422
    /// without applying, as a system does when it refuses a record for a
    /// while (a locked period, a missing reference that appears later).
    pub reject_writes: usize,
    /// The next this many successful POST/PUT requests (a batch is one)
    /// apply the write, then wait [`Crm::stall`] before answering: a client
    /// with a shorter timeout loses the answer of a write that happened.
    pub apply_then_stall: usize,
    /// How long a stalled answer waits.
    pub stall: Duration,
    /// Added to every POST, PUT and DELETE (and once to a batch) before it
    /// is handled. Keep it below the client's request timeout: a client
    /// that gives up during this wait may or may not see its write applied
    /// (the server may drop the request with the connection); lose answers
    /// with [`Crm::apply_then_stall`] instead.
    pub write_latency: Duration,
    /// Once, right after serving the first page of a list that has more:
    /// edit that page's first contact (its `city`), as a person would
    /// between two page requests. Keyset paging then serves it again on a
    /// later page of the same pass.
    pub edit_after_first_page: bool,
    /// Idempotency key → the id of the contact created for it.
    idempotency: HashMap<String, String>,
    /// Deleted contacts as they were last, so that a replayed key still
    /// answers with its contact.
    removed: HashMap<String, Value>,
    /// Every contact and tombstone as (`updated_at`, `id`), kept in step
    /// with each write (and rebuilt after direct ones): the change stream's
    /// order, so that a page is a range scan (O(log n + page)) rather than
    /// a sort of everything.
    index: BTreeSet<(String, String)>,
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

    /// Create a contact from `body` (its `id`/`updated_at` are ignored);
    /// returns the new id.
    fn create(&mut self, mut body: Map<String, Value>) -> String {
        let id = self.new_id();
        let stamp = self.clock.tick();
        body.insert("id".into(), json!(id));
        body.insert("updated_at".into(), json!(stamp));
        self.index.insert((stamp, id.clone()));
        self.contacts.inner.insert(id.clone(), Value::Object(body));
        id
    }

    /// A create through the API: counted in [`Crm::creates`] and, with an
    /// idempotency `key`, remembered under it; returns the new id.
    fn create_counted(&mut self, body: Map<String, Value>, key: Option<String>) -> String {
        let id = self.create(body);
        self.creates += 1;
        if let Some(key) = key {
            self.idempotency.insert(key, id.clone());
        }
        id
    }

    /// The contact created for idempotency `key`, as it is now (or as it
    /// was when deleted); `None` for a key never seen.
    fn replay(&self, key: &str) -> Option<Value> {
        let id = self.idempotency.get(key)?;
        self.contacts.get(id).or(self.removed.get(id)).cloned()
    }

    /// Replace contact `id` by `body`; `false` when there is no such
    /// contact.
    fn replace(&mut self, id: &str, mut body: Map<String, Value>) -> bool {
        let Some(contact) = self.contacts.inner.get_mut(id) else {
            return false;
        };
        let stamp = self.clock.tick();
        body.insert("id".into(), json!(id));
        body.insert("updated_at".into(), json!(stamp));
        let before = std::mem::replace(contact, Value::Object(body));
        self.index.remove(&(stamp_of(before), id.to_string()));
        self.index.insert((stamp, id.to_string()));
        true
    }

    /// Set one field of contact `id`, as a user editing it; the new stamp,
    /// or `None` when there is no such contact.
    fn edit(&mut self, id: &str, field: &str, value: Value) -> Option<String> {
        let contact = self.contacts.inner.get_mut(id)?;
        let stamp = self.clock.tick();
        let before = contact["updated_at"].as_str().unwrap_or("").to_string();
        contact[field] = value;
        contact["updated_at"] = json!(stamp);
        self.index.remove(&(before, id.to_string()));
        self.index.insert((stamp.clone(), id.to_string()));
        Some(stamp)
    }

    /// Delete contact `id`, leaving a tombstone; its stamp, or `None` when
    /// there is no such contact.
    fn remove(&mut self, id: &str) -> Option<String> {
        let contact = self.contacts.inner.remove(id)?;
        let before = contact["updated_at"].as_str().unwrap_or("").to_string();
        self.index.remove(&(before, id.to_string()));
        self.removed.insert(id.to_string(), contact);
        let stamp = self.clock.tick();
        if let Some(older) = self.tombstones.inner.insert(id.to_string(), stamp.clone()) {
            self.index.remove(&(older, id.to_string()));
        }
        self.index.insert((stamp.clone(), id.to_string()));
        Some(stamp)
    }

    /// Rebuild the change index from the contacts and tombstones.
    fn reindex(&mut self) {
        self.contacts.touched = false;
        self.tombstones.touched = false;
        let contacts = self
            .contacts
            .iter()
            .map(|(id, c)| (c["updated_at"].as_str().unwrap_or(""), id));
        let tombstones = self.tombstones.iter().map(|(id, at)| (at.as_str(), id));
        self.index = contacts
            .chain(tombstones)
            .map(|(at, id)| (at.to_string(), id.clone()))
            .collect();
    }

    /// One page of the change stream: rows at or after `after` (inclusive)
    /// and strictly after the row `from` (the keyset page token), at most
    /// `limit` of them, and whether more follow.
    fn changes(
        &mut self,
        after: Option<&str>,
        from: Option<(&str, &str)>,
        limit: usize,
    ) -> (Vec<Change<'_>>, bool) {
        // Tests change contacts behind the API's back.
        if self.contacts.touched || self.tombstones.touched {
            self.reindex();
        }
        let after = after.unwrap_or("");
        // ("T", "") sorts before every row stamped T: the inclusive floor.
        let start = match from {
            Some((at, id)) if (at, id) >= (after, "") => {
                Bound::Excluded((at.to_string(), id.to_string()))
            }
            _ => Bound::Included((after.to_string(), String::new())),
        };
        let mut rows = self
            .index
            .range((start, Bound::Unbounded))
            .filter_map(|(at, id)| self.change(at, id));
        let page: Vec<Change<'_>> = rows.by_ref().take(limit).collect();
        let more = rows.next().is_some();
        (page, more)
    }

    /// The row an index entry stands for; `None` for a stale entry (which
    /// only a bug in keeping the index can leave).
    fn change<'a>(&'a self, at: &'a str, id: &'a str) -> Option<Change<'a>> {
        let contact = self.contacts.get(id);
        if let Some(c) = contact.filter(|c| c["updated_at"].as_str().unwrap_or("") == at) {
            return Some(Change {
                id,
                updated_at: at,
                contact: Some(c),
            });
        }
        (self.tombstones.get(id).map(String::as_str) == Some(at)).then_some(Change {
            id,
            updated_at: at,
            contact: None,
        })
    }
}

/// A collection tests may change directly: any mutable use (through
/// `DerefMut`) is noticed, and the change index is rebuilt before the next
/// page is served. The server's own writes, which keep the index in step,
/// go to `inner`.
#[derive(Debug, Default)]
pub struct Watched<T> {
    inner: T,
    touched: bool,
}

impl<T> From<T> for Watched<T> {
    fn from(inner: T) -> Self {
        Watched {
            inner,
            touched: true,
        }
    }
}

impl<T> Deref for Watched<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Watched<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.touched = true;
        &mut self.inner
    }
}

/// The `updated_at` of a contact being replaced, without copying it.
fn stamp_of(contact: Value) -> String {
    match contact {
        Value::Object(mut c) => match c.remove("updated_at") {
            Some(Value::String(at)) => at,
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// One row of the change stream, borrowed from the state so that a page is
/// serialised without copying the contacts: a contact, or a tombstone
/// (`{"id", "deleted": true, "updated_at"}`).
#[derive(Debug)]
struct Change<'a> {
    id: &'a str,
    updated_at: &'a str,
    contact: Option<&'a Value>,
}

impl Change<'_> {
    /// The keyset page token naming this row.
    fn token(&self) -> String {
        format!("{}|{}", self.updated_at, self.id)
    }
}

impl Serialize for Change<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(contact) = self.contact {
            return contact.serialize(serializer);
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("id", self.id)?;
        map.serialize_entry("deleted", &true)?;
        map.serialize_entry("updated_at", self.updated_at)?;
        map.end()
    }
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
        self.crm
            .lock()
            .unwrap()
            .edit(id, field, value.into())
            .unwrap_or_else(|| panic!("no contact {id} to edit"))
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
        self.crm.lock().unwrap().create(body)
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
        contacts: contacts.into(),
        clock,
        ..Crm::default()
    }));
    let state: api::Shared = (crm.clone(), Arc::new(token.to_string()));
    let app = Router::new()
        .route("/api/ping", get(api::ping))
        .route("/api/contacts", get(api::list).post(api::create))
        // A static segment wins over `{id}`, so `batch` is never read as an
        // id (ids are `c` and digits anyway).
        .route(
            "/api/contacts/batch",
            // Up to 5000 contacts with custom fields: above axum's 2 MiB default.
            post(bulk::batch).layer(DefaultBodyLimit::max(bulk::MAX_BODY_BYTES)),
        )
        .route(
            "/api/contacts/{id}",
            get(api::fetch).put(api::update).delete(api::remove),
        )
        .route("/redirect", get(api::redirect))
        .route("/big", get(api::big))
        .route("/limited", get(api::limited))
        .with_state(state);
    let (addr, tx) = crate::loopback::serve(app).await;
    Server {
        addr,
        crm,
        token: token.to_string(),
        shutdown: Some(tx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the change stream, page by page, as (updated_at, id,
    /// deleted).
    fn read(crm: &mut Crm, after: Option<&str>, limit: usize) -> Vec<(String, String, bool)> {
        let mut rows = Vec::new();
        let mut token: Option<(String, String)> = None;
        loop {
            let from = token.as_ref().map(|(a, i)| (a.as_str(), i.as_str()));
            let (page, more) = crm.changes(after, from, limit);
            assert!(page.len() <= limit);
            rows.extend(page.iter().map(|c| {
                (
                    c.updated_at.to_string(),
                    c.id.to_string(),
                    c.contact.is_none(),
                )
            }));
            token = page
                .last()
                .map(|c| (c.updated_at.to_string(), c.id.to_string()));
            if !more {
                return rows;
            }
        }
    }

    #[test]
    fn pages_follow_updated_at_then_id_through_every_kind_of_write() {
        let mut crm = Crm {
            contacts: seed(50).into(),
            ..Crm::default()
        };
        crm.edit("c0003", "city", json!("Paris"));
        crm.remove("c0010");
        let made = crm.create_counted(
            json!({"email": "a@b.test"}).as_object().unwrap().clone(),
            None,
        );
        let body = json!({"email": "x@y.test"}).as_object().unwrap().clone();
        assert!(crm.replace("c0001", body));

        // What the stream must be: everything, sorted, no index involved.
        let mut expected: Vec<(String, String, bool)> = crm
            .contacts
            .iter()
            .map(|(id, c)| {
                (
                    c["updated_at"].as_str().unwrap().to_string(),
                    id.clone(),
                    false,
                )
            })
            .chain(
                crm.tombstones
                    .iter()
                    .map(|(id, at)| (at.clone(), id.clone(), true)),
            )
            .collect();
        expected.sort();
        for limit in [1, 3, 7, 5000] {
            assert_eq!(read(&mut crm, None, limit), expected, "limit {limit}");
        }
        let tail = &expected[expected.len() - 4..];
        assert_eq!(tail[0].1, "c0003");
        assert_eq!(tail[1], (tail[1].0.clone(), "c0010".into(), true));
        assert_eq!(tail[2].1, made);
        assert_eq!(tail[3].1, "c0001");

        // `updated_after` is inclusive, ties included.
        let from = expected[10].0.clone();
        let since: Vec<_> = expected.iter().filter(|r| r.0 >= from).cloned().collect();
        assert_eq!(read(&mut crm, Some(&from), 4), since);
    }

    #[test]
    fn contacts_changed_behind_the_api_are_served_as_they_are() {
        let mut crm = Crm {
            contacts: seed(5).into(),
            ..Crm::default()
        };
        assert_eq!(read(&mut crm, None, 2).len(), 5);
        crm.contacts.pop_first();
        crm.contacts.get_mut("c0002").unwrap()["updated_at"] = json!("2030-01-01T00:00:00Z");
        let ids: Vec<String> = read(&mut crm, None, 2).into_iter().map(|r| r.1).collect();
        assert_eq!(ids, ["c0003", "c0004", "c0005", "c0002"]);
        assert!(!crm.contacts.touched, "indexed again once");
    }
}

//! Example Nexo connector for a small REST CRM ("TinyCRM"), written only with
//! `nexo-sdk`. It shows the vendor's whole job: a config type, a spec,
//! `check`, `discover`, incremental `read` with a cursor, paging and deletes,
//! and idempotent `write` with per-record outcomes.
//!
//! The API it talks to (bearer token auth):
//! - `GET /api/ping`;
//! - `GET /api/contacts?updated_after=T&limit=N&page_token=P` answering
//!   `{"results": [...], "next_page_token": "..."|null}`, where a result is a
//!   contact or a tombstone `{"id", "deleted": true, "updated_at"}`, ordered
//!   by (`updated_at`, `id`); `updated_at` is stamped by the server;
//! - `POST /api/contacts` with an optional `Idempotency-Key` header (201, or
//!   200 with the contact already created for that key);
//! - `PUT /api/contacts/{id}` (replace) and `DELETE /api/contacts/{id}`;
//! - `POST /api/contacts/batch` (with `bulk` on): many creates, updates and
//!   deletes in one request, each with a result of its own (module `bulk`).
//!
//! `read` turns tombstones into delete records, so deletions sync too.
//!
//! `write` follows the host's write-batch protocol: a record's `id` is the
//! TinyCRM id, or empty when the contact must be created; its `cursor` is the
//! idempotency key, sent with every create so that a create whose answer was
//! lost (timeout) and is retried does not make a duplicate. The outcomes:
//! - upsert without id → `POST` → `created(new id)`; when TinyCRM
//!   recognises the key (the same contact, a create whose answer was lost)
//!   → `unchanged(id)`, or `updated(id)` once a contact whose content
//!   differs from the record's is brought up to date with a `PUT` (the host
//!   counts both as matched, not created);
//! - upsert with id → `PUT` → `updated(id)`; a contact that no longer exists
//!   → `failed(rejected)`;
//! - delete with id → `DELETE` → `deleted(id)`, also when already gone;
//! - a record TinyCRM refuses (400/404/409/422) → `failed(rejected)` for that
//!   record only; anything else (auth, timeout, 5xx, 429) ends the call with
//!   an error, and the host retries the batch with the same keys.
//!
//! With `bulk` the outcomes are the same, but the batch travels in requests
//! of up to 1000 records, and an error answer to a whole request (5xx, 429,
//! auth, or a 4xx) ends the call with that error.

mod bulk;
mod changes;

use nexo_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use changes::ChangePage;

/// Configuration of a TinyCRM connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the CRM, e.g. `https://crm.example.com`.
    pub base_url: String,
    /// Records per page (1-5000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Timeout of each request to TinyCRM in milliseconds (at least 1); the
    /// host's own limit applies when absent, and caps it when larger.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Write through TinyCRM's batch endpoint, up to 1000 records per
    /// request, instead of one request per record: what a bulk load needs
    /// to be fast. Off by default, so that servers without the endpoint
    /// keep working.
    #[serde(default)]
    pub bulk: bool,
}

/// The largest page TinyCRM serves.
const MAX_PAGE_SIZE: u32 = 5000;

fn default_page_size() -> u32 {
    100
}

impl Config {
    /// The base URL without a trailing `/`, once the config is known to be
    /// usable.
    fn base(&self) -> Result<&str, Error> {
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(Error::config(format!(
                "field `page_size`: must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        if self.timeout_ms == Some(0) {
            return Err(Error::config(
                "field `timeout_ms`: must be at least 1 (leave it out for the host's default)",
            ));
        }
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::config(format!(
                "field `base_url`: `{}` is not an http(s) URL",
                self.base_url
            )));
        }
        Ok(base)
    }

    /// A request to `path` with the token and the configured timeout.
    fn request(&self, new: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        let request = new(format!("{}{path}", self.base()?)).bearer_secret("api_token");
        Ok(match self.timeout_ms {
            Some(ms) => request.timeout_ms(ms),
            None => request,
        })
    }
}

/// A CRM contact as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Contact {
    /// CRM id.
    pub id: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// E-mail address.
    pub email: String,
    /// Company name.
    #[serde(default)]
    pub company: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Lifecycle stage (`lead`, `customer`, ...).
    #[serde(default)]
    pub lifecycle_stage: Option<String>,
    /// Country (ISO 3166 alpha-2).
    #[serde(default)]
    pub country: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// Last modification, RFC 3339 UTC, stamped by TinyCRM.
    pub updated_at: String,
    /// Custom fields, kept as they are so that they survive a round trip.
    #[serde(flatten)]
    pub custom: Map<String, Value>,
}

/// The connector.
#[derive(Debug)]
pub struct TinyCrm;

const STREAM: &str = "contacts";

impl Connector for TinyCrm {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        // TinyCRM is self-hosted: the connector cannot know the host, so it
        // declares any origin and the admin's grant decides.
        ConnectorSpec::new([STREAM])
            .http_origin("https://*:*")
            .http_origin("http://*:*")
            .secret(
                "api_token",
                "TinyCRM API token (Settings → API)",
                ["https://*:*", "http://*:*"],
            )
    }

    fn check(config: &Config) -> Result<(), Error> {
        config
            .request(Request::get, "/api/ping")?
            .send()?
            .error_for_status()?;
        nexo_sdk::info!("connected to {}", config.base_url);
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(vec![
            StreamInfo::new(STREAM, schema_of::<Contact>())
                .primary_key(["id"])
                .cursor_field("updated_at")
                .writable(),
        ])
    }

    fn read(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
        if stream != STREAM {
            return Err(Error::unknown_stream(stream, &[STREAM]));
        }
        let cursor = Cursor::from_state(state)?;
        let from = cursor.query_value();
        let page: ChangePage = config
            .request(Request::get, "/api/contacts")?
            .query("updated_after", from.unwrap_or(""))
            .query("limit", config.page_size.to_string())
            .query("page_token", cursor.page_token().unwrap_or(""))
            .send()?
            .error_for_status()?
            .json()?;
        let mut next = cursor.clone();
        let mut records = Vec::with_capacity(page.results.len());
        for change in page.results {
            if cursor.is_seen(&change.updated_at, &change.id) {
                continue;
            }
            next.observe(&change.updated_at, &change.id);
            records.push(change.into_record(STREAM));
        }
        let has_more = page.next_page_token.is_some();
        next.set_page(page.next_page_token, from);
        Ok(Page {
            records,
            state: next.to_state()?,
            has_more,
        })
    }

    fn write(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
        if stream != STREAM {
            return Err(Error::unknown_stream(stream, &[STREAM]));
        }
        config.base()?;
        if config.bulk {
            return bulk::write(config, &batch);
        }
        let mut results = Vec::with_capacity(batch.len());
        for record in batch {
            let outcome = match write_one(config, &record) {
                Ok(o) => o,
                // Only this record failed; stop the batch on anything else.
                Err(e @ Error::Rejected(_)) => WriteOutcome::Failed(e),
                Err(e) => return Err(e),
            };
            results.push(WriteResult::new(&record.id, outcome));
        }
        Ok(results)
    }
}

fn write_one(config: &Config, record: &Record) -> Result<WriteOutcome, Error> {
    // URL parsers resolve `.` and `..` segments (even percent-encoded), so
    // such an id would address another resource.
    if matches!(record.id.as_str(), "." | "..") {
        return Ok(WriteOutcome::Failed(Error::rejected(format!(
            "`{}` is not a TinyCRM contact id",
            record.id
        ))));
    }
    match (record.operation, record.destination_id()) {
        (Operation::Delete, Some(id)) => delete(config, id),
        (Operation::Delete, None) => Ok(WriteOutcome::Failed(Error::rejected(
            "a delete needs the contact's TinyCRM id and this record has none; nothing was sent",
        ))),
        (Operation::Upsert, Some(id)) => update(config, id, &body(record)?),
        (Operation::Upsert, None) => create(config, record.idempotency_key(), &body(record)?),
    }
}

/// The payload to send: TinyCRM owns `id` and `updated_at`.
fn body(record: &Record) -> Result<Map<String, Value>, Error> {
    let mut body: Map<String, Value> = record.payload_as()?;
    body.remove("id");
    body.remove("updated_at");
    Ok(body)
}

fn create(
    config: &Config,
    key: Option<&str>,
    body: &Map<String, Value>,
) -> Result<WriteOutcome, Error> {
    let mut request = config.request(Request::post, "/api/contacts")?.json(body)?;
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request
        .send()?
        .error_for_status()
        .map_err(|e| about(e, &format!("new contact (key {})", key.unwrap_or("none"))))?;
    let replayed = response.status == 200;
    let contact: Value = response.json()?;
    let id = contact
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::internal(format!(
                "TinyCRM created a contact without an id: {contact}"
            ))
        })?
        .to_string();
    // A replay answers with the contact created the first time; the record
    // may have changed since, and the latest version must land.
    // Found by its key, not created: `unchanged` or `updated`, which the
    // host counts as matched.
    if !replayed {
        return Ok(WriteOutcome::Created(id));
    }
    if same_content(&contact, body) {
        return Ok(WriteOutcome::Unchanged(id));
    }
    update(config, &id, body)
}

fn update(config: &Config, id: &str, body: &Map<String, Value>) -> Result<WriteOutcome, Error> {
    let response = config
        .request(Request::put, &format!("/api/contacts/{}", segment(id)))?
        .json(body)?
        .send()?;
    if response.status == 404 {
        return Ok(WriteOutcome::Failed(Error::rejected(format!(
            "contact {id} no longer exists in TinyCRM"
        ))));
    }
    response
        .error_for_status()
        .map_err(|e| about(e, &format!("contact {id}")))?;
    Ok(WriteOutcome::Updated(id.to_string()))
}

fn delete(config: &Config, id: &str) -> Result<WriteOutcome, Error> {
    let response = config
        .request(Request::delete, &format!("/api/contacts/{}", segment(id)))?
        .send()?;
    // Already gone is what a delete wants: a retried delete succeeds.
    if response.status != 404 {
        response
            .error_for_status()
            .map_err(|e| about(e, &format!("contact {id}")))?;
    }
    Ok(WriteOutcome::Deleted(id.to_string()))
}

/// Whether TinyCRM's `contact` already holds `body` (ignoring the fields
/// TinyCRM owns).
fn same_content(contact: &Value, body: &Map<String, Value>) -> bool {
    let Some(stored) = contact.as_object() else {
        return false;
    };
    let theirs = stored
        .iter()
        .filter(|(k, _)| *k != "id" && *k != "updated_at");
    theirs.clone().count() == body.len() && theirs.into_iter().all(|(k, v)| body.get(k) == Some(v))
}

/// A record-level refusal names the record it is about.
fn about(e: Error, what: &str) -> Error {
    match e {
        Error::Rejected(m) => Error::Rejected(format!("{what}: {m}")),
        other => other,
    }
}

/// `id` as one URL path segment, so that no id can reach another endpoint
/// (`.` and `..` are refused before).
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

nexo_sdk::export_connector!(TinyCrm);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_comparison_ignores_server_fields() {
        let body = json!({"email": "a@b.test", "city": null});
        let body = body.as_object().unwrap();
        let stored = json!({"id": "c1", "updated_at": "T", "email": "a@b.test", "city": null});
        assert!(same_content(&stored, body));
        let stored = json!({"id": "c1", "email": "a@b.test", "city": "Paris"});
        assert!(!same_content(&stored, body));
        let stored = json!({"id": "c1", "email": "a@b.test"});
        assert!(!same_content(&stored, body));
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(segment("c0001"), "c0001");
        assert_eq!(segment("../ping?x"), "..%2Fping%3Fx");
    }
}

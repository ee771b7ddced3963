//! {{name}}: a Nexo connector for a REST contacts API. One stream,
//! `contacts`, read incrementally by `updated_at` and written back with
//! idempotent creates, updates and deletes.
//!
//! The API (bearer token, the `api_token` secret):
//! - `GET /api/contacts?updated_after=T&limit=N&page_token=P` answers
//!   `{"results": [...], "next_page_token": "..." | null}`; a result is a
//!   contact or a tombstone `{"id", "deleted": true, "updated_at"}`, ordered
//!   by (`updated_at`, `id`), `updated_after` inclusive;
//! - `POST /api/contacts` with an `Idempotency-Key` header: 201 with the new
//!   contact, or 200 with the contact already created for that key;
//! - `PUT /api/contacts/{id}` replaces, `DELETE /api/contacts/{id}` deletes
//!   (404 when unknown).
//!
//! Errors: the SDK's `error_for_status` classifies an answer — 401 → auth,
//! 429 → rate limited (with `Retry-After`), 5xx → transient (the host
//! retries), 400/404/409/422 → rejected, which `write` reports for that
//! record alone.

use nexo_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const STREAM: &str = "contacts";
const MAX_PAGE_SIZE: u32 = 5000;

/// What the admin fills in for a connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the API, e.g. `https://crm.example.com`.
    pub base_url: String,
    /// Records per page (1-5000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_page_size() -> u32 {
    100
}

impl Config {
    /// The base URL without a trailing `/`, once the config is usable.
    fn base(&self) -> Result<&str, Error> {
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(Error::config(format!(
                "field `page_size`: must be between 1 and {MAX_PAGE_SIZE}"
            )));
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

    /// A request to `path`, authenticated with the `api_token` secret (the
    /// host puts the value in; the plugin never sees it).
    fn request(&self, new: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        Ok(new(format!("{}{path}", self.base()?)).bearer_secret("api_token"))
    }
}

/// A contact as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Contact {
    /// The API's id.
    pub id: String,
    /// E-mail address.
    pub email: String,
    /// Last change, stamped by the API.
    pub updated_at: String,
    /// Every other field, kept as it is.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// One page of `GET /api/contacts`.
#[derive(Debug, Deserialize)]
struct ChangePage {
    results: Vec<Map<String, Value>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The connector.
#[derive(Debug)]
pub struct Plugin;

impl Connector for Plugin {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        // The API's host is the customer's: the connector declares any
        // origin and the admin's grant names the real one.
        ConnectorSpec::new([STREAM])
            .http_origin("https://*:*")
            .http_origin("http://*:*")
            .secret(
                "api_token",
                "API token of the contacts API",
                ["https://*:*", "http://*:*"],
            )
    }

    fn check(config: &Config) -> Result<(), Error> {
        config
            .request(Request::get, "/api/contacts")?
            .query("limit", "1")
            .send()?
            .error_for_status()?;
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
        // The state is the last (updated_at, id) seen plus the page token of
        // a listing in progress: a read resumes where the last page ended.
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
        for row in page.results {
            let (Some(id), Some(updated_at)) = (text(&row, "id"), text(&row, "updated_at")) else {
                return Err(Error::internal(
                    "the API sent a contact without `id` or `updated_at`",
                ));
            };
            let (id, updated_at) = (id.to_string(), updated_at.to_string());
            // `updated_after` is inclusive: skip what the last page ended on.
            if cursor.is_seen(&updated_at, &id) {
                continue;
            }
            next.observe(&updated_at, &id);
            let record = if row.get("deleted") == Some(&Value::Bool(true)) {
                Record::delete(STREAM, id)
            } else {
                Record::upsert(STREAM, id, &row)?
            };
            records.push(record.with_cursor(updated_at));
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
        let mut results = Vec::with_capacity(batch.len());
        for record in batch {
            let outcome = match write_one(config, &record) {
                Ok(outcome) => outcome,
                // Refused: this record alone fails (the host dead-letters
                // it); anything else ends the call and the host retries the
                // batch with the same idempotency keys.
                Err(Error::Rejected(why)) => {
                    WriteOutcome::Failed(Error::rejected(format!("contact {}: {why}", record.id)))
                }
                Err(e) => return Err(e),
            };
            results.push(WriteResult::new(&record.id, outcome));
        }
        Ok(results)
    }
}

fn text<'a>(row: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    row.get(field).and_then(Value::as_str)
}

fn write_one(config: &Config, record: &Record) -> Result<WriteOutcome, Error> {
    match (record.operation, record.destination_id()) {
        (Operation::Delete, Some(id)) => {
            let response = config
                .request(Request::delete, &format!("/api/contacts/{}", segment(id)?))?
                .send()?;
            // Already gone is what a delete wants: a retried delete succeeds.
            if response.status != 404 {
                response.error_for_status()?;
            }
            Ok(WriteOutcome::Deleted(id.to_string()))
        }
        (Operation::Delete, None) => Err(Error::rejected(
            "a delete needs the contact's id and this record has none",
        )),
        (Operation::Upsert, Some(id)) => {
            config
                .request(Request::put, &format!("/api/contacts/{}", segment(id)?))?
                .json(&body(record)?)?
                .send()?
                .error_for_status()?;
            Ok(WriteOutcome::Updated(id.to_string()))
        }
        (Operation::Upsert, None) => {
            let mut request = config
                .request(Request::post, "/api/contacts")?
                .json(&body(record)?)?;
            // The host gives every create a key that stays the same when it
            // retries: a create whose answer was lost makes no duplicate.
            if let Some(key) = record.idempotency_key() {
                request = request.header("Idempotency-Key", key);
            }
            let response = request.send()?.error_for_status()?;
            let replayed = response.status == 200;
            let created: Contact = response.json()?;
            Ok(if replayed {
                // Created by an earlier attempt: bring it up to date.
                config
                    .request(Request::put, &format!("/api/contacts/{}", segment(&created.id)?))?
                    .json(&body(record)?)?
                    .send()?
                    .error_for_status()?;
                WriteOutcome::Updated(created.id)
            } else {
                WriteOutcome::Created(created.id)
            })
        }
    }
}

/// The payload to send: the API owns `id` and `updated_at`.
fn body(record: &Record) -> Result<Map<String, Value>, Error> {
    let mut body: Map<String, Value> = record.payload_as()?;
    body.remove("id");
    body.remove("updated_at");
    Ok(body)
}

/// `id` as one URL path segment, so that no id reaches another endpoint.
fn segment(id: &str) -> Result<String, Error> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(Error::rejected(format!("`{id}` is not a contact id")));
    }
    Ok(id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect())
}

nexo_sdk::export_connector!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_their_path_segment() {
        assert_eq!(segment("c1").ok().as_deref(), Some("c1"));
        assert_eq!(segment("../x?y").ok().as_deref(), Some("..%2Fx%3Fy"));
        assert!(segment("..").is_err());
    }

    #[test]
    fn a_bad_base_url_is_a_config_error() {
        let config = Config { base_url: "crm.example.com".into(), page_size: 100 };
        assert!(matches!(config.base(), Err(Error::InvalidConfig(_))));
    }
}

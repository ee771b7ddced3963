//! The connector itself, shared by `kit-faulty-connector` and
//! `kit-wide-connector` (which includes this file by `#[path]`): each crate
//! root says, in `UNUSED_ORIGINS`, which origins its spec asks for on top of
//! the ones the connector uses, so the two differ only in their spec.
//!
//! It talks to TinyCRM (`nexo_tests::tinycrm`): `GET /api/ping`,
//! `GET /api/contacts?updated_after=&limit=&page_token=` (keyset pages of
//! contacts and tombstones ordered by `updated_at`, `id`), `POST
//! /api/contacts` with `Idempotency-Key`, `PUT` and `DELETE
//! /api/contacts/{id}`, all with a bearer token.

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The only stream.
const STREAM: &str = "contacts";

/// Where the `non-granted-origin` fault phones home: an origin no grant in
/// the tests names.
const TELEMETRY: &str = "https://telemetry.example.com/ping";

/// The deliberate bug a connection runs with; the conformance kit must
/// catch each one by a named check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// No bug: the control, which passes every check.
    #[default]
    None,
    /// Creates are sent without their idempotency key, so a create retried
    /// after a lost answer makes a second contact.
    DuplicateOnLostAnswer,
    /// Every pass reads from the beginning, whatever state was saved (each
    /// pass still ends).
    IgnoresState,
    /// Every read also calls `https://telemetry.example.com`, which the
    /// admin never granted, and ignores the refusal.
    NonGrantedOrigin,
    /// A 401 is reported as `internal` instead of `auth`.
    AuthAsInternal,
    /// The state keeps only the last record's `updated_at`, and the next
    /// read asks for the records strictly after it (TinyCRM's page token
    /// dropped): records sharing a timestamp across a page boundary are
    /// lost.
    LosesTies,
}

/// Configuration of a connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the TinyCRM, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Contacts per page (1-5000).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 5000))]
    pub page_size: u32,
    /// The deliberate bug to run with (`none` for a correct connector).
    #[serde(default)]
    #[schemars(schema_with = "fault_schema")]
    pub fault: Fault,
}

fn default_page_size() -> u32 {
    50
}

/// `fault` as a plain string enum with its default, which a form (or the
/// kit) can offer without following references.
fn fault_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": [
            "none",
            "duplicate-on-lost-answer",
            "ignores-state",
            "non-granted-origin",
            "auth-as-internal",
            "loses-ties",
        ],
        "default": "none",
        "description": "The deliberate bug to run with (`none` for a correct connector).",
    })
}

impl Config {
    /// A request to `path` on the configured TinyCRM, with the token.
    fn request(&self, method: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        if !(1..=5000).contains(&self.page_size) {
            return Err(Error::config(
                "field `page_size`: must be between 1 and 5000",
            ));
        }
        let base = self.base_url.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Error::config(format!(
                "field `base_url`: `{base}` is not an http(s) URL"
            )));
        }
        Ok(method(format!("{base}{path}")).bearer_secret("api_token"))
    }

    /// The error the caller sees: the `auth-as-internal` fault turns a
    /// refused token into an internal error.
    fn classify<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Err(Error::Auth(m)) if self.fault == Fault::AuthAsInternal => {
                Err(Error::internal(format!("unexpected answer: {m}")))
            }
            other => other,
        }
    }
}

/// JSON Schema of a contact: TinyCRM requires the names and the e-mail and
/// keeps any other field.
fn contact_schema() -> String {
    let text = json!({"type": "string"});
    let maybe_text = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "required": ["id", "first_name", "last_name", "email", "updated_at"],
        "properties": {
            "id": text, "first_name": text, "last_name": text, "email": text,
            "updated_at": text, "company": maybe_text, "city": maybe_text,
        },
        "additionalProperties": true,
    })
    .to_string()
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
pub struct KitCrm;

impl Connector for KitCrm {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        // The admin's grant names the TinyCRM's actual host.
        let spec = ConnectorSpec::new([STREAM])
            .http_origin("http://*:*")
            .http_origin("https://*:*")
            .secret(
                "api_token",
                "TinyCRM API token",
                ["http://*:*", "https://*:*"],
            );
        let spec = crate::UNUSED_ORIGINS
            .iter()
            .fold(spec, |spec, origin| spec.http_origin(*origin));
        let spec = crate::UNUSED_SECRETS.iter().fold(spec, |spec, name| {
            spec.secret(*name, "never sent", ["http://*:*", "https://*:*"])
        });
        match crate::UNUSED_KV_BYTES {
            Some(bytes) => spec.kv_bytes(bytes),
            None => spec,
        }
    }

    fn check(config: &Config) -> Result<(), Error> {
        let ping = || {
            config
                .request(Request::get, "/api/ping")?
                .send()?
                .error_for_status()
        };
        config.classify(ping()).map(|_| ())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        // The primary key is `id`, StreamInfo's default.
        let contacts = StreamInfo::new(STREAM, contact_schema());
        Ok(vec![contacts.cursor_field("updated_at").writable()])
    }

    fn read(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
        if stream != STREAM {
            return Err(Error::unknown_stream(stream, &[STREAM]));
        }
        if config.fault == Fault::NonGrantedOrigin {
            // The bug: a call nobody asked for; its refusal is ignored.
            let _ = Request::get(TELEMETRY).send();
        }
        config.classify(read_page(config, state))
    }

    fn write(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
        if stream != STREAM {
            return Err(Error::unknown_stream(stream, &[STREAM]));
        }
        let mut results = Vec::with_capacity(batch.len());
        for record in &batch {
            let outcome = match config.classify(write_one(config, record)) {
                Ok(outcome) => outcome,
                // TinyCRM refused this record alone (422, unknown id).
                Err(e @ Error::Rejected(_)) => WriteOutcome::Failed(e),
                // Auth, rate limit, 5xx, no connection: the host retries
                // the whole batch with the same keys.
                Err(e) => return Err(e),
            };
            results.push(WriteResult::new(&record.id, outcome));
        }
        Ok(results)
    }
}

/// The `loses-ties` fault's state: the last `updated_at` handed over.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct LastSeen {
    after: Option<String>,
}

/// One page of the `loses-ties` fault: the rows strictly after the last
/// `updated_at` handed over, so a page that ended in the middle of a tie
/// loses the rest of it.
fn read_page_losing_ties(config: &Config, state: Option<&str>) -> Result<Page, Error> {
    let last: LastSeen = match state {
        Some(s) => serde_json::from_str(s)
            .map_err(|e| Error::config(format!("state is not this connector's: {e}")))?,
        None => LastSeen::default(),
    };
    let after = last.after.unwrap_or_default();
    let response = config
        .request(Request::get, "/api/contacts")?
        .query("updated_after", &after)
        .query("limit", config.page_size.to_string())
        .send()?
        .error_for_status()?;
    let page: ChangePage = response.json()?;
    let mut next = after.clone();
    let mut records = Vec::with_capacity(page.results.len());
    for row in page.results {
        let (Some(id), Some(updated_at)) = (text(&row, "id"), text(&row, "updated_at")) else {
            return Err(Error::internal(
                "TinyCRM listed a contact without `id` or `updated_at`",
            ));
        };
        // The bug: `updated_after` is inclusive, and every row at the
        // cursor is taken for one already handed over.
        if !after.is_empty() && updated_at == after {
            continue;
        }
        next.clone_from(&updated_at);
        let record = if row.get("deleted") == Some(&Value::Bool(true)) {
            Record::delete(STREAM, id)
        } else {
            Record::upsert(STREAM, id, &row)?
        };
        records.push(record.with_cursor(updated_at));
    }
    nexo_sdk::info!(
        "page of {} contact(s) after {}",
        records.len(),
        if after.is_empty() {
            "the start"
        } else {
            &after
        }
    );
    let state = LastSeen {
        after: (!next.is_empty()).then_some(next),
    };
    Ok(Page {
        records,
        state: Some(serde_json::to_string(&state).map_err(|e| Error::internal(e.to_string()))?),
        has_more: page.next_page_token.is_some(),
    })
}

/// One page after `state`: a [`Cursor`] holding the newest `updated_at`
/// seen (and the ids seen at it) and TinyCRM's page token while a pass is
/// under way.
fn read_page(config: &Config, state: Option<&str>) -> Result<Page, Error> {
    if config.fault == Fault::LosesTies {
        return read_page_losing_ties(config, state);
    }
    let mut cursor = Cursor::from_state(state)?;
    if config.fault == Fault::IgnoresState && cursor.page_token().is_none() {
        // The bug: a new pass starts from scratch. The page token is still
        // followed, so that each pass ends.
        cursor = Cursor::default();
    }
    let from = cursor.query_value().map(str::to_string);
    let response = config
        .request(Request::get, "/api/contacts")?
        .query("updated_after", from.as_deref().unwrap_or(""))
        .query("limit", config.page_size.to_string())
        .query("page_token", cursor.page_token().unwrap_or(""))
        .send()?
        .error_for_status()?;
    let page: ChangePage = response.json()?;
    let mut next = cursor.clone();
    let mut records = Vec::with_capacity(page.results.len());
    for row in page.results {
        let (Some(id), Some(updated_at)) = (text(&row, "id"), text(&row, "updated_at")) else {
            return Err(Error::internal(
                "TinyCRM listed a contact without `id` or `updated_at`",
            ));
        };
        // `updated_after` is inclusive: the rows at the cursor come again.
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
    // One line per page, so `nexo plugin dev` has a plugin log to show.
    nexo_sdk::info!(
        "page of {} contact(s) after {}{}",
        records.len(),
        from.as_deref().unwrap_or("the start"),
        if cursor.page_token().is_some() {
            ", following the page token"
        } else {
            ""
        }
    );
    let has_more = page.next_page_token.is_some();
    next.set_page(page.next_page_token, from.as_deref());
    Ok(Page {
        records,
        state: next.to_state()?,
        has_more,
    })
}

fn text(row: &Map<String, Value>, field: &str) -> Option<String> {
    row.get(field).and_then(Value::as_str).map(str::to_string)
}

/// Applies one record of the write protocol: an empty id creates, an id
/// updates or deletes.
fn write_one(config: &Config, record: &Record) -> Result<WriteOutcome, Error> {
    let Some(id) = record.destination_id() else {
        return match record.operation {
            Operation::Upsert => create(config, record),
            Operation::Delete => Err(Error::rejected(
                "a delete needs the contact's TinyCRM id; nothing was sent",
            )),
        };
    };
    // TinyCRM ids are letters and digits; anything else could address
    // another resource once in the path.
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::rejected(format!("`{id}` is not a TinyCRM id")));
    }
    let path = format!("/api/contacts/{id}");
    match record.operation {
        Operation::Upsert => update(config, &path, id, &contact_body(record)?),
        Operation::Delete => {
            let response = config.request(Request::delete, &path)?.send()?;
            // Already gone is what a delete wants (a retried delete).
            if response.status != 404 {
                response.error_for_status()?;
            }
            Ok(WriteOutcome::Deleted(id.to_string()))
        }
    }
}

/// A record's payload without the fields TinyCRM owns.
fn contact_body(record: &Record) -> Result<Map<String, Value>, Error> {
    let mut body: Map<String, Value> = record.payload_as()?;
    body.remove("id");
    body.remove("updated_at");
    Ok(body)
}

fn create(config: &Config, record: &Record) -> Result<WriteOutcome, Error> {
    let body = contact_body(record)?;
    let mut request = config
        .request(Request::post, "/api/contacts")?
        .json(&body)?;
    if let Some(key) = record.idempotency_key() {
        // The bug: without the key, TinyCRM cannot know a retry.
        if config.fault != Fault::DuplicateOnLostAnswer {
            request = request.header("Idempotency-Key", key);
        }
    }
    let response = request.send()?.error_for_status()?;
    let contact: Map<String, Value> = response.json()?;
    let Some(id) = text(&contact, "id") else {
        return Err(Error::internal("TinyCRM created a contact without an id"));
    };
    if response.status != 200 {
        return Ok(WriteOutcome::Created(id));
    }
    // 200: the key was seen, the contact exists (an earlier answer was
    // lost). The record may have changed since; the latest must land.
    let same = body
        .iter()
        .all(|(field, value)| contact.get(field).unwrap_or(&Value::Null) == value);
    if same {
        return Ok(WriteOutcome::Unchanged(id));
    }
    let path = format!("/api/contacts/{id}");
    update(config, &path, &id, &body)
}

fn update(
    config: &Config,
    path: &str,
    id: &str,
    body: &Map<String, Value>,
) -> Result<WriteOutcome, Error> {
    let response = config.request(Request::put, path)?.json(body)?.send()?;
    if response.status == 404 {
        return Err(Error::rejected(format!("contact {id} is not in TinyCRM")));
    }
    response.error_for_status()?;
    Ok(WriteOutcome::Updated(id.to_string()))
}

//! Nexo connector for HubSpot's CRM v3 objects API, written only with
//! `nexo-sdk`.
//!
//! Streams `contacts`, `companies` and `deals`. A record's payload is flat:
//! `id`, `updatedAt` (the cursor, ISO 8601 with milliseconds) and the
//! object's properties as top-level string fields, without the properties
//! HubSpot maintains itself (`hs_object_id`, `createdate`,
//! `hs_lastmodifieddate`, ...), so that the same business content compares
//! equal across systems. A deal also carries
//! `associations: {companies: [{id, properties}], line_items: [{id, properties}]}`,
//! read through the v4 associations batch API and v3 batch reads, so that a
//! mapper can turn a won deal into a customer and an invoice.
//!
//! Reads are incremental (module `read`): `POST /crm/v3/objects/{type}/search`
//! filtered on `hs_lastmodifieddate GTE` the cursor, sorted ascending, paged
//! with HubSpot's `after`; ties on the cursor are handled by the SDK's
//! `Cursor` (value + ids seen at it). After each search pass the archived
//! objects are listed, and those archived since the last pass are read as
//! deletes (`read_deletes`).
//!
//! Writes (module `write`) go through the batch endpoints: a record without
//! destination id is created, one with an id is updated. Each create stores
//! the host's idempotency key in the custom property `nexo_idempotency_key`
//! (create it once in the portal as a single-line text property); before
//! creating, the connector searches for keys already there, so a create
//! whose answer was lost is not repeated.

mod read;
mod write;

use std::collections::BTreeMap;

use nexo_sdk::json::{Fields, ObjectWriter, Scalar};
use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

/// Configuration of a HubSpot connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records per request (1-100; HubSpot's batch limit is 100).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Properties to read, per object type (`contacts`, `companies`,
    /// `deals`, `line_items`); the defaults when absent.
    #[serde(default)]
    pub properties: BTreeMap<String, Vec<String>>,
    /// Timeout of each request in milliseconds; the host's own limit when
    /// absent.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// After each search pass, list the archived objects and read the ones
    /// archived since the last pass as deletes (default true). Search never
    /// returns archived objects, so without this a delete in HubSpot is
    /// never seen; it costs one request per 100 archived objects per pass.
    #[serde(default = "default_true")]
    pub read_deletes: bool,
}

fn default_true() -> bool {
    true
}

/// HubSpot's API, the one origin the connector calls. A sandbox is reached
/// through the connection's origin override (`--origin-override
/// https://api.hubapi.com=http://127.0.0.1:PORT`), which the host applies.
pub const API: &str = "https://api.hubapi.com";

fn default_page_size() -> u32 {
    100
}

/// The custom property holding a create's idempotency key.
pub const KEY_PROPERTY: &str = "nexo_idempotency_key";

/// Properties HubSpot maintains itself: never written, left out of payloads.
const MANAGED: [&str; 7] = [
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
    "hs_createdate",
    "hs_updated_by_user_id",
    KEY_PROPERTY,
];

/// Payload fields that are not properties.
const ENVELOPE: [&str; 7] = [
    "id",
    "updatedAt",
    "createdAt",
    "archived",
    "archivedAt",
    "associations",
    "associate",
];

impl Config {
    fn base(&self) -> Result<&str, Error> {
        if !(1..=100).contains(&self.page_size) {
            return Err(Error::config(
                "field `page_size`: must be between 1 and 100",
            ));
        }
        Ok(API)
    }

    /// A request to `path` with the token and the configured timeout.
    fn request(&self, new: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        let request = new(format!("{}{path}", self.base()?)).bearer_secret("api_token");
        Ok(match self.timeout_ms {
            Some(ms) => request.timeout_ms(ms),
            None => request,
        })
    }

    /// POST `body` to `path`, and the answer (any status).
    fn post(&self, path: &str, body: &Value) -> Result<Response, Error> {
        self.request(Request::post, path)?.json(body)?.send()
    }

    /// GET `path` with `query`, and the answer (any status).
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Response, Error> {
        let mut request = self.request(Request::get, path)?;
        for (name, value) in query {
            request = request.query(name, *value);
        }
        request.send()
    }

    /// Properties to read for an object type.
    fn properties(&self, object: &str) -> Vec<String> {
        if let Some(p) = self.properties.get(object) {
            return p.clone();
        }
        let defaults: &[&str] = match object {
            "contacts" => &[
                "firstname",
                "lastname",
                "email",
                "phone",
                "company",
                "city",
                "country",
                "lifecyclestage",
            ],
            "companies" => &["name", "domain", "city", "country", "industry", "phone"],
            "deals" => &[
                "dealname",
                "amount",
                "dealstage",
                "pipeline",
                "closedate",
                "deal_currency_code",
            ],
            _ => &["name", "price", "quantity", "hs_sku"],
        };
        defaults.iter().map(|s| s.to_string()).collect()
    }
}

/// HubSpot's answer as an error, with HubSpot's own `message` when the
/// body has one (the SDK classes the status: 429 → rate limited with
/// `Retry-After`, 401 → auth, 5xx → transient, 400/404 → rejected).
fn failure(response: Response, what: &str) -> Error {
    let message = response
        .json::<Value>()
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string));
    match response.error_for_status() {
        Ok(r) => Error::internal(format!("{what}: unexpected status {}", r.status)),
        Err(Error::Rejected(m)) => Error::Rejected(format!("{what}: {}", message.unwrap_or(m))),
        Err(Error::Auth(m)) => Error::Auth(format!("{what}: {}", message.unwrap_or(m))),
        Err(e) => e,
    }
}

/// `Ok(response)` for 2xx, otherwise [`failure`].
fn success(response: Response, what: &str) -> Result<Response, Error> {
    if (200..300).contains(&response.status) {
        Ok(response)
    } else {
        Err(failure(response, what))
    }
}

/// The streams and their object types.
const STREAMS: [&str; 3] = ["contacts", "companies", "deals"];

fn stream_known(stream: &str) -> Result<(), Error> {
    if STREAMS.contains(&stream) {
        Ok(())
    } else {
        Err(Error::unknown_stream(stream, &STREAMS))
    }
}

/// A HubSpot object of a search or list answer, its strings borrowed from
/// the answer's text.
#[derive(Debug, Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "updatedAt")]
    updated_at: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    properties: Fields<'a>,
}

impl Object<'_> {
    /// Its id and `updatedAt` (empty when absent).
    fn key(&self) -> Result<(&str, &str), Error> {
        let id = self
            .id
            .as_ref()
            .and_then(Scalar::as_str)
            .ok_or_else(|| Error::internal("HubSpot returned an object without id"))?;
        let updated = self
            .updated_at
            .as_ref()
            .and_then(Scalar::as_str)
            .unwrap_or_default();
        Ok((id, updated))
    }

    /// The flat payload (see the crate docs), with `associations` when
    /// given, written straight into its JSON text: the same text a
    /// `serde_json::Map` of these fields gives (keys sorted, a repeated
    /// key's last value kept).
    fn payload(&self, associations: Option<&Value>) -> Result<String, Error> {
        enum Out<'b> {
            Str(&'b str),
            Field(&'b Scalar<'b>),
            Tree(&'b Value),
        }
        let (id, updated) = self.key()?;
        let mut fields: Vec<(&str, Out)> = Vec::with_capacity(self.properties.0.len() + 3);
        fields.push(("id", Out::Str(id)));
        fields.push(("updatedAt", Out::Str(updated)));
        for (k, v) in &self.properties.0 {
            if !MANAGED.contains(&k.as_ref()) && *v != Scalar::Null {
                fields.push((k, Out::Field(v)));
            }
        }
        if let Some(a) = associations {
            fields.push(("associations", Out::Tree(a)));
        }
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut w = ObjectWriter::with_capacity(32 * fields.len());
        for (i, (k, v)) in fields.iter().enumerate() {
            if fields.get(i + 1).is_some_and(|next| next.0 == *k) {
                continue;
            }
            match v {
                Out::Str(s) => w.string(k, s),
                Out::Field(f) => w.scalar(k, f),
                Out::Tree(t) => w.value(k, t),
            };
        }
        Ok(w.finish())
    }
}

/// Properties without the ones HubSpot maintains, for an embedded object.
fn embedded(object: &Value) -> Value {
    let props: serde_json::Map<String, Value> = object["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !MANAGED.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({"id": object["id"], "properties": props})
}

/// The connector.
#[derive(Debug)]
pub struct HubSpot;

impl Connector for HubSpot {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        ConnectorSpec::new(STREAMS).http_origin(API).secret(
            "api_token",
            "HubSpot private app access token (Settings → Integrations → Private apps)",
            [API],
        )
    }

    fn check(config: &Config) -> Result<(), Error> {
        let response = config
            .request(Request::get, "/crm/v3/objects/contacts")?
            .query("limit", "1")
            .send()?;
        success(response, "reading one contact")?;
        nexo_sdk::info!("connected to HubSpot at {API}");
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        let value = json!({"type": ["string", "number", "boolean", "null"]});
        Ok(STREAMS
            .iter()
            .map(|&stream| {
                let mut schema = json!({
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "updatedAt": {"type": "string"}},
                    "additionalProperties": value,
                });
                // HubSpot keeps every property as text (`12.5` reads back
                // as "12.5"), which the value type above says to the host;
                // the properties it maintains itself are derived.
                for name in MANAGED {
                    schema["properties"][name] = json!({"readOnly": true});
                }
                if stream == "deals" {
                    let list = json!({"type": "array", "items": {"type": "object",
                        "properties": {"id": {"type": "string"}, "properties": {"type": "object"}}}});
                    schema["properties"]["associations"] = json!({"type": "object",
                        "properties": {"companies": list, "line_items": list}});
                }
                StreamInfo::new(stream, schema.to_string())
                    .primary_key(["id"])
                    .cursor_field("updatedAt")
                    .writable()
            })
            .collect())
    }

    fn read(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
        stream_known(stream)?;
        config.base()?;
        read::page(config, stream, state)
    }

    fn write(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
        stream_known(stream)?;
        config.base()?;
        write::batch(config, stream, &batch)
    }
}

nexo_sdk::export_connector!(HubSpot);

//! Example Nexo connector for a small REST CRM ("TinyCRM"), written only with
//! `nexo-sdk`. It shows the vendor's whole job: a config type, a spec,
//! `check`, `discover`, incremental `read` with a cursor and paging, and
//! `write` with per-record outcomes.
//!
//! The API it talks to: `GET /api/ping`, `GET /api/contacts?updated_after=T&limit=N&page_token=P`
//! answering `{"results": [...], "next_page_token": "..."|null}`,
//! `POST /api/contacts` and `PUT /api/contacts/{id}`; bearer token auth.

use nexo_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Configuration of a TinyCRM connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the CRM, e.g. `https://crm.example.com`.
    pub base_url: String,
    /// Records per page (1-500).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_page_size() -> u32 {
    100
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
    /// Last modification, RFC 3339 UTC.
    pub updated_at: String,
}

#[derive(Deserialize)]
struct ContactPage {
    results: Vec<Contact>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The connector.
#[derive(Debug)]
pub struct TinyCrm;

const STREAM: &str = "contacts";

impl TinyCrm {
    fn base(config: &Config) -> Result<&str, Error> {
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::config(format!(
                "field `base_url`: `{}` is not an http(s) URL",
                config.base_url
            )));
        }
        Ok(base)
    }
}

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
        if !(1..=500).contains(&config.page_size) {
            return Err(Error::config(
                "field `page_size`: must be between 1 and 500",
            ));
        }
        Request::get(format!("{}/api/ping", Self::base(config)?))
            .bearer_secret("api_token")
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
            return Err(Error::config(format!(
                "unknown stream `{stream}`; TinyCRM has `{STREAM}`"
            )));
        }
        let cursor = Cursor::from_state(state)?;
        let from = cursor.query_value();
        let page: ContactPage = Request::get(format!("{}/api/contacts", Self::base(config)?))
            .query("updated_after", from.unwrap_or(""))
            .query("limit", config.page_size.to_string())
            .query("page_token", cursor.page_token().unwrap_or(""))
            .bearer_secret("api_token")
            .send()?
            .error_for_status()?
            .json()?;
        let mut next = cursor.clone();
        let mut records = Vec::with_capacity(page.results.len());
        for c in page.results {
            if cursor.is_seen(&c.updated_at, &c.id) {
                continue;
            }
            next.observe(&c.updated_at, &c.id);
            let updated_at = c.updated_at.clone();
            records.push(Record::upsert(STREAM, c.id.clone(), &c)?.with_cursor(updated_at));
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
            return Err(Error::config(format!("unknown stream `{stream}`")));
        }
        let base = Self::base(config)?;
        let mut results = Vec::with_capacity(batch.len());
        for record in batch {
            let outcome = match write_one(base, &record) {
                Ok(o) => o,
                // Only this record failed; stop the batch on anything else.
                Err(e @ Error::Rejected(_)) => WriteOutcome::Failed(e),
                Err(e) => return Err(e),
            };
            results.push(WriteResult {
                id: record.id,
                outcome,
            });
        }
        Ok(results)
    }
}

fn write_one(base: &str, record: &Record) -> Result<WriteOutcome, Error> {
    if record.operation == Operation::Delete {
        Request::delete(format!("{base}/api/contacts/{}", record.id))
            .bearer_secret("api_token")
            .send()?
            .error_for_status()?;
        return Ok(WriteOutcome::Deleted(record.id.clone()));
    }
    let body: serde_json::Value = serde_json::from_str(&record.payload)?;
    let existing = Request::get(format!("{base}/api/contacts/{}", record.id))
        .bearer_secret("api_token")
        .send()?;
    if existing.status == 404 {
        let created: Contact = Request::post(format!("{base}/api/contacts"))
            .bearer_secret("api_token")
            .json(&body)?
            .send()?
            .error_for_status()?
            .json()?;
        Ok(WriteOutcome::Created(created.id))
    } else {
        existing.error_for_status()?;
        Request::put(format!("{base}/api/contacts/{}", record.id))
            .bearer_secret("api_token")
            .json(&body)?
            .send()?
            .error_for_status()?;
        Ok(WriteOutcome::Updated(record.id.clone()))
    }
}

nexo_sdk::export_connector!(TinyCrm);

//! Nexo mapper: won HubSpot deals → canonical [`Invoice`](nexo_sdk::model::Invoice)s, or the deals'
//! companies → canonical [`Company`](nexo_sdk::model::Company) customers.
//!
//! Input: deal records as the HubSpot connector emits them (`id`,
//! `properties`, `associations.companies`, `associations.line_items`, every
//! property a string). Deals outside the won stages are left out (a mapper
//! may filter; the run reports them as "left out by the pipeline's mappers").
//!
//! A mapper can only fail a whole batch (`map` returns records or one
//! error). With `on_error = "fail"` (the default) every unmappable deal of
//! the batch is named, with its field, in one `Rejected` error; with
//! `"skip"` they are left out and logged instead.
//!
//! Config (JSON; all fields optional):
//!
//! ```json
//! {"emit": "invoice", "won_stages": ["closedwon"], "system": "hubspot",
//!  "default_currency": "EUR", "default_tax_rate": "20", "account_code": "200",
//!  "rounding": "half_up", "status": "draft", "on_error": "fail",
//!  "country_codes": {"Germany": "DE"}}
//! ```

use std::collections::{BTreeMap, HashSet};

use nexo_sdk::model::{Currency, Entity, InvoiceStatus};
use nexo_sdk::prelude::*;
use rust_decimal::Decimal;
use serde::Deserialize;

pub mod amounts;
mod customer;
pub mod error;
pub mod hubspot;
mod invoice;

pub use amounts::Rounding;
pub use error::DealError;
use hubspot::Deal;

/// What the mapper emits for each won deal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// One canonical invoice (stream `invoices`).
    #[default]
    Invoice,
    /// The deal's (first) company as a canonical company with the customer
    /// role (stream `companies`), once per company and batch.
    Customer,
}

/// What to do with a won deal that cannot be mapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the batch, naming every bad deal and field (the run fails and
    /// nothing of the page is written).
    #[default]
    Fail,
    /// Leave the deal out and log why; the rest of the batch goes on.
    Skip,
}

/// Schema stand-in for a percentage written as a decimal string (`"20"`,
/// `"7.7"`): the config takes only strings, so a rate is never a float.
struct PercentString;

impl JsonSchema for PercentString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PercentString".into()
    }

    fn json_schema(_: &mut nexo_sdk::schemars::SchemaGenerator) -> nexo_sdk::schemars::Schema {
        nexo_sdk::schemars::json_schema!({
            "type": "string",
            "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
            "examples": ["20"]
        })
    }
}

/// Mapper configuration. Its JSON Schema ships as `config.schema.json`
/// (named in `nexo-plugin.toml`), checked at `pipeline apply`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `invoice` (default) or `customer`.
    #[serde(default)]
    pub emit: Emit,
    /// Deal stages (internal ids) that count as won; default `["closedwon"]`.
    #[serde(default = "default_won_stages")]
    pub won_stages: Vec<String>,
    /// Short name of the source system in references; default `hubspot`.
    #[serde(default = "default_system")]
    pub system: String,
    /// Currency of deals without `deal_currency_code`; without it such a
    /// deal is an error.
    #[serde(default)]
    pub default_currency: Option<Currency>,
    /// Tax rate in percent for line items without `hs_tax_rate` and for
    /// deals without line items, e.g. `"20"`; default `"0"`.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    #[schemars(with = "Option<PercentString>")]
    pub default_tax_rate: Option<Decimal>,
    /// Revenue account code put on every line.
    #[serde(default)]
    pub account_code: Option<String>,
    /// Rounding of discounts and per-line taxes: `half_up` (default) or
    /// `half_even`. Line amounts always round half away from zero (the
    /// canonical model's rule).
    #[serde(default)]
    pub rounding: Rounding,
    /// Status of the emitted invoices; default `draft`, so a person approves
    /// them in the accounting system.
    #[serde(default = "default_status")]
    pub status: InvoiceStatus,
    /// `fail` (default) or `skip`.
    #[serde(default)]
    pub on_error: OnError,
    /// Country names as HubSpot holds them → ISO 3166-1 alpha-2 codes, e.g.
    /// `{"Germany": "DE"}`. Two-letter values pass as they are; a name not
    /// listed is kept in the company's `country_name` field instead.
    #[serde(default)]
    pub country_codes: BTreeMap<String, String>,
}

fn default_won_stages() -> Vec<String> {
    vec!["closedwon".into()]
}
fn default_system() -> String {
    "hubspot".into()
}
fn default_status() -> InvoiceStatus {
    InvoiceStatus::Draft
}

impl Default for Config {
    fn default() -> Self {
        Config {
            emit: Emit::default(),
            won_stages: default_won_stages(),
            system: default_system(),
            default_currency: None,
            default_tax_rate: None,
            account_code: None,
            rounding: Rounding::default(),
            status: default_status(),
            on_error: OnError::default(),
            country_codes: BTreeMap::new(),
        }
    }
}

/// The config's JSON Schema, as text.
pub fn config_schema() -> String {
    schema_of::<Config>()
}

/// The result of mapping a batch.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The output records, in input order.
    pub records: Vec<Record>,
    /// Deals left out because they are not won (ids).
    pub not_won: Vec<String>,
    /// Deals that could not be mapped (with `on_error = "skip"`; with
    /// `"fail"` they make the whole batch an error instead).
    pub failed: Vec<DealError>,
}

/// Map a batch of deal records (the mapper, without the Wasm glue).
pub fn map_deals(config: &Config, batch: &[Record]) -> Result<Mapped, Error> {
    check_config(config)?;
    let mut out = Mapped::default();
    let mut companies_seen = HashSet::new();
    for record in batch {
        if record.operation == Operation::Delete {
            out.records.push(delete_of(config, record));
            continue;
        }
        match map_deal(config, record, &mut companies_seen) {
            Ok(Some(r)) => out.records.push(r),
            Ok(None) => out.not_won.push(record.id.clone()),
            Err(e) => out.failed.push(e),
        }
    }
    if config.on_error == OnError::Fail && !out.failed.is_empty() {
        return Err(error::batch_error(&out.failed, batch.len()));
    }
    Ok(out)
}

fn check_config(config: &Config) -> Result<(), Error> {
    if config.system.trim().is_empty() {
        return Err(Error::config("`system` must not be empty"));
    }
    Ok(())
}

/// A deleted deal: nothing to derive; the destination decides what a
/// delete means.
fn delete_of(config: &Config, record: &Record) -> Record {
    let mut r = record.clone();
    r.stream = match config.emit {
        Emit::Invoice => "invoices",
        Emit::Customer => "companies",
    }
    .into();
    r
}

/// One deal record → its output record, or `None` when it is not won (or,
/// for customers, its company was already emitted in this batch).
fn map_deal(
    config: &Config,
    record: &Record,
    companies_seen: &mut HashSet<String>,
) -> Result<Option<Record>, DealError> {
    let deal = Deal::from_payload(&record.payload).map_err(|e| {
        DealError::new(
            &record.id,
            "payload",
            format!("not a HubSpot deal record: {e}"),
        )
    })?;
    let id = if deal.id.trim().is_empty() {
        record.id.as_str()
    } else {
        deal.id.as_str()
    };
    let stage = deal.properties.text("dealstage", id, "properties")?;
    if !stage.is_some_and(|s| config.won_stages.iter().any(|w| w == s)) {
        return Ok(None);
    }
    let mut out = match config.emit {
        Emit::Invoice => invoice::invoice_of(config, &deal, id)?
            .map(|inv| Entity::to_record(&inv, record.id.clone())),
        Emit::Customer => customer::company_of(config, &deal, id, companies_seen)?
            .map(|c| Entity::to_record(&c, record.id.clone())),
    }
    .transpose()
    .map_err(|e| DealError::new(id, "output", e.to_string()))?;
    if let Some(r) = &mut out {
        r.cursor = record.cursor.clone();
    }
    Ok(out)
}

/// The mapper.
#[derive(Debug)]
pub struct DealToInvoice;

impl Mapper for DealToInvoice {
    type Config = Config;

    /// Each deal on its own: one that cannot be mapped is refused alone
    /// (the host quarantines it, naming the deal and field), or with
    /// `on_error = "skip"` left out and logged.
    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        check_config(config)?;
        let mut companies_seen = HashSet::new();
        Ok(batch
            .iter()
            .map(|record| {
                if record.operation == Operation::Delete {
                    return MapOutcome::one(delete_of(config, record));
                }
                match map_deal(config, record, &mut companies_seen) {
                    Ok(r) => MapOutcome::from(Ok(r)),
                    Err(e) if config.on_error == OnError::Skip => {
                        #[cfg(target_arch = "wasm32")]
                        nexo_sdk::log::log(nexo_sdk::log::Level::Warn, &format!("skipped: {e}"));
                        drop(e);
                        MapOutcome::skipped()
                    }
                    Err(e) => MapOutcome::Failed(Error::rejected(e.to_string())),
                }
            })
            .collect())
    }
}

nexo_sdk::export_mapper!(DealToInvoice);

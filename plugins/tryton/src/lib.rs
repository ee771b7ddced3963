//! Nexo connector for [Tryton](https://www.tryton.org) ERP through its REST
//! API (Tryton 8.0+, `/<database>/rest/model/<model>`), authenticated with
//! a user application key: parties, products, sale orders and customer
//! invoices, read incrementally in Nexo's canonical model; parties,
//! products and invoices written idempotently (invoices created and
//! posted).
//!
//! Tested against trytond 8.2 from PyPI with the modules `party`,
//! `product`, `sale` and `account_invoice` on SQLite (see
//! `nexo::vendors::tryton`).
//!
//! # Streams
//!
//! | stream | Tryton model | canonical | read | write |
//! |---|---|---|---|---|
//! | `parties` | `party.party` | [`Company`] (role `customer`) | yes | yes (`Company` or `Contact` payload) |
//! | `products` | `product.product` (+ its `product.template`) | [`Product`] | yes | yes |
//! | `sales` | `sale.sale` with `sale.line` | [`SaleOrder`] (no canonical type) | yes | no |
//! | `invoices` | `account.invoice` (`type = out`) with lines | [`Invoice`] | yes | yes (create, update a draft, post) |
//!
//! # Reads
//!
//! Tryton 8 keeps `last_modified_at` (the write date, or the create date of
//! a record never written) on every model, searchable and sortable. A read
//! asks for records after the last position, `(last_modified_at, id)`
//! greater than the saved one, sorted on both, `page_size` at a time: a
//! keyset, so a record modified while a read pages moves behind the
//! position and is read once more, never skipped. Products have two
//! positions, one on the variants and one on their templates (a price or
//! name lives on the template): a changed template re-reads its variants.
//! Reads include archived records (`active_test: false`).
//!
//! # Identity and idempotency
//!
//! - **Parties** written by Nexo get the code `<system>:<id>` of the first
//!   of their `external_refs` from another system (e.g. `hubspot:901`), else
//!   `nexo:<idempotency key>`. Tryton keeps party codes unique. A create is
//!   looked up by that code first; a party found is updated and answered
//!   `created(<its id>)`. Read back, such a party lists `{system, id}` in
//!   `external_refs`.
//! - **Products** are matched on their code (the canonical `sku`).
//! - **Invoices** carry `nexo:<idempotency key>` in their `description`; a
//!   create is looked up by it first, so a create whose answer was lost is
//!   finished (e.g. posted), not duplicated. The customer is the party of
//!   the `customer` reference: a Tryton id when its system is this one
//!   (`config.system`), else the party with the code `<system>:<id>`,
//!   created (named after `extra.customer_name`, or the code) if missing.
//!
//! # Errors
//!
//! A Tryton user error (HTTP 400: a validation, a refused transition, a
//! unique code) is `rejected` for that record with Tryton's message; 401 is
//! `auth`, 5xx and time-outs `transient`, so the host retries them.

mod api;
mod read;
mod write;

use std::collections::BTreeMap;

use nexo_sdk::model::{Company, Invoice, Product, json_schema};
use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::json;

pub use api::KEY_SECRET;
pub use read::{SaleLine, SaleOrder};

/// Configuration of a Tryton connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tryton's URL with the database name as its path, e.g.
    /// `http://127.0.0.1:8000/tryton`.
    pub base_url: String,
    /// Records per request (1–1000); default 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Id of the company (`company.company`) the connector works in;
    /// default 1.
    #[serde(default = "default_company")]
    pub company: u64,
    /// Name of this system in references; default `tryton`.
    #[serde(default = "default_system")]
    pub system: String,
    /// Revenue journal of written invoices; default: the first journal of
    /// type `revenue`.
    #[serde(default)]
    pub journal: Option<u64>,
    /// Revenue account of written invoice lines; default: the first open
    /// revenue account of the company.
    #[serde(default)]
    pub revenue_account: Option<u64>,
    /// Payment term of written invoices; none when absent.
    #[serde(default)]
    pub payment_term: Option<u64>,
    /// Account category (`product.category`) of written products, which
    /// gives their revenue account and taxes; none when absent.
    #[serde(default)]
    pub account_category: Option<u64>,
    /// Tax rate in percent → `account.tax` id, e.g. `{"20": 4}`; a rate not
    /// listed is looked up among the company's percentage taxes.
    #[serde(default)]
    pub taxes: BTreeMap<String, u64>,
    /// Type of written products: `service` (default), `goods` or `assets`.
    #[serde(default = "default_product_type")]
    pub product_type: String,
    /// Answer Tryton's warnings (e.g. "payment date in the past") with yes,
    /// as a person clicking through would; default true. When false a
    /// warning rejects the record.
    #[serde(default = "default_true")]
    pub skip_warnings: bool,
    /// Timeout of each request in milliseconds; the host's limit applies
    /// when absent.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

fn default_page_size() -> u32 {
    100
}
fn default_company() -> u64 {
    1
}
fn default_system() -> String {
    "tryton".into()
}
fn default_product_type() -> String {
    "service".into()
}
fn default_true() -> bool {
    true
}

/// The connector.
#[derive(Debug)]
pub struct Tryton;

/// The streams.
pub const STREAMS: [&str; 4] = ["parties", "products", "sales", "invoices"];

fn unknown_stream(stream: &str) -> Error {
    Error::unknown_stream(stream, &STREAMS)
}

impl Connector for Tryton {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        // Tryton is self-hosted: the admin names the origin on each
        // connection. A 1.0 spec() cannot say so; its any-host patterns are
        // what the manifest's `connection_origins = true` stands for.
        ConnectorSpec::new(STREAMS)
            .http_origin("https://*:*")
            .http_origin("http://*:*")
            .secret(
                KEY_SECRET,
                "Tryton user application key for the REST API (Bearer)",
                ["https://*:*", "http://*:*"],
            )
    }

    fn check(config: &Config) -> Result<(), Error> {
        if !["service", "goods", "assets"].contains(&config.product_type.as_str()) {
            return Err(Error::config(format!(
                "field `product_type`: `{}` is not one of service, goods, assets",
                config.product_type
            )));
        }
        let company = config.get(
            "company.company",
            config.company,
            &["party.name", "currency.code"],
        );
        let company = match company {
            Err(Error::Rejected(m)) => {
                return Err(Error::config(format!(
                    "field `company`: Tryton has no company {} that this key may read ({m})",
                    config.company
                )));
            }
            other => other?,
        };
        nexo_sdk::info!(
            "connected to Tryton at {} as company {} ({})",
            config.base_url,
            company["party"]["name"].as_str().unwrap_or("?"),
            company["currency"]["code"].as_str().unwrap_or("?")
        );
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        let info = |name: &str, schema: String| {
            StreamInfo::new(name, schema)
                .primary_key(["id"])
                .cursor_field("updated_at")
        };
        Ok(vec![
            info("parties", json_schema::<Company>()).writable(),
            info("products", json_schema::<Product>()).writable(),
            info("sales", json_schema::<SaleOrder>()),
            info("invoices", invoice_schema().into()).writable(),
        ])
    }

    fn read(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
        if !STREAMS.contains(&stream) {
            return Err(unknown_stream(stream));
        }
        read::page(config, stream, state)
    }

    fn write(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
        match stream {
            "parties" | "products" | "invoices" => write::batch(config, stream, batch),
            "sales" => Err(Error::AccessDenied(
                "stream `sales` is read-only in the Tryton connector".into(),
            )),
            other => Err(unknown_stream(other)),
        }
    }
}

/// The invoice stream's schema with what Tryton does to a written invoice,
/// so the host tells its read-back from a person's edit: Tryton numbers it
/// itself; keeps neither `external_refs`, `due_date` nor extra fields (the
/// marker in `description` is not read back); returns the customer and
/// products as its own party and product ids; posts lines to its revenue
/// account (the `account_code` read back is Tryton's); and may move a unit
/// price by its price step, 0.0001, so the line amount rounds as the
/// record's (see `write::exact_price`).
pub fn invoice_schema() -> StreamSchema {
    StreamSchema::of::<Invoice>()
        .derived("number")
        .derived("lines[].account_code")
        .not_read_back("external_refs")
        .not_read_back("due_date")
        .extras_not_read_back()
        .own_ids("customer")
        .own_ids("lines[].product")
        .tolerance("lines[].unit_price", "0.0001")
}

/// Names a record of a write batch in an error message.
fn describe(record: &Record) -> String {
    let key = record.idempotency_key().unwrap_or("none");
    match record.destination_id() {
        Some(id) => format!("{} record {id} (key {key})", record.stream),
        None => format!("{} record (key {key})", record.stream),
    }
}

/// The JSON object `{"active": false}` Tryton archives with.
fn archived() -> serde_json::Value {
    json!({"active": false})
}

nexo_sdk::export_connector!(Tryton);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_invoice_schema_names_only_fields_the_model_has() {
        assert!(invoice_schema().unknown_paths().is_empty());
    }

    #[test]
    fn config_defaults_and_url_checks() {
        let c: Config =
            serde_json::from_value(json!({"base_url": "http://127.0.0.1:8000/nexo/"})).unwrap();
        assert_eq!(
            (c.page_size, c.company, c.system.as_str()),
            (100, 1, "tryton")
        );
        assert!(c.skip_warnings);
        let c: Config =
            serde_json::from_value(json!({"base_url": "http://127.0.0.1:8000"})).unwrap();
        let e = Tryton::read(&c, "parties", None).unwrap_err().to_string();
        assert!(e.contains("names no database"), "{e}");
        let c: Config =
            serde_json::from_value(json!({"base_url": "ftp://h/db", "page_size": 5})).unwrap();
        assert!(Tryton::read(&c, "parties", None).is_err());
        assert!(serde_json::from_value::<Config>(json!({"base_url": "x", "bogus": 1})).is_err());
    }
}

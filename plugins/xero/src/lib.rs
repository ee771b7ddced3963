//! Nexo connector for the [Xero Accounting API](https://developer.xero.com/documentation/api/accounting/overview):
//! contacts, items, invoices (with lines), payments and the chart of
//! accounts, read incrementally and emitted in Nexo's canonical model;
//! contacts, items, invoices and payments written idempotently.
//!
//! # Streams
//!
//! | stream | Xero | canonical | read | write |
//! |---|---|---|---|---|
//! | `contacts` | `/Contacts` | [`Company`], role `customer` (or `supplier`) | yes | yes |
//! | `items` | `/Items` | [`Product`] | yes | yes |
//! | `invoices` | `/Invoices` (`ACCREC`) | [`Invoice`] | yes | yes |
//! | `payments` | `/Payments` | [`Payment`] | yes | yes |
//! | `accounts` | `/Accounts` | [`Account`] | yes | no |
//!
//! Reads send `If-Modified-Since` (the last `UpdatedDateUTC` seen) and
//! `page=N` (100 per page); every request carries `Authorization: Bearer
//! {{secret:access_token}}` and the config's `xero-tenant-id`. A 429 becomes
//! `rate-limited(Retry-After)`, which the host waits out.
//!
//! # Identity conventions
//!
//! - **This system's name** is `config.system` (default `xero`): an
//!   `ExternalRef`/`PartyRef` with that system holds a Xero id (ContactID,
//!   InvoiceID).
//! - **Items** are matched on their `Code`, the product's `sku` (Xero keeps
//!   codes unique): a create first looks the code up. A deleted product is
//!   retired from sale (`IsSold: false`) rather than deleted, since invoices
//!   keep referring to it. Prices are the organisation's base currency.
//! - **Contacts from another system** get `ContactNumber = "<system>:<id>"`:
//!   the first of the canonical record's `external_refs` from another
//!   system, else `config.contact_source` and the payload's `id`, else
//!   `nexo:<idempotency key>`. An invoice whose `customer` is
//!   `{system: "crm", id: "c-9"}` is billed to the Xero contact with
//!   `ContactNumber` `crm:c-9`; read back, that contact lists
//!   `{system: "crm", id: "c-9"}` in `external_refs`.
//! - **Idempotency.** A create is looked up before it is sent: a contact by
//!   its `ContactNumber`, an invoice or payment by the marker
//!   `#nexo:<idempotency key>` that the connector appends to its
//!   `Reference` (and strips when reading). The create also carries Xero's
//!   `Idempotency-Key` header. A create whose answer was lost is thus
//!   answered `created(<existing id>)` on the retry, never duplicated.
//! - **Updates** compare the fields the connector would send with the Xero
//!   record: equal → `unchanged`, else a `POST` → `updated`. Xero cannot edit
//!   a payment: a changed payment is `rejected`. A delete archives a contact,
//!   voids an invoice (deletes a draft) and deletes a payment.
//! - **Validation** is Xero's: invoices are sent with their totals and
//!   `summarizeErrors=false`; a record Xero refuses is `rejected` with
//!   Xero's `ValidationErrors` messages (the batch goes on).
//! - **Tax** maps a canonical `tax_rate` (percent) to a Xero `TaxType` and
//!   back through `config.tax_types` (default: `OUTPUT2` 20, `RROUTPUT` 5,
//!   `NONE` 0).

mod read;
mod write;
mod xjson;

use std::collections::BTreeMap;

use nexo_sdk::model::{Account, Company, Invoice, Payment, Product, json_schema};
use nexo_sdk::prelude::*;
use rust_decimal::Decimal;
use serde::Deserialize;

/// Name of the secret holding the OAuth access token.
pub const TOKEN_SECRET: &str = "access_token";

/// Configuration of a Xero connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The organisation (`xero-tenant-id` header). Set by `nexo connection
    /// authorize` from the organisations the sign-in reaches; empty until
    /// then.
    #[serde(default)]
    pub tenant_id: String,
    /// Name of this system in references (`PartyRef.system`).
    #[serde(default = "default_system")]
    pub system: String,
    /// System that written contacts come from when their payload has an `id`
    /// but no `external_refs` (gives `ContactNumber` `<system>:<id>`).
    #[serde(default)]
    pub contact_source: Option<String>,
    /// Xero `TaxType` → rate in percent (e.g. `{"OUTPUT2": "20"}`).
    #[serde(default)]
    pub tax_types: Option<BTreeMap<String, String>>,
    /// Timeout of each request in milliseconds; the host's limit applies
    /// when absent.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

/// Xero's API, the one origin the connector calls. A sandbox is reached
/// through the connection's origin override (`--origin-override
/// https://api.xero.com=http://127.0.0.1:PORT`), which the host applies.
pub const API: &str = "https://api.xero.com";

fn default_system() -> String {
    "xero".into()
}

impl Config {
    fn api(&self, path: &str) -> Result<String, Error> {
        if self.tenant_id.trim().is_empty() {
            return Err(Error::config(
                "field `tenant_id` is not set: authorize the connection (`nexo connection authorize NAME`) to choose the organisation, or set it in the config",
            ));
        }
        Ok(format!("{API}/api.xro/2.0/{path}"))
    }

    /// A request with Xero's auth headers.
    fn request(&self, make: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        let mut r = make(self.api(path)?)
            .bearer_secret(TOKEN_SECRET)
            .header("xero-tenant-id", self.tenant_id.clone())
            .header("Accept", "application/json");
        if let Some(ms) = self.timeout_ms {
            r = r.timeout_ms(ms);
        }
        Ok(r)
    }

    /// TaxType → rate.
    fn tax_table(&self) -> Result<Vec<(String, Decimal)>, Error> {
        match &self.tax_types {
            None => Ok(vec![
                ("OUTPUT2".into(), Decimal::from(20)),
                ("RROUTPUT".into(), Decimal::from(5)),
                ("NONE".into(), Decimal::ZERO),
            ]),
            Some(map) => map
                .iter()
                .map(|(k, v)| {
                    v.parse::<Decimal>().map(|d| (k.clone(), d)).map_err(|e| {
                        Error::config(format!(
                            "field `tax_types.{k}`: `{v}` is not a decimal: {e}"
                        ))
                    })
                })
                .collect(),
        }
    }
}

/// The connector.
#[derive(Debug)]
pub struct Xero;

/// The streams, with the canonical type of each.
pub const STREAMS: [&str; 5] = ["contacts", "items", "invoices", "payments", "accounts"];

fn unknown_stream(stream: &str) -> Error {
    Error::unknown_stream(stream, &STREAMS)
}

impl Connector for Xero {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        ConnectorSpec::new(STREAMS).http_origin(API).secret(
            TOKEN_SECRET,
            "Xero OAuth 2.0 access token (Bearer)",
            [API],
        )
    }

    fn check(config: &Config) -> Result<(), Error> {
        config
            .request(Request::get, "Accounts")?
            .query("where", "Code==\"__nexo_check__\"")
            .send()?
            .error_for_status()?;
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        let info = |name: &str, schema: String, writable: bool| {
            let s = StreamInfo::new(name, schema)
                .primary_key(["id"])
                .cursor_field("updated_at");
            if writable { s.writable() } else { s }
        };
        Ok(vec![
            info("contacts", contact_schema().into(), true),
            info("items", read_back::<Product>().into(), true),
            info("invoices", invoice_schema().into(), true),
            info("payments", payment_schema().into(), true),
            info("accounts", json_schema::<Account>(), false),
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
            "contacts" | "items" | "invoices" | "payments" => write::batch(config, stream, batch),
            "accounts" => Err(Error::AccessDenied(format!(
                "stream {stream} is read-only in the Xero connector"
            ))),
            other => Err(unknown_stream(other)),
        }
    }
}

/// A written stream's schema: Xero keeps no field it has no column for,
/// so extra fields are not read back.
fn read_back<T: JsonSchema>() -> StreamSchema {
    StreamSchema::of::<T>().extras_not_read_back()
}

/// What Xero does to a written contact: its `Website` is read-only in
/// Xero's API (never sent, never compared).
pub fn contact_schema() -> StreamSchema {
    read_back::<Company>().derived("website")
}

/// What Xero does to a written invoice, so the host tells its read-back
/// from a person's edit: the customer comes back as its `ContactID` and a
/// line's product as its `ItemCode` (references of Xero's own), and
/// `external_refs` are not kept (the record is found by the marker in
/// `Reference`).
pub fn invoice_schema() -> StreamSchema {
    read_back::<Invoice>()
        .own_ids("customer")
        .own_ids("lines[].product")
        .not_read_back("external_refs")
}

/// What Xero does to a written payment: the invoice comes back as its
/// `InvoiceID`.
pub fn payment_schema() -> StreamSchema {
    read_back::<Payment>().own_ids("invoice")
}

nexo_sdk::export_connector!(Xero);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotated_schemas_name_only_fields_the_model_has() {
        assert!(invoice_schema().unknown_paths().is_empty());
        assert!(payment_schema().unknown_paths().is_empty());
    }
}

//! The canonical business model: the record shapes connectors emit and
//! mappers consume, so a mapping from "any CRM" to "any accounting system"
//! needs to know one vocabulary instead of every pair of systems.
//!
//! | type | stream | what |
//! |---|---|---|
//! | [`Contact`] | `contacts` | a person |
//! | [`Company`] | `companies` | an organisation |
//! | [`Product`] | `products` | an item for sale |
//! | [`Invoice`] | `invoices` | a sales invoice with lines |
//! | [`Payment`] | `payments` | money received against an invoice |
//! | [`Account`] | `accounts` | an account of the chart of accounts |
//! | [`JournalEntry`] | `journal_entries` | a balanced manual journal |
//!
//! Choices that apply throughout:
//!
//! - **Amounts are exact.** Every amount, price, rate and quantity is a
//!   [`Decimal`](rust_decimal::Decimal) and travels as a JSON string
//!   (`"12.50"`); a JSON number is refused, since most parsers have already
//!   turned it into a float. Money amounts must fit their [`Currency`]'s
//!   minor units; unit prices and quantities may be more precise.
//! - **Customers are a role**, not a type: see [`PartyRole`] and [`PartyRef`].
//! - **Identity.** `id` is the record's id in the system it comes from (absent
//!   for a record not created yet); [`ExternalRef`] (system + id) points at
//!   other records, and `external_refs` lists the same record elsewhere.
//! - **Unknown fields.** Entities keep top-level fields the model does not
//!   know in `extra` (flattened into the object), so a mapper can still reach
//!   a vendor's custom field; `extra` must not reuse a canonical field name.
//!   Nested values (lines, addresses, references) have no `extra` and ignore
//!   unknown fields: they are rarely extended, and a catch-all there would
//!   also swallow misspelt canonical fields without a trace.
//! - **Validation** is separate from parsing ([`Validate`]): a payload with
//!   the right shape but broken arithmetic still parses, so the error can name
//!   the field (`lines[1].line_amount: is 5.55 but … gives 5.56`).
//!
//! ```json
//! {"customer": {"kind": "company", "system": "xero", "id": "c-9"},
//!  "issue_date": "2024-03-01", "currency": "EUR", "status": "authorised",
//!  "lines": [{"description": "Consulting", "quantity": "2", "unit_price": "10.00",
//!             "tax_rate": "20", "line_amount": "20.00", "account_code": "200"}],
//!  "subtotal": "20.00", "total_tax": "4.00", "total": "24.00"}
//! ```

mod date;
mod error;
mod invoice;
mod ledger;
mod money;
mod party;
mod payment;
mod product;
mod reference;

pub use date::Date;
pub use error::ModelError;
pub use invoice::{Invoice, InvoiceLine, InvoiceStatus};
pub use ledger::{Account, AccountType, JournalEntry, JournalLine};
pub use money::Currency;
pub use party::{Address, Company, Contact, PartyRef, PartyRole};
pub use payment::Payment;
pub use product::Product;
pub use reference::ExternalRef;

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

use crate::Record;

/// Checks the rules JSON Schema cannot express: totals that add up, journals
/// that balance, ids that are not blank.
pub trait Validate {
    /// `Ok` if every rule holds, else the first broken one.
    fn validate(&self) -> Result<(), ModelError>;
}

/// A top-level canonical record: one record payload of a canonical stream.
pub trait Entity: Serialize + DeserializeOwned + JsonSchema + Validate {
    /// Name of the canonical stream holding this entity, e.g. `"invoices"`.
    const STREAM: &'static str;

    /// The record's payload, parsed and validated. Either failure is a
    /// [`Rejected`](crate::Error::Rejected) error naming the record.
    fn from_record(record: &Record) -> Result<Self, crate::Error> {
        let entity: Self = record.payload_as()?;
        entity.validate().map_err(|e| {
            crate::Error::Rejected(format!("record {}/{}: {e}", record.stream, record.id))
        })?;
        Ok(entity)
    }

    /// An upsert record `id` of [`STREAM`](Self::STREAM), after validating.
    fn to_record(&self, id: impl Into<String>) -> Result<Record, crate::Error> {
        let id = id.into();
        self.validate()
            .map_err(|e| crate::Error::Rejected(format!("record {}/{id}: {e}", Self::STREAM)))?;
        Record::upsert(Self::STREAM, id, self)
    }
}

/// The JSON Schema of `T` as JSON text (the same as [`crate::schema_of`]).
///
/// Amounts appear as `{"type": "string", "pattern": …}`, dates as
/// `{"type": "string", "format": "date"}`, currencies as an `enum` of codes.
pub fn json_schema<T: JsonSchema>() -> String {
    crate::schema_of::<T>()
}

/// Every canonical stream with the JSON Schema of its records, for
/// `Connector::discover`.
pub fn entity_schemas() -> Vec<(&'static str, String)> {
    fn entry<T: Entity>() -> (&'static str, String) {
        (T::STREAM, json_schema::<T>())
    }
    vec![
        entry::<Contact>(),
        entry::<Company>(),
        entry::<Product>(),
        entry::<Invoice>(),
        entry::<Payment>(),
        entry::<Account>(),
        entry::<JournalEntry>(),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn schema<T: JsonSchema>() -> Value {
        serde_json::from_str(&json_schema::<T>()).unwrap()
    }

    #[test]
    fn invoice_schema_has_its_properties_and_string_amounts() {
        let s = schema::<Invoice>();
        let props = s["properties"].as_object().unwrap();
        for p in [
            "id",
            "number",
            "customer",
            "issue_date",
            "due_date",
            "currency",
            "status",
            "lines",
            "subtotal",
            "total_tax",
            "total",
        ] {
            assert!(props.contains_key(p), "missing {p}");
        }
        for p in ["subtotal", "total_tax", "total"] {
            assert_eq!(props[p]["type"], "string", "{p}: {}", props[p]);
            assert!(props[p]["pattern"].is_string(), "{p}");
        }
        let required = s["required"].as_array().unwrap();
        for r in [
            "customer",
            "issue_date",
            "currency",
            "status",
            "subtotal",
            "total",
        ] {
            assert!(required.contains(&json!(r)), "{r} not required");
        }
        assert!(!required.contains(&json!("id")));
        // Unknown fields are allowed (they land in `extra`).
        assert_ne!(s["additionalProperties"], json!(false));
        let line = &s["$defs"]["InvoiceLine"]["properties"];
        for p in [
            "quantity",
            "unit_price",
            "discount",
            "tax_rate",
            "line_amount",
        ] {
            assert_eq!(line[p]["type"], "string", "{p}: {}", line[p]);
        }
        assert_eq!(s["$defs"]["Date"]["format"], "date");
        assert!(
            s["$defs"]["Currency"]["enum"]
                .as_array()
                .unwrap()
                .contains(&json!("EUR"))
        );
        let statuses = s["$defs"]["InvoiceStatus"].to_string();
        assert!(
            statuses.contains("authorised") && statuses.contains("voided"),
            "{statuses}"
        );
    }

    #[test]
    fn optional_amounts_are_strings_or_null() {
        let s = schema::<Product>();
        assert_eq!(s["properties"]["unit_price"]["type"], "string");
        let tax = &s["properties"]["tax_rate"];
        assert_eq!(tax["type"], json!(["string", "null"]), "{tax}");
        assert_eq!(s["properties"]["active"]["type"], "boolean");
    }

    #[test]
    fn every_entity_has_a_schema_and_a_distinct_stream() {
        let all = entity_schemas();
        let mut streams: Vec<_> = all.iter().map(|(s, _)| *s).collect();
        streams.sort_unstable();
        streams.dedup();
        assert_eq!(streams.len(), 7);
        for (stream, text) in all {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "object", "{stream}");
            assert!(
                v["properties"].as_object().unwrap().contains_key("id"),
                "{stream}"
            );
        }
        let ledger = schema::<JournalEntry>();
        assert_eq!(
            ledger["$defs"]["JournalLine"]["properties"]["amount"]["type"],
            "string"
        );
        assert_eq!(
            schema::<Payment>()["properties"]["amount"]["type"],
            "string"
        );
    }

    #[test]
    fn from_record_parses_validates_and_names_the_record() {
        let c = Contact::new("Ada", "Lovelace");
        let record = c.to_record("c-1").unwrap();
        assert_eq!(record.stream, "contacts");
        assert_eq!(Contact::from_record(&record).unwrap(), c);

        let bad = Record::upsert("contacts", "c-2", &json!({"email": "nope"})).unwrap();
        let e = Contact::from_record(&bad).unwrap_err();
        assert!(
            matches!(&e, crate::Error::Rejected(m) if m.contains("contacts/c-2") && m.contains("email")),
            "{e:?}"
        );
        let e = Company::new("").to_record("x").unwrap_err();
        assert!(
            matches!(&e, crate::Error::Rejected(m) if m.contains("companies/x: name")),
            "{e:?}"
        );
    }
}

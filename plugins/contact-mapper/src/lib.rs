//! Example Nexo mapper: CRM contacts → accounting customers.
//!
//! Pure transformation, as every mapper: it gets no network and no storage.
//! The mapping itself is the plain function [`map_contact`], so it can be
//! tested (and benchmarked) natively as well.

use nexo_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Mapper configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Destination stream, default `customers`.
    #[serde(default)]
    pub stream: Option<String>,
    /// Default currency of new customers (ISO 4217), default `EUR`.
    #[serde(default)]
    pub default_currency: Option<String>,
    /// Map only contacts at this lifecycle stage (e.g. `customer`).
    #[serde(default)]
    pub only_stage: Option<String>,
}

/// The CRM side (fields the mapper reads; others are ignored).
#[derive(Debug, Deserialize)]
pub struct CrmContact {
    /// CRM id.
    pub id: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// E-mail.
    pub email: String,
    /// Company.
    #[serde(default)]
    pub company: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Lifecycle stage.
    #[serde(default)]
    pub lifecycle_stage: Option<String>,
    /// Country code.
    #[serde(default)]
    pub country: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// Last change.
    pub updated_at: String,
}

/// The accounting side.
#[derive(Debug, Serialize)]
pub struct Customer {
    /// Display name: the company, or the person.
    pub name: String,
    /// Contact person.
    pub contact_person: String,
    /// E-mail, lower-cased.
    pub email: String,
    /// Phone, digits and `+` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Billing address.
    pub address: Address,
    /// Default currency.
    pub currency: String,
    /// Where the customer came from.
    pub source: SourceRef,
}

/// A postal address.
#[derive(Debug, Serialize)]
pub struct Address {
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO country code, upper-case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Reference to the source record.
#[derive(Debug, Serialize)]
pub struct SourceRef {
    /// System name.
    pub system: &'static str,
    /// Id there.
    pub id: String,
    /// Its modification time.
    pub updated_at: String,
}

/// Map one CRM contact record to a customer record; `None` when the
/// config filters it out.
pub fn map_contact(config: &Config, record: &Record) -> Result<Option<Record>, Error> {
    let c: CrmContact = record.payload_as()?;
    if let Some(stage) = &config.only_stage
        && c.lifecycle_stage.as_deref() != Some(stage.as_str())
    {
        return Ok(None);
    }
    if !c.email.contains('@') {
        return Err(Error::rejected(format!(
            "contact {}: `{}` is not an e-mail address",
            c.id, c.email
        )));
    }
    let person = format!("{} {}", c.first_name.trim(), c.last_name.trim());
    let customer = Customer {
        name: c
            .company
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| person.clone()),
        contact_person: person,
        email: c.email.trim().to_ascii_lowercase(),
        phone: c.phone.map(|p| {
            p.chars()
                .filter(|ch| ch.is_ascii_digit() || *ch == '+')
                .collect()
        }),
        address: Address {
            city: c.city,
            country: c.country.map(|s| s.to_ascii_uppercase()),
        },
        currency: config
            .default_currency
            .clone()
            .unwrap_or_else(|| "EUR".to_string()),
        source: SourceRef {
            system: "crm",
            id: c.id.clone(),
            updated_at: c.updated_at.clone(),
        },
    };
    let stream = config.stream.as_deref().unwrap_or("customers");
    let mut out = Record::upsert(stream, c.id, &customer)?;
    out.operation = record.operation;
    out.cursor = record.cursor.clone();
    Ok(Some(out))
}

/// The mapper.
#[derive(Debug)]
pub struct ContactToCustomer;

impl Mapper for ContactToCustomer {
    type Config = Config;

    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        let mut out = Vec::with_capacity(batch.len());
        for record in &batch {
            if let Some(r) = map_contact(config, record)? {
                out.push(r);
            }
        }
        Ok(out)
    }
}

nexo_sdk::export_mapper!(ContactToCustomer);

//! Example Nexo mapper: CRM contacts → canonical [`Contact`]s, the shape
//! every accounting connector understands.
//!
//! Pure transformation, as every mapper: it gets no network and no storage.
//! The mapping itself is the plain function [`map_contact`], so it can be
//! tested (and benchmarked) natively as well.

use nexo_sdk::model::{Address, Contact, Entity, ExternalRef, PartyRole};
use nexo_sdk::prelude::*;
use serde::Deserialize;

/// Mapper configuration. Its JSON Schema ships as `config.schema.json`
/// (named in `nexo-plugin.toml`), checked at `pipeline apply`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the source system in external references, default `crm`.
    #[serde(default)]
    pub system: Option<String>,
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
    /// Company name.
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

/// Map one CRM contact record to a canonical contact record; `None` when
/// the config filters it out. A contact whose data cannot be trusted (no
/// valid e-mail) is rejected, naming it.
pub fn map_contact(config: &Config, record: &Record) -> Result<Option<Record>, Error> {
    let c: CrmContact = record.payload_as()?;
    if let Some(stage) = &config.only_stage
        && c.lifecycle_stage.as_deref() != Some(stage.as_str())
    {
        return Ok(None);
    }
    let email = c.email.trim().to_ascii_lowercase();
    if !email.contains('@') {
        return Err(Error::rejected(format!(
            "contact {}: `{}` is not an e-mail address",
            c.id, c.email
        )));
    }
    let mut contact = Contact::new(c.first_name.trim(), c.last_name.trim());
    contact.email = Some(email);
    contact.phone = c.phone.map(|p| {
        p.chars()
            .filter(|ch| ch.is_ascii_digit() || *ch == '+')
            .collect()
    });
    let mut address = Address::default();
    address.city = c.city;
    address.country = c.country.map(|s| s.to_ascii_uppercase());
    contact.address = Some(address);
    if c.lifecycle_stage.as_deref() == Some("customer") {
        contact.roles.insert(PartyRole::Customer);
    }
    let system = config.system.as_deref().unwrap_or("crm");
    contact
        .external_refs
        .push(ExternalRef::new(system, c.id.clone()));
    if let Some(company) = c.company.filter(|s| !s.trim().is_empty()) {
        contact.extra.insert("company_name".into(), company.into());
    }
    contact.updated_at = Some(c.updated_at);
    let mut out = contact.to_record(c.id)?;
    out.operation = record.operation;
    out.cursor = record.cursor.clone();
    Ok(Some(out))
}

/// The mapper.
#[derive(Debug)]
pub struct CrmContactToContact;

impl Mapper for CrmContactToContact {
    type Config = Config;

    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        Ok(batch
            .iter()
            .map(|r| map_contact(config, r).into())
            .collect())
    }
}

nexo_sdk::export_mapper!(CrmContactToContact);

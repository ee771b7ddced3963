//! A won deal → its (first) company as a canonical [`Company`] with the
//! customer role, pointing back at the HubSpot company through
//! `external_refs`; `id` stays absent (the destination assigns it).

use std::collections::HashSet;

use nexo_sdk::model::{Address, Company, ExternalRef, PartyRole};

use crate::Config;
use crate::error::DealError;
use crate::hubspot::Deal;

/// The customer company of a won deal; `None` when this batch already
/// emitted the same company (two won deals of one customer).
pub(crate) fn company_of(
    config: &Config,
    deal: &Deal,
    id: &str,
    seen: &mut HashSet<String>,
) -> Result<Option<Company>, DealError> {
    let err = |field: &str, problem: String| DealError::new(id, field, problem);
    let hs = deal.associations.companies.first().ok_or_else(|| {
        err(
            "associations.companies",
            "a won deal needs an associated company to bill; associate one in HubSpot".into(),
        )
    })?;
    let company_id = hs.id.trim();
    if company_id.is_empty() {
        return Err(err(
            "associations.companies[0].id",
            "must not be empty".into(),
        ));
    }
    if !seen.insert(company_id.to_string()) {
        return Ok(None);
    }
    let at = "associations.companies[0].properties";
    let p = &hs.properties;
    let text = |name: &str| p.text(name, id, at);
    let name = text("name")?.ok_or_else(|| {
        err(
            &format!("{at}.name"),
            "the company has no name; a customer needs one".into(),
        )
    })?;
    let mut company = Company::new(name);
    company.roles.insert(PartyRole::Customer);
    company
        .external_refs
        .push(ExternalRef::new(&config.system, company_id));
    company.phone = text("phone")?.map(str::to_string);
    company.website = text("domain")?.map(|d| {
        if d.contains("://") {
            d.to_string()
        } else {
            format!("https://{d}")
        }
    });
    let mut address = Address::default();
    if let Some(street) = text("address")? {
        address.lines.push(street.to_string());
    }
    address.city = text("city")?.map(str::to_string);
    address.postal_code = text("zip")?.map(str::to_string);
    if let Some(country) = text("country")? {
        match country_code(config, country) {
            Some(code) => address.country = Some(code),
            // Not a code and not in the table: kept, not guessed.
            None => {
                company
                    .extra
                    .insert("country_name".into(), country.to_string().into());
            }
        }
    }
    if address != Address::default() {
        company.address = Some(address);
    }
    company.updated_at = text("hs_lastmodifieddate")?.map(str::to_string);
    Ok(Some(company))
}

/// The ISO code for a HubSpot country value: the config's table first, then
/// any two-letter value as is.
fn country_code(config: &Config, country: &str) -> Option<String> {
    if let Some(code) = config
        .country_codes
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(country))
        .map(|(_, code)| code.trim().to_ascii_uppercase())
    {
        return Some(code);
    }
    (country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| country.to_ascii_uppercase())
}

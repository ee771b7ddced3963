//! People and organisations: `Contact`, `Company`, and what they are to us.
//!
//! There is no separate `Customer` type. CRMs keep people and companies apart
//! while accounting systems call both "contacts" and flag them as customers
//! or suppliers; a role set on each party ([`PartyRole`]) maps cleanly both
//! ways. An invoice names its customer with a [`PartyRef`], which says
//! whether a person or a company is billed.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{optional_text, require_text};
use super::reference::check_identity;
use super::{Entity, ExternalRef, ModelError, Validate};

/// What a party is to the business; a party may have several roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PartyRole {
    /// Buys from us: can be invoiced.
    Customer,
    /// Sells to us: can send us bills.
    Supplier,
}

/// A postal address. Free text except the country code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Address {
    /// Street lines, first to last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// City or town.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State, province or county.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal or ZIP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `DE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Address {
    fn check_at(&self, at: &str) -> Result<(), ModelError> {
        if let Some(country) = &self.country
            && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(ModelError::Invalid {
                field: format!("{at}.country"),
                problem: format!(
                    "{country:?} is not an ISO 3166-1 alpha-2 code (two uppercase letters, e.g. \"DE\")"
                ),
            });
        }
        Ok(())
    }
}

/// A person, e.g. a CRM contact or an individual customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Contact {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same person in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number, as given (no format is imposed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// The company the person belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<ExternalRef>,
    /// Postal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// Roles, e.g. `["customer"]`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<PartyRole>,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Contact {
    /// A person with a first and last name and no other details.
    pub fn new(first_name: impl Into<String>, last_name: impl Into<String>) -> Self {
        Contact {
            first_name: Some(first_name.into()),
            last_name: Some(last_name.into()),
            ..Contact::default()
        }
    }

    /// Whether the person can be invoiced.
    pub fn is_customer(&self) -> bool {
        self.roles.contains(&PartyRole::Customer)
    }
}

impl Validate for Contact {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if !(has(&self.first_name) || has(&self.last_name) || has(&self.email)) {
            return Err(ModelError::Invalid {
                field: "first_name, last_name, email".into(),
                problem: "a contact needs a name or an email address".into(),
            });
        }
        check_email(self.email.as_deref())?;
        if let Some(company) = &self.company {
            company.check_at("company")?;
        }
        self.address
            .as_ref()
            .map_or(Ok(()), |a| a.check_at("address"))
    }
}

impl Entity for Contact {
    const STREAM: &'static str = "contacts";
}

/// An organisation: a customer's or supplier's business, or a CRM account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Company {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same company in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// Name, legal or trading.
    pub name: String,
    /// VAT or other tax registration number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_number: Option<String>,
    /// Main email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Main phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Web site URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// Postal (billing) address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// Roles, e.g. `["customer", "supplier"]`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<PartyRole>,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Company {
    /// A company with this name and no other details.
    pub fn new(name: impl Into<String>) -> Self {
        Company {
            name: name.into(),
            ..Company::default()
        }
    }

    /// Whether the company can be invoiced.
    pub fn is_customer(&self) -> bool {
        self.roles.contains(&PartyRole::Customer)
    }
}

impl Validate for Company {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        require_text(&self.name, || "name".into())?;
        optional_text(self.tax_number.as_deref(), || "tax_number".into())?;
        check_email(self.email.as_deref())?;
        self.address
            .as_ref()
            .map_or(Ok(()), |a| a.check_at("address"))
    }
}

impl Entity for Company {
    const STREAM: &'static str = "companies";
}

/// The party an invoice is addressed to: `{"kind": "company", "system": …, "id": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PartyRef {
    /// A contact (a person).
    Contact(ExternalRef),
    /// A company.
    Company(ExternalRef),
}

impl PartyRef {
    /// The referenced record, whatever its kind.
    pub fn external_ref(&self) -> &ExternalRef {
        match self {
            PartyRef::Contact(r) | PartyRef::Company(r) => r,
        }
    }

    pub(crate) fn check_at(&self, at: &str) -> Result<(), ModelError> {
        self.external_ref().check_at(at)
    }
}

/// A deliberately loose check (one `@`, something on each side, no spaces):
/// catches a phone number or name in the email field without rejecting the
/// unusual addresses real systems hold.
fn check_email(email: Option<&str>) -> Result<(), ModelError> {
    let Some(email) = email else { return Ok(()) };
    let ok = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        return Err(ModelError::Invalid {
            field: "email".into(),
            problem: format!("{email:?} is not an email address"),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(r: Result<(), ModelError>) -> String {
        r.unwrap_err().field().unwrap().to_string()
    }

    #[test]
    fn contact_round_trips_and_keeps_unknown_fields_in_extra() {
        let payload = json!({
            "id": "c-1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "roles": ["customer"],
            "company": {"system": "hubspot", "id": "77"},
            "hs_lead_status": "OPEN"
        });
        let c: Contact = serde_json::from_value(payload.clone()).unwrap();
        assert!(c.is_customer());
        assert_eq!(c.extra.get("hs_lead_status"), Some(&json!("OPEN")));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(serde_json::to_value(&c).unwrap(), payload);
    }

    #[test]
    fn contact_needs_a_name_or_email() {
        assert_eq!(
            field_of(Contact::default().validate()),
            "first_name, last_name, email"
        );
        let c = Contact {
            email: Some("a@b.example".into()),
            ..Contact::default()
        };
        assert!(c.validate().is_ok());
        assert!(Contact::new("Ada", "").validate().is_ok());
    }

    #[test]
    fn contact_rejects_bad_email_ids_and_country() {
        let mut c = Contact::new("Ada", "Lovelace");
        c.email = Some("+44 20 7946 0000".into());
        assert_eq!(field_of(c.validate()), "email");

        let mut c = Contact::new("Ada", "Lovelace");
        c.id = Some(String::new());
        assert_eq!(field_of(c.validate()), "id");

        let mut c = Contact::new("Ada", "Lovelace");
        c.company = Some(ExternalRef::new("hubspot", ""));
        assert_eq!(field_of(c.validate()), "company.id");

        let mut c = Contact::new("Ada", "Lovelace");
        c.address = Some(Address {
            country: Some("Germany".into()),
            ..Address::default()
        });
        assert_eq!(field_of(c.validate()), "address.country");
    }

    #[test]
    fn company_requires_a_name() {
        assert_eq!(field_of(Company::new(" ").validate()), "name");
        let mut c = Company::new("Acme GmbH");
        c.roles.insert(PartyRole::Customer);
        c.roles.insert(PartyRole::Supplier);
        assert!(c.validate().is_ok() && c.is_customer());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            json!({"name": "Acme GmbH", "roles": ["customer", "supplier"]})
        );
    }

    #[test]
    fn party_ref_is_tagged_by_kind() {
        let r = PartyRef::Company(ExternalRef::new("xero", "abc"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            json!({"kind": "company", "system": "xero", "id": "abc"})
        );
        assert_eq!(serde_json::from_value::<PartyRef>(json).unwrap(), r);
        assert!(
            serde_json::from_value::<PartyRef>(json!({"kind": "robot", "system": "x", "id": "1"}))
                .is_err()
        );
    }
}

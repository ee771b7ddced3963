//! `Payment`: money received against an invoice.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{exact_in, require_text};
use super::money::DecimalString;
use super::reference::check_identity;
use super::{Currency, Date, Entity, ExternalRef, ModelError, Validate};

/// A payment of (part of) an invoice into an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Payment {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same payment in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// The invoice paid.
    pub invoice: ExternalRef,
    /// Amount paid; greater than zero (a refund is not a negative payment).
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub amount: Decimal,
    /// Currency of `amount`; normally the invoice's.
    pub currency: Currency,
    /// Date the money was received.
    pub date: Date,
    /// Code of the bank or cash account the money went into.
    pub account_code: String,
    /// Bank reference or note, e.g. a transfer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Payment {
    /// A payment of `amount` against `invoice` into account `account_code`.
    pub fn new(
        invoice: ExternalRef,
        amount: Decimal,
        currency: Currency,
        date: Date,
        account_code: impl Into<String>,
    ) -> Self {
        Payment {
            id: None,
            external_refs: Vec::new(),
            invoice,
            amount,
            currency,
            date,
            account_code: account_code.into(),
            reference: None,
            updated_at: None,
            extra: Map::new(),
        }
    }
}

impl Validate for Payment {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        self.invoice.check_at("invoice")?;
        if self.amount <= Decimal::ZERO {
            return Err(ModelError::NotPositive {
                field: "amount".into(),
                value: self.amount,
            });
        }
        exact_in(self.amount, self.currency, || "amount".into())?;
        require_text(&self.account_code, || "account_code".into())
    }
}

impl Entity for Payment {
    const STREAM: &'static str = "payments";
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn payment() -> Payment {
        Payment::new(
            ExternalRef::new("xero", "inv-1"),
            d("29.56"),
            Currency::EUR,
            "2024-03-15".parse().unwrap(),
            "090",
        )
    }

    #[test]
    fn round_trips_with_the_amount_as_a_string() {
        let mut p = payment();
        p.reference = Some("SEPA 123".into());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            json!({
                "invoice": {"system": "xero", "id": "inv-1"},
                "amount": "29.56",
                "currency": "EUR",
                "date": "2024-03-15",
                "account_code": "090",
                "reference": "SEPA 123"
            })
        );
        assert_eq!(serde_json::from_value::<Payment>(json).unwrap(), p);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn amount_must_be_positive_and_in_minor_units() {
        for bad in ["0", "-1.00"] {
            let mut p = payment();
            p.amount = d(bad);
            assert_eq!(
                p.validate(),
                Err(ModelError::NotPositive {
                    field: "amount".into(),
                    value: d(bad)
                })
            );
        }
        let mut p = payment();
        p.currency = Currency::JPY;
        assert_eq!(p.validate().unwrap_err().field(), Some("amount"));
        p.amount = d("2956");
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn refs_and_account_are_required() {
        let mut p = payment();
        p.invoice.id.clear();
        assert_eq!(p.validate().unwrap_err().field(), Some("invoice.id"));
        let mut p = payment();
        p.account_code = String::new();
        assert_eq!(p.validate().unwrap_err().field(), Some("account_code"));
    }

    #[test]
    fn unknown_currency_is_refused_naming_the_code() {
        let mut json = serde_json::to_value(payment()).unwrap();
        json["currency"] = json!("EUD");
        let e = serde_json::from_value::<Payment>(json).unwrap_err();
        assert!(e.to_string().contains("\"EUD\""), "{e}");
    }
}

//! `ModelError`, and the small checks shared by every entity's `validate`, so
//! that each rule words its failure the same way everywhere.

use rust_decimal::Decimal;

use super::money::Currency;

/// A broken rule of the canonical model.
///
/// Every variant about a record names the field path (`lines[2].line_amount`,
/// `customer.id`) in the form the JSON payload uses, so the message can be
/// shown as is in a dead-letter entry. Converted into
/// [`Error::Rejected`](crate::Error::Rejected): only the one record is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A required id, code or name is empty or only whitespace.
    #[error("{field}: must not be empty")]
    Empty {
        /// Path of the field.
        field: String,
    },
    /// An amount differs from what its parts compute to.
    #[error("{field}: is {actual} but {rule} gives {expected}")]
    Mismatch {
        /// Path of the field.
        field: String,
        /// The value in the record.
        actual: Decimal,
        /// The value the rule computes.
        expected: Decimal,
        /// The rule, e.g. `quantity × unit_price − discount`.
        rule: &'static str,
    },
    /// An amount that must be above zero is not.
    #[error("{field}: must be greater than zero, got {value}")]
    NotPositive {
        /// Path of the field.
        field: String,
        /// The value in the record.
        value: Decimal,
    },
    /// An amount or rate that must not be negative is.
    #[error("{field}: must not be negative, got {value}")]
    Negative {
        /// Path of the field.
        field: String,
        /// The value in the record.
        value: Decimal,
    },
    /// A money amount has more decimal places than its currency has minor units.
    #[error(
        "{field}: {value} has more decimal places than {currency} allows ({}); round it",
        currency.minor_units()
    )]
    TooPrecise {
        /// Path of the field.
        field: String,
        /// The value in the record.
        value: Decimal,
        /// The record's currency.
        currency: Currency,
    },
    /// A journal entry's debits and credits differ.
    #[error("{field}: debits {debits} do not equal credits {credits}; the entry must balance")]
    Unbalanced {
        /// Path of the field.
        field: String,
        /// Sum of the positive (debit) amounts.
        debits: Decimal,
        /// Sum of the negative (credit) amounts, as a positive number.
        credits: Decimal,
    },
    /// A computation left the range of `Decimal` (about ±7.9 × 10²⁸).
    #[error("{field}: amount out of range (arithmetic overflow)")]
    Overflow {
        /// Path of the field.
        field: String,
    },
    /// Any other broken rule, described in words.
    #[error("{field}: {problem}")]
    Invalid {
        /// Path of the field (or fields, comma-separated).
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A currency code that is not three uppercase ASCII letters.
    #[error("currency code {code:?} is not three uppercase ASCII letters (ISO 4217, e.g. \"EUR\")")]
    MalformedCurrency {
        /// The code as given.
        code: String,
    },
    /// A well-formed currency code that is not in the supported list.
    #[error("currency code {code:?} is not one of the ISO 4217 currencies Nexo supports")]
    UnknownCurrency {
        /// The code as given.
        code: String,
    },
    /// A date that is not a real `YYYY-MM-DD` calendar date.
    #[error("date {value:?}: {problem}")]
    InvalidDate {
        /// The date as given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl ModelError {
    /// The path of the offending field, when the error is about a record field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ModelError::Empty { field }
            | ModelError::Mismatch { field, .. }
            | ModelError::NotPositive { field, .. }
            | ModelError::Negative { field, .. }
            | ModelError::TooPrecise { field, .. }
            | ModelError::Unbalanced { field, .. }
            | ModelError::Overflow { field }
            | ModelError::Invalid { field, .. } => Some(field),
            ModelError::MalformedCurrency { .. }
            | ModelError::UnknownCurrency { .. }
            | ModelError::InvalidDate { .. } => None,
        }
    }
}

impl From<ModelError> for crate::Error {
    fn from(e: ModelError) -> Self {
        crate::Error::Rejected(e.to_string())
    }
}

/// `prefix.field`, or `field` alone at the top level.
pub(crate) fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// A required text value must hold something other than whitespace.
pub(crate) fn require_text(value: &str, field: impl FnOnce() -> String) -> Result<(), ModelError> {
    if value.trim().is_empty() {
        return Err(ModelError::Empty { field: field() });
    }
    Ok(())
}

/// An optional id or code may be absent, but not present and blank.
pub(crate) fn optional_text(
    value: Option<&str>,
    field: impl FnOnce() -> String,
) -> Result<(), ModelError> {
    value.map_or(Ok(()), |v| require_text(v, field))
}

/// Rates, discounts and prices that must not be below zero.
pub(crate) fn non_negative(
    value: Decimal,
    field: impl FnOnce() -> String,
) -> Result<(), ModelError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(ModelError::Negative {
            field: field(),
            value,
        });
    }
    Ok(())
}

/// A money amount must be expressible in the currency's minor units.
pub(crate) fn exact_in(
    value: Decimal,
    currency: Currency,
    field: impl FnOnce() -> String,
) -> Result<(), ModelError> {
    if !currency.is_exact(value) {
        return Err(ModelError::TooPrecise {
            field: field(),
            value,
            currency,
        });
    }
    Ok(())
}

/// Sums amounts without the panic `Decimal`'s `+` has on overflow.
pub(crate) fn checked_sum(
    values: impl IntoIterator<Item = Decimal>,
    field: impl Fn() -> String,
) -> Result<Decimal, ModelError> {
    values.into_iter().try_fold(Decimal::ZERO, |acc, v| {
        acc.checked_add(v)
            .ok_or_else(|| ModelError::Overflow { field: field() })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_the_values() {
        let e = ModelError::Mismatch {
            field: "lines[0].line_amount".into(),
            actual: Decimal::new(1000, 2),
            expected: Decimal::new(999, 2),
            rule: "quantity × unit_price − discount",
        };
        assert_eq!(
            e.to_string(),
            "lines[0].line_amount: is 10.00 but quantity × unit_price − discount gives 9.99"
        );
        assert_eq!(e.field(), Some("lines[0].line_amount"));
        let e = ModelError::TooPrecise {
            field: "amount".into(),
            value: Decimal::new(15, 1),
            currency: Currency::JPY,
        };
        assert!(e.to_string().contains("JPY allows (0)"), "{e}");
    }

    #[test]
    fn model_errors_reject_only_the_record() {
        let e: crate::Error = ModelError::Empty {
            field: "sku".into(),
        }
        .into();
        assert_eq!(e, crate::Error::Rejected("sku: must not be empty".into()));
        assert!(!e.is_retryable());
    }

    #[test]
    fn checks_accept_good_and_reject_bad_values() {
        assert!(require_text("x", || "f".into()).is_ok());
        assert_eq!(
            require_text("  ", || "f".into()),
            Err(ModelError::Empty { field: "f".into() })
        );
        assert!(optional_text(None, || "f".into()).is_ok());
        assert!(optional_text(Some(""), || "f".into()).is_err());
        assert!(non_negative(Decimal::ZERO, || "f".into()).is_ok());
        assert!(non_negative(Decimal::NEGATIVE_ONE, || "f".into()).is_err());
        assert!(checked_sum([Decimal::MAX, Decimal::ONE], || "f".into()).is_err());
        assert_eq!(path("", "id"), "id");
        assert_eq!(path("customer", "id"), "customer.id");
    }
}

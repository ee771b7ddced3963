//! The general ledger: the chart of accounts (`Account`) and manual journal
//! entries (`JournalEntry`) that must balance.
//!
//! Journal lines carry one signed amount, debits positive and credits
//! negative (as Xero does), so "balanced" is simply "sums to zero"; systems
//! with separate debit and credit columns map through
//! [`JournalLine::debit`] / [`JournalLine::credit`].

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{checked_sum, exact_in, require_text};
use super::money::DecimalString;
use super::reference::check_identity;
use super::{Currency, Date, Entity, ExternalRef, ModelError, Validate};

fn active_by_default() -> bool {
    true
}

/// The five classes of account of double-entry bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccountType {
    /// What the business owns (bank, receivables).
    Asset,
    /// What it owes (payables, tax due).
    Liability,
    /// The owners' stake.
    Equity,
    /// Income (sales).
    Revenue,
    /// Costs.
    Expense,
}

/// An account of the chart of accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Account {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same account in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// Account code, e.g. `"200"`: what lines and payments refer to.
    pub code: String,
    /// Account name.
    pub name: String,
    /// Class of account.
    #[serde(rename = "type")]
    pub account_type: AccountType,
    /// Currency the account is kept in; absent means the base currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// Whether postings are allowed (`false`: archived).
    #[serde(default = "active_by_default")]
    pub active: bool,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Account {
    /// An active account in the base currency.
    pub fn new(
        code: impl Into<String>,
        name: impl Into<String>,
        account_type: AccountType,
    ) -> Self {
        Account {
            id: None,
            external_refs: Vec::new(),
            code: code.into(),
            name: name.into(),
            account_type,
            currency: None,
            active: true,
            updated_at: None,
            extra: Map::new(),
        }
    }
}

impl Validate for Account {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        require_text(&self.code, || "code".into())?;
        require_text(&self.name, || "name".into())
    }
}

impl Entity for Account {
    const STREAM: &'static str = "accounts";
}

/// One line of a journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct JournalLine {
    /// Code of the account posted to.
    pub account_code: String,
    /// Signed amount: positive debits, negative credits.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub amount: Decimal,
    /// Line text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl JournalLine {
    /// A debit of `amount` (given as a positive number) to `account_code`.
    pub fn debit(account_code: impl Into<String>, amount: Decimal) -> Self {
        JournalLine {
            account_code: account_code.into(),
            amount: amount.abs(),
            description: None,
        }
    }

    /// A credit of `amount` (given as a positive number) to `account_code`.
    pub fn credit(account_code: impl Into<String>, amount: Decimal) -> Self {
        JournalLine {
            account_code: account_code.into(),
            amount: -amount.abs(),
            description: None,
        }
    }

    /// Whether the line is a debit (a zero line counts as neither).
    pub fn is_debit(&self) -> bool {
        self.amount > Decimal::ZERO
    }
}

/// A manual journal entry; its lines must sum to zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct JournalEntry {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same entry in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// Posting date.
    pub date: Date,
    /// Narration: why the entry was made.
    #[serde(default)]
    pub description: String,
    /// Currency of every line.
    pub currency: Currency,
    /// The lines; at least two.
    pub lines: Vec<JournalLine>,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl JournalEntry {
    /// An entry with these lines.
    pub fn new(
        date: Date,
        description: impl Into<String>,
        currency: Currency,
        lines: Vec<JournalLine>,
    ) -> Self {
        JournalEntry {
            id: None,
            external_refs: Vec::new(),
            date,
            description: description.into(),
            currency,
            lines,
            updated_at: None,
            extra: Map::new(),
        }
    }

    /// Sums of the debits and of the credits (the latter as a positive number).
    pub fn totals(&self) -> Result<(Decimal, Decimal), ModelError> {
        let debits = checked_sum(
            self.lines
                .iter()
                .map(|l| l.amount)
                .filter(|a| *a > Decimal::ZERO),
            || "lines".into(),
        )?;
        let credits = checked_sum(
            self.lines
                .iter()
                .map(|l| l.amount)
                .filter(|a| *a < Decimal::ZERO),
            || "lines".into(),
        )?;
        Ok((debits, -credits))
    }
}

impl Validate for JournalEntry {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        if self.lines.len() < 2 {
            return Err(ModelError::Invalid {
                field: "lines".into(),
                problem: format!(
                    "a journal entry needs at least two lines, got {}",
                    self.lines.len()
                ),
            });
        }
        for (i, line) in self.lines.iter().enumerate() {
            require_text(&line.account_code, || format!("lines[{i}].account_code"))?;
            exact_in(line.amount, self.currency, || format!("lines[{i}].amount"))?;
        }
        let (debits, credits) = self.totals()?;
        if debits != credits {
            return Err(ModelError::Unbalanced {
                field: "lines".into(),
                debits,
                credits,
            });
        }
        Ok(())
    }
}

impl Entity for JournalEntry {
    const STREAM: &'static str = "journal_entries";
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn entry() -> JournalEntry {
        JournalEntry::new(
            "2024-12-31".parse().unwrap(),
            "Accrue December rent",
            Currency::GBP,
            vec![
                JournalLine::debit("400", d("1000.00")),
                JournalLine::credit("800", d("600.10")),
                JournalLine::credit("801", d("399.90")),
            ],
        )
    }

    #[test]
    fn balanced_entry_validates_and_round_trips() {
        let e = entry();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.totals().unwrap(), (d("1000.00"), d("1000.00")));
        assert!(e.lines[0].is_debit() && !e.lines[1].is_debit());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json["lines"][1],
            json!({"account_code": "800", "amount": "-600.10"})
        );
        assert_eq!(serde_json::from_value::<JournalEntry>(json).unwrap(), e);
    }

    #[test]
    fn unbalanced_entry_is_rejected_with_both_sums() {
        let mut e = entry();
        e.lines[2].amount = d("-399.89");
        assert_eq!(
            e.validate(),
            Err(ModelError::Unbalanced {
                field: "lines".into(),
                debits: d("1000.00"),
                credits: d("999.99"),
            })
        );
    }

    #[test]
    fn line_rules_name_the_line() {
        let mut e = entry();
        e.lines[1].account_code = " ".into();
        assert_eq!(
            e.validate().unwrap_err().field(),
            Some("lines[1].account_code")
        );
        let mut e = entry();
        e.lines[0].amount = d("1000.001");
        assert_eq!(e.validate().unwrap_err().field(), Some("lines[0].amount"));
        let mut e = entry();
        e.lines.truncate(1);
        assert_eq!(e.validate().unwrap_err().field(), Some("lines"));
    }

    #[test]
    fn account_serialises_its_type_and_requires_code_and_name() {
        let a = Account::new("200", "Sales", AccountType::Revenue);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            json!({"code": "200", "name": "Sales", "type": "revenue", "active": true})
        );
        assert_eq!(serde_json::from_value::<Account>(json).unwrap(), a);
        assert_eq!(a.validate(), Ok(()));
        let bad = Account::new("", "Sales", AccountType::Revenue);
        assert_eq!(bad.validate().unwrap_err().field(), Some("code"));
        let bad = Account::new("200", "", AccountType::Revenue);
        assert_eq!(bad.validate().unwrap_err().field(), Some("name"));
    }
}

//! `Invoice`: a sales invoice with lines and totals that must add up exactly,
//! and the helpers that make them add up.
//!
//! Amounts are tax-exclusive: `line_amount = quantity × unit_price − discount`,
//! rounded to the currency's minor units (halves away from zero). A mapper
//! reading a system that stores tax-inclusive prices converts them first.
//! `validate` does not check `total_tax` against the lines' tax rates, because
//! systems round tax per line or per invoice and both are legitimate;
//! [`Invoice::recompute_totals`] rounds per line.

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{checked_sum, exact_in, non_negative, optional_text, require_text};
use super::money::DecimalString;
use super::reference::check_identity;
use super::{Currency, Date, Entity, ExternalRef, ModelError, PartyRef, Validate};

/// Where an invoice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvoiceStatus {
    /// Being prepared; may change freely.
    Draft,
    /// Awaiting approval.
    Submitted,
    /// Approved and owed.
    Authorised,
    /// Fully paid.
    Paid,
    /// Cancelled; owes nothing.
    Voided,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct InvoiceLine {
    /// Line text; may be empty only when `product` is set.
    #[serde(default)]
    pub description: String,
    /// Number of units; negative for a credited line.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub quantity: Decimal,
    /// Price of one unit, excluding tax; may be more precise than the currency.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub unit_price: Decimal,
    /// Discount on the line as an amount (not a percentage); `"0"` if absent.
    #[serde(default, with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub discount: Decimal,
    /// Tax rate in percent, e.g. `"20"` for 20 %; `"0"` if absent.
    #[serde(default, with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub tax_rate: Decimal,
    /// `quantity × unit_price − discount`, rounded to the currency; excludes tax.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub line_amount: Decimal,
    /// Revenue account the line posts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_code: Option<String>,
    /// The product sold, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ExternalRef>,
}

const LINE_RULE: &str = "quantity × unit_price − discount";

impl InvoiceLine {
    /// A line without discount or tax; `line_amount` is set by
    /// [`Invoice::recompute_totals`].
    pub fn new(description: impl Into<String>, quantity: Decimal, unit_price: Decimal) -> Self {
        InvoiceLine {
            description: description.into(),
            quantity,
            unit_price,
            discount: Decimal::ZERO,
            tax_rate: Decimal::ZERO,
            line_amount: Decimal::ZERO,
            account_code: None,
            product: None,
        }
    }

    /// The same line with a tax rate in percent.
    pub fn with_tax_rate(mut self, percent: Decimal) -> Self {
        self.tax_rate = percent;
        self
    }

    /// The same line with a discount amount.
    pub fn with_discount(mut self, amount: Decimal) -> Self {
        self.discount = amount;
        self
    }

    /// The same line posted to this account.
    pub fn with_account_code(mut self, code: impl Into<String>) -> Self {
        self.account_code = Some(code.into());
        self
    }

    /// The same line for this product.
    pub fn with_product(mut self, product: ExternalRef) -> Self {
        self.product = Some(product);
        self
    }

    /// What `line_amount` must be in `currency`.
    pub fn expected_amount(&self, currency: Currency) -> Result<Decimal, ModelError> {
        self.amount_at(currency, || "line_amount".into())
    }

    /// The line's tax in `currency`: `line_amount × tax_rate / 100`, rounded.
    pub fn tax_amount(&self, currency: Currency) -> Result<Decimal, ModelError> {
        self.line_amount
            .checked_mul(self.tax_rate)
            .and_then(|t| t.checked_div(Decimal::ONE_HUNDRED))
            .map(|t| currency.round(t))
            .ok_or_else(|| ModelError::Overflow {
                field: "tax_rate".into(),
            })
    }

    fn amount_at(
        &self,
        currency: Currency,
        field: impl Fn() -> String,
    ) -> Result<Decimal, ModelError> {
        self.quantity
            .checked_mul(self.unit_price)
            .and_then(|gross| gross.checked_sub(self.discount))
            .map(|net| currency.round(net))
            .ok_or_else(|| ModelError::Overflow { field: field() })
    }

    fn check_at(&self, at: &str, currency: Currency) -> Result<(), ModelError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.product.is_none() {
            require_text(&self.description, || field("description"))?;
        }
        non_negative(self.discount, || field("discount"))?;
        non_negative(self.tax_rate, || field("tax_rate"))?;
        let expected = self.amount_at(currency, || field("line_amount"))?;
        if self.line_amount != expected {
            return Err(ModelError::Mismatch {
                field: field("line_amount"),
                actual: self.line_amount,
                expected,
                rule: LINE_RULE,
            });
        }
        optional_text(self.account_code.as_deref(), || field("account_code"))?;
        match &self.product {
            Some(p) => p.check_at(&field("product")),
            None => Ok(()),
        }
    }
}

/// A sales invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Invoice {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same invoice in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// Invoice number shown to the customer; absent while the system has not
    /// assigned one yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Who is billed.
    pub customer: PartyRef,
    /// Date of issue.
    pub issue_date: Date,
    /// Payment due date; not before `issue_date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<Date>,
    /// Currency of every amount on the invoice.
    pub currency: Currency,
    /// Life-cycle status.
    pub status: InvoiceStatus,
    /// Customer's reference, e.g. a purchase order number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The lines, in order.
    #[serde(default)]
    pub lines: Vec<InvoiceLine>,
    /// Sum of the line amounts (tax-exclusive).
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub subtotal: Decimal,
    /// Total tax.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub total_tax: Decimal,
    /// `subtotal + total_tax`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub total: Decimal,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Invoice {
    /// A draft invoice without lines; add lines, then call
    /// [`recompute_totals`](Self::recompute_totals).
    pub fn new(customer: PartyRef, issue_date: Date, currency: Currency) -> Self {
        Invoice {
            id: None,
            external_refs: Vec::new(),
            number: None,
            customer,
            issue_date,
            due_date: None,
            currency,
            status: InvoiceStatus::Draft,
            reference: None,
            lines: Vec::new(),
            subtotal: Decimal::ZERO,
            total_tax: Decimal::ZERO,
            total: Decimal::ZERO,
            updated_at: None,
            extra: Map::new(),
        }
    }

    /// Sets every `line_amount`, then `subtotal`, `total_tax` (each line's
    /// tax rounded, then summed) and `total`, so the invoice validates. On
    /// error (overflow) the invoice is left unchanged.
    pub fn recompute_totals(&mut self) -> Result<(), ModelError> {
        let currency = self.currency;
        let mut lines = self.lines.clone();
        for (i, line) in lines.iter_mut().enumerate() {
            line.line_amount = line.amount_at(currency, || format!("lines[{i}].line_amount"))?;
        }
        let subtotal = checked_sum(lines.iter().map(|l| l.line_amount), || "subtotal".into())?;
        let taxes = lines
            .iter()
            .map(|l| l.tax_amount(currency))
            .collect::<Result<Vec<_>, _>>()?;
        let total_tax = checked_sum(taxes, || "total_tax".into())?;
        let total = subtotal
            .checked_add(total_tax)
            .ok_or_else(|| ModelError::Overflow {
                field: "total".into(),
            })?;
        self.lines = lines;
        self.subtotal = subtotal;
        self.total_tax = total_tax;
        self.total = total;
        Ok(())
    }
}

impl Validate for Invoice {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        optional_text(self.number.as_deref(), || "number".into())?;
        self.customer.check_at("customer")?;
        if let Some(due) = self.due_date
            && due < self.issue_date
        {
            return Err(ModelError::Invalid {
                field: "due_date".into(),
                problem: format!("{due} is before the issue date {}", self.issue_date),
            });
        }
        for (i, line) in self.lines.iter().enumerate() {
            line.check_at(&format!("lines[{i}]"), self.currency)?;
        }
        let lines_sum = checked_sum(self.lines.iter().map(|l| l.line_amount), || {
            "subtotal".into()
        })?;
        if self.subtotal != lines_sum {
            return Err(ModelError::Mismatch {
                field: "subtotal".into(),
                actual: self.subtotal,
                expected: lines_sum,
                rule: "the sum of the line amounts",
            });
        }
        exact_in(self.total_tax, self.currency, || "total_tax".into())?;
        let total =
            self.subtotal
                .checked_add(self.total_tax)
                .ok_or_else(|| ModelError::Overflow {
                    field: "total".into(),
                })?;
        if self.total != total {
            return Err(ModelError::Mismatch {
                field: "total".into(),
                actual: self.total,
                expected: total,
                rule: "subtotal + total_tax",
            });
        }
        Ok(())
    }
}

impl Entity for Invoice {
    const STREAM: &'static str = "invoices";
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn customer() -> PartyRef {
        PartyRef::Company(ExternalRef::new("xero", "c-9"))
    }

    /// 2 × 10.00 at 20 % and 1 × 5.555 at 0 %: 20.00 + 5.56 = 25.56, tax 4.00.
    fn invoice() -> Invoice {
        let mut inv = Invoice::new(customer(), "2024-03-01".parse().unwrap(), Currency::EUR);
        inv.number = Some("INV-001".into());
        inv.due_date = Some("2024-03-31".parse().unwrap());
        inv.lines.push(
            InvoiceLine::new("Consulting", d("2"), d("10.00"))
                .with_tax_rate(d("20"))
                .with_account_code("200"),
        );
        inv.lines.push(
            InvoiceLine::new("", d("1"), d("5.555"))
                .with_product(ExternalRef::new("xero", "item-1")),
        );
        inv.recompute_totals().unwrap();
        inv
    }

    fn field_of(inv: &Invoice) -> String {
        inv.validate().unwrap_err().field().unwrap().to_string()
    }

    #[test]
    fn recompute_makes_a_valid_invoice() {
        let inv = invoice();
        assert_eq!(inv.lines[0].line_amount, d("20.00"));
        assert_eq!(inv.lines[1].line_amount, d("5.56"));
        assert_eq!(inv.subtotal, d("25.56"));
        assert_eq!(inv.total_tax, d("4.00"));
        assert_eq!(inv.total, d("29.56"));
        assert_eq!(inv.validate(), Ok(()));
    }

    #[test]
    fn json_round_trip_keeps_amounts_as_exact_strings() {
        let inv = invoice();
        let json = serde_json::to_value(&inv).unwrap();
        assert_eq!(json["total"], json!("29.56"));
        assert_eq!(json["lines"][0]["unit_price"], json!("10.00"));
        assert_eq!(
            json["customer"],
            json!({"kind": "company", "system": "xero", "id": "c-9"})
        );
        assert_eq!(json["issue_date"], json!("2024-03-01"));
        assert_eq!(json["status"], json!("draft"));
        let back: Invoice = serde_json::from_value(json).unwrap();
        assert_eq!(back, inv);
    }

    #[test]
    fn tenths_add_up_exactly() {
        // With f64, 0.1 + 0.2 != 0.3 and this invoice would fail validation.
        let payload = json!({
            "customer": {"kind": "contact", "system": "crm", "id": "1"},
            "issue_date": "2024-01-01",
            "currency": "USD",
            "status": "authorised",
            "lines": [
                {"description": "a", "quantity": "1", "unit_price": "0.1", "line_amount": "0.1"},
                {"description": "b", "quantity": "1", "unit_price": "0.2", "line_amount": "0.2"}
            ],
            "subtotal": "0.3",
            "total_tax": "0",
            "total": "0.30",
            "BrandingThemeID": "x"
        });
        let inv: Invoice = serde_json::from_value(payload).unwrap();
        assert_eq!(inv.validate(), Ok(()));
        assert_eq!(inv.extra.get("BrandingThemeID"), Some(&json!("x")));
        assert_eq!(inv.lines[0].discount, Decimal::ZERO);
    }

    #[test]
    fn amounts_as_json_numbers_are_refused() {
        let mut json = serde_json::to_value(invoice()).unwrap();
        json["total"] = json!(29.56);
        let e = serde_json::from_value::<Invoice>(json).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn line_amount_rounds_to_the_currency() {
        let mut inv = Invoice::new(customer(), "2024-01-01".parse().unwrap(), Currency::JPY);
        inv.lines
            .push(InvoiceLine::new("x", d("3"), d("33.5")).with_tax_rate(d("10")));
        inv.recompute_totals().unwrap();
        assert_eq!(inv.lines[0].line_amount, d("101")); // 100.5 rounds up
        assert_eq!(inv.total_tax, d("10")); // 10.1 rounds down
        assert_eq!(inv.total, d("111"));
        inv.lines[0].line_amount = d("100.5");
        inv.subtotal = d("100.5");
        inv.total = d("110.5");
        let e = inv.validate().unwrap_err();
        assert_eq!(
            e,
            ModelError::Mismatch {
                field: "lines[0].line_amount".into(),
                actual: d("100.5"),
                expected: d("101"),
                rule: LINE_RULE,
            }
        );
    }

    #[test]
    fn discount_is_subtracted_before_rounding() {
        let line = InvoiceLine::new("x", d("3"), d("3.333")).with_discount(d("0.004"));
        assert_eq!(line.expected_amount(Currency::EUR).unwrap(), d("10.00")); // 9.995
    }

    #[test]
    fn each_rule_names_its_field() {
        type Breaker = fn(&mut Invoice);
        let cases: [(&str, Breaker); 13] = [
            ("id", |i| i.id = Some(" ".into())),
            ("number", |i| i.number = Some(String::new())),
            ("customer.id", |i| {
                i.customer = PartyRef::Contact(ExternalRef::new("crm", ""))
            }),
            ("due_date", |i| {
                i.due_date = Some("2024-02-29".parse().unwrap())
            }),
            ("lines[0].description", |i| i.lines[0].description.clear()),
            ("lines[1].discount", |i| i.lines[1].discount = d("-1")),
            ("lines[0].tax_rate", |i| i.lines[0].tax_rate = d("-20")),
            ("lines[1].line_amount", |i| {
                i.lines[1].line_amount = d("5.55")
            }),
            ("lines[0].account_code", |i| {
                i.lines[0].account_code = Some(String::new())
            }),
            ("lines[1].product.system", |i| {
                i.lines[1].product = Some(ExternalRef::new("", "x"))
            }),
            ("subtotal", |i| i.subtotal = d("25.55")),
            ("total_tax", |i| {
                i.total_tax = d("4.001");
                i.total = d("29.561");
            }),
            ("total", |i| i.total = d("29.57")),
        ];
        for (field, break_it) in cases {
            let mut inv = invoice();
            break_it(&mut inv);
            assert_eq!(field_of(&inv), field, "{:?}", inv.validate());
        }
    }

    #[test]
    fn mismatch_message_shows_both_values() {
        let mut inv = invoice();
        inv.total = d("30.00");
        assert_eq!(
            inv.validate().unwrap_err().to_string(),
            "total: is 30.00 but subtotal + total_tax gives 29.56"
        );
    }

    #[test]
    fn recompute_leaves_the_invoice_alone_on_overflow() {
        let mut inv = invoice();
        inv.lines
            .push(InvoiceLine::new("huge", Decimal::MAX, d("2")));
        let before = inv.clone();
        let e = inv.recompute_totals().unwrap_err();
        assert_eq!(e.field(), Some("lines[2].line_amount"));
        assert_eq!(inv, before);
    }
}

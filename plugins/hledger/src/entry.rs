//! Journal entries as the connector builds them from canonical invoices and
//! payments: balanced by construction, and checked again with exact decimal
//! arithmetic before anything is sent, because hledger-web appends an
//! unbalanced transaction without complaint and the journal then no longer
//! loads.

use nexo_sdk::model::{Invoice, InvoiceStatus, ModelError, Payment, Validate};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::Config;

/// Why a record cannot become a journal transaction; always about that
/// record only, so it becomes a `rejected` outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Debits and credits differ: hledger would refuse to load the journal.
    #[error(
        "the journal transaction would not balance: debits {debits} ≠ credits {credits} \
         (difference {difference}); check that total = subtotal + total_tax and that \
         subtotal is the sum of the line amounts; nothing was written"
    )]
    Unbalanced {
        /// Sum of the positive postings.
        debits: Decimal,
        /// Sum of the negative postings, as a positive number.
        credits: Decimal,
        /// `debits − credits`.
        difference: Decimal,
    },
    /// The payload breaks a rule of the canonical model.
    #[error("{0}; nothing was written")]
    Model(#[from] ModelError),
    /// The payload is not a JSON object of the stream's canonical shape.
    #[error("the payload is not a canonical {kind}: {problem}")]
    Shape {
        /// `invoice` or `payment`.
        kind: &'static str,
        /// What serde said.
        problem: String,
    },
    /// An amount cannot be added up without overflow.
    #[error("amounts out of range (arithmetic overflow)")]
    Overflow,
    /// Anything else that makes the record unpostable.
    #[error("{0}")]
    Invalid(String),
}

impl From<EntryError> for nexo_sdk::Error {
    fn from(e: EntryError) -> Self {
        nexo_sdk::Error::Rejected(e.to_string())
    }
}

/// The kind of business document a Nexo transaction posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sales invoice (stream `invoices`).
    Invoice,
    /// A payment received (stream `payments`).
    Payment,
}

impl Kind {
    /// The `nexo-kind` tag value.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Invoice => "invoice",
            Kind::Payment => "payment",
        }
    }

    /// The stream of this kind.
    pub fn stream(self) -> &'static str {
        match self {
            Kind::Invoice => "invoices",
            Kind::Payment => "payments",
        }
    }

    /// The kind of a stream, if it is a document stream.
    pub fn of_stream(stream: &str) -> Option<Kind> {
        match stream {
            "invoices" => Some(Kind::Invoice),
            "payments" => Some(Kind::Payment),
            _ => None,
        }
    }

    /// The kind named by a `nexo-kind` tag value.
    pub fn of_tag(tag: &str) -> Option<Kind> {
        match tag {
            "invoice" => Some(Kind::Invoice),
            "payment" => Some(Kind::Payment),
            _ => None,
        }
    }
}

/// One posting: an account, an exact amount in a commodity, a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// hledger account name, e.g. `assets:receivable`.
    pub account: String,
    /// Positive: debit; negative: credit.
    pub amount: Decimal,
    /// The commodity symbol: the ISO currency code.
    pub commodity: String,
    /// Posting comment (one line), may be empty.
    pub comment: String,
}

/// A journal transaction without its code (the revision logic adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// One line, no `;`.
    pub description: String,
    /// Tags written in the transaction comment, in order.
    pub tags: Vec<(String, String)>,
    /// The postings; they sum to zero.
    pub postings: Vec<Posting>,
}

impl Entry {
    /// Checks with exact arithmetic that the postings sum to zero.
    pub fn check_balanced(&self) -> Result<(), EntryError> {
        let mut debits = Decimal::ZERO;
        let mut credits = Decimal::ZERO;
        for p in &self.postings {
            if p.amount.is_sign_negative() {
                credits = credits.checked_sub(p.amount).ok_or(EntryError::Overflow)?;
            } else {
                debits = debits.checked_add(p.amount).ok_or(EntryError::Overflow)?;
            }
        }
        if debits != credits {
            let difference = debits.checked_sub(credits).ok_or(EntryError::Overflow)?;
            return Err(EntryError::Unbalanced {
                debits,
                credits,
                difference,
            });
        }
        Ok(())
    }

    /// The entry that cancels this one: every posting negated, same date
    /// (so balances at any date equal the latest version's).
    pub fn reversal(&self, reverses: &str) -> Entry {
        Entry {
            date: self.date.clone(),
            description: one_line(&format!("Reversal of {} | {}", reverses, self.description)),
            tags: self
                .tags
                .iter()
                .filter(|(k, _)| k == "nexo-kind")
                .cloned()
                .chain([("nexo-reverses".to_string(), reverses.to_string())])
                .collect(),
            postings: self
                .postings
                .iter()
                .map(|p| Posting {
                    amount: -p.amount,
                    ..p.clone()
                })
                .collect(),
        }
    }
}

/// What a document should look like in the journal: an entry, or nothing
/// (a draft, submitted or voided invoice posts nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The entry to have in the journal, or `None` for no effect.
    pub entry: Option<Entry>,
}

/// The record's payload as stored in the `nexo-doc` tag: the JSON object
/// without `id` (which is the destination's, i.e. ours).
pub fn document(payload: &str, kind: Kind) -> Result<Map<String, Value>, EntryError> {
    let mut doc: Map<String, Value> =
        serde_json::from_str(payload).map_err(|e| EntryError::Shape {
            kind: kind.tag(),
            problem: e.to_string(),
        })?;
    doc.remove("id");
    Ok(doc)
}

/// The entry a document posts, validated and checked for balance.
pub fn desired(
    config: &Config,
    kind: Kind,
    doc: &Map<String, Value>,
) -> Result<Desired, EntryError> {
    let value = Value::Object(doc.clone());
    let shape = |e: serde_json::Error| EntryError::Shape {
        kind: kind.tag(),
        problem: e.to_string(),
    };
    let mut entry = match kind {
        Kind::Invoice => {
            let invoice: Invoice = serde_json::from_value(value).map_err(shape)?;
            invoice_entry(config, &invoice)?
        }
        Kind::Payment => {
            let payment: Payment = serde_json::from_value(value).map_err(shape)?;
            Some(payment_entry(config, &payment)?)
        }
    };
    if let Some(entry) = entry.as_mut() {
        let text = serde_json::to_string(doc).map_err(|e| EntryError::Invalid(e.to_string()))?;
        entry.tags.push(("nexo-kind".into(), kind.tag().into()));
        entry.tags.push(("nexo-doc".into(), encode_doc(&text)));
    }
    Ok(Desired { entry })
}

fn invoice_entry(config: &Config, invoice: &Invoice) -> Result<Option<Entry>, EntryError> {
    let commodity = invoice.currency.code().to_string();
    let mut postings = vec![Posting {
        account: config.accounts.receivable.clone(),
        amount: invoice.total,
        commodity: commodity.clone(),
        comment: String::new(),
    }];
    for line in &invoice.lines {
        if line.line_amount.is_zero() {
            continue;
        }
        let account = config.account_for(line.account_code.as_deref(), &config.accounts.revenue);
        postings.push(Posting {
            account,
            amount: -line.line_amount,
            commodity: commodity.clone(),
            comment: one_line(&line_note(line)),
        });
    }
    if !invoice.total_tax.is_zero() {
        postings.push(Posting {
            account: config.accounts.tax.clone(),
            amount: -invoice.total_tax,
            commodity,
            comment: String::new(),
        });
    }
    let entry = Entry {
        date: invoice.issue_date.to_string(),
        description: one_line(&format!(
            "{} | Invoice {}",
            invoice.customer.external_ref().id,
            invoice.number.as_deref().unwrap_or("(no number)")
        )),
        tags: Vec::new(),
        postings,
    };
    // The balance is checked first: it is the rule hledger cannot enforce.
    entry.check_balanced()?;
    invoice.validate()?;
    Ok(match invoice.status {
        InvoiceStatus::Authorised | InvoiceStatus::Paid => Some(entry),
        InvoiceStatus::Draft | InvoiceStatus::Submitted | InvoiceStatus::Voided => None,
        other => {
            return Err(EntryError::Invalid(format!(
                "status {other:?} is not supported by this connector"
            )));
        }
    })
}

fn line_note(line: &nexo_sdk::model::InvoiceLine) -> String {
    let mut note = if line.description.is_empty() {
        line.product
            .as_ref()
            .map(|p| format!("product {p}"))
            .unwrap_or_default()
    } else {
        line.description.clone()
    };
    note.push_str(&format!(" ({} × {}", line.quantity, line.unit_price));
    if !line.discount.is_zero() {
        note.push_str(&format!(" − {}", line.discount));
    }
    if !line.tax_rate.is_zero() {
        note.push_str(&format!(", tax {} %", line.tax_rate));
    }
    note.push(')');
    note
}

fn payment_entry(config: &Config, payment: &Payment) -> Result<Entry, EntryError> {
    payment.validate()?;
    let commodity = payment.currency.code().to_string();
    let bank = config.account_for(Some(&payment.account_code), &config.accounts.bank);
    let mut description = format!("Payment of invoice {}", payment.invoice.id);
    if let Some(reference) = &payment.reference {
        description.push_str(&format!(" | {reference}"));
    }
    let entry = Entry {
        date: payment.date.to_string(),
        description: one_line(&description),
        tags: Vec::new(),
        postings: vec![
            Posting {
                account: bank,
                amount: payment.amount,
                commodity: commodity.clone(),
                comment: String::new(),
            },
            Posting {
                account: config.accounts.receivable.clone(),
                amount: -payment.amount,
                commodity,
                comment: String::new(),
            },
        ],
    };
    entry.check_balanced()?;
    Ok(entry)
}

/// Text safe on one journal line: no line breaks or control characters, and
/// no `;`, which would start a comment and cut the text.
pub fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c == ';' {
                ','
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The document as the `nexo-doc` tag value: base64 has no `,` or `:`, so
/// hledger's tag syntax keeps it whole.
pub fn encode_doc(json: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(json.as_bytes())
}

/// The inverse of [`encode_doc`].
pub fn decode_doc(tag: &str) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(tag.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        serde_json::from_value(json!({"base_url": "http://127.0.0.1:5000",
            "account_codes": {"200": "revenue:consulting"}}))
        .unwrap()
    }

    fn invoice(total: &str) -> Map<String, Value> {
        json!({"customer": {"kind": "company", "system": "crm", "id": "c-9"},
            "number": "INV-1", "issue_date": "2024-03-01", "currency": "EUR", "status": "authorised",
            "lines": [{"description": "Consulting; onsite", "quantity": "2", "unit_price": "10.00",
                       "tax_rate": "20", "line_amount": "20.00", "account_code": "200"},
                      {"description": "Travel", "quantity": "1", "unit_price": "5.55",
                       "line_amount": "5.55"}],
            "subtotal": "25.55", "total_tax": "4.00", "total": total})
        .as_object()
        .unwrap()
        .clone()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn an_invoice_posts_receivable_revenue_per_line_and_tax() {
        let e = desired(&config(), Kind::Invoice, &invoice("29.55"))
            .unwrap()
            .entry
            .unwrap();
        let postings: Vec<_> = e
            .postings
            .iter()
            .map(|p| (p.account.as_str(), p.amount))
            .collect();
        assert_eq!(
            postings,
            [
                ("assets:receivable", d("29.55")),
                ("revenue:consulting", d("-20.00")),
                ("revenue:sales", d("-5.55")),
                ("liabilities:tax payable", d("-4.00")),
            ]
        );
        assert_eq!(e.description, "c-9 | Invoice INV-1");
        assert!(
            e.postings[1]
                .comment
                .starts_with("Consulting, onsite (2 × 10.00")
        );
        assert_eq!(e.tags[0], ("nexo-kind".into(), "invoice".into()));
        let doc = decode_doc(&e.tags[1].1).unwrap();
        assert_eq!(doc, invoice("29.55"));
    }

    #[test]
    fn an_unbalanced_invoice_is_refused_with_the_difference() {
        let e = desired(&config(), Kind::Invoice, &invoice("30.00")).unwrap_err();
        assert_eq!(
            e,
            EntryError::Unbalanced {
                debits: d("30.00"),
                credits: d("29.55"),
                difference: d("0.45")
            }
        );
        assert!(e.to_string().contains("would not balance"), "{e}");
    }

    #[test]
    fn model_rules_are_checked_too() {
        let mut inv = invoice("29.55");
        inv.insert("subtotal".into(), json!("25.00"));
        let e = desired(&config(), Kind::Invoice, &inv).unwrap_err();
        assert!(e.to_string().contains("subtotal"), "{e}");
        inv.insert("subtotal".into(), json!(25.55));
        assert!(matches!(
            desired(&config(), Kind::Invoice, &inv),
            Err(EntryError::Shape { .. })
        ));
    }

    #[test]
    fn drafts_and_voided_invoices_post_nothing() {
        for status in ["draft", "submitted", "voided"] {
            let mut inv = invoice("29.55");
            inv.insert("status".into(), json!(status));
            assert_eq!(desired(&config(), Kind::Invoice, &inv).unwrap().entry, None);
        }
    }

    #[test]
    fn a_payment_debits_the_bank_and_credits_receivables() {
        let p = json!({"invoice": {"system": "crm", "id": "inv-1"}, "amount": "29.55",
            "currency": "EUR", "date": "2024-03-15", "account_code": "090", "reference": "SEPA 1"});
        let e = desired(&config(), Kind::Payment, p.as_object().unwrap())
            .unwrap()
            .entry
            .unwrap();
        assert_eq!(e.postings[0].account, "assets:bank");
        assert_eq!(e.postings[0].amount, d("29.55"));
        assert_eq!(e.postings[1].amount, d("-29.55"));
        assert_eq!(e.description, "Payment of invoice inv-1 | SEPA 1");
        let r = e.reversal("nexo:k/1");
        assert_eq!(r.postings[0].amount, d("-29.55"));
        assert!(r.check_balanced().is_ok());
        assert!(
            r.tags
                .contains(&("nexo-reverses".into(), "nexo:k/1".into()))
        );
    }

    #[test]
    fn text_stays_on_one_line_without_comments() {
        assert_eq!(one_line(" a;b\nc\t d "), "a,b c d");
    }
}

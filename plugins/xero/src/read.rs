//! Incremental reads: `If-Modified-Since` from the cursor, `page=N` within
//! one query, and each Xero record mapped to its canonical form.

use std::collections::BTreeSet;

use nexo_sdk::model::{
    Account, AccountType, Address, Company, Currency, ExternalRef, Invoice, InvoiceLine,
    InvoiceStatus, PartyRef, PartyRole, Payment, Product,
};
use nexo_sdk::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::Config;
use crate::xjson::{date_of, dec, iso_of, ms_of, rfc3339_of};

/// Records per Xero page.
const PAGE_SIZE: usize = 100;

/// Xero's collection behind a stream.
pub fn collection(stream: &str) -> &'static str {
    match stream {
        "contacts" => "Contacts",
        "items" => "Items",
        "invoices" => "Invoices",
        "payments" => "Payments",
        _ => "Accounts",
    }
}

fn id_field(stream: &str) -> &'static str {
    match stream {
        "contacts" => "ContactID",
        "items" => "ItemID",
        "invoices" => "InvoiceID",
        "payments" => "PaymentID",
        _ => "AccountID",
    }
}

/// A sortable cursor value from milliseconds.
fn cursor_value(ms: i64) -> String {
    format!("{ms:015}")
}

/// Fetches a list (one page) and answers its records.
pub fn fetch(
    config: &Config,
    stream: &str,
    query: &[(&str, String)],
    since: Option<i64>,
) -> Result<Vec<Value>, Error> {
    let coll = collection(stream);
    let mut req = config.request(Request::get, coll)?;
    for (k, v) in query {
        req = req.query(k, v);
    }
    if let Some(ms) = since {
        req = req.header("If-Modified-Since", iso_of(ms));
    }
    let body: Value = req.send()?.error_for_status()?.json()?;
    Ok(body[coll].as_array().cloned().unwrap_or_default())
}

/// One page of `stream` after `state`.
pub fn page(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
    let cursor = Cursor::from_state(state)?;
    let from = cursor.query_value().map(str::to_string);
    let since = from.as_deref().and_then(|v| v.parse::<i64>().ok());
    let page_no: u32 = cursor
        .page_token()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let mut query = vec![("page", page_no.to_string())];
    if stream == "invoices" {
        query.push(("where", "Type==\"ACCREC\"".to_string()));
    }
    query.push(("order", "UpdatedDateUTC ASC".to_string()));
    let rows = fetch(config, stream, &query, since)?;
    let full = rows.len() >= PAGE_SIZE;
    let mut next = cursor.clone();
    let mut records = Vec::new();
    for row in &rows {
        let id = row[id_field(stream)]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ms = ms_of(&row["UpdatedDateUTC"]).unwrap_or(0);
        let value = cursor_value(ms);
        if cursor.is_seen(&value, &id) {
            continue;
        }
        next.observe(&value, &id);
        let record = to_canonical(config, stream, row, &id, ms)?;
        records.push(record.with_cursor(value));
    }
    if full {
        next.set_page(Some((page_no + 1).to_string()), from.as_deref());
        Ok(Page::more(records, next.to_state()?))
    } else {
        next.set_page(None, None);
        Ok(Page::last(records, next.to_state()?))
    }
}

fn opt(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn currency(v: &Value) -> Result<Currency, Error> {
    let code = v.as_str().unwrap_or("USD");
    Currency::from_code(code).map_err(|e| Error::internal(format!("Xero currency `{code}`: {e}")))
}

/// The rate of a Xero tax type.
fn rate_of(config: &Config, tax_type: &str) -> Result<Decimal, Error> {
    Ok(config
        .tax_table()?
        .into_iter()
        .find(|(t, _)| t == tax_type)
        .map_or(Decimal::ZERO, |(_, r)| r))
}

/// The marker the connector appends to a `Reference` it writes.
pub const MARKER: &str = " #nexo:";

/// A `Reference` without the connector's idempotency marker.
pub fn strip_marker(reference: &str) -> Option<String> {
    let r = match reference.find(MARKER.trim_start()) {
        Some(at) => reference[..at].trim_end(),
        None => reference,
    };
    (!r.is_empty()).then(|| r.to_string())
}

fn to_canonical(
    config: &Config,
    stream: &str,
    row: &Value,
    id: &str,
    ms: i64,
) -> Result<Record, Error> {
    let updated = Some(rfc3339_of(ms));
    match stream {
        "contacts" => {
            let mut c = Company::new(row["Name"].as_str().unwrap_or_default());
            c.id = Some(id.to_string());
            c.email = opt(&row["EmailAddress"]);
            c.tax_number = opt(&row["TaxNumber"]);
            c.website = opt(&row["Website"]);
            c.phone = row["Phones"]
                .as_array()
                .and_then(|p| p.iter().find_map(|p| opt(&p["PhoneNumber"])));
            c.address = row["Addresses"]
                .as_array()
                .and_then(|a| a.first())
                .map(|a| {
                    let mut addr = Address::default();
                    addr.lines = crate::write::ADDRESS_LINES
                        .iter()
                        .filter_map(|k| opt(&a[*k]))
                        .collect();
                    addr.city = opt(&a["City"]);
                    addr.region = opt(&a["Region"]);
                    addr.postal_code = opt(&a["PostalCode"]);
                    addr.country = opt(&a["Country"]);
                    addr
                });
            let mut roles = BTreeSet::new();
            let supplier = row["IsSupplier"] == Value::Bool(true);
            if row["IsCustomer"] == Value::Bool(true) || !supplier {
                roles.insert(PartyRole::Customer);
            }
            if supplier {
                roles.insert(PartyRole::Supplier);
            }
            c.roles = roles;
            if let Some((system, source_id)) = row["ContactNumber"]
                .as_str()
                .and_then(|n| n.split_once(':'))
                && system != config.system
                && system != "nexo"
                && !source_id.is_empty()
            {
                c.external_refs.push(ExternalRef::new(system, source_id));
            }
            for k in ["FirstName", "LastName", "ContactNumber", "ContactStatus"] {
                if let Some(v) = opt(&row[k]) {
                    c.extra
                        .insert(format!("xero_{}", snake(k)), Value::String(v));
                }
            }
            c.updated_at = updated;
            Record::upsert(stream, id, &c)
        }
        "items" => {
            let sales = &row["SalesDetails"];
            let mut p = Product::new(
                row["Code"].as_str().unwrap_or_default(),
                row["Name"].as_str().unwrap_or_default(),
                dec(&sales["UnitPrice"])?,
            );
            p.id = Some(id.to_string());
            p.description = opt(&row["Description"]);
            p.tax_rate = match sales["TaxType"].as_str() {
                Some(t) => Some(rate_of(config, t)?),
                None => None,
            };
            p.active = row["IsSold"] != Value::Bool(false);
            p.updated_at = updated;
            Record::upsert(stream, id, &p)
        }
        "invoices" => {
            let customer = PartyRef::Company(ExternalRef::new(
                config.system.clone(),
                row["Contact"]["ContactID"].as_str().unwrap_or_default(),
            ));
            let issue = date_of(&row["Date"])?
                .ok_or_else(|| Error::internal(format!("invoice {id} has no Date")))?;
            let mut inv = Invoice::new(customer, issue, currency(&row["CurrencyCode"])?);
            inv.id = Some(id.to_string());
            inv.number = opt(&row["InvoiceNumber"]);
            inv.due_date = date_of(&row["DueDate"])?;
            inv.reference = row["Reference"].as_str().and_then(strip_marker);
            inv.status = match row["Status"].as_str().unwrap_or_default() {
                "SUBMITTED" => InvoiceStatus::Submitted,
                "AUTHORISED" => InvoiceStatus::Authorised,
                "PAID" => InvoiceStatus::Paid,
                "VOIDED" | "DELETED" => InvoiceStatus::Voided,
                _ => InvoiceStatus::Draft,
            };
            for l in row["LineItems"].as_array().into_iter().flatten() {
                let mut line = InvoiceLine::new(
                    l["Description"].as_str().unwrap_or_default(),
                    dec(&l["Quantity"])?,
                    dec(&l["UnitAmount"])?,
                )
                .with_discount(dec(&l["DiscountAmount"])?)
                .with_tax_rate(rate_of(config, l["TaxType"].as_str().unwrap_or("NONE"))?);
                line.line_amount = dec(&l["LineAmount"])?;
                if let Some(code) = opt(&l["AccountCode"]) {
                    line = line.with_account_code(code);
                }
                if let Some(code) = opt(&l["ItemCode"]) {
                    line = line.with_product(ExternalRef::new(
                        format!("{}:item-code", config.system),
                        code,
                    ));
                }
                inv.lines.push(line);
            }
            inv.subtotal = dec(&row["SubTotal"])?;
            inv.total_tax = dec(&row["TotalTax"])?;
            inv.total = dec(&row["Total"])?;
            inv.extra.insert(
                "xero_amount_due".into(),
                Value::String(dec(&row["AmountDue"])?.to_string()),
            );
            inv.updated_at = updated;
            Record::upsert(stream, id, &inv)
        }
        "payments" => {
            let invoice = ExternalRef::new(
                config.system.clone(),
                row["Invoice"]["InvoiceID"].as_str().unwrap_or_default(),
            );
            let date = date_of(&row["Date"])?
                .ok_or_else(|| Error::internal(format!("payment {id} has no Date")))?;
            let mut p = Payment::new(
                invoice,
                dec(&row["Amount"])?,
                currency(&row["Invoice"]["CurrencyCode"])?,
                date,
                row["Account"]["Code"].as_str().unwrap_or_default(),
            );
            p.id = Some(id.to_string());
            p.reference = row["Reference"].as_str().and_then(strip_marker);
            if let Some(s) = opt(&row["Status"]) {
                p.extra.insert("xero_status".into(), Value::String(s));
            }
            p.updated_at = updated;
            Record::upsert(stream, id, &p)
        }
        _ => {
            let kind = match row["Class"].as_str().unwrap_or_default() {
                "ASSET" => AccountType::Asset,
                "LIABILITY" => AccountType::Liability,
                "EQUITY" => AccountType::Equity,
                "REVENUE" => AccountType::Revenue,
                _ => AccountType::Expense,
            };
            let mut a = Account::new(
                row["Code"].as_str().unwrap_or_default(),
                row["Name"].as_str().unwrap_or_default(),
                kind,
            );
            a.id = Some(id.to_string());
            a.active = row["Status"].as_str() != Some("ARCHIVED");
            if let Some(t) = opt(&row["Type"]) {
                a.extra.insert("xero_type".into(), Value::String(t));
            }
            a.updated_at = updated;
            Record::upsert(stream, id, &a)
        }
    }
}

fn snake(k: &str) -> String {
    let mut out = String::new();
    for (i, ch) in k.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

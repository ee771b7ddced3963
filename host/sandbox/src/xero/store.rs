//! The organisation's books: records per collection with their change
//! times, the sandbox clock, `where` filtering and the generated seed data.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};

use super::docs;

/// A collection of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Collection {
    /// `/Contacts`.
    Contacts,
    /// `/Items`.
    Items,
    /// `/Invoices`.
    Invoices,
    /// `/Payments`.
    Payments,
    /// `/Accounts`.
    Accounts,
}

impl Collection {
    /// All collections.
    pub const ALL: [Collection; 5] = [
        Collection::Contacts,
        Collection::Items,
        Collection::Invoices,
        Collection::Payments,
        Collection::Accounts,
    ];

    /// Name in paths and bodies, e.g. `Invoices`.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Contacts => "Contacts",
            Collection::Items => "Items",
            Collection::Invoices => "Invoices",
            Collection::Payments => "Payments",
            Collection::Accounts => "Accounts",
        }
    }

    /// The id field of one record, e.g. `InvoiceID`.
    pub fn id_field(self) -> &'static str {
        match self {
            Collection::Contacts => "ContactID",
            Collection::Items => "ItemID",
            Collection::Invoices => "InvoiceID",
            Collection::Payments => "PaymentID",
            Collection::Accounts => "AccountID",
        }
    }

    /// The collection named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<Collection> {
        Collection::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone)]
struct Stored {
    doc: Value,
    updated: i64,
}

/// Every record of one organisation.
#[derive(Debug, Clone)]
pub struct Books {
    pub(super) currency: String,
    clock: i64,
    next_id: u64,
    pub(super) next_invoice_number: u32,
    tables: BTreeMap<Collection, BTreeMap<String, Stored>>,
}

/// `/Date(ms+0000)/`.
pub fn ms_date(ms: i64) -> String {
    format!("/Date({ms}+0000)/")
}

/// `2024-03-01T00:00:00` for an instant.
pub fn date_string(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Milliseconds of a date as Xero accepts it: `2024-03-01`,
/// `2024-03-01T10:00:00`, `/Date(ms+0000)/`.
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(inner) = text
        .strip_prefix("/Date(")
        .and_then(|t| t.strip_suffix(")/"))
    {
        let digits: String = inner
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        return digits.parse().ok();
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl Books {
    /// Empty books in `currency`.
    pub fn new(currency: String) -> Books {
        Books {
            currency,
            clock: 0,
            next_id: 1,
            next_invoice_number: 1,
            tables: BTreeMap::new(),
        }
    }

    /// A strictly increasing "now" in milliseconds.
    fn tick(&mut self) -> i64 {
        let now = Utc::now().timestamp_millis();
        self.clock = now.max(self.clock + 1);
        self.clock
    }

    fn new_id(&mut self, c: Collection) -> String {
        let n = self.next_id;
        self.next_id += 1;
        let kind = Collection::ALL.iter().position(|x| *x == c).unwrap_or(0) + 1;
        format!("{kind:08x}-0000-4000-8000-{n:012x}")
    }

    fn table(&self, c: Collection) -> impl Iterator<Item = &Stored> {
        self.tables.get(&c).into_iter().flat_map(|t| t.values())
    }

    /// Records of `c` changed at or after `since` (ms), oldest change first.
    pub fn list_since(&self, c: Collection, since: Option<i64>) -> Vec<Value> {
        let mut rows: Vec<&Stored> = self
            .table(c)
            .filter(|s| since.is_none_or(|t| s.updated >= t))
            .collect();
        rows.sort_by(|a, b| {
            (a.updated, a.doc[c.id_field()].as_str())
                .cmp(&(b.updated, b.doc[c.id_field()].as_str()))
        });
        rows.into_iter().map(|s| s.doc.clone()).collect()
    }

    /// Every record of `c`, oldest change first.
    pub fn list(&self, c: Collection) -> Vec<Value> {
        self.list_since(c, None)
    }

    /// One record.
    pub fn get(&self, c: Collection, id: &str) -> Option<Value> {
        self.tables
            .get(&c)
            .and_then(|t| t.get(id))
            .map(|s| s.doc.clone())
    }

    /// The first record of `c` whose `field` equals `value`.
    pub fn find(&self, c: Collection, field: &str, value: &str) -> Option<Value> {
        self.table(c)
            .find(|s| s.doc[field].as_str() == Some(value))
            .map(|s| s.doc.clone())
    }

    /// Validates and applies a create (`id` none and no id in `input`) or an
    /// update; the stored record, or Xero's validation messages.
    pub fn upsert(
        &mut self,
        c: Collection,
        id: Option<&str>,
        input: Value,
    ) -> Result<Value, Vec<String>> {
        let id = id
            .map(str::to_string)
            .or_else(|| input[c.id_field()].as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        let existing = match &id {
            Some(id) => Some(self.get(c, id).ok_or_else(|| {
                vec![format!(
                    "{} with {} {id} could not be found",
                    c.name().trim_end_matches('s'),
                    c.id_field()
                )]
            })?),
            None => None,
        };
        let mut doc = match c {
            Collection::Contacts => docs::contact(self, existing.as_ref(), &input)?,
            Collection::Items => docs::item(self, existing.as_ref(), &input)?,
            Collection::Invoices => docs::invoice(self, existing.as_ref(), &input)?,
            Collection::Payments => docs::payment(self, existing.as_ref(), &input)?,
            Collection::Accounts => docs::account(existing.as_ref(), &input)?,
        };
        let id = match id {
            Some(id) => id,
            None => self.new_id(c),
        };
        let now = self.tick();
        doc[c.id_field()] = json!(id);
        doc["UpdatedDateUTC"] = json!(ms_date(now));
        if c == Collection::Invoices {
            for line in doc["LineItems"].as_array_mut().into_iter().flatten() {
                if line["LineItemID"].as_str().is_none() {
                    line["LineItemID"] = json!(self.new_id(c));
                }
            }
        }
        if c == Collection::Invoices && existing.is_none() {
            self.next_invoice_number += 1;
        }
        self.put(c, &id, doc.clone(), now);
        self.after_write(c, &doc, existing.as_ref())?;
        Ok(doc)
    }

    fn put(&mut self, c: Collection, id: &str, doc: Value, updated: i64) {
        self.tables
            .entry(c)
            .or_default()
            .insert(id.to_string(), Stored { doc, updated });
    }

    /// Effects on other records: a contact billed by a sales invoice becomes
    /// a customer; a payment changes its invoice's amounts and status.
    fn after_write(
        &mut self,
        c: Collection,
        doc: &Value,
        existing: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        match c {
            Collection::Invoices if doc["Type"] == "ACCREC" => {
                if let Some(cid) = doc["Contact"]["ContactID"].as_str()
                    && let Some(mut contact) = self.get(Collection::Contacts, cid)
                    && contact["IsCustomer"] != json!(true)
                {
                    contact["IsCustomer"] = json!(true);
                    let now = self.tick();
                    contact["UpdatedDateUTC"] = json!(ms_date(now));
                    self.put(Collection::Contacts, cid, contact, now);
                }
                Ok(())
            }
            Collection::Payments => {
                let Some(iid) = doc["Invoice"]["InvoiceID"].as_str() else {
                    return Ok(());
                };
                let Some(mut invoice) = self.get(Collection::Invoices, iid) else {
                    return Ok(());
                };
                let was_deleted = existing.is_some_and(|e| e["Status"] == "DELETED");
                let deleted = doc["Status"] == "DELETED";
                if was_deleted == deleted && existing.is_some() {
                    return Ok(());
                }
                docs::apply_payment(&mut invoice, doc, deleted).map_err(|e| vec![e])?;
                let now = self.tick();
                invoice["UpdatedDateUTC"] = json!(ms_date(now));
                self.put(Collection::Invoices, iid, invoice, now);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Generated books: a chart of accounts, then `n` items, contacts and
    /// authorised invoices, and a payment on every third invoice. The same
    /// `n` always gives the same records (apart from ids' times).
    pub fn seed(&mut self, n: usize) -> Result<(), String> {
        let chart = [
            ("090", "Business Bank Account", "BANK", "NONE"),
            ("091", "Business Savings Account", "BANK", "NONE"),
            ("200", "Sales", "REVENUE", "OUTPUT2"),
            ("260", "Other Revenue", "REVENUE", "OUTPUT2"),
            ("310", "Cost of Goods Sold", "DIRECTCOSTS", "INPUT2"),
            ("400", "Advertising", "EXPENSE", "INPUT2"),
            ("610", "Accounts Receivable", "CURRENT", "NONE"),
            ("800", "Accounts Payable", "CURRLIAB", "NONE"),
            ("820", "VAT", "CURRLIAB", "NONE"),
            ("970", "Owner A Funds Introduced", "EQUITY", "NONE"),
        ];
        let fail = |what: String| move |e: Vec<String>| format!("{what}: {}", e.join("; "));
        for (code, name, kind, tax) in chart {
            let input = json!({"Code": code, "Name": name, "Type": kind, "TaxType": tax});
            self.upsert(Collection::Accounts, None, input)
                .map_err(fail(format!("account {code}")))?;
        }
        let mut items = Vec::new();
        for i in 0..n {
            let price = format!("{}.{:02}", i % 50 + 1, (i * 7) % 100);
            let input = json!({"Code": format!("ITEM-{i:04}"), "Name": format!("Item {i}"),
                "Description": format!("Generated item {i}"), "IsSold": true,
                "SalesDetails": {"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}});
            self.upsert(Collection::Items, None, input)
                .map_err(fail(format!("item {i}")))?;
            items.push((format!("ITEM-{i:04}"), price));
        }
        let mut contacts = Vec::new();
        for i in 0..n {
            let input = json!({"Name": format!("Customer {i:04} Ltd"), "FirstName": format!("Ada{i}"),
                "LastName": "Lovelace", "EmailAddress": format!("customer{i}@example.com"),
                "ContactNumber": format!("seed:{i}")});
            let c = self
                .upsert(Collection::Contacts, None, input)
                .map_err(fail(format!("contact {i}")))?;
            contacts.push(c["ContactID"].as_str().unwrap_or_default().to_string());
        }
        let day = NaiveDate::from_ymd_opt(2024, 1, 1).ok_or("bad seed date")?;
        for (i, contact) in contacts.iter().enumerate() {
            let date = day + chrono::Days::new((i % 300) as u64);
            let due = date + chrono::Days::new(30);
            let lines: Vec<Value> = (0..(i % 3 + 1))
                .map(|k| {
                    let (code, price) = &items[(i + k) % items.len()];
                    json!({"ItemCode": code, "Description": format!("Item line {k}"),
                        "Quantity": ((i + k) % 5 + 1), "UnitAmount": price, "AccountCode": "200",
                        "TaxType": if k % 2 == 0 { "OUTPUT2" } else { "NONE" }})
                })
                .collect();
            let input = json!({"Type": "ACCREC", "Contact": {"ContactID": contact},
                "Date": date.to_string(), "DueDate": due.to_string(), "Status": "AUTHORISED",
                "LineAmountTypes": "Exclusive", "Reference": format!("seed:{i}"), "LineItems": lines});
            let inv = self
                .upsert(Collection::Invoices, None, input)
                .map_err(fail(format!("invoice {i}")))?;
            if i % 3 == 0 {
                let payment = json!({"Invoice": {"InvoiceID": inv["InvoiceID"]},
                    "Account": {"Code": "090"}, "Date": due.to_string(),
                    "Amount": inv["AmountDue"], "Reference": format!("seed payment {i}")});
                self.upsert(Collection::Payments, None, payment)
                    .map_err(fail(format!("payment {i}")))?;
            }
        }
        Ok(())
    }
}

/// Contacts typed in twice, as bookkeepers do over the years: the input of
/// each copy, in pairs. The demo adds them so `nexo survey` has duplicates
/// inside the books to find: the same e-mail in another case, the same tax
/// number written with spaces, and a legal form added to the name.
pub fn typed_twice_contacts() -> [[Value; 2]; 3] {
    [
        [
            json!({"Name": "Harbour Lights Trading Ltd", "EmailAddress": "accounts@harbourlights.example"}),
            json!({"Name": "Harbour Lights Trading", "EmailAddress": "Accounts@HarbourLights.EXAMPLE"}),
        ],
        [
            json!({"Name": "Meridian Tools GmbH", "TaxNumber": "DE811234567", "EmailAddress": "info@meridian-tools.example"}),
            json!({"Name": "Meridian Tooling", "TaxNumber": "DE 811 234 567", "EmailAddress": "billing@meridian.example"}),
        ],
        [
            json!({"Name": "Oakfield Bakery", "EmailAddress": "hello@oakfield.example"}),
            json!({"Name": "Oakfield Bakery Ltd", "EmailAddress": "orders@oakfieldbakery.example"}),
        ],
    ]
}

impl Books {
    /// Add the [`typed_twice_contacts`] after the seeded books (which stay
    /// as they are).
    pub fn seed_typed_twice(&mut self) -> Result<(), String> {
        for input in typed_twice_contacts().into_iter().flatten() {
            let name = input["Name"].as_str().unwrap_or_default().to_string();
            self.upsert(Collection::Contacts, None, input)
                .map_err(|e| format!("contact {name}: {}", e.join("; ")))?;
        }
        Ok(())
    }
}

/// One `where` clause: a dotted field path equal to a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    path: Vec<String>,
    value: String,
    contains: bool,
}

/// Parses `A=="x" && B.C==Guid("…")` (also ` AND `).
pub fn parse_where(text: &str) -> Result<Vec<Clause>, String> {
    let normalised = text.replace(" AND ", "&&").replace(" and ", "&&");
    normalised
        .split("&&")
        .map(|part| {
            if let Some((path, rest)) = part.split_once(".Contains(") {
                let value = rest
                    .trim()
                    .strip_suffix(')')
                    .and_then(|v| v.trim().strip_prefix('"'))
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| format!("unsupported where clause `{}`", part.trim()))?;
                return Ok(Clause {
                    path: path.trim().split('.').map(str::to_string).collect(),
                    value: value.replace("\\\"", "\""),
                    contains: true,
                });
            }
            let (path, value) = part
                .split_once("==")
                .ok_or_else(|| format!("unsupported where clause `{}`", part.trim()))?;
            let value = value.trim();
            let value = value
                .strip_prefix("Guid(")
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or(value)
                .trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| {
                    format!("unsupported where value `{value}` (use a quoted string)")
                })?;
            Ok(Clause {
                path: path.trim().split('.').map(str::to_string).collect(),
                value: value.replace("\\\"", "\""),
                contains: false,
            })
        })
        .collect()
}

/// Whether `doc` satisfies every clause.
pub fn matches(doc: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().all(|c| {
        let mut v = doc;
        for p in &c.path {
            v = &v[p.as_str()];
        }
        match v {
            Value::String(s) if c.contains => s.contains(&c.value),
            Value::String(s) => *s == c.value,
            Value::Bool(b) => b.to_string() == c.value,
            Value::Number(n) => n.to_string() == c.value,
            _ => false,
        }
    })
}

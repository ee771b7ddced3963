//! Writes: canonical contacts, items, invoices and payments to Xero, each
//! create looked up first (ContactNumber, the item's Code, or the
//! `#nexo:<key>` marker in `Reference`) and sent with an `Idempotency-Key`,
//! each update compared with the record first, each refusal answered with
//! Xero's message.

use nexo_sdk::model::{Company, Contact, Invoice, InvoiceStatus, PartyRef, Payment, Product};
use nexo_sdk::prelude::*;
use serde_json::{Map, Value, json};

use crate::Config;
use crate::read::{MARKER, collection, fetch};
use crate::xjson::{covers, num};

/// Most records one bulk update reads and sends (Xero asks for batches of
/// at most 50 elements).
const BULK: usize = 50;

/// Applies a batch; a failure that is not about one record ends it.
/// Updates of contacts and invoices go in bulk — one read of the current
/// records by `IDs` and one `POST` of those that changed, per 50 — so a
/// batch costs two calls, not two per record, against Xero's 60 calls a
/// minute; everything else goes one record at a time.
pub fn batch(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
    let mut settled: Vec<Option<WriteOutcome>> = (0..batch.len()).map(|_| None).collect();
    if matches!(stream, "contacts" | "invoices") {
        bulk_updates(config, stream, &batch, &mut settled)?;
    }
    let mut out = Vec::with_capacity(batch.len());
    for (record, settled) in batch.iter().zip(settled) {
        let outcome = match settled {
            Some(outcome) => outcome,
            None => alone(one(config, stream, record))?,
        };
        out.push(WriteResult::new(&record.id, outcome));
    }
    Ok(out)
}

/// A record's result: a refusal of this record fails it alone, anything
/// else ends the batch.
fn alone(result: Result<WriteOutcome, Error>) -> Result<WriteOutcome, Error> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e @ (Error::Rejected(_) | Error::InvalidConfig(_))) if !is_config(&e) => {
            Ok(WriteOutcome::Failed(e))
        }
        Err(e) => Err(e),
    }
}

/// The batch's updates (records with a destination id, not deletes), in
/// chunks of [`BULK`]: their current records read in one call, compared,
/// and the changed ones sent in one call with `summarizeErrors=false`, so
/// a record Xero refuses fails alone. Settles what it handled; a chunk
/// Xero refuses as a whole is left to the one-by-one path, which names the
/// record at fault.
fn bulk_updates(
    config: &Config,
    stream: &str,
    batch: &[Record],
    settled: &mut [Option<WriteOutcome>],
) -> Result<(), Error> {
    let coll = collection(stream);
    let id_field = if stream == "contacts" {
        "ContactID"
    } else {
        "InvoiceID"
    };
    let updates: Vec<(usize, &str)> = batch
        .iter()
        .enumerate()
        .filter(|(_, r)| r.operation != Operation::Delete)
        .filter_map(|(i, r)| r.destination_id().map(|id| (i, id)))
        .collect();
    // One update costs the same either way.
    if updates.len() < 2 {
        return Ok(());
    }
    for chunk in updates.chunks(BULK) {
        let mut bodies = Vec::with_capacity(chunk.len());
        for &(i, id) in chunk {
            let record = &batch[i];
            let key = record.idempotency_key().unwrap_or_default().to_string();
            let body = match stream {
                "contacts" => contact_body(config, record, &key),
                _ => invoice_body(config, record, &key),
            };
            match body {
                Ok((body, _)) => bodies.push((i, id, body)),
                Err(e) => settled[i] = Some(alone(Err(e))?),
            }
        }
        if bodies.is_empty() {
            continue;
        }
        let ids: Vec<&str> = bodies.iter().map(|(_, id, _)| *id).collect();
        let mut query = vec![("IDs", ids.join(","))];
        if stream == "contacts" {
            query.push(("includeArchived", "true".to_string()));
        }
        let current = fetch(config, stream, &query, None)?;
        let mut send = Vec::new();
        for (i, id, mut body) in bodies {
            match current.iter().find(|d| d[id_field] == id) {
                None => {
                    settled[i] = Some(WriteOutcome::Failed(Error::rejected(format!(
                        "Xero has no {coll} record {id}"
                    ))))
                }
                Some(doc) if covers(doc, &body) => {
                    settled[i] = Some(WriteOutcome::Unchanged(id.to_string()))
                }
                Some(_) => {
                    body[id_field] = json!(id);
                    send.push((i, id, body));
                }
            }
        }
        if send.is_empty() {
            continue;
        }
        let elements: Vec<Value> = send.iter().map(|(_, _, body)| body.clone()).collect();
        let Some(answers) = post_many(config, coll, elements)? else {
            // Refused as a whole: each goes alone, and the one at fault
            // is named.
            continue;
        };
        if answers.len() != send.len() {
            return Err(Error::internal(format!(
                "Xero answered {} {coll} for an update of {}",
                answers.len(),
                send.len()
            )));
        }
        for ((i, id, _), doc) in send.into_iter().zip(answers) {
            let messages = messages_of(&doc);
            settled[i] = Some(if messages.is_empty() {
                WriteOutcome::Updated(doc[id_field].as_str().unwrap_or(id).to_string())
            } else {
                WriteOutcome::Failed(Error::rejected(messages.join("; ")))
            });
        }
    }
    Ok(())
}

/// `POST` of several records to the collection with
/// `summarizeErrors=false`: one answer per record, in order (each with its
/// own `ValidationErrors`), or `None` when Xero refused the request as a
/// whole.
fn post_many(
    config: &Config,
    coll: &str,
    elements: Vec<Value>,
) -> Result<Option<Vec<Value>>, Error> {
    let response = config
        .request(Request::post, coll)?
        .query("summarizeErrors", "false")
        .json(&json!({ coll: elements }))?
        .send()?;
    if response.status == 400 {
        return Ok(None);
    }
    let mut answer: Value = response.error_for_status()?.json()?;
    match answer.get_mut(coll).map(Value::take) {
        Some(Value::Array(docs)) => Ok(Some(docs)),
        _ => Err(Error::internal(format!(
            "Xero answered a {coll} update without its records"
        ))),
    }
}

fn is_config(e: &Error) -> bool {
    matches!(e, Error::InvalidConfig(_))
}

fn marker(key: &str) -> String {
    format!("{MARKER}{key}")
}

fn with_marker(reference: Option<&str>, key: &str) -> String {
    match reference {
        Some(r) if !r.is_empty() => format!("{r}{}", marker(key)),
        _ => marker(key).trim_start().to_string(),
    }
}

fn one(config: &Config, stream: &str, record: &Record) -> Result<WriteOutcome, Error> {
    let coll = collection(stream);
    let id_field = match stream {
        "contacts" => "ContactID",
        "invoices" => "InvoiceID",
        "items" => "ItemID",
        _ => "PaymentID",
    };
    if record.operation == Operation::Delete {
        let Some(id) = record.destination_id() else {
            return Ok(WriteOutcome::Deleted(String::new()));
        };
        let current = get(config, coll, id)?;
        let change = match stream {
            "contacts" => json!({"ContactStatus": "ARCHIVED"}),
            // Invoices keep pointing at an item, so it is retired from sale
            // rather than deleted (read back as an inactive product). Xero
            // requires the Code in every item write.
            "items" => json!({"Code": current["Code"], "IsSold": false}),
            "invoices" if current["Status"] == "DRAFT" || current["Status"] == "SUBMITTED" => {
                json!({"Status": "DELETED"})
            }
            "invoices" => json!({"Status": "VOIDED"}),
            _ => json!({"Status": "DELETED"}),
        };
        if covers(&current, &change) {
            return Ok(WriteOutcome::Deleted(id.to_string()));
        }
        post(config, coll, Some(id), change, None)?;
        return Ok(WriteOutcome::Deleted(id.to_string()));
    }
    let key = record.idempotency_key().unwrap_or_default().to_string();
    let (body, lookup) = match stream {
        "contacts" => contact_body(config, record, &key)?,
        "invoices" => invoice_body(config, record, &key)?,
        "items" => item_body(config, record)?,
        _ => payment_body(config, record, &key)?,
    };
    if let Some(id) = record.destination_id() {
        let current = get(config, coll, id)?;
        if covers(&current, &body) {
            return Ok(WriteOutcome::Unchanged(id.to_string()));
        }
        if stream == "payments" {
            return Err(Error::rejected(format!(
                "Xero cannot edit payment {id}: delete it and create a new one"
            )));
        }
        let mut body = body;
        body[id_field] = json!(id);
        let doc = post(config, coll, Some(id), body, None)?;
        return Ok(WriteOutcome::Updated(
            doc[id_field].as_str().unwrap_or(id).to_string(),
        ));
    }
    // A create: was it applied already (an answer lost)?
    if let Some(where_clause) = lookup
        && let Some(found) = fetch(config, stream, &[("where", where_clause)], None)?
            .into_iter()
            .find(|r| r["Status"] != "DELETED" && r["ContactStatus"] != "ARCHIVED")
    {
        // Found, not created: the host counts it as matched.
        let id = found[id_field].as_str().unwrap_or_default().to_string();
        return Ok(WriteOutcome::Unchanged(id));
    }
    let doc = post(
        config,
        coll,
        None,
        body,
        (!key.is_empty()).then_some(key.as_str()),
    )?;
    let id = doc[id_field]
        .as_str()
        .ok_or_else(|| Error::internal(format!("Xero answered a create without {id_field}")))?;
    Ok(WriteOutcome::Created(id.to_string()))
}

fn get(config: &Config, coll: &str, id: &str) -> Result<Value, Error> {
    let body: Value = config
        .request(Request::get, &format!("{coll}/{id}"))?
        .send()?
        .error_for_status()?
        .json()?;
    body[coll]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| Error::rejected(format!("Xero has no {coll} record {id}")))
}

/// `PUT` (create, `id` none) or `POST` (update) of one record with
/// `summarizeErrors=false`; the stored record, or `Rejected` with Xero's
/// validation messages.
fn post(
    config: &Config,
    coll: &str,
    id: Option<&str>,
    body: Value,
    key: Option<&str>,
) -> Result<Value, Error> {
    let envelope = json!({ coll: [body] });
    let mut req = match id {
        None => config.request(Request::put, coll)?,
        Some(id) => config.request(Request::post, &format!("{coll}/{id}"))?,
    }
    .query("summarizeErrors", "false")
    .json(&envelope)?;
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key.to_string());
    }
    let response = req.send()?;
    if response.status == 400 {
        let body: Value = response.json().unwrap_or(Value::Null);
        let messages = messages_of(&body);
        if !messages.is_empty() {
            return Err(Error::rejected(messages.join("; ")));
        }
    }
    let answer: Value = response.error_for_status()?.json()?;
    let doc = answer[coll]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| Error::internal(format!("Xero answered a {coll} write without a record")))?;
    let messages = messages_of(&doc);
    if !messages.is_empty() {
        return Err(Error::rejected(messages.join("; ")));
    }
    Ok(doc)
}

/// Every `ValidationErrors[].Message` in a Xero answer.
fn messages_of(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(errs)) = m.get("ValidationErrors") {
                out.extend(
                    errs.iter()
                        .filter_map(|e| e["Message"].as_str().map(str::to_string)),
                );
            }
            for (k, child) in m {
                if k != "ValidationErrors" {
                    out.extend(messages_of(child));
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| out.extend(messages_of(x))),
        _ => {}
    }
    out
}

fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\\\""))
}

/// The `ContactNumber` of a written contact (see the crate docs).
fn contact_number(
    config: &Config,
    refs: &[nexo_sdk::model::ExternalRef],
    id: Option<&str>,
    key: &str,
) -> Result<String, Error> {
    let number = if let Some(r) = refs.iter().find(|r| r.system != config.system) {
        format!("{}:{}", r.system, r.id)
    } else if let (Some(system), Some(id)) = (&config.contact_source, id) {
        format!("{system}:{id}")
    } else if !key.is_empty() {
        format!("nexo:{key}")
    } else {
        return Err(Error::rejected(
            "contact has no external reference, id or idempotency key to identify it in Xero",
        ));
    };
    if number.chars().count() > 50 {
        return Err(Error::rejected(format!(
            "ContactNumber `{number}` would exceed Xero's 50 characters"
        )));
    }
    Ok(number)
}

/// A Xero address's street lines.
pub(crate) const ADDRESS_LINES: [&str; 4] = [
    "AddressLine1",
    "AddressLine2",
    "AddressLine3",
    "AddressLine4",
];

fn contact_body(
    config: &Config,
    record: &Record,
    key: &str,
) -> Result<(Value, Option<String>), Error> {
    let payload: Value = record.payload_as()?;
    let mut body = Map::new();
    let (name, refs, id, email, phone, first, last, address, tax) = if payload.get("name").is_some()
    {
        let c: Company = record.payload_as()?;
        let (address, tax) = (c.address, c.tax_number);
        (
            c.name,
            c.external_refs,
            c.id,
            c.email,
            c.phone,
            None,
            None,
            address,
            tax,
        )
    } else {
        let c: Contact = record.payload_as()?;
        let name = [c.first_name.clone(), c.last_name.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (
            name,
            c.external_refs,
            c.id,
            c.email,
            c.phone,
            c.first_name,
            c.last_name,
            c.address,
            None,
        )
    };
    let number = contact_number(config, &refs, id.as_deref(), key)?;
    body.insert("Name".into(), json!(name));
    body.insert("ContactNumber".into(), json!(number));
    if let Some(e) = email {
        body.insert("EmailAddress".into(), json!(e));
    }
    if let Some(f) = first {
        body.insert("FirstName".into(), json!(f));
    }
    if let Some(l) = last {
        body.insert("LastName".into(), json!(l));
    }
    if let Some(p) = phone {
        body.insert(
            "Phones".into(),
            json!([{"PhoneType": "DEFAULT", "PhoneNumber": p}]),
        );
    }
    if let Some(t) = tax {
        body.insert("TaxNumber".into(), json!(t));
    }
    // The canonical address is one street address; the read takes the
    // first of the contact's addresses back.
    if let Some(a) = address {
        if a.lines.len() > ADDRESS_LINES.len() {
            return Err(Error::rejected(format!(
                "field `address.lines`: {} lines, but a Xero address holds at most {}",
                a.lines.len(),
                ADDRESS_LINES.len()
            )));
        }
        let mut street = Map::new();
        street.insert("AddressType".into(), json!("STREET"));
        for (key, line) in ADDRESS_LINES.iter().zip(&a.lines) {
            street.insert((*key).into(), json!(line));
        }
        for (key, value) in [
            ("City", a.city),
            ("Region", a.region),
            ("PostalCode", a.postal_code),
            ("Country", a.country),
        ] {
            if let Some(v) = value {
                street.insert(key.into(), json!(v));
            }
        }
        body.insert("Addresses".into(), json!([street]));
    }
    let lookup = format!("ContactNumber=={}", quoted(&number));
    Ok((Value::Object(body), Some(lookup)))
}

/// The Xero ContactID of an invoice's customer.
fn contact_id(config: &Config, customer: &PartyRef) -> Result<String, Error> {
    let r = customer.external_ref();
    if r.system == config.system {
        return Ok(r.id.clone());
    }
    let number = format!("{}:{}", r.system, r.id);
    fetch(config, "contacts", &[("where", format!("ContactNumber=={}", quoted(&number)))], None)?
        .into_iter()
        .find(|c| c["ContactStatus"] != "ARCHIVED")
        .and_then(|c| c["ContactID"].as_str().map(str::to_string))
        .ok_or_else(|| {
            Error::rejected(format!(
                "customer {number} has no Xero contact (ContactNumber `{number}`): sync the contact first"
            ))
        })
}

fn tax_type(config: &Config, rate: rust_decimal::Decimal) -> Result<String, Error> {
    config
        .tax_table()?
        .into_iter()
        .find(|(_, r)| *r == rate)
        .map(|(t, _)| t)
        .ok_or_else(|| {
            Error::rejected(format!(
                "no Xero TaxType for a tax rate of {rate} % (see `tax_types`)"
            ))
        })
}

fn invoice_body(
    config: &Config,
    record: &Record,
    key: &str,
) -> Result<(Value, Option<String>), Error> {
    // Not validated here: Xero checks the arithmetic and its message is
    // what the record is rejected with.
    let inv: Invoice = record.payload_as()?;
    let mut lines = Vec::new();
    for l in &inv.lines {
        let mut line = json!({"Description": l.description, "Quantity": num(l.quantity)?,
            "UnitAmount": num(l.unit_price)?, "TaxType": tax_type(config, l.tax_rate)?,
            "LineAmount": num(l.line_amount)?});
        if !l.discount.is_zero() {
            line["DiscountAmount"] = num(l.discount)?;
        }
        if let Some(code) = &l.account_code {
            line["AccountCode"] = json!(code);
        }
        lines.push(line);
    }
    let status = match inv.status {
        InvoiceStatus::Submitted => "SUBMITTED",
        InvoiceStatus::Authorised | InvoiceStatus::Paid => "AUTHORISED",
        InvoiceStatus::Voided => "VOIDED",
        _ => "DRAFT",
    };
    let mut body = json!({"Type": "ACCREC", "Contact": {"ContactID": contact_id(config, &inv.customer)?},
        "Date": inv.issue_date.to_string(), "Status": status, "LineAmountTypes": "Exclusive",
        "CurrencyCode": inv.currency.code(), "LineItems": lines,
        "SubTotal": num(inv.subtotal)?, "TotalTax": num(inv.total_tax)?, "Total": num(inv.total)?});
    if let Some(d) = inv.due_date {
        body["DueDate"] = json!(d.to_string());
    }
    if let Some(n) = &inv.number {
        body["InvoiceNumber"] = json!(n);
    }
    let lookup = if key.is_empty() {
        body["Reference"] = json!(inv.reference.clone().unwrap_or_default());
        None
    } else {
        body["Reference"] = json!(with_marker(inv.reference.as_deref(), key));
        Some(format!("Reference.Contains({})", quoted(&marker(key))))
    };
    Ok((body, lookup))
}

/// Xero's limits on an item's `Code` and `Name`, in characters.
const ITEM_CODE_MAX: usize = 30;
const ITEM_NAME_MAX: usize = 50;

/// An item from a canonical product; Xero keeps item codes unique, so the
/// SKU is also how a create whose answer was lost is found again.
fn item_body(config: &Config, record: &Record) -> Result<(Value, Option<String>), Error> {
    let p: Product = record.payload_as()?;
    let code = p.sku.trim();
    if code.is_empty() {
        return Err(Error::rejected(
            "product has no sku: Xero needs an item Code (map one with the field-mapper)",
        ));
    }
    for (field, value, max) in [
        ("sku", code, ITEM_CODE_MAX),
        ("name", p.name.as_str(), ITEM_NAME_MAX),
    ] {
        if value.chars().count() > max {
            return Err(Error::rejected(format!(
                "product {field} `{value}` is longer than Xero's {max} characters"
            )));
        }
    }
    let mut sales = json!({"UnitPrice": num(p.unit_price)?});
    if let Some(rate) = p.tax_rate {
        sales["TaxType"] = json!(tax_type(config, rate)?);
    }
    let body = json!({"Code": code, "Name": p.name,
        "Description": p.description.clone().unwrap_or_else(|| p.name.clone()),
        "IsSold": p.active, "SalesDetails": sales});
    Ok((body, Some(format!("Code=={}", quoted(code)))))
}

fn payment_body(
    config: &Config,
    record: &Record,
    key: &str,
) -> Result<(Value, Option<String>), Error> {
    let p: Payment = record.payload_as()?;
    if p.invoice.system != config.system {
        return Err(Error::rejected(format!(
            "payment's invoice {}:{} is not a Xero invoice (system `{}`): map it to its Xero InvoiceID first",
            p.invoice.system, p.invoice.id, config.system
        )));
    }
    let mut body = json!({"Invoice": {"InvoiceID": p.invoice.id}, "Account": {"Code": p.account_code},
        "Date": p.date.to_string(), "Amount": num(p.amount)?});
    let lookup = if key.is_empty() {
        None
    } else {
        body["Reference"] = json!(with_marker(p.reference.as_deref(), key));
        Some(format!("Reference.Contains({})", quoted(&marker(key))))
    };
    Ok((body, lookup))
}

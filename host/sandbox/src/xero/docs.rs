//! Building and checking one record of each collection from a client's
//! input, the way Xero does: fields merged onto the stored record, amounts
//! computed with exact decimals, and every refusal a validation message in
//! Xero's wording.

use serde_json::{Map, Value, json};

use super::amount::Amount;
use super::store::{Books, Collection, date_string, ms_date, parse_date};

/// Tax types of the sandbox organisation and their rates in percent.
pub const TAX_RATES: &[(&str, i64)] = &[
    ("OUTPUT2", 20),
    ("RROUTPUT", 5),
    ("ZERORATEDOUTPUT", 0),
    ("EXEMPTOUTPUT", 0),
    ("INPUT2", 20),
    ("NONE", 0),
];

fn tax_rate(tax_type: &str) -> Option<Amount> {
    TAX_RATES
        .iter()
        .find(|(t, _)| *t == tax_type)
        .map(|(_, r)| Amount::from_int(*r))
}

/// `existing` with the fields of `input` laid over it.
fn merged(existing: Option<&Value>, input: &Value) -> Map<String, Value> {
    let mut doc = existing
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(fields) = input.as_object() {
        for (k, v) in fields {
            doc.insert(k.clone(), v.clone());
        }
    }
    doc
}

fn text<'a>(doc: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    doc.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn amount_at(v: Option<&Value>, what: &str, errors: &mut Vec<String>) -> Option<Amount> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match Amount::from_json(v) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(format!("{what}: {e}"));
            None
        }
    }
}

fn result(doc: Map<String, Value>, errors: Vec<String>) -> Result<Value, Vec<String>> {
    if errors.is_empty() {
        Ok(Value::Object(doc))
    } else {
        Err(errors)
    }
}

/// A contact: `Name` required and unique among active contacts.
pub fn contact(
    books: &Books,
    existing: Option<&Value>,
    input: &Value,
) -> Result<Value, Vec<String>> {
    let mut doc = merged(existing, input);
    let mut errors = Vec::new();
    let own_id = existing.and_then(|e| e["ContactID"].as_str());
    match text(&doc, "Name") {
        None => errors.push("A Contact Name must be specified.".to_string()),
        Some(name) => {
            let taken = books.list(Collection::Contacts).into_iter().any(|c| {
                c["Name"].as_str() == Some(name)
                    && c["ContactStatus"] == "ACTIVE"
                    && c["ContactID"].as_str() != own_id
            });
            if taken {
                errors.push(format!(
                    "The contact name {name} is already assigned to another contact. The contact name must be unique across all active contacts."
                ));
            }
        }
    }
    if text(&doc, "ContactNumber").is_some_and(|n| n.chars().count() > 50) {
        errors.push("The Contact Number must not exceed 50 characters.".to_string());
    }
    if let Some(email) = text(&doc, "EmailAddress")
        && !email.contains('@')
    {
        errors.push("Email address must be valid.".to_string());
    }
    doc.entry("ContactStatus").or_insert(json!("ACTIVE"));
    doc.entry("IsCustomer").or_insert(json!(false));
    doc.entry("IsSupplier").or_insert(json!(false));
    doc.entry("HasAttachments").or_insert(json!(false));
    doc.remove("ValidationErrors");
    doc.remove("HasValidationErrors");
    result(doc, errors)
}

/// An item: `Code` required and unique.
pub fn item(books: &Books, existing: Option<&Value>, input: &Value) -> Result<Value, Vec<String>> {
    let mut doc = merged(existing, input);
    let mut errors = Vec::new();
    let own_id = existing.and_then(|e| e["ItemID"].as_str());
    match text(&doc, "Code") {
        None => errors.push("Item code must be specified.".to_string()),
        Some(code) => {
            if books
                .find(Collection::Items, "Code", code)
                .is_some_and(|i| i["ItemID"].as_str() != own_id)
            {
                errors.push(format!("Item code '{code}' already exists."));
            }
        }
    }
    if let Some(Value::Object(sales)) = doc.get_mut("SalesDetails") {
        let mut price_errors = Vec::new();
        if let Some(p) = amount_at(sales.get("UnitPrice"), "UnitPrice", &mut price_errors) {
            sales.insert("UnitPrice".into(), p.to_json());
        }
        if let Some(code) = sales.get("AccountCode").and_then(Value::as_str)
            && books.find(Collection::Accounts, "Code", code).is_none()
        {
            price_errors.push(format!(
                "Account code '{code}' is not a valid code for this document."
            ));
        }
        errors.extend(price_errors);
    }
    doc.entry("IsSold").or_insert(json!(true));
    doc.entry("IsPurchased").or_insert(json!(false));
    result(doc, errors)
}

/// An account of the chart (seeded; read-only through the API).
pub fn account(existing: Option<&Value>, input: &Value) -> Result<Value, Vec<String>> {
    let mut doc = merged(existing, input);
    if text(&doc, "Code").is_none() || text(&doc, "Name").is_none() {
        return Err(vec!["Account code and name must be specified.".to_string()]);
    }
    let bank = doc.get("Type").and_then(Value::as_str) == Some("BANK");
    doc.entry("Status").or_insert(json!("ACTIVE"));
    let class = match doc.get("Type").and_then(Value::as_str) {
        Some("BANK" | "CURRENT") => "ASSET",
        Some("REVENUE" | "SALES") => "REVENUE",
        Some("CURRLIAB") => "LIABILITY",
        Some("EQUITY") => "EQUITY",
        _ => "EXPENSE",
    };
    doc.entry("Class").or_insert(json!(class));
    doc.entry("EnablePaymentsToAccount").or_insert(json!(bank));
    if bank {
        doc.entry("BankAccountType").or_insert(json!("BANK"));
    }
    Ok(Value::Object(doc))
}

const INVOICE_STATUSES: &[&str] = &[
    "DRAFT",
    "SUBMITTED",
    "AUTHORISED",
    "PAID",
    "VOIDED",
    "DELETED",
];

/// A sales (`ACCREC`) or purchase (`ACCPAY`) invoice, totals computed and
/// checked against what the client supplied.
pub fn invoice(
    books: &Books,
    existing: Option<&Value>,
    input: &Value,
) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    if let Some(e) = existing {
        let status = e["Status"].as_str().unwrap_or_default();
        let only_status = input
            .as_object()
            .is_some_and(|m| m.keys().all(|k| k == "Status" || k == "InvoiceID"));
        if matches!(status, "PAID" | "VOIDED" | "DELETED") && !only_status {
            return Err(vec![
                "Invoice not of valid status for modification".to_string(),
            ]);
        }
    }
    let mut doc = merged(existing, input);
    let kind = text(&doc, "Type").unwrap_or_default().to_string();
    if kind != "ACCREC" && kind != "ACCPAY" {
        errors.push("Invoice Type must be specified (ACCREC or ACCPAY).".to_string());
    }
    // The contact, by id, number or name.
    let contact = doc.get("Contact").cloned().unwrap_or(Value::Null);
    let found = if let Some(id) = contact["ContactID"].as_str() {
        books.get(Collection::Contacts, id)
    } else if let Some(n) = contact["ContactNumber"].as_str() {
        books.find(Collection::Contacts, "ContactNumber", n)
    } else if let Some(n) = contact["Name"].as_str() {
        books.find(Collection::Contacts, "Name", n)
    } else {
        None
    };
    match found {
        Some(c) => {
            doc.insert(
                "Contact".into(),
                json!({"ContactID": c["ContactID"], "Name": c["Name"], "ContactNumber": c.get("ContactNumber").cloned().unwrap_or(json!(""))}),
            );
        }
        None if contact.is_null() => {
            errors.push("A Contact must be specified for this type of transaction".to_string())
        }
        None => errors.push("The Contact for this invoice could not be found.".to_string()),
    }
    let status = text(&doc, "Status").unwrap_or("DRAFT").to_string();
    if !INVOICE_STATUSES.contains(&status.as_str()) {
        errors.push(format!("Invoice Status '{status}' is not valid."));
    }
    doc.insert("Status".into(), json!(status));
    for (field, string_field) in [("Date", "DateString"), ("DueDate", "DueDateString")] {
        match doc.get(field).and_then(Value::as_str).map(parse_date) {
            Some(Some(ms)) => {
                doc.insert(field.into(), json!(ms_date(ms)));
                doc.insert(string_field.into(), json!(date_string(ms)));
            }
            Some(None) => errors.push(format!("{field} is not a valid date.")),
            None if field == "Date" => {
                errors.push("Date is required.".to_string());
            }
            None => {}
        }
    }
    let line_types = text(&doc, "LineAmountTypes")
        .unwrap_or("Exclusive")
        .to_string();
    if line_types != "Exclusive" && line_types != "NoTax" {
        errors.push(format!(
            "LineAmountTypes '{line_types}' is not supported by this organisation."
        ));
    }
    doc.insert("LineAmountTypes".into(), json!(line_types));
    doc.entry("CurrencyCode").or_insert(json!(books.currency));
    doc.entry("CurrencyRate").or_insert(json!(1));
    // Lines and totals.
    let mut subtotal = Amount::ZERO;
    let mut total_tax = Amount::ZERO;
    let mut lines = Vec::new();
    let given_lines = doc
        .get("LineItems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, line) in given_lines.iter().enumerate() {
        let n = i + 1;
        let mut l = line.as_object().cloned().unwrap_or_default();
        let qty =
            amount_at(l.get("Quantity"), "Quantity", &mut errors).unwrap_or(Amount::from_int(1));
        let unit =
            amount_at(l.get("UnitAmount"), "UnitAmount", &mut errors).unwrap_or(Amount::ZERO);
        let discount = amount_at(l.get("DiscountAmount"), "DiscountAmount", &mut errors)
            .unwrap_or(Amount::ZERO);
        let account = l
            .get("AccountCode")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut default_tax = "NONE".to_string();
        match &account {
            Some(code) => match books.find(Collection::Accounts, "Code", code) {
                Some(a) => {
                    if let Some(t) = a["TaxType"].as_str() {
                        default_tax = t.to_string();
                    }
                }
                None => errors.push(format!(
                    "Account code '{code}' is not a valid code for this document."
                )),
            },
            None if status == "AUTHORISED" || status == "SUBMITTED" => {
                errors.push(format!("Line {n}: an Account code must be specified."));
            }
            None => {}
        }
        if let Some(code) = l.get("ItemCode").and_then(Value::as_str)
            && books.find(Collection::Items, "Code", code).is_none()
        {
            errors.push(format!("Item code '{code}' is not valid."));
        }
        let tax_type = match (
            line_types.as_str(),
            l.get("TaxType").and_then(Value::as_str),
        ) {
            ("NoTax", _) => "NONE".to_string(),
            (_, Some(t)) => t.to_string(),
            (_, None) => default_tax,
        };
        let Some(rate) = tax_rate(&tax_type) else {
            errors.push(format!(
                "The TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction."
            ));
            continue;
        };
        let computed = qty
            .mul_round2(unit)
            .and_then(|g| g.checked_sub(discount))
            .and_then(|net| net.mul_round2(Amount::from_int(1)));
        let tax = computed.clone().and_then(|a| a.percent_round2(rate));
        let (Ok(line_amount), Ok(tax)) = (computed, tax) else {
            errors.push(format!("Line {n}: amount overflow."));
            continue;
        };
        if let Some(given) = amount_at(l.get("LineAmount"), "LineAmount", &mut errors)
            && given != line_amount
        {
            errors.push(format!(
                "Line {n}: the LineAmount {given} does not equal Quantity × UnitAmount − DiscountAmount ({line_amount})."
            ));
        }
        if let Some(given) = amount_at(l.get("TaxAmount"), "TaxAmount", &mut errors)
            && given != tax
        {
            errors.push(format!(
                "Line {n}: the TaxAmount {given} does not equal the {tax_type} tax on the line ({tax})."
            ));
        }
        subtotal = subtotal.checked_add(line_amount).unwrap_or(subtotal);
        total_tax = total_tax.checked_add(tax).unwrap_or(total_tax);
        l.insert("Quantity".into(), qty.to_json());
        l.insert("UnitAmount".into(), unit.to_json());
        if discount != Amount::ZERO {
            l.insert("DiscountAmount".into(), discount.to_json());
        }
        l.insert("TaxType".into(), json!(tax_type));
        l.insert("TaxAmount".into(), tax.to_json());
        l.insert("LineAmount".into(), line_amount.to_json());
        l.entry("Description").or_insert(json!(""));
        lines.push(Value::Object(l));
    }
    if lines.is_empty() && (status == "AUTHORISED" || status == "SUBMITTED") && errors.is_empty() {
        errors.push("Invoices must have at least one line item to be approved.".to_string());
    }
    let total = subtotal.checked_add(total_tax).unwrap_or(subtotal);
    for (field, value, message) in [
        (
            "SubTotal",
            subtotal,
            "The document SubTotal does not equal the sum of the line amounts.",
        ),
        (
            "TotalTax",
            total_tax,
            "The document TotalTax does not equal the sum of the line tax amounts.",
        ),
        (
            "Total",
            total,
            "The document total does not equal the sum of the lines.",
        ),
    ] {
        if input.get("LineItems").is_some()
            && let Some(given) = amount_at(input.get(field), field, &mut errors)
            && given != value
        {
            errors.push(format!("{message} ({field} {given}, expected {value})"));
        }
        doc.insert(field.into(), value.to_json());
    }
    let paid = amount_at(doc.get("AmountPaid"), "AmountPaid", &mut errors).unwrap_or(Amount::ZERO);
    let due = total.checked_sub(paid).unwrap_or(total);
    if due.is_negative() {
        errors.push("The invoice total cannot be less than the amount already paid.".to_string());
    }
    doc.insert("LineItems".into(), Value::Array(lines));
    doc.insert("AmountPaid".into(), paid.to_json());
    doc.insert("AmountDue".into(), due.to_json());
    doc.insert("AmountCredited".into(), json!(0));
    doc.entry("HasAttachments").or_insert(json!(false));
    doc.insert("HasErrors".into(), json!(false));
    doc.remove("ValidationErrors");
    doc.remove("StatusAttributeString");
    if kind == "ACCREC" && !doc.contains_key("InvoiceNumber") {
        doc.insert(
            "InvoiceNumber".into(),
            json!(format!("INV-{:04}", books.next_invoice_number)),
        );
    }
    if let Some(number) = text(&doc, "InvoiceNumber") {
        let own = existing.and_then(|e| e["InvoiceID"].as_str());
        if books
            .find(Collection::Invoices, "InvoiceNumber", number)
            .is_some_and(|i| i["InvoiceID"].as_str() != own && i["Status"] != "DELETED")
        {
            errors.push("Invoice # must be unique.".to_string());
        }
    }
    result(doc, errors)
}

/// A payment against an authorised invoice, to a bank account.
pub fn payment(
    books: &Books,
    existing: Option<&Value>,
    input: &Value,
) -> Result<Value, Vec<String>> {
    if let Some(e) = existing {
        // Xero: a payment can only be deleted, not edited.
        return match input["Status"].as_str() {
            Some("DELETED") => {
                let mut doc = merged(Some(e), &json!({"Status": "DELETED"}));
                doc.remove("HasValidationErrors");
                Ok(Value::Object(doc))
            }
            _ => Err(vec![
                "Payments can only be deleted (Status DELETED), not edited.".to_string(),
            ]),
        };
    }
    let mut doc = merged(None, input);
    let mut errors = Vec::new();
    let invoice = if let Some(id) = input["Invoice"]["InvoiceID"].as_str() {
        books.get(Collection::Invoices, id)
    } else if let Some(n) = input["Invoice"]["InvoiceNumber"].as_str() {
        books.find(Collection::Invoices, "InvoiceNumber", n)
    } else {
        None
    };
    let account = if let Some(id) = input["Account"]["AccountID"].as_str() {
        books.get(Collection::Accounts, id)
    } else if let Some(code) = input["Account"]["Code"].as_str() {
        books.find(Collection::Accounts, "Code", code)
    } else {
        None
    };
    let amount = amount_at(doc.get("Amount"), "Amount", &mut errors);
    match &account {
        None => errors.push("Account could not be found".to_string()),
        Some(a) if a["EnablePaymentsToAccount"] != json!(true) => errors.push(format!(
            "Account type is invalid for making a payment to/from (account {})",
            a["Code"].as_str().unwrap_or_default()
        )),
        Some(a) => {
            doc.insert(
                "Account".into(),
                json!({"AccountID": a["AccountID"], "Code": a["Code"]}),
            );
        }
    }
    match (&invoice, amount) {
        (None, _) => errors.push("Invoice could not be found".to_string()),
        (Some(_), None) => errors.push("Amount must be specified".to_string()),
        (Some(inv), Some(amount)) => {
            let due = Amount::from_json(&inv["AmountDue"]).unwrap_or(Amount::ZERO);
            if inv["Status"] != "AUTHORISED" {
                errors.push("Payment can only be made against Authorised documents".to_string());
            } else if amount <= Amount::ZERO {
                errors.push("Payment amount must be greater than zero".to_string());
            } else if amount > due {
                errors.push(
                    "Payment amount exceeds the amount outstanding on this document".to_string(),
                );
            }
            doc.insert(
                "Invoice".into(),
                json!({"InvoiceID": inv["InvoiceID"], "InvoiceNumber": inv["InvoiceNumber"],
                       "Type": inv["Type"], "CurrencyCode": inv["CurrencyCode"],
                       "Contact": {"ContactID": inv["Contact"]["ContactID"], "Name": inv["Contact"]["Name"]}}),
            );
            doc.insert("Amount".into(), amount.to_json());
            doc.insert(
                "PaymentType".into(),
                json!(if inv["Type"] == "ACCPAY" {
                    "ACCPAYPAYMENT"
                } else {
                    "ACCRECPAYMENT"
                }),
            );
        }
    }
    match doc.get("Date").and_then(Value::as_str).map(parse_date) {
        Some(Some(ms)) => {
            doc.insert("Date".into(), json!(ms_date(ms)));
        }
        _ => errors.push("Date is required and must be a valid date.".to_string()),
    }
    doc.insert("Status".into(), json!("AUTHORISED"));
    doc.insert("CurrencyRate".into(), json!(1));
    doc.insert("IsReconciled".into(), json!(false));
    doc.insert("HasAccount".into(), json!(true));
    result(doc, errors)
}

/// Applies (or, `reverse`, takes back) a payment on its invoice.
pub fn apply_payment(invoice: &mut Value, payment: &Value, reverse: bool) -> Result<(), String> {
    let get = |v: &Value| Amount::from_json(v).map_err(|e| e.to_string());
    let amount = get(&payment["Amount"])?;
    let paid = get(&invoice["AmountPaid"]).unwrap_or(Amount::ZERO);
    let total = get(&invoice["Total"])?;
    let paid = if reverse {
        paid.checked_sub(amount)
    } else {
        paid.checked_add(amount)
    }
    .map_err(|e| e.to_string())?;
    let due = total.checked_sub(paid).map_err(|e| e.to_string())?;
    invoice["AmountPaid"] = paid.to_json();
    invoice["AmountDue"] = due.to_json();
    if due == Amount::ZERO && !reverse {
        invoice["Status"] = json!("PAID");
        invoice["FullyPaidOnDate"] = payment["Date"].clone();
    } else if invoice["Status"] == "PAID" {
        invoice["Status"] = json!("AUTHORISED");
    }
    let mut list = invoice["Payments"].as_array().cloned().unwrap_or_default();
    list.retain(|p| p["PaymentID"] != payment["PaymentID"]);
    if !reverse {
        list.push(json!({"PaymentID": payment["PaymentID"], "Date": payment["Date"], "Amount": payment["Amount"]}));
    }
    invoice["Payments"] = Value::Array(list);
    Ok(())
}

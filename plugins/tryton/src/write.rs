//! Writes: canonical parties, products and invoices to Tryton. Every create
//! is looked up first (party code, product code, invoice marker), every
//! update compares with the record first, every refusal is Tryton's own
//! message.

use std::collections::BTreeMap;

use nexo_sdk::model::{Company, Contact, Entity, Invoice, InvoiceStatus, PartyRef, Product};
use nexo_sdk::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::api::{self, Search, dec, id_of, text};
use crate::read::{INVOICE_FIELDS, INVOICE_MARKER, PARTY_FIELDS, PRODUCT_FIELDS};
use crate::{Config, archived, describe};

/// Applies a batch; a failure that is not about one record ends it (the
/// host retries the batch, and the lookups make the retry safe).
pub fn batch(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
    let mut cache = Lookups::default();
    let mut out = Vec::with_capacity(batch.len());
    for record in batch {
        let outcome = match one(config, stream, &record, &mut cache) {
            Ok(o) => o,
            Err(Error::Rejected(m)) => {
                WriteOutcome::Failed(Error::Rejected(format!("{}: {m}", describe(&record))))
            }
            Err(e) => return Err(e),
        };
        out.push(WriteResult::new(&record.id, outcome));
    }
    Ok(out)
}

/// Ids looked up once per batch.
#[derive(Debug, Default)]
struct Lookups {
    currencies: BTreeMap<String, u64>,
    taxes: BTreeMap<String, Option<u64>>,
    countries: BTreeMap<String, Option<u64>>,
    journal: Option<u64>,
    revenue: Option<u64>,
    receivable: Option<u64>,
    unit: Option<u64>,
}

fn one(
    config: &Config,
    stream: &str,
    record: &Record,
    cache: &mut Lookups,
) -> Result<WriteOutcome, Error> {
    let dest = match record.destination_id() {
        None => None,
        Some(id) => Some(
            id.parse::<u64>()
                .map_err(|_| Error::rejected(format!("`{id}` is not a Tryton record id")))?,
        ),
    };
    match stream {
        "parties" => party(config, record, dest, cache),
        "products" => product(config, record, dest, cache),
        _ => invoice(config, record, dest, cache),
    }
}

fn find(config: &Config, model: &str, domain: Value) -> Result<Option<u64>, Error> {
    let rows = config.search(&Search {
        model,
        domain,
        fields: &["id"],
        order: Some(json!([["id", "ASC"]])),
        limit: Some(1),
    })?;
    Ok(rows.first().and_then(|r| id_of(&r["id"])))
}

/// The outcome of a write to record `id`, which existed already: known
/// by its id, or found by its code (a record made in Tryton before, or a
/// create whose answer was lost). A found record is never `created`: the
/// host counts it as matched.
fn outcome(id: u64, changed: bool) -> WriteOutcome {
    let id = id.to_string();
    if changed {
        WriteOutcome::Updated(id)
    } else {
        WriteOutcome::Unchanged(id)
    }
}

// ---- parties ----------------------------------------------------------------

/// What a party should look like, from a `Company` or `Contact` payload.
struct PartyShape {
    code: String,
    name: String,
    mechanisms: Vec<(&'static str, String)>,
    address: Option<nexo_sdk::model::Address>,
}

fn party_shape(config: &Config, record: &Record) -> Result<PartyShape, Error> {
    let payload: Value = record.payload_as()?;
    let (name, refs, email, phone, website, address) = if payload.get("name").is_some() {
        let c = Company::from_record(record)?;
        (
            c.name,
            c.external_refs,
            c.email,
            c.phone,
            c.website,
            c.address,
        )
    } else {
        let c = Contact::from_record(record)?;
        let name = [c.first_name, c.last_name]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let name = if name.trim().is_empty() {
            c.email.clone().unwrap_or_default()
        } else {
            name
        };
        (name, c.external_refs, c.email, c.phone, None, c.address)
    };
    let code = match (
        refs.iter().find(|r| r.system != config.system),
        record.idempotency_key(),
    ) {
        (Some(r), _) => format!("{}:{}", r.system, r.id),
        (None, Some(key)) => format!("nexo:{key}"),
        (None, None) => {
            return Err(Error::rejected(
                "the party has no external reference nor idempotency key to identify it in Tryton",
            ));
        }
    };
    let mechanisms = [("email", email), ("phone", phone), ("website", website)]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
        .collect();
    Ok(PartyShape {
        code,
        name,
        mechanisms,
        address,
    })
}

fn country(config: &Config, code: &str, cache: &mut Lookups) -> Result<Option<u64>, Error> {
    if let Some(id) = cache.countries.get(code) {
        return Ok(*id);
    }
    let id = find(config, "country.country", json!([["code", "=", code]]))?;
    if id.is_none() {
        nexo_sdk::warn!("Tryton has no country {code}; the address is written without it");
    }
    cache.countries.insert(code.to_string(), id);
    Ok(id)
}

fn address_values(
    config: &Config,
    a: &nexo_sdk::model::Address,
    cache: &mut Lookups,
) -> Result<serde_json::Map<String, Value>, Error> {
    let mut v = serde_json::Map::new();
    if !a.lines.is_empty() {
        v.insert("street".into(), json!(a.lines.join("\n")));
    }
    if let Some(c) = &a.city {
        v.insert("city".into(), json!(c));
    }
    if let Some(p) = &a.postal_code {
        v.insert("postal_code".into(), json!(p));
    }
    if let Some(code) = &a.country
        && let Some(id) = country(config, code, cache)?
    {
        v.insert("country".into(), json!(id));
    }
    Ok(v)
}

/// A delete of a party or product: Tryton keeps them for the documents that
/// refer to them, so the record is archived (`active: false`). A delete
/// without a Tryton id has nothing to archive.
fn archive(config: &Config, model: &str, dest: Option<u64>) -> Result<WriteOutcome, Error> {
    let Some(id) = dest else {
        return Ok(WriteOutcome::Deleted(String::new()));
    };
    config.update(model, id, &archived())?;
    Ok(WriteOutcome::Deleted(id.to_string()))
}

fn party(
    config: &Config,
    record: &Record,
    dest: Option<u64>,
    cache: &mut Lookups,
) -> Result<WriteOutcome, Error> {
    if record.operation == Operation::Delete {
        return archive(config, "party.party", dest);
    }
    let shape = party_shape(config, record)?;
    let id = match dest {
        Some(id) => Some(id),
        None => find(config, "party.party", json!([["code", "=", shape.code]]))?,
    };
    let Some(id) = id else {
        let mechanisms: Vec<Value> = shape
            .mechanisms
            .iter()
            .map(|(k, v)| json!({"type": k, "value": v}))
            .collect();
        let address = match &shape.address {
            Some(a) => Value::Object(address_values(config, a, cache)?),
            None => json!({}),
        };
        let values = json!({"name": shape.name, "code": shape.code,
            "contact_mechanisms": [["create", mechanisms]], "addresses": [["create", [address]]]});
        let id = config.create("party.party", &values)?;
        return Ok(WriteOutcome::Created(id.to_string()));
    };
    let current = config.get("party.party", id, PARTY_FIELDS)?;
    let mut values = serde_json::Map::new();
    if current["name"].as_str() != Some(shape.name.as_str()) {
        values.insert("name".into(), json!(shape.name));
    }
    if !crate::read::is_active_value(&current["active"]) {
        values.insert("active".into(), json!(true));
    }
    let mut mech_ops = Vec::new();
    let mut creates = Vec::new();
    for (kind, value) in &shape.mechanisms {
        let existing = current["contact_mechanisms"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["type"].as_str() == Some(kind));
        match existing {
            Some(m) if m["value"].as_str() == Some(value.as_str()) => {}
            Some(m) => mech_ops.push(json!(["write", [id_of(&m["id"])], {"value": value}])),
            None => creates.push(json!({"type": kind, "value": value})),
        }
    }
    if !creates.is_empty() {
        mech_ops.push(json!(["create", creates]));
    }
    if !mech_ops.is_empty() {
        values.insert("contact_mechanisms".into(), Value::Array(mech_ops));
    }
    if let Some(a) = &shape.address {
        let wanted = address_values(config, a, cache)?;
        match current["addresses"].as_array().and_then(|a| a.first()) {
            Some(have) => {
                let differs = wanted.iter().any(|(k, v)| {
                    let now = if k == "country" {
                        json!(id_of(&have["country"]))
                    } else {
                        have[k].clone()
                    };
                    &now != v
                });
                if differs {
                    values.insert(
                        "addresses".into(),
                        json!([["write", [id_of(&have["id"])], wanted]]),
                    );
                }
            }
            None => {
                values.insert("addresses".into(), json!([["create", [wanted]]]));
            }
        }
    }
    let changed = !values.is_empty();
    if changed {
        config.update("party.party", id, &Value::Object(values))?;
    }
    Ok(outcome(id, changed))
}

// ---- products ---------------------------------------------------------------

fn unit(config: &Config, cache: &mut Lookups) -> Result<u64, Error> {
    if let Some(u) = cache.unit {
        return Ok(u);
    }
    let u = find(config, "product.uom", json!([["symbol", "=", "u"]]))?.ok_or_else(|| {
        Error::config("Tryton has no unit of measure with symbol `u` for written products")
    })?;
    cache.unit = Some(u);
    Ok(u)
}

fn product(
    config: &Config,
    record: &Record,
    dest: Option<u64>,
    cache: &mut Lookups,
) -> Result<WriteOutcome, Error> {
    if record.operation == Operation::Delete {
        return archive(config, "product.product", dest);
    }
    let p = Product::from_record(record)?;
    if let Some(c) = p.currency {
        let company = config.get("company.company", config.company, &["currency.code"])?;
        let own = company["currency"]["code"].as_str().unwrap_or_default();
        if c.code() != own {
            return Err(Error::rejected(format!(
                "the price is in {c}, Tryton's list prices are in the company currency {own}"
            )));
        }
    }
    let id = match dest {
        Some(id) => Some(id),
        None => find(config, "product.product", json!([["code", "=", p.sku]]))?,
    };
    let Some(id) = id else {
        let unit = unit(config, cache)?;
        let mut values = json!({"name": p.name, "code": p.sku, "type": config.product_type,
            "list_price": api::decimal(p.unit_price), "default_uom": unit, "sale_uom": unit,
            "salable": true, "active": p.active,
            "products": [["create", [{"description": p.description, "active": p.active}]]]});
        if let Some(c) = config.account_category {
            values["account_category"] = json!(c);
        }
        let template = config.create("product.template", &values)?;
        let variant = config.get("product.template", template, &["products"])?;
        let id = variant["products"]
            .as_array()
            .and_then(|v| v.first())
            .and_then(id_of)
            .ok_or_else(|| Error::internal(format!("Tryton template {template} has no variant")))?;
        return Ok(WriteOutcome::Created(id.to_string()));
    };
    let current = config.get("product.product", id, PRODUCT_FIELDS)?;
    let template = id_of(&current["template"])
        .ok_or_else(|| Error::internal(format!("Tryton product {id} has no template")))?;
    let mut t = serde_json::Map::new();
    if current["name"].as_str() != Some(p.name.as_str()) {
        t.insert("name".into(), json!(p.name));
    }
    if current["code"].as_str() != Some(p.sku.as_str()) {
        t.insert("code".into(), json!(p.sku));
    }
    if dec(&current["list_price_used"])? != p.unit_price {
        t.insert("list_price".into(), api::decimal(p.unit_price));
    }
    let active = crate::read::is_active_value(&current["active"]);
    if active != p.active {
        t.insert("active".into(), json!(p.active));
    }
    let mut v = serde_json::Map::new();
    if text(&current["description"]) != p.description.as_deref().and_then(|d| text(&json!(d))) {
        v.insert("description".into(), json!(p.description));
    }
    if active != p.active {
        v.insert("active".into(), json!(p.active));
    }
    let changed = !(t.is_empty() && v.is_empty());
    if !t.is_empty() {
        config.update("product.template", template, &Value::Object(t))?;
    }
    if !v.is_empty() {
        config.update("product.product", id, &Value::Object(v))?;
    }
    Ok(outcome(id, changed))
}

// ---- invoices ---------------------------------------------------------------

fn currency_id(config: &Config, code: &str, cache: &mut Lookups) -> Result<u64, Error> {
    if let Some(id) = cache.currencies.get(code) {
        return Ok(*id);
    }
    let id = find(config, "currency.currency", json!([["code", "=", code]]))?
        .ok_or_else(|| Error::rejected(format!("Tryton has no currency {code}")))?;
    cache.currencies.insert(code.to_string(), id);
    Ok(id)
}

fn tax_id(config: &Config, rate: Decimal, cache: &mut Lookups) -> Result<Option<u64>, Error> {
    if rate.is_zero() {
        return Ok(None);
    }
    let key = rate.normalize().to_string();
    if let Some(id) = config.taxes.get(&key) {
        return Ok(Some(*id));
    }
    if let Some(id) = cache.taxes.get(&key) {
        return Ok(*id);
    }
    let fraction = rate / Decimal::ONE_HUNDRED;
    let id = find(
        config,
        "account.tax",
        json!([
            ["type", "=", "percentage"],
            ["rate", "=", api::decimal(fraction)],
            ["company", "=", config.company],
            ["parent", "=", null]
        ]),
    )?;
    cache.taxes.insert(key.clone(), id);
    id.map(Some).ok_or_else(|| {
        Error::rejected(format!(
            "Tryton has no percentage tax of {key} % for company {} (add one, or map the rate in `taxes`)",
            config.company
        ))
    })
}

fn revenue_account(config: &Config, cache: &mut Lookups) -> Result<u64, Error> {
    if let Some(a) = config.revenue_account.or(cache.revenue) {
        return Ok(a);
    }
    let a = find(
        config,
        "account.account",
        json!([
            ["type.revenue", "=", true],
            ["company", "=", config.company],
            ["closed", "!=", true]
        ]),
    )?
    .ok_or_else(|| Error::config("Tryton has no open revenue account; set `revenue_account`"))?;
    cache.revenue = Some(a);
    Ok(a)
}

/// The receivable account of parties that have none of their own (what
/// Tryton's `account_receivable_used` falls back to).
fn default_receivable(config: &Config, cache: &mut Lookups) -> Result<Option<u64>, Error> {
    if cache.receivable.is_none() {
        let c = config.get("account.configuration", 1, &["default_account_receivable"])?;
        cache.receivable = id_of(&c["default_account_receivable"]);
    }
    Ok(cache.receivable)
}

fn journal(config: &Config, cache: &mut Lookups) -> Result<u64, Error> {
    if let Some(j) = config.journal.or(cache.journal) {
        return Ok(j);
    }
    let j = find(config, "account.journal", json!([["type", "=", "revenue"]]))?
        .ok_or_else(|| Error::config("Tryton has no revenue journal; set `journal`"))?;
    cache.journal = Some(j);
    Ok(j)
}

/// The party billed, created when it is another system's and missing.
fn customer(config: &Config, inv: &Invoice) -> Result<u64, Error> {
    let r = match &inv.customer {
        PartyRef::Contact(r) | PartyRef::Company(r) => r,
        _ => return Err(Error::rejected("unsupported kind of customer reference")),
    };
    if r.system == config.system {
        return r
            .id
            .parse()
            .map_err(|_| Error::rejected(format!("customer `{}` is not a Tryton party id", r.id)));
    }
    let code = format!("{}:{}", r.system, r.id);
    if let Some(id) = find(config, "party.party", json!([["code", "=", code]]))? {
        return Ok(id);
    }
    let name = inv
        .extra
        .get("customer_name")
        .and_then(text)
        .unwrap_or_else(|| code.clone());
    nexo_sdk::info!("creating Tryton party {code} for an invoice");
    config.create(
        "party.party",
        &json!({"name": name, "code": code, "addresses": [["create", [{}]]]}),
    )
}

/// Lines as Tryton's create values, and as a comparable shape.
fn invoice_lines(
    config: &Config,
    inv: &Invoice,
    currency: u64,
    cache: &mut Lookups,
) -> Result<(Vec<Value>, Vec<String>), Error> {
    let account = revenue_account(config, cache)?;
    let mut values = Vec::new();
    let mut shape = Vec::new();
    for l in &inv.lines {
        let net = l.quantity * l.unit_price - l.discount;
        // Tryton has no line discount without its `sale_discount` module:
        // the discount goes into the unit price when it stays exact.
        let unit_price = if l.discount.is_zero() || l.quantity.is_zero() {
            l.unit_price
        } else {
            (net / l.quantity).normalize()
        };
        let unit_price = exact_price(
            l.quantity,
            unit_price,
            l.line_amount,
            inv.currency.minor_units(),
        );
        let tax = tax_id(config, l.tax_rate, cache)?;
        let mut v = json!({"type": "line", "company": config.company, "currency": currency,
            "description": l.description,
            "quantity": api::float(l.quantity)?, "unit_price": api::decimal(unit_price),
            "account": account, "taxes": [["add", tax.into_iter().collect::<Vec<_>>()]]});
        if let Some(p) = &l.product
            && p.system == config.system
            && let Ok(pid) = p.id.parse::<u64>()
        {
            v["product"] = json!(pid);
        }
        shape.push(line_shape(
            &l.description,
            l.quantity,
            unit_price,
            tax.into_iter().collect(),
        ));
        values.push(v);
    }
    Ok((values, shape))
}

/// Tryton rounds a line's amount half to even, the canonical model half
/// away from zero: on a tie (e.g. 2.5 × 10.01 = 25.025) Tryton's amount
/// would be one cent off. The unit price then moves by Tryton's smallest
/// price step (0.0001) towards the canonical amount, so the posted amounts
/// are the record's.
fn exact_price(quantity: Decimal, price: Decimal, amount: Decimal, minor: u32) -> Decimal {
    use rust_decimal::RoundingStrategy::MidpointNearestEven;
    let tryton = |p: Decimal| (quantity * p).round_dp_with_strategy(minor, MidpointNearestEven);
    if quantity.is_zero() || tryton(price) == amount {
        return price;
    }
    let step = Decimal::new(1, 4);
    let nudged = if (amount > tryton(price)) == (quantity > Decimal::ZERO) {
        price + step
    } else {
        price - step
    };
    if tryton(nudged) == amount {
        nudged.normalize()
    } else {
        price
    }
}

fn line_shape(
    description: &str,
    quantity: Decimal,
    unit_price: Decimal,
    taxes: Vec<u64>,
) -> String {
    format!(
        "{description}|{}|{}|{taxes:?}",
        quantity.normalize(),
        unit_price.normalize()
    )
}

fn invoice(
    config: &Config,
    record: &Record,
    dest: Option<u64>,
    cache: &mut Lookups,
) -> Result<WriteOutcome, Error> {
    const MODEL: &str = "account.invoice";
    if record.operation == Operation::Delete {
        let Some(id) = dest else {
            return Ok(WriteOutcome::Deleted(String::new()));
        };
        let current = config.get(MODEL, id, &["state"])?;
        match current["state"].as_str() {
            Some("draft") => config.delete(MODEL, id)?,
            Some("cancelled") => {}
            Some("validated") => config.action(MODEL, id, "cancel")?,
            other => {
                return Err(Error::rejected(format!(
                    "invoice {id} is {}: Tryton does not delete a posted invoice; credit it in Tryton",
                    other.unwrap_or("unknown")
                )));
            }
        }
        return Ok(WriteOutcome::Deleted(id.to_string()));
    }
    let inv = Invoice::from_record(record)?;
    let marker = record
        .idempotency_key()
        .map(|k| format!("{INVOICE_MARKER}{k}"));
    let found = match (dest, &marker) {
        (Some(id), _) => Some(id),
        (None, Some(m)) => find(
            config,
            MODEL,
            json!([["type", "=", "out"], ["description", "=", m]]),
        )?,
        (None, None) => None,
    };
    let party = customer(config, &inv)?;
    let currency = currency_id(config, inv.currency.code(), cache)?;
    let (lines, shape) = invoice_lines(config, &inv, currency, cache)?;
    let id = match found {
        Some(id) => id,
        None => {
            let addr = config.get("party.party", party, &["addresses", "account_receivable"])?;
            let address = addr["addresses"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(id_of);
            let receivable = match id_of(&addr["account_receivable"]) {
                Some(a) => a,
                None => default_receivable(config, cache)?.ok_or_else(|| {
                    Error::rejected(format!(
                        "Tryton party {party} has no receivable account and the accounting \
                         configuration no default one"
                    ))
                })?,
            };
            let mut values = json!({"type": "out", "company": config.company, "party": party,
                "invoice_address": address, "account": receivable, "currency": currency,
                "journal": journal(config, cache)?, "invoice_date": api::date(inv.issue_date),
                "reference": inv.reference, "description": marker,
                "lines": [["create", lines]]});
            if let Some(t) = config.payment_term {
                values["payment_term"] = json!(t);
            }
            let id = config.create(MODEL, &values)?;
            if let Err(e) = check_totals(config, id, &inv) {
                // Not Tryton's arithmetic: leave nothing behind.
                config.delete(MODEL, id)?;
                return Err(e);
            }
            transition(config, id, "draft", inv.status)?;
            return Ok(WriteOutcome::Created(id.to_string()));
        }
    };
    let current = config.get(MODEL, id, INVOICE_FIELDS)?;
    let state = current["state"].as_str().unwrap_or_default().to_string();
    let have: Vec<String> = current["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["type"].as_str() == Some("line"))
        .map(|l| -> Result<String, Error> {
            let taxes = l["taxes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(id_of)
                .collect();
            Ok(line_shape(
                l["description"].as_str().unwrap_or_default(),
                dec(&l["quantity"])?,
                dec(&l["unit_price"])?,
                taxes,
            ))
        })
        .collect::<Result<_, _>>()?;
    let same_body = have == shape
        && id_of(&current["party"]) == Some(party)
        && current["currency"].get("code").and_then(Value::as_str) == Some(inv.currency.code())
        && api::stamp(&current["invoice_date"]).as_deref()
            == Some(inv.issue_date.to_string().as_str());
    let same_reference =
        text(&current["reference"]) == inv.reference.as_deref().and_then(|r| text(&json!(r)));
    let mut changed = false;
    if !(same_body && same_reference) {
        if state != "draft" {
            return Err(Error::rejected(format!(
                "invoice {} is {state}: Tryton does not allow changing its lines, customer, date, \
                 currency or reference; credit it in Tryton and send a new invoice",
                current["number"].as_str().unwrap_or("(no number)")
            )));
        }
        let old: Vec<u64> = current["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| id_of(&l["id"]))
            .collect();
        config.update(
            MODEL,
            id,
            &json!({"party": party, "currency": currency, "invoice_date": api::date(inv.issue_date),
                "reference": inv.reference, "lines": [["delete", old], ["create", lines]]}),
        )?;
        check_totals(config, id, &inv)?;
        changed = true;
    }
    changed |= transition(config, id, &state, inv.status)?;
    Ok(outcome(id, changed))
}

/// Tryton computes the totals itself; they must be the record's.
fn check_totals(config: &Config, id: u64, inv: &Invoice) -> Result<(), Error> {
    let t = config.get(
        "account.invoice",
        id,
        &["untaxed_amount", "tax_amount", "total_amount"],
    )?;
    let got = (
        dec(&t["untaxed_amount"])?,
        dec(&t["tax_amount"])?,
        dec(&t["total_amount"])?,
    );
    if got != (inv.subtotal, inv.total_tax, inv.total) {
        return Err(Error::rejected(format!(
            "Tryton computes subtotal {} + tax {} = {}, the record says {} + {} = {}",
            got.0, got.1, got.2, inv.subtotal, inv.total_tax, inv.total
        )));
    }
    Ok(())
}

/// Moves the invoice from `state` towards `status`; whether it moved.
fn transition(config: &Config, id: u64, state: &str, status: InvoiceStatus) -> Result<bool, Error> {
    let steps: &[&str] = match (state, status) {
        ("draft", InvoiceStatus::Submitted) => &["validate_invoice"],
        ("draft" | "validated", InvoiceStatus::Authorised | InvoiceStatus::Paid) => &["post"],
        ("draft" | "validated", InvoiceStatus::Voided) => &["cancel"],
        ("posted" | "paid", InvoiceStatus::Voided) => {
            return Err(Error::rejected(format!(
                "invoice {id} is {state}: void it with a credit note in Tryton"
            )));
        }
        _ => &[],
    };
    for step in steps {
        config.action("account.invoice", id, step)?;
    }
    Ok(!steps.is_empty())
}

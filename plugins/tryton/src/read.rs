//! Incremental reads: a keyset on `(last_modified_at, id)` per source model,
//! paged to the end, and each Tryton record mapped to its canonical form.

use std::collections::{BTreeSet, HashSet};

use nexo_sdk::model::{
    Address, Company, Currency, Date, ExternalRef, Invoice, InvoiceLine, InvoiceStatus, PartyRef,
    PartyRole, Product,
};
use nexo_sdk::prelude::*;
use nexo_sdk::state::parse_state;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Config;
use crate::api::{Search, dec, id_of, stamp, text};

/// The marker written invoices carry in `description`.
pub const INVOICE_MARKER: &str = "nexo:";

/// Fields read for each stream's records.
pub const PARTY_FIELDS: &[&str] = &[
    "name",
    "code",
    "active",
    "last_modified_at",
    "contact_mechanisms.type",
    "contact_mechanisms.value",
    "addresses.street",
    "addresses.city",
    "addresses.postal_code",
    "addresses.country.code",
    "identifiers.type",
    "identifiers.code",
];
/// Fields of a product variant.
pub const PRODUCT_FIELDS: &[&str] = &[
    "code",
    "name",
    "description",
    "active",
    "list_price_used",
    "last_modified_at",
    "template.type",
    "template.last_modified_at",
    "template.account_category.customer_taxes.rate",
    "default_uom.symbol",
];
const SALE_FIELDS: &[&str] = &[
    "number",
    "reference",
    "description",
    "state",
    "sale_date",
    "party",
    "currency.code",
    "untaxed_amount",
    "tax_amount",
    "total_amount",
    "last_modified_at",
    "lines.type",
    "lines.description",
    "lines.product",
    "lines.product.code",
    "lines.quantity",
    "lines.unit_price",
    "lines.amount",
];
/// Fields of an invoice.
pub const INVOICE_FIELDS: &[&str] = &[
    "number",
    "reference",
    "description",
    "state",
    "invoice_date",
    "party",
    "currency.code",
    "untaxed_amount",
    "tax_amount",
    "total_amount",
    "amount_to_pay",
    "last_modified_at",
    "lines.type",
    "lines.description",
    "lines.product",
    "lines.quantity",
    "lines.unit_price",
    "lines.amount",
    "lines.account.code",
    "lines.taxes",
    "lines.taxes.rate",
];

/// A sale order as Tryton holds it (there is no canonical order type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SaleOrder {
    /// Tryton id.
    pub id: String,
    /// Sale number, once quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Customer's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The customer (a party of this system).
    pub customer: PartyRef,
    /// Sale date (`YYYY-MM-DD`), once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_date: Option<String>,
    /// Currency code.
    pub currency: String,
    /// Tryton state: draft, quotation, confirmed, processing, done, cancelled.
    pub state: String,
    /// Product lines.
    pub lines: Vec<SaleLine>,
    /// Amount without tax.
    pub untaxed_amount: String,
    /// Tax.
    pub tax_amount: String,
    /// Total.
    pub total_amount: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

/// One product line of a [`SaleOrder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SaleLine {
    /// Line text.
    #[serde(default)]
    pub description: String,
    /// The product (this system's variant id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ExternalRef>,
    /// Product code, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    /// Quantity.
    pub quantity: String,
    /// Unit price without tax.
    pub unit_price: String,
    /// Line amount without tax.
    pub amount: String,
}

/// Where a read stands in one source model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    /// `last_modified_at` of the last record read (see [`stamp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    /// Its id: records at the same instant come in id order.
    #[serde(default)]
    id: u64,
}

/// The read state of a stream: a position per source, and the source the
/// read is in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ReadState {
    #[serde(default)]
    phase: usize,
    #[serde(default)]
    positions: Vec<Position>,
}

/// A model whose changes make records of a stream change.
struct Source {
    model: &'static str,
    /// `None`: the stream's own records; `Some(field)`: a parent whose
    /// change re-reads the records listed in `field`.
    children: Option<&'static str>,
}

fn sources(stream: &str) -> (&'static str, Vec<Source>, Value, &'static [&'static str]) {
    let own = |model| Source {
        model,
        children: None,
    };
    match stream {
        "parties" => (
            "party.party",
            vec![own("party.party")],
            json!([]),
            PARTY_FIELDS,
        ),
        "products" => (
            "product.product",
            vec![
                own("product.product"),
                Source {
                    model: "product.template",
                    children: Some("products"),
                },
            ],
            json!([]),
            PRODUCT_FIELDS,
        ),
        "sales" => ("sale.sale", vec![own("sale.sale")], json!([]), SALE_FIELDS),
        _ => (
            "account.invoice",
            vec![own("account.invoice")],
            json!([["type", "=", "out"]]),
            INVOICE_FIELDS,
        ),
    }
}

/// Records strictly after `pos` in `(last_modified_at, id)` order.
fn after(pos: &Position) -> Result<Value, Error> {
    Ok(match &pos.at {
        None => json!([]),
        Some(at) => {
            let at = crate::api::datetime(at)?;
            json!([[
                "OR",
                [["last_modified_at", ">", at]],
                [["last_modified_at", "=", at], ["id", ">", pos.id]]
            ]])
        }
    })
}

/// One page of `stream` after `state`.
pub fn page(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
    let (model, sources, base, fields) = sources(stream);
    let mut st: ReadState = parse_state(state)?;
    st.positions.resize(sources.len(), Position::default());
    let phase = st.phase.min(sources.len() - 1);
    let source = &sources[phase];
    let mut domain = base.as_array().cloned().unwrap_or_default();
    if source.children.is_some() {
        // The parent's own filter does not apply; the children's does.
        domain.clear();
    }
    domain.extend(
        after(&st.positions[phase])?
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let mut wanted: Vec<&str> = vec!["last_modified_at"];
    match source.children {
        None => wanted.extend(fields.iter().copied()),
        Some(field) => wanted.push(field),
    }
    let rows = config.search(&Search {
        model: source.model,
        domain: Value::Array(domain),
        fields: &wanted,
        order: Some(json!([["last_modified_at", "ASC"], ["id", "ASC"]])),
        limit: Some(config.page_size),
    })?;
    let mut records = Vec::new();
    let mut seen = HashSet::new();
    for row in &rows {
        let at = stamp(&row["last_modified_at"]).unwrap_or_default();
        let id = id_of(&row["id"]).unwrap_or_default();
        st.positions[phase] = Position {
            at: Some(at.clone()),
            id,
        };
        let own = match source.children {
            None => vec![row.clone()],
            Some(field) => {
                let ids: Vec<u64> = row[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(id_of)
                    .filter(|id| !seen.contains(id))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let mut domain = base.as_array().cloned().unwrap_or_default();
                domain.push(json!(["id", "in", ids]));
                config.search(&Search {
                    model,
                    domain: Value::Array(domain),
                    fields,
                    order: Some(json!([["id", "ASC"]])),
                    limit: None,
                })?
            }
        };
        for r in own {
            let rid = id_of(&r["id"]).unwrap_or_default();
            if !seen.insert(rid) {
                continue;
            }
            records.push(to_canonical(config, stream, &r)?.with_cursor(at.clone()));
        }
    }
    let full = rows.len() >= config.page_size as usize;
    let has_more = if full {
        true
    } else if phase + 1 < sources.len() {
        st.phase = phase + 1;
        true
    } else {
        st.phase = 0;
        false
    };
    let state = Some(serde_json::to_string(&st)?);
    Ok(if has_more {
        Page::more(records, state)
    } else {
        Page::last(records, state)
    })
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn rfc3339(v: &Value) -> Option<String> {
    stamp(v)
}

/// A Tryton row as the stream's record.
pub fn to_canonical(config: &Config, stream: &str, row: &Value) -> Result<Record, Error> {
    let id = id_of(&row["id"]).unwrap_or_default().to_string();
    match stream {
        "parties" => Record::upsert(stream, &id, &party(config, row, &id)),
        "products" => Record::upsert(stream, &id, &product(row, &id)?),
        "sales" => Record::upsert(stream, &id, &sale(config, row, &id)?),
        _ => Record::upsert(stream, &id, &invoice(config, row, &id)?),
    }
}

/// `<system>:<id>` in a party code, when it names another system.
pub fn code_ref(config: &Config, code: &str) -> Option<ExternalRef> {
    let (system, id) = code.split_once(':')?;
    (system != config.system && system != "nexo" && !system.is_empty() && !id.is_empty())
        .then(|| ExternalRef::new(system, id))
}

fn party(config: &Config, row: &Value, id: &str) -> Company {
    let mut c = Company::new(row["name"].as_str().unwrap_or_default());
    c.id = Some(id.to_string());
    let mechanism = |kind: &str| {
        list(&row["contact_mechanisms"])
            .find(|m| m["type"].as_str() == Some(kind))
            .and_then(|m| text(&m["value"]))
    };
    c.email = mechanism("email");
    c.phone = mechanism("phone").or_else(|| mechanism("mobile"));
    c.website = mechanism("website");
    c.tax_number = list(&row["identifiers"])
        .find(|i| i["type"].is_string())
        .and_then(|i| text(&i["code"]));
    c.address = list(&row["addresses"]).next().map(|a| {
        let mut addr = Address::default();
        addr.lines = a["street"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        addr.city = text(&a["city"]);
        addr.postal_code = text(&a["postal_code"]);
        addr.country = a["country"].get("code").and_then(text);
        addr
    });
    c.roles = BTreeSet::from([PartyRole::Customer]);
    if let Some(code) = row["code"].as_str() {
        if let Some(r) = code_ref(config, code) {
            c.external_refs.push(r);
        }
        c.extra.insert("tryton_code".into(), json!(code));
    }
    if !is_active_value(&row["active"]) {
        c.extra.insert("tryton_active".into(), json!(false));
    }
    c.updated_at = rfc3339(&row["last_modified_at"]);
    c
}

pub fn is_active_value(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0),
        _ => true,
    }
}

fn product(row: &Value, id: &str) -> Result<Product, Error> {
    let sku = text(&row["code"]).unwrap_or_else(|| format!("tryton-{id}"));
    let mut p = Product::new(
        sku,
        row["name"].as_str().unwrap_or_default(),
        dec(&row["list_price_used"])?,
    );
    p.id = Some(id.to_string());
    p.description = text(&row["description"]);
    p.active = is_active_value(&row["active"]);
    let taxes: Vec<Decimal> = list(&row["template"]["account_category"]["customer_taxes"])
        .map(|t| dec(&t["rate"]))
        .collect::<Result<_, _>>()?;
    if !taxes.is_empty() {
        p.tax_rate = Some(percent(taxes.into_iter().sum()));
    }
    let template = &row["template"];
    let updated = [
        stamp(&row["last_modified_at"]),
        stamp(&template["last_modified_at"]),
    ]
    .into_iter()
    .flatten()
    .max();
    p.updated_at = updated;
    if let Some(t) = id_of(template) {
        p.extra
            .insert("tryton_template".into(), json!(t.to_string()));
    }
    if let Some(t) = text(&template["type"]) {
        p.extra.insert("tryton_type".into(), json!(t));
    }
    if let Some(u) = row["default_uom"].get("symbol").and_then(text) {
        p.extra.insert("tryton_uom".into(), json!(u));
    }
    Ok(p)
}

/// A Tryton rate (`0.2`) as a percentage (`20`).
fn percent(rate: Decimal) -> Decimal {
    (rate * Decimal::ONE_HUNDRED).normalize()
}

fn currency(v: &Value) -> Result<Currency, Error> {
    let code = v.get("code").and_then(Value::as_str).unwrap_or_default();
    Currency::from_code(code).map_err(|e| Error::internal(format!("Tryton currency `{code}`: {e}")))
}

fn sale(config: &Config, row: &Value, id: &str) -> Result<SaleOrder, Error> {
    let customer = PartyRef::Company(ExternalRef::new(
        config.system.clone(),
        id_of(&row["party"]).unwrap_or_default().to_string(),
    ));
    let mut lines = Vec::new();
    for l in list(&row["lines"]).filter(|l| l["type"].as_str() == Some("line")) {
        let product = id_of(&l["product"]);
        lines.push(SaleLine {
            description: l["description"].as_str().unwrap_or_default().to_string(),
            product: product.map(|p| ExternalRef::new(config.system.clone(), p.to_string())),
            product_code: l["product"].get("code").and_then(text),
            quantity: dec(&l["quantity"])?.to_string(),
            unit_price: dec(&l["unit_price"])?.to_string(),
            amount: dec(&l["amount"])?.to_string(),
        });
    }
    Ok(SaleOrder {
        id: id.to_string(),
        number: text(&row["number"]),
        reference: text(&row["reference"]),
        description: text(&row["description"]),
        customer,
        sale_date: stamp(&row["sale_date"]),
        currency: currency(&row["currency"])?.code().to_string(),
        state: row["state"].as_str().unwrap_or_default().to_string(),
        lines,
        untaxed_amount: dec(&row["untaxed_amount"])?.to_string(),
        tax_amount: dec(&row["tax_amount"])?.to_string(),
        total_amount: dec(&row["total_amount"])?.to_string(),
        updated_at: stamp(&row["last_modified_at"]).unwrap_or_default(),
    })
}

/// Tryton's invoice state as the canonical status.
pub fn status_of(state: &str) -> InvoiceStatus {
    match state {
        "validated" => InvoiceStatus::Submitted,
        "posted" => InvoiceStatus::Authorised,
        "paid" => InvoiceStatus::Paid,
        "cancelled" => InvoiceStatus::Voided,
        _ => InvoiceStatus::Draft,
    }
}

fn invoice(config: &Config, row: &Value, id: &str) -> Result<Invoice, Error> {
    let customer = PartyRef::Company(ExternalRef::new(
        config.system.clone(),
        id_of(&row["party"]).unwrap_or_default().to_string(),
    ));
    let day = stamp(&row["invoice_date"])
        .or_else(|| stamp(&row["last_modified_at"]))
        .unwrap_or_default();
    let issue: Date = day
        .get(..10)
        .unwrap_or_default()
        .parse()
        .map_err(|e| Error::internal(format!("invoice {id}: date `{day}`: {e}")))?;
    let mut inv = Invoice::new(customer, issue, currency(&row["currency"])?);
    inv.id = Some(id.to_string());
    inv.number = text(&row["number"]);
    inv.reference = text(&row["reference"]);
    inv.status = status_of(row["state"].as_str().unwrap_or_default());
    for l in list(&row["lines"]).filter(|l| l["type"].as_str() == Some("line")) {
        let rate: Decimal = list(&l["taxes"])
            .map(|t| dec(&t["rate"]))
            .sum::<Result<Decimal, Error>>()?;
        let mut line = InvoiceLine::new(
            l["description"].as_str().unwrap_or_default(),
            dec(&l["quantity"])?,
            dec(&l["unit_price"])?,
        )
        .with_tax_rate(percent(rate));
        line.line_amount = dec(&l["amount"])?;
        if let Some(code) = l["account"].get("code").and_then(text) {
            line = line.with_account_code(code);
        }
        if let Some(p) = id_of(&l["product"]) {
            line = line.with_product(ExternalRef::new(config.system.clone(), p.to_string()));
        }
        inv.lines.push(line);
    }
    inv.subtotal = dec(&row["untaxed_amount"])?;
    inv.total_tax = dec(&row["tax_amount"])?;
    inv.total = dec(&row["total_amount"])?;
    inv.extra.insert(
        "tryton_state".into(),
        json!(row["state"].as_str().unwrap_or_default()),
    );
    inv.extra.insert(
        "tryton_amount_to_pay".into(),
        json!(dec(&row["amount_to_pay"])?.to_string()),
    );
    if let Some(d) = text(&row["description"]).filter(|d| !d.starts_with(INVOICE_MARKER)) {
        inv.extra.insert("tryton_description".into(), json!(d));
    }
    inv.updated_at = rfc3339(&row["last_modified_at"]);
    Ok(inv)
}

//! Whole deals through the mapper, natively: filtering, both outputs, and
//! errors that name the deal and the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use deal_to_invoice::{Config, Emit, OnError, map_deals};
use nexo_sdk::model::{Entity, Invoice, Validate};
use nexo_sdk::{Error, Record};
use serde_json::{Value, json};

fn deal(id: &str, stage: &str, line_items: Value) -> Record {
    Record::upsert(
        "deals",
        id,
        &json!({
            "id": id,
            "properties": {
                "dealname": format!("Deal {id}"),
                "amount": "1200.00",
                "dealstage": stage,
                "closedate": "2024-03-14T09:30:00.000Z",
                "deal_currency_code": "EUR",
                "hs_lastmodifieddate": "2024-03-15T10:00:00Z",
                "pipeline": "default"
            },
            "associations": {
                "companies": [{"id": "c-77", "properties": {
                    "name": "Acme GmbH", "domain": "acme.example", "address": "Hauptstr. 1",
                    "city": "Berlin", "zip": "10115", "country": "Germany", "phone": "+49 30 1234"
                }}],
                "line_items": line_items
            }
        }),
    )
    .unwrap()
    .with_cursor("2024-03-15T10:00:00Z")
}

fn items() -> Value {
    json!([
        {"id": "li-1", "properties": {"name": "Consulting", "quantity": "2.5", "price": "80.10",
                                      "hs_sku": "CONS", "hs_tax_rate": "19"}},
        {"id": "li-2", "properties": {"name": "Licence", "quantity": "3", "price": "99.99",
                                      "hs_discount_percentage": "12.5"}}
    ])
}

fn payload(r: &Record) -> Value {
    serde_json::from_str(&r.payload).unwrap()
}

#[test]
fn a_won_deal_becomes_a_validated_invoice() {
    let config: Config = serde_json::from_value(json!({
        "default_tax_rate": "20", "account_code": "200"
    }))
    .unwrap();
    let out = map_deals(&config, &[deal("d-1", "closedwon", items())]).unwrap();
    assert_eq!(out.records.len(), 1);
    let r = &out.records[0];
    assert_eq!((r.stream.as_str(), r.id.as_str()), ("invoices", "d-1"));
    assert_eq!(r.cursor.as_deref(), Some("2024-03-15T10:00:00Z"));
    // 2.5 × 80.10 = 200.25, tax 19 % = 38.0475 → 38.05.
    // 3 × 99.99 = 299.97, discount 12.5 % = 37.49625 → 37.50, amount 262.47,
    // tax (default 20 %) 52.494 → 52.49.
    assert_eq!(
        payload(r),
        json!({
            "external_refs": [{"system": "hubspot", "id": "d-1"}],
            "customer": {"kind": "company", "system": "hubspot", "id": "c-77"},
            "issue_date": "2024-03-14",
            "currency": "EUR",
            "status": "draft",
            "reference": "Deal d-1",
            "lines": [
                {"description": "Consulting", "quantity": "2.5", "unit_price": "80.10",
                 "discount": "0", "tax_rate": "19", "line_amount": "200.25", "account_code": "200"},
                {"description": "Licence", "quantity": "3", "unit_price": "99.99",
                 "discount": "37.50", "tax_rate": "20", "line_amount": "262.47", "account_code": "200"}
            ],
            "subtotal": "462.72",
            "total_tax": "90.54",
            "total": "553.26",
            "updated_at": "2024-03-15T10:00:00Z"
        })
    );
    let inv = Invoice::from_record(r).unwrap();
    assert_eq!(inv.validate(), Ok(()));
}

#[test]
fn only_won_stages_pass_and_the_stages_are_configurable() {
    let batch = [
        deal("d-1", "closedwon", items()),
        deal("d-2", "appointmentscheduled", items()),
        deal("d-3", "contractsigned", items()),
    ];
    let out = map_deals(&Config::default(), &batch).unwrap();
    let ids: Vec<_> = out.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["d-1"]);
    assert_eq!(out.not_won, ["d-2", "d-3"]);
    let config: Config =
        serde_json::from_value(json!({"won_stages": ["closedwon", "contractsigned"]})).unwrap();
    let out = map_deals(&config, &batch).unwrap();
    let ids: Vec<_> = out.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["d-1", "d-3"]);
}

#[test]
fn a_deal_without_line_items_is_one_line_from_its_amount() {
    let config: Config = serde_json::from_value(json!({"default_tax_rate": "7.7"})).unwrap();
    let out = map_deals(&config, &[deal("d-9", "closedwon", json!([]))]).unwrap();
    let p = payload(&out.records[0]);
    assert_eq!(
        p["lines"],
        json!([{"description": "Deal d-9", "quantity": "1", "unit_price": "1200.00",
                "discount": "0", "tax_rate": "7.7", "line_amount": "1200.00"}])
    );
    // 1200.00 × 7.7 % = 92.4
    assert_eq!(
        (&p["subtotal"], &p["total_tax"], &p["total"]),
        (&json!("1200.00"), &json!("92.40"), &json!("1292.40"))
    );
}

#[test]
fn customer_mode_emits_the_company_once_with_the_customer_role() {
    let config: Config = serde_json::from_value(json!({
        "emit": "customer", "country_codes": {"germany": "de"}
    }))
    .unwrap();
    assert_eq!(config.emit, Emit::Customer);
    let batch = [
        deal("d-1", "closedwon", items()),
        deal("d-2", "closedwon", json!([])),
        deal("d-3", "closedlost", items()),
    ];
    let out = map_deals(&config, &batch).unwrap();
    assert_eq!(out.records.len(), 1, "same company, one record");
    let r = &out.records[0];
    assert_eq!((r.stream.as_str(), r.id.as_str()), ("companies", "d-1"));
    assert_eq!(
        payload(r),
        json!({
            "external_refs": [{"system": "hubspot", "id": "c-77"}],
            "name": "Acme GmbH",
            "phone": "+49 30 1234",
            "website": "https://acme.example",
            "address": {"lines": ["Hauptstr. 1"], "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "roles": ["customer"]
        })
    );
    // Without the table, a country name is kept aside, not guessed.
    let out = map_deals(
        &serde_json::from_value(json!({"emit": "customer"})).unwrap(),
        &batch[..1],
    )
    .unwrap();
    let p = payload(&out.records[0]);
    assert_eq!(p["country_name"], "Germany");
    assert_eq!(p["address"].get("country"), None);
}

#[test]
fn unmappable_deals_are_all_named_with_their_field() {
    let mut bad_price = items();
    bad_price[1]["properties"]["price"] = json!("99,99");
    let mut no_company = deal("d-2", "closedwon", items());
    let mut p = payload(&no_company);
    p["associations"]["companies"] = json!([]);
    no_company.payload = p.to_string();
    let mut unknown_currency = deal("d-3", "closedwon", items());
    let mut p = payload(&unknown_currency);
    p["properties"]["deal_currency_code"] = json!("XBT");
    unknown_currency.payload = p.to_string();
    let batch = [
        deal("d-1", "closedwon", bad_price),
        no_company,
        unknown_currency,
        deal("d-4", "closedwon", items()),
        deal("d-5", "closedlost", json!("not even a list")),
    ];
    let Err(Error::Rejected(msg)) = map_deals(&Config::default(), &batch) else {
        panic!("expected a rejected batch");
    };
    assert!(msg.starts_with("4 of 5 deals cannot be mapped"), "{msg}");
    for part in [
        "deal d-1: associations.line_items[1].properties.price: \"99,99\" is not a decimal number",
        "deal d-2: associations.companies: a won deal needs an associated company",
        "deal d-3: properties.deal_currency_code: currency code \"XBT\" is not one of the ISO 4217 currencies",
        "deal d-5: payload: not a HubSpot deal record",
    ] {
        assert!(msg.contains(part), "missing `{part}` in {msg}");
    }
    assert!(!msg.contains("deal d-4"), "{msg}");

    let skip = Config {
        on_error: OnError::Skip,
        ..Config::default()
    };
    let out = map_deals(&skip, &batch).unwrap();
    let ids: Vec<_> = out.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["d-4"]);
    assert_eq!(out.failed.len(), 4);
}

#[test]
fn a_deal_without_currency_uses_the_default_or_fails() {
    let mut d = deal("d-1", "closedwon", items());
    let mut p = payload(&d);
    p["properties"]["deal_currency_code"] = Value::Null;
    d.payload = p.to_string();
    let e = map_deals(&Config::default(), std::slice::from_ref(&d)).unwrap_err();
    assert!(
        e.to_string()
            .contains("deal d-1: properties.deal_currency_code: the deal has no currency"),
        "{e}"
    );
    let config: Config = serde_json::from_value(json!({"default_currency": "CHF"})).unwrap();
    let out = map_deals(&config, &[d]).unwrap();
    assert_eq!(payload(&out.records[0])["currency"], "CHF");
}

#[test]
fn half_even_config_changes_only_exact_halves() {
    // 1 × 0.25 at 10 % = 0.025 tax.
    let items = json!([{"id": "li", "properties": {"name": "x", "quantity": "1", "price": "0.25", "hs_tax_rate": "10"}}]);
    let up = map_deals(&Config::default(), &[deal("d", "closedwon", items.clone())]).unwrap();
    let even: Config = serde_json::from_value(json!({"rounding": "half_even"})).unwrap();
    let even = map_deals(&even, &[deal("d", "closedwon", items)]).unwrap();
    assert_eq!(payload(&up.records[0])["total_tax"], "0.03");
    assert_eq!(payload(&even.records[0])["total_tax"], "0.02");
}

#[test]
fn config_is_strict_and_has_a_schema() {
    let e = serde_json::from_value::<Config>(json!({"emit": "invoices"})).unwrap_err();
    assert!(e.to_string().contains("unknown variant"), "{e}");
    let e = serde_json::from_value::<Config>(json!({"tax": "20"})).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let schema: Value = serde_json::from_str(&deal_to_invoice::config_schema()).unwrap();
    for field in [
        "emit",
        "won_stages",
        "rounding",
        "default_tax_rate",
        "on_error",
    ] {
        assert!(schema["properties"].get(field).is_some(), "{field}");
    }
}

//! The reference mappers as real components in the sandbox: HubSpot deals
//! through `deal-to-invoice`, and admin rules through `field-mapper`,
//! compared with the expected canonical JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo::plugin::{MapOutcome, Operation, Record};
use nexo_tests::connkit::{mapped, open_mapper as mapper};
use nexo_tests::programs;
use serde_json::{Value, json};

fn record(stream: &str, id: &str, payload: Value) -> Record {
    Record {
        stream: stream.into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(format!("cursor-{id}")),
    }
}

fn deal(id: &str, stage: &str, currency: &str, line_items: Value) -> Record {
    record(
        "deals",
        id,
        json!({
            "id": id,
            "properties": {
                "dealname": format!("Deal {id}"), "amount": "500", "dealstage": stage,
                "closedate": "2024-06-30T22:15:00Z", "deal_currency_code": currency,
                "hs_lastmodifieddate": "2024-07-01T08:00:00Z"
            },
            "associations": {
                "companies": [{"id": "901", "properties": {"name": "Globex", "country": "fr"}}],
                "line_items": line_items
            }
        }),
    )
}

fn payloads(out: &[Record]) -> Vec<(String, String, Value)> {
    out.iter()
        .map(|r| {
            (
                r.stream.clone(),
                r.id.clone(),
                serde_json::from_str(&r.payload).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deal_to_invoice_maps_won_deals_to_canonical_invoices() {
    let m = mapper(programs::DEAL_TO_INVOICE, "nexo/deal-to-invoice");
    let batch = [
        deal(
            "11",
            "closedwon",
            "EUR",
            json!([
                {"id": "a", "properties": {"name": "Setup", "quantity": "1", "price": "149.995", "hs_tax_rate": "20"}},
                {"id": "b", "properties": {"name": "Seats", "quantity": "12", "price": "9.90",
                                            "hs_discount_percentage": "15", "hs_tax_rate": "20"}}
            ]),
        ),
        deal("12", "qualifiedtobuy", "EUR", json!([])),
        deal("13", "closedwon", "JPY", json!([])),
    ];
    let config = json!({"account_code": "4000", "status": "authorised"}).to_string();
    let out = mapped(m.map(&config, &batch).await.into_result().unwrap());
    assert_eq!(out[0].cursor.as_deref(), Some("cursor-11"));
    // 149.995 → 150.00 (half away), tax 30.00; 12 × 9.90 = 118.80, −15 %
    // = 17.82 → 100.98, tax 20.196 → 20.20.
    assert_eq!(
        payloads(&out),
        [
            (
                "invoices".into(),
                "11".into(),
                json!({
                    "external_refs": [{"system": "hubspot", "id": "11"}],
                    "customer": {"kind": "company", "system": "hubspot", "id": "901"},
                    "issue_date": "2024-06-30", "currency": "EUR", "status": "authorised",
                    "reference": "Deal 11",
                    "lines": [
                        {"description": "Setup", "quantity": "1", "unit_price": "149.995", "discount": "0",
                         "tax_rate": "20", "line_amount": "150.00", "account_code": "4000"},
                        {"description": "Seats", "quantity": "12", "unit_price": "9.90", "discount": "17.82",
                         "tax_rate": "20", "line_amount": "100.98", "account_code": "4000"}
                    ],
                    "subtotal": "250.98", "total_tax": "50.20", "total": "301.18",
                    "updated_at": "2024-07-01T08:00:00Z"
                })
            ),
            (
                "invoices".into(),
                "13".into(),
                json!({
                    "external_refs": [{"system": "hubspot", "id": "13"}],
                    "customer": {"kind": "company", "system": "hubspot", "id": "901"},
                    "issue_date": "2024-06-30", "currency": "JPY", "status": "authorised",
                    "reference": "Deal 13",
                    "lines": [{"description": "Deal 13", "quantity": "1", "unit_price": "500", "discount": "0",
                               "tax_rate": "0", "line_amount": "500", "account_code": "4000"}],
                    "subtotal": "500", "total_tax": "0", "total": "500",
                    "updated_at": "2024-07-01T08:00:00Z"
                })
            ),
        ],
        "deal 12 is not won and is left out"
    );

    let customers = mapped(
        m.map(r#"{"emit": "customer"}"#, &batch)
            .await
            .into_result()
            .unwrap(),
    );
    assert_eq!(
        payloads(&customers),
        [(
            "companies".into(),
            "11".into(),
            json!({"external_refs": [{"system": "hubspot", "id": "901"}], "name": "Globex",
                   "address": {"country": "FR"}, "roles": ["customer"]})
        )],
        "one company for the two won deals of the same customer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deal_to_invoice_names_the_deal_and_field_it_cannot_map() {
    let m = mapper(programs::DEAL_TO_INVOICE, "nexo/deal-to-invoice");
    let batch = [
        deal(
            "21",
            "closedwon",
            "EUR",
            json!([{"id": "a", "properties": {"name": "x", "quantity": "two", "price": "1"}}]),
        ),
        deal("22", "closedwon", "ZZZ", json!([])),
    ];
    // Each deal refused alone, naming the deal and the field (contract 1.1).
    let out = m.map("{}", &batch).await.into_result().unwrap();
    let [MapOutcome::Failed(first), MapOutcome::Failed(second)] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(
        first.to_string().contains("deal 21: associations.line_items[0].properties.quantity: \"two\" is not a decimal number"),
        "{first}"
    );
    assert!(
        second
            .to_string()
            .contains("deal 22: properties.deal_currency_code: currency code \"ZZZ\""),
        "{second}"
    );
    let skipped = mapped(
        m.map(r#"{"on_error": "skip"}"#, &batch)
            .await
            .into_result()
            .unwrap(),
    );
    assert!(skipped.is_empty());
    let err = m
        .map(r#"{"rounding": "bankers"}"#, &batch)
        .await
        .into_result()
        .unwrap_err();
    assert!(err.to_string().contains("invalid config"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_mapper_applies_admin_rules_in_the_sandbox() {
    let m = mapper(programs::FIELD_MAPPER, "nexo/field-mapper");
    let batch = [
        record(
            "rows",
            "r1",
            json!({"Kunde": "Acme", "Land": "Deutschland", "Betrag": "1.299,90", "Datum": "05.03.2024",
                   "Aktiv": "ja", "Notiz": "intern", "Status": "offen"}),
        ),
        record(
            "rows",
            "r2",
            json!({"Kunde": "Old", "Status": "archiviert"}),
        ),
    ];
    let config = json!({
        "filters": [{"field": "Status", "not_equals": "archiviert"}],
        "rename": {"Kunde": "name", "Land": "address.country", "Betrag": "amount", "Datum": "date", "Aktiv": "active"},
        "defaults": {"currency": "EUR"},
        "lookups": {"address.country": {"table": {"Deutschland": "DE"}},
                    "active": {"table": {"ja": true, "nein": false}}},
        "convert": {"amount": {"to": "decimal_string", "decimal_separator": ","},
                    "date": {"to": "date", "formats": ["DD.MM.YYYY"]}},
        "templates": {"reference": "{name}/{date}"},
        "drop": ["Notiz", "Status"],
        "stream": "companies"
    });
    let out = mapped(
        m.map(&config.to_string(), &batch)
            .await
            .into_result()
            .unwrap(),
    );
    assert_eq!(
        payloads(&out),
        [(
            "companies".into(),
            "r1".into(),
            json!({"name": "Acme", "address": {"country": "DE"}, "amount": "1299.90", "date": "2024-03-05",
                   "active": true, "currency": "EUR", "reference": "Acme/2024-03-05"})
        )]
    );
    assert_eq!(out[0].cursor.as_deref(), Some("cursor-r1"));

    // `keep`: only the fields a status update carries back.
    let out = mapped(
        m.map(
            r#"{"rename": {"Status": "deal.status"}, "keep": ["Kunde", "deal.status", "absent"]}"#,
            &batch,
        )
        .await
        .into_result()
        .unwrap(),
    );
    assert_eq!(
        payloads(&out)[0].2,
        json!({"Kunde": "Acme", "deal": {"status": "offen"}})
    );

    // A rule failing on one record refuses that record alone (contract 1.1).
    let out = m
        .map(r#"{"convert": {"Betrag": "integer"}}"#, &batch[..1])
        .await
        .into_result()
        .unwrap();
    let [MapOutcome::Failed(err)] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(
        err.to_string()
            .contains("rejected: record r1: convert `Betrag`"),
        "{err}"
    );
    let err = m
        .map(r#"{"rename": {"a": "x", "b": "x"}}"#, &batch)
        .await
        .into_result()
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid config: rename `b`"),
        "{err}"
    );
}

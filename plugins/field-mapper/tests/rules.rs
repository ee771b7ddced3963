//! The rules together, natively: order, filters, errors naming rule and field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use field_mapper::{Config, map_records};
use nexo_sdk::{Error, Record};
use serde_json::{Value, json};

fn rec(id: &str, payload: Value) -> Record {
    Record::upsert("contacts", id, &payload)
        .unwrap()
        .with_cursor(format!("k-{id}"))
}

fn config(v: Value) -> Config {
    serde_json::from_value(v).unwrap()
}

fn out(c: &Config, batch: &[Record]) -> Vec<Value> {
    map_records(c, batch)
        .unwrap()
        .records
        .iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect()
}

#[test]
fn all_rules_in_their_documented_order() {
    let c = config(json!({
        "filters": [{"field": "stage", "in": ["customer", "lead"]}, {"field": "email", "exists": true}],
        "rename": {"firstname": "first_name", "lastname": "last_name", "addr.town": "address.city"},
        "defaults": {"address.country": "Germany", "currency": "EUR"},
        "lookups": {"address.country": {"table": {"germany": "DE", "france": "FR"}, "ignore_case": true}},
        "convert": {"amount": {"to": "decimal_string", "decimal_separator": ","},
                    "signed": {"to": "date", "formats": ["DD.MM.YYYY"]}, "seats": "integer", "vip": "boolean"},
        "templates": {"display_name": "{first_name} {last_name?}", "ref": "HS-{id}"},
        "drop": ["stage", "addr", "internal"],
        "required": ["email", "display_name"],
        "stream": "customers"
    }));
    let batch = [
        rec(
            "1",
            json!({"id": "1", "firstname": "Ada", "lastname": "Lovelace", "email": "ada@x.example",
                        "stage": "customer", "addr": {"town": "London"}, "amount": "1.234,50",
                        "signed": "01.02.2024", "seats": "12", "vip": "yes", "internal": "x"}),
        ),
        rec(
            "2",
            json!({"id": "2", "firstname": "Bob", "email": "b@x.example", "stage": "other"}),
        ),
        rec("3", json!({"id": "3", "firstname": "Cy", "stage": "lead"})),
        rec(
            "4",
            json!({"id": "4", "firstname": "Di", "email": "d@x.example", "stage": "lead",
                        "addr": {"country": "x"}, "currency": null}),
        ),
    ];
    let mapped = map_records(&c, &batch).unwrap();
    assert_eq!(mapped.filtered, ["2", "3"]);
    assert_eq!(mapped.records[0].stream, "customers");
    assert_eq!(mapped.records[0].cursor.as_deref(), Some("k-1"));
    let payloads = out(&c, &batch);
    assert_eq!(
        payloads,
        [
            json!({"id": "1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@x.example",
                   "address": {"city": "London", "country": "DE"}, "currency": "EUR",
                   "amount": "1234.50", "signed": "2024-02-01", "seats": 12, "vip": true,
                   "display_name": "Ada Lovelace", "ref": "HS-1"}),
            json!({"id": "4", "first_name": "Di", "email": "d@x.example",
                   "address": {"country": "DE"}, "currency": "EUR",
                   "display_name": "Di ", "ref": "HS-4"}),
        ]
    );
}

#[test]
fn renames_swap_and_filters_compare_strictly() {
    let c = config(
        json!({"rename": {"a": "b", "b": "a"}, "filters": [{"field": "n", "not_equals": 1}]}),
    );
    let got = out(
        &c,
        &[
            rec("1", json!({"a": 1, "b": 2, "n": "1"})),
            rec("2", json!({"n": 1})),
        ],
    );
    assert_eq!(got, [json!({"a": 2, "b": 1, "n": "1"})], "\"1\" is not 1");
}

#[test]
fn lookup_fallbacks() {
    let table = json!({"A": "alpha"});
    let run = |fallback: Value| {
        let c = config(json!({"lookups": {"code": {"table": table, "fallback": fallback}}}));
        map_records(&c, &[rec("1", json!({"code": "B"}))])
    };
    let p =
        |m: field_mapper::Mapped| -> Value { serde_json::from_str(&m.records[0].payload).unwrap() };
    assert_eq!(p(run(json!("keep")).unwrap()), json!({"code": "B"}));
    assert_eq!(p(run(json!("remove")).unwrap()), json!({}));
    assert_eq!(
        p(run(json!({"value": "other"})).unwrap()),
        json!({"code": "other"})
    );
    let Err(Error::Rejected(msg)) = run(json!("error")) else {
        panic!()
    };
    assert!(
        msg.contains("record 1: lookups `code`: \"B\" is not in the table"),
        "{msg}"
    );
}

#[test]
fn errors_name_record_rule_and_field_and_skip_leaves_records_out() {
    let c = config(json!({"convert": {"price": "decimal_string"}, "templates": {"t": "{name}"}}));
    let batch = [
        rec("ok", json!({"price": "1.50", "name": "n"})),
        rec("p", json!({"price": "1.5 EUR", "name": "n"})),
        rec("t", json!({"price": 2})),
    ];
    let Err(Error::Rejected(msg)) = map_records(&c, &batch) else {
        panic!()
    };
    assert!(msg.starts_with("2 of 3 records failed a rule"), "{msg}");
    assert!(
        msg.contains("record p: convert `price`: \"1.5 EUR\" is not a decimal number"),
        "{msg}"
    );
    assert!(
        msg.contains("record t: templates `t`: field `name` missing"),
        "{msg}"
    );
    let skip = config(
        json!({"convert": {"price": "decimal_string"}, "templates": {"t": "{name}"}, "on_error": "skip"}),
    );
    let mapped = map_records(&skip, &batch).unwrap();
    assert_eq!(mapped.records.len(), 1);
    assert_eq!(mapped.failed.len(), 2);
}

#[test]
fn bad_rules_are_config_errors_before_any_record() {
    for (rules, expect) in [
        (
            json!({"rename": {"a": "x", "b": "x"}}),
            "a second rename onto `x`",
        ),
        (json!({"templates": {"t": "{a"}}), "templates `t`"),
        (
            json!({"convert": {"d": {"to": "date", "formats": ["%d"]}}}),
            "convert `d`",
        ),
        (json!({"drop": ["a..b"]}), "not a field path"),
    ] {
        let Err(Error::InvalidConfig(msg)) = map_records(&config(rules), &[]) else {
            panic!("{expect}")
        };
        assert!(msg.contains(expect), "{msg}");
    }
    assert!(serde_json::from_value::<Config>(json!({"renames": {}})).is_err());
    let schema: Value = serde_json::from_str(&field_mapper::config_schema()).unwrap();
    for k in [
        "filters",
        "rename",
        "defaults",
        "lookups",
        "convert",
        "templates",
        "drop",
        "required",
    ] {
        assert!(schema["properties"].get(k).is_some(), "{k}");
    }
}

#[test]
fn deletes_pass_through() {
    let c = config(json!({"filters": [{"field": "x", "exists": true}], "stream": "s"}));
    let d = Record::delete("contacts", "9");
    let mapped = map_records(&c, std::slice::from_ref(&d)).unwrap();
    assert_eq!(mapped.records[0].payload, d.payload);
    assert_eq!(mapped.records[0].stream, "s");
}

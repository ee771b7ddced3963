//! Comparing what Nexo wrote (or is about to write) with what a system
//! reads back, in the system's own form. A system answers `10` for
//! `"10.00"`, stores a customer reference as its own id, derives some
//! fields and never returns others: compared byte for byte, every read-back
//! would look like someone edited the record (a false conflict, a useless
//! update). The rules come from the stream's JSON Schema, built once per
//! pipeline:
//!
//! | keyword (on a property) | meaning |
//! |---|---|
//! | `type: number`/`integer`, or a string with `format: decimal` (or the SDK's decimal pattern) | compared as decimals: `10` = `10.00` = `"10.0"` |
//! | a `type` allowing a string and a number or boolean | the system may keep scalars as text: `12.5` = `"12.50"`, `true` = `"true"`; two strings compare as text |
//! | `readOnly: true` | derived by the system: never compared, never sent |
//! | `writeOnly: true` | not read back: compared only when both sides have a value |
//! | `x-nexo-reference: true` | an `{system, id}` reference the system may store as its own id: compared only when both sides name the same `system` |
//! | `x-nexo-tolerance: "0.0001"` | a decimal the system may move by up to this step (a rounding tie-break) |
//!
//! `additionalProperties` carries the rules of fields the schema does not
//! list; `items` those of an array's elements. Objects compare on the
//! fields of the side Nexo holds (what it wrote, or the mapped payload):
//! fields only the system returns are its defaults, not changes. After an
//! echo the link knows the read-back ([`Comparison::rebase`]), except where
//! it cannot show what Nexo wrote, which is kept.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::content::{Content, FieldChange};

/// The decimal pattern of the SDK's `DecimalString` schema.
const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// `$ref` chains and nesting deeper than this are not followed (a
/// recursive schema would otherwise never end).
const MAX_DEPTH: u8 = 24;

/// How one field (and what it contains) compares.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rule {
    read_only: bool,
    write_only: bool,
    decimal: bool,
    text_scalars: bool,
    reference: bool,
    tolerance: Option<Decimal>,
    properties: BTreeMap<String, Rule>,
    additional: Option<Box<Rule>>,
    items: Option<Box<Rule>>,
}

/// The comparison rules of one stream, from its JSON Schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    root: Rule,
}

impl Comparison {
    /// Plain JSON equality everywhere (a stream without a schema).
    pub fn exact() -> Self {
        Comparison::default()
    }

    /// The rules of a stream's JSON Schema (text); an empty schema compares
    /// exactly.
    pub fn from_schema(schema: &str) -> Result<Self, String> {
        if schema.trim().is_empty() {
            return Ok(Comparison::exact());
        }
        let root: Value = serde_json::from_str(schema)
            .map_err(|e| format!("the stream's JSON Schema is not JSON: {e}"))?;
        Ok(Comparison {
            root: build(&root, &root, 0),
        })
    }

    fn field(&self, name: &str) -> Option<&Rule> {
        self.root.child(name)
    }

    /// Whether every field of `ours` (what Nexo wrote) is, in the system's
    /// form, what `theirs` (the read-back) has.
    pub fn contained(&self, ours: &Content, theirs: &Content) -> bool {
        ours.0
            .iter()
            .all(|(k, v)| equal(self.field(k), Some(v), theirs.0.get(k)))
    }

    /// Field-by-field changes from `before` to `after`, for the fields
    /// `after` carries, leaving out values that only differ in form.
    pub fn diff(&self, after: &Content, before: &Content) -> Vec<FieldChange> {
        after
            .0
            .iter()
            .filter(|(k, v)| !equal(self.field(k), Some(v), before.0.get(*k)))
            .map(|(k, v)| FieldChange {
                field: k.clone(),
                before: before.0.get(k).cloned().unwrap_or(Value::Null),
                after: v.clone(),
            })
            .collect()
    }

    /// What a link knows of a record after an echo: the read-back
    /// (`theirs`), except where it cannot show what Nexo wrote (`ours`): a
    /// reference the system keeps as its own id, a field it does not read
    /// back. There Nexo's value stays, so that a later change at the source
    /// (another customer) still shows in the diff.
    pub fn rebase(&self, ours: &Content, theirs: &Content) -> Content {
        let mut known = theirs.clone();
        for (k, v) in &ours.0 {
            if let Some(kept) = keep(self.field(k), v, theirs.0.get(k)) {
                known.0.insert(k.clone(), kept);
            }
        }
        known
    }

    /// Remove the fields the system derives itself (`readOnly`), at any
    /// depth: they are never sent.
    pub fn strip_read_only(&self, content: &mut Content) {
        strip(&self.root, &mut content.0);
    }
}

impl Rule {
    fn child(&self, name: &str) -> Option<&Rule> {
        self.properties.get(name).or(self.additional.as_deref())
    }

    /// Union of two rule sets (the branches of `anyOf`, a `$ref` and its
    /// siblings).
    fn merge(&mut self, other: Rule) {
        self.read_only |= other.read_only;
        self.write_only |= other.write_only;
        self.decimal |= other.decimal;
        self.text_scalars |= other.text_scalars;
        self.reference |= other.reference;
        self.tolerance = self.tolerance.or(other.tolerance);
        for (k, r) in other.properties {
            self.properties.entry(k).or_default().merge(r);
        }
        merge_boxed(&mut self.additional, other.additional);
        merge_boxed(&mut self.items, other.items);
    }
}

fn merge_boxed(slot: &mut Option<Box<Rule>>, other: Option<Box<Rule>>) {
    match (slot.as_mut(), other) {
        (Some(mine), Some(theirs)) => mine.merge(*theirs),
        (None, Some(theirs)) => *slot = Some(theirs),
        _ => {}
    }
}

fn build(node: &Value, root: &Value, depth: u8) -> Rule {
    let mut rule = Rule::default();
    let Value::Object(m) = node else {
        return rule;
    };
    if depth > MAX_DEPTH {
        return rule;
    }
    if let Some(target) = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
    {
        rule.merge(build(target, root, depth + 1));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for sub in m.get(key).and_then(Value::as_array).into_iter().flatten() {
            rule.merge(build(sub, root, depth + 1));
        }
    }
    let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    rule.read_only |= flag("readOnly");
    rule.write_only |= flag("writeOnly");
    rule.reference |= flag("x-nexo-reference");
    if let Some(step) = m.get("x-nexo-tolerance").and_then(decimal_of) {
        rule.tolerance = Some(step.abs());
    }
    let types: Vec<&str> = match m.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let decimal_text = m.get("format").and_then(Value::as_str) == Some("decimal")
        || m.get("pattern").and_then(Value::as_str) == Some(DECIMAL_PATTERN);
    let numeric = types.iter().any(|t| matches!(*t, "number" | "integer"));
    let text = types.contains(&"string");
    rule.decimal |= (numeric && !text) || (text && decimal_text);
    rule.text_scalars |= text && (numeric || types.contains(&"boolean"));
    for (k, sub) in m
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        rule.properties
            .entry(k.clone())
            .or_default()
            .merge(build(sub, root, depth + 1));
    }
    if let Some(sub @ Value::Object(_)) = m.get("additionalProperties") {
        merge_boxed(
            &mut rule.additional,
            Some(Box::new(build(sub, root, depth + 1))),
        );
    }
    if let Some(sub @ Value::Object(_)) = m.get("items") {
        merge_boxed(&mut rule.items, Some(Box::new(build(sub, root, depth + 1))));
    }
    rule
}

/// A decimal in any of its JSON forms: `"10.00"`, `10`, `1e1`.
fn decimal_of(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

fn is_absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// Whether `ours` (Nexo's side) and `theirs` (the system's) are the same
/// value under `rule` (none: plain equality, objects on `ours`' fields).
fn equal(rule: Option<&Rule>, ours: Option<&Value>, theirs: Option<&Value>) -> bool {
    let plain = Rule::default();
    let rule = rule.unwrap_or(&plain);
    if rule.read_only {
        return true;
    }
    if is_absent(ours) || is_absent(theirs) {
        return rule.write_only || is_absent(ours) == is_absent(theirs);
    }
    let (Some(ours), Some(theirs)) = (ours, theirs) else {
        return true;
    };
    if rule.reference
        && let (Some(a), Some(b)) = (
            ours.get("system").and_then(Value::as_str),
            theirs.get("system").and_then(Value::as_str),
        )
        && a != b
    {
        return true;
    }
    if rule.decimal
        && let (Some(a), Some(b)) = (decimal_of(ours), decimal_of(theirs))
    {
        return match (a.checked_sub(b), rule.tolerance) {
            (Some(d), Some(step)) => d.abs() <= step,
            _ => a == b,
        };
    }
    if rule.text_scalars {
        match (ours, theirs) {
            (Value::String(s), other) | (other, Value::String(s))
                if matches!(other, Value::Number(_) | Value::Bool(_)) =>
            {
                return match (other, decimal_of(&Value::String(s.clone()))) {
                    (Value::Bool(b), _) => s.trim() == b.to_string(),
                    (n, Some(d)) => decimal_of(n) == Some(d),
                    _ => false,
                };
            }
            _ => {}
        }
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| equal(rule.child(k), Some(v), b.get(k))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| equal(rule.items.as_deref(), Some(x), Some(y)))
        }
        _ => ours == theirs,
    }
}

/// The value a rebased link keeps where `theirs` cannot show `ours`; `None`
/// to keep `theirs`.
fn keep(rule: Option<&Rule>, ours: &Value, theirs: Option<&Value>) -> Option<Value> {
    let rule = rule?;
    if rule.read_only || ours.is_null() {
        return None;
    }
    let Some(theirs) = theirs.filter(|t| !t.is_null()) else {
        return rule.write_only.then(|| ours.clone());
    };
    if rule.reference
        && let (Some(a), Some(b)) = (
            ours.get("system").and_then(Value::as_str),
            theirs.get("system").and_then(Value::as_str),
        )
        && a != b
    {
        return Some(ours.clone());
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut merged = b.clone();
            let mut changed = false;
            for (k, v) in a {
                if let Some(kept) = keep(rule.child(k), v, b.get(k)) {
                    merged.insert(k.clone(), kept);
                    changed = true;
                }
            }
            changed.then_some(Value::Object(merged))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            let mut changed = false;
            let merged = a
                .iter()
                .zip(b)
                .map(|(x, y)| match keep(rule.items.as_deref(), x, Some(y)) {
                    Some(kept) => {
                        changed = true;
                        kept
                    }
                    None => y.clone(),
                })
                .collect();
            changed.then_some(Value::Array(merged))
        }
        _ => None,
    }
}

fn strip(rule: &Rule, m: &mut Map<String, Value>) {
    m.retain(|k, _| !rule.child(k).is_some_and(|r| r.read_only));
    for (k, v) in m.iter_mut() {
        let Some(child) = rule.child(k) else {
            continue;
        };
        match v {
            Value::Object(inner) => strip(child, inner),
            Value::Array(items) => {
                if let Some(item_rule) = child.items.as_deref() {
                    for item in items {
                        if let Value::Object(inner) = item {
                            strip(item_rule, inner);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content(v: Value) -> Content {
        match v {
            Value::Object(m) => Content(m),
            _ => unreachable!(),
        }
    }

    /// An invoice stream as the Tryton connector annotates it, with the
    /// line behind a `$ref` and the customer behind `anyOf`, as schemars
    /// writes them.
    fn invoices() -> Comparison {
        let schema = json!({
            "type": "object",
            "additionalProperties": {"writeOnly": true},
            "properties": {
                "number": {"type": ["string", "null"], "readOnly": true},
                "external_refs": {"type": "array", "writeOnly": true},
                "customer": {"$ref": "#/$defs/PartyRef", "x-nexo-reference": true},
                "total": {"type": "string", "pattern": DECIMAL_PATTERN},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
                "reference": {"anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "$defs": {
                "PartyRef": {"oneOf": [{"type": "object", "properties": {"system": {"type": "string"}}}]},
                "Line": {"type": "object", "properties": {
                    "quantity": {"type": "string", "format": "decimal"},
                    "unit_price": {"type": "string", "format": "decimal", "x-nexo-tolerance": "0.0001"},
                    "account_code": {"type": "string", "readOnly": true}
                }}
            }
        });
        Comparison::from_schema(&schema.to_string()).unwrap()
    }

    fn written() -> Content {
        content(json!({
            "number": "INV-1", "external_refs": [{"system": "crm", "id": "d-1"}],
            "customer": {"kind": "company", "system": "crm", "id": "c-9"},
            "total": "10.00", "reference": "PO 7", "customer_name": "Acme",
            "lines": [{"quantity": "2", "unit_price": "10.01", "account_code": "200"}]
        }))
    }

    fn read_back() -> Content {
        content(json!({
            "number": "2026/0001",
            "customer": {"kind": "company", "system": "tryton", "id": "42"},
            "total": 10, "reference": "PO 7", "tryton_state": "posted",
            "lines": [{"quantity": "2.0", "unit_price": "10.0101", "account_code": "7000"}]
        }))
    }

    #[test]
    fn a_read_back_in_the_systems_own_form_is_what_was_written() {
        let c = invoices();
        assert!(c.contained(&written(), &read_back()));
        assert!(c.diff(&written(), &read_back()).is_empty());
        // Without the rules, every one of those fields differs.
        let exact = Comparison::exact();
        let fields: Vec<String> = exact
            .diff(&written(), &read_back())
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(
            fields,
            [
                "customer",
                "customer_name",
                "external_refs",
                "lines",
                "number",
                "total"
            ]
        );
    }

    #[test]
    fn real_changes_still_count() {
        let c = invoices();
        let changed = |f: &dyn Fn(&mut Value)| {
            let mut v = Value::Object(read_back().0);
            f(&mut v);
            c.diff(&written(), &content(v))
                .into_iter()
                .map(|d| d.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(changed(&|v| v["total"] = json!("10.01")), ["total"]);
        assert_eq!(changed(&|v| v["reference"] = json!("PO 8")), ["reference"]);
        assert_eq!(changed(&|v| v["reference"] = Value::Null), ["reference"]);
        // A tie-break moves a price by one step, not two.
        assert_eq!(
            changed(&|v| v["lines"][0]["unit_price"] = json!("10.0102")),
            ["lines"]
        );
        assert_eq!(
            changed(&|v| v["lines"][0]["quantity"] = json!(3)),
            ["lines"]
        );
        assert_eq!(
            changed(&|v| v["lines"] = json!([])),
            ["lines"],
            "a line less is a change"
        );
        // Another customer of the same system is a change.
        let mut theirs = read_back();
        theirs.0.insert(
            "customer".into(),
            json!({"kind": "company", "system": "tryton", "id": "43"}),
        );
        let mut ours = written();
        ours.0.insert(
            "customer".into(),
            json!({"kind": "company", "system": "tryton", "id": "42"}),
        );
        assert_eq!(c.diff(&ours, &theirs).len(), 1);
        // A write-only field both sides have is compared.
        let mut ours = written();
        let mut theirs = read_back();
        theirs.0.insert("customer_name".into(), json!("Other"));
        assert!(!c.contained(&ours, &theirs));
        ours.0.remove("customer_name");
        assert!(c.contained(&ours, &theirs));
    }

    #[test]
    fn decimals_compare_by_value_only_where_the_schema_says_so() {
        let c = invoices();
        for (a, b) in [
            ("10.00", json!(10)),
            ("10.0", json!("10")),
            ("-0.50", json!(-0.5)),
        ] {
            let ours = content(json!({"total": a}));
            assert!(c.contained(&ours, &content(json!({"total": b}))), "{a} {b}");
        }
        // `reference` is text: "10" and "10.0" are different references.
        assert!(!c.contained(
            &content(json!({"reference": "10"})),
            &content(json!({"reference": "10.0"}))
        ));
        // Not decimals at all: compared as they are.
        assert!(!c.contained(
            &content(json!({"total": "ten"})),
            &content(json!({"total": "10"}))
        ));
    }

    #[test]
    fn scalars_kept_as_text_equal_their_text_and_strings_stay_text() {
        let schema = json!({"type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]}});
        let c = Comparison::from_schema(&schema.to_string()).unwrap();
        let same =
            |a: Value, b: Value| c.contained(&content(json!({"v": a})), &content(json!({"v": b})));
        assert!(same(json!(12.5), json!("12.50")));
        assert!(same(json!("12.5"), json!(12.5)));
        assert!(same(json!(true), json!("true")));
        assert!(!same(json!(true), json!("false")));
        assert!(!same(json!(12.5), json!("12.51")));
        // Two strings are text: a zip code keeps its leading zero.
        assert!(!same(json!("01234"), json!("1234")));
        assert!(same(json!("01234"), json!("01234")));
    }

    #[test]
    fn a_rebased_link_keeps_what_the_read_back_cannot_show() {
        let c = invoices();
        let known = c.rebase(&written(), &read_back());
        // The system's own form where it has one...
        assert_eq!(known.0["total"], json!(10));
        assert_eq!(known.0["number"], json!("2026/0001"));
        assert_eq!(known.0["tryton_state"], json!("posted"));
        assert_eq!(known.0["lines"][0]["unit_price"], json!("10.0101"));
        // ...Nexo's where the read-back cannot tell.
        assert_eq!(known.0["customer"], written().0["customer"]);
        assert_eq!(known.0["external_refs"], written().0["external_refs"]);
        assert_eq!(known.0["customer_name"], json!("Acme"));
        assert!(c.contained(&written(), &known));
        // So the deal's new company shows as a change.
        let mut moved = written();
        moved.0.insert(
            "customer".into(),
            json!({"kind": "company", "system": "crm", "id": "c-10"}),
        );
        let fields: Vec<String> = c
            .diff(&moved, &known)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, ["customer"]);
        // Nested: a line's product kept as written.
        let mut ours = written();
        ours.0["lines"][0]["product"] = json!({"system": "crm", "id": "p-1"});
        let mut theirs = read_back();
        theirs.0["lines"][0]["product"] = json!({"system": "tryton", "id": "7"});
        let schema = json!({"type": "object", "properties": {"lines": {"type": "array",
            "items": {"type": "object", "properties": {"product": {"x-nexo-reference": true}}}}}});
        let c = Comparison::from_schema(&schema.to_string()).unwrap();
        let known = c.rebase(&ours, &theirs);
        assert_eq!(
            known.0["lines"][0]["product"],
            json!({"system": "crm", "id": "p-1"})
        );
        assert_eq!(known.0["lines"][0]["unit_price"], json!("10.0101"));
    }

    #[test]
    fn read_only_fields_are_not_sent_at_any_depth() {
        let c = invoices();
        let mut w = written();
        c.strip_read_only(&mut w);
        assert!(!w.0.contains_key("number"));
        assert_eq!(
            w.0["lines"][0],
            json!({"quantity": "2", "unit_price": "10.01"})
        );
        assert!(w.0.contains_key("customer_name"));
    }

    #[test]
    fn no_schema_or_a_recursive_one_compares_exactly() {
        assert_eq!(Comparison::from_schema(" ").unwrap(), Comparison::exact());
        assert!(Comparison::from_schema("{").is_err());
        let looping = json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}});
        let c = Comparison::from_schema(&looping.to_string()).unwrap();
        assert!(!c.contained(&content(json!({"a": "1.0"})), &content(json!({"a": "1"}))));
        assert!(c.contained(&content(json!({"a": 1})), &content(json!({"a": 1, "b": 2}))));
    }
}

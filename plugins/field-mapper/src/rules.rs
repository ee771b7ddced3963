//! The rules themselves, applied to one payload in the documented order,
//! and the config checks that run before any record is touched.

use std::collections::{BTreeMap, HashSet};

use nexo_sdk::Record;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::{Config, path, template};

/// A filter: `{"field": "stage", "equals": "won"}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Filter {
    /// The field tested (as the record arrives).
    pub field: String,
    /// The test.
    #[serde(flatten)]
    pub test: Test,
}

/// What a filter tests. Values compare as JSON: `"1"` is not `1`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// The field equals this value.
    Equals(Value),
    /// The field is absent or differs from this value.
    NotEquals(Value),
    /// The field equals one of these values.
    In(Vec<Value>),
    /// The field is absent or equals none of these values.
    NotIn(Vec<Value>),
    /// `true`: the field holds a value other than `null`; `false`: it does not.
    Exists(bool),
}

/// A value table: `{"table": {"Germany": "DE"}, "fallback": "keep"}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// Input value (as text; numbers and booleans are written out) → output value.
    pub table: BTreeMap<String, Value>,
    /// When the value is not in the table: `"error"` (default), `"keep"`,
    /// `"remove"` the field, or `{"value": …}` to use instead.
    #[serde(default)]
    pub fallback: Fallback,
    /// Match the table's keys regardless of case.
    #[serde(default)]
    pub ignore_case: bool,
}

/// What a lookup does with a value missing from its table.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Fail the record, naming the value.
    #[default]
    Error,
    /// Leave the value as it is.
    Keep,
    /// Remove the field.
    Remove,
    /// Use this value.
    Value(Value),
}

/// A rule failed on one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {record}: {rule} `{field}`: {problem}")]
pub struct RuleError {
    /// The record id.
    pub record: String,
    /// The rule (`rename`, `convert`, …).
    pub rule: &'static str,
    /// The field path the rule is about.
    pub field: String,
    /// What went wrong.
    pub problem: String,
}

/// Problems in the rules themselves, before any record: bad paths, two
/// renames onto one field, malformed templates and conversions.
pub(crate) fn check_config(c: &Config) -> Result<(), String> {
    let bad = |rule: &str, field: &str, e: String| format!("{rule} `{field}`: {e}");
    for f in &c.filters {
        path::check(&f.field).map_err(|e| bad("filters", &f.field, e))?;
    }
    let mut targets = HashSet::new();
    for (from, to) in &c.rename {
        path::check(from).map_err(|e| bad("rename", from, e))?;
        path::check(to).map_err(|e| bad("rename", from, e))?;
        if !targets.insert(to) {
            return Err(bad("rename", from, format!("a second rename onto `{to}`")));
        }
    }
    for p in c
        .defaults
        .keys()
        .chain(c.lookups.keys())
        .chain(&c.drop)
        .chain(&c.keep)
        .chain(&c.required)
    {
        path::check(p).map_err(|e| bad("field", p, e))?;
    }
    for (p, conv) in &c.convert {
        path::check(p).map_err(|e| bad("convert", p, e))?;
        conv.check().map_err(|e| bad("convert", p, e))?;
    }
    for (p, t) in &c.templates {
        path::check(p).map_err(|e| bad("templates", p, e))?;
        template::parse(t).map_err(|e| bad("templates", p, e))?;
    }
    if c.stream.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err("stream: must not be empty".into());
    }
    Ok(())
}

/// The rules applied to one upsert; `None` when the filters leave it out.
pub(crate) fn apply(c: &Config, record: &Record) -> Result<Option<Value>, RuleError> {
    let fail = |rule: &'static str, field: &str, problem: String| RuleError {
        record: record.id.clone(),
        rule,
        field: field.to_string(),
        problem,
    };
    let mut v: Value = serde_json::from_str(&record.payload)
        .map_err(|e| fail("payload", "", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(fail("payload", "", "not a JSON object".into()));
    }

    // 1. filters
    if !c.filters.iter().all(|f| holds(f, &v)) {
        return Ok(None);
    }
    // 2. rename: take every source out, then write every target.
    let taken: Vec<(&String, Option<Value>)> = c
        .rename
        .iter()
        .map(|(from, to)| (to, path::remove(&mut v, from)))
        .collect();
    for ((from, _), (to, value)) in c.rename.iter().zip(taken) {
        if let Some(value) = value {
            path::set(&mut v, to, value).map_err(|e| fail("rename", from, e))?;
        }
    }
    // 3. defaults
    for (p, value) in &c.defaults {
        if !path::present(&v, p) {
            path::set(&mut v, p, value.clone()).map_err(|e| fail("defaults", p, e))?;
        }
    }
    // 4. lookups
    for (p, lookup) in &c.lookups {
        let Some(current) = path::get(&v, p).filter(|x| !x.is_null()) else {
            continue;
        };
        let key = match current {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => current.to_string(),
            _ => {
                return Err(fail(
                    "lookups",
                    p,
                    "is an object or a list, not a value".into(),
                ));
            }
        };
        let found = lookup
            .table
            .iter()
            .find(|(k, _)| {
                if lookup.ignore_case {
                    k.eq_ignore_ascii_case(&key)
                } else {
                    **k == key
                }
            })
            .map(|(_, out)| out);
        match (found, &lookup.fallback) {
            (Some(out), _) | (None, Fallback::Value(out)) => {
                let out = out.clone();
                path::set(&mut v, p, out).map_err(|e| fail("lookups", p, e))?;
            }
            (None, Fallback::Keep) => {}
            (None, Fallback::Remove) => {
                path::remove(&mut v, p);
            }
            (None, Fallback::Error) => {
                return Err(fail(
                    "lookups",
                    p,
                    format!("{key:?} is not in the table (add it, or set a fallback)"),
                ));
            }
        }
    }
    // 5. convert
    for (p, conv) in &c.convert {
        let Some(current) = path::get(&v, p).filter(|x| !x.is_null()) else {
            continue;
        };
        let out = conv.apply(current).map_err(|e| fail("convert", p, e))?;
        path::set(&mut v, p, out).map_err(|e| fail("convert", p, e))?;
    }
    // 6. templates (all rendered from the record before any is written)
    let mut rendered = Vec::with_capacity(c.templates.len());
    for (p, t) in &c.templates {
        let pieces = template::parse(t).map_err(|e| fail("templates", p, e))?;
        let text = template::render(&pieces, &v)
            .map_err(|(field, e)| fail("templates", p, format!("field `{field}` {e}")))?;
        rendered.push((p, text));
    }
    for (p, text) in rendered {
        path::set(&mut v, p, Value::String(text)).map_err(|e| fail("templates", p, e))?;
    }
    // 7. drop, then keep
    for p in &c.drop {
        path::remove(&mut v, p);
    }
    if !c.keep.is_empty() {
        let mut kept = Value::Object(Default::default());
        for p in &c.keep {
            if let Some(value) = path::remove(&mut v, p) {
                path::set(&mut kept, p, value).map_err(|e| fail("keep", p, e))?;
            }
        }
        v = kept;
    }
    // 8. required
    for p in &c.required {
        if !path::present(&v, p) {
            return Err(fail("required", p, "is missing after the rules".into()));
        }
    }
    Ok(Some(v))
}

fn holds(f: &Filter, v: &Value) -> bool {
    let value = path::get(v, &f.field).filter(|x| !x.is_null());
    match &f.test {
        Test::Equals(x) => value == Some(x),
        Test::NotEquals(x) => value != Some(x),
        Test::In(xs) => value.is_some_and(|v| xs.contains(v)),
        Test::NotIn(xs) => !value.is_some_and(|v| xs.contains(v)),
        Test::Exists(want) => value.is_some() == *want,
    }
}

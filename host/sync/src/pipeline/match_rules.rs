//! A pipeline's `[match]` section: how the records a source holds are
//! recognised among those the destination already has, before the first
//! sync creates anything. Keys are written in order of trust as the names
//! of well-known fields (`tax_id`, `email`, `name+country`, `name~0.92`);
//! each field's normalisation follows from its name, and its place in the
//! records (the destination's shape; the source's after the mappers) is
//! the canonical model's unless `fields` says otherwise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::matching::{Key, Normalizer, Record};

/// The fields a key can name: how each is normalised and where the
/// canonical model keeps it.
const FIELDS: &[(&str, Normalizer, &str)] = &[
    ("tax_id", Normalizer::TaxId, "tax_number"),
    ("email", Normalizer::Email, "email"),
    ("phone", Normalizer::Phone, "phone"),
    ("name", Normalizer::Name, "name"),
    ("country", Normalizer::Text, "address.country"),
    ("city", Normalizer::Text, "address.city"),
    ("postal_code", Normalizer::Code, "address.postal_code"),
    ("sku", Normalizer::Code, "sku"),
    ("number", Normalizer::Code, "number"),
    ("customer", Normalizer::Code, "customer.id"),
    ("date", Normalizer::Date, "issue_date"),
    ("total", Normalizer::Amount, "total"),
];

/// The similarity a fuzzy key asks for when it names none (`name~`).
pub const DEFAULT_SIMILARITY: f64 = 0.92;

/// The `[match]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    /// Keys in order of trust: field names joined by `+` (all must agree),
    /// or one field with `~` and a similarity (`name~0.92`, never sure on
    /// its own). Default: the keys of the pipeline's `model` — customers
    /// (`company`, `contact`): tax id, e-mail, phone, name + country, a
    /// fuzzy name; `product`: SKU, name; `invoice`: number, customer +
    /// date + total.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Field → its dotted path in the records, where it is not where the
    /// canonical model keeps it (`country = "address.country"`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Match before the pipeline's first run writes anything (otherwise
    /// only `nexo pipeline match NAME` does).
    #[serde(default = "yes")]
    pub first_run: bool,
    /// Fields that name a record of another entity (an invoice's
    /// `customer`): each side's id is replaced by the entity the identity
    /// map links it to, so a CRM company and the Xero contact it became
    /// compare equal.
    #[serde(default)]
    pub references: BTreeMap<String, Reference>,
}

/// Where the records a reference field names are linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Their entity type (`customer`).
    pub entity: String,
    /// Their stream in the pipeline's source connection (`companies`).
    pub source: String,
    /// Their stream in the destination connection (`contacts`).
    pub destination: String,
}

fn yes() -> bool {
    true
}

/// The keys a model gets when `keys` is not given.
fn model_keys(model: Option<&str>) -> Option<Vec<String>> {
    let keys: &[&str] = match model? {
        "company" | "contact" => &["tax_id", "email", "phone", "name+country", "name~0.92"],
        "product" => &["sku", "name"],
        "invoice" => &["number", "customer+date+total"],
        _ => return None,
    };
    Some(keys.iter().map(|k| k.to_string()).collect())
}

fn known(field: &str) -> Option<(Normalizer, &'static str)> {
    FIELDS
        .iter()
        .find(|(name, _, _)| *name == field)
        .map(|(_, n, path)| (*n, *path))
}

fn field_names() -> String {
    FIELDS
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl MatchRules {
    /// The keys in force for a pipeline of `model`, in order of trust.
    pub fn key_names(&self, model: Option<&str>) -> Vec<String> {
        if self.keys.is_empty() {
            model_keys(model).unwrap_or_default()
        } else {
            self.keys.clone()
        }
    }

    /// Check the section; the error is `(field, message)` for the
    /// pipeline's own error type.
    pub fn check(&self, model: Option<&str>) -> Result<(), (String, String)> {
        if self.keys.is_empty() && model_keys(model).is_none() {
            return Err((
                "match.keys".into(),
                "name the keys in order of trust (e.g. `keys = [\"tax_id\", \"email\", \"name~0.92\"]`), or give the pipeline a `model` of company, contact, product or invoice to use its keys".into(),
            ));
        }
        for (i, key) in self.keys.iter().enumerate() {
            parse_key(key).map_err(|message| (format!("match.keys[{i}]"), message))?;
        }
        for (field, r) in &self.references {
            if known(field).is_none() {
                return Err((
                    format!("match.references.{field}"),
                    format!(
                        "`{field}` is not a field a key can name; use one of {}",
                        field_names()
                    ),
                ));
            }
            for (what, value) in [
                ("entity", &r.entity),
                ("source", &r.source),
                ("destination", &r.destination),
            ] {
                if value.trim().is_empty() {
                    return Err((
                        format!("match.references.{field}.{what}"),
                        "is empty: name the entity type and the stream of each side".into(),
                    ));
                }
            }
        }
        for (field, path) in &self.fields {
            if known(field).is_none() {
                return Err((
                    format!("match.fields.{field}"),
                    format!(
                        "`{field}` is not a field a key can name; use one of {}",
                        field_names()
                    ),
                ));
            }
            if path.trim().is_empty() || path.split('.').any(str::is_empty) {
                return Err((
                    format!("match.fields.{field}"),
                    format!("`{path}` is not a dotted path such as `address.country`"),
                ));
            }
        }
        Ok(())
    }

    /// The compiled keys, in order of trust (checked by [`MatchRules::check`]
    /// when the pipeline was accepted).
    pub fn compiled(&self, model: Option<&str>) -> Result<Vec<Key>, String> {
        self.key_names(model).iter().map(|k| parse_key(k)).collect()
    }

    /// Where each field the keys name is read from.
    fn paths(&self, keys: &[Key]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for key in keys {
            for (field, _) in &key.fields {
                if out.iter().any(|(f, _)| f == field) {
                    continue;
                }
                let path = self
                    .fields
                    .get(field)
                    .cloned()
                    .or_else(|| known(field).map(|(_, p)| p.to_string()))
                    .unwrap_or_else(|| field.clone());
                out.push((field.clone(), path));
            }
        }
        out
    }

    /// What matching sees of one record: each field the keys name, as text.
    pub fn record_of(&self, keys: &[Key], payload: &Map<String, Value>) -> Record {
        let mut record = Record::new();
        for (field, path) in self.paths(keys) {
            if let Some(text) = at_path(payload, &path) {
                record.insert(field, text);
            }
        }
        record
    }
}

/// One key from its text: `a+b` (exact) or `a~0.9` (fuzzy).
fn parse_key(text: &str) -> Result<Key, String> {
    let text = text.trim();
    let (fields_text, fuzzy) = match text.split_once('~') {
        Some((f, s)) => {
            let similarity = if s.trim().is_empty() {
                DEFAULT_SIMILARITY
            } else {
                s.trim().parse::<f64>().map_err(|_| {
                    format!("`{text}`: `{s}` is not a similarity; write one between 0.5 and 1.0, e.g. `name~0.92`")
                })?
            };
            if !(0.5..=1.0).contains(&similarity) {
                return Err(format!(
                    "`{text}`: a similarity of {similarity} is outside 0.5–1.0"
                ));
            }
            (f, Some(similarity))
        }
        None => (text, None),
    };
    let mut fields = Vec::new();
    for part in fields_text.split('+') {
        let part = part.trim();
        let Some((norm, _)) = known(part) else {
            return Err(format!(
                "`{text}`: `{part}` is not a field a key can name; use one of {}",
                field_names()
            ));
        };
        if fields.iter().any(|(f, _): &(String, Normalizer)| f == part) {
            return Err(format!("`{text}` names `{part}` twice"));
        }
        fields.push((part.to_string(), norm));
    }
    if fuzzy.is_some() && fields.len() != 1 {
        return Err(format!(
            "`{text}`: a similar (`~`) key compares one field, e.g. `name~0.92`"
        ));
    }
    Ok(Key {
        name: fields_text.trim().to_string(),
        fields,
        fuzzy,
    })
}

/// The value at a dotted path (a number indexes an array) as text.
fn at_path(payload: &Map<String, Value>, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut value = payload.get(parts.next()?)?;
    for part in parts {
        value = match value {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(keys: &[&str]) -> MatchRules {
        MatchRules {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            fields: BTreeMap::new(),
            first_run: true,
            references: BTreeMap::new(),
        }
    }

    #[test]
    fn a_model_gives_its_keys_and_a_typo_is_named_with_the_fields_a_key_can_name() {
        let r = rules(&[]);
        assert_eq!(
            r.key_names(Some("company")),
            ["tax_id", "email", "phone", "name+country", "name~0.92"]
        );
        assert!(r.check(None).is_err());
        let (field, message) = rules(&["emial"]).check(None).unwrap_err();
        assert_eq!(field, "match.keys[0]");
        assert!(
            message.contains("`emial`") && message.contains("email"),
            "{message}"
        );
        let (_, message) = rules(&["name+country~0.9"]).check(None).unwrap_err();
        assert!(message.contains("one field"), "{message}");
        let (_, message) = rules(&["name~1.5"]).check(None).unwrap_err();
        assert!(message.contains("outside"), "{message}");
        let mut r = rules(&["email"]);
        r.fields.insert("e_mail".into(), "EmailAddress".into());
        let (field, _) = r.check(None).unwrap_err();
        assert_eq!(field, "match.fields.e_mail");
    }

    #[test]
    fn fields_are_read_where_the_model_keeps_them_or_where_the_rules_say() {
        let mut r = rules(&["tax_id", "name+country", "name~"]);
        r.references.insert(
            "customer".into(),
            Reference {
                entity: "customer".into(),
                source: "companies".into(),
                destination: " ".into(),
            },
        );
        let (field, _) = r.check(None).unwrap_err();
        assert_eq!(field, "match.references.customer.destination");
        r.references.clear();
        r.fields.insert("tax_id".into(), "extra.vat".into());
        let keys = r.compiled(None).unwrap();
        assert_eq!(keys[2].fuzzy, Some(DEFAULT_SIMILARITY));
        let payload = json!({"name": "Acme GmbH", "address": {"country": "DE"},
            "extra": {"vat": "DE123"}, "tax_number": "ignored"});
        let record = r.record_of(&keys, payload.as_object().unwrap());
        assert_eq!(record.get("tax_id").map(String::as_str), Some("DE123"));
        assert_eq!(record.get("country").map(String::as_str), Some("DE"));
        assert_eq!(record.get("name").map(String::as_str), Some("Acme GmbH"));
        assert_eq!(record.len(), 3);
    }
}

//! Comparing records across systems: the fields a system manages itself
//! (its primary key, its modification time) are left out, the rest is put
//! in a canonical form, hashed and diffed field by field. This is what makes
//! "unchanged" and "echo of our own write" decidable.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Fields a system manages itself, left out of comparisons.
#[derive(Debug, Clone, Default)]
pub struct SystemFields(BTreeSet<String>);

impl SystemFields {
    /// From a stream's primary key and cursor field.
    pub fn new<'a>(fields: impl IntoIterator<Item = &'a str>) -> Self {
        SystemFields(fields.into_iter().map(str::to_string).collect())
    }

    /// Whether `field` is one of them.
    pub fn contains(&self, field: &str) -> bool {
        self.0.contains(field)
    }
}

/// A record's comparable content: a JSON object without system fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(pub Map<String, Value>);

impl Content {
    /// Parse a payload (a JSON object) and drop system fields.
    pub fn of(payload: &str, system: &SystemFields) -> Result<Self, String> {
        match serde_json::from_str::<Value>(payload) {
            Ok(Value::Object(mut m)) => {
                m.retain(|k, _| !system.contains(k));
                Ok(Content(m))
            }
            Ok(_) => Err("the payload is not a JSON object".into()),
            Err(e) => Err(format!("the payload is not JSON: {e}")),
        }
    }

    /// From an already parsed object.
    pub fn from_map(mut m: Map<String, Value>, system: &SystemFields) -> Self {
        m.retain(|k, _| !system.contains(k));
        Content(m)
    }

    /// Canonical JSON text (keys sorted: `serde_json::Map` is a BTreeMap).
    /// The map is serialised in place: the same text as the `Value`'s,
    /// without copying every field into one first.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Stable hash of the canonical text.
    pub fn hash(&self) -> String {
        hash_text(&self.to_json())
    }

    /// Whether every field of `self` has the same value in `other` (fields
    /// only `other` has are ignored: a system may add defaults).
    pub fn is_contained_in(&self, other: &Content) -> bool {
        self.0
            .iter()
            .all(|(k, v)| other.0.get(k).unwrap_or(&Value::Null) == v)
    }

    /// Field-by-field changes from `before` to `self`, for fields `self`
    /// carries.
    pub fn diff_from(&self, before: &Content) -> Vec<FieldChange> {
        self.0
            .iter()
            .filter_map(|(k, after)| {
                let prior = before.0.get(k).cloned().unwrap_or(Value::Null);
                (prior != *after).then(|| FieldChange {
                    field: k.clone(),
                    before: prior,
                    after: after.clone(),
                })
            })
            .collect()
    }
}

/// Hash of canonical JSON text.
pub fn hash_text(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..16])
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    /// Field name.
    pub field: String,
    /// Value before (`null` when absent).
    pub before: Value,
    /// Value after.
    pub after: Value,
}

/// The idempotency key of a pipeline's write of one source record: stable
/// across retries, resumes and re-runs, different per pipeline and record.
pub fn idempotency_key(pipeline: &str, source_connection: &str, source_id: &str) -> String {
    let mut h = Sha256::new();
    for part in [pipeline, source_connection, source_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("nexo-{}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content(v: Value) -> Content {
        Content::of(&v.to_string(), &SystemFields::new(["id", "updated_at"])).unwrap()
    }

    #[test]
    fn system_fields_and_key_order_do_not_matter() {
        let a = content(json!({"id": "1", "b": 2, "a": 1, "updated_at": "x"}));
        let b = content(json!({"a": 1, "b": 2, "id": "9", "updated_at": "y"}));
        assert_eq!(a.hash(), b.hash());
        let c = content(json!({"a": 1, "b": 3}));
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn diff_names_each_changed_field() {
        let before = content(json!({"a": 1, "b": "x", "c": true}));
        let after = content(json!({"a": 1, "b": "y", "d": null, "e": 5}));
        let d = after.diff_from(&before);
        let fields: Vec<_> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["b", "e"]);
        assert_eq!(d[0].before, json!("x"));
        assert!(after.is_contained_in(&content(json!({"a": 1, "b": "y", "e": 5, "z": 0}))));
        assert!(!after.is_contained_in(&before));
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let k = idempotency_key("p", "crm", "42");
        assert_eq!(k, idempotency_key("p", "crm", "42"));
        assert_ne!(k, idempotency_key("p", "crm", "43"));
        assert_ne!(k, idempotency_key("q", "crm", "42"));
        assert_ne!(
            idempotency_key("a", "bc", "d"),
            idempotency_key("ab", "c", "d")
        );
        assert!(k.starts_with("nexo-") && k.len() == 37);
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(Content::of("[1]", &SystemFields::default()).is_err());
        assert!(Content::of("{", &SystemFields::default()).is_err());
    }
}

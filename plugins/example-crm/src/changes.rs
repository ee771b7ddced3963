//! TinyCRM's change stream, parsed straight into records: each contact is
//! checked against [`Contact`](crate::Contact) and written out as the
//! record's payload while it is parsed, with no JSON tree in between,
//! because this runs for every record read (a tree per contact, then a
//! serialisation of it, more than doubled the cost of a read).

use std::fmt;

use nexo_sdk::prelude::*;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields of [`Contact`](crate::Contact) that must be strings, and
/// those that may be null or absent (written as null). A test keeps them in
/// step with `Contact`.
const REQUIRED: [&str; 5] = ["id", "first_name", "last_name", "email", "updated_at"];
const OPTIONAL: [&str; 5] = ["company", "phone", "lifecycle_stage", "country", "city"];

/// One page of `GET /api/contacts`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChangePage {
    /// Contacts and tombstones.
    pub(crate) results: Vec<Change>,
    #[serde(default)]
    pub(crate) next_page_token: Option<String>,
}

/// A contact or a tombstone (`{"id", "deleted": true, "updated_at"}`).
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) id: String,
    pub(crate) updated_at: String,
    /// The contact as a JSON object; unused for a tombstone.
    payload: String,
    deleted: bool,
}

impl Change {
    /// The record it stands for, with its `updated_at` as the cursor.
    pub(crate) fn into_record(self, stream: &str) -> Record {
        let record = if self.deleted {
            Record::delete(stream, self.id)
        } else {
            Record {
                stream: stream.to_string(),
                id: self.id,
                operation: Operation::Upsert,
                payload: self.payload,
                cursor: None,
            }
        };
        record.with_cursor(self.updated_at)
    }
}

/// A key of a change: one of the known fields (an index into
/// [`REQUIRED`], then [`OPTIONAL`]), `deleted`, or a custom field.
enum Key {
    Known(usize),
    Deleted,
    Custom(String),
}

fn known(name: &str) -> Option<Key> {
    if name == "deleted" {
        return Some(Key::Deleted);
    }
    REQUIRED
        .iter()
        .chain(&OPTIONAL)
        .position(|k| *k == name)
        .map(Key::Known)
}

/// The name of known field `i`.
fn known_name(i: usize) -> &'static str {
    REQUIRED
        .iter()
        .chain(&OPTIONAL)
        .nth(i)
        .copied()
        .unwrap_or("")
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    // Known names are matched without allocating.
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(known(name).unwrap_or_else(|| Key::Custom(name.to_string())))
    }
    fn visit_string<E: de::Error>(self, name: String) -> Result<Key, E> {
        Ok(known(&name).unwrap_or(Key::Custom(name)))
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ChangeVisitor)
    }
}

struct ChangeVisitor;

impl<'de> Visitor<'de> for ChangeVisitor {
    type Value = Change;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a contact or a tombstone")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Change, A::Error> {
        let mut payload = Vec::with_capacity(320);
        let mut out = serde_json::Serializer::new(&mut payload);
        let mut object = out.serialize_map(None).map_err(de::Error::custom)?;
        let (mut id, mut updated_at, mut deleted) = (None, None, false);
        let mut seen = [false; REQUIRED.len() + OPTIONAL.len()];
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let name = match &key {
                Key::Known(i) => known_name(*i),
                Key::Deleted => "deleted",
                Key::Custom(name) => name.as_str(),
            };
            let field = |e: A::Error| de::Error::custom(format!("field `{name}`: {e}"));
            match key {
                Key::Known(i) if std::mem::replace(&mut seen[i], true) => {
                    return Err(de::Error::custom(format!("field `{name}` appears twice")));
                }
                Key::Known(i) if i < REQUIRED.len() => {
                    let value: String = map.next_value().map_err(field)?;
                    entry(&mut object, name, &value)?;
                    match name {
                        "id" => id = Some(value),
                        "updated_at" => updated_at = Some(value),
                        _ => {}
                    }
                }
                Key::Known(_) => {
                    let value: Option<String> = map.next_value().map_err(field)?;
                    entry(&mut object, name, &value)?;
                }
                Key::Deleted => {
                    let value: Option<bool> = map.next_value().map_err(field)?;
                    entry(&mut object, name, &value)?;
                    deleted = value == Some(true);
                }
                // Custom fields are rare; a tree for them costs little.
                Key::Custom(_) => {
                    let value: Value = map.next_value()?;
                    entry(&mut object, name, &value)?;
                }
            }
        }
        let (Some(id), Some(updated_at)) = (id, updated_at) else {
            return Err(de::Error::custom(
                "a change needs a text `id` and `updated_at`",
            ));
        };
        if !deleted {
            if let Some(missing) = REQUIRED.iter().zip(seen).find(|(_, s)| !s) {
                return Err(de::Error::custom(format!(
                    "contact {id} has no `{}`",
                    missing.0
                )));
            }
            for (name, _) in OPTIONAL
                .iter()
                .zip(&seen[REQUIRED.len()..])
                .filter(|(_, s)| !**s)
            {
                entry(&mut object, name, &Value::Null)?;
            }
        }
        SerializeMap::end(object).map_err(de::Error::custom)?;
        let payload = String::from_utf8(payload).map_err(de::Error::custom)?;
        Ok(Change {
            id,
            updated_at,
            payload,
            deleted,
        })
    }
}

/// Write one field of the payload.
fn entry<M: SerializeMap<Error = serde_json::Error>, E: de::Error>(
    object: &mut M,
    name: &str,
    value: &impl Serialize,
) -> Result<(), E> {
    object.serialize_entry(name, value).map_err(E::custom)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(row: Value) -> Result<Change, serde_json::Error> {
        // As read from a response body, not from a tree.
        serde_json::from_slice(&serde_json::to_vec(&row).unwrap())
    }

    #[test]
    fn tombstones_become_deletes_and_contacts_keep_custom_fields() {
        let c = parse(json!({"id": "c7", "deleted": true, "updated_at": "T2"})).unwrap();
        let r = c.into_record("contacts");
        assert_eq!(
            (r.operation, r.id.as_str(), r.cursor.as_deref()),
            (Operation::Delete, "c7", Some("T2"))
        );

        let c = parse(json!({
            "id": "c8", "first_name": "A", "last_name": "B", "email": "a@b.test",
            "updated_at": "T3", "loyalty": {"points": 7}, "city": "Lyon", "deleted": false
        }))
        .unwrap();
        let r = c.into_record("contacts");
        assert_eq!(
            (r.operation, r.id.as_str(), r.cursor.as_deref()),
            (Operation::Upsert, "c8", Some("T3"))
        );
        let payload: Value = serde_json::from_str(&r.payload).unwrap();
        assert_eq!(payload["loyalty"]["points"], 7);
        assert_eq!(payload["city"], "Lyon");
        assert_eq!(
            payload["company"],
            Value::Null,
            "absent optional fields are null"
        );
        assert_eq!(payload["updated_at"], "T3");
        assert_eq!(payload.as_object().unwrap().len(), 12);
    }

    #[test]
    fn the_field_lists_match_contact() {
        let schema: Value = serde_json::from_str(&schema_of::<crate::Contact>()).unwrap();
        let names = |v: &Value| {
            let mut names: Vec<String> = match v {
                Value::Array(a) => a.iter().map(|n| n.as_str().unwrap().to_string()).collect(),
                Value::Object(o) => o.keys().cloned().collect(),
                _ => panic!("{v}"),
            };
            names.sort();
            names
        };
        let sorted = |fields: &[&str]| {
            let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            fields.sort();
            fields
        };
        assert_eq!(names(&schema["required"]), sorted(&REQUIRED));
        assert_eq!(
            names(&schema["properties"]),
            sorted(&[REQUIRED, OPTIONAL].concat())
        );
    }

    #[test]
    fn contacts_of_the_wrong_shape_are_refused() {
        let ok = json!({"id": "c1", "first_name": "A", "last_name": "B",
                        "email": "a@b.test", "updated_at": "T"});
        assert!(parse(ok.clone()).is_ok());
        for (field, bad) in [("email", Value::Null), ("city", json!(7)), ("id", json!(1))] {
            let mut row = ok.clone();
            row[field] = bad;
            let err = parse(row).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let mut row = ok.clone();
        row.as_object_mut().unwrap().remove("last_name");
        assert!(parse(row).unwrap_err().to_string().contains("last_name"));
        assert!(parse(json!({"deleted": true})).is_err());
        assert!(parse(json!([1])).is_err());
        let twice = br#"{"id":"c1","first_name":"A","last_name":"B","email":"a@b.test","updated_at":"T","email":"x@y.test"}"#;
        assert!(serde_json::from_slice::<Change>(twice).is_err());
    }

    #[test]
    fn escaped_names_and_values_survive() {
        let body = br#"{"id":"c\u0031","first_name":"A\"","last_name":"B","email":"a@b.test","updated_at":"T","n\u00e4me":"\n"}"#;
        let c: Change = serde_json::from_slice(body).unwrap();
        assert_eq!(c.id, "c1");
        let payload: Value = serde_json::from_str(&c.into_record("s").payload).unwrap();
        assert_eq!(payload["first_name"], "A\"");
        assert_eq!(payload["näme"], "\n");
    }
}

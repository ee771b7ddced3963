//! Passing a record through without building a tree: values parsed as
//! slices of the answer's text where they can be ([`Text`], [`Scalar`],
//! [`Fields`]), and a payload written field by field straight into its JSON
//! text ([`ObjectWriter`], then [`Record::upsert_json`](crate::Record::upsert_json)).
//! A connector that parses each answer into `serde_json::Value` and turns
//! each record into another `Value` before encoding it does three
//! allocations per field where these do none.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON string, borrowed from the text being parsed unless it holds
/// escapes. Deserialize it from `serde_json::from_slice`/`from_str` with
/// `#[serde(borrow)]` on the field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Any JSON value, with strings (the common case in business APIs)
/// borrowed like [`Text`] and anything else kept as a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// `null`.
    Null,
    /// A number, boolean, array or object.
    Other(Value),
}

impl<'a> Scalar<'a> {
    /// The string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                Scalar::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(Value::from(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Scalar::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object's fields in the order of the text, keys and string values
/// borrowed where they can be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields<'a>(pub Vec<(Cow<'a, str>, Scalar<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Text(k)) = map.next_key::<Text<'a>>()? {
                    out.push((k, map.next_value::<Scalar<'a>>()?));
                }
                Ok(Fields(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Fields::default())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object written field by field into its text, as
/// `serde_json::to_string` would write the same fields in the same order.
#[derive(Debug, Clone)]
pub struct ObjectWriter {
    out: String,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        ObjectWriter::with_capacity(256)
    }
}

impl ObjectWriter {
    /// An empty object with room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = String::with_capacity(bytes);
        out.push('{');
        ObjectWriter { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        quote(&mut self.out, key);
        self.out.push(':');
    }

    /// A string field.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        quote(&mut self.out, value);
        self
    }

    /// A field of any value.
    pub fn scalar(&mut self, key: &str, value: &Scalar<'_>) -> &mut Self {
        match value {
            Scalar::Str(s) => self.string(key, s),
            Scalar::Null => {
                self.key(key);
                self.out.push_str("null");
                self
            }
            Scalar::Other(v) => self.value(key, v),
        }
    }

    /// A field holding a tree.
    pub fn value(&mut self, key: &str, value: &Value) -> &mut Self {
        self.key(key);
        // Writing a `Value` into a `String` cannot fail.
        self.out.push_str(&value.to_string());
        self
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn quote(out: &mut String, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Rare: let serde_json escape it.
        out.push_str(&Value::from(s).to_string());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_borrow_plain_strings_and_keep_the_rest() {
        let text = r#"{"a":"plain","b":"with \"escape\"","c":null,"d":1.5,"e":[1,{"x":true}]}"#;
        let f: Fields = serde_json::from_str(text).unwrap();
        assert!(matches!(
            &f.0[0],
            (Cow::Borrowed("a"), Scalar::Str(Cow::Borrowed("plain")))
        ));
        assert_eq!(f.0[1].1, Scalar::Str(Cow::Owned("with \"escape\"".into())));
        assert_eq!(f.0[2].1, Scalar::Null);
        assert_eq!(f.0[4].1, Scalar::Other(serde_json::json!([1, {"x": true}])));
        let mut w = ObjectWriter::default();
        for (k, v) in &f.0 {
            w.scalar(k, v);
        }
        // The same text serde_json writes for the same fields.
        let again: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        let mut sorted = ObjectWriter::default();
        for (k, v) in &again {
            sorted.value(k, v);
        }
        assert_eq!(w.finish(), text);
        assert_eq!(sorted.finish(), Value::Object(again).to_string());
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in ["", "é ü 漢", "tab\there", "nl\n", "q\"b\\", "\u{1}", "/"] {
            let mut w = ObjectWriter::default();
            w.string(s, s);
            let want = serde_json::json!({ s: s }).to_string();
            assert_eq!(w.finish(), want);
        }
    }
}

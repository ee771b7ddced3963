//! What a plugin's records must be before the sync engine takes them: one
//! JSON object, not too large, not nested too deep, every number in range —
//! checked once, where records come back from plugins, with the engine's
//! own parser, so a record the engine could not read is set apart (and
//! quarantined by the engine) instead of failing the page it came in.

use super::types::{Page, Record};

/// Largest payload of one record, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// Deepest nesting of arrays and objects in a payload. The engine's parser
/// (serde_json) gives up at 128; a payload that passes this check always
/// parses, and real records are seldom deeper than 10.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Why a record's payload cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadFault {
    /// Larger than [`MAX_PAYLOAD_BYTES`].
    #[error("the payload is {bytes} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Nested deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error("the payload is nested deeper than {max} levels of arrays and objects")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// JSON, but not an object.
    #[error("the payload is not a JSON object")]
    NotObject,
    /// Not JSON the engine can read (a number out of range, a syntax error).
    #[error("the payload is not valid JSON: {0}")]
    Invalid(String),
}

impl PayloadFault {
    /// A short class for dead letters and metrics.
    pub fn class(&self) -> &'static str {
        "payload"
    }
}

/// A record a plugin returned whose payload failed [`check_payload`].
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    /// Where it was in the page (0 first), so the engine can tell which
    /// copy of an id came last.
    pub position: usize,
    /// The record as returned.
    pub record: Record,
    /// Why it cannot be used.
    pub fault: PayloadFault,
}

/// A page whose records were checked: the usable ones, and the rest.
#[derive(Debug, Clone)]
pub struct CheckedPage {
    /// The page with only the records that passed.
    pub page: Page,
    /// The records that did not, in page order.
    pub rejected: Vec<RejectedRecord>,
}

impl CheckedPage {
    /// Check each record of `page`.
    pub fn of(mut page: Page) -> Self {
        let mut rejected = Vec::new();
        if page
            .records
            .iter()
            .any(|r| check_payload(&r.payload).is_err())
        {
            let records = std::mem::take(&mut page.records);
            for (position, record) in records.into_iter().enumerate() {
                match check_payload(&record.payload) {
                    Ok(()) => page.records.push(record),
                    Err(fault) => rejected.push(RejectedRecord {
                        position,
                        record,
                        fault,
                    }),
                }
            }
        }
        CheckedPage { page, rejected }
    }
}

/// Whether `payload` is one JSON object the sync engine can use: at most
/// [`MAX_PAYLOAD_BYTES`], nested at most [`MAX_PAYLOAD_DEPTH`] deep, every
/// number in range. Read with the engine's own parser without building
/// anything (this runs on every record a plugin returns).
pub fn check_payload(payload: &str) -> Result<(), PayloadFault> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadFault::TooLarge {
            bytes: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if !payload.trim_start().starts_with('{') {
        return Err(PayloadFault::NotObject);
    }
    // One pass: the parse counts the nesting as it goes. Only a payload
    // that fails is scanned again, to say whether it was too deep.
    let mut de = serde_json::Deserializer::from_str(payload);
    match serde::de::DeserializeSeed::deserialize(Level(0), &mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(_) if nesting_depth(payload) > MAX_PAYLOAD_DEPTH => Err(PayloadFault::TooDeep {
            max: MAX_PAYLOAD_DEPTH,
        }),
        Err(e) => Err(PayloadFault::Invalid(e.to_string())),
    }
}

/// The deepest nesting of `[` and `{` outside strings (counted without
/// recursion, so any depth is safe to measure).
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A JSON value at nesting `.0`, read the way the engine reads one
/// (`deserialize_any`: numbers are parsed, so one out of range fails here as
/// it would there) and thrown away; deeper than [`MAX_PAYLOAD_DEPTH`] fails.
struct Level(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Level {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Level {
    fn inner<E: serde::de::Error>(&self) -> Result<Level, E> {
        if self.0 >= MAX_PAYLOAD_DEPTH {
            Err(E::custom("nested too deep"))
        } else {
            Ok(Level(self.0 + 1))
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Level {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(Level(inner.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value_seed(Level(inner.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAYLOAD_DEPTH, PayloadFault, check_payload};

    #[test]
    fn only_json_objects_pass() {
        assert_eq!(
            check_payload(r#" {"a": [1, {"b": null}], "c": "[[[{"}"#),
            Ok(())
        );
        for bad in [r#"[1]"#, r#""{}""#, "", "null"] {
            assert_eq!(check_payload(bad), Err(PayloadFault::NotObject), "{bad}");
        }
        for bad in ["{", r#"{"a": 1} {"b": 2}"#] {
            assert!(
                matches!(check_payload(bad), Err(PayloadFault::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn what_the_engine_cannot_parse_is_refused_by_name() {
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check_payload(&deep(MAX_PAYLOAD_DEPTH - 1)), Ok(()));
        assert_eq!(
            check_payload(&deep(10_000)),
            Err(PayloadFault::TooDeep {
                max: MAX_PAYLOAD_DEPTH
            })
        );
        // Brackets inside strings are not nesting.
        let quoted = format!("{{\"a\":\"{}\\\"\"}}", "[".repeat(10_000));
        assert_eq!(check_payload(&quoted), Ok(()));
        let huge = check_payload(r#"{"amount": 1e999999}"#).unwrap_err();
        assert!(huge.to_string().contains("number out of range"), "{huge}");
        assert_eq!(
            check_payload(r#"{"amount": 1e300, "n": -0.5e-999999}"#),
            Ok(())
        );
        // Whatever passes, the engine parses.
        for ok in [
            deep(MAX_PAYLOAD_DEPTH - 1),
            r#"{"x": 18446744073709551615}"#.into(),
        ] {
            assert_eq!(check_payload(&ok), Ok(()));
            assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        }
    }
}

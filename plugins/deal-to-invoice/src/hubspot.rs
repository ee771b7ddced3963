//! The HubSpot side: deal records as the HubSpot connector emits them, read
//! leniently (HubSpot sends every property as a string, or `null` when unset)
//! but never guessed at: a property that is present with the wrong type is an
//! error naming it, not a silent default.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::DealError;

/// A HubSpot object's `properties`: every value a string or `null`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub Map<String, Value>);

impl Properties {
    /// The property `name`, trimmed; `None` when absent, `null` or blank.
    /// `at` is the path of this object's `properties`, for the error.
    pub fn text(&self, name: &str, deal: &str, at: &str) -> Result<Option<&str>, DealError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then_some(s))
            }
            Some(other) => Err(DealError::new(
                deal,
                format!("{at}.{name}"),
                format!(
                    "expected a string (HubSpot sends properties as text), got {}",
                    kind_of(other)
                ),
            )),
        }
    }
}

/// One associated object: its id and properties.
#[derive(Debug, Clone, Deserialize)]
pub struct Associated {
    /// HubSpot id of the object.
    #[serde(default)]
    pub id: String,
    /// Its properties.
    #[serde(default)]
    pub properties: Properties,
}

/// The objects a deal is associated with.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Associations {
    /// Associated companies; the first is the one billed.
    #[serde(default)]
    pub companies: Vec<Associated>,
    /// The deal's line items, in order.
    #[serde(default)]
    pub line_items: Vec<Associated>,
}

/// A HubSpot deal record's payload.
#[derive(Debug, Clone, Deserialize)]
pub struct Deal {
    /// HubSpot deal id.
    pub id: String,
    /// Deal properties (`dealname`, `amount`, `dealstage`, `closedate`, …).
    #[serde(default)]
    pub properties: Properties,
    /// Associated companies and line items.
    #[serde(default)]
    pub associations: Associations,
}

impl Deal {
    /// Parse a deal payload in either form: HubSpot's own object
    /// (`{"id", "properties": {…}, "associations"}`) or the flat form the
    /// `nexo/hubspot` connector emits (properties at the top level beside
    /// `id` and `associations`).
    pub fn from_payload(payload: &str) -> Result<Deal, serde_json::Error> {
        let mut v: Value = serde_json::from_str(payload)?;
        if let Value::Object(m) = &mut v
            && !m.contains_key("properties")
        {
            let mut properties = Map::new();
            let keys: Vec<String> = m
                .keys()
                .filter(|k| !matches!(k.as_str(), "id" | "associations"))
                .cloned()
                .collect();
            for k in keys {
                if let Some(value) = m.remove(&k) {
                    properties.insert(k, value);
                }
            }
            m.insert("properties".into(), Value::Object(properties));
        }
        serde_json::from_value(v)
    }
}

/// A JSON value's type, for messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_connectors_flat_deals_and_hubspots_nested_ones_read_the_same() {
        let flat = r#"{"id":"9","dealname":"D","dealstage":"closedwon","amount":"5.00",
            "associations":{"companies":[{"id":"5","properties":{"name":"C"}}],"line_items":[]}}"#;
        let nested = r#"{"id":"9","properties":{"dealname":"D","dealstage":"closedwon","amount":"5.00"},
            "associations":{"companies":[{"id":"5","properties":{"name":"C"}}],"line_items":[]}}"#;
        let (a, b) = (
            Deal::from_payload(flat).unwrap(),
            Deal::from_payload(nested).unwrap(),
        );
        assert_eq!(a.id, b.id);
        assert_eq!(a.properties.0, b.properties.0);
        assert_eq!(
            a.properties.text("dealstage", "9", "p").unwrap(),
            Some("closedwon")
        );
        assert_eq!(a.associations.companies[0].id, "5");
    }
}

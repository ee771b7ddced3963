//! The data-quality gate: every mapped record is checked against the
//! destination stream's JSON Schema and, when the pipeline names one, the
//! canonical model's rules (balanced amounts, known currency, required ids)
//! before anything is written. A record that fails is quarantined with the
//! reason and the field; the rest of the page proceeds.

use nexo_sdk::model::{
    Account, Company, Contact, Invoice, JournalEntry, Payment, Product, Validate,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::content::{Content, SystemFields};

/// Why the gate refused a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", .field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct GateFailure {
    /// `schema` or `model`.
    pub class: &'static str,
    /// The offending field (JSON pointer or model path).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A compiled gate for one destination stream.
#[derive(Debug)]
pub struct Gate {
    validator: Option<jsonschema::Validator>,
    model: Option<String>,
}

impl Gate {
    /// Build from the destination stream's schema. The destination assigns
    /// its own system fields (primary key, modification time), so a record
    /// about to be created need not carry them.
    pub fn new(schema: &str, system: &SystemFields, model: Option<&str>) -> Result<Self, String> {
        let validator = if schema.trim().is_empty() {
            None
        } else {
            let mut schema: Value = serde_json::from_str(schema)
                .map_err(|e| format!("the destination stream's JSON Schema is not JSON: {e}"))?;
            if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
                required.retain(|f| f.as_str().is_none_or(|f| !system.contains(f)));
            }
            Some(
                jsonschema::validator_for(&schema)
                    .map_err(|e| format!("the destination stream's JSON Schema is invalid: {e}"))?,
            )
        };
        Ok(Gate {
            validator,
            model: model.map(str::to_string),
        })
    }

    /// [`Gate::check`] for a record's content, checked in place (the
    /// object is lent to a `Value` and given back, not copied).
    pub fn check_content(&self, content: &mut Content) -> Result<(), GateFailure> {
        let value = Value::Object(std::mem::take(&mut content.0));
        let checked = self.check(&value);
        if let Value::Object(m) = value {
            content.0 = m;
        }
        checked
    }

    /// Check one mapped payload.
    pub fn check(&self, payload: &Value) -> Result<(), GateFailure> {
        if let Some(v) = &self.validator
            && let Some(e) = v.iter_errors(payload).next()
        {
            let path = e.instance_path().to_string();
            return Err(GateFailure {
                class: "schema",
                field: (!path.is_empty()).then(|| path.trim_start_matches('/').replace('/', ".")),
                message: e.to_string(),
            });
        }
        match self.model.as_deref() {
            None => Ok(()),
            Some("contact") => model::<Contact>(payload),
            Some("company") => model::<Company>(payload),
            Some("product") => model::<Product>(payload),
            Some("invoice") => model::<Invoice>(payload),
            Some("payment") => model::<Payment>(payload),
            Some("account") => model::<Account>(payload),
            Some("journal-entry") => model::<JournalEntry>(payload),
            Some(other) => Err(GateFailure {
                class: "model",
                field: None,
                message: format!("unknown canonical model `{other}`"),
            }),
        }
    }
}

fn model<T: DeserializeOwned + Validate>(payload: &Value) -> Result<(), GateFailure> {
    let entity: T = serde_path_to_error::deserialize(payload).map_err(|e| GateFailure {
        class: "model",
        field: Some(e.path().to_string()).filter(|p| p != "."),
        message: e.inner().to_string(),
    })?;
    entity.validate().map_err(|e| GateFailure {
        class: "model",
        field: e.field().map(str::to_string),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> String {
        json!({
            "type": "object",
            "required": ["id", "email", "updated_at"],
            "properties": {
                "id": {"type": "string"},
                "email": {"type": "string"},
                "age": {"type": ["integer", "null"]},
                "updated_at": {"type": "string"}
            }
        })
        .to_string()
    }

    #[test]
    fn schema_failures_name_the_field_and_system_fields_are_optional() {
        let gate = Gate::new(&schema(), &SystemFields::new(["id", "updated_at"]), None).unwrap();
        gate.check(&json!({"email": "a@b.c"})).unwrap();
        let e = gate
            .check(&json!({"email": "a@b.c", "age": "old"}))
            .unwrap_err();
        assert_eq!(e.class, "schema");
        assert_eq!(e.field.as_deref(), Some("age"));
        let e = gate.check(&json!({"age": 3})).unwrap_err();
        assert!(e.message.contains("email"), "{e}");
    }

    #[test]
    fn model_rules_apply_beyond_the_schema() {
        let gate = Gate::new("", &SystemFields::default(), Some("invoice")).unwrap();
        let mut invoice = json!({
            "customer": {"kind": "company", "system": "crm", "id": "c-9"},
            "issue_date": "2024-03-01", "currency": "EUR", "status": "authorised",
            "lines": [{"description": "Consulting", "quantity": "2", "unit_price": "10.00",
                       "tax_rate": "20", "line_amount": "20.00"}],
            "subtotal": "20.00", "total_tax": "4.00", "total": "24.00"
        });
        gate.check(&invoice).unwrap();
        invoice["total"] = json!("25.00");
        let e = gate.check(&invoice).unwrap_err();
        assert_eq!(
            (e.class, e.field.as_deref()),
            ("model", Some("total")),
            "{e}"
        );
        invoice["total"] = json!("24.00");
        invoice["currency"] = json!("XXY");
        let e = gate.check(&invoice).unwrap_err();
        assert!(e.to_string().contains("XXY"), "{e}");
    }
}

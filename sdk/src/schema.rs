//! JSON Schema helpers for configs and stream payloads.

use schemars::JsonSchema;

/// The JSON Schema of `T`, as JSON text.
pub fn schema_of<T: JsonSchema>() -> String {
    schemars::schema_for!(T).as_value().to_string()
}

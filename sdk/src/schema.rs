//! JSON Schema helpers for configs and stream payloads, and the annotations
//! that tell the host how a system stores what it is sent (the rules are on
//! [`StreamSchema`]).

use schemars::JsonSchema;
use serde_json::{Map, Value, json};

/// The JSON Schema of `T`, as JSON text.
pub fn schema_of<T: JsonSchema>() -> String {
    schemars::schema_for!(T).as_value().to_string()
}

/// For a mapper's own test: whether the config schema it ships (the file
/// its `nexo-plugin.toml` names as `config_schema`, signed into its bundle
/// and checked at `pipeline apply`) is exactly the schema of the config
/// type `T` it parses, so the two never drift. With the environment
/// variable `NEXO_WRITE_SCHEMA` set, the file is (re)written first. The
/// error names the file and how to regenerate it (`regenerate`: the test
/// command to run).
///
/// ```no_run
/// # #[derive(schemars::JsonSchema)] struct Config {}
/// let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
/// nexo_sdk::check_shipped_schema::<Config>(&path, "cargo test -p my-mapper --test schema")
///     .unwrap_or_else(|e| panic!("{e}"));
/// ```
pub fn check_shipped_schema<T: JsonSchema>(
    path: &std::path::Path,
    regenerate: &str,
) -> Result<(), String> {
    let current = schemars::schema_for!(T).as_value().clone();
    if std::env::var_os("NEXO_WRITE_SCHEMA").is_some() {
        let text = serde_json::to_string_pretty(&current).map_err(|e| e.to_string())? + "\n";
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let shipped: Option<Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if shipped.as_ref() == Some(&current) {
        return Ok(());
    }
    Err(format!(
        "{} is not the schema of the config type; regenerate it with `NEXO_WRITE_SCHEMA=1 {regenerate}`",
        path.display()
    ))
}

/// A stream's JSON Schema annotated with what its system does to each
/// field, for `Connector::discover`.
///
/// # How the host compares a read-back with what it wrote
///
/// When Nexo writes a record and later reads it back (change tracking of a
/// destination), the system answers in its own form. The host compares the
/// two with rules taken from the stream's JSON Schema, so only a change a
/// person made counts (a conflict, an update):
///
/// | keyword on a property | meaning |
/// |---|---|
/// | `type: number`/`integer`, or `type: string` with `format: decimal` (every canonical amount) | compared as decimals: `10` = `10.00` = `"10.0"` |
/// | `readOnly: true` | the system derives it: never compared, and left out of what is sent |
/// | `writeOnly: true` | the system does not read it back: compared only when both sides have a value |
/// | `x-nexo-reference: true` | an `{system, id}` reference the system may store as its own id: compared only when both sides name the same `system` |
/// | `x-nexo-tolerance: "0.0001"` | a decimal the system may move by up to this step (a rounding tie-break) |
/// | a `type` allowing a string and a number or boolean | the system may keep scalars as text: `12.5` = `"12.50"`, `true` = `"true"`; two strings compare as text |
///
/// After a read-back found equal, the host knows the record in the
/// system's form, except where the system cannot show what was written (a
/// reference kept as its own id, a field not read back): there it keeps
/// what it wrote, so a later change at the source still shows.
///
/// `additionalProperties` gives the rule of fields the schema does not
/// list (a model's `extra`); `items` that of an array's elements. Objects
/// are compared on the fields Nexo holds: fields only the system returns
/// are its defaults.
///
/// # Building one
///
/// Paths name properties with dots; `[]` after a name steps into an
/// array's elements: `"lines[].unit_price"`. A `$ref` or `anyOf` on the
/// way is followed, so a property inside a shared definition is annotated
/// wherever that definition is used.
///
/// ```
/// use nexo_sdk::StreamSchema;
/// let schema = StreamSchema::of::<nexo_sdk::model::Invoice>()
///     .derived("number")
///     .not_read_back("external_refs")
///     .own_ids("customer")
///     .tolerance("lines[].unit_price", "0.0001");
/// assert!(schema.unknown_paths().is_empty());
/// let text: String = schema.into();
/// assert!(text.contains("x-nexo-tolerance"));
/// ```
#[derive(Debug, Clone)]
pub struct StreamSchema {
    schema: Value,
    unknown: Vec<String>,
}

impl StreamSchema {
    /// The plain schema of `T`.
    pub fn of<T: JsonSchema>() -> Self {
        StreamSchema {
            schema: schemars::schema_for!(T).as_value().clone(),
            unknown: Vec::new(),
        }
    }

    /// The system derives `path` itself (a number it assigns, a total it
    /// computes): `readOnly`, never compared, never sent.
    pub fn derived(self, path: &str) -> Self {
        self.annotate(path, "readOnly", json!(true))
    }

    /// The system keeps `path` but does not return it on reads:
    /// `writeOnly`, compared only when both sides have a value.
    pub fn not_read_back(self, path: &str) -> Self {
        self.annotate(path, "writeOnly", json!(true))
    }

    /// Fields the schema does not list (a model's `extra`) are not read
    /// back.
    pub fn extras_not_read_back(mut self) -> Self {
        if let Some(m) = self.schema.as_object_mut() {
            m.insert("additionalProperties".into(), json!({"writeOnly": true}));
        }
        self
    }

    /// `path` is an `{system, id}` reference the system stores as its own
    /// id (`x-nexo-reference`): compared only when both sides name the same
    /// system.
    pub fn own_ids(self, path: &str) -> Self {
        self.annotate(path, "x-nexo-reference", json!(true))
    }

    /// The decimal at `path` may come back moved by up to `step`
    /// (`x-nexo-tolerance`), e.g. a price nudged to make a rounded amount
    /// exact.
    pub fn tolerance(self, path: &str, step: &str) -> Self {
        self.annotate(path, "x-nexo-tolerance", json!(step))
    }

    /// The paths given that the schema does not have (nothing was
    /// annotated for them); a connector's tests should expect none.
    pub fn unknown_paths(&self) -> &[String] {
        &self.unknown
    }

    fn annotate(mut self, path: &str, key: &str, value: Value) -> Self {
        match pointer_of(&self.schema, path) {
            Some(pointer) => {
                if let Some(Value::Object(node)) = self.schema.pointer_mut(&pointer) {
                    node.insert(key.into(), value);
                }
            }
            None => self.unknown.push(path.to_string()),
        }
        self
    }
}

impl From<StreamSchema> for String {
    fn from(s: StreamSchema) -> String {
        s.schema.to_string()
    }
}

/// Where the sub-schema with a `properties` (or `items`) entry is, from
/// `at`: `at` itself, its `$ref` target or one of its `anyOf`/`oneOf`/
/// `allOf` branches.
fn holder(root: &Value, at: &str, key: &str, name: Option<&str>, depth: u8) -> Option<String> {
    let node = root.pointer(at)?.as_object()?;
    let has = |m: &Map<String, Value>| match name {
        Some(n) => m
            .get(key)
            .and_then(Value::as_object)
            .is_some_and(|p| p.contains_key(n)),
        None => m.contains_key(key),
    };
    if has(node) {
        return Some(at.to_string());
    }
    if depth > 16 {
        return None;
    }
    if let Some(target) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        && let Some(found) = holder(root, target, key, name, depth + 1)
    {
        return Some(found);
    }
    for branch in ["anyOf", "oneOf", "allOf"] {
        let n = node
            .get(branch)
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..n {
            if let Some(found) = holder(root, &format!("{at}/{branch}/{i}"), key, name, depth + 1) {
                return Some(found);
            }
        }
    }
    None
}

fn pointer_of(root: &Value, path: &str) -> Option<String> {
    let mut at = String::new();
    for segment in path.split('.') {
        let (name, items) = match segment.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (segment, false),
        };
        let escaped = name.replace('~', "~0").replace('/', "~1");
        at = holder(root, &at, "properties", Some(name), 0)?;
        at = format!("{at}/properties/{escaped}");
        if items {
            at = holder(root, &at, "items", None, 0)?;
            at.push_str("/items");
        }
    }
    Some(at)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Invoice;

    #[test]
    fn paths_reach_through_refs_and_arrays_and_unknown_ones_are_named() {
        let s = StreamSchema::of::<Invoice>()
            .derived("number")
            .own_ids("customer")
            .tolerance("lines[].unit_price", "0.0001")
            .own_ids("lines[].product")
            .not_read_back("refrence")
            .extras_not_read_back();
        assert_eq!(s.unknown_paths(), ["refrence"]);
        let v: Value = serde_json::from_str(&String::from(s)).unwrap();
        assert_eq!(v["properties"]["number"]["readOnly"], true);
        assert_eq!(v["properties"]["customer"]["x-nexo-reference"], true);
        assert_eq!(v["additionalProperties"]["writeOnly"], true);
        let line = v["$defs"]["InvoiceLine"]["properties"].clone();
        assert_eq!(line["unit_price"]["x-nexo-tolerance"], "0.0001");
        assert_eq!(line["product"]["x-nexo-reference"], true);
    }
}

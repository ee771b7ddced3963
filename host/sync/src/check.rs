//! The checks `pipeline apply` runs that need more than the definition:
//! a mapper's config against the JSON Schema its signed manifest carries,
//! the output fields a last mapper names against the destination stream's
//! schema, and whether a saved pipeline's identity (entity, streams)
//! changes under its cursor. Pure functions over JSON, so each rule is
//! tested without a plugin; `Engine::apply` wires them to the real ones.

use serde_json::Value;

use super::pipeline::Pipeline;

/// The custom keyword a mapper's config schema puts on a property whose
/// config values name OUTPUT fields (the fields the mapper writes), so the
/// host can check them against the destination stream at apply:
///
/// - `"keys"`: the property is an object; its keys are output fields
///   (field-mapper's `defaults`, `templates`);
/// - `"values"`: the property is an object; its string values are output
///   fields (field-mapper's `rename`);
/// - `"items"`: the property is an array; its string items are output
///   fields (field-mapper's `required`, `keep`).
///
/// Dotted paths (`address.city`) are checked by their first segment.
pub const TARGET_KEYWORD: &str = "x-nexo-target";

/// The name in `known` closest to `name`, if it is close enough to be a
/// likely typo (at most a third of the name's letters differ, and at
/// least one edit is always allowed).
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    known
        .into_iter()
        .filter(|k| *k != name)
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `; did you mean `x`?` or, with nothing close, the known names.
fn hint<'a>(name: &str, known: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match nearest(name, known.clone()) {
        Some(k) => format!("; did you mean `{k}`?"),
        None => {
            let all: Vec<&str> = known.into_iter().collect();
            if all.is_empty() {
                String::new()
            } else {
                format!(" (fields: {})", all.join(", "))
            }
        }
    }
}

/// The pattern of a decimal string (`"20"`, `"0.20"`), as the SDK's
/// `DecimalString` schema and mapper configs declare it.
const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// A JSON pointer (`/a/0/b`) as a field path (`.a[0].b`).
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            out.push('.');
            out.push_str(&segment);
        }
    }
    out
}

/// The schema object a keyword's location points into (the keyword's
/// parent), when it can be followed without `$ref`.
fn schema_at<'s>(root: &'s Value, keyword_pointer: &str) -> Option<&'s Value> {
    let parent = keyword_pointer.rsplit_once('/').map_or("", |(p, _)| p);
    root.pointer(parent)
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// Why `config` does not satisfy `schema`, one line per problem, each
/// starting with the field's path under `prefix` (e.g. `mappers[0].config`).
/// An invalid schema is one problem naming the plugin's schema.
pub fn config_errors(schema: &Value, config: &Value, prefix: &str) -> Vec<String> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![format!(
                "{prefix}: the mapper's own config schema is invalid ({e}); ask its vendor for a fixed bundle"
            )];
        }
    };
    let mut out: Vec<String> = validator
        .iter_errors(config)
        .flat_map(|e| describe(schema, &e, prefix))
        .collect();
    out.dedup();
    out
}

fn describe(root: &Value, e: &jsonschema::ValidationError<'_>, prefix: &str) -> Vec<String> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let at = format!("{prefix}{}", field_path(e.instance_path().as_str()));
    let value = short(e.instance());
    let here = schema_at(root, e.schema_path().as_str());
    match e.kind() {
        Kind::AdditionalProperties { unexpected } | Kind::UnevaluatedProperties { unexpected } => {
            let known: Vec<&str> = here
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            unexpected
                .iter()
                .map(|u| format!("{at}.{u}: unknown field{}", hint(u, known.iter().copied())))
                .collect()
        }
        Kind::Enum { options } => vec![format!("{at}: {value} is not one of {}", list(options))],
        Kind::Constant { expected_value } => {
            vec![format!("{at}: {value} is not {}", short(expected_value))]
        }
        Kind::Pattern { pattern } if pattern == DECIMAL_PATTERN => {
            vec![format!(
                "{at}: {value} is not a decimal string{}",
                example(here)
            )]
        }
        Kind::Type { .. }
            if here.and_then(|s| s.get("pattern")).and_then(Value::as_str)
                == Some(DECIMAL_PATTERN) =>
        {
            vec![format!(
                "{at}: {value} is not a decimal string{}",
                example(here)
            )]
        }
        Kind::AnyOf { context } | Kind::OneOfNotValid { context } => {
            // Alternatives such as `null | X` or one `const` per enum
            // variant: name the allowed values, or the real alternative's
            // problem, not the schema's structure.
            let consts: Option<Vec<String>> = context
                .iter()
                .filter(|branch| !branch.iter().all(|b| expects_null(b)))
                .map(|branch| match branch.first().map(|b| b.kind()) {
                    Some(Kind::Constant { expected_value }) => Some(short(expected_value)),
                    Some(Kind::Enum { options }) => Some(list(options)),
                    _ => None,
                })
                .collect();
            match consts {
                Some(c) if !c.is_empty() => {
                    vec![format!("{at}: {value} is not one of {}", c.join(", "))]
                }
                _ => {
                    let real: Vec<&Vec<jsonschema::ValidationError<'static>>> = context
                        .iter()
                        .filter(|branch| !branch.iter().all(|b| expects_null(b)))
                        .collect();
                    match real.as_slice() {
                        [only] => only
                            .iter()
                            .flat_map(|b| describe(root, b, prefix))
                            .collect(),
                        _ => vec![format!("{at}: {e}")],
                    }
                }
            }
        }
        _ => vec![format!("{at}: {e}")],
    }
}

fn expects_null(e: &jsonschema::ValidationError<'_>) -> bool {
    matches!(
        e.kind(),
        jsonschema::error::ValidationErrorKind::Type { .. }
    ) && e.to_string().contains("\"null\"")
}

fn list(options: &Value) -> String {
    match options.as_array() {
        Some(items) => items.iter().map(short).collect::<Vec<_>>().join(", "),
        None => short(options),
    }
}

fn example(schema: Option<&Value>) -> String {
    let example = schema
        .and_then(|s| s.get("examples"))
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .map(short)
        .unwrap_or_else(|| "\"0.20\"".to_string());
    format!(" like {example} (write it in quotes)")
}

/// One output field a mapper's config names: where in the config, and
/// the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Path in the config (`rename.reference`).
    pub at: String,
    /// The output field (first segment of a dotted path).
    pub field: String,
}

/// The output fields `config` names, per the [`TARGET_KEYWORD`]
/// annotations of the top-level properties of `schema`.
pub fn targets(schema: &Value, config: &Value) -> Vec<Target> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let first = |path: &str| path.split('.').next().unwrap_or(path).to_string();
    let mut out = Vec::new();
    for (name, property) in properties {
        let Some(how) = property.get(TARGET_KEYWORD).and_then(Value::as_str) else {
            continue;
        };
        let Some(value) = config.get(name) else {
            continue;
        };
        match (how, value) {
            ("keys", Value::Object(m)) => out.extend(m.keys().map(|k| Target {
                at: format!("{name}.{k}"),
                field: first(k),
            })),
            ("values", Value::Object(m)) => out.extend(m.iter().filter_map(|(k, v)| {
                v.as_str().map(|v| Target {
                    at: format!("{name}.{k}"),
                    field: first(v),
                })
            })),
            ("items", Value::Array(items)) => {
                out.extend(items.iter().enumerate().filter_map(|(i, v)| {
                    v.as_str().map(|v| Target {
                        at: format!("{name}[{i}]"),
                        field: first(v),
                    })
                }))
            }
            _ => {}
        }
    }
    out
}

/// The fields a destination stream's schema lists, unless it declares
/// what other fields it writes: `None` (nothing to check) when it has no
/// `properties`, or when its `additionalProperties` is a non-empty schema
/// — a connector's deliberate statement that any field of that shape is
/// written (HubSpot: any property of the account). `true`, `{}`, `false`
/// or none are checked: `true` is what a catch-all such as the canonical
/// models' `extra` produces, and a target that lands there reaches no
/// column the connector knows — how a misspelled target dropped a field
/// silently.
/// An `additionalProperties` of annotations only (`{"writeOnly": true}`:
/// extra fields are not read back) declares no shape either.
pub fn listed_fields(stream_schema: &Value) -> Option<Vec<&str>> {
    let properties = stream_schema.get("properties")?.as_object()?;
    match stream_schema.get("additionalProperties") {
        Some(Value::Object(declared)) if declared.keys().any(|k| !is_annotation(k)) => None,
        _ => Some(properties.keys().map(String::as_str).collect()),
    }
}

/// JSON Schema keywords (and our `x-` ones) that describe a value without
/// saying what it may be.
fn is_annotation(keyword: &str) -> bool {
    keyword.starts_with("x-")
        || matches!(
            keyword,
            "readOnly"
                | "writeOnly"
                | "title"
                | "description"
                | "default"
                | "examples"
                | "deprecated"
                | "$comment"
        )
}

/// Why each target is not a field of the destination stream.
pub fn target_errors(
    targets: &[Target],
    fields: &[&str],
    prefix: &str,
    destination: &str,
) -> Vec<String> {
    targets
        .iter()
        .filter(|t| !fields.contains(&t.field.as_str()))
        .map(|t| {
            let near = match nearest(&t.field, fields.iter().copied()) {
                Some(k) => format!(" (did you mean `{k}`?)"),
                None => format!(" (its fields: {})", fields.join(", ")),
            };
            format!(
                "{prefix}.{}: target `{}` is not a field of {destination}{near}",
                t.at, t.field
            )
        })
        .collect()
}

/// What changes a saved pipeline's identity: the entity its records are
/// linked under, and the streams its cursors and links belong to.
pub fn identity_changes(old: &Pipeline, new: &Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |field: &str, a: &str, b: &str| {
        if a != b {
            out.push(format!("{field} `{a}` → `{b}`"));
        }
    };
    diff("entity", &old.entity, &new.entity);
    diff(
        "source.connection",
        &old.source.connection,
        &new.source.connection,
    );
    diff("source.stream", &old.source.stream, &new.source.stream);
    diff(
        "destination.connection",
        &old.destination.connection,
        &new.destination.connection,
    );
    diff(
        "destination.stream",
        &old.destination.stream,
        &new.destination.stream,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nearest_finds_typos_and_ignores_strangers() {
        let known = ["status", "reference", "first_name", "emit"];
        assert_eq!(nearest("staus", known), Some("status"));
        assert_eq!(nearest("refrence", known), Some("reference"));
        assert_eq!(nearest("frist_name", known), Some("first_name"));
        assert_eq!(nearest("quantity", known), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn config_errors_name_the_field_and_the_fix() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "status": {"$ref": "#/$defs/Status"},
                "rate": {"type": ["string", "null"], "pattern": DECIMAL_PATTERN, "examples": ["20"]},
                "mode": {"enum": ["a", "b"]}
            },
            "$defs": {"Status": {"oneOf": [
                {"type": "string", "const": "draft"},
                {"type": "string", "const": "validated"}
            ]}}
        });
        let errors = |config: Value| config_errors(&schema, &config, "mappers[0].config");
        assert_eq!(
            errors(json!({"staus": "draft"})),
            ["mappers[0].config.staus: unknown field; did you mean `status`?"]
        );
        assert_eq!(
            errors(json!({"status": "posted"})),
            ["mappers[0].config.status: \"posted\" is not one of \"draft\", \"validated\""]
        );
        assert_eq!(
            errors(json!({"rate": 20})),
            ["mappers[0].config.rate: 20 is not a decimal string like \"20\" (write it in quotes)"]
        );
        assert_eq!(
            errors(json!({"rate": "2,5"})),
            [
                "mappers[0].config.rate: \"2,5\" is not a decimal string like \"20\" (write it in quotes)"
            ]
        );
        assert_eq!(
            errors(json!({"mode": "c"})),
            ["mappers[0].config.mode: \"c\" is not one of \"a\", \"b\""]
        );
        assert!(errors(json!({"status": "draft", "rate": "0.2"})).is_empty());
    }

    #[test]
    fn targets_follow_the_annotations() {
        let schema = json!({"properties": {
            "rename": {"type": "object", TARGET_KEYWORD: "values"},
            "defaults": {"type": "object", TARGET_KEYWORD: "keys"},
            "required": {"type": "array", TARGET_KEYWORD: "items"},
            "drop": {"type": "array"}
        }});
        let config = json!({
            "rename": {"ref": "refrence", "a": "address.city"},
            "defaults": {"country": "DE"},
            "required": ["email"],
            "drop": ["internal"]
        });
        let found = targets(&schema, &config);
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|t| (t.at.as_str(), t.field.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("defaults.country", "country"),
                ("rename.a", "address"),
                ("rename.ref", "refrence"),
                ("required[0]", "email"),
            ]
        );
        let fields = ["reference", "address", "country", "email"];
        assert_eq!(
            target_errors(&found, &fields, "mappers[0].config", "x `invoices`"),
            [
                "mappers[0].config.rename.ref: target `refrence` is not a field of x `invoices` (did you mean `reference`?)"
            ]
        );
    }

    #[test]
    fn fields_are_checked_unless_the_stream_declares_its_other_fields() {
        assert_eq!(
            listed_fields(&json!({"properties": {"a": {}}})),
            Some(vec!["a"])
        );
        // `{"writeOnly": true}`: extra fields are not read back (an
        // annotation, not a declaration of what else is written).
        for closed in [
            json!(false),
            json!(true),
            json!({}),
            json!({"writeOnly": true}),
        ] {
            let schema = json!({"properties": {"a": {}}, "additionalProperties": closed});
            assert_eq!(listed_fields(&schema), Some(vec!["a"]), "{schema}");
        }
        let open = json!({"properties": {"a": {}}, "additionalProperties": {"type": "string"}});
        assert_eq!(listed_fields(&open), None);
        assert_eq!(listed_fields(&json!({"type": "object"})), None);
    }
}

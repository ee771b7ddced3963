//! Checks the sandbox's exchanges against HubSpot's own OpenAPI
//! description: each request body and each response body is validated with
//! a JSON Schema validator against the operation's schema, so the sandbox
//! (and any client recorded talking to it) cannot drift from the contract.
//!
//! The files are OpenAPI 3.0: schemas are turned into JSON Schema
//! (`nullable` becomes a union with `null`; `example` is dropped) and
//! validated with the document's `components` as the root, so
//! `#/components/schemas/...` references resolve.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{Exchange, ObjectType};

/// Why a description could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not JSON, or not OpenAPI.
    #[error("{path} is not an OpenAPI JSON document: {message}")]
    Malformed {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

struct Operation {
    name: String,
    method: String,
    template: Vec<String>,
    request: Option<jsonschema::Validator>,
    /// By status (`"200"`, `"default"`); `None`: no body.
    responses: BTreeMap<String, Option<jsonschema::Validator>>,
}

/// What checking one exchange found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Validated against this operation (`POST /crm/v3/objects/0-1/search`).
    Valid(String),
    /// The description has no such operation (line items, v4 associations).
    NotDescribed,
}

/// The operations of one or more HubSpot OpenAPI files, ready to validate.
pub struct SpecValidator {
    operations: Vec<Operation>,
}

impl std::fmt::Debug for SpecValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecValidator")
            .field("operations", &self.operations.len())
            .finish()
    }
}

/// OpenAPI 3.0 schema → JSON Schema.
fn convert(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| k.as_str() != "example" && k.as_str() != "nullable")
                .map(|(k, v)| (k.clone(), convert(v)))
                .collect();
            if m.get("nullable") == Some(&Value::Bool(true)) {
                out = Map::from_iter([(
                    "anyOf".to_string(),
                    json!([Value::Object(out), {"type": "null"}]),
                )]);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
        other => other.clone(),
    }
}

impl SpecValidator {
    /// Load these OpenAPI JSON files.
    pub fn load(paths: &[&Path]) -> Result<SpecValidator, SpecError> {
        let mut operations = Vec::new();
        for path in paths {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
                path: shown.clone(),
                source,
            })?;
            let doc: Value = serde_json::from_str(&text).map_err(|e| SpecError::Malformed {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            let components = convert(&doc["components"]);
            let malformed = |message: String| SpecError::Malformed {
                path: shown.clone(),
                message,
            };
            let compile = |schema: &Value| -> Result<jsonschema::Validator, SpecError> {
                let mut root = match convert(schema) {
                    Value::Object(m) => m,
                    other => return Err(malformed(format!("schema is not an object: {other}"))),
                };
                root.insert("components".into(), components.clone());
                jsonschema::validator_for(&Value::Object(root))
                    .map_err(|e| malformed(format!("schema does not compile: {e}")))
            };
            let Some(paths) = doc["paths"].as_object() else {
                return Err(malformed("no paths".into()));
            };
            for (template, item) in paths {
                let Some(item) = item.as_object() else {
                    continue;
                };
                for (method, op) in item {
                    if !["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                        continue;
                    }
                    let request = match json_schema(&op["requestBody"]) {
                        Some(s) => Some(compile(s)?),
                        None => None,
                    };
                    let mut responses = BTreeMap::new();
                    for (status, response) in op["responses"].as_object().into_iter().flatten() {
                        let response = match response["$ref"].as_str() {
                            Some(r) => pointer(&doc, r).unwrap_or(&Value::Null),
                            None => response,
                        };
                        let validator = match json_schema(response) {
                            Some(s) => Some(compile(s)?),
                            None => None,
                        };
                        responses.insert(status.clone(), validator);
                    }
                    let mut segments: Vec<String> = template
                        .trim_matches('/')
                        .split('/')
                        .map(str::to_string)
                        .collect();
                    normalise(&mut segments);
                    operations.push(Operation {
                        name: format!("{} {template}", method.to_uppercase()),
                        method: method.to_uppercase(),
                        template: segments,
                        request,
                        responses,
                    });
                }
            }
        }
        Ok(SpecValidator { operations })
    }

    /// Validate one exchange; `Err` lists every violation.
    pub fn check(&self, ex: &Exchange) -> Result<Checked, Vec<String>> {
        let mut segments: Vec<String> = ex
            .path
            .trim_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        normalise(&mut segments);
        let best = self
            .operations
            .iter()
            .filter(|op| op.method == ex.method && op.template.len() == segments.len())
            .filter_map(|op| {
                let mut literal = 0;
                for (t, s) in op.template.iter().zip(&segments) {
                    if t.starts_with('{') {
                        continue;
                    }
                    if t != s {
                        return None;
                    }
                    literal += 1;
                }
                Some((literal, op))
            })
            .max_by_key(|(literal, _)| *literal);
        let Some((_, op)) = best else {
            return Ok(Checked::NotDescribed);
        };
        let mut errors = Vec::new();
        let mut validate = |what: &str, validator: &jsonschema::Validator, body: Option<&Value>| {
            let body = body.unwrap_or(&Value::Null);
            for e in validator.iter_errors(body) {
                errors.push(format!(
                    "{}: {what} at `{}`: {e}",
                    op.name,
                    e.instance_path()
                ));
            }
        };
        if let Some(v) = &op.request {
            validate("request", v, ex.request.as_ref());
        }
        let status = ex.status.to_string();
        match op
            .responses
            .get(&status)
            .or_else(|| op.responses.get("default"))
        {
            Some(Some(v)) => validate(&format!("response {status}"), v, ex.response.as_ref()),
            Some(None) if ex.response.is_some() => {
                errors.push(format!("{}: response {status} must have no body", op.name));
            }
            Some(None) => {}
            None => errors.push(format!("{}: status {status} is not described", op.name)),
        }
        if errors.is_empty() {
            Ok(Checked::Valid(op.name.clone()))
        } else {
            Err(errors)
        }
    }
}

/// Object type names and type ids alike as the type id (the files use
/// `contacts` and `0-3`; HubSpot accepts both).
fn normalise(segments: &mut [String]) {
    if segments.len() >= 4
        && segments[..3] == ["crm", "v3", "objects"]
        && let Some(ty) = ObjectType::parse(&segments[3])
    {
        segments[3] = ty.type_id().to_string();
    }
}

/// The JSON schema of a request body or response (`application/json` or `*/*`).
fn json_schema(body: &Value) -> Option<&Value> {
    let content = body.get("content")?.as_object()?;
    content
        .get("application/json")
        .or_else(|| content.get("*/*"))?
        .get("schema")
}

fn pointer<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

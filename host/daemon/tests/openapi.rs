//! The OpenAPI document served at `/api/openapi.json` is well formed, matches
//! the endpoint table of docs/API.md, and covers every call the console makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use openapiv3::{OpenAPI, Parameter, ReferenceOr};
use serde_json::Value;

const DOC: &str = include_str!("../src/openapi.json");
const API_MD: &str = include_str!("../../../docs/API.md");
const CONSOLE_JS: &str = include_str!("../console/app.js");

fn typed() -> OpenAPI {
    serde_json::from_str(DOC).expect("openapi.json is not a valid OpenAPI document")
}

fn raw() -> Value {
    serde_json::from_str(DOC).expect("openapi.json is not JSON")
}

/// The parameters of a list, `$ref`s to `components/parameters` resolved.
fn parameters<'a>(doc: &'a OpenAPI, params: &'a [ReferenceOr<Parameter>]) -> Vec<&'a Parameter> {
    params
        .iter()
        .map(|p| match p {
            ReferenceOr::Item(p) => p,
            ReferenceOr::Reference { reference } => {
                let name = reference
                    .strip_prefix("#/components/parameters/")
                    .unwrap_or_else(|| panic!("parameter $ref {reference} is not local"));
                let components = doc.components.as_ref().expect("no components");
                match components.parameters.get(name) {
                    Some(ReferenceOr::Item(p)) => p,
                    _ => panic!("parameter $ref {reference} does not resolve to a parameter"),
                }
            }
        })
        .collect()
}

#[test]
fn document_is_openapi_3_0() {
    let doc = typed();
    assert!(doc.openapi.starts_with("3.0"), "openapi is {}", doc.openapi);
    assert!(!doc.paths.paths.is_empty(), "no paths");
}

#[test]
fn every_ref_resolves_under_components() {
    fn walk(node: &Value, root: &Value, seen: &mut usize) {
        match node {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref") {
                    let r = r.as_str().expect("$ref is not a string");
                    assert!(
                        r.starts_with("#/components/"),
                        "$ref {r} is not under components"
                    );
                    assert!(root.pointer(&r[1..]).is_some(), "$ref {r} does not resolve");
                    *seen += 1;
                }
                map.values().for_each(|v| walk(v, root, seen));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, root, seen)),
            _ => {}
        }
    }
    let root = raw();
    let mut seen = 0;
    walk(&root, &root, &mut seen);
    assert!(seen > 0, "no $ref found: the walk is broken");
}

#[test]
fn operation_ids_are_unique() {
    let doc = typed();
    let mut ids = HashSet::new();
    for (path, method, op) in doc.operations() {
        let id = op
            .operation_id
            .as_deref()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id), "operationId {id} is used twice");
    }
}

#[test]
fn path_parameters_are_declared_and_required() {
    let doc = typed();
    for (path, item) in doc.paths.iter() {
        let item = item.as_item().unwrap_or_else(|| panic!("{path} is a $ref"));
        let names: Vec<&str> = path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap())
            .collect();
        for (method, op) in item.iter() {
            let declared = parameters(&doc, &item.parameters)
                .into_iter()
                .chain(parameters(&doc, &op.parameters));
            let required: HashSet<&str> = declared
                .filter_map(|p| match p {
                    Parameter::Path { parameter_data, .. } if parameter_data.required => {
                        Some(parameter_data.name.as_str())
                    }
                    _ => None,
                })
                .collect();
            for name in &names {
                assert!(
                    required.contains(name),
                    "{method} {path}: path parameter {{{name}}} is not declared as required"
                );
            }
        }
    }
}

#[test]
fn every_documented_endpoint_is_in_the_document() {
    let doc = typed();
    let mut found = 0;
    for line in API_MD.lines() {
        let Some(rest) = ["GET ", "POST ", "PUT ", "DELETE "]
            .iter()
            .find_map(|m| line.strip_prefix("| `").filter(|r| r.starts_with(m)))
        else {
            continue;
        };
        let endpoint = rest.split('`').next().unwrap();
        let (method, target) = endpoint.split_once(' ').unwrap();
        let path = target.split('?').next().unwrap();
        let item = doc
            .paths
            .paths
            .get(path)
            .and_then(ReferenceOr::as_item)
            .unwrap_or_else(|| panic!("{path} (from docs/API.md) is not in the document"));
        let method = method.to_lowercase();
        assert!(
            item.iter().any(|(m, _)| m == method),
            "{method} {path} (from docs/API.md) is not in the document"
        );
        found += 1;
    }
    assert!(
        found >= 20,
        "only {found} endpoints parsed from docs/API.md"
    );
}

#[test]
fn console_calls_only_documented_paths() {
    let doc = typed();
    let mut literals = Vec::new();
    for (i, quote) in CONSOLE_JS.char_indices() {
        if !matches!(quote, '"' | '\'' | '`') || !CONSOLE_JS[i + 1..].starts_with("/api/") {
            continue;
        }
        let body = &CONSOLE_JS[i + 1..];
        let end = body
            .find(quote)
            .unwrap_or_else(|| panic!("unterminated string at byte {i} of app.js"));
        literals.push(&body[..end]);
    }
    for literal in &literals {
        assert!(
            doc.paths.paths.contains_key(*literal),
            "app.js calls {literal}, which is not a path of openapi.json"
        );
    }
    assert!(
        literals.len() >= 10,
        "only {} /api/ literals found in app.js",
        literals.len()
    );
}

#[test]
fn public_endpoints_override_bearer_auth() {
    let doc = typed();
    assert_eq!(
        doc.security
            .as_deref()
            .map(|s| s.iter().any(|r| r.contains_key("bearerAuth"))),
        Some(true),
        "bearerAuth is not applied globally"
    );
    for (path, method, op) in doc.operations() {
        // /metrics names pipelines and plugins: behind the token too.
        let public =
            (!path.starts_with("/api/") && path != "/metrics") || path == "/api/openapi.json";
        let overridden = op.security.as_ref().is_some_and(Vec::is_empty);
        assert_eq!(
            public, overridden,
            "{method} {path}: `security: []` must be set exactly on the public endpoints"
        );
    }
}

/// Every route the daemon registers (as written in its source) is in the
/// document with the same path template, so the document cannot fall behind
/// the server.
#[test]
fn every_served_route_is_documented() {
    let doc = raw();
    let sources = [include_str!("../src/api.rs"), include_str!("../src/lib.rs")];
    let mut routes = Vec::new();
    for src in sources {
        for (i, _) in src.match_indices(".route(") {
            let rest = &src[i + ".route(".len()..];
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let path = &rest[..rest.find('"').unwrap()];
            routes.push(path.to_string());
        }
    }
    assert!(routes.len() >= 20, "found only {routes:?}");
    for path in &routes {
        assert!(
            doc["paths"].get(path).is_some(),
            "route {path} is served but not in openapi.json"
        );
    }
}

/// The alert endpoints carry the lowest role allowed: reading is for
/// viewers, the test button for operators, changes for admins.
#[test]
fn alert_operations_carry_their_role() {
    let doc = raw();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/alerts") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let want = match (method.as_str(), path.ends_with("/test")) {
                ("get", _) => "viewer",
                (_, true) => "operator",
                _ => "admin",
            };
            assert_eq!(op["x-nexo-role"], want, "{method} {path}");
            seen += 1;
        }
    }
    assert_eq!(seen, 8, "alert operations");
}

//! Which role each endpoint needs, read from the API's own OpenAPI
//! document (`x-nexo-role` on every operation), so the document states
//! what the check enforces and the two cannot drift apart. An endpoint the
//! document gives no role is refused to every token: a route added without
//! its role in the document fails closed.

use std::sync::LazyLock;

use axum::http::Method;
use nexo_db::service::Role;
use serde_json::Value;

/// What an operation of the document asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Served without a token (the document says `"x-nexo-role": "public"`
    /// and `security: []`): webhooks, the OAuth redirect, the document
    /// itself.
    Public,
    /// A token with at least this role.
    Role(Role),
}

/// One operation of the document: its method, its path template split at
/// `/` (`{name}` segments match any one segment) and what it needs.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    segments: Vec<String>,
    needs: Needs,
}

/// Every operation of the document.
#[derive(Debug, Clone)]
pub struct RoleTable {
    operations: Vec<Operation>,
}

/// The table of the document built into this binary.
pub static TABLE: LazyLock<RoleTable> = LazyLock::new(|| match RoleTable::parse(crate::OPENAPI) {
    Ok(table) => table,
    Err(e) => {
        // The document is part of the build and tested; should it still
        // be unreadable, every endpoint is refused rather than opened.
        tracing::error!(error = %e, "the API document gives no roles: every API request is refused");
        RoleTable {
            operations: Vec::new(),
        }
    }
});

/// The document is not one the table can be read from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("openapi.json: {0}")]
pub struct TableError(String);

impl RoleTable {
    /// Read the roles of every operation of an OpenAPI document.
    pub fn parse(document: &str) -> Result<RoleTable, TableError> {
        let doc: Value =
            serde_json::from_str(document).map_err(|e| TableError(format!("not JSON: {e}")))?;
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| TableError("no `paths`".into()))?;
        let mut operations = Vec::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let Ok(method) = method.to_uppercase().parse::<Method>() else {
                    continue;
                };
                if !matches!(
                    method,
                    Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
                ) {
                    continue;
                }
                let role = op.get("x-nexo-role").and_then(Value::as_str);
                let needs = match role {
                    Some("public") => Needs::Public,
                    Some(r) => {
                        Needs::Role(r.parse().map_err(|e| {
                            TableError(format!("{method} {path}: x-nexo-role: {e}"))
                        })?)
                    }
                    None => {
                        return Err(TableError(format!(
                            "{method} {path} has no x-nexo-role: give it viewer, operator, admin or public"
                        )));
                    }
                };
                operations.push(Operation {
                    method,
                    segments: path.split('/').map(str::to_string).collect(),
                    needs,
                });
            }
        }
        Ok(RoleTable { operations })
    }

    /// What `method path` needs; none when the document has no such
    /// operation. A literal segment wins over a `{parameter}` one.
    pub fn needs(&self, method: &Method, path: &str) -> Option<Needs> {
        let parts: Vec<&str> = path.split('/').collect();
        self.operations
            .iter()
            .filter(|op| op.method == *method && op.segments.len() == parts.len())
            .filter_map(|op| {
                let mut literal = 0;
                for (seg, part) in op.segments.iter().zip(&parts) {
                    if seg.starts_with('{') && seg.ends_with('}') {
                        if part.is_empty() {
                            return None;
                        }
                    } else if seg == part {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, op.needs))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, needs)| needs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_matched_by_method_and_template() {
        let t = RoleTable::parse(
            r#"{"paths": {
                "/api/runs": {"get": {"x-nexo-role": "viewer"}},
                "/api/runs/{id}": {"get": {"x-nexo-role": "viewer"}},
                "/api/runs/{id}/stop": {"post": {"x-nexo-role": "operator"}},
                "/api/pipelines/{name}": {"put": {"x-nexo-role": "admin"}, "parameters": []},
                "/hooks/{pipeline}": {"post": {"x-nexo-role": "public"}}
            }}"#,
        )
        .unwrap();
        let role = |m: Method, p: &str| t.needs(&m, p);
        assert_eq!(
            role(Method::GET, "/api/runs"),
            Some(Needs::Role(Role::Viewer))
        );
        assert_eq!(
            role(Method::POST, "/api/runs/7/stop"),
            Some(Needs::Role(Role::Operator))
        );
        assert_eq!(
            role(Method::PUT, "/api/pipelines/p1"),
            Some(Needs::Role(Role::Admin))
        );
        assert_eq!(role(Method::POST, "/hooks/p1"), Some(Needs::Public));
        // Not in the document: no role, so refused.
        assert_eq!(role(Method::DELETE, "/api/runs/7"), None);
        assert_eq!(role(Method::GET, "/api/runs/7/stop"), None);
        assert_eq!(role(Method::GET, "/api/runs/"), None, "an empty id");
        assert_eq!(role(Method::GET, "/api/tokens"), None);
    }

    #[test]
    fn an_operation_without_a_role_or_with_a_misspelt_one_is_refused_by_name() {
        let e = RoleTable::parse(r#"{"paths": {"/api/x": {"get": {}}}}"#).unwrap_err();
        assert!(
            e.to_string().contains("GET /api/x has no x-nexo-role"),
            "{e}"
        );
        let e = RoleTable::parse(r#"{"paths": {"/api/x": {"post": {"x-nexo-role": "admn"}}}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("`admn` is not a role"), "{e}");
    }

    #[test]
    fn the_built_in_document_gives_every_operation_a_role() {
        RoleTable::parse(crate::OPENAPI).unwrap();
    }
}

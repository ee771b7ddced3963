//! Template strings: `"{first_name} {last_name?}"` → text from the record.

use serde_json::Value;

use crate::path;

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text.
    Text(String),
    /// A field; `optional` when written `{path?}`.
    Field { path: String, optional: bool },
}

/// Split a template into pieces, refusing unbalanced braces.
pub(crate) fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("`{template}`: `{{` is never closed")),
                    }
                }
                let (path, optional) = match name.strip_suffix('?') {
                    Some(p) => (p.trim().to_string(), true),
                    None => (name.trim().to_string(), false),
                };
                path::check(&path).map_err(|e| format!("`{template}`: {e}"))?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Field { path, optional });
            }
            '}' => return Err(format!("`{template}`: unmatched `}}` (write `}}}}`)")),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Render `pieces` from `record`; the error names the missing field.
pub(crate) fn render(pieces: &[Piece], record: &Value) -> Result<String, (String, String)> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Field { path, optional } => match path::get(record, path) {
                None | Some(Value::Null) if *optional => {}
                None | Some(Value::Null) => {
                    return Err((
                        path.clone(),
                        "missing (write `{path?}` to allow that)".into(),
                    ));
                }
                Some(Value::String(s)) => out.push_str(s),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                Some(_) => {
                    return Err((path.clone(), "is an object or a list, not text".into()));
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_optionals_and_braces() {
        let r = json!({"a": "Ada", "n": 3, "o": {"x": true}});
        let t = parse("{a} #{n} {o.x} {missing?}{{ok}}").unwrap();
        assert_eq!(render(&t, &r).unwrap(), "Ada #3 true {ok}");
        let t = parse("{missing}").unwrap();
        assert_eq!(render(&t, &r).unwrap_err().0, "missing");
        assert!(parse("{a").is_err());
        assert!(parse("a}").is_err());
        assert!(parse("{}").is_err());
    }
}

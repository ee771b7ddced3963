//! Dotted paths into a JSON payload (`address.city`, `lines.0.sku`): the one
//! way every rule names a field. Segments are object keys; a numeric segment
//! also indexes an existing array. Keys that contain a dot cannot be named.

use serde_json::{Map, Value};

/// The value at `path`, if any.
pub fn get<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Whether `path` holds a value other than `null`.
pub fn present(root: &Value, path: &str) -> bool {
    get(root, path).is_some_and(|v| !v.is_null())
}

/// Remove and return the value at `path`.
pub fn remove(root: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (get_mut(root, parent)?, last),
        None => (root, path),
    };
    match parent {
        Value::Object(m) => m.remove(last),
        _ => None,
    }
}

fn get_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(root, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Set `path` to `value`, creating the objects on the way. Fails (naming
/// the segment) when a segment on the way holds something other than an
/// object, or indexes past an array's end.
pub fn set(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut segments = path.split('.').peekable();
    let mut here = root;
    let mut walked = String::new();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(seg);
        here = match here {
            Value::Object(m) => {
                if last {
                    m.insert(seg.to_string(), value);
                    return Ok(());
                }
                let next = m
                    .entry(seg.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if next.is_null() {
                    *next = Value::Object(Map::new());
                }
                next
            }
            Value::Array(a) => {
                let slot = seg.parse::<usize>().ok().and_then(|i| a.get_mut(i));
                let Some(slot) = slot else {
                    return Err(format!("`{walked}` is not an element of the array"));
                };
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => {
                return Err(format!(
                    "cannot create `{walked}`: its parent is not an object"
                ));
            }
        };
    }
    Ok(())
}

/// A path is one or more non-empty segments.
pub fn check(path: &str) -> Result<(), String> {
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "`{path}` is not a field path (dot-separated names, e.g. `address.city`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_set_remove_nested() {
        let mut v = json!({"a": {"b": 1}, "list": [{"x": 1}], "s": "t", "n": null});
        assert_eq!(get(&v, "a.b"), Some(&json!(1)));
        assert_eq!(get(&v, "list.0.x"), Some(&json!(1)));
        assert_eq!(get(&v, "a.c"), None);
        assert!(!present(&v, "n"));
        set(&mut v, "c.d.e", json!("deep")).unwrap();
        assert_eq!(v["c"]["d"]["e"], "deep");
        set(&mut v, "n.x", json!(2)).unwrap();
        assert_eq!(v["n"], json!({"x": 2}));
        set(&mut v, "list.0.y", json!(2)).unwrap();
        assert_eq!(v["list"][0], json!({"x": 1, "y": 2}));
        assert!(set(&mut v, "s.x", json!(1)).unwrap_err().contains("`s.x`"));
        assert!(set(&mut v, "list.3", json!(1)).is_err());
        assert_eq!(remove(&mut v, "a.b"), Some(json!(1)));
        assert_eq!(v["a"], json!({}));
        assert_eq!(remove(&mut v, "nope.x"), None);
        assert!(check("a..b").is_err() && check("").is_err() && check("a.b").is_ok());
    }
}

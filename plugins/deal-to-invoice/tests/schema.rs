//! The shipped `config.schema.json` (signed into the bundle, checked at
//! `pipeline apply`) is exactly the schema of the config type the mapper
//! parses, so the two never drift. After changing `Config`, regenerate it
//! with `NEXO_WRITE_SCHEMA=1 cargo test -p deal-to-invoice --test schema`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use deal_to_invoice::Config;
use serde_json::Value;

#[test]
fn the_shipped_config_schema_is_the_config_types_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
    let current: Value = serde_json::from_str(&nexo_sdk::schema_of::<Config>()).unwrap();
    if std::env::var_os("NEXO_WRITE_SCHEMA").is_some() {
        let text = serde_json::to_string_pretty(&current).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    let shipped: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    assert_eq!(
        shipped,
        current,
        "{} is not the schema of `Config`; regenerate it with `NEXO_WRITE_SCHEMA=1 cargo test -p deal-to-invoice --test schema`",
        path.display()
    );
}

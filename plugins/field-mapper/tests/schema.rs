//! The shipped `config.schema.json` (signed into the bundle, checked at
//! `pipeline apply`) is exactly the schema of the config type the mapper
//! parses, so the two never drift. After changing `Config`, regenerate it
//! with `NEXO_WRITE_SCHEMA=1 cargo test -p field-mapper --test schema`.
#![allow(clippy::panic)]

use field_mapper::Config;

#[test]
fn the_shipped_config_schema_is_the_config_types_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
    nexo_sdk::check_shipped_schema::<Config>(&path, "cargo test -p field-mapper --test schema")
        .unwrap_or_else(|e| panic!("{e}"));
}

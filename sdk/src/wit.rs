//! Generated bindings for the `nexo:connector` worlds. Hidden: plugins use the
//! SDK's own types, so a binding generator upgrade never breaks them.
//!
//! Generated from `wit/<version>/`, the folder of the contract version this
//! SDK targets ([`crate::WIT_VERSION`]; a test in `tests/tests/contract_versions.rs`
//! checks the two agree).
#![allow(missing_docs, clippy::all, unsafe_code)]

/// Bindings of the `connector` world.
pub mod connector {
    wit_bindgen::generate!({
        world: "connector",
        path: "wit/1.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "::nexo_sdk::wit::connector",
    });
}

/// Bindings of the `mapper` world.
pub mod mapper {
    wit_bindgen::generate!({
        world: "mapper",
        path: "wit/1.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_mapper_world",
        default_bindings_module: "::nexo_sdk::wit::mapper",
    });
}

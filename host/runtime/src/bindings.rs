//! Every `bindgen!` of the host, in one place. The generated `Host` traits
//! are implemented in `host_impl.rs` as thin adapters over the sandbox
//! capabilities.

/// Bindings of the `connector` world.
pub mod connector {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// Bindings of the `mapper` world; shares `types` and `log` with the
/// connector world so one implementation serves both.
pub mod mapper {
    wasmtime::component::bindgen!({
        world: "mapper",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "nexo:connector/types": super::connector::nexo::connector::types,
            "nexo:connector/log": super::connector::nexo::connector::log,
        },
    });
}

pub use connector::nexo::connector::{
    http as wit_http, kv as wit_kv, log as wit_log, types as wit_types,
};

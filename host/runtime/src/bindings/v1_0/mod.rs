//! `nexo:connector@1.0.0` (`wit/1.0.0/`): its generated bindings, the
//! linkers and pre-instances of its two worlds, and the one function that
//! calls its exports. The generated `Host` traits are implemented in
//! `host.rs` as thin adapters over the sandbox capabilities; every value
//! crosses into the engine's own types in [`convert`].
//!
//! Export parameters are generated borrowing (`RecordParam<'a>` holds
//! `&str`s), so a `write` or `map` batch goes to the guest straight from the
//! engine's records, without copying a string.

pub mod convert;
mod host;

use wasmtime::component::{Component, HasSelf, Linker};

use crate::error::GuestError;
use crate::inspect::WorldKind;
use crate::plugin::call::{Op, Reply};
use crate::state::PluginState;

/// The version these bindings were generated from (the folder in the
/// `path`s below; `tests/tests/contract_versions.rs` checks they agree); an
/// entry of [`super::SERVED`].
pub const VERSION: &str = "1.0.0";

/// Bindings of the `connector` world.
pub mod connector {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../../wit/1.0.0",
        imports: { default: async | trappable },
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// Bindings of the `mapper` world; shares `types` and `log` with the
/// connector world so one implementation serves both.
pub mod mapper {
    wasmtime::component::bindgen!({
        world: "mapper",
        path: "../../wit/1.0.0",
        imports: { default: async | trappable },
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
        with: {
            "nexo:connector/types": super::connector::nexo::connector::types,
            "nexo:connector/log": super::connector::nexo::connector::log,
        },
    });
}

pub use connector::nexo::connector::{
    http as wit_http, kv as wit_kv, log as wit_log, secrets as wit_secrets, types as wit_types,
};

super::world_calls!(
    write: convert::record_params,
    map_in: convert::record_params,
    reply: MapBatch,
    map_out: convert::records
);

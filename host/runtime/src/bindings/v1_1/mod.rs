//! `nexo:connector@1.1.0` (`wit/1.1.0/`): its generated bindings, the
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
pub const VERSION: &str = "1.1.0";

/// Bindings of the `connector` world.
pub mod connector {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../../wit/1.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// Bindings of the `mapper` world; shares `types` and `log` with the
/// connector world so one implementation serves both. Owning: its batch
/// goes to the guest as owned records (`wasmtime`'s bindgen cannot borrow a
/// record that a returned variant also carries).
pub mod mapper {
    wasmtime::component::bindgen!({
        world: "mapper",
        path: "../../wit/1.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "nexo:connector/types": super::connector::nexo::connector::types,
            "nexo:connector/log": super::connector::nexo::connector::log,
        },
    });
}

pub use connector::nexo::connector::{
    http as wit_http, kv as wit_kv, log as wit_log, secrets as wit_secrets, types as wit_types,
};

/// The linker of `world` at this version: WASI 0.2 (which grants nothing by
/// default) and the world's `nexo:connector` imports.
pub(crate) fn linker(
    engine: &wasmtime::Engine,
    world: WorldKind,
) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    match world {
        WorldKind::Connector => {
            connector::Connector::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
        }
        WorldKind::Mapper => {
            mapper::Mapper::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
        }
    }
    Ok(linker)
}

/// A component linked and type-checked against one world, ready to
/// instantiate.
pub(crate) enum Pre {
    Connector(connector::ConnectorPre<PluginState>),
    Mapper(mapper::MapperPre<PluginState>),
}

impl Pre {
    /// Link `component` as a `world` with `linker` (made by [`linker`]).
    pub(crate) fn new(
        linker: &Linker<PluginState>,
        component: &Component,
        world: WorldKind,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match world {
            WorldKind::Connector => Pre::Connector(connector::ConnectorPre::new(pre)?),
            WorldKind::Mapper => Pre::Mapper(mapper::MapperPre::new(pre)?),
        })
    }

    /// An instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Connector(pre) => Instance::Connector(pre.instantiate_async(&mut *store).await?),
            Pre::Mapper(pre) => Instance::Mapper(pre.instantiate_async(&mut *store).await?),
        })
    }
}

/// An instance of a component in one store, ready for calls.
pub(crate) enum Instance {
    Connector(connector::Connector),
    Mapper(mapper::Mapper),
}

impl Instance {
    /// Make the call `op`, its reply in the engine's types. A trap or limit
    /// hit is the `Err`; an error the guest returned is a value inside the
    /// reply.
    pub(crate) async fn call(
        &self,
        store: &mut wasmtime::Store<PluginState>,
        op: Op<'_>,
    ) -> wasmtime::Result<Reply> {
        let guest = |e: wit_types::Error| GuestError::from(e);
        match self {
            Instance::Connector(bindings) => {
                let c = bindings.nexo_connector_operations();
                Ok(match op {
                    Op::Instantiate => Reply::Instantiated,
                    Op::Spec => Reply::Spec(c.call_spec(&mut *store).await?.into()),
                    Op::Check(config) => {
                        Reply::Check(c.call_check(&mut *store, config).await?.map_err(guest))
                    }
                    Op::Discover(config) => Reply::Discover(
                        c.call_discover(&mut *store, config)
                            .await?
                            .map(convert::streams)
                            .map_err(guest),
                    ),
                    Op::Read {
                        config,
                        stream,
                        state,
                    } => Reply::Read(
                        c.call_read(&mut *store, config, stream, state)
                            .await?
                            .map(Into::into)
                            .map_err(guest),
                    ),
                    Op::Write {
                        config,
                        stream,
                        batch,
                    } => {
                        let batch = convert::write_record_params(batch);
                        Reply::Write(
                            c.call_write(&mut *store, config, stream, &batch)
                                .await?
                                .map(convert::write_results)
                                .map_err(guest),
                        )
                    }
                    Op::Map { .. } => return Err(wasmtime::Error::msg("a connector has no map")),
                })
            }
            Instance::Mapper(bindings) => {
                let m = bindings.nexo_connector_mapping();
                match op {
                    Op::Instantiate => Ok(Reply::Instantiated),
                    Op::Map { config, batch } => {
                        let batch = convert::owned_records(batch);
                        Ok(Reply::Map(
                            m.call_map(&mut *store, config, &batch)
                                .await?
                                .map(convert::map_outcomes)
                                .map_err(guest),
                        ))
                    }
                    _ => Err(wasmtime::Error::msg("a mapper only has map")),
                }
            }
        }
    }
}

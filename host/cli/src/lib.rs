//! # nexo: the Nexo connector host
//!
//! Runs CRM, ERP and accounting connectors, and third-party mapping logic, as
//! sandboxed WebAssembly components built against the `nexo:connector` WIT
//! package. This crate is the `nexo` command line ([`cli`]); the host itself
//! is the crates it re-exports here under one roof — the runtime and its
//! capabilities (`nexo-runtime`), bundles (`nexo-bundle`), the database
//! (`nexo-db`), the registry and connections (`nexo-registry`), the sync
//! engine (`nexo-sync`) and the daemon (`nexo-daemon`) — so that tests and
//! embeddings have one path to each.
//!
//! **Owns** parsing arguments and printing results. **Must not touch**
//! anything the crates below decide: every command is a call into them. The
//! vendor sandboxes and the demo are `nexo-sandbox`, outside this crate and
//! its binary.

/// Bundles: the file format (`nexo-bundle`) and packing/vetting a bundle
/// against its component (`nexo-runtime`).
pub mod bundle {
    pub use nexo_bundle::*;
    pub use nexo_runtime::vet::{VetError, confirm_spec, pack, spec_of};
}
pub use nexo_daemon as serve;
pub use nexo_db as store;
/// The conformance kit behind `nexo plugin test`.
pub use nexo_kit as kit;
pub use nexo_registry::{self as registry, connections};
pub use nexo_runtime::{
    bindings, cache, error, inspect, limits, metrics, plugin, runtime, safe_text, sandbox, state,
};
pub use nexo_sync as sync;

pub mod cli;

pub use nexo_runtime::{
    CallRef, ConnectorPlugin, Grants, GuestError, InstanceCaps, Limit, Limits, LoadError,
    LoadedPlugin, MapperPlugin, Outcome, PluginError, PluginRef, Runtime, RuntimeConfig,
    RuntimeError, Sandbox,
};

//! # nexo: the Nexo connector host
//!
//! Runs CRM, ERP and accounting connectors, and third-party mapping logic, as
//! sandboxed WebAssembly components built against the `nexo:connector` WIT
//! package. This crate holds the sync engine, the daemon and the `nexo`
//! command line; the runtime, bundles, the database and the registry are
//! crates of their own, re-exported here under their old paths. The vendor
//! sandboxes and the demo are `nexo-sandbox`, outside this crate and its
//! binary.

/// Bundles: the file format (`nexo-bundle`) and packing/vetting a bundle
/// against its component (`nexo-runtime`).
pub mod bundle {
    pub use nexo_bundle::*;
    pub use nexo_runtime::vet::{VetError, confirm_spec, pack, spec_of};
}
pub use nexo_registry::{self as registry, connections};
pub use nexo_runtime::{
    bindings, cache, error, inspect, limits, metrics, plugin, runtime, safe_text, sandbox, state,
};
/// The database (`nexo-db`) and the sync engine's SQLite statements.
pub mod store {
    pub use nexo_db::*;
    pub mod sync;
}
pub mod cli;
pub mod serve;
pub mod sync;

pub use nexo_runtime::{
    CallRef, ConnectorPlugin, Grants, GuestError, InstanceCaps, Limit, Limits, LoadError,
    LoadedPlugin, MapperPlugin, Outcome, PluginError, PluginRef, Runtime, RuntimeConfig,
    RuntimeError, Sandbox,
};

impl nexo_runtime::metrics::OutcomeCounts for sync::store::Counts {
    fn by_outcome(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("created", self.created),
            ("matched", self.matched),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("deleted", self.deleted),
            ("failed", self.failed),
            ("quarantined", self.quarantined),
            ("conflict", self.conflicts),
        ]
    }
}

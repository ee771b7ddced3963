//! # nexo: the Nexo connector host
//!
//! Runs CRM, ERP and accounting connectors, and third-party mapping logic, as
//! sandboxed WebAssembly components built against the `nexo:connector` WIT
//! package. This crate holds the runtime (engine, compile cache, limits),
//! the capabilities plugins reach through their imports (HTTP, secrets,
//! key-value, log) and the `nexo` command line.

pub mod bindings;
pub mod bundle;
pub mod cache;
pub mod connections;
pub mod error;
mod host_impl;
pub mod inspect;
pub mod limits;
pub mod metrics;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod safe_text;
pub mod sandbox;
pub mod serve;
mod slots;
pub mod state;
pub mod store;
pub mod sync;
pub mod vendors;

pub use error::{CallRef, GuestError, LoadError, PluginError, PluginRef, RuntimeError};
pub use limits::{InstanceCaps, Limit, Limits};
pub use plugin::{ConnectorPlugin, Grants, MapperPlugin, Outcome, Sandbox};
pub use runtime::{LoadedPlugin, Runtime, RuntimeConfig};

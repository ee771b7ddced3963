//! # nexo-runtime: plugins run in a sandbox
//!
//! Loads `nexo:connector` components (one long-lived wasmtime engine, the
//! pooling allocator, an on-disk compile cache), opens each call in a fresh
//! store with the plugin's limits, and serves the plugin's imports through
//! the host's capabilities — outbound HTTP behind the declared ∩ granted
//! policy, secrets that never reach the guest, a key-value namespace with a
//! quota, the log — each a plain-Rust module under [`sandbox`], checked at
//! the import boundary, with denials returned as values.
//!
//! **Owns** the engine, limits, the capabilities and the generated bindings:
//! one module per served contract version under [`bindings`], converting at
//! the edge into the runtime's own [`plugin::types`], so no generated type
//! reaches the engine. **Must not touch** the database (key-value storage
//! arrives as a [`sandbox::kv::KvBackend`]), pipelines or the sync engine: it
//! runs one call of one plugin and reports what happened.

pub mod bindings;
pub mod cache;
pub mod error;
pub mod inspect;
pub mod limits;
pub mod metrics;
pub mod plugin;
pub mod runtime;
pub mod safe_text;
pub mod sandbox;
mod slots;
pub mod state;
pub mod vet;

pub use error::{CallRef, GuestError, LoadError, PluginError, PluginRef, RuntimeError};
pub use limits::{InstanceCaps, Limit, Limits};
pub use plugin::{ConnectorPlugin, Grants, MapperPlugin, Outcome, Sandbox};
pub use runtime::{LoadedPlugin, Runtime, RuntimeConfig};

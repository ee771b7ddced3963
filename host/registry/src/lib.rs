//! # nexo-registry: installed plugins and the connections that use them
//!
//! Installs, upgrades, rolls back and removes signed plugin bundles (each
//! vetted against its component's own `spec()`), records what the admin
//! granted each version, and turns a named connection — a plugin, its
//! config, its sealed secrets and its grants — into a plugin opened with
//! exactly that authority.
//!
//! **Owns** the registry and the connections as the admin manages them.
//! **Must not touch** pipelines or runs (those are `nexo-sync`'s; the only
//! thing asked about them is which ones use a plugin or connection, through
//! the database), the daemon or the command line.

pub mod connections;
mod error;
mod grants;
pub mod oauth;
mod plugins;

pub use error::RegistryError;
pub use grants::{Capability, capabilities_of, grant_all};
pub use plugins::*;

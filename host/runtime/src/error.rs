//! Errors at the host's public boundary: what failed, on which plugin and
//! call, and of which class, so the caller can decide to fix, retry,
//! dead-letter or report.

use std::fmt;
use std::path::PathBuf;

use crate::limits::Limit;

pub use nexo_bundle::PluginRef;

/// A call, as shown in messages: `read(deals)`, `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRef(pub String);

impl fmt::Display for CallRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error a plugin returned as a value (the WIT `error` variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// Config must be fixed by a person.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Credentials missing or wrong.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Refused by the system or the host.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Retry later.
    #[error("rate limited: retry after {retry_after_ms} ms")]
    RateLimited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
    },
    /// Passing failure.
    #[error("transient failure: {0}")]
    Transient(String),
    /// This record only.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Bug or unexpected answer.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GuestError {
    /// The class name, as shown in queues and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            GuestError::InvalidConfig(_) => "invalid-config",
            GuestError::Auth(_) => "auth",
            GuestError::AccessDenied(_) => "access-denied",
            GuestError::RateLimited { .. } => "rate-limited",
            GuestError::Transient(_) => "transient",
            GuestError::Rejected(_) => "rejected",
            GuestError::Internal(_) => "internal",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GuestError::RateLimited { .. } | GuestError::Transient(_)
        )
    }
}

/// A failed plugin call. The host stays up and the plugin can be called again.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin hit one of its limits and was stopped.
    #[error("plugin {plugin} exceeded its {limit} in {call}")]
    LimitExceeded {
        /// Plugin.
        plugin: PluginRef,
        /// Which limit.
        limit: Limit,
        /// During which call.
        call: CallRef,
    },
    /// The plugin panicked.
    #[error("plugin {plugin} panicked in {call}: {message}")]
    Panic {
        /// Plugin.
        plugin: PluginRef,
        /// During which call.
        call: CallRef,
        /// The panic message the plugin printed.
        message: String,
    },
    /// The plugin trapped for another reason (a bug in the plugin).
    #[error("plugin {plugin} crashed in {call}: {reason}")]
    Trap {
        /// Plugin.
        plugin: PluginRef,
        /// During which call.
        call: CallRef,
        /// wasmtime's description of the trap.
        reason: String,
    },
    /// The plugin returned an error value.
    #[error("plugin {plugin} failed in {call}: {error}")]
    Guest {
        /// Plugin.
        plugin: PluginRef,
        /// During which call.
        call: CallRef,
        /// The classified error.
        error: GuestError,
    },
    /// The plugin returned something the host cannot accept (bad JSON,
    /// wrong number of write results).
    #[error("plugin {plugin} returned invalid output from {call}: {reason}")]
    InvalidOutput {
        /// Plugin.
        plugin: PluginRef,
        /// During which call.
        call: CallRef,
        /// What is wrong.
        reason: String,
    },
    /// No instance slot came free within the call's time limit.
    #[error("plugin {plugin} could not start {call}: {reason}")]
    Busy {
        /// The plugin.
        plugin: PluginRef,
        /// The call.
        call: CallRef,
        /// Whose slots were busy.
        reason: String,
    },
    /// The host could not set up the call (instantiation failed).
    #[error("could not start plugin {plugin} for {call}: {reason}")]
    Instantiate {
        /// Plugin.
        plugin: PluginRef,
        /// During which call.
        call: CallRef,
        /// Why.
        reason: String,
    },
}

impl PluginError {
    /// The limit hit, if that is what happened.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            PluginError::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }
    /// The plugin's own error value, if that is what happened.
    pub fn guest_error(&self) -> Option<&GuestError> {
        match self {
            PluginError::Guest { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Loading a component failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// IO error.
        source: std::io::Error,
    },
    /// Not a valid WebAssembly component.
    #[error(
        "{what} is not a valid WebAssembly component: {reason} (build it with `cargo build --target wasm32-wasip2` and nexo-sdk)"
    )]
    Invalid {
        /// What was loaded (path or id).
        what: String,
        /// Why.
        reason: String,
    },
    /// The component is shaped to hold more than one plugin may: more
    /// memories, tables or core instances than the runtime's caps.
    #[error(
        "{what} is refused: {reason} (a plugin instance shares one memory budget; build it as one component with one memory)"
    )]
    TooLarge {
        /// The plugin or file.
        what: String,
        /// What is over which cap.
        reason: String,
    },
    /// A component, but not a Nexo plugin world, or importing what its world
    /// may not.
    #[error("{what} is not a Nexo plugin: {reason}")]
    NotAPlugin {
        /// What was loaded.
        what: String,
        /// Why.
        reason: String,
    },
    /// Built against a `nexo:connector` version this host does not serve.
    #[error(
        "{what} was built against nexo:connector {found}, but this host serves nexo:connector {served}; ask the vendor for a build against one of those, or upgrade nexo if {found} is newer"
    )]
    UnsupportedContract {
        /// What was loaded.
        what: String,
        /// The version it imports or exports.
        found: String,
        /// What this host serves ([`crate::bindings::served_text`]).
        served: String,
    },
    /// The compile cache could not be used.
    #[error("compile cache at {path}: {reason}")]
    Cache {
        /// Cache directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Setting up the runtime failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(pub String);

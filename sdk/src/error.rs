//! The one error type of a plugin, classified the way the host acts on it.

use std::fmt;

/// A plugin failure. The variant tells the host what to do: a person fixes
/// `InvalidConfig`/`Auth`/`AccessDenied`, the host retries `RateLimited` and
/// `Transient`, dead-letters `Rejected` and reports `Internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong; say which field and how to fix it.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Credentials are missing, wrong or expired.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The system or the host refused this operation.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The system asked to slow down; retry after this many milliseconds.
    #[error("rate limited: retry after {0} ms")]
    RateLimited(u64),
    /// A passing failure (timeout, 5xx); worth retrying.
    #[error("transient failure: {0}")]
    Transient(String),
    /// This record only was refused, e.g. by the system's validation.
    #[error("record rejected: {0}")]
    Rejected(String),
    /// A bug in the plugin or an unexpected answer from the system.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An `InvalidConfig` error.
    pub fn config(msg: impl fmt::Display) -> Self {
        Error::InvalidConfig(msg.to_string())
    }
    /// An `Internal` error.
    pub fn internal(msg: impl fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
    /// The `InvalidConfig` error for a stream the connector does not have,
    /// naming the ones it has.
    pub fn unknown_stream(stream: &str, known: &[&str]) -> Self {
        let known: Vec<String> = known.iter().map(|s| format!("`{s}`")).collect();
        Error::config(format!(
            "unknown stream `{stream}`; the streams are {}",
            known.join(", ")
        ))
    }
    /// A `Rejected` error.
    pub fn rejected(msg: impl fmt::Display) -> Self {
        Error::Rejected(msg.to_string())
    }
    /// Whether the host should retry the operation later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited(_) | Error::Transient(_))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("JSON: {e}"))
    }
}

/// Conversions to and from each world's generated `error` type.
macro_rules! wit_error_conversions {
    ($module:path) => {
        const _: () = {
            use $module as types;
            impl From<Error> for types::Error {
                fn from(e: Error) -> Self {
                    match e {
                        Error::InvalidConfig(m) => types::Error::InvalidConfig(m),
                        Error::Auth(m) => types::Error::Auth(m),
                        Error::AccessDenied(m) => types::Error::AccessDenied(m),
                        Error::RateLimited(ms) => types::Error::RateLimited(ms),
                        Error::Transient(m) => types::Error::Transient(m),
                        Error::Rejected(m) => types::Error::Rejected(m),
                        Error::Internal(m) => types::Error::Internal(m),
                    }
                }
            }
            impl From<types::Error> for Error {
                fn from(e: types::Error) -> Self {
                    match e {
                        types::Error::InvalidConfig(m) => Error::InvalidConfig(m),
                        types::Error::Auth(m) => Error::Auth(m),
                        types::Error::AccessDenied(m) => Error::AccessDenied(m),
                        types::Error::RateLimited(ms) => Error::RateLimited(ms),
                        types::Error::Transient(m) => Error::Transient(m),
                        types::Error::Rejected(m) => Error::Rejected(m),
                        types::Error::Internal(m) => Error::Internal(m),
                    }
                }
            }
        };
    };
}

wit_error_conversions!(crate::wit::connector::nexo::connector::types);
wit_error_conversions!(crate::wit::mapper::nexo::connector::types);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_stream_is_a_config_error_naming_the_streams_there_are() {
        let e = Error::unknown_stream("deals", &["contacts", "items"]);
        assert_eq!(
            e,
            Error::InvalidConfig(
                "unknown stream `deals`; the streams are `contacts`, `items`".into()
            )
        );
    }
}

//! Secrets whose value the host keeps fresh: an OAuth 2.0 access token,
//! refreshed ahead of its expiry and once when the system answers 401.
//!
//! The plugin writes `{{secret:NAME}}` as for any secret; the host asks the
//! connection's [`Credential`] for the value at send time, for origins the
//! secret is bound to, and never hands it to the plugin. Who refreshes, how,
//! and where the tokens live (sealed in the database, one refresh at a time
//! per connection) is the registry's business: this module is the seam.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::secrets::SecretValue;

/// A boxed future, as the object-safe [`Credential`] returns.
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Token, CredentialError>> + Send + 'a>>;

/// One value of a refreshed secret, with the generation it belongs to: a
/// 401 answered to generation `n` needs a refresh only if the value is
/// still generation `n` (someone else may have refreshed meanwhile).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The value, never printed.
    pub value: SecretValue,
    /// Increases with every new value.
    pub generation: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(generation {})", self.generation)
    }
}

/// Why a credential has no usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// An admin must authorize the connection (again): it never was, or
    /// the system refused the refresh token for good (revoked, expired).
    #[error("{0}")]
    NeedsAuthorization(String),
    /// The token endpoint could not be reached or failed; retrying later
    /// may work.
    #[error("{0}")]
    Unavailable(String),
}

/// A secret the host keeps fresh for one connection.
pub trait Credential: Send + Sync + fmt::Debug {
    /// The value to send now, refreshed first when it is about to expire.
    fn current(&self) -> CredentialFuture<'_>;
    /// The system refused `token` (HTTP 401): a new value, refreshed unless
    /// another request already did since `token` was handed out.
    fn rejected(&self, token: Token) -> CredentialFuture<'_>;
}

//! OAuth 2.0 for connections whose plugin declares a credential
//! (`[capabilities.oauth2]`): the host runs the flows, keeps the client
//! secret, refresh token and access token sealed, refreshes ahead of expiry
//! and once on a 401 — one refresh at a time per connection, across runs
//! and processes — and, when the system refuses the refresh token for good,
//! marks the connection as needing re-authorization and pauses its
//! pipelines. The plugin writes `{{secret:NAME}}` and never sees a value.

mod credential;
mod flow;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nexo_bundle::oauth::Flow;
use nexo_db::Database;
use nexo_db::sealed::Sealer;
use nexo_runtime::sandbox::secrets::SecretValue;

pub use credential::ConnectionCredential;
pub use flow::{Authorization, CallbackParams, PendingAuthorization, Saved, Tenant};
pub(crate) use token::TokenClient;

/// The override map the host's own OAuth requests follow.
pub mod token_overrides {
    pub use super::token::Overrides;
}

/// An OAuth operation that failed; nothing was saved.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The plugin declares no OAuth credential.
    #[error(
        "connection `{connection}` uses {plugin}, which declares no OAuth 2.0 credential: give its secrets with `nexo connection update {connection} --secret NAME=SOURCE`"
    )]
    NotOAuth {
        /// Connection.
        connection: String,
        /// Plugin.
        plugin: String,
    },
    /// The plugin does not offer this flow.
    #[error("{plugin} does not offer the {flow} flow (it offers: {offered})")]
    FlowNotOffered {
        /// Plugin.
        plugin: String,
        /// The flow asked for.
        flow: Flow,
        /// What it offers.
        offered: String,
    },
    /// No client id given and none stored.
    #[error(
        "connection `{0}` has no OAuth client yet: give the client id and secret you registered at the vendor (--client-id ID --client-secret SOURCE)"
    )]
    NoClient(String),
    /// The redirect came back with another `state` (a forged or stale
    /// redirect).
    #[error(
        "the authorization redirect carried a state that does not match this authorization (a stale or forged redirect); start again with `nexo connection authorize`"
    )]
    StateMismatch,
    /// The admin or the system refused the authorization.
    #[error("the authorization was refused: {0}")]
    Denied(String),
    /// The redirect had neither a code nor an error.
    #[error("the authorization redirect has no `code`: {0}")]
    NoCode(String),
    /// The token endpoint refused.
    #[error("the identity server at {endpoint} refused the request: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The endpoint (its origin and path).
        endpoint: String,
        /// The OAuth error code (`invalid_grant`, ...), or the HTTP status.
        error: String,
        /// Its description, if it gave one.
        description: Option<String>,
    },
    /// The endpoint could not be reached, or answered something else.
    #[error("{0}")]
    Unavailable(String),
    /// The endpoint answered something that is not a token response.
    #[error("the token endpoint {endpoint} answered an unusable response: {reason}")]
    BadResponse {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// Tenant choice failed.
    #[error("{0}")]
    Tenant(String),
    /// Waiting for the admin took too long.
    #[error(
        "no authorization arrived within {0} s; run `nexo connection authorize` again (and open the printed address)"
    )]
    TimedOut(u64),
    /// An endpoint URL is not usable.
    #[error("{0}")]
    Endpoint(String),
}

impl OAuthError {
    /// Whether the system refused for good (a person must act), rather
    /// than failed for a passing reason.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, OAuthError::Unavailable(_))
    }
}

/// The OAuth client the host authenticates as (registered at the vendor
/// by the admin).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    /// Client id.
    pub id: String,
    /// Client secret (none for a public client using PKCE alone).
    pub secret: Option<SecretValue>,
}

/// What the connections of one process share for OAuth: the token client
/// and one lock per connection, so concurrent runs refresh one at a time.
#[derive(Debug)]
pub(crate) struct Keeper {
    pub(crate) db: Database,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) tokens: TokenClient,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Keeper {
    pub(crate) fn new(db: Database, sealer: Arc<Sealer>) -> Self {
        Keeper {
            db,
            sealer,
            tokens: TokenClient::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The refresh lock of `connection` in this process.
    pub(crate) fn lock_of(&self, connection: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(connection.to_string()).or_default().clone()
    }

    pub(crate) fn slot(connection: &str, what: &str) -> String {
        format!("{connection}/oauth/{what}")
    }

    pub(crate) fn seal(
        &self,
        connection: &str,
        what: &str,
        value: &SecretValue,
    ) -> Result<nexo_db::oauth::Sealed, nexo_db::sealed::SealError> {
        let (nonce, sealed) = self.sealer.seal(&Self::slot(connection, what), value)?;
        Ok(nexo_db::oauth::Sealed { nonce, sealed })
    }

    pub(crate) fn open(
        &self,
        connection: &str,
        what: &str,
        sealed: &nexo_db::oauth::Sealed,
    ) -> Result<SecretValue, nexo_db::sealed::SealError> {
        self.sealer
            .open(&Self::slot(connection, what), &sealed.nonce, &sealed.sealed)
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether an access token issued at `issued` and expiring at `expires`
/// should be refreshed at `now`: within a quarter of its lifetime of the
/// end, and at most a minute before it.
pub(crate) fn refresh_due(now: i64, issued: i64, expires: i64) -> bool {
    let lifetime = (expires - issued).max(0);
    let margin = (lifetime / 4).min(60_000);
    now >= expires - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_ahead_of_its_expiry() {
        // 30-minute token: a minute before.
        let (issued, expires) = (0, 1_800_000);
        assert!(!refresh_due(1_739_999, issued, expires));
        assert!(refresh_due(1_740_000, issued, expires));
        // 4-second token: in its last second.
        assert!(!refresh_due(2_999, 0, 4_000));
        assert!(refresh_due(3_000, 0, 4_000));
        // Expired, or a lifetime of zero: due.
        assert!(refresh_due(10, 0, 0));
    }
}

/// Where a connection's OAuth authorization stands, for `connection show`,
/// the API and the console (never a token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OAuthState {
    /// `authorized`, `needs-reauthorization` or `not-authorized`.
    pub status: &'static str,
    /// Why it needs an admin, when it does.
    pub reason: Option<String>,
    /// The flow it was authorized with.
    pub flow: Option<String>,
    /// The OAuth client id.
    pub client_id: Option<String>,
    /// The tenant chosen.
    pub tenant: Option<String>,
    /// When the current access token expires (RFC 3339, UTC).
    pub expires_at: Option<String>,
}

impl OAuthState {
    /// One line for a person.
    pub fn describe(&self) -> String {
        match self.status {
            "authorized" => format!(
                "authorized ({}, client {}{}); access token refreshed by the host, current one valid until {}",
                self.flow.as_deref().unwrap_or("?"),
                self.client_id.as_deref().unwrap_or("?"),
                self.tenant
                    .as_deref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default(),
                self.expires_at.as_deref().unwrap_or("?")
            ),
            "needs-reauthorization" => format!(
                "NEEDS RE-AUTHORIZATION: {}; its pipelines are paused until `nexo connection authorize` succeeds",
                self.reason.as_deref().unwrap_or("the refresh token was refused")
            ),
            _ => "not authorized yet: run `nexo connection authorize` (or give the secret a static token)".into(),
        }
    }
}

impl crate::connections::Connections {
    /// Where the connection's OAuth authorization stands; `None` when its
    /// plugin declares no OAuth credential.
    pub fn oauth_status(
        &self,
        name: &str,
    ) -> Result<Option<OAuthState>, crate::connections::ConnectionError> {
        let row = self.get(name)?;
        let (_, manifest) = self.manifest_for(&row.plugin_id, row.pinned_version.as_ref())?;
        if manifest.capabilities.oauth2.is_none() {
            return Ok(None);
        }
        let Some(o) = self.registry.db().oauth(name)? else {
            return Ok(Some(OAuthState {
                status: "not-authorized",
                reason: None,
                flow: None,
                client_id: None,
                tenant: None,
                expires_at: None,
            }));
        };
        Ok(Some(OAuthState {
            status: o.status.as_str(),
            reason: o.reason,
            flow: Some(o.flow),
            client_id: Some(o.client_id),
            tenant: o.tenant,
            expires_at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(o.expires_at_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }))
    }
}

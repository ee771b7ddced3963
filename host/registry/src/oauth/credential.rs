//! A connection's access token as a [`Credential`]: read from the
//! database at send time, refreshed ahead of expiry and once after a 401,
//! one refresh at a time per connection — a lock in this process and a
//! claim in the database across processes — and, when the system refuses
//! the refresh token for good, the connection marked as needing
//! re-authorization and its pipelines paused, before the run fails.

use std::sync::Arc;
use std::time::Duration;

use nexo_bundle::oauth::{Flow, OAuth2};
use nexo_db::oauth::{Claim, OAuthRow, OAuthStatus};
use nexo_runtime::sandbox::credential::{Credential, CredentialError, CredentialFuture, Token};
use nexo_runtime::sandbox::redact;
use nexo_runtime::sandbox::secrets::SecretValue;

use super::token::Overrides;
use super::{Keeper, OAuthClient, OAuthError, now_ms, refresh_due};

/// How long a refresh claim holds before another process may take over.
const CLAIM_MS: i64 = 30_000;
/// How often a process waiting for another's refresh looks again.
const POLL: Duration = Duration::from_millis(100);
/// Lifetime assumed when a token endpoint does not say (RFC 6749 makes
/// `expires_in` optional).
const DEFAULT_LIFETIME_S: i64 = 3600;

/// The OAuth access token of one connection.
#[derive(Debug)]
pub struct ConnectionCredential {
    pub(crate) keeper: Arc<Keeper>,
    pub(crate) connection: String,
    pub(crate) decl: OAuth2,
    pub(crate) overrides: Overrides,
    /// The token last handed out, with when it was issued and expires: used
    /// without reading the database until a refresh is due (an access token
    /// stays valid until its expiry even after another process refreshed).
    pub(crate) last: std::sync::Mutex<Option<(Token, i64, i64)>>,
}

fn store_err(e: impl std::fmt::Display) -> CredentialError {
    CredentialError::Unavailable(format!("the token store failed: {e}"))
}

impl ConnectionCredential {
    fn fix(&self) -> String {
        format!(
            "run `nexo connection authorize {}` (or Authorize in the console); its pipelines resume once it is authorized",
            self.connection
        )
    }

    fn row(&self) -> Result<OAuthRow, CredentialError> {
        // The fix first: the plugin quotes the start of this text.
        match self.keeper.db.oauth(&self.connection).map_err(store_err)? {
            None => Err(CredentialError::NeedsAuthorization(format!(
                "connection `{}` is not authorized yet: {}",
                self.connection,
                self.fix()
            ))),
            Some(row) if row.status == OAuthStatus::NeedsReauthorization => {
                Err(CredentialError::NeedsAuthorization(format!(
                    "connection `{}` needs re-authorization: {}. Why: {}",
                    self.connection,
                    self.fix(),
                    row.reason
                        .as_deref()
                        .unwrap_or("its refresh token was refused")
                )))
            }
            Some(row) => Ok(row),
        }
    }

    fn token_of(&self, row: &OAuthRow) -> Result<Token, CredentialError> {
        let value = self
            .keeper
            .open(&self.connection, "access", &row.access_token)
            .map_err(store_err)?;
        Ok(Token {
            value,
            generation: u64::try_from(row.generation).unwrap_or_default(),
        })
    }

    /// A new pair for the tokens of `generation` in the store, unless
    /// someone already got one: waits for this process's other refreshes,
    /// then claims the refresh in the database (waiting out another
    /// process's claim).
    async fn refresh(&self, generation: i64) -> Result<(), CredentialError> {
        let lock = self.keeper.lock_of(&self.connection);
        let _held = lock.lock().await;
        loop {
            let row = self.row()?;
            if row.generation != generation {
                return Ok(());
            }
            let now = now_ms();
            match self
                .keeper
                .db
                .claim_oauth_refresh(&self.connection, generation, now, now + CLAIM_MS)
                .map_err(store_err)?
            {
                Claim::Won => return self.refresh_claimed(&row).await,
                Claim::Moved | Claim::NotAuthorized => continue,
                Claim::Held => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn refresh_claimed(&self, row: &OAuthRow) -> Result<(), CredentialError> {
        let client = OAuthClient {
            id: row.client_id.clone(),
            secret: row
                .client_secret
                .as_ref()
                .map(|s| self.keeper.open(&self.connection, "client-secret", s))
                .transpose()
                .map_err(store_err)?,
        };
        let form = match (&row.refresh_token, row.flow.as_str()) {
            (Some(sealed), _) => {
                let refresh = self
                    .keeper
                    .open(&self.connection, "refresh", sealed)
                    .map_err(store_err)?;
                redact::register("refresh_token", &refresh);
                vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.expose().to_string()),
                ]
            }
            (None, f) if f == Flow::ClientCredentials.to_string() => {
                let mut form = vec![("grant_type", "client_credentials".to_string())];
                if !self.decl.scopes.is_empty() {
                    form.push(("scope", self.decl.scopes.join(" ")));
                }
                form
            }
            (None, _) => {
                return Err(self.needs_reauthorization(
                    "the system gave no refresh token, and the access token has expired",
                ));
            }
        };
        let issued = now_ms();
        let answer = self
            .keeper
            .tokens
            .token(&self.decl, &self.overrides, &client, form)
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) if e.is_permanent() => {
                return Err(self.needs_reauthorization(&e.to_string()));
            }
            Err(e) => {
                let _ = self.keeper.db.release_oauth_refresh(&self.connection);
                tracing::warn!(connection = %self.connection, error = %e, "token refresh failed; will try again");
                return Err(CredentialError::Unavailable(e.to_string()));
            }
        };
        let access = SecretValue::new(answer.access_token);
        redact::register("access_token", &access);
        let refresh = answer.refresh_token.map(SecretValue::new);
        if let Some(r) = &refresh {
            redact::register("refresh_token", r);
        }
        let sealed_access = self
            .keeper
            .seal(&self.connection, "access", &access)
            .map_err(store_err)?;
        let sealed_refresh = refresh
            .as_ref()
            .map(|r| self.keeper.seal(&self.connection, "refresh", r))
            .transpose()
            .map_err(store_err)?;
        let lifetime = answer.expires_in.unwrap_or(DEFAULT_LIFETIME_S).max(1) * 1000;
        let stored = self
            .keeper
            .db
            .store_oauth_refresh(
                &self.connection,
                row.generation,
                &sealed_access,
                sealed_refresh.as_ref(),
                issued,
                issued + lifetime,
            )
            .map_err(store_err)?;
        if !stored {
            // Only a new authorization moves the generation under a held
            // claim; its tokens win.
            return Ok(());
        }
        tracing::info!(
            connection = %self.connection,
            generation = row.generation + 1,
            expires_in_s = lifetime / 1000,
            rotated = refresh.is_some(),
            "access token refreshed"
        );
        Ok(())
    }

    /// Mark the connection as needing re-authorization and pause its
    /// pipelines; the error the request fails with.
    fn needs_reauthorization(&self, why: &str) -> CredentialError {
        let why = redact::scrub(why).into_owned();
        match self
            .keeper
            .db
            .oauth_needs_reauthorization(&self.connection, &why)
        {
            Ok(paused) => tracing::warn!(
                connection = %self.connection,
                reason = %why,
                paused = ?paused,
                "connection needs re-authorization; its pipelines are paused"
            ),
            Err(e) => {
                tracing::error!(connection = %self.connection, error = %e, "could not record that the connection needs re-authorization")
            }
        }
        CredentialError::NeedsAuthorization(format!(
            "connection `{}` needs re-authorization: {}. Why: {why}",
            self.connection,
            self.fix()
        ))
    }
}

impl ConnectionCredential {
    fn remembered(&self) -> Option<Token> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((token, issued, expires)) if !refresh_due(now_ms(), *issued, *expires) => {
                Some(token.clone())
            }
            _ => None,
        }
    }

    /// The token of the stored pair now, remembered with its lifetime.
    fn remember(&self) -> Result<Token, CredentialError> {
        let row = self.row()?;
        let token = self.token_of(&row)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((token.clone(), row.issued_at_ms, row.expires_at_ms));
        Ok(token)
    }
}

impl Credential for ConnectionCredential {
    fn current(&self) -> CredentialFuture<'_> {
        Box::pin(async move {
            if let Some(token) = self.remembered() {
                return Ok(token);
            }
            let row = self.row()?;
            if refresh_due(now_ms(), row.issued_at_ms, row.expires_at_ms) {
                self.refresh(row.generation).await?;
            }
            self.remember()
        })
    }

    fn rejected(&self, token: Token) -> CredentialFuture<'_> {
        Box::pin(async move {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let generation = i64::try_from(token.generation).unwrap_or(i64::MAX);
            tracing::debug!(connection = %self.connection, generation, "access token refused by the system");
            self.refresh(generation).await?;
            self.remember()
        })
    }
}

impl From<OAuthError> for CredentialError {
    fn from(e: OAuthError) -> Self {
        if e.is_permanent() {
            CredentialError::NeedsAuthorization(e.to_string())
        } else {
            CredentialError::Unavailable(e.to_string())
        }
    }
}

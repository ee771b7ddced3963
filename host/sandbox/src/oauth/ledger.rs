//! What the identity server remembers: sign-in requests between the
//! authorize page and the consent, codes, grants (one per consent or
//! client-credentials call), access and refresh tokens, and the counts the
//! tests read. The grant rules live here, apart from HTTP, so each is a
//! plain function of the ledger and the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{OAuthSettings, OAuthStats, Refusal, random, random_uuid};

/// How long a code, and a sign-in waiting for its login and consent, live.
pub(super) const CODE_TTL: Duration = Duration::from_secs(10 * 60);

/// An authorize request on its way through the login and consent pages;
/// the pages carry only its random id.
#[derive(Debug, Clone)]
pub(super) struct SignIn {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    /// The S256 PKCE challenge, when one was given.
    pub challenge: Option<String>,
    /// Who logged in (none yet: the consent page is refused).
    pub user: Option<String>,
    pub opened: Instant,
}

/// What one consent (or one client-credentials call) allowed.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    pub client_id: String,
    /// Who consented; `None` for client credentials.
    pub user: Option<String>,
    pub scopes: Vec<String>,
    /// The organisations chosen, each with its connection id (Xero's `id`).
    pub tenants: Vec<(String, String)>,
    /// Xero's `authEventId`.
    pub auth_event: String,
    pub created: chrono::DateTime<chrono::Utc>,
    revoked: bool,
}

impl Grant {
    pub fn new(
        client_id: &str,
        user: Option<String>,
        scopes: Vec<String>,
        tenants: &[String],
    ) -> Result<Grant, getrandom::Error> {
        Ok(Grant {
            client_id: client_id.to_string(),
            user,
            scopes,
            tenants: tenants
                .iter()
                .map(|t| Ok((t.clone(), random_uuid()?)))
                .collect::<Result<_, getrandom::Error>>()?,
            auth_event: random_uuid()?,
            created: chrono::Utc::now(),
            revoked: false,
        })
    }

    /// The tenant ids it reaches.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.tenants.iter().map(|(t, _)| t.clone()).collect()
    }
}

#[derive(Debug)]
struct Code {
    grant: usize,
    redirect_uri: String,
    challenge: Option<String>,
    issued: Instant,
    used: bool,
}

#[derive(Debug)]
struct Access {
    grant: usize,
    expires: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    /// Replaced by a newer one (a rotating server).
    Rotated,
    /// Killed by a revocation or a reused code.
    Revoked,
}

#[derive(Debug)]
struct Refresh {
    grant: usize,
    expires: Instant,
    state: RefreshState,
}

/// Tokens answered by the token endpoint.
#[derive(Debug)]
pub(super) struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// A refusal of the token endpoint (RFC 6749 §5.2); the text says what was
/// wrong and never carries a secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    Server(String),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::Server(_) => "server_error",
        }
    }
}

impl From<getrandom::Error> for TokenError {
    fn from(e: getrandom::Error) -> Self {
        TokenError::Server(format!(
            "the sandbox could not draw random bytes for a token ({e}); try again"
        ))
    }
}

#[derive(Debug)]
pub(super) struct Ledger {
    sign_ins: HashMap<String, SignIn>,
    codes: HashMap<String, Code>,
    grants: Vec<Grant>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    pub stats: OAuthStats,
    pub access_ttl: Duration,
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The S256 challenge of a verifier.
pub(super) fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Ledger {
    pub fn new(access_ttl: Duration) -> Ledger {
        Ledger {
            sign_ins: HashMap::new(),
            codes: HashMap::new(),
            grants: Vec::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            stats: OAuthStats::default(),
            access_ttl,
        }
    }

    /// Keeps a new sign-in; returns its opaque id.
    pub fn open(&mut self, sign_in: SignIn) -> Result<String, getrandom::Error> {
        let now = sign_in.opened;
        self.sign_ins
            .retain(|_, s| now.duration_since(s.opened) < CODE_TTL);
        let id = random(24)?;
        self.sign_ins.insert(id.clone(), sign_in);
        Ok(id)
    }

    /// A sign-in still open.
    pub fn sign_in(&mut self, id: &str, now: Instant) -> Option<&mut SignIn> {
        self.sign_ins
            .get_mut(id)
            .filter(|s| now.duration_since(s.opened) < CODE_TTL)
    }

    /// Ends a sign-in (consent given or denied): its id is dead.
    pub fn close(&mut self, id: &str) {
        self.sign_ins.remove(id);
    }

    /// Keeps a grant; the code of a consent and the tokens point at it.
    pub fn add_grant(&mut self, grant: Grant) -> usize {
        self.grants.push(grant);
        self.grants.len() - 1
    }

    /// A code for a consented sign-in.
    pub fn issue_code(
        &mut self,
        grant: usize,
        sign_in: &SignIn,
        now: Instant,
    ) -> Result<String, getrandom::Error> {
        // A code past its lifetime can only be refused: forget it (a used
        // one is kept as long, to catch its reuse).
        self.codes
            .retain(|_, c| now.duration_since(c.issued) < CODE_TTL);
        let code = random(32)?;
        self.codes.insert(
            code.clone(),
            Code {
                grant,
                redirect_uri: sign_in.redirect_uri.clone(),
                challenge: sign_in.challenge.clone(),
                issued: now,
                used: false,
            },
        );
        self.stats.codes_issued += 1;
        Ok(code)
    }

    /// The `authorization_code` grant for an authenticated client.
    pub fn exchange_code(
        &mut self,
        settings: &OAuthSettings,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: Instant,
    ) -> Result<Issued, TokenError> {
        let refused = |why: &str| Err(TokenError::InvalidGrant(why.to_string()));
        let Some(found) = self.codes.get(code) else {
            return refused("the authorization code is unknown; authorize again");
        };
        let grant = found.grant;
        if found.used {
            // RFC 6749 §4.1.2: a code used twice revokes what it gave.
            self.revoke_grant(grant);
            return refused(
                "the authorization code was already used (the tokens it gave are now revoked); authorize again",
            );
        }
        if now.duration_since(found.issued) >= CODE_TTL {
            return refused(
                "the authorization code expired (codes live 10 minutes); authorize again",
            );
        }
        if self.grants[grant].client_id != client_id {
            return refused("the authorization code was issued to another client");
        }
        if redirect_uri != Some(found.redirect_uri.as_str()) {
            return refused(
                "redirect_uri differs from the one of the authorization request; send the same URI",
            );
        }
        match (&found.challenge, verifier) {
            (None, None) => {}
            (None, Some(_)) => {
                return refused(
                    "code_verifier sent, but the authorization request had no code_challenge",
                );
            }
            (Some(_), None) => {
                return refused(
                    "code_verifier is missing; the authorization request had a code_challenge",
                );
            }
            (Some(challenge), Some(v)) => {
                if !valid_verifier(v) || s256(v) != *challenge {
                    return refused("code_verifier does not match the code_challenge (S256)");
                }
            }
        }
        if let Some(c) = self.codes.get_mut(code) {
            c.used = true;
        }
        let with_refresh = self.offers_refresh(settings, grant);
        let issued = self.issue(settings, grant, with_refresh, now)?;
        self.stats.code_exchanges += 1;
        Ok(issued)
    }

    /// The `refresh_token` grant for an authenticated client.
    pub fn refresh(
        &mut self,
        settings: &OAuthSettings,
        client_id: &str,
        token: &str,
        scope: Option<&str>,
        now: Instant,
    ) -> Result<Issued, TokenError> {
        let refused = |why: &str| Err(TokenError::InvalidGrant(why.to_string()));
        let Some(found) = self.refresh.get(token) else {
            return refused("the refresh token is unknown; authorize again");
        };
        let grant = found.grant;
        match found.state {
            RefreshState::Live => {}
            RefreshState::Rotated => {
                self.stats.refresh_reuses += 1;
                return refused(
                    "the refresh token was already used: each refresh answers a new one, use the newest",
                );
            }
            RefreshState::Revoked => {
                return refused("the refresh token was revoked; authorize again");
            }
        }
        if self.grants[grant].revoked {
            return refused("the refresh token was revoked; authorize again");
        }
        if now >= found.expires {
            return refused("the refresh token expired; authorize again");
        }
        if self.grants[grant].client_id != client_id {
            return refused("the refresh token was issued to another client");
        }
        if let Some(asked) = scope {
            let granted = &self.grants[grant].scopes;
            if let Some(extra) = asked
                .split_whitespace()
                .find(|s| !granted.iter().any(|g| g == s))
            {
                return Err(TokenError::InvalidScope(format!(
                    "scope `{extra}` was not granted; a refresh can only narrow the scope"
                )));
            }
        }
        let mut issued = self.issue(settings, grant, settings.refresh_rotates, now)?;
        if settings.refresh_rotates {
            if let Some(old) = self.refresh.get_mut(token) {
                old.state = RefreshState::Rotated;
            }
        } else {
            issued.refresh_token = Some(token.to_string());
        }
        self.stats.refreshes += 1;
        Ok(issued)
    }

    /// The `client_credentials` grant: an access token reaching `tenant`.
    pub fn client_credentials(
        &mut self,
        settings: &OAuthSettings,
        client_id: &str,
        tenant: &str,
        scope: Option<&str>,
        now: Instant,
    ) -> Result<Issued, TokenError> {
        let scopes = scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let grant = Grant::new(client_id, None, scopes, &[tenant.to_string()])?;
        let grant = self.add_grant(grant);
        self.issue(settings, grant, false, now)
    }

    fn offers_refresh(&self, settings: &OAuthSettings, grant: usize) -> bool {
        match &settings.refresh_scope {
            None => true,
            Some(needed) => self.grants[grant].scopes.iter().any(|s| s == needed),
        }
    }

    fn issue(
        &mut self,
        settings: &OAuthSettings,
        grant: usize,
        with_refresh: bool,
        now: Instant,
    ) -> Result<Issued, TokenError> {
        let access_token = random(32)?;
        let refresh_token = if with_refresh {
            Some(random(32)?)
        } else {
            None
        };
        self.access.insert(
            access_token.clone(),
            Access {
                grant,
                expires: now + self.access_ttl,
            },
        );
        if let Some(r) = &refresh_token {
            self.refresh.insert(
                r.clone(),
                Refresh {
                    grant,
                    expires: now + settings.refresh_ttl,
                    state: RefreshState::Live,
                },
            );
        }
        self.stats.access_tokens_issued += 1;
        Ok(Issued {
            access_token,
            expires_in: self.access_ttl.as_secs(),
            refresh_token,
            scope: self.grants[grant].scopes.join(" "),
        })
    }

    /// The grant a bearer token on an API call stands for, or why it is
    /// refused (counted).
    pub fn bearer(&mut self, token: &str, now: Instant) -> Result<&Grant, Refusal> {
        match self.lookup(token, now) {
            Ok((grant, _)) => Ok(&self.grants[grant]),
            Err(refusal) => {
                match refusal {
                    Refusal::Expired => self.stats.expired_rejections += 1,
                    Refusal::Unknown => self.stats.unknown_rejections += 1,
                }
                Err(refusal)
            }
        }
    }

    /// A live access token's grant and remaining lifetime (not counted).
    pub fn introspect(&self, token: &str, now: Instant) -> Option<(&Grant, Duration)> {
        let (grant, left) = self.lookup(token, now).ok()?;
        Some((&self.grants[grant], left))
    }

    fn lookup(&self, token: &str, now: Instant) -> Result<(usize, Duration), Refusal> {
        let access = self.access.get(token).ok_or(Refusal::Unknown)?;
        if self.grants[access.grant].revoked {
            return Err(Refusal::Unknown);
        }
        if now >= access.expires {
            return Err(Refusal::Expired);
        }
        Ok((access.grant, access.expires - now))
    }

    /// Kills every refresh token issued so far; returns how many were live.
    pub fn revoke_refresh_tokens(&mut self) -> usize {
        let mut live = 0;
        for r in self.refresh.values_mut() {
            if r.state == RefreshState::Live {
                live += 1;
            }
            r.state = RefreshState::Revoked;
        }
        live
    }

    fn revoke_grant(&mut self, grant: usize) {
        self.grants[grant].revoked = true;
        for r in self.refresh.values_mut().filter(|r| r.grant == grant) {
            r.state = RefreshState::Revoked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with_code(challenge: Option<String>) -> (Ledger, OAuthSettings, String) {
        let settings = OAuthSettings::xero();
        let mut ledger = Ledger::new(Duration::from_secs(60));
        let now = Instant::now();
        let sign_in = SignIn {
            client_id: settings.client_id.clone(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            scopes: vec!["offline_access".into(), "accounting.contacts".into()],
            state: None,
            challenge,
            user: Some("admin@example.com".into()),
            opened: now,
        };
        let grant = Grant::new(
            &settings.client_id,
            sign_in.user.clone(),
            sign_in.scopes.clone(),
            &["t1".to_string()],
        )
        .unwrap();
        let grant = ledger.add_grant(grant);
        let code = ledger.issue_code(grant, &sign_in, now).unwrap();
        (ledger, settings, code)
    }

    #[test]
    fn the_rfc_7636_example_verifier_gives_its_challenge() {
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_code_past_ten_minutes_is_refused() {
        let (mut ledger, settings, code) = ledger_with_code(None);
        let later = Instant::now() + CODE_TTL + Duration::from_secs(1);
        let id = settings.client_id.clone();
        let err = ledger
            .exchange_code(
                &settings,
                &id,
                &code,
                Some("http://127.0.0.1:9/cb"),
                None,
                later,
            )
            .unwrap_err();
        assert_eq!(err.code(), "invalid_grant");
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn a_refresh_token_past_its_lifetime_is_refused() {
        let (mut ledger, settings, code) = ledger_with_code(None);
        let now = Instant::now();
        let id = settings.client_id.clone();
        let issued = ledger
            .exchange_code(
                &settings,
                &id,
                &code,
                Some("http://127.0.0.1:9/cb"),
                None,
                now,
            )
            .unwrap();
        let refresh = issued.refresh_token.unwrap();
        let later = now + settings.refresh_ttl;
        let err = ledger
            .refresh(&settings, &id, &refresh, None, later)
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn a_refresh_cannot_widen_the_scope() {
        let (mut ledger, settings, code) = ledger_with_code(None);
        let now = Instant::now();
        let id = settings.client_id.clone();
        let issued = ledger
            .exchange_code(
                &settings,
                &id,
                &code,
                Some("http://127.0.0.1:9/cb"),
                None,
                now,
            )
            .unwrap();
        let refresh = issued.refresh_token.unwrap();
        let err = ledger
            .refresh(&settings, &id, &refresh, Some("accounting.settings"), now)
            .unwrap_err();
        assert_eq!(err.code(), "invalid_scope");
    }

    #[test]
    fn without_offline_access_xero_gives_no_refresh_token() {
        let settings = OAuthSettings::xero();
        let mut ledger = Ledger::new(Duration::from_secs(60));
        let now = Instant::now();
        let sign_in = SignIn {
            client_id: settings.client_id.clone(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            scopes: vec!["accounting.contacts".into()],
            state: None,
            challenge: None,
            user: None,
            opened: now,
        };
        let grant = Grant::new(&settings.client_id, None, sign_in.scopes.clone(), &[]).unwrap();
        let grant = ledger.add_grant(grant);
        let code = ledger.issue_code(grant, &sign_in, now).unwrap();
        let id = settings.client_id.clone();
        let issued = ledger
            .exchange_code(
                &settings,
                &id,
                &code,
                Some("http://127.0.0.1:9/cb"),
                None,
                now,
            )
            .unwrap();
        assert!(issued.refresh_token.is_none());
    }
}

//! An OAuth 2.0 identity server shared by the Xero-like and HubSpot-like
//! sandboxes, on each sandbox's own port, following the vendors' identity
//! servers: the authorization-code flow (RFC 6749 §4.1) with PKCE (RFC 7636,
//! S256), refresh tokens, and for Xero the client-credentials flow of its
//! custom connections (§4.4). A host runs the flows against it exactly as
//! against the vendor, through an origin override (`https://login.xero.com`,
//! `https://identity.xero.com` and `https://api.xero.com` all mapped to the
//! one sandbox origin, so the paths below never collide).
//!
//! # What it serves
//!
//! | | Xero (`login.xero.com`, `identity.xero.com`, `api.xero.com`) | HubSpot (`app.hubspot.com`, `api.hubapi.com`) |
//! |---|---|---|
//! | authorize (`GET`) | `/identity/connect/authorize` | `/oauth/authorize` |
//! | login form (`POST`) | `/identity/login` | `/oauth/login` |
//! | consent form (`POST`) | `/identity/consent` | `/oauth/consent` |
//! | token (`POST`, form body) | `/connect/token` | `/oauth/v1/token` |
//! | what a token reaches (`GET`) | `/connections` (Bearer) | `/oauth/v1/access-tokens/{token}` |
//!
//! - The authorize endpoint checks the client and the redirect URI first: an
//!   unknown client or an unregistered redirect URI gets a 400 HTML page and
//!   never a redirect (RFC 6749 §4.1.2.1). Other faults (a `response_type`
//!   other than `code`, no scope, a PKCE method other than `S256`) go back
//!   to the client as `?error=…&state=…`. Else it answers a login page
//!   (`email`, `password`, a hidden opaque `request`, button `login`), then a
//!   consent page (the app, the scopes, for Xero the organisations as
//!   checked `tenant` boxes, buttons `allow` and `deny` named `decision`),
//!   then `302` to `redirect_uri?code=…&state=…` (deny:
//!   `?error=access_denied&state=…`). A browser and a plain HTTP client can
//!   both drive them; see [`pages`] for the exact markup.
//! - Codes are single-use and live ten minutes. A code presented twice is
//!   refused and, as RFC 6749 §4.1.2 recommends, every token issued from it
//!   is revoked.
//! - The token endpoint authenticates the client (Xero: HTTP Basic, or the
//!   id and secret in the body; HubSpot: in the body), then runs the grant:
//!   `authorization_code` (the redirect URI must equal the authorized one,
//!   the `code_verifier` must match an S256 challenge, and one must not be
//!   sent when no challenge was), `refresh_token`, and for Xero
//!   `client_credentials` (an access token only, reaching the configured
//!   organisation). Errors are RFC 6749 §5.2 JSON, 400 (`invalid_client`:
//!   401).
//! - Xero rotates refresh tokens: each refresh answers a new one and the old
//!   one is dead at once (real Xero keeps it usable for 30 minutes; this
//!   sandbox is strict, so a client that uses one twice is caught, and each
//!   such use is counted as a reuse). As Xero does, it answers a refresh
//!   token only when the scope includes `offline_access`. HubSpot's refresh
//!   token stays the same and valid.
//! - Access tokens are random strings living `access_ttl`; the sandbox's API
//!   answers 401 (its usual shape) for an expired or unknown one and counts
//!   it. The static token of the sandbox's config keeps working beside them.
//!
//! Test hooks: [`OAuthServer::stats`], [`OAuthServer::revoke_refresh_tokens`],
//! [`OAuthServer::set_access_ttl`], and the same over HTTP for CLI-driven
//! tests: `GET /_sandbox/oauth/stats`, `POST /_sandbox/oauth/revoke`.

mod http;
mod ledger;
pub mod pages;
mod signin;
mod token;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

pub(crate) use http::router;
use ledger::Ledger;

/// A person who can sign in on the login page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// What goes in the `email` field.
    pub email: String,
    /// What goes in the `password` field.
    pub password: String,
}

/// An organisation (Xero) or account (HubSpot hub) a sign-in can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Xero's `tenantId` (a GUID); HubSpot's hub id (digits).
    pub id: String,
    /// Xero's `tenantName`; HubSpot's `hub_domain`.
    pub name: String,
}

/// How the identity server of a sandbox is set up. OAuth is always on;
/// [`OAuthSettings::xero`] and [`OAuthSettings::hubspot`] give each vendor's
/// behaviour, with the sandbox's default client and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The one registered app's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// Redirect URIs registered for the app, compared exactly; empty: any
    /// loopback `http://127.0.0.1:PORT/…` or `http://localhost:PORT/…`
    /// (RFC 8252 §7.3, what `nexo connection authorize` listens on).
    pub redirect_uris: Vec<String>,
    /// How long an access token lives (Xero and HubSpot: 30 minutes).
    pub access_ttl: Duration,
    /// Whether each refresh answers a new refresh token and kills the old
    /// one (Xero) or keeps the same one (HubSpot).
    pub refresh_rotates: bool,
    /// How long a refresh token lives (Xero: 60 days).
    pub refresh_ttl: Duration,
    /// A refresh token is issued only when the scope includes this one
    /// (Xero: `offline_access`); `None`: always.
    pub refresh_scope: Option<String>,
    /// Whether the `client_credentials` grant is offered (Xero's custom
    /// connections).
    pub client_credentials: bool,
    /// Who can sign in.
    pub users: Vec<User>,
    /// The organisations a sign-in can reach. Xero: empty means the
    /// sandbox's configured tenant (named [`XERO_ORGANISATION`]) and a
    /// second, empty organisation ([`XERO_EMPTY_TENANT`]) whose API calls
    /// answer 403 as a wrong tenant does. HubSpot: the first is the hub.
    pub tenants: Vec<Tenant>,
}

/// The default client id of both sandboxes.
pub const CLIENT_ID: &str = "nexo-sandbox-client";
/// The default client secret of both sandboxes.
pub const CLIENT_SECRET: &str = "nexo-sandbox-secret";
/// The default user's email.
pub const USER_EMAIL: &str = "admin@example.com";
/// The default user's password.
pub const USER_PASSWORD: &str = "sandbox";
/// The name of the Xero sandbox's own organisation (its configured tenant).
pub const XERO_ORGANISATION: &str = "Nexo Sandbox Trading Ltd";
/// The second Xero organisation a sign-in can pick: it has no data, and
/// the API answers 403 for it.
pub const XERO_EMPTY_TENANT: &str = "00000000-0000-4000-8000-00000000a002";
/// The HubSpot sandbox's hub (`hub_id`, `hub_domain`).
pub const HUBSPOT_HUB: (&str, &str) = ("24310001", "nexo-sandbox.hubspot.com");

const THIRTY_MINUTES: Duration = Duration::from_secs(30 * 60);
const SIXTY_DAYS: Duration = Duration::from_secs(60 * 24 * 3600);

impl OAuthSettings {
    fn common() -> OAuthSettings {
        OAuthSettings {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: Vec::new(),
            access_ttl: THIRTY_MINUTES,
            refresh_rotates: false,
            refresh_ttl: SIXTY_DAYS,
            refresh_scope: None,
            client_credentials: false,
            users: vec![User {
                email: USER_EMAIL.into(),
                password: USER_PASSWORD.into(),
            }],
            tenants: Vec::new(),
        }
    }

    /// Xero's identity server: 30-minute access tokens, rotating 60-day
    /// refresh tokens (with `offline_access`), client credentials.
    pub fn xero() -> OAuthSettings {
        OAuthSettings {
            refresh_rotates: true,
            refresh_scope: Some("offline_access".into()),
            client_credentials: true,
            ..OAuthSettings::common()
        }
    }

    /// HubSpot's: 30-minute access tokens, a refresh token that stays the
    /// same, one hub.
    pub fn hubspot() -> OAuthSettings {
        OAuthSettings {
            tenants: vec![Tenant {
                id: HUBSPOT_HUB.0.into(),
                name: HUBSPOT_HUB.1.into(),
            }],
            ..OAuthSettings::common()
        }
    }
}

/// What the identity server has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OAuthStats {
    /// Codes issued at consent.
    pub codes_issued: u64,
    /// Codes exchanged for tokens.
    pub code_exchanges: u64,
    /// Successful refreshes.
    pub refreshes: u64,
    /// Refresh tokens presented again after they were rotated out (each
    /// refused).
    pub refresh_reuses: u64,
    /// API calls refused for an access token past its lifetime.
    pub expired_rejections: u64,
    /// API calls refused for a bearer token the server never issued, or
    /// issued and revoked (the sandbox's static token is not one of them).
    pub unknown_rejections: u64,
    /// Access tokens issued (by any grant).
    pub access_tokens_issued: u64,
}

/// Which vendor's identity server this is: its paths and its quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vendor {
    Xero,
    HubSpot,
}

impl Vendor {
    fn name(self) -> &'static str {
        match self {
            Vendor::Xero => "Xero",
            Vendor::HubSpot => "HubSpot",
        }
    }
    /// Where the login and consent forms post.
    fn login_path(self) -> &'static str {
        match self {
            Vendor::Xero => "/identity/login",
            Vendor::HubSpot => "/oauth/login",
        }
    }
    fn consent_path(self) -> &'static str {
        match self {
            Vendor::Xero => "/identity/consent",
            Vendor::HubSpot => "/oauth/consent",
        }
    }
}

/// Why the API refused a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Issued here, past its lifetime.
    Expired,
    /// Never issued here, or revoked.
    Unknown,
}

/// The identity server of one sandbox: its settings and everything it has
/// issued. Reached from tests through `XeroSandbox::oauth` and
/// `HubSpotSandbox::oauth`.
#[derive(Debug)]
pub struct OAuthServer {
    vendor: Vendor,
    settings: OAuthSettings,
    /// The organisation the sandbox's data belongs to (Xero's configured
    /// tenant; HubSpot's hub): client credentials reach it.
    home_tenant: String,
    ledger: Mutex<Ledger>,
}

impl OAuthServer {
    /// Xero's, for the sandbox whose data belongs to `tenant_id`.
    pub(crate) fn xero(mut settings: OAuthSettings, tenant_id: &str) -> Arc<OAuthServer> {
        if settings.tenants.is_empty() {
            settings.tenants = vec![
                Tenant {
                    id: tenant_id.into(),
                    name: XERO_ORGANISATION.into(),
                },
                Tenant {
                    id: XERO_EMPTY_TENANT.into(),
                    name: "Empty Company (sandbox)".into(),
                },
            ];
        }
        OAuthServer::new(Vendor::Xero, settings, tenant_id.to_string())
    }

    /// HubSpot's: the first tenant is the hub.
    pub(crate) fn hubspot(mut settings: OAuthSettings) -> Arc<OAuthServer> {
        if settings.tenants.is_empty() {
            settings.tenants = OAuthSettings::hubspot().tenants;
        }
        let hub = settings
            .tenants
            .first()
            .map(|t| t.id.clone())
            .unwrap_or_default();
        OAuthServer::new(Vendor::HubSpot, settings, hub)
    }

    fn new(vendor: Vendor, settings: OAuthSettings, home_tenant: String) -> Arc<OAuthServer> {
        let ledger = Ledger::new(settings.access_ttl);
        Arc::new(OAuthServer {
            vendor,
            settings,
            home_tenant,
            ledger: Mutex::new(ledger),
        })
    }

    /// The settings it runs with (the tenants filled in).
    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// What it has done so far.
    pub fn stats(&self) -> OAuthStats {
        self.ledger().stats
    }

    /// Revokes every refresh token issued so far: each answers
    /// `invalid_grant` from now on (as after a user disconnects the app).
    /// Access tokens live on until they expire. Returns how many were live.
    pub fn revoke_refresh_tokens(&self) -> usize {
        self.ledger().revoke_refresh_tokens()
    }

    /// The lifetime of access tokens issued from now on (their
    /// `expires_in` is in whole seconds, rounded down).
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.ledger().access_ttl = ttl;
    }

    /// The tenants a bearer token reaches, or why it is refused (counted).
    /// The sandbox checks its static token before asking.
    pub(crate) fn tenants_of(&self, token: &str) -> Result<Vec<String>, Refusal> {
        self.ledger()
            .bearer(token, Instant::now())
            .map(|grant| grant.tenant_ids())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Equality that takes as long whatever the first differing byte, for
/// secrets and passwords.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random, URL-safe string of `bytes` random bytes (codes, tokens, ids).
fn random(bytes: usize) -> Result<String, getrandom::Error> {
    use base64::Engine as _;
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// A random version-4 UUID (Xero's ids).
fn random_uuid() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

//! What a plugin's outbound request and its answer are on the host's side,
//! how one can fail, and the knobs of the HTTP capability — the vocabulary
//! of [`super::http`], apart from its machinery.

use std::time::Duration;

use super::budget::BudgetExhausted;
use super::policy::Denial;
use super::secrets::SecretDenial;

/// Methods a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    pub(crate) fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

/// A plugin's request, with secret templates still in place.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers (values may hold `{{secret:NAME}}`).
    pub headers: Vec<(String, String)>,
    /// Basic auth (user, password), each possibly a template.
    pub basic_auth: Option<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
    /// Requested timeout (capped by the host).
    pub timeout_ms: Option<u32>,
}

/// The answer the plugin gets.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why a request got no response. These are values returned to the plugin,
/// never traps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Not declared or not granted.
    #[error("origin not allowed: {0}")]
    OriginNotAllowed(String),
    /// Resolves to an internal address not granted.
    #[error("address not allowed: {0}")]
    AddressNotAllowed(String),
    /// A redirect led to an origin not allowed.
    #[error("redirect not allowed: {0}")]
    RedirectNotAllowed(String),
    /// A secret template that may not be used here.
    #[error("secret not allowed: {0}")]
    SecretNotAllowed(String),
    /// Malformed request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Body over the cap (bytes).
    #[error("response larger than {0} bytes")]
    ResponseTooLarge(u64),
    /// Timed out.
    #[error("request timed out")]
    Timeout,
    /// Network, TLS or protocol failure.
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    /// The connection's request budget had no room for this request before
    /// the call's deadline; nothing was sent. Retryable.
    #[error(transparent)]
    RateLimited(#[from] BudgetExhausted),
    /// A kept-fresh credential the request uses has no value until an
    /// admin authorizes the connection again; nothing was sent.
    #[error("`{secret}` needs an admin to authorize the connection again: {why}")]
    NeedsAuthorization {
        /// The secret's name.
        secret: String,
        /// Why, as the credential said.
        why: String,
    },
}

impl From<Denial> for HttpError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::InternalAddress { .. } => HttpError::AddressNotAllowed(d.to_string()),
            _ => HttpError::OriginNotAllowed(d.to_string()),
        }
    }
}

impl From<SecretDenial> for HttpError {
    fn from(d: SecretDenial) -> Self {
        HttpError::SecretNotAllowed(d.to_string())
    }
}

/// Tunables of the outbound client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Longest a single request may take.
    pub timeout: Duration,
    /// Largest body read.
    pub max_response_bytes: u64,
    /// Redirect hops followed.
    pub max_redirects: u32,
    /// Retries on 429/503.
    pub max_retries: u32,
    /// Longest single wait before a retry (a larger `Retry-After` is answered
    /// to the plugin instead, which reports `rate-limited`).
    pub max_retry_wait: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 << 20,
            max_redirects: 5,
            max_retries: 2,
            max_retry_wait: Duration::from_secs(5),
        }
    }
}

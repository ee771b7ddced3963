//! A Xero-like accounting API on 127.0.0.1: the sandbox the Xero connector
//! is developed and tested against, following Xero's OpenAPI description
//! (`xero_accounting.yaml`, Accounting API 16.1.0) for the parts it covers.
//!
//! # What it serves
//!
//! `/api.xro/2.0/{Contacts,Items,Invoices,Payments,Accounts}`:
//!
//! - `GET` lists, newest change last (ordered by `UpdatedDateUTC`, then id),
//!   with `If-Modified-Since` (records changed at or after that instant),
//!   `page=N` (100 per page, 1-based, with a `pagination` object) and
//!   `where` clauses of the form `Field=="text"` or `A.B==Guid("…")`, joined
//!   by `&&` or ` AND ` (the connector's look-ups; other forms answer 400).
//!   `GET …/{id}` returns one record.
//! - `PUT` creates, `POST` creates or updates (a record carrying its id),
//!   both with batch bodies (`{"Invoices": [...]}`); `POST …/{id}` updates
//!   one. With `summarizeErrors=false` every record is answered on its own
//!   (`HasErrors`/`HasValidationErrors`, `ValidationErrors`,
//!   `StatusAttributeString: "ERROR"`) and valid records are applied;
//!   otherwise one invalid record makes the whole batch a 400
//!   `ValidationException` and nothing is applied. Contacts, Invoices,
//!   Payments and Items are writable; Accounts are read-only (seeded).
//! - An `Idempotency-Key` header makes a write replayable: the same key
//!   gets the first answer back without applying anything again.
//! - Invoices are checked with exact decimals: `LineAmount = Quantity ×
//!   UnitAmount − DiscountAmount` rounded to 2 places, tax per line by the
//!   `TaxType`'s rate ([`TAX_RATES`]), `SubTotal`, `TotalTax`, `Total`.
//!   Totals the client supplies must match, account codes and tax types must
//!   exist, the contact must exist; each failure is a validation error with
//!   Xero's wording, never a 500. Payments must fit the amount due of an
//!   authorised invoice and go to a bank account; a paid invoice turns
//!   `PAID`.
//! - Dates follow Xero's JSON: `/Date(1700000000000+0000)/`, plus the
//!   `…String` forms; amounts are JSON numbers.
//! - Every request needs `Authorization: Bearer <token>` (else 401) and
//!   `xero-tenant-id: <tenant>` (else 403), in Xero's problem shape; past
//!   the configured rate the answer is 429 with `Retry-After` (seconds).
//!
//! - Xero's identity server on the same port (see [`crate::oauth`]):
//!   `/identity/connect/authorize`, `/connect/token`, `/connections`. An
//!   access token it issued works like the static token, for the
//!   organisations chosen at consent; an expired or unknown one gets the
//!   401 above.
//!
//! Test hooks: [`XeroSandbox::oauth`] (the identity server's counts and
//! levers), [`XeroSandbox::exchanges`] records every request and
//! response body (for schema validation), [`XeroSandbox::stall_next_write`]
//! applies a write and then does not answer in time (a lost answer).

mod amount;
mod docs;
mod http;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

pub use amount::{Amount, AmountError};
pub use docs::TAX_RATES;
pub use store::{Collection, typed_twice_contacts};

use crate::oauth::{OAuthServer, OAuthSettings};

/// How a sandbox is set up.
#[derive(Debug, Clone)]
pub struct XeroConfig {
    /// Bearer token every request must carry.
    pub token: String,
    /// The organisation's tenant id (`xero-tenant-id` header).
    pub tenant_id: String,
    /// At most this many calls per `rate_window` (Xero: 60 per minute per
    /// tenant); `None`: no limit.
    pub rate_limit: Option<u32>,
    /// The window of `rate_limit`.
    pub rate_window: Duration,
    /// Size of the generated data: this many items, contacts and authorised
    /// invoices, and a payment on every third invoice (0: accounts only).
    pub seed: usize,
    /// Also hold a few contacts typed in twice
    /// ([`typed_twice_contacts`]), as the demo does for `nexo
    /// survey` to find.
    pub typed_twice: bool,
    /// Base currency of the organisation.
    pub currency: String,
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// The identity server (always on; the static `token` keeps working).
    pub oauth: OAuthSettings,
}

impl Default for XeroConfig {
    fn default() -> Self {
        XeroConfig {
            token: "xero-sandbox-token".into(),
            tenant_id: "00000000-0000-4000-8000-00000000a001".into(),
            rate_limit: Some(60),
            rate_window: Duration::from_secs(60),
            seed: 0,
            typed_twice: false,
            currency: "EUR".into(),
            port: 0,
            oauth: OAuthSettings::xero(),
        }
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum XeroError {
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// Port asked for.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// The seed data did not validate (a bug of the generator).
    #[error("generating seed data failed: {0}")]
    Seed(String),
}

/// One request the sandbox answered, with its JSON bodies.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/api.xro/2.0/Invoices`.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// The collection addressed, if any.
    pub collection: Option<Collection>,
    /// Request body, if it was JSON.
    pub request: Option<Value>,
    /// Response status.
    pub status: u16,
    /// Response body, if it was JSON.
    pub response: Option<Value>,
}

/// A running sandbox; stops when dropped.
#[derive(Debug)]
pub struct XeroSandbox {
    addr: SocketAddr,
    state: Arc<http::App>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a sandbox on 127.0.0.1.
pub async fn start(config: XeroConfig) -> Result<XeroSandbox, XeroError> {
    let port = config.port;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| XeroError::Bind { port, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| XeroError::Bind { port, source })?;
    let mut books = store::Books::new(config.currency.clone());
    books.seed(config.seed).map_err(XeroError::Seed)?;
    if config.typed_twice {
        books.seed_typed_twice().map_err(XeroError::Seed)?;
    }
    let state = Arc::new(http::App::new(config, books));
    let router = http::router(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!("xero sandbox stopped: {e}");
        }
    });
    Ok(XeroSandbox {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}

impl XeroSandbox {
    /// Base URL, e.g. `http://127.0.0.1:41234` (the API is under
    /// `/api.xro/2.0`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The records of a collection as the API shows them, oldest change first.
    pub fn records(&self, collection: Collection) -> Vec<Value> {
        self.state.with_books(|b| b.list(collection))
    }

    /// One record by id.
    pub fn record(&self, collection: Collection, id: &str) -> Option<Value> {
        self.state.with_books(|b| b.get(collection, id))
    }

    /// Applies a change to a record as a user of Xero would (a `POST` of
    /// `fields` onto it, bypassing auth and rate limit); returns the
    /// validation messages if the change is refused.
    pub fn edit(
        &self,
        collection: Collection,
        id: &str,
        fields: Value,
    ) -> Result<Value, Vec<String>> {
        self.state
            .with_books(|b| b.upsert(collection, Some(id), fields))
    }

    /// Creates a record as a user of Xero would (bypassing auth and rate
    /// limit; validated as a `PUT` is); returns the record, or the
    /// validation messages if it is refused.
    pub fn create(&self, collection: Collection, fields: Value) -> Result<Value, Vec<String>> {
        self.state
            .with_books(|b| b.upsert(collection, None, fields))
    }

    /// Every request answered so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges()
    }

    /// Number of 429 answers so far.
    pub fn rate_limited(&self) -> u64 {
        self.state.rate_limited()
    }

    /// The next write to `collection` is applied, then answered only after
    /// `delay` (past the client's timeout: its answer is lost).
    pub fn stall_next_write(&self, collection: Collection, delay: Duration) {
        self.state.stall_next_write(collection, delay);
    }

    /// The identity server: its counts ([`OAuthServer::stats`]) and test
    /// levers (revoking refresh tokens, the access-token lifetime).
    pub fn oauth(&self) -> Arc<OAuthServer> {
        self.state.oauth().clone()
    }

    /// Changes the rate limit (calls per window; `None`: unlimited).
    pub fn set_rate_limit(&self, limit: Option<u32>) {
        self.state.set_rate_limit(limit);
    }
}

impl Drop for XeroSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Shared mutable state behind a lock that a panic elsewhere cannot poison
/// for good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

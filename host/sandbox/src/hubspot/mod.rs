//! A HubSpot-like CRM API (contacts, companies, deals, line items) on
//! 127.0.0.1, following HubSpot's CRM v3 objects description
//! (`shared/specs/hubspot/`): list with `after` paging, single and batch
//! reads and writes, search on `hs_lastmodifieddate`, v4 associations,
//! bearer-token auth, HubSpot's error shapes, a rolling-window rate limit
//! answered with 429 + `Retry-After`, and generated seed data.
//!
//! Associations: HubSpot answers them on v3 reads with the `associations`
//! query parameter, and reads them in bulk through the v4 API
//! (`POST /crm/v4/associations/{from}/{to}/batch/read`,
//! `GET /crm/v4/objects/{type}/{id}/associations/{toType}`); the sandbox
//! serves all three, as HubSpot does.
//!
//! OAuth: HubSpot's identity server on the same port (see
//! [`crate::oauth`]): `/oauth/authorize`, `/oauth/v1/token`,
//! `/oauth/v1/access-tokens/{token}`. An access token it issued works like
//! the private-app token; an expired or unknown one gets the 401. Test
//! hooks: [`HubSpotSandbox::oauth`].

mod api;
mod api_batch;
mod by_modified;
pub mod openapi;
mod seed;
mod store;
pub mod webhooks;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

pub use seed::{SeedData, TYPED_TWICE};

use crate::oauth::{OAuthServer, OAuthSettings};
pub use store::{CrmObject, DEAL_STAGES, ObjectType, iso};

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct HubSpotConfig {
    /// The private-app token clients must send as `Authorization: Bearer`.
    pub token: String,
    /// Requests allowed per window (HubSpot: 100 or 190 per ten seconds);
    /// `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Data to generate at start.
    pub seed: SeedData,
    /// Also hold a few companies typed in twice ([`TYPED_TWICE`]), as
    /// the demo does for `nexo survey` to find.
    pub typed_twice: bool,
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Keep every request and response (see [`HubSpotSandbox::exchanges`]).
    pub record: bool,
    /// The identity server (always on; the static `token` keeps working).
    pub oauth: OAuthSettings,
}

impl Default for HubSpotConfig {
    fn default() -> Self {
        HubSpotConfig {
            token: "pat-na1-sandbox".into(),
            rate_limit: None,
            seed: SeedData::EMPTY,
            typed_twice: false,
            port: 0,
            record: false,
            oauth: OAuthSettings::hubspot(),
        }
    }
}

/// A rolling-window rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in any window.
    pub requests: u32,
    /// The window (HubSpot's is ten seconds).
    pub per: Duration,
}

/// Why the sandbox or one of its test hooks failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listener could not be opened.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// Port asked for.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// No such live object.
    #[error("no {ty:?} with id {id} in the sandbox")]
    NotFound {
        /// Type.
        ty: ObjectType,
        /// Id.
        id: u64,
    },
    /// HubSpot would refuse these property values.
    #[error("invalid property values: {0}")]
    Invalid(String),
}

/// One request the sandbox answered, with its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path, e.g. `/crm/v3/objects/contacts/search`.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Request body, when it was JSON.
    pub request: Option<Value>,
    /// Status code.
    pub status: u16,
    /// Response body, when there was one.
    pub response: Option<Value>,
}

/// State shared by the server and the test handle.
#[derive(Debug)]
pub(crate) struct App {
    store: Mutex<store::Store>,
    token: String,
    oauth: Arc<OAuthServer>,
    limit: Mutex<Option<RateLimit>>,
    window: Mutex<VecDeque<Instant>>,
    recording: Mutex<Option<Vec<Exchange>>>,
    correlation: AtomicU64,
    refused: AtomicU64,
    served: AtomicU64,
    webhooks: webhooks::Webhooks,
}

/// Lock a mutex even if a holder panicked (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A running sandbox; stops when dropped.
#[derive(Debug)]
pub struct HubSpotSandbox {
    addr: SocketAddr,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Start a sandbox on 127.0.0.1.
pub async fn start(config: HubSpotConfig) -> Result<HubSpotSandbox, SandboxError> {
    let mut data = store::Store::default();
    seed::seed(&mut data, config.seed, now_ms());
    if config.typed_twice {
        seed::typed_twice(&mut data, now_ms());
    }
    let app = Arc::new(App {
        store: Mutex::new(data),
        token: config.token,
        oauth: OAuthServer::hubspot(config.oauth),
        limit: Mutex::new(config.rate_limit),
        window: Mutex::new(VecDeque::new()),
        recording: Mutex::new(config.record.then(Vec::new)),
        correlation: AtomicU64::new(1),
        refused: AtomicU64::new(0),
        served: AtomicU64::new(0),
        webhooks: webhooks::Webhooks::new(),
    });
    webhooks::spawn_dispatcher(&app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
        port: config.port,
        source,
    })?;
    let router = api::router(app.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = served.await {
            tracing::warn!("hubspot sandbox stopped: {e}");
        }
    });
    Ok(HubSpotSandbox {
        addr,
        app,
        stop: Some(stop),
        task,
    })
}

impl HubSpotSandbox {
    /// Base URL, e.g. `http://127.0.0.1:41234` (what a connection's origin override
    /// points `https://api.hubapi.com` to).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Live objects of a type.
    pub fn count(&self, ty: ObjectType) -> usize {
        lock(&self.app.store).count(ty)
    }

    /// Live objects of a type, by id.
    pub fn objects(&self, ty: ObjectType) -> Vec<CrmObject> {
        lock(&self.app.store).live(ty).cloned().collect()
    }

    /// One live object.
    pub fn get(&self, ty: ObjectType, id: u64) -> Option<CrmObject> {
        lock(&self.app.store).get(ty, id).cloned()
    }

    /// Ids of the `to` objects associated with an object.
    pub fn associated(&self, from: ObjectType, id: u64, to: ObjectType) -> Vec<u64> {
        lock(&self.app.store).associated(from, id, to)
    }

    /// Create an object as a person would in HubSpot (validated).
    pub fn create(
        &self,
        ty: ObjectType,
        properties: &[(&str, &str)],
    ) -> Result<CrmObject, SandboxError> {
        let props = to_map(properties);
        lock(&self.app.store)
            .create(ty, props, now_ms())
            .map_err(|e| change_error(ty, e))
    }

    /// Edit an object as a person would (validated; `""` clears a property);
    /// its modification time moves to now.
    pub fn edit(
        &self,
        ty: ObjectType,
        id: u64,
        properties: &[(&str, &str)],
    ) -> Result<CrmObject, SandboxError> {
        lock(&self.app.store)
            .update(ty, id, to_map(properties), now_ms())
            .map_err(|e| change_error(ty, e))
    }

    /// Move a deal to a stage (e.g. `closedwon`).
    pub fn set_deal_stage(&self, id: u64, stage: &str) -> Result<CrmObject, SandboxError> {
        self.edit(ObjectType::Deals, id, &[("dealstage", stage)])
    }

    /// Associate two objects.
    pub fn associate(&self, a: ObjectType, a_id: u64, b: ObjectType, b_id: u64) {
        lock(&self.app.store).associate(a, a_id, b, b_id);
    }

    /// Archive an object as a person would.
    pub fn archive(&self, ty: ObjectType, id: u64) -> bool {
        lock(&self.app.store).archive(ty, id, now_ms())
    }

    /// The identity server: its counts ([`OAuthServer::stats`]) and test
    /// levers (revoking refresh tokens, the access-token lifetime).
    pub fn oauth(&self) -> Arc<OAuthServer> {
        self.app.oauth.clone()
    }

    /// Change the rate limit while running (`None`: unlimited).
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        *lock(&self.app.limit) = limit;
        lock(&self.app.window).clear();
    }

    /// Requests answered 429 so far.
    pub fn rate_limited(&self) -> u64 {
        self.app.refused.load(Ordering::Relaxed)
    }

    /// Requests answered (any status) so far.
    pub fn requests(&self) -> u64 {
        self.app.served.load(Ordering::Relaxed)
    }

    /// Start (or keep) recording exchanges.
    pub fn record(&self) {
        lock(&self.app.recording).get_or_insert_with(Vec::new);
    }

    /// Every exchange recorded so far (empty when not recording).
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.app.recording).clone().unwrap_or_default()
    }

    /// Stop and wait until the listener is closed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for HubSpotSandbox {
    fn drop(&mut self) {
        self.app.webhooks.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn to_map(properties: &[(&str, &str)]) -> BTreeMap<String, String> {
    properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn change_error(ty: ObjectType, e: store::ChangeError) -> SandboxError {
    match e {
        store::ChangeError::NotFound(id) => SandboxError::NotFound { ty, id },
        store::ChangeError::Invalid(errors) => SandboxError::Invalid(
            errors
                .iter()
                .map(|e| format!("{}: {} ({})", e.name, e.message, e.code))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

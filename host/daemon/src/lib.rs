//! `nexo serve`: the host as a daemon on one SQLite database. A scheduler
//! runs pipelines on their schedules and on webhooks; an axum server
//! answers the admin API (`/api`, token-protected), Prometheus (`/metrics`,
//! token-protected unless `--metrics-public`: it names pipelines, plugins
//! and their versions),
//! webhooks (`/hooks/{pipeline}`) and the web console (`/`). SIGTERM lets
//! runs commit their current page and exit; the next start resumes them.
//!
//! **Owns** running the host as a service: schedules, webhooks, the admin
//! API, its tokens and their roles, the audit trail's snapshots, metrics,
//! the console's assets, alerts (their rules' evaluation and the notices
//! sent on their channels), and the living map of what is connected
//! (`map`, which `nexo docs` renders too). **Must not touch**
//! sync decisions or the page path (it asks `nexo-sync`'s engine to run,
//! stop and replay), plugins' sandboxes or the command line.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod clock;
mod console;
pub mod map;
pub mod oauth;
pub mod roles;
pub mod scheduler;
mod views;
pub mod webhook;
pub mod webhook_hubspot;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use clock::Clock;
use nexo_db::sealed::Sealer;
use nexo_registry::Registry;
use nexo_registry::connections::Connections;
use nexo_runtime::metrics::Metrics;
use nexo_sync::Engine;
use scheduler::{Scheduler, SchedulerConfig};

/// The OpenAPI document of the admin API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Everything the daemon's handlers reach.
#[derive(Debug)]
pub struct App {
    /// The sync engine.
    pub engine: Engine,
    /// Installed plugins (and the database).
    pub registry: Registry,
    /// Connections.
    pub connections: Connections,
    /// Seals webhook secrets.
    pub sealer: Sealer,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Webhook deliveries accepted within the tolerance window (on
    /// SQLite; hosts sharing a PostgreSQL record them there).
    pub webhook_replays: webhook::ReplayCache,
    /// OAuth authorizations started from the console, by state.
    pub oauth_flows: oauth::PendingFlows,
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Scheduling.
    pub scheduler: SchedulerConfig,
    /// How often every connection's `check` runs for the dashboard.
    pub health_every: Duration,
    /// Serve `/metrics` without the admin token (for a Prometheus that
    /// cannot send one). Off by default: the metrics name pipelines,
    /// plugins and versions, though never secrets.
    pub metrics_public: bool,
    /// How often the alert rules are evaluated besides after each run.
    pub alerts_every: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            scheduler: SchedulerConfig::default(),
            health_every: Duration::from_secs(300),
            metrics_public: false,
            alerts_every: Duration::from_secs(30),
        }
    }
}

impl App {
    /// Assemble the daemon's state.
    pub fn new(
        engine: Engine,
        registry: Registry,
        connections: Connections,
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Arc<App> {
        let scheduler = Scheduler::new(engine.clone(), clock, config);
        Arc::new(App {
            engine,
            registry,
            connections,
            sealer,
            scheduler,
            webhook_replays: webhook::ReplayCache::default(),
            oauth_flows: oauth::PendingFlows::default(),
        })
    }
}

/// Every route of the daemon; `/metrics` needs the admin token unless
/// `metrics_public`.
pub fn router(app: Arc<App>, metrics_public: bool) -> Router {
    let mut metrics_route = Router::new().route("/metrics", get(metrics));
    if !metrics_public {
        metrics_route = metrics_route.layer(axum::middleware::from_fn_with_state(
            app.clone(),
            api::require_token,
        ));
    }
    Router::new()
        .route("/hooks/{pipeline}", post(webhook::hook))
        .route("/oauth/callback", get(oauth::callback))
        .route("/oauth/tenant", post(oauth::tenant))
        .with_state(app.clone())
        .route("/api/openapi.json", get(openapi))
        .merge(metrics_route)
        .merge(api::routes(app))
        .merge(console::routes())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Metrics::global().render(),
    )
}

/// Serve on `listener` until `shutdown` resolves: start the scheduler,
/// resume interrupted runs, check connections' health now and then; on
/// shutdown stop taking requests, let runs commit their page, and return.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let host = app.engine.host_lease().map(|l| l.host.clone());
    if let Some(host) = &host {
        app.registry
            .db()
            .register_host(
                host,
                env!("CARGO_PKG_VERSION"),
                Some(&addr.to_string()),
                config.scheduler.max_concurrent_runs,
            )
            .map_err(std::io::Error::other)?;
        Metrics::global().host_info(host, env!("CARGO_PKG_VERSION"));
        tracing::info!(%host, "joined the hosts sharing the database");
    }
    match app.scheduler.resume_interrupted() {
        Ok(resumed) if !resumed.is_empty() => {
            tracing::info!(pipelines = ?resumed, "resuming runs left interrupted")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot look for interrupted runs"),
    }
    let scheduler = tokio::spawn(app.scheduler.clone().run());
    let health = tokio::spawn(check_health(app.clone(), config.health_every));
    let alerts = tokio::spawn(alerts::evaluator::run(
        app.clone(),
        config.alerts_every,
        app.scheduler.runs_ended(),
    ));
    tracing::info!(%addr, "serving");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app_for_stop = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: runs stop after committing their current page");
        app_for_stop.scheduler.shutdown().await;
        let _ = stop_tx.send(());
    });
    let server = axum::serve(listener, router(app.clone(), config.metrics_public))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .await;
    health.abort();
    alerts.abort();
    let _ = scheduler.await;
    if let Some(host) = &host
        && let Err(e) = app.registry.db().host_stopped(host)
    {
        tracing::warn!(%host, error = %e, "cannot mark this host stopped; its leases run out by themselves");
    }
    tracing::info!("stopped");
    server
}

/// Run every connection's `check` now and every `every`.
async fn check_health(app: Arc<App>, every: Duration) {
    loop {
        check_connections(&app.connections, app.registry.db()).await;
        tokio::time::sleep(every).await;
    }
}

/// Run every connection's `check` once and save each result as its health
/// (what the dashboard and the map show): the daemon's periodic check and
/// `nexo docs --check`.
pub async fn check_connections(connections: &Connections, db: &nexo_db::Database) {
    let names = db.connection_names(None).unwrap_or_default();
    for name in names {
        let error = connections.test(&name).await.err().map(|e| e.to_string());
        if let Err(e) = db.set_health(&name, error.as_deref()) {
            tracing::warn!(connection = %name, error = %e, "cannot save a health check");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

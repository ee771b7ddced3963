//! The daemon in-process over a [`Kit`]: its `App` and its HTTP server on a
//! free port of 127.0.0.1, for the tests that drive the admin API, webhooks
//! and console over real HTTP.

use std::sync::Arc;

use nexo::serve::clock::Clock;
use nexo::serve::scheduler::SchedulerConfig;
use nexo::serve::{App, ServeConfig};
use nexo::store::sealed::Sealer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::synckit::Kit;

/// The daemon's state over `kit`'s engine, registry and connections, with
/// the sealer of the kit's data directory, on `clock`.
pub fn app(kit: &Kit, clock: Arc<dyn Clock>) -> Arc<App> {
    let sealer = Sealer::from_env_or_file(&kit.dir.path().join("secret.key")).unwrap();
    App::new(
        kit.engine.clone(),
        kit.registry.clone(),
        kit.connections.clone(),
        sealer,
        clock,
        SchedulerConfig::default(),
    )
}

/// The daemon's state of host `host` among the hosts sharing the
/// PostgreSQL of `kit` ([`Kit::on_postgres`]): the kit's engine with a
/// 30 s lease, its registry, connections and sealer, on the system clock.
pub fn shared_app(kit: &Kit, host: &str, config: SchedulerConfig) -> Arc<App> {
    let engine = kit.engine.clone().shared(nexo::sync::HostLease {
        host: host.to_string(),
        lease: std::time::Duration::from_secs(30),
    });
    let sealer = Sealer::from_env_or_file(&kit.dir.path().join("secret.key")).unwrap();
    App::new(
        engine,
        kit.registry.clone(),
        kit.connections.clone(),
        sealer,
        Arc::new(nexo::serve::clock::SystemClock),
        config,
    )
}

/// The daemon on a free port: its base URL, the sender that stops it, and
/// its task (which ends once it has stopped).
pub async fn serve(
    app: Arc<App>,
    config: ServeConfig,
) -> (String, oneshot::Sender<()>, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        nexo::serve::serve(app, listener, config, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (url, tx, handle)
}

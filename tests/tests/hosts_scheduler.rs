//! A host's scheduler on a shared PostgreSQL, alone in its test process:
//! its ticks set process-wide gauges (`nexo_host_leases_held`) that the
//! metrics test of `hosts.rs` reads, so the two never share a process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo::serve::ServeConfig;
use nexo::serve::scheduler::SchedulerConfig;
use nexo_tests::daemon::{serve, shared_app};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;

/// A run asked for through a host starts once its coalescing window has
/// passed, not at the host's next routine look at the pipelines (here a
/// minute away); and runs starting at once on a fresh host fetch the same
/// bundle side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asked_for_run_starts_at_once_and_fresh_hosts_fetch_bundles_side_by_side() {
    let kit = Kit::on_postgres(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("asked", "", "")).await;
    let config = ServeConfig {
        scheduler: SchedulerConfig {
            rescan: std::time::Duration::from_secs(60),
            ..SchedulerConfig::default()
        },
        ..ServeConfig::default()
    };
    let app = shared_app(&kit, "host-a", config.scheduler.clone());
    let (_url, stop, daemon) = serve(app.clone(), config).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.scheduler.trigger("asked").unwrap();
    nexo_tests::cli::until("the asked-for run succeeded", || {
        kit.runs("asked")
            .first()
            .is_some_and(|r| r.status == nexo::sync::store::RunStatus::Succeeded)
    })
    .await;
    let _ = stop.send(());
    daemon.await.unwrap();

    let fresh = tempfile::tempdir().unwrap();
    let registry = nexo::registry::Registry::new(
        kit.db.clone(),
        nexo_tests::runtime().clone(),
        fresh.path().join("bundles"),
    );
    std::thread::scope(|s| {
        let loads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    registry
                        .load_active(nexo_tests::synckit::CRM_PLUGIN)
                        .map(|_| ())
                })
            })
            .collect();
        for load in loads {
            load.join().unwrap().unwrap();
        }
    });
}

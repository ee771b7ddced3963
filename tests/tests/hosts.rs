//! Several `nexo serve` hosts on one PostgreSQL, as an operator sees them:
//! `GET /api/hosts` lists each host with the pipelines it holds, each
//! host's `/metrics` says which host it is, and a signed webhook delivery
//! sent to two hosts is accepted by one only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nexo::serve::scheduler::SchedulerConfig;
use nexo::serve::{App, ServeConfig, webhook};
use nexo::store::cluster::Claim;
use nexo::sync::store::{QueueStore, RunStore};
use nexo_tests::daemon::{serve, shared_app};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;
use serde_json::Value;

/// The admin token the operator calls the API with.
const API_TOKEN: &str = "nexo_hosts_e2e_0c9a51f3";

async fn get(url: &str) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_sharing_a_database_are_listed_with_what_they_hold_and_named_in_metrics() {
    let kit = Kit::on_postgres(tinycrm::seed(3), Default::default(), 50).await;
    // No schedule: nothing fires while the test looks.
    kit.apply(&pipeline("held-by-a", "", "")).await;
    kit.apply(&pipeline("held-by-b", "", "")).await;
    kit.db
        .insert_token("ops", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    // Two other hosts: b runs and holds a pipeline, c stopped cleanly.
    let db = &kit.db;
    db.register_host("host-b", "0.0.1", Some("10.0.0.2:7300"), 2)
        .unwrap();
    db.register_host("host-c", "0.0.1", None, 4).unwrap();
    db.host_stopped("host-c").unwrap();
    assert!(
        db.claim_pipeline("held-by-b", "host-b", 60_000, &Claim::Manual)
            .unwrap()
            .is_some()
    );
    // This host, a, holds one (as while a run of it is in progress).
    assert!(
        db.claim_pipeline("held-by-a", "host-a", 60_000, &Claim::Manual)
            .unwrap()
            .is_some()
    );

    let config = ServeConfig {
        scheduler: SchedulerConfig {
            max_concurrent_runs: 3,
            ..SchedulerConfig::default()
        },
        ..ServeConfig::default()
    };
    let app = shared_app(&kit, "host-a", config.scheduler.clone());
    let (url, stop, daemon) = serve(app.clone(), config).await;
    // A look at the pipelines after this host registered counts its leases.
    let now = chrono::Utc::now();
    app.scheduler.wake();
    app.scheduler.settled(now).await;

    let hosts: Value = get(&format!("{url}/api/hosts")).await.json().await.unwrap();
    assert_eq!(hosts["shared"], true, "{hosts}");
    assert_eq!(hosts["lease_ms"], 30_000);
    assert!(
        hosts["database"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"),
        "{hosts}"
    );
    let host = |id: &str| {
        hosts["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {hosts}"))
            .clone()
    };
    let a = host("host-a");
    assert_eq!(a["this_host"], true, "{a}");
    assert_eq!(a["alive"], true, "{a}");
    assert_eq!(a["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        a["address"].as_str().unwrap(),
        url.trim_start_matches("http://")
    );
    assert_eq!(a["max_concurrent_runs"], 3);
    assert_eq!(a["holding"], serde_json::json!(["held-by-a"]));
    let b = host("host-b");
    assert_eq!(b["this_host"], false, "{b}");
    assert_eq!(b["alive"], true, "{b}");
    assert_eq!(b["address"], "10.0.0.2:7300");
    assert_eq!(b["holding"], serde_json::json!(["held-by-b"]));
    let c = host("host-c");
    assert_eq!(c["alive"], false, "{c}");
    assert!(c["stopped_at"].is_string(), "{c}");
    assert_eq!(c["holding"], serde_json::json!([]));

    // Its /metrics says which host it is, and what it holds.
    let metrics = get(&format!("{url}/metrics")).await.text().await.unwrap();
    let info = format!(
        "nexo_host_info{{host=\"host-a\",version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&info), "{metrics}");
    assert!(metrics.contains("nexo_host_leases_held 1\n"), "{metrics}");
    // Two live hosts (a and b; c stopped): each keeps half of a
    // connection's request budget, so together they keep to it.
    let share = app
        .engine
        .connections()
        .request_budgets()
        .for_connection("crm-a", std::num::NonZeroU32::new(60).unwrap());
    assert_eq!(share.per_minute().get(), 30);

    let _ = stop.send(());
    daemon.await.unwrap();
    // Stopped cleanly: listed as stopped, its lease given back.
    let listed = kit.db.hosts().unwrap();
    let a = listed.iter().find(|h| h.id == "host-a").unwrap();
    assert!(a.stopped_at.is_some() && a.holding.is_empty(), "{a:?}");
}

/// Host `app`'s routes on a free port (no scheduler loop: a trigger only
/// asks for a run in the database).
async fn routes_only(app: Arc<App>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, nexo::serve::router(app, false))
            .await
            .unwrap();
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_accepted_by_one_host_is_refused_as_a_replay_by_another() {
    let kit = Kit::on_postgres(tinycrm::seed(1), Default::default(), 50).await;
    kit.apply(&pipeline("hooked", "", "")).await;
    let a = shared_app(&kit, "host-a", SchedulerConfig::default());
    let b = shared_app(&kit, "host-b", SchedulerConfig::default());
    let secret = webhook::rotate_secret(&kit.db, &a.sealer, "hooked").unwrap();
    let (url_a, url_b) = (routes_only(a).await, routes_only(b).await);
    let http = reqwest::Client::new();
    let deliver = |base: &str, body: &'static str, signature: &str| {
        http.post(format!("{base}/hooks/hooked"))
            .header(webhook::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
    };

    let body = r#"{"event":"contact.updated","id":1}"#;
    let signature = webhook::sign_now(&secret, body.as_bytes());
    let first = deliver(&url_a, body, &signature).await.unwrap();
    assert_eq!(first.status(), 202, "{}", first.text().await.unwrap());
    // The same delivery, captured and sent to the other host.
    let replayed = deliver(&url_b, body, &signature).await.unwrap();
    assert_eq!(replayed.status(), 409);
    let said = replayed.text().await.unwrap();
    assert!(said.contains("already delivered"), "{said}");
    let again = deliver(&url_a, body, &signature).await.unwrap();
    assert_eq!(again.status(), 409);
    // A new event, signed anew, is taken by either host.
    let next = r#"{"event":"contact.updated","id":2}"#;
    let fresh = deliver(&url_b, next, &webhook::sign_now(&secret, next.as_bytes()))
        .await
        .unwrap();
    assert_eq!(fresh.status(), 202, "{}", fresh.text().await.unwrap());
}

/// A plugin installed through one host is loaded by a host with another
/// data directory from the shared database — and a bundle altered there is
/// refused by its digest, not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_installed_through_one_host_loads_on_another_and_an_altered_one_is_refused() {
    let kit = Kit::on_postgres(tinycrm::seed(1), Default::default(), 10).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let other = nexo::registry::Registry::new(
        kit.db.clone(),
        nexo_tests::runtime().clone(),
        elsewhere.path().join("bundles"),
    );
    let (row, _) = other.load_active(nexo_tests::synckit::CRM_PLUGIN).unwrap();
    assert!(
        elsewhere
            .path()
            .join("bundles")
            .join(format!("{}.nexo", row.bundle_sha256))
            .exists(),
        "the fetched bundle is not kept for the next load"
    );
    kit.db
        .postgres()
        .unwrap()
        .with(async |c| {
            c.execute(
                "UPDATE plugin_bundles SET bytes = bytes || '\\x00'::bytea WHERE sha256 = $1",
                &[&row.bundle_sha256],
            )
            .await?;
            Ok(())
        })
        .unwrap();
    let third = tempfile::tempdir().unwrap();
    let err = nexo::registry::Registry::new(
        kit.db.clone(),
        nexo_tests::runtime().clone(),
        third.path().join("bundles"),
    )
    .load_active(nexo_tests::synckit::CRM_PLUGIN)
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("does not match the digest") && err.contains("acme/crm@1.0.0"),
        "{err}"
    );
}

/// While another host holds a pipeline (a run of it in progress there), a
/// run, a dead-letter replay or a person's run started through this host
/// is refused as busy — and does not end the other host's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_on_a_pipeline_another_host_holds_is_refused_as_busy() {
    let kit = Kit::on_postgres(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("shared", "", "")).await;
    kit.b.crm.lock().unwrap().reject_writes = 1;
    kit.run("shared").await;
    let letter = kit.db.dead_letters(Some("shared"), None).unwrap()[0].id;
    // Host b runs it now.
    assert!(
        kit.db
            .claim_pipeline("shared", "host-b", 60_000, &Claim::Manual)
            .unwrap()
            .is_some()
    );
    let b_run = kit.db.begin_run("shared").unwrap();
    assert!(
        kit.db
            .attach_run("shared", "host-b", b_run, 60_000)
            .unwrap()
    );
    let a = kit.engine.clone().shared(nexo::sync::HostLease {
        host: "host-a".into(),
        lease: std::time::Duration::from_secs(30),
    });
    let err = a
        .run("shared", nexo::sync::RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, nexo::sync::SyncError::Busy(_)), "{err}");
    let err = a.replay(letter).await.unwrap_err();
    assert!(matches!(err, nexo::sync::SyncError::Busy(_)), "{err}");
    let b = kit.db.run(b_run).unwrap().unwrap();
    assert_eq!(b.status, nexo::sync::store::RunStatus::Running, "{b:?}");
    // Once b is done, a may.
    kit.db.release_lease("shared", "host-b").unwrap();
    a.replay(letter).await.unwrap();
}

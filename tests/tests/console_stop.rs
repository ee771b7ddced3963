//! Stopping a runaway run from the web console, in a real headless
//! Chromium: the operator opens the running run of a source that never
//! ends, presses "Stop run", and the run ends `cancelled` with its pages
//! kept. Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo
//! xtask setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nexo::serve::ServeConfig;
use nexo::serve::clock::SystemClock;
use nexo::sync::store::{PipelineStore, RunFilter, RunStore};
use nexo::sync::{Pipeline, RunOptions, SyncError};
use nexo_tests::browser::{Browser, Screenshots, click, login, wait_text};
use nexo_tests::cli::until;
use nexo_tests::daemon::{app, serve};
use nexo_tests::programs;
use nexo_tests::synckit::Kit;

const API_TOKEN: &str = "nexo_console_stop_9a3e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stops_a_runaway_run_from_the_console() {
    let browser = Browser::start("console-stop").await;
    let kit = Kit::new(Default::default(), Default::default(), 10).await;
    kit.add_connector("acme/hostile-runs", programs::HOSTILE_RUNS, "runs")
        .await;
    let p = Pipeline::from_toml(
        "name = \"endless\"\nentity = \"contact\"\n\
         [source]\nconnection = \"runs\"\nstream = \"endless\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n",
        "test",
    )
    .unwrap();
    kit.engine.apply(&p).await.unwrap();
    kit.db
        .insert_token("operator", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;

    // A run of a source that always has more, in this process.
    let engine = kit.engine.clone();
    let running = tokio::spawn(async move { engine.run("endless", RunOptions::default()).await });
    let runs = |kit: &Kit| {
        kit.db
            .runs(&RunFilter {
                pipeline: Some("endless".into()),
                ..RunFilter::default()
            })
            .unwrap()
    };
    until("the run to commit pages", || {
        runs(&kit).first().is_some_and(|r| r.pages >= 2)
    })
    .await;
    let id = runs(&kit)[0].id;

    let mut shots = Screenshots::new("console-stop", &[("API token", API_TOKEN)]);
    let c = browser.open().await;
    c.goto(&format!("{url}/")).await.unwrap();
    login(&c, API_TOKEN).await;
    wait_text(&c, "#session-name", "token: operator").await;
    c.goto(&format!("{url}/#/runs/{id}")).await.unwrap();
    wait_text(&c, "#run-status", "running").await;
    shots.step(&c, "running").await;
    click(&c, "#run-stop").await;
    wait_text(&c, "#notice:not([hidden])", "stops after its current page").await;
    // The view follows the run until it ends.
    wait_text(&c, "#run-status", "cancelled").await;
    shots.step(&c, "cancelled").await;

    let ended = running.await.unwrap();
    assert!(
        matches!(ended, Err(SyncError::Cancelled { .. })),
        "{ended:?}"
    );
    let run = kit.db.run(id).unwrap().unwrap();
    assert_eq!(run.status, "cancelled");
    let state = kit.db.pipeline("endless").unwrap().unwrap().state;
    assert_eq!(state, Some(run.counts.read.to_string()));

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
}

//! Runs against a destination that goes down: an outage is ridden out for
//! the pipeline's retry window (and stays stoppable while it waits); an
//! outage longer than the window fails the run, and the next run delivers
//! the rest exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nexo::sync::store::RunStore;
use nexo::sync::{RunOptions, RunStatus, SyncError};
use nexo_tests::synckit::{Kit, contents, pipeline};
use nexo_tests::tinycrm;

fn assert_each_once(kit: &Kit) {
    let emails: Vec<String> = kit
        .b
        .contacts()
        .iter()
        .map(|c| c["email"].as_str().unwrap_or_default().to_string())
        .collect();
    let unique: BTreeSet<_> = emails.iter().collect();
    assert_eq!(emails.len(), unique.len(), "duplicates in the destination");
    assert_eq!(contents(&kit.a), contents(&kit.b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_a_while_is_ridden_out_and_every_record_delivered_once() {
    let kit = Kit::new(tinycrm::seed(20), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    // Twelve failed writes in a row: far more than the five attempts a
    // call used to get, well within the default window of minutes.
    kit.b.crm.lock().unwrap().fail_writes = 12;
    let run = kit.run("a-to-b").await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.counts.created, 20, "{:?}", run.counts);
    assert_eq!(kit.b.crm.lock().unwrap().creates, 20);
    assert_each_once(&kit);
    // Each wait is in the run's log.
    let log = kit.db.run_log(run.run_id.unwrap()).unwrap();
    let waits = log
        .iter()
        .filter(|(_, level, m)| level == "warn" && m.contains("retrying in"))
        .count();
    assert!(waits >= 6, "the waits are not in the run log: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_window_fails_the_run_and_the_next_run_delivers_the_rest_once() {
    let kit = Kit::new(tinycrm::seed(30), Default::default(), 10).await;
    // Every page committed alone, so progress is reported per page.
    kit.apply(&pipeline(
        "a-to-b",
        "batch_size = 10",
        "window = \"1s\"\n[commit]\nrecords = 1",
    ))
    .await;
    // The destination goes down after the first page is delivered.
    let crm = kit.b.crm.clone();
    let progress: nexo::sync::Progress = Arc::new(move |_| {
        crm.lock().unwrap().fail_writes = usize::MAX;
    });
    let failed = kit
        .engine
        .run(
            "a-to-b",
            RunOptions {
                progress: Some(progress),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    let message = failed.to_string();
    assert!(
        matches!(failed, SyncError::Outage { .. }),
        "not an outage: {failed:?}"
    );
    assert!(
        message.contains("crm-b") && message.contains("retry window of 1s"),
        "the message names neither the outage nor the window: {message}"
    );
    let runs = kit.runs("a-to-b");
    assert_eq!(runs[0].status, "failed");
    assert!(runs[0].pages >= 1, "{:?}", runs[0]);
    let delivered = kit.b.crm.lock().unwrap().creates;
    assert!((10..30).contains(&delivered), "{delivered} delivered");

    // The destination is back: the next run delivers the rest, once.
    kit.b.crm.lock().unwrap().fail_writes = 0;
    let next = kit.run("a-to-b").await;
    assert_eq!(next.status, RunStatus::Succeeded);
    assert_eq!(kit.b.crm.lock().unwrap().creates, 30);
    assert_each_once(&kit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_out_an_outage_stops_when_asked() {
    let kit = Kit::new(tinycrm::seed(10), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.b.crm.lock().unwrap().fail_writes = usize::MAX;
    let engine = kit.engine.clone();
    let run = tokio::spawn(async move { engine.run("a-to-b", RunOptions::default()).await });
    // Wait until the run logs its first wait, then ask it to stop.
    let id = loop {
        let waiting = kit.runs("a-to-b").first().and_then(|r| {
            kit.db
                .run_log(r.id)
                .unwrap()
                .iter()
                .any(|(_, _, m)| m.contains("retrying in"))
                .then_some(r.id)
        });
        if let Some(id) = waiting {
            break id;
        }
        assert!(!run.is_finished(), "the run ended without waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nexo::sync::request_stop(&kit.db, id).unwrap();
    let ended = run.await.unwrap().unwrap_err();
    assert!(
        matches!(ended, SyncError::Cancelled { .. }),
        "not cancelled: {ended:?}"
    );
    assert_eq!(kit.db.run(id).unwrap().unwrap().status, "cancelled");
    kit.b.crm.lock().unwrap().fail_writes = 0;
    kit.run("a-to-b").await;
    assert_each_once(&kit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_counted_matched_not_created() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.run("a-to-b").await;
    // The destination applies the next create, then answers too late: the
    // connector times out, the engine retries with the same idempotency
    // key, and the destination finds the contact it made.
    {
        let mut b = kit.b.crm.lock().unwrap();
        b.apply_then_stall = 1;
        b.stall = Duration::from_millis(1500);
    }
    kit.a.insert(serde_json::json!({"first_name": "Lost", "last_name": "Answer", "email": "lost@example.com"}));
    let run = kit.run("a-to-b").await;
    assert_eq!(
        (run.counts.matched, run.counts.created),
        (1, 0),
        "{:?}",
        run.counts
    );
    assert_eq!(kit.b.crm.lock().unwrap().creates, 4);
    let stored = kit.db.run(run.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(stored.counts.matched, 1, "{stored:?}");
    let records = kit.db.run_records(stored.id).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        ["matched"]
    );
    assert_each_once(&kit);
    // Linked: the next run has nothing to do.
    assert_eq!(kit.run("a-to-b").await.counts.written(), 0);
}

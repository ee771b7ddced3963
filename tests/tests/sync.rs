//! The sync engine against real plugins and real servers on 127.0.0.1:
//! exactly-once creates, nothing written when nothing changed, exact
//! updates, retries without duplicates, deletes and conflicts per policy,
//! two-way sync that settles, the quality gate and the dead-letter queue,
//! and a dry run whose plan matches the real run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use nexo::sync::store::{
    ConflictStatus, DeadLetterStatus, PipelineStore, QueueStore, RecordOutcome, RunStore,
};
use nexo::sync::{RunOptions, Side, SyncError};
use nexo_tests::synckit::{Kit, business, contents, pipeline};
use nexo_tests::tinycrm;
use serde_json::json;

fn emails(server: &tinycrm::Server) -> Vec<String> {
    let mut v: Vec<String> = server
        .contacts()
        .iter()
        .map(|c| c["email"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

fn assert_no_duplicates(server: &tinycrm::Server) {
    let all = emails(server);
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "duplicate contacts in the destination"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_creates_then_nothing_then_exactly_the_changes() {
    let kit = Kit::new(tinycrm::seed(230), Default::default(), 40).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;

    let first = kit.run("a-to-b").await;
    assert_eq!(first.counts.read, 230);
    assert_eq!(first.counts.created, 230, "{:?}", first.counts);
    assert_eq!(contents(&kit.a), contents(&kit.b));
    assert_eq!(kit.b.crm.lock().unwrap().creates, 230);

    let second = kit.run("a-to-b").await;
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);
    assert_eq!(second.counts.failed + second.counts.quarantined, 0);

    let ids: Vec<String> = kit
        .a
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for id in ids.iter().step_by(33) {
        kit.a.edit(id, "city", "Paris");
    }
    let changed = ids.iter().step_by(33).count() as u64;
    let third = kit.run("a-to-b").await;
    assert_eq!(third.counts.updated, changed, "{:?}", third.counts);
    assert_eq!(third.counts.created + third.counts.deleted, 0);
    assert_eq!(contents(&kit.a), contents(&kit.b));
    assert_eq!(
        kit.b.crm.lock().unwrap().creates,
        230,
        "no create beyond the first run"
    );

    // History: three runs, per-record outcomes kept.
    let runs = kit.db.runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == "succeeded"));
    let records = kit.db.run_records(third.run_id.unwrap()).unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome == RecordOutcome::Updated)
            .count() as u64,
        changed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_200_and_a_write_applied_then_timed_out_make_no_duplicate() {
    let kit = Kit::new(tinycrm::seed(30), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.b.crm.lock().unwrap().fail_writes = 2;
    let run = kit.run("a-to-b").await;
    assert_eq!(run.counts.created, 30, "{:?}", run.counts);
    assert_eq!(kit.b.crm.lock().unwrap().creates, 30);

    // The destination applies the next create, then answers too late: the
    // connector times out (500 ms) and the engine retries with the same
    // idempotency key.
    {
        let mut b = kit.b.crm.lock().unwrap();
        b.apply_then_stall = 1;
        b.stall = Duration::from_millis(1500);
    }
    for i in 0..3 {
        kit.a.insert(json!({"first_name": "New", "last_name": format!("N{i}"), "email": format!("new{i}@example.com")}));
    }
    let run = kit.run("a-to-b").await;
    // The create whose answer was lost is found by its key: matched.
    assert_eq!(
        (run.counts.created, run.counts.matched),
        (2, 1),
        "{:?}",
        run.counts
    );
    assert_eq!(kit.b.crm.lock().unwrap().creates, 33);
    assert_eq!(kit.b.contacts().len(), 33);
    assert_no_duplicates(&kit.b);
    assert_eq!(contents(&kit.a), contents(&kit.b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_follow_the_pipeline_policy() {
    for policy in ["propagate", "archive", "ignore"] {
        let kit = Kit::new(tinycrm::seed(6), Default::default(), 50).await;
        let deletes = match policy {
            "archive" => {
                "[deletes]\npolicy = \"archive\"\narchive = { lifecycle_stage = \"archived\" }"
                    .to_string()
            }
            other => format!("[deletes]\npolicy = \"{other}\""),
        };
        kit.apply(&pipeline("a-to-b", "", &deletes)).await;
        kit.run("a-to-b").await;
        let victim = kit.a.contacts()[2].clone();
        kit.a.delete(victim["id"].as_str().unwrap());
        let run = kit.run("a-to-b").await;
        let email = victim["email"].as_str().unwrap();
        let in_b: Vec<_> = kit
            .b
            .contacts()
            .into_iter()
            .filter(|c| c["email"] == email)
            .collect();
        match policy {
            "propagate" => {
                assert!(in_b.is_empty(), "{policy}: still in B");
                assert_eq!(run.counts.deleted, 1);
            }
            "archive" => {
                assert_eq!(in_b.len(), 1);
                assert_eq!(in_b[0]["lifecycle_stage"], "archived", "{policy}");
                assert_eq!(run.counts.deleted, 1, "{:?}", run.counts);
            }
            _ => {
                assert_eq!(in_b.len(), 1);
                assert_eq!(business(&in_b[0]), business(&victim), "{policy}: B changed");
                assert_eq!(run.counts.written(), 0);
            }
        }
        assert_eq!(
            kit.b.contacts().len() + usize::from(policy == "propagate"),
            6
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_refresh_notices_records_gone_without_a_trace() {
    let kit = Kit::new(tinycrm::seed(8), Default::default(), 3).await;
    kit.apply(&pipeline(
        "a-to-b",
        "mode = \"full-refresh\"",
        "[deletes]\npolicy = \"propagate\"",
    ))
    .await;
    kit.run("a-to-b").await;
    // Removed behind the API's back: no tombstone to read.
    let gone = kit.a.crm.lock().unwrap().contacts.pop_first().unwrap().1;
    let run = kit.run("a-to-b").await;
    assert_eq!(run.counts.deleted, 1, "{:?}", run.counts);
    assert_eq!(run.counts.written(), 1);
    assert!(!emails(&kit.b).contains(&gone["email"].as_str().unwrap().to_string()));
    assert_eq!(contents(&kit.a), contents(&kit.b));
}

/// Edit one contact on both sides (B first, then A), run, return the kit.
async fn conflict_case(policy: &str) -> (Kit, String) {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    kit.apply(&pipeline(
        "a-to-b",
        "",
        &format!("[conflicts]\npolicy = \"{policy}\""),
    ))
    .await;
    kit.run("a-to-b").await;
    let a_id = kit.a.contacts()[0]["id"].as_str().unwrap().to_string();
    let email = kit.a.contacts()[0]["email"].as_str().unwrap().to_string();
    let b_id = kit
        .b
        .contacts()
        .into_iter()
        .find(|c| c["email"] == email.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    kit.b.edit(&b_id, "city", "Milan");
    tokio::time::sleep(Duration::from_millis(5)).await;
    kit.a.edit(&a_id, "city", "Paris");
    let _ = kit.run("a-to-b").await;
    (kit, b_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_edits_are_settled_by_each_policy() {
    for (policy, expect) in [
        ("source-wins", "Paris"),
        ("destination-wins", "Milan"),
        ("newest-wins", "Paris"),
        ("hold", "Milan"),
    ] {
        let (kit, b_id) = conflict_case(policy).await;
        assert_eq!(kit.b.contact(&b_id).unwrap()["city"], expect, "{policy}");
        let conflicts = kit.db.conflicts(Some("a-to-b"), None).unwrap();
        assert_eq!(conflicts.len(), 1, "{policy}: {conflicts:?}");
        assert_eq!(conflicts[0].conflict.fields, ["city"], "{policy}");
        let open = policy == "hold";
        assert_eq!(
            conflicts[0].status == ConflictStatus::Open,
            open,
            "{policy}"
        );
        if open {
            // A person takes the source's side.
            kit.engine
                .resolve(conflicts[0].id, Side::Source)
                .await
                .unwrap();
            assert_eq!(kit.b.contact(&b_id).unwrap()["city"], "Paris");
            assert_eq!(
                kit.db
                    .conflicts(None, Some(ConflictStatus::Open))
                    .unwrap()
                    .len(),
                0
            );
            // Settled: the next run has nothing to do.
            let again = kit.run("a-to-b").await;
            assert_eq!(
                again.counts.written() + again.counts.conflicts,
                0,
                "{:?}",
                again.counts
            );
        }
    }
    // The destination's side, taken by a person.
    let (kit, b_id) = conflict_case("hold").await;
    let id = kit.db.conflicts(None, Some(ConflictStatus::Open)).unwrap()[0].id;
    kit.engine.resolve(id, Side::Destination).await.unwrap();
    assert_eq!(kit.b.contact(&b_id).unwrap()["city"], "Milan");
    let again = kit.run("a-to-b").await;
    assert_eq!(again.counts.written(), 0, "{:?}", again.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_sync_settles_without_ping_pong() {
    let mut b_seed = tinycrm::seed(5);
    // B has its own contacts too (different people).
    for c in b_seed.values_mut() {
        c["email"] = json!(c["email"].as_str().unwrap().replace("ada", "bea"));
    }
    let kit = Kit::new(tinycrm::seed(12), b_seed, 4).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.apply(
        &pipeline("b-to-a", "", "")
            .replace("connection = \"crm-a\"", "connection = \"@A\"")
            .replace("connection = \"crm-b\"", "connection = \"crm-a\"")
            .replace("connection = \"@A\"", "connection = \"crm-b\""),
    )
    .await;
    let mut written = Vec::new();
    for round in 0..10 {
        if round == 4 {
            let id = kit.a.contacts()[1]["id"].as_str().unwrap().to_string();
            kit.a.edit(&id, "phone", "+33 1 00 00 00 00");
        }
        let ab = kit.run("a-to-b").await;
        let ba = kit.run("b-to-a").await;
        written.push((ab.counts.written(), ba.counts.written()));
    }
    assert_eq!(written[0], (12, 5), "{written:?}");
    assert_eq!(
        written[4],
        (1, 0),
        "the edit goes over once, no echo: {written:?}"
    );
    for (i, w) in written.iter().enumerate() {
        if i != 0 && i != 4 {
            assert_eq!(*w, (0, 0), "round {i} wrote something: {written:?}");
        }
    }
    assert_eq!(contents(&kit.a), contents(&kit.b));
    assert_eq!(kit.a.contacts().len(), 17);
    assert_no_duplicates(&kit.a);
    assert_no_duplicates(&kit.b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_its_plan_is_what_the_run_does() {
    let kit = Kit::new(tinycrm::seed(10), Default::default(), 4).await;
    kit.apply(&pipeline("a-to-b", "", "[deletes]\npolicy = \"propagate\""))
        .await;
    kit.run("a-to-b").await;
    let ids: Vec<String> = kit
        .a
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    kit.a.edit(&ids[1], "city", "Lyon");
    kit.a.edit(&ids[2], "email", "changed@example.com");
    kit.a.delete(&ids[3]);
    kit.a.insert(
        json!({"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"}),
    );

    let before_b = kit.b.contacts();
    let before_requests = kit.b.crm.lock().unwrap().requests.len();
    let before_state = kit.db.pipeline("a-to-b").unwrap().unwrap().state;
    let runs_before = kit.db.runs(&Default::default()).unwrap().len();
    let dry = kit.dry_run("a-to-b").await;
    assert_eq!(
        kit.b.contacts(),
        before_b,
        "a dry run changed the destination"
    );
    let writes = kit.b.crm.lock().unwrap().requests[before_requests..]
        .iter()
        .filter(|r| !r.starts_with("GET"))
        .count();
    assert_eq!(writes, 0, "a dry run sent writes");
    assert_eq!(
        kit.db.pipeline("a-to-b").unwrap().unwrap().state,
        before_state
    );
    assert_eq!(kit.db.runs(&Default::default()).unwrap().len(), runs_before);

    let mut plan: Vec<(String, &str)> = dry
        .plan
        .iter()
        .map(|c| (c.source_id.clone(), c.action))
        .collect();
    plan.sort();
    let city = dry.plan.iter().find(|c| c.source_id == ids[1]).unwrap();
    assert_eq!(city.diff.len(), 1);
    assert_eq!(
        (city.diff[0].field.as_str(), &city.diff[0].after),
        ("city", &json!("Lyon"))
    );

    let real = kit.run("a-to-b").await;
    let mut done: Vec<(String, &str)> = kit
        .db
        .run_records(real.run_id.unwrap())
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            let action = match r.outcome {
                RecordOutcome::Created => "create",
                RecordOutcome::Updated => "update",
                RecordOutcome::Deleted => "delete",
                _ => return None,
            };
            Some((r.source_id, action))
        })
        .collect();
    done.sort();
    assert_eq!(plan, done);
    assert_eq!(plan.len(), 4, "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_records_are_quarantined_rejected_ones_dead_lettered_the_rest_proceed() {
    let kit = Kit::new(tinycrm::seed(5), Default::default(), 10).await;
    // A mapper that turns one record's email into a number: dirty data the
    // destination's schema refuses.
    let dirty = kit
        .a
        .insert(json!({"first_name": "Bad", "last_name": "Type", "email": "bad@type.test"}));
    let refused = kit
        .a
        .insert(json!({"first_name": "No", "last_name": "At", "email": "no-at-sign"}));
    kit.apply(&pipeline(
        "a-to-b",
        "",
        &format!("[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = {{ patch = {{ {dirty} = {{ email = 42 }} }} }}"),
    ))
    .await;
    let run = kit.run("a-to-b").await;
    assert_eq!(run.counts.created, 5, "{:?}", run.counts);
    assert_eq!(run.counts.quarantined, 1);
    assert_eq!(run.counts.failed, 1);
    let letters = kit
        .db
        .dead_letters(Some("a-to-b"), Some(DeadLetterStatus::Open))
        .unwrap();
    let q = letters
        .iter()
        .find(|l| l.letter.source_id == dirty)
        .unwrap();
    assert_eq!(q.letter.class, "schema");
    assert_eq!(q.letter.field.as_deref(), Some("email"));
    let f = letters
        .iter()
        .find(|l| l.letter.source_id == refused)
        .unwrap();
    assert_eq!(f.letter.class, "rejected");
    assert!(f.letter.error.contains("email"), "{}", f.letter.error);

    // Replaying unchanged data fails again and stays in the queue.
    let err = kit.engine.replay(f.id).await.unwrap_err();
    assert!(err.to_string().contains("failed again"), "{err}");
    let err = kit.engine.replay(q.id).await.unwrap_err();
    assert!(err.to_string().contains("quality gate"), "{err}");
    assert_eq!(
        kit.db
            .dead_letters(None, Some(DeadLetterStatus::Open))
            .unwrap()
            .len(),
        2
    );

    // A temporary refusal: replay delivers it, once.
    kit.b.crm.lock().unwrap().reject_writes = 1;
    let late_id = kit
        .a
        .insert(json!({"first_name": "Late", "last_name": "Comer", "email": "late@example.com"}));
    let run = kit.run("a-to-b").await;
    assert_eq!(run.counts.failed, 1, "{:?}", run.counts);
    let late = kit
        .db
        .dead_letters(None, Some(DeadLetterStatus::Open))
        .unwrap()
        .into_iter()
        .find(|l| l.letter.source_id == late_id)
        .unwrap();
    kit.engine.replay(late.id).await.unwrap();
    assert!(emails(&kit.b).contains(&"late@example.com".to_string()));
    assert_eq!(
        kit.db.dead_letter(late.id).unwrap().unwrap().status,
        DeadLetterStatus::Replayed
    );
    assert!(kit.engine.replay(late.id).await.is_err(), "replayed twice");
    // The next run does not write it again either.
    assert_eq!(kit.run("a-to-b").await.counts.written(), 0);
    kit.engine.discard(q.id).unwrap();
    assert_eq!(
        kit.db.dead_letter(q.id).unwrap().unwrap().status,
        DeadLetterStatus::Discarded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_returning_malformed_records_fails_the_run_and_changes_nothing() {
    let kit = Kit::new(tinycrm::seed(6), Default::default(), 10).await;
    let mapper = |malformed: bool| {
        format!(
            "[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = {{ malformed = {malformed}, set = {{ lifecycle_stage = \"customer\" }} }}"
        )
    };
    kit.apply(&pipeline("a-to-b", "", &mapper(true))).await;
    let err = kit
        .engine
        .run("a-to-b", RunOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, SyncError::Plugin { step: "map", .. }),
        "{msg}"
    );
    assert!(
        msg.contains("acme/test-mapper") && msg.contains("not a JSON object"),
        "{msg}"
    );
    assert!(kit.b.contacts().is_empty());
    assert_eq!(kit.db.pipeline("a-to-b").unwrap().unwrap().state, None);
    let runs = kit.db.runs(&Default::default()).unwrap();
    assert_eq!(runs[0].status, "failed");
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not a JSON object")
    );

    // Fixed mapper: the run goes through and the mapper's change lands.
    kit.apply(&pipeline("a-to-b", "", &mapper(false))).await;
    let run = kit.run("a-to-b").await;
    assert_eq!(run.counts.created, 6);
    assert!(
        kit.b
            .contacts()
            .iter()
            .all(|c| c["lifecycle_stage"] == "customer")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_validated_against_what_is_installed() {
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 10).await;
    let bad = [
        (
            pipeline("p", "", "").replace("\"crm-b\"", "\"nope\""),
            "destination.connection",
        ),
        (
            pipeline("p", "", "").replace(
                "stream = \"contacts\"\n[destination]",
                "stream = \"deals\"\n[destination]",
            ),
            "source.stream",
        ),
        (
            pipeline("p", "", "[[mappers]]\nplugin = \"acme/none\""),
            "mappers[0].plugin",
        ),
    ];
    for (text, field) in bad {
        let p = nexo::sync::Pipeline::from_toml(&text, "t").unwrap();
        let err = kit.engine.apply(&p).await.unwrap_err().to_string();
        assert!(err.contains(field), "expected {field}: {err}");
    }
    // Sandbox and production never meet in one pipeline.
    let mut prod =
        nexo_tests::synckit::connection("crm-prod", &kit.b, json!({"base_url": kit.b.url()}));
    prod.environment = nexo::store::connections::Environment::Production;
    kit.connections.add(prod).unwrap();
    let p = nexo::sync::Pipeline::from_toml(
        &pipeline("p", "", "").replace("\"crm-b\"", "\"crm-prod\""),
        "t",
    )
    .unwrap();
    let err = kit.engine.apply(&p).await.unwrap_err().to_string();
    assert!(
        err.contains("production") && err.contains("sandbox"),
        "{err}"
    );
    assert!(kit.db.pipelines().unwrap().is_empty(), "nothing saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changed_while_a_run_pages_through_are_not_skipped() {
    let kit = Kit::new(tinycrm::seed(80), Default::default(), 5).await;
    kit.apply(&pipeline("a-to-b", "look_back_seconds = 60", ""))
        .await;
    // Slow writes: the run takes long enough to be edited under.
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(4);
    let engine = kit.engine.clone();
    let run = tokio::spawn(async move { engine.run("a-to-b", RunOptions::default()).await });
    let ids: Vec<String> = kit
        .a
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let mut edited = 0;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        // One record the run has probably passed, one probably ahead.
        for id in [&ids[round * 3], &ids[40 + round * 5]] {
            kit.a.edit(id, "city", format!("Moved {round}"));
            edited += 1;
        }
    }
    let first = run.await.unwrap().unwrap();
    assert_eq!(first.counts.failed, 0);
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    let second = kit.run("a-to-b").await;
    assert_eq!(
        contents(&kit.a),
        contents(&kit.b),
        "an edit made during the run was lost"
    );
    assert!(second.counts.written() <= edited, "{:?}", second.counts);
    assert_eq!(kit.b.crm.lock().unwrap().creates, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_applies_to_the_next_run_while_the_run_in_flight_keeps_its_version() {
    let kit = Kit::new(tinycrm::seed(60), Default::default(), 5).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(4);
    let engine = kit.engine.clone();
    let in_flight = tokio::spawn(async move { engine.run("a-to-b", RunOptions::default()).await });
    // Upgrade once the run has started, and check it had not finished.
    let running = loop {
        if let Some(r) = kit.db.runs(&Default::default()).unwrap().first() {
            break r.id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    kit.upgrade_crm("1.1.0").await;
    assert_eq!(
        kit.db.run(running).unwrap().unwrap().status,
        "running",
        "upgraded too late"
    );
    let first = in_flight.await.unwrap().unwrap();
    assert_eq!(
        first.counts.created, 60,
        "the run in flight finished: {:?}",
        first.counts
    );
    let next = kit.run("a-to-b").await;
    let versions = |run| {
        kit.db
            .run_log(run)
            .unwrap()
            .into_iter()
            .find(|(_, _, m)| m.starts_with("plugins:"))
            .unwrap()
            .2
    };
    let old = versions(first.run_id.unwrap());
    let new = versions(next.run_id.unwrap());
    assert!(
        old.contains("acme/crm@1.0.0") && !old.contains("1.1.0"),
        "{old}"
    );
    assert!(
        new.contains("source acme/crm@1.1.0") && new.contains("destination acme/crm@1.1.0"),
        "{new}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_in_use_by_a_pipeline_is_not_removed_from_under_it() {
    let kit = Kit::new(tinycrm::seed(2), Default::default(), 10).await;
    kit.apply(&pipeline(
        "a-to-b",
        "",
        "[[mappers]]\nplugin = \"acme/test-mapper\"",
    ))
    .await;
    let err = kit
        .registry
        .remove("acme/test-mapper", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pipeline(s) a-to-b"), "{err}");
    assert!(
        kit.registry.load_active("acme/test-mapper").is_ok(),
        "still installed"
    );
    kit.registry.remove("acme/test-mapper", true).unwrap();
    let err = kit
        .engine
        .run("a-to-b", RunOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("acme/test-mapper") && err.contains("not installed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_on_two_consecutive_pages_of_one_run_is_created_once_then_updated() {
    // Nine contacts in pages of five; right after serving the first page,
    // crm-a's first contact is edited, so the second (last) page serves it
    // again. Slow writes to crm-b make sure the second page has been read
    // (ahead) while the first is still being written: the first page's
    // commit is then still held when the second page looks its records
    // up, and must land first for that lookup to see the link.
    let kit = Kit::new(tinycrm::seed(9), Default::default(), 5).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.a.crm.lock().unwrap().edit_after_first_page = true;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(30);
    let first = kit.run("a-to-b").await;
    assert!(
        !kit.a.crm.lock().unwrap().edit_after_first_page,
        "the edit between the pages happened"
    );
    assert_eq!(
        (
            first.counts.read,
            first.counts.created,
            first.counts.updated,
            first.counts.failed
        ),
        (10, 9, 1, 0),
        "{:?}",
        first.counts
    );
    assert_eq!(kit.b.crm.lock().unwrap().creates, 9);
    assert_no_duplicates(&kit.b);
    assert_eq!(contents(&kit.a), contents(&kit.b));
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    let second = kit.run("a-to-b").await;
    assert_eq!(second.counts.written(), 0, "{:?}", second.counts);
}

//! Unit tests of the sync core, the whole page path driven against the
//! in-memory store and fake plugins of `testkit`: classification, the
//! decisions, delivery with retries, settling, the held commit,
//! duplicates, conflicts and dry runs. No Wasm, no SQLite, no network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use super::commit::Committer;
use super::content::{Content, SystemFields};
use super::decide::PendingWrite;
use super::dry_run::{DryDestination, DryRun};
use super::page::{self, Deduped, PageContext};
use super::retry::Waiter;
use super::store::{
    ConflictStatus, LinkStore, LinkUpdate, PageCommit, PageStore, RecordOutcome, RunStore,
};
use super::testkit::*;
use nexo_runtime::GuestError;
use nexo_runtime::PluginError;
use nexo_runtime::plugin::CheckedPage;

fn hash(json: &str) -> String {
    Content::of(json, &SystemFields::default()).unwrap().hash()
}

/// Each source id's outcome, in the order settled.
fn outcomes(store: &MemoryStore) -> Vec<(String, RecordOutcome)> {
    store
        .results()
        .into_iter()
        .map(|r| (r.source_id, r.outcome))
        .collect()
}

fn out(pairs: &[(&str, RecordOutcome)]) -> Vec<(String, RecordOutcome)> {
    pairs.iter().map(|(s, o)| (s.to_string(), *o)).collect()
}

/// A source record `id` linked to entity `e` and synced with the
/// destination as `json`; its destination record `dest` known as
/// `dest_json`, synced as `json`.
fn linked(store: &MemoryStore, id: &str, e: i64, json: &str, dest: &str, dest_json: &str) {
    store.seed(
        ("crm", "contacts"),
        id,
        e,
        json,
        ("books", "contacts"),
        Some(&hash(json)),
    );
    store.seed(
        ("books", "contacts"),
        dest,
        e,
        dest_json,
        ("crm", "contacts"),
        Some(&hash(json)),
    );
}

#[tokio::test]
async fn classification_tells_new_changed_unchanged_echo_and_deleted_apart() {
    let store = Arc::new(MemoryStore::default());
    linked(&store, "changed", 1, r#"{"n":1}"#, "d1", r#"{"n":1}"#);
    linked(&store, "same", 2, r#"{"n":3}"#, "d2", r#"{"n":3}"#);
    // Nexo wrote {"n":5}; the system sends it back with a field of its own.
    linked(&store, "echo", 3, r#"{"n":5}"#, "d3", r#"{"n":5}"#);
    linked(&store, "gone", 4, r#"{"n":6}"#, "d4", r#"{"n":6}"#);
    let p = prepared(
        "",
        Arc::new(FakeSource::default()),
        Arc::new(FakeDestination::default()),
    );
    let waiter = Waiter {
        store: store.clone(),
        run: 1,
        stop: None,
        pipeline: "p".into(),
        retry: p.pipeline.retry.clone(),
    };
    let ctx = PageContext::over(&p, store.as_ref(), &waiter);
    let records = vec![
        record("new", r#"{"n":0}"#),
        record("changed", r#"{"n":2}"#),
        record("same", r#"{"n":3}"#),
        record("echo", r#"{"n":5,"number":"INV-1"}"#),
        deletion("gone"),
    ];
    let classified = page::classify(ctx, Deduped::of(records, Vec::new())).unwrap();
    // Settled at once: only the record exactly as last synced.
    let settled: Vec<_> = classified
        .commit
        .results
        .iter()
        .map(|r| (r.source_id.as_str(), r.outcome))
        .collect();
    assert_eq!(settled, [("same", RecordOutcome::Unchanged)]);
    // Going on: the new one (no entity), the changed one and the echo
    // that holds more than this destination saw, and the deletion.
    let items: Vec<_> = classified
        .items
        .iter()
        .map(|i| (i.source_id.as_str(), i.entity_id, i.delete))
        .collect();
    assert_eq!(
        items,
        [
            ("new", None, false),
            ("changed", Some(1), false),
            ("echo", Some(3), false),
            ("gone", Some(4), true)
        ]
    );
    let to_map: Vec<_> = classified.changed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(to_map, ["new", "changed", "echo"]);
    assert_eq!(classified.entities, [1, 3, 4].into_iter().collect());
}

#[tokio::test]
async fn decisions_create_update_skip_and_hold_a_change_on_both_sides() {
    let store = Arc::new(MemoryStore::default());
    // Changed in the source only: updated.
    linked(&store, "upd", 1, r#"{"n":1}"#, "d1", r#"{"n":1}"#);
    // Changed in the source to what the destination already has: skipped.
    linked(&store, "skip", 2, r#"{"n":1}"#, "d2", r#"{"n":2}"#);
    // Changed on both sides since the last sync: held.
    linked(&store, "both", 3, r#"{"n":1}"#, "d3", r#"{"n":9}"#);
    let source = FakeSource::new(vec![Ok(page(
        vec![
            record("new", r#"{"n":0}"#),
            record("upd", r#"{"n":2}"#),
            record("skip", r#"{"n":2}"#),
            record("both", r#"{"n":3}"#),
        ],
        "s1",
        false,
    ))]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared(
        "[conflicts]\npolicy = \"hold\"",
        Arc::new(source),
        dest.clone(),
    );
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(
        outcomes(&store),
        out(&[
            ("new", RecordOutcome::Created),
            ("upd", RecordOutcome::Updated),
            ("skip", RecordOutcome::Unchanged),
            ("both", RecordOutcome::Conflict),
        ])
    );
    assert_eq!(
        (counts.created, counts.updated, counts.conflicts),
        (1, 1, 1)
    );
    // Only the create and the update were sent.
    let sent: Vec<_> = dest.calls().concat().into_iter().map(|r| r.id).collect();
    assert_eq!(sent, ["", "d1"]);
    let held = store.all_conflicts();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].status, ConflictStatus::Open);
    assert_eq!(held[0].conflict.fields, ["n"]);
    assert!(serde_json::from_str::<PendingWrite>(&held[0].conflict.source_record).is_ok());
}

#[tokio::test]
async fn a_conflict_settled_by_policy_writes_the_source_and_says_so() {
    let store = Arc::new(MemoryStore::default());
    linked(&store, "both", 3, r#"{"n":1}"#, "d3", r#"{"n":9}"#);
    let source = FakeSource::new(vec![Ok(page(
        vec![record("both", r#"{"n":3}"#)],
        "s1",
        false,
    ))]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared(
        "[conflicts]\npolicy = \"source-wins\"",
        Arc::new(source),
        dest.clone(),
    );
    run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(outcomes(&store), out(&[("both", RecordOutcome::Updated)]));
    let conflicts = store.all_conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].status, ConflictStatus::AutoResolved);
    assert_eq!(dest.records()["d3"], r#"{"n":3}"#);
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_then_the_write_succeeds() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", false))]);
    let dest = Arc::new(FakeDestination::scripted(vec![Script::Fail(
        GuestError::RateLimited { retry_after_ms: 3 },
    )]));
    let p = prepared("", Arc::new(source), dest.clone());
    run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(outcomes(&store), out(&[("a", RecordOutcome::Created)]));
    assert_eq!(dest.calls().len(), 2);
    assert_eq!(dest.records().len(), 1);
}

#[tokio::test]
async fn a_server_error_is_retried_then_the_write_succeeds() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", false))]);
    let dest = Arc::new(FakeDestination::scripted(vec![
        Script::Fail(GuestError::Transient("503".into())),
        Script::Fail(GuestError::Transient("502".into())),
    ]));
    let p = prepared("", Arc::new(source), dest.clone());
    run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(outcomes(&store), out(&[("a", RecordOutcome::Created)]));
    assert_eq!(dest.calls().len(), 3);
}

#[tokio::test]
async fn a_lost_answer_is_retried_with_the_same_key_and_creates_nothing_twice() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", false))]);
    let dest = Arc::new(FakeDestination::scripted(vec![Script::LoseAnswer]));
    let p = prepared("", Arc::new(source), dest.clone());
    run_over(&p, store.clone(), None, false).await.unwrap();
    let calls = dest.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0][0].cursor, calls[1][0].cursor, "the retry's key");
    assert_eq!(dest.records().len(), 1, "created once");
    // The destination answered with the record it already held.
    assert_eq!(outcomes(&store), out(&[("a", RecordOutcome::Matched)]));
    let links = store.links_dump();
    assert!(links.iter().any(|(c, id, _, _)| c == "books" && id == "d1"));
}

#[tokio::test]
async fn a_rejected_record_is_dead_lettered_alone() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(
        vec![
            record("a", r#"{"n":1}"#),
            record("bad", r#"{"reject":true}"#),
            record("c", r#"{"n":3}"#),
        ],
        "s1",
        false,
    ))]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared("", Arc::new(source), dest.clone());
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(
        outcomes(&store),
        out(&[
            ("a", RecordOutcome::Created),
            ("bad", RecordOutcome::Failed),
            ("c", RecordOutcome::Created),
        ])
    );
    assert_eq!((counts.created, counts.failed), (2, 1));
    let letters = store.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.source_id, "bad");
    assert_eq!(letters[0].letter.class, "rejected");
    let w: PendingWrite = serde_json::from_str(&letters[0].letter.record).unwrap();
    assert_eq!(w.payload, serde_json::json!({"reject": true}));
    // Rejected is not retried: one call.
    assert_eq!(dest.calls().len(), 1);
}

#[tokio::test]
async fn a_settled_create_links_both_records_to_one_entity_in_step() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", false))]);
    let p = prepared("", Arc::new(source), Arc::new(FakeDestination::default()));
    run_over(&p, store.clone(), None, false).await.unwrap();
    let crm = store
        .links(
            "contact",
            "crm",
            "contacts",
            &["a"],
            Some(&p.pipeline.destination),
        )
        .unwrap();
    let books = store
        .links(
            "contact",
            "books",
            "contacts",
            &["d1"],
            Some(&p.pipeline.source),
        )
        .unwrap();
    assert_eq!(crm[0].entity_id, books[0].entity_id);
    assert_eq!(crm[0].synced_hash, Some(hash(r#"{"n":1}"#)));
    assert_eq!(books[0].known.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(books[0].synced_hash, Some(hash(r#"{"n":1}"#)));
    assert_eq!(store.state().as_deref(), Some("s1"));
    // Read again unchanged: nothing to do.
    let again = FakeSource::new(vec![Ok(page(vec![record("a", r#"{"n":1}"#)], "s2", false))]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared("", Arc::new(again), dest.clone());
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(counts.unchanged, 1);
    assert!(dest.calls().is_empty());
}

#[tokio::test]
async fn a_held_page_waits_for_the_next_pages_lookups() {
    let store = Arc::new(MemoryStore::default());
    let mut committer = Committer::new(
        store.clone(),
        "p",
        1,
        &crate::pipeline::Endpoint {
            connection: "crm".into(),
            stream: "contacts".into(),
        },
        crate::pipeline::CommitGrouping::PER_PAGE,
        Vec::new(),
        None,
        None,
    );
    let p = prepared(
        "",
        Arc::new(FakeSource::default()),
        Arc::new(FakeDestination::default()),
    );
    let link = LinkUpdate {
        entity_id: Some(7),
        entity: "contact".into(),
        group: 1,
        connection: "crm".into(),
        stream: "contacts".into(),
        record_id: "a".into(),
        known: None,
        synced_hash: None,
        peer: p.dest_end.clone(),
        version: None,
        deleted: false,
    };
    let page = || PageCommit {
        links: vec![link.clone()],
        ..PageCommit::default()
    };
    committer.hold(page());
    assert_eq!(store.commits(), 0, "held, not committed");
    // Lookups of other records and entities do not need it.
    committer.expose_records(&["x"]).await.unwrap();
    committer
        .expose_entities(&HashSet::from([8]))
        .await
        .unwrap();
    assert_eq!(store.commits(), 0);
    // A lookup of a record it links does.
    committer.expose_records(&["x", "a"]).await.unwrap();
    assert_eq!(store.commits(), 1);
    // In flight: a lookup of an entity it links waits for it to land.
    committer.hold(page());
    committer.launch_due().await.unwrap();
    committer
        .expose_entities(&HashSet::from([7]))
        .await
        .unwrap();
    assert_eq!(store.commits(), 2);
    assert_eq!(committer.pages(), 2);
}

#[tokio::test]
async fn a_record_of_the_held_page_seen_again_is_not_created_twice() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![
        Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", true)),
        Ok(page(vec![record("a", r#"{"n":2}"#)], "s2", false)),
    ]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared("", Arc::new(source), dest.clone());
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(
        outcomes(&store),
        out(&[("a", RecordOutcome::Created), ("a", RecordOutcome::Updated)])
    );
    assert_eq!(counts.created, 1);
    assert_eq!(dest.records().len(), 1);
    assert_eq!(dest.records()["d1"], r#"{"n":2}"#);
    assert_eq!(store.state().as_deref(), Some("s2"));
}

/// `n` pages of 100 new records each, the last with no more to follow.
fn hundreds(n: usize) -> Vec<Result<CheckedPage, PluginError>> {
    (0..n)
        .map(|p| {
            let records = (0..100)
                .map(|i| record(&format!("r{p}-{i}"), r#"{"n":1}"#))
                .collect();
            Ok(page(records, &format!("s{}", p + 1), p + 1 < n))
        })
        .collect()
}

#[tokio::test]
async fn pages_are_committed_in_groups_each_with_the_last_pages_cursor() {
    for (commit, transactions) in [("records = 1", 10), ("records = 300", 4)] {
        let store = Arc::new(MemoryStore::default());
        let source = FakeSource::new(hundreds(10));
        let dest = Arc::new(FakeDestination::default());
        let p = prepared(
            &format!("[commit]\n{commit}\nwait_ms = 60000"),
            Arc::new(source),
            dest.clone(),
        );
        let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
        assert_eq!(counts.created, 1000, "{commit}");
        assert_eq!(dest.records().len(), 1000, "{commit}");
        // Three pages a group (the fourth page's lookups go first), the
        // last page alone at the end.
        assert_eq!(store.commits(), transactions, "{commit}");
        assert_eq!(store.state().as_deref(), Some("s10"), "{commit}");
        let runs = store.runs(&Default::default()).unwrap();
        assert_eq!(runs[0].pages, 10, "every page counted: {commit}");
        assert_eq!(outcomes(&store).len(), 1000, "{commit}");
    }
}

#[tokio::test]
async fn a_record_of_an_earlier_page_of_the_held_group_is_not_created_twice() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![
        Ok(page(vec![record("b", r#"{"n":1}"#)], "s1", true)),
        Ok(page(vec![record("a", r#"{"n":1}"#)], "s2", true)),
        Ok(page(vec![record("c", r#"{"n":1}"#)], "s3", true)),
        Ok(page(vec![record("a", r#"{"n":2}"#)], "s4", false)),
    ]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared(
        "[commit]\nrecords = 1000\nwait_ms = 60000",
        Arc::new(source),
        dest.clone(),
    );
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!((counts.created, counts.updated), (3, 1));
    assert_eq!(dest.records().len(), 3);
    assert!(dest.records().values().any(|v| v == r#"{"n":2}"#));
    assert_eq!(store.state().as_deref(), Some("s4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_the_group_still_committing_is_not_created_twice() {
    // Each page its own group, each commit slow: page 3's lookups run
    // while page 1's group may still be committing beside page 2.
    let store = Arc::new(MemoryStore::default());
    store.set_commit_delay(std::time::Duration::from_millis(200));
    let source = FakeSource::new(vec![
        Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", true)),
        Ok(page(vec![record("b", r#"{"n":1}"#)], "s2", true)),
        Ok(page(vec![record("a", r#"{"n":2}"#)], "s3", false)),
    ]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared(
        "[commit]\nrecords = 1\nwait_ms = 60000",
        Arc::new(source),
        dest.clone(),
    );
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!((counts.created, counts.updated), (2, 1));
    assert_eq!(dest.records().len(), 2);
    assert_eq!(store.state().as_deref(), Some("s3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_group_commit_no_later_group_is_committed() {
    // One page a group; the first group's commit fails while the second
    // page is processed. The later pages must not be committed: their
    // cursor would skip the first page's records for good.
    let store = Arc::new(MemoryStore::default());
    store.fail_commit(1);
    let source = FakeSource::new(vec![
        Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", true)),
        Ok(page(vec![record("b", r#"{"n":1}"#)], "s2", true)),
        Ok(page(vec![record("c", r#"{"n":1}"#)], "s3", false)),
    ]);
    let p = prepared(
        "[commit]\nrecords = 1\nwait_ms = 60000",
        Arc::new(source),
        Arc::new(FakeDestination::default()),
    );
    let failed = run_over(&p, store.clone(), None, false).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.state(), None, "a cursor past the failed page");
    assert_eq!(store.commits(), 0);
}

#[tokio::test]
async fn a_group_waiting_on_a_slow_source_is_committed_when_its_time_is_up() {
    // Each read takes 300 ms: a group may wait 30 ms, so each page is
    // committed while the next is still being read; allowed a minute,
    // the three pages go in one transaction.
    for (wait_ms, transactions) in [(30, 3), (60_000, 1)] {
        let store = Arc::new(MemoryStore::default());
        let source = FakeSource::slow(hundreds(3), std::time::Duration::from_millis(300));
        let p = prepared(
            &format!("[commit]\nrecords = 1000\nwait_ms = {wait_ms}"),
            Arc::new(source),
            Arc::new(FakeDestination::default()),
        );
        let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
        assert_eq!(counts.created, 300);
        assert_eq!(store.commits(), transactions, "wait_ms = {wait_ms}");
        assert_eq!(store.state().as_deref(), Some("s3"));
    }
}

#[tokio::test]
async fn duplicates_in_one_page_are_written_once_as_the_last() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(
        vec![
            record("a", r#"{"n":1}"#),
            record("b", r#"{"n":1}"#),
            record("a", r#"{"n":2}"#),
        ],
        "s1",
        false,
    ))]);
    let dest = Arc::new(FakeDestination::default());
    let p = prepared("", Arc::new(source), dest.clone());
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!((counts.read, counts.superseded, counts.created), (3, 1, 2));
    assert_eq!(dest.records().len(), 2);
    assert!(dest.records().values().any(|v| v == r#"{"n":2}"#));
}

/// Two pages (a record created, then changed, then another created), a
/// record updated and one deleted: the dry run over a copy of the state
/// predicts exactly the writes the real run makes, and writes nothing.
#[tokio::test]
async fn a_dry_run_predicts_the_real_runs_writes_and_writes_nothing() {
    let store = Arc::new(MemoryStore::default());
    linked(&store, "upd", 1, r#"{"n":1}"#, "d9", r#"{"n":1}"#);
    linked(&store, "del", 2, r#"{"n":1}"#, "d8", r#"{"n":1}"#);
    let pages = || {
        vec![
            Ok(page(
                vec![record("a", r#"{"n":1}"#), record("upd", r#"{"n":2}"#)],
                "s1",
                true,
            )),
            Ok(page(
                vec![
                    record("a", r#"{"n":3}"#),
                    record("b", r#"{"n":1}"#),
                    deletion("del"),
                ],
                "s2",
                false,
            )),
        ]
    };
    let extra = "[deletes]\npolicy = \"propagate\"";
    let untouched = Arc::new(FakeDestination::default());
    let mut dry_p = prepared(extra, Arc::new(FakeSource::new(pages())), untouched.clone());
    dry_p.dest = Arc::new(DryDestination);
    let before = store.links_dump();
    let dry_store: Arc<dyn PageStore> = Arc::new(DryRun::over(store.clone()));
    let (dry_counts, plan) = run_over(&dry_p, dry_store, None, true).await.unwrap();
    assert_eq!(store.links_dump(), before, "the dry run linked nothing");
    assert_eq!(store.commits(), 0, "the dry run committed nothing");
    assert!(untouched.calls().is_empty(), "the dry run wrote nothing");
    assert!(store.results().is_empty());

    let dest = Arc::new(FakeDestination::default());
    let p = prepared(extra, Arc::new(FakeSource::new(pages())), dest.clone());
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(dry_counts, counts);
    let planned: Vec<_> = plan
        .iter()
        .map(|c| (c.source_id.clone(), c.action))
        .collect();
    let written: Vec<_> = store
        .results()
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
    assert_eq!(planned, written);
    assert_eq!(
        written,
        [
            ("a".to_string(), "create"),
            ("upd".to_string(), "update"),
            ("a".to_string(), "update"),
            ("b".to_string(), "create"),
            ("del".to_string(), "delete"),
        ]
    );
    let update = plan.iter().find(|c| c.source_id == "upd").unwrap();
    assert_eq!(update.destination_id.as_deref(), Some("d9"));
    assert_eq!(update.diff.len(), 1);
}

#[tokio::test]
async fn a_stop_requested_in_the_store_ends_the_run_after_the_page_in_hand() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![
        Ok(page(vec![record("a", r#"{"n":1}"#)], "s1", true)),
        Ok(page(vec![record("b", r#"{"n":1}"#)], "s2", true)),
    ]);
    let p = prepared("", Arc::new(source), Arc::new(FakeDestination::default()));
    store.request_stop(1).unwrap();
    let err = run_over(&p, store.clone(), None, false).await.unwrap_err();
    assert!(
        matches!(err, crate::SyncError::Cancelled { pages: 1, .. }),
        "{err}"
    );
    // The page in hand was committed with its cursor.
    assert_eq!(store.state().as_deref(), Some("s1"));
    assert_eq!(outcomes(&store), out(&[("a", RecordOutcome::Created)]));
}

#[tokio::test]
async fn a_record_the_engine_cannot_use_is_quarantined_alone() {
    let store = Arc::new(MemoryStore::default());
    let source = FakeSource::new(vec![Ok(page(
        vec![record("a", r#"{"n":1}"#), record("m", "[1, 2]")],
        "s1",
        false,
    ))]);
    let p = prepared("", Arc::new(source), Arc::new(FakeDestination::default()));
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!((counts.read, counts.created, counts.quarantined), (2, 1, 1));
    let letters = store.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].letter.kind,
        super::store::DeadLetterKind::Malformed
    );
    assert!(
        letters[0].letter.error.contains("fake-source"),
        "{}",
        letters[0].letter.error
    );
}

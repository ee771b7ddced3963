//! Tests of the sync engine's stores: every test of the store's behaviour
//! runs on SQLite (`crate::sqlite`) and on PostgreSQL (`crate::postgres`),
//! a real server per test process (`on_both!`); those of SQLite's own past
//! (databases built from the schema's old single list of migrations) on
//! SQLite alone; those of hosts committing at once on PostgreSQL alone.

use rusqlite::params;

use crate::pipeline::{Endpoint, Pipeline};
use crate::store::*;
use nexo_db::Database;

/// A migrated PostgreSQL database of its own.
fn postgres_database() -> Database {
    let url = nexo_db::postgres::testing::database().unwrap();
    Database::migrate_postgres(&url).unwrap().0
}

/// Each named test, once on an in-memory SQLite database and once on
/// a fresh PostgreSQL one: `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(nexo_db::Database::in_memory().unwrap());
            }
            #[test]
            fn postgres() {
                super::$name(super::postgres_database());
            }
        }
    )*};
}

on_both!(
    a_page_commits_links_results_and_queues_together,
    a_record_is_synced_with_each_peer_on_its_own,
    a_record_linked_meanwhile_by_another_run_keeps_one_entity,
    one_record_links_to_an_entity_of_each_type,
    a_stop_is_asked_of_running_runs_only_and_a_pause_stops_too,
    superseded_records_are_counted_with_the_run,
    a_killed_run_found_with_its_lock_free_ends_at_its_last_progress,
    a_run_left_running_is_marked_interrupted_by_the_next,
    a_group_of_pages_commits_each_in_turn_in_one_transaction,
    a_failing_commit_leaves_nothing_behind,
    old_runs_are_pruned_with_their_records,
    changing_the_source_resets_the_cursor,
    a_run_that_lost_its_lease_commits_nothing,
);

/// Raw SQL both databases read alike (values written into it).
fn exec(db: &Database, sql: &str) {
    match db.postgres() {
        Some(pg) => pg.with(async |c| Ok(c.batch_execute(sql).await?)).unwrap(),
        None => db.lock().unwrap().execute_batch(sql).unwrap(),
    }
}

fn pipeline(name: &str) -> Pipeline {
    Pipeline::from_toml(
        &format!(
            "name = \"{name}\"\nentity = \"contact\"\n[source]\nconnection = \"a\"\nstream = \"s\"\n[destination]\nconnection = \"b\"\nstream = \"s\"\n"
        ),
        "t",
    )
    .unwrap()
}

fn link(conn: &str, id: &str, entity_id: Option<i64>, group: usize) -> LinkUpdate {
    LinkUpdate {
        entity_id,
        entity: "contact".into(),
        group,
        connection: conn.into(),
        stream: "s".into(),
        record_id: id.into(),
        known: Some(format!("{{\"id\":\"{id}\"}}")),
        synced_hash: Some(format!("h-{id}")),
        peer: std::sync::Arc::new(Endpoint {
            connection: if conn == "a" { "b" } else { "a" }.into(),
            stream: "s".into(),
        }),
        version: None,
        deleted: false,
    }
}

fn a_page_commits_links_results_and_queues_together(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let page = PageCommit {
        state: Some("cursor-1".into()),
        links: vec![
            link("a", "a1", None, 1),
            link("b", "b1", None, 1),
            link("a", "a2", None, 2),
        ],
        results: vec![RecordResult {
            source_id: "a1".into(),
            destination_id: Some("b1".into()),
            outcome: RecordOutcome::Created,
            detail: None,
        }],
        counts: Counts {
            read: 2,
            created: 1,
            quarantined: 1,
            ..Counts::default()
        },
        dead_letters: vec![NewDeadLetter {
            kind: DeadLetterKind::Quarantined,
            source_id: "a2".into(),
            record: "{}".into(),
            error: "field `email`: bad".into(),
            class: "schema".into(),
            field: Some("email".into()),
            attempts: 0,
        }],
        log: vec![(LogLevel::Info, "page 1".into())],
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();

    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("cursor-1")
    );
    let a1 = &db.links("contact", "a", "s", &["a1"], None).unwrap()[0];
    let b1 = &db.links("contact", "b", "s", &["b1"], None).unwrap()[0];
    let a2 = &db.links("contact", "a", "s", &["a2"], None).unwrap()[0];
    assert_eq!(a1.entity_id, b1.entity_id, "one group, one entity");
    assert_ne!(a1.entity_id, a2.entity_id);
    assert_eq!(
        db.links_of_entities(&[a1.entity_id], "b", "s", None)
            .unwrap()[0]
            .record_id,
        "b1"
    );
    let r = db.run(run).unwrap().unwrap();
    assert_eq!((r.pages, r.counts.read, r.counts.created), (1, 2, 1));
    assert_eq!(db.run_records(run).unwrap().len(), 1);
    assert_eq!(
        db.dead_letters(Some("p"), Some(DeadLetterStatus::Open))
            .unwrap()[0]
            .letter
            .field
            .as_deref(),
        Some("email")
    );
    assert_eq!(db.run_log(run).unwrap()[0].2, "page 1");

    // The full refresh's sweep candidates for peer b: records whose
    // delete is not settled for b.
    db.finish_run(run, RunStatus::Succeeded, None).unwrap();
    let run2 = db.begin_run("p").unwrap();
    db.commit_page(
        "p",
        run2,
        &PageCommit {
            links: vec![LinkUpdate {
                deleted: true,
                ..link("a", "a1", Some(a1.entity_id), 0)
            }],
            ..PageCommit::default()
        },
    )
    .unwrap();
    let b = Endpoint {
        connection: "b".into(),
        stream: "s".into(),
    };
    let unswept = |db: &Database| -> Vec<String> {
        db.unswept_links("contact", "a", "s", &b)
            .unwrap()
            .into_iter()
            .map(|l| l.record_id)
            .collect()
    };
    // Deleted, but the delete is not settled for b yet.
    assert_eq!(unswept(&db), ["a1", "a2"]);
    db.commit_page(
        "p",
        run2,
        &PageCommit {
            links: vec![LinkUpdate {
                deleted: true,
                synced_hash: Some(crate::store::DELETED_IN_STEP.into()),
                ..link("a", "a1", Some(a1.entity_id), 0)
            }],
            ..PageCommit::default()
        },
    )
    .unwrap();
    assert_eq!(unswept(&db), ["a2"]);
}

fn a_record_is_synced_with_each_peer_on_its_own(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    // a1 delivered to b: in step with b, not with c.
    let page = PageCommit {
        links: vec![link("a", "a1", None, 1), link("b", "b1", None, 1)],
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    let peer = |c: &str| Endpoint {
        connection: c.into(),
        stream: "s".into(),
    };
    let with = |p: Option<&Endpoint>| {
        db.links("contact", "a", "s", &["a1"], p).unwrap()[0]
            .synced_hash
            .clone()
    };
    assert_eq!(with(Some(&peer("b"))).as_deref(), Some("h-a1"));
    assert_eq!(with(Some(&peer("c"))), None, "never synced with c");
    assert_eq!(with(None), None);
    // Synced with c later: each peer keeps its own state.
    let to_c = LinkUpdate {
        entity_id: Some(db.links("contact", "a", "s", &["a1"], None).unwrap()[0].entity_id),
        synced_hash: Some("h-a1-for-c".into()),
        peer: peer("c").into(),
        ..link("a", "a1", None, 0)
    };
    db.commit_page(
        "p",
        run,
        &PageCommit {
            links: vec![to_c],
            ..PageCommit::default()
        },
    )
    .unwrap();
    assert_eq!(with(Some(&peer("b"))).as_deref(), Some("h-a1"));
    assert_eq!(with(Some(&peer("c"))).as_deref(), Some("h-a1-for-c"));
    let b1 = &db
        .links_of_entities(&[1], "b", "s", Some(&peer("a")))
        .unwrap()[0];
    assert_eq!(b1.synced_hash.as_deref(), Some("h-b1"));
}

fn a_record_linked_meanwhile_by_another_run_keeps_one_entity(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let commit = |links| {
        db.commit_page(
            "p",
            run,
            &PageCommit {
                links,
                ..PageCommit::default()
            },
        )
        .unwrap()
    };
    // Two runs looked a1 up before either committed: both take it for
    // new. The second to commit joins the entity the first made.
    commit(vec![link("a", "a1", None, 1), link("b", "b1", None, 1)]);
    commit(vec![link("a", "a1", None, 1), link("c", "c1", None, 1)]);
    let entity =
        |conn: &str, id: &str| db.links("contact", conn, "s", &[id], None).unwrap()[0].entity_id;
    assert_eq!(entity("a", "a1"), entity("b", "b1"));
    assert_eq!(entity("a", "a1"), entity("c", "c1"));
    // A destination record answering for a second source record (two
    // deals of one company, one party) does not merge their entities.
    commit(vec![link("a", "a2", None, 1), link("b", "b1", None, 1)]);
    assert_ne!(entity("a", "a2"), entity("a", "a1"));
}

/// A database of schema 8 (one synced hash per link) with two
/// pipelines sharing a source and an entity, and a two-way pair.
fn schema_8_database(path: &std::path::Path) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    for sql in &nexo_db::MIGRATIONS[..8] {
        let tx = conn.transaction().unwrap();
        tx.execute_batch(sql).unwrap();
        tx.commit().unwrap();
    }
    conn.pragma_update(None, "user_version", 8).unwrap();
    let save = |p: &str, entity: &str, from: (&str, &str), to: (&str, &str)| {
        let def = serde_json::json!({
            "name": p, "entity": entity,
            "source": {"connection": from.0, "stream": from.1},
            "destination": {"connection": to.0, "stream": to.1},
        });
        conn.execute(
            "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
            params![p, def.to_string()],
        )
        .unwrap();
    };
    save("to-erp", "invoice", ("crm", "deals"), ("erp", "invoices"));
    save(
        "to-books",
        "invoice",
        ("crm", "deals"),
        ("books", "journal"),
    );
    save("a-to-b", "contact", ("a", "s"), ("b", "s"));
    save("b-to-a", "contact", ("b", "s"), ("a", "s"));
    let links = [
        ("crm", "deals", "d1", 1, "invoice"),
        ("erp", "invoices", "t1", 1, "invoice"),
        ("books", "journal", "j1", 1, "invoice"),
        ("crm", "deals", "d2", 2, "invoice"),
        ("erp", "invoices", "t2", 2, "invoice"),
        ("a", "s", "a1", 3, "contact"),
        ("b", "s", "b1", 3, "contact"),
        ("a", "s", "a2", 4, "contact"),
    ];
    for (c, st, id, e, entity) in links {
        conn.execute(
            "INSERT INTO entity_links (connection, stream, record_id, entity_id, entity, known, synced_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?6)",
            params![c, st, id, e, entity, format!("h-{id}")],
        )
        .unwrap();
    }
}

#[test]
fn the_migration_keeps_every_link_and_only_unambiguous_sync_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexo.db");
    schema_8_database(&path);
    let db = Database::open(&path).unwrap();
    let end = |c: &str, s: &str| Endpoint {
        connection: c.into(),
        stream: s.into(),
    };
    let synced = |entity: &str, at: (&str, &str), id: &str, peer: (&str, &str)| {
        let found = db
            .links(entity, at.0, at.1, &[id], Some(&end(peer.0, peer.1)))
            .unwrap();
        assert_eq!(found.len(), 1, "link {id} lost");
        found[0].synced_hash.clone()
    };
    // The deals feed two destinations: which one their hash was for
    // is unknown, so both compare again (no skip).
    for peer in [("erp", "invoices"), ("books", "journal")] {
        assert_eq!(synced("invoice", ("crm", "deals"), "d1", peer), None);
        assert_eq!(synced("invoice", ("crm", "deals"), "d2", peer), None);
    }
    // Each destination's record was synced with the one source.
    let crm = ("crm", "deals");
    assert_eq!(
        synced("invoice", ("erp", "invoices"), "t1", crm).as_deref(),
        Some("h-t1")
    );
    assert_eq!(
        synced("invoice", ("books", "journal"), "j1", crm).as_deref(),
        Some("h-j1")
    );
    // A two-way pair: each side has one peer.
    assert_eq!(
        synced("contact", ("a", "s"), "a1", ("b", "s")).as_deref(),
        Some("h-a1")
    );
    assert_eq!(
        synced("contact", ("b", "s"), "b1", ("a", "s")).as_deref(),
        Some("h-b1")
    );
    // Never delivered to b: compared again.
    assert_eq!(synced("contact", ("a", "s"), "a2", ("b", "s")), None);
    let all: i64 = db
        .lock()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM entity_links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(all, 8, "every link carried over");
}

fn one_record_links_to_an_entity_of_each_type(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let typed = |entity: &str, conn: &str, id: &str, group| LinkUpdate {
        entity: entity.into(),
        ..link(conn, id, None, group)
    };
    // A won deal is the source of a customer and of an invoice.
    let page = PageCommit {
        links: vec![
            typed("customer", "a", "deal-1", 1),
            typed("customer", "b", "contact-9", 1),
            typed("invoice", "a", "deal-1", 2),
            typed("invoice", "b", "inv-4", 2),
        ],
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    let customer = &db.links("customer", "a", "s", &["deal-1"], None).unwrap()[0];
    let invoice = &db.links("invoice", "a", "s", &["deal-1"], None).unwrap()[0];
    assert_ne!(customer.entity_id, invoice.entity_id);
    assert_eq!(
        db.links_of_entities(&[invoice.entity_id], "b", "s", None)
            .unwrap()[0]
            .record_id,
        "inv-4"
    );
    assert!(
        db.links("payment", "a", "s", &["deal-1"], None)
            .unwrap()
            .is_empty()
    );
    let both: Vec<i64> = db
        .record_links("a", "s", "deal-1")
        .unwrap()
        .iter()
        .map(|l| l.entity_id)
        .collect();
    assert_eq!(both, [customer.entity_id, invoice.entity_id]);
}

fn a_stop_is_asked_of_running_runs_only_and_a_pause_stops_too(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    assert_eq!(db.cancel_reason(run).unwrap(), None);
    db.set_paused("p", true, None).unwrap();
    assert_eq!(db.cancel_reason(run).unwrap(), Some(CancelReason::Paused));
    assert!(db.request_stop(run).unwrap());
    assert_eq!(
        db.cancel_reason(run).unwrap(),
        Some(CancelReason::Requested)
    );
    db.finish_run(run, RunStatus::Cancelled, Some("stopped"))
        .unwrap();
    assert!(!db.request_stop(run).unwrap());
    assert!(!db.request_stop(run + 1).unwrap());
    assert_eq!(db.run(run).unwrap().unwrap().status, "cancelled");
}

fn superseded_records_are_counted_with_the_run(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let page = PageCommit {
        state: Some("1".into()),
        counts: Counts {
            read: 10,
            superseded: 9,
            ..Counts::default()
        },
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    let row = db.run(run).unwrap().unwrap();
    assert_eq!((row.counts.read, row.counts.superseded), (10, 9));
}

#[test]
fn upgrading_drops_the_old_attempts_cap_and_sorts_out_settled_conflicts() {
    // A database as the release before it left it.
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let before = nexo_db::MIGRATIONS.len() - 1;
    for sql in &nexo_db::MIGRATIONS[..before] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", before as i64)
        .unwrap();
    let mut old = serde_json::to_value(pipeline("old")).unwrap();
    old["retry"] =
        serde_json::json!({"max_attempts": 5, "initial_backoff_ms": 200, "max_backoff_ms": 30000});
    let mut kept = old.clone();
    kept["name"] = "kept".into();
    kept["retry"]["max_attempts"] = 3.into();
    for p in [&old, &kept] {
        conn.execute(
            "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
            params![p["name"].as_str(), p.to_string()],
        )
        .unwrap();
    }
    for (resolution, status) in [
        ("source written by policy", "resolved"),
        ("source written by a person", "resolved"),
    ] {
        conn.execute(
            "INSERT INTO conflicts (pipeline, run_id, entity_id, source_id, destination_id,
                 source_record, destination_payload, fields, status, resolution)
             VALUES ('old', 1, 1, 's', 'd', '{}', '{}', '[]', ?1, ?2)",
            params![status, resolution],
        )
        .unwrap();
    }
    let db = Database::init(conn, ":memory:").unwrap();
    let old = db.pipeline("old").unwrap().unwrap().pipeline.retry;
    assert_eq!(
        old.max_attempts, None,
        "the old default would cap the window"
    );
    assert_eq!(old.window(), std::time::Duration::from_secs(600));
    let kept = db.pipeline("kept").unwrap().unwrap().pipeline.retry;
    assert_eq!(kept.max_attempts, Some(3), "a chosen cap stays");
    let statuses: Vec<ConflictStatus> = db
        .conflicts(None, None)
        .unwrap()
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [ConflictStatus::AutoResolved, ConflictStatus::Resolved]
    );
}

fn a_killed_run_found_with_its_lock_free_ends_at_its_last_progress(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    exec(
        &db,
        &format!("UPDATE runs SET started_at = '2026-01-01T10:00:00.000Z' WHERE run_id = {run}"),
    );
    let page = PageCommit {
        log: vec![(LogLevel::Info, "a page".into())],
        state: Some("c1".into()),
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    exec(
        &db,
        &format!(
            "UPDATE runs SET last_progress_at = '2026-01-01T10:00:42.000Z' WHERE run_id = {run}"
        ),
    );
    assert!(db.interrupt_run(run).unwrap());
    let row = db.run(run).unwrap().unwrap();
    assert_eq!(row.status, "interrupted");
    assert_eq!(row.duration_ms, Some(42_000));
    assert_eq!(row.finished_at.as_deref(), Some("2026-01-01T10:00:42.000Z"));
    assert!(!db.interrupt_run(run).unwrap(), "only a running run");
}

fn a_run_left_running_is_marked_interrupted_by_the_next(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let first = db.begin_run("p").unwrap();
    let second = db.begin_run("p").unwrap();
    assert_eq!(db.run(first).unwrap().unwrap().status, "interrupted");
    assert_eq!(db.run(second).unwrap().unwrap().status, "running");
    assert!(db.previous_run_start("p", second).unwrap().is_some());
}

fn a_group_of_pages_commits_each_in_turn_in_one_transaction(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let result = |id: &str, outcome| RecordResult {
        source_id: id.into(),
        destination_id: None,
        outcome,
        detail: None,
    };
    // Page 1 fails a2 (a dead letter) and creates a1 as a new entity
    // (group 1); page 2 delivers a2 and creates a3, also group 1 of
    // its own page: a different entity.
    let pages = [
        PageCommit {
            state: Some("cursor-1".into()),
            links: vec![link("a", "a1", None, 1)],
            results: vec![
                result("a1", RecordOutcome::Created),
                result("a2", RecordOutcome::Failed),
            ],
            dead_letters: vec![NewDeadLetter {
                kind: DeadLetterKind::Failed,
                source_id: "a2".into(),
                record: "{}".into(),
                error: "refused".into(),
                class: "validation".into(),
                field: None,
                attempts: 1,
            }],
            log: vec![(LogLevel::Info, "page 1".into())],
            ..PageCommit::default()
        },
        PageCommit {
            state: Some("cursor-2".into()),
            links: vec![link("a", "a3", None, 1)],
            results: vec![
                result("a2", RecordOutcome::Created),
                result("a3", RecordOutcome::Created),
            ],
            log: vec![(LogLevel::Info, "page 2".into())],
            ..PageCommit::default()
        },
    ];
    db.commit_pages("p", run, &pages).unwrap();
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("cursor-2"),
        "the last page's cursor"
    );
    let a1 = &db.links("contact", "a", "s", &["a1"], None).unwrap()[0];
    let a3 = &db.links("contact", "a", "s", &["a3"], None).unwrap()[0];
    assert_ne!(a1.entity_id, a3.entity_id, "groups are per page");
    // As if committed one after the other: page 2 resolved page 1's
    // dead letter.
    assert!(
        db.dead_letters(Some("p"), Some(DeadLetterStatus::Open))
            .unwrap()
            .is_empty()
    );
    let r = db.run(run).unwrap().unwrap();
    assert_eq!(r.pages, 2, "each page counted");
    assert_eq!(db.run_records(run).unwrap().len(), 4);
    let log: Vec<String> = db.run_log(run).unwrap().into_iter().map(|l| l.2).collect();
    assert_eq!(log, ["page 1", "page 2"]);
}

fn a_failing_commit_leaves_nothing_behind(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    // Results for a run that does not exist: the foreign key fails
    // after the state and the links were written, inside the same
    // transaction.
    let page = PageCommit {
        state: Some("cursor-2".into()),
        links: vec![link("a", "a1", None, 1)],
        results: vec![RecordResult {
            source_id: "a1".into(),
            destination_id: None,
            outcome: RecordOutcome::Created,
            detail: None,
        }],
        ..PageCommit::default()
    };
    assert!(db.commit_page("p", run + 1000, &page).is_err());
    assert_eq!(db.pipeline("p").unwrap().unwrap().state, None);
    assert!(
        db.links("contact", "a", "s", &["a1"], None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.run(run).unwrap().unwrap().pages, 0);
}

fn old_runs_are_pruned_with_their_records(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let old = db.begin_run("p").unwrap();
    db.commit_page(
        "p",
        old,
        &PageCommit {
            results: vec![RecordResult {
                source_id: "a1".into(),
                destination_id: None,
                outcome: RecordOutcome::Unchanged,
                detail: None,
            }],
            ..PageCommit::default()
        },
    )
    .unwrap();
    db.finish_run(old, RunStatus::Succeeded, None).unwrap();
    exec(
        &db,
        &format!("UPDATE runs SET finished_at = '2020-01-01T00:00:00Z' WHERE run_id = {old}"),
    );
    let recent = db.begin_run("p").unwrap();
    db.finish_run(recent, RunStatus::Succeeded, None).unwrap();
    assert_eq!(db.prune_runs(30).unwrap(), 1);
    assert!(db.run(old).unwrap().is_none());
    assert!(db.run_records(old).unwrap().is_empty(), "records cascade");
    assert!(db.run(recent).unwrap().is_some());
}

fn changing_the_source_resets_the_cursor(db: Database) {
    let mut p = pipeline("p");
    db.save_pipeline(&p).unwrap();
    let run = db.begin_run("p").unwrap();
    db.commit_page(
        "p",
        run,
        &PageCommit {
            state: Some("c".into()),
            ..PageCommit::default()
        },
    )
    .unwrap();
    p.batch_size = 7;
    db.save_pipeline(&p).unwrap();
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("c")
    );
    p.source.stream = "other".into();
    db.save_pipeline(&p).unwrap();
    assert_eq!(db.pipeline("p").unwrap().unwrap().state, None);
}

/// The fence: a run that no longer holds itself — ended as
/// interrupted because another process took its pipeline over, or
/// past its lease — commits nothing, and says why; a run finished by
/// someone else keeps the status they gave it.
fn a_run_that_lost_its_lease_commits_nothing(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let page = |state: &str| PageCommit {
        state: Some(state.into()),
        links: vec![link("a", "a1", None, 1)],
        ..PageCommit::default()
    };
    let taken = db.begin_run("p").unwrap();
    db.commit_page("p", taken, &page("1")).unwrap();
    assert!(db.interrupt_run(taken).unwrap());
    let err = db.commit_page("p", taken, &page("2")).unwrap_err();
    assert!(
        matches!(err, nexo_db::StoreError::LeaseLost { run } if run == taken),
        "{err}"
    );
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("1")
    );
    db.finish_run(taken, RunStatus::Failed, Some("late"))
        .unwrap();
    assert_eq!(
        db.run(taken).unwrap().unwrap().status,
        RunStatus::Interrupted
    );

    let leased = db.begin_run("p").unwrap();
    exec(
        &db,
        &format!("UPDATE runs SET lease_until_ms = 1000 WHERE run_id = {leased}"),
    );
    let err = db.commit_page("p", leased, &page("3")).unwrap_err();
    assert!(
        matches!(err, nexo_db::StoreError::LeaseLost { .. }),
        "{err}"
    );
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("1")
    );
    exec(
        &db,
        &format!(
            "UPDATE runs SET lease_until_ms = {} WHERE run_id = {leased}",
            i64::MAX
        ),
    );
    db.commit_page("p", leased, &page("3")).unwrap();
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("3")
    );
}

on_both!(
    a_page_naming_one_record_twice_keeps_its_first_entity,
    queues_are_read_and_settled_alike,
    pipelines_and_settings_read_back_alike,
    search_finds_ids_first_then_content_in_any_case,
    runs_are_listed_newest_first_by_pipeline_and_status,
    secrets_are_scrubbed_from_what_a_commit_stores,
);

/// One destination record answering for two source records of one page
/// (two deals, one company's party): it keeps the entity of the first,
/// the second source record keeps its own, and the record's sync state
/// is the last one written.
fn a_page_naming_one_record_twice_keeps_its_first_entity(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let mut second = link("b", "b1", None, 2);
    second.synced_hash = Some("h-b1-again".into());
    let page = PageCommit {
        links: vec![
            link("a", "d1", None, 1),
            link("b", "b1", None, 1),
            link("a", "d2", None, 2),
            second,
        ],
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    let entity = |conn: &str, id: &str| {
        let found = db.links("contact", conn, "s", &[id], None).unwrap();
        assert_eq!(found.len(), 1, "one link of {id}");
        found[0].entity_id
    };
    assert_eq!(entity("b", "b1"), entity("a", "d1"));
    assert_ne!(entity("a", "d2"), entity("a", "d1"));
    let a = Endpoint {
        connection: "a".into(),
        stream: "s".into(),
    };
    let b1 = &db.links("contact", "b", "s", &["b1"], Some(&a)).unwrap()[0];
    assert_eq!(b1.synced_hash.as_deref(), Some("h-b1-again"));
}

fn queues_are_read_and_settled_alike(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    db.save_pipeline(&pipeline("q")).unwrap();
    let run = db.begin_run("p").unwrap();
    let letter = |id: &str, kind| NewDeadLetter {
        kind,
        source_id: id.into(),
        record: format!("{{\"id\":\"{id}\"}}"),
        error: "refused".into(),
        class: "rejected".into(),
        field: None,
        attempts: 4,
    };
    let conflict = |id: &str, resolution: Option<&str>| NewConflict {
        entity_id: 7,
        source_id: id.into(),
        destination_id: format!("d-{id}"),
        source_record: "{}".into(),
        destination_payload: "{\"n\":1}".into(),
        fields: vec!["n".into(), "m".into()],
        resolution: resolution.map(str::to_string),
    };
    db.commit_page(
        "p",
        run,
        &PageCommit {
            dead_letters: vec![
                letter("x1", DeadLetterKind::Failed),
                letter("x2", DeadLetterKind::Malformed),
                letter("x3", DeadLetterKind::Unmapped),
            ],
            conflicts: vec![
                conflict("c1", None),
                conflict("c2", Some("source written by policy")),
            ],
            ..PageCommit::default()
        },
    )
    .unwrap();
    let letters = db.dead_letters(Some("p"), None).unwrap();
    let ids: Vec<&str> = letters
        .iter()
        .map(|d| d.letter.source_id.as_str())
        .collect();
    assert_eq!(ids, ["x1", "x2", "x3"], "in the order written");
    assert_eq!(letters[1].letter.kind, DeadLetterKind::Malformed);
    assert_eq!(letters[0].letter.attempts, 4);
    assert_eq!(letters[0].run_id, run);
    assert!(db.dead_letters(Some("q"), None).unwrap().is_empty());
    let one = db.dead_letter(letters[0].id).unwrap().unwrap();
    assert_eq!(one, letters[0]);
    assert!(db.dead_letter(letters[2].id + 100).unwrap().is_none());
    assert!(db.discard_dead_letter(letters[0].id).unwrap());
    assert!(!db.discard_dead_letter(letters[0].id).unwrap(), "only open");
    assert_eq!(
        db.dead_letters(None, Some(DeadLetterStatus::Discarded))
            .unwrap()
            .len(),
        1
    );

    let held = db.conflicts(Some("p"), Some(ConflictStatus::Open)).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].conflict.fields, ["n", "m"]);
    assert_eq!(held[0].conflict.destination_id, "d-c1");
    let auto = db
        .conflicts(None, Some(ConflictStatus::AutoResolved))
        .unwrap();
    assert_eq!(
        auto[0].conflict.resolution.as_deref(),
        Some("source written by policy")
    );
    assert_eq!(db.conflict(held[0].id).unwrap().unwrap(), held[0]);
    assert!(db.has_open_conflict(7, "p").unwrap());
    assert!(!db.has_open_conflict(7, "q").unwrap(), "another pipeline");
    assert!(!db.has_open_conflict(8, "p").unwrap());

    // A replay and a resolve settle them in a page; a delivered record
    // resolves its open letter.
    db.commit_page(
        "p",
        run,
        &PageCommit {
            settle_dead_letters: vec![(letters[1].id, DeadLetterStatus::Replayed)],
            settle_conflicts: vec![(held[0].id, "destination kept".into())],
            results: vec![RecordResult {
                source_id: "x3".into(),
                destination_id: Some("d9".into()),
                outcome: RecordOutcome::Updated,
                detail: None,
            }],
            ..PageCommit::default()
        },
    )
    .unwrap();
    let statuses: Vec<DeadLetterStatus> = db
        .dead_letters(Some("p"), None)
        .unwrap()
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(
        statuses,
        [
            DeadLetterStatus::Discarded,
            DeadLetterStatus::Replayed,
            DeadLetterStatus::Resolved
        ]
    );
    let resolved = db.conflict(held[0].id).unwrap().unwrap();
    assert_eq!(resolved.status, ConflictStatus::Resolved);
    assert_eq!(
        resolved.conflict.resolution.as_deref(),
        Some("destination kept")
    );
    assert!(!db.has_open_conflict(7, "p").unwrap());
}

fn pipelines_and_settings_read_back_alike(db: Database) {
    for name in ["b", "a", "c"] {
        db.save_pipeline(&pipeline(name)).unwrap();
    }
    let names: Vec<String> = db
        .pipelines()
        .unwrap()
        .into_iter()
        .map(|p| p.pipeline.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(db.set_paused("a", true, Some("3 runs failed")).unwrap());
    let a = db.pipeline("a").unwrap().unwrap();
    assert!(a.paused);
    assert_eq!(a.paused_reason.as_deref(), Some("3 runs failed"));
    assert!(db.set_paused("a", false, Some("ignored")).unwrap());
    let a = db.pipeline("a").unwrap().unwrap();
    assert!(!a.paused);
    assert_eq!(a.paused_reason, None, "a resumed pipeline has no reason");
    assert!(!db.set_paused("nope", true, None).unwrap());

    let run = db.begin_run("a").unwrap();
    db.commit_page(
        "a",
        run,
        &PageCommit {
            state: Some("s".into()),
            destination_state: Some("d".into()),
            ..PageCommit::default()
        },
    )
    .unwrap();
    let a = db.pipeline("a").unwrap().unwrap();
    assert_eq!(
        (a.state.as_deref(), a.destination_state.as_deref()),
        (Some("s"), Some("d"))
    );
    // A new destination forgets the destination's state only.
    let mut changed = pipeline("a");
    changed.destination.stream = "other".into();
    db.save_pipeline(&changed).unwrap();
    let a = db.pipeline("a").unwrap().unwrap();
    assert_eq!((a.state.as_deref(), a.destination_state), (Some("s"), None));
    assert_eq!(a.pipeline.destination.stream, "other");
    db.reset_state("a").unwrap();
    assert_eq!(db.pipeline("a").unwrap().unwrap().state, None);

    assert!(db.delete_pipeline("b").unwrap());
    assert!(!db.delete_pipeline("b").unwrap());
    assert!(db.pipeline("b").unwrap().is_none());

    assert_eq!(db.setting("retention_days").unwrap(), None);
    db.set_setting("retention_days", "30").unwrap();
    db.set_setting("retention_days", "7").unwrap();
    assert_eq!(db.setting("retention_days").unwrap().as_deref(), Some("7"));
}

fn search_finds_ids_first_then_content_in_any_case(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let with = |conn: &str, id: &str, group, known: &str| LinkUpdate {
        known: Some(known.into()),
        ..link(conn, id, None, group)
    };
    db.commit_page(
        "p",
        run,
        &PageCommit {
            links: vec![
                with("a", "a1", 1, r#"{"name":"Alice Martin"}"#),
                with("b", "b1", 1, r#"{"name":"alice martin"}"#),
                with("a", "a2", 2, r#"{"name":"Bob","note":"100% sure"}"#),
                with("a", "martin", 3, r#"{"name":"Carol"}"#),
            ],
            ..PageCommit::default()
        },
    )
    .unwrap();
    let id =
        |conn: &str, rid: &str| db.links("contact", conn, "s", &[rid], None).unwrap()[0].entity_id;
    let (alice, bob, carol) = (id("a", "a1"), id("a", "a2"), id("a", "martin"));
    // The record id first, then content matches (newest entity first),
    // each entity once.
    let found = db.search_entities("  martin ", 10).unwrap();
    assert_eq!(
        found,
        [
            (carol, "contact".to_string()),
            (alice, "contact".to_string())
        ]
    );
    assert_eq!(db.search_entities("martin", 1).unwrap().len(), 1);
    // Content matches in any case; an id only exactly.
    assert_eq!(
        db.search_entities("MARTIN", 10).unwrap(),
        [(alice, "contact".to_string())]
    );
    // Wildcards are literal.
    assert_eq!(
        db.search_entities("0%", 10).unwrap(),
        [(bob, "contact".to_string())]
    );
    assert!(db.search_entities("_ob", 10).unwrap().is_empty());
    assert!(db.search_entities("  ", 10).unwrap().is_empty());
    let linked: Vec<(String, String)> = db
        .entity(alice)
        .unwrap()
        .into_iter()
        .map(|l| (l.connection, l.record_id))
        .collect();
    assert_eq!(
        linked,
        [("a".into(), "a1".into()), ("b".into(), "b1".into())]
    );
}

fn runs_are_listed_newest_first_by_pipeline_and_status(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    db.save_pipeline(&pipeline("q")).unwrap();
    let p1 = db.begin_run("p").unwrap();
    db.finish_run(p1, RunStatus::Failed, Some("boom")).unwrap();
    let q1 = db.begin_run("q").unwrap();
    let p2 = db.begin_run("p").unwrap();
    db.finish_run(p2, RunStatus::Succeeded, None).unwrap();
    let ids = |filter: RunFilter| -> Vec<RunId> {
        db.runs(&filter).unwrap().iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(RunFilter::default()), [p2, q1, p1]);
    assert_eq!(
        ids(RunFilter {
            pipeline: Some("p".into()),
            ..RunFilter::default()
        }),
        [p2, p1]
    );
    assert_eq!(
        ids(RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        }),
        [q1]
    );
    assert_eq!(
        ids(RunFilter {
            limit: 1,
            ..RunFilter::default()
        }),
        [p2]
    );
    let failed = db.run(p1).unwrap().unwrap();
    assert_eq!(failed.error.as_deref(), Some("boom"));
    assert!(failed.finished_at.is_some());
    assert!(failed.duration_ms.is_some_and(|d| d >= 0));
    assert_eq!(
        db.previous_run_start("p", p2).unwrap(),
        Some(failed.started_at)
    );
    assert_eq!(db.previous_run_start("p", p1).unwrap(), None);
    assert!(db.run(p2 + 100).unwrap().is_none());
    // Only what ended long ago goes: nothing here.
    assert_eq!(db.prune_runs(1).unwrap(), 0);
}

/// The second line of defence: a secret a plugin or a system wrote into
/// state, a record, an error or a log line is stored as its marker.
fn secrets_are_scrubbed_from_what_a_commit_stores(db: Database) {
    const SECRET: &str = "sk-store-test-5f1e9c2a7b";
    nexo_runtime::sandbox::redact::register(
        "api_key",
        &nexo_runtime::sandbox::secrets::SecretValue::new(SECRET),
    );
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let leak = format!("token={SECRET}");
    db.commit_page(
        "p",
        run,
        &PageCommit {
            state: Some(leak.clone()),
            destination_state: Some(leak.clone()),
            results: vec![RecordResult {
                source_id: "a1".into(),
                destination_id: None,
                outcome: RecordOutcome::Failed,
                detail: Some(leak.clone()),
            }],
            dead_letters: vec![NewDeadLetter {
                kind: DeadLetterKind::Failed,
                source_id: "a1".into(),
                record: leak.clone(),
                error: leak.clone(),
                class: "rejected".into(),
                field: None,
                attempts: 1,
            }],
            conflicts: vec![NewConflict {
                entity_id: 1,
                source_id: "a1".into(),
                destination_id: "b1".into(),
                source_record: leak.clone(),
                destination_payload: leak.clone(),
                fields: vec![],
                resolution: None,
            }],
            log: vec![(LogLevel::Warn, leak.clone())],
            ..PageCommit::default()
        },
    )
    .unwrap();
    db.finish_run(run, RunStatus::Failed, Some(&leak)).unwrap();
    let row = db.pipeline("p").unwrap().unwrap();
    let letter = &db.dead_letters(None, None).unwrap()[0].letter;
    let conflict = &db.conflicts(None, None).unwrap()[0].conflict;
    let stored = [
        row.state.unwrap(),
        row.destination_state.unwrap(),
        db.run_records(run).unwrap()[0].detail.clone().unwrap(),
        letter.record.clone(),
        letter.error.clone(),
        conflict.source_record.clone(),
        conflict.destination_payload.clone(),
        db.run_log(run).unwrap()[0].2.clone(),
        db.run(run).unwrap().unwrap().error.unwrap(),
    ];
    for text in stored {
        assert!(text.starts_with("token="), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
}

/// A migrated PostgreSQL database and its URL, for a second host.
fn postgres_database_and_url() -> (Database, String) {
    let url = nexo_db::postgres::testing::database().unwrap();
    (Database::migrate_postgres(&url).unwrap().0, url)
}

/// `(connection, record id) → entity id` of every link.
fn entities(db: &Database) -> std::collections::HashMap<(String, String), i64> {
    db.postgres()
        .unwrap()
        .with(async |c| {
            let rows = c
                .query(
                    "SELECT connection, record_id, entity_id FROM entity_links",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect())
        })
        .unwrap()
}

/// Another host's commit in progress: it linked `a/s/a1` and has not
/// committed. Ours waits for it, then joins the entity it made — or, had
/// it rolled back, makes its own. Either way one link, no error.
#[test]
fn a_commit_waits_for_another_hosts_link_of_the_same_record_then_joins_it() {
    for other_commits in [true, false] {
        let (db, url) = postgres_database_and_url();
        let other = Database::connect(&url).unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        let (linked, go) = (
            std::sync::mpsc::channel::<()>(),
            std::sync::mpsc::channel::<()>(),
        );
        let (linked_tx, linked_rx) = linked;
        let (go_tx, go_rx) = go;
        let holder = std::thread::spawn(move || {
            other
                .postgres()
                .unwrap()
                .with(async |c| {
                    let tx = c.transaction().await?;
                    tx.execute(
                        "INSERT INTO entity_links (connection, stream, record_id, entity_id, entity)
                         VALUES ('a', 's', 'a1', nextval('entity_ids'), 'contact')",
                        &[],
                    )
                    .await?;
                    linked_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    if other_commits {
                        tx.commit().await?;
                    } else {
                        tx.rollback().await?;
                    }
                    Ok(())
                })
                .unwrap();
        });
        linked_rx.recv().unwrap();
        let page = PageCommit {
            links: vec![link("a", "a1", None, 1), link("b", "b1", None, 1)],
            ..PageCommit::default()
        };
        let ours = {
            let db = db.clone();
            std::thread::spawn(move || db.commit_page("p", run, &page))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!ours.is_finished(), "the commit waits for the other's row");
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        ours.join().unwrap().unwrap();
        let e = entities(&db);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[&("a".into(), "a1".into())], e[&("b".into(), "b1".into())]);
        let a1 = &db.links("contact", "a", "s", &["a1"], None).unwrap()[0];
        // The other took the first id; ours, the second, is used only
        // when the other rolled back.
        assert_eq!(a1.entity_id, if other_commits { 1 } else { 2 });
    }
}

/// Two hosts commit, at once and many times, pages of two pipelines with
/// the same source and entity type that link the same new source records
/// (groups in opposite orders) to records of their own destinations, and new
/// records of their own: every commit succeeds, each source record has
/// one link and one entity shared by both destinations' records, and no
/// two new entities share an id.
#[test]
fn hosts_committing_the_same_new_records_at_once_share_one_entity() {
    const ROUNDS: usize = 30;
    const SHARED: usize = 20;
    let (db, url) = postgres_database_and_url();
    let hosts = [db.clone(), Database::connect(&url).unwrap()];
    for name in ["to-b", "to-c"] {
        hosts[0].save_pipeline(&pipeline(name)).unwrap();
    }
    let barrier = std::sync::Barrier::new(2);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = [("to-b", "b"), ("to-c", "c")]
            .into_iter()
            .zip(&hosts)
            .map(|((name, dest), host)| {
                let barrier = &barrier;
                s.spawn(move || {
                    let run = host.begin_run(name).unwrap();
                    let mut failures = Vec::new();
                    for round in 0..ROUNDS {
                        let mut groups = Vec::new();
                        for k in 0..SHARED {
                            let id = format!("a-{round}-{k}");
                            // The source record first, as the engine
                            // orders a new group.
                            groups.push([
                                link("a", &id, None, k),
                                LinkUpdate {
                                    peer: std::sync::Arc::new(Endpoint {
                                        connection: "a".into(),
                                        stream: "s".into(),
                                    }),
                                    ..link(dest, &format!("{dest}-{round}-{k}"), None, k)
                                },
                            ]);
                        }
                        if dest == "c" {
                            groups.reverse();
                        }
                        let mut links: Vec<LinkUpdate> = groups.into_iter().flatten().collect();
                        links.push(link("a", &format!("own-{dest}-{round}"), None, SHARED));
                        barrier.wait();
                        if let Err(e) = host.commit_page(
                            name,
                            run,
                            &PageCommit {
                                links,
                                ..PageCommit::default()
                            },
                        ) {
                            failures.push(format!("{name} round {round}: {e}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{failures:?}");
    let e = entities(&db);
    assert_eq!(e.len(), ROUNDS * (SHARED * 3 + 2), "one link per record");
    for round in 0..ROUNDS {
        for k in 0..SHARED {
            let of = |c: &str, id: String| e[&(c.to_string(), id)];
            let a = of("a", format!("a-{round}-{k}"));
            assert_eq!(a, of("b", format!("b-{round}-{k}")), "round {round}");
            assert_eq!(a, of("c", format!("c-{round}-{k}")), "round {round}");
        }
    }
    let distinct: std::collections::HashSet<i64> = e.values().copied().collect();
    assert_eq!(
        distinct.len(),
        ROUNDS * (SHARED + 2),
        "one entity per shared record and per own record, none shared by mistake"
    );
}

/// A commit PostgreSQL ends as a deadlock (it waits for another host's
/// link while that host waits for its run's row) is made again, whole,
/// and succeeds once the other is through.
#[test]
fn a_deadlocked_commit_is_made_again() {
    let (db, url) = postgres_database_and_url();
    let other = Database::connect(&url).unwrap();
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let (linked_tx, linked_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        other
            .postgres()
            .unwrap()
            .with(async |c| {
                let tx = c.transaction().await?;
                // Ours finds the deadlock (its default second), not this.
                tx.batch_execute(
                    "SET LOCAL deadlock_timeout = '20s';
                     INSERT INTO entity_links (connection, stream, record_id, entity_id, entity)
                     VALUES ('a', 's', 'a1', nextval('entity_ids'), 'contact')",
                )
                .await?;
                linked_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                tx.execute("SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE", &[&run])
                    .await?;
                tx.commit().await?;
                Ok(())
            })
            .unwrap();
    });
    linked_rx.recv().unwrap();
    let page = PageCommit {
        state: Some("c1".into()),
        links: vec![link("a", "a1", None, 1), link("b", "b1", None, 1)],
        log: vec![(LogLevel::Info, "page 1".into())],
        ..PageCommit::default()
    };
    let ours = {
        let db = db.clone();
        std::thread::spawn(move || db.commit_page("p", run, &page))
    };
    // Ours holds the run's row and waits for a1.
    std::thread::sleep(std::time::Duration::from_millis(300));
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    ours.join().unwrap().unwrap();
    let e = entities(&db);
    assert_eq!(e[&("a".into(), "a1".into())], e[&("b".into(), "b1".into())]);
    assert_eq!(db.run_log(run).unwrap().len(), 1, "the page went in once");
    assert_eq!(db.run(run).unwrap().unwrap().pages, 1);
}

on_both!(whole_runs_of_the_engine_go_through_the_store);

/// The engine's page path end to end (fake plugins, the real store): a
/// first run creates, dead-letters a refused record and saves its cursor
/// page by page; a second run from that cursor updates what changed,
/// leaves what did not, and delivers the refused record, resolving its
/// letter.
fn whole_runs_of_the_engine_go_through_the_store(db: Database) {
    use crate::testkit::{FakeDestination, FakeSource, page, prepared, record, run_over};
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dest = Arc::new(FakeDestination::default());
    let first = FakeSource::new(vec![
        Ok(page(
            vec![record("a", r#"{"n":1}"#), record("b", r#"{"n":2}"#)],
            "s1",
            true,
        )),
        Ok(page(
            vec![
                record("c", r#"{"n":3}"#),
                record("bad", r#"{"n":4,"reject":true}"#),
            ],
            "s2",
            false,
        )),
    ]);
    let p = prepared("", Arc::new(first), dest.clone());
    db.save_pipeline(&p.pipeline).unwrap();
    let store: Arc<dyn PageStore> = Arc::new(db.clone());
    let (counts, _) = rt
        .block_on(run_over(&p, store.clone(), None, false))
        .unwrap();
    assert_eq!((counts.read, counts.created, counts.failed), (4, 3, 1));
    let run1 = db.runs(&RunFilter::default()).unwrap()[0].clone();
    assert_eq!((run1.pages, run1.counts.created), (2, 3));
    assert_eq!(db.run_records(run1.id).unwrap().len(), 4);
    let letters = db
        .dead_letters(Some("p"), Some(DeadLetterStatus::Open))
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.source_id, "bad");
    let state = db.pipeline("p").unwrap().unwrap().state;
    assert_eq!(state.as_deref(), Some("s2"));
    let a = &db
        .links("contact", "crm", "contacts", &["a"], None)
        .unwrap()[0];
    let linked = db.entity(a.entity_id).unwrap();
    assert_eq!(
        linked.len(),
        2,
        "the source record and its copy: {linked:?}"
    );
    assert_eq!(dest.records().len(), 3);
    db.finish_run(run1.id, RunStatus::Succeeded, None).unwrap();

    let second = FakeSource::new(vec![Ok(page(
        vec![
            record("a", r#"{"n":10}"#),
            record("b", r#"{"n":2}"#),
            record("bad", r#"{"n":4}"#),
        ],
        "s3",
        false,
    ))]);
    let p = prepared("", Arc::new(second), dest.clone());
    let (counts, _) = rt.block_on(run_over(&p, store, state, false)).unwrap();
    assert_eq!(
        (counts.updated, counts.unchanged, counts.created),
        (1, 1, 1)
    );
    assert_eq!(dest.records().len(), 4);
    assert!(
        db.dead_letters(Some("p"), Some(DeadLetterStatus::Open))
            .unwrap()
            .is_empty(),
        "delivered, so resolved"
    );
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("s3")
    );
    let a2 = &db
        .links("contact", "crm", "contacts", &["a"], None)
        .unwrap()[0];
    assert_eq!(a2.entity_id, a.entity_id);
    assert_ne!(a2.known, a.known, "the new content is known");
}

/// Hosts starting one pipeline's run at once take turns, as SQLite's one
/// writer makes them: each start ends the run before it, so one run is
/// left running, whatever the timing.
#[test]
fn hosts_starting_a_pipeline_at_once_leave_one_run_running() {
    let (db, url) = postgres_database_and_url();
    db.save_pipeline(&pipeline("p")).unwrap();
    let hosts: Vec<Database> = (0..4).map(|_| Database::connect(&url).unwrap()).collect();
    for round in 0..15 {
        let barrier = std::sync::Barrier::new(hosts.len());
        std::thread::scope(|s| {
            for host in &hosts {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    host.begin_run("p").unwrap();
                });
            }
        });
        let running = db
            .runs(&RunFilter {
                status: Some(RunStatus::Running),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(running.len(), 1, "round {round}: {running:?}");
    }
}

/// A takeover and a commit serialise on the run's row: a commit that
/// meets another host ending its run (not yet committed) waits for it,
/// then finds the run no longer its own and writes nothing.
#[test]
fn a_commit_waits_for_a_takeover_in_progress_then_writes_nothing() {
    let (db, url) = postgres_database_and_url();
    let other = Database::connect(&url).unwrap();
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let taker = std::thread::spawn(move || {
        other
            .postgres()
            .unwrap()
            .with(async |c| {
                let tx = c.transaction().await?;
                tx.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE run_id = $1",
                    &[&run],
                )
                .await?;
                ended_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                tx.commit().await?;
                Ok(())
            })
            .unwrap();
    });
    ended_rx.recv().unwrap();
    let page = PageCommit {
        state: Some("late".into()),
        links: vec![link("a", "a1", None, 1)],
        ..PageCommit::default()
    };
    let ours = {
        let db = db.clone();
        std::thread::spawn(move || db.commit_page("p", run, &page))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!ours.is_finished(), "the commit waits for the takeover");
    go_tx.send(()).unwrap();
    taker.join().unwrap();
    let err = ours.join().unwrap().unwrap_err();
    assert!(
        matches!(err, nexo_db::StoreError::LeaseLost { run: r } if r == run),
        "{err}"
    );
    assert_eq!(db.pipeline("p").unwrap().unwrap().state, None);
    assert!(
        db.links("contact", "a", "s", &["a1"], None)
            .unwrap()
            .is_empty()
    );
}

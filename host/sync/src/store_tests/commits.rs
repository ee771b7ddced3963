//! The page commit and the identity map, on both backends: a page's effects
//! together, new entities and their groups, per-peer sync state, records
//! linked meanwhile, groups of pages, failures, search, and secrets kept out.

use super::*;

on_both!(
    a_page_commits_links_results_and_queues_together,
    a_record_is_synced_with_each_peer_on_its_own,
    a_record_linked_meanwhile_by_another_run_keeps_one_entity,
    one_record_links_to_an_entity_of_each_type,
    a_group_of_pages_commits_each_in_turn_in_one_transaction,
    a_failing_commit_leaves_nothing_behind,
    a_page_naming_one_record_twice_keeps_its_first_entity,
    search_finds_ids_first_then_content_in_any_case,
    secrets_are_scrubbed_from_what_a_commit_stores,
);

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

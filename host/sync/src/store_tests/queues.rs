//! Pipelines, settings and the dead-letter and conflict queues, on both
//! backends.

use super::*;

on_both!(
    changing_the_source_resets_the_cursor,
    pipelines_and_settings_read_back_alike,
    queues_are_read_and_settled_alike,
);

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

//! The engine's page path end to end over the real store, on both backends.

use super::*;

on_both!(whole_runs_of_the_engine_go_through_the_store,);

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

//! Contract 1.1's per-record mapping: a mapper refuses one record of a
//! batch and only that record is quarantined, with the mapper's reason,
//! while the rest are written; a replay maps it again with the pipeline's
//! mappers as they are now; a record a mapper turns into two is refused
//! alone. (Under 1.0 a mapper could only fail the whole batch, or drop the
//! record, which was counted as unchanged and lost from view.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo::sync::store::{DeadLetterKind, DeadLetterStatus, QueueStore, RunStore};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;

fn mapped_by(config: &str) -> String {
    format!("[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = {config}\n")
}

fn emails(server: &tinycrm::Server) -> Vec<String> {
    let mut v: Vec<String> = server
        .contacts()
        .iter()
        .map(|c| c["email"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_a_mapper_refuses_in_a_batch_of_100_is_quarantined_alone_with_its_reason() {
    let kit = Kit::new(tinycrm::seed(100), Default::default(), 100).await;
    kit.apply(&pipeline(
        "a-to-b",
        "",
        &mapped_by(r#"{ fail = { c0042 = "no usable name: only initials" } }"#),
    ))
    .await;
    let run = kit.run("a-to-b").await;
    assert_eq!(run.error, None);
    assert_eq!(
        (run.counts.read, run.counts.created, run.counts.quarantined),
        (100, 99, 1),
        "{:?}",
        run.counts
    );
    assert_eq!(kit.b.contacts().len(), 99);
    assert!(!emails(&kit.b).contains(&"ada42@example.com".to_string()));
    let letters = kit
        .db
        .dead_letters(Some("a-to-b"), Some(DeadLetterStatus::Open))
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.letter.source_id, "c0042");
    assert_eq!(letter.letter.kind, DeadLetterKind::Unmapped);
    assert_eq!(letter.letter.class, "rejected");
    assert!(
        letter.letter.error.contains("acme/test-mapper")
            && letter
                .letter
                .error
                .contains("no usable name: only initials"),
        "{}",
        letter.letter.error
    );

    // Replayed while the mapper still refuses it: refused again, kept.
    let err = kit.engine.replay(letter.id).await.unwrap_err().to_string();
    assert!(err.contains("still refused"), "{err}");
    assert_eq!(
        kit.db.dead_letter(letter.id).unwrap().unwrap().status,
        DeadLetterStatus::Open
    );

    // The mapper's config fixed: the replay maps it again and writes it.
    kit.apply(&pipeline("a-to-b", "", &mapped_by("{}"))).await;
    kit.engine.replay(letter.id).await.unwrap();
    assert_eq!(kit.b.contacts().len(), 100);
    assert!(emails(&kit.b).contains(&"ada42@example.com".to_string()));
    assert_eq!(
        kit.db.dead_letter(letter.id).unwrap().unwrap().status,
        DeadLetterStatus::Replayed
    );
    // And no run writes it a second time.
    assert_eq!(kit.run("a-to-b").await.counts.written(), 0);
    assert_eq!(kit.b.contacts().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_mapper_turns_into_two_is_refused_alone_and_a_skipped_one_is_not_lost_from_view()
{
    let kit = Kit::new(tinycrm::seed(10), Default::default(), 10).await;
    kit.apply(&pipeline(
        "a-to-b",
        "",
        &mapped_by(r#"{ split = ["c0007"], filter_field = "company" }"#),
    ))
    .await;
    let run = kit.run("a-to-b").await;
    // c0003, c0006 and c0009 have no company: left out by the filter,
    // counted as skipped (not as unchanged, nor lost).
    assert_eq!(
        (
            run.counts.created,
            run.counts.quarantined,
            run.counts.skipped,
            run.counts.unchanged
        ),
        (6, 1, 3, 0),
        "{:?}",
        run.counts
    );
    let stored = kit.db.run(run.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(stored.counts.skipped, 3, "stored with the run");
    let letters = kit.db.dead_letters(Some("a-to-b"), None).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.source_id, "c0007");
    assert!(
        letters[0].letter.error.contains("made 2 records"),
        "{}",
        letters[0].letter.error
    );
}

//! The review queue of matching before the first sync, on both backends:
//! written only by page commits (queued, held with the newest copy,
//! decided, delivered), read back alike.

use serde_json::json;

use super::*;

on_both!(reviews_are_queued_held_decided_and_delivered_alike);

fn held(id: &str, payload: &str) -> HeldRecord {
    HeldRecord {
        id: id.into(),
        payload: payload.into(),
        cursor: Some("2026-01-01".into()),
    }
}

fn reviews_are_queued_held_decided_and_delivered_alike(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let candidate = ReviewCandidate {
        id: "d1".into(),
        key: "name".into(),
        score: 0.95,
        record: json!({"name": "Farrah Hadad"}),
        version: None,
    };
    let queue = |id: &str| NewReview {
        record: held(id, r#"{"name":"Farah"}"#),
        mapped: json!({"name": "Farah Haddad"}),
        candidates: vec![candidate.clone()],
        why: "only a similar name".into(),
    };
    db.commit_page(
        "p",
        run,
        &PageCommit {
            new_reviews: vec![queue("s1"), queue("s2")],
            match_pass: Some(MatchCounts {
                linked: 4,
                queued: 2,
                unmatched: 1,
                already: 0,
            }),
            ..PageCommit::default()
        },
    )
    .unwrap();
    let (_, pass) = db.match_pass("p").unwrap().unwrap();
    assert_eq!((pass.linked, pass.queued, pass.unmatched), (4, 2, 1));
    assert!(db.match_pass("other").unwrap().is_none());
    let waiting = db.waiting_reviews("p", &["s1", "s2", "s3"]).unwrap();
    assert_eq!(waiting.len(), 2);
    let (s1, status) = waiting["s1"];
    assert_eq!(status, ReviewStatus::Open);
    let s2 = waiting["s2"].0;
    assert!(db.waiting_reviews("q", &["s1"]).unwrap().is_empty());

    // A run holds s1 and keeps its newest copy; a person decides both.
    db.commit_page(
        "p",
        run,
        &PageCommit {
            hold_reviews: vec![(s1, held("s1", r#"{"name":"Farah H."}"#))],
            decide_reviews: vec![
                ReviewDecision {
                    id: s1,
                    status: ReviewStatus::Accepted,
                    chosen: Some("d1".into()),
                    by: "cli:ana".into(),
                },
                ReviewDecision {
                    id: s2,
                    status: ReviewStatus::Rejected,
                    chosen: None,
                    by: "token:ops".into(),
                },
            ],
            ..PageCommit::default()
        },
    )
    .unwrap();
    let r = db.review(s1).unwrap().unwrap();
    assert_eq!(r.record.payload, r#"{"name":"Farah H."}"#);
    assert_eq!(
        (r.status, r.chosen.as_deref(), r.decided_by.as_deref()),
        (ReviewStatus::Accepted, Some("d1"), Some("cli:ana"))
    );
    assert_eq!(r.candidates, vec![candidate.clone()]);
    assert_eq!(r.mapped["name"], "Farah Haddad");
    assert!(r.decided_at.is_some());
    // Deciding again is refused, and nothing of that commit is kept.
    let again = db.commit_page(
        "p",
        run,
        &PageCommit {
            decide_reviews: vec![ReviewDecision {
                id: s1,
                status: ReviewStatus::Rejected,
                chosen: None,
                by: "cli:bo".into(),
            }],
            log: vec![(LogLevel::Info, "late".into())],
            ..PageCommit::default()
        },
    );
    assert!(
        matches!(again, Err(nexo_db::StoreError::Stale(_))),
        "{again:?}"
    );
    assert_eq!(
        db.review(s1).unwrap().unwrap().status,
        ReviewStatus::Accepted
    );
    assert!(!db.run_log(run).unwrap().iter().any(|(_, _, m)| m == "late"));

    let decided: Vec<i64> = db
        .decided_reviews("p")
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(decided, [s1, s2]);
    let open = db
        .reviews(&ReviewFilter {
            pipeline: Some("p".into()),
            status: Some(ReviewStatus::Open),
        })
        .unwrap();
    assert!(open.is_empty());

    // Delivered: no longer waiting; the record may be queued again later.
    db.commit_page(
        "p",
        run,
        &PageCommit {
            deliver_reviews: vec![s1, s2],
            new_reviews: vec![queue("s9")],
            ..PageCommit::default()
        },
    )
    .unwrap();
    assert!(db.decided_reviews("p").unwrap().is_empty());
    assert_eq!(
        db.waiting_reviews("p", &["s1", "s2", "s9"])
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["s9"]
    );
    assert_eq!(db.review(s1).unwrap().unwrap().delivered_run, Some(run));
    // Deleted in the source while it waits: withdrawn, no longer waiting.
    let s9 = db.waiting_reviews("p", &["s9"]).unwrap()["s9"].0;
    db.commit_page(
        "p",
        run,
        &PageCommit {
            withdraw_reviews: vec![s9],
            ..PageCommit::default()
        },
    )
    .unwrap();
    let r = db.review(s9).unwrap().unwrap();
    assert_eq!(
        (r.status, r.delivered_run),
        (ReviewStatus::Withdrawn, Some(run))
    );
    assert!(db.waiting_reviews("p", &["s9"]).unwrap().is_empty());
    let all = db.reviews(&ReviewFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].id > all[2].id, "newest first");
}

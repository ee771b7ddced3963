//! The matching pass on the in-memory store with fake plugins: invoices
//! found by their number and by customer + date + total, the customer
//! compared through the identity map (the CRM company and the books'
//! contact it became are one entity), and a pass that writes nothing it
//! is not sure of.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::going_live;
use super::page::PageContext;
use super::prepared::Prepared;
use super::retry::Waiter;
use super::store::{ReviewStatus, ReviewStore};
use super::testkit::*;
use nexo_runtime::plugin::Record;

const INVOICES: &str = "model = \"invoice\"\n[match]\nreferences = { customer = { entity = \"contact\", source = \"companies\", destination = \"contacts\" } }";

#[tokio::test]
async fn invoices_match_by_number_or_by_the_customer_they_bill_on_that_day_for_that_total() {
    let store = Arc::new(MemoryStore::default());
    // The CRM's company co-1 became the books' contact x-9 (one entity);
    // co-2 was never synced.
    store.seed(
        ("crm", "companies"),
        "co-1",
        7,
        "{}",
        ("books", "contacts"),
        None,
    );
    store.seed(
        ("books", "contacts"),
        "x-9",
        7,
        "{}",
        ("crm", "companies"),
        None,
    );
    let source = FakeSource::new(vec![Ok(page(
        vec![
            record(
                "inv-1",
                r#"{"customer":{"kind":"company","system":"crm","id":"co-1"},"issue_date":"2026-03-01","total":"120.00"}"#,
            ),
            record(
                "inv-2",
                r#"{"number":"INV-7","customer":{"kind":"company","system":"crm","id":"co-2"},"issue_date":"2026-02-01","total":"9.5"}"#,
            ),
            record(
                "inv-3",
                r#"{"customer":{"kind":"company","system":"crm","id":"co-2"},"issue_date":"2026-03-01","total":"120.00"}"#,
            ),
        ],
        "s1",
        false,
    ))]);
    let books = FakeSource::new(vec![Ok(page(
        vec![
            record(
                "d-1",
                r#"{"customer":{"kind":"company","system":"books","id":"x-9"},"issue_date":"2026-03-01T00:00:00Z","total":"120"}"#,
            ),
            record(
                "d-2",
                r#"{"number":"inv 7","customer":{"kind":"company","system":"books","id":"x-1"},"issue_date":"2026-02-01","total":"9.50"}"#,
            ),
        ],
        "b1",
        false,
    ))]);
    let mut p = prepared(
        INVOICES,
        Arc::new(source),
        Arc::new(FakeDestination::default()),
    );
    p.dest_reader = Arc::new(books);
    let waiter = Waiter {
        store: store.clone(),
        run: 1,
        stop: None,
        pipeline: "p".into(),
        retry: p.pipeline.retry.clone(),
    };
    let ctx = PageContext::over(&p, store.as_ref(), &waiter);
    let (commit, report) = going_live::pass(ctx).await.unwrap();
    let linked: Vec<_> = report
        .linked
        .iter()
        .map(|l| {
            (
                l.source_id.as_str(),
                l.destination_id.as_str(),
                l.key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        linked,
        [
            ("inv-1", "d-1", "customer+date+total"),
            ("inv-2", "d-2", "number")
        ]
    );
    // Same day and total, but another customer: not the same invoice.
    assert_eq!(report.unmatched, ["inv-3"]);
    assert!(report.queued.is_empty());
    // Each link pair is one new entity; nothing else is written.
    assert_eq!(commit.links.len(), 4);
    assert!(commit.links.iter().all(|l| l.synced_hash.is_none()));
    assert!(commit.new_reviews.is_empty());
    assert_eq!(commit.match_pass.unwrap().linked, 2);
}

/// A pipeline `p` (contacts crm → books) matching by e-mail, reading
/// `source` (twice when `books` is given: for the matching pass, then the
/// run) and, for the matching pass, `books`.
fn matching(source: Vec<Record>, books: Vec<Record>) -> Prepared {
    let reads = if books.is_empty() { 1 } else { 2 };
    let pages = (0..reads)
        .map(|_| Ok(page(source.clone(), "s", false)))
        .collect();
    let mut p = prepared(
        "[match]\nkeys = [\"email\"]",
        Arc::new(FakeSource::new(pages)),
        Arc::new(FakeDestination::default()),
    );
    p.dest_reader = Arc::new(FakeSource::new(vec![Ok(page(books, "b", false))]));
    p
}

#[tokio::test]
async fn a_held_record_waits_through_runs_and_its_review_is_withdrawn_when_the_source_deletes_it() {
    let store = Arc::new(MemoryStore::default());
    let p = matching(
        vec![
            record("r1", r#"{"email":"ana@x.io","n":1}"#),
            record("r2", r#"{"email":"bo@x.io","n":2}"#),
        ],
        vec![
            record("d1", r#"{"email":"ANA@x.io","n":0}"#),
            record("d2", r#"{"email":"bo@x.io"}"#),
            record("d3", r#"{"email":"Bo@X.io"}"#),
        ],
    );
    let (counts, _) = run_over(&p, store.clone(), None, false).await.unwrap();
    assert_eq!(
        (counts.read, counts.updated, counts.created, counts.held),
        (2, 1, 0, 1),
        "{counts:?}"
    );
    let review = store.waiting_reviews("p", &["r2"]).unwrap()["r2"].0;
    // Changed again while it waits: still held, its newest copy kept.
    let p = matching(
        vec![record("r2", r#"{"email":"bo@x.io","n":3}"#)],
        Vec::new(),
    );
    let (counts, _) = run_over(&p, store.clone(), Some("s".into()), false)
        .await
        .unwrap();
    assert_eq!((counts.held, counts.written()), (1, 0), "{counts:?}");
    assert!(
        store
            .review(review)
            .unwrap()
            .unwrap()
            .record
            .payload
            .contains("\"n\":3")
    );
    // Deleted in the source: nothing to decide any more.
    let p = matching(vec![deletion("r2")], Vec::new());
    let (counts, _) = run_over(&p, store.clone(), Some("s".into()), false)
        .await
        .unwrap();
    assert_eq!((counts.held, counts.written()), (0, 0), "{counts:?}");
    let r = store.review(review).unwrap().unwrap();
    assert_eq!(r.status, ReviewStatus::Withdrawn);
    assert!(store.waiting_reviews("p", &["r2"]).unwrap().is_empty());
}

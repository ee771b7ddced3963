//! Going live on books that already hold customers: the CRM's people
//! (HubSpot-like sandbox) flow to the Xero-like sandbox, which already has
//! most of them — typed by someone else, in other spellings, cases and
//! formats — and a few true namesakes. The pipeline declares `[match]`;
//! its first run links every sure match, queues the uncertain ones (their
//! records wait), creates only the rest: no customer twice, checked by
//! reading the books. Then a person accepts one queued match, picks
//! another candidate for a second, rejects a third — and the next run
//! updates the accepted ones in place and creates the rejected one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use nexo::sync::review::Verdict;
use nexo::sync::store::{ReviewFilter, ReviewStatus, ReviewStore, RunStore};
use nexo::sync::{RecordOutcome, RunOptions};
use nexo_sandbox::xero::{Collection, XeroSandbox};
use nexo_tests::going_live::{self, CRM, EXISTING, Expect};
use nexo_tests::tryton::Host;
use serde_json::Value;

/// The books' active contacts: ContactID → (Name, ContactNumber).
fn contacts(books: &XeroSandbox) -> BTreeMap<String, (String, String)> {
    books
        .records(Collection::Contacts)
        .into_iter()
        .filter(|c| c["ContactStatus"] == "ACTIVE")
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&c["ContactID"]),
                (text(&c["Name"]), text(&c["ContactNumber"])),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_links_what_the_books_hold_queues_the_uncertain_and_creates_only_the_rest() {
    let host = Host::new().await;
    let systems = going_live::Systems::connect(&host).await;
    let (books, crm_ids, existing) = (&systems.books, &systems.crm_ids, &systems.existing);
    let before = contacts(books);
    assert_eq!(before.len(), EXISTING.len());

    // The dry run says what the first run will do, and writes nothing.
    let dry = host
        .engine
        .run(
            "customers",
            RunOptions {
                dry_run: true,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let planned = dry.matching.clone().expect("the dry run matches first");
    assert_eq!(
        (
            planned.counts.linked,
            planned.counts.queued,
            planned.counts.unmatched
        ),
        (3, 3, 2),
        "{planned:?}"
    );
    assert_eq!(contacts(books), before, "a dry run writes nothing");
    assert!(host.db.match_pass("customers").unwrap().is_none());
    assert!(
        host.db
            .reviews(&ReviewFilter::default())
            .unwrap()
            .is_empty()
    );

    // The first run: matched, then synced, as the dry run said.
    let first = host.predicted_run("customers").await;
    let report = first.matching.clone().expect("the first run matches first");
    assert_eq!(report.counts, planned.counts);
    for person_id in crm_ids {
        let p = going_live::person(crm_ids, person_id);
        match p.expect {
            Expect::Linked(name) => {
                let l = report
                    .linked
                    .iter()
                    .find(|l| &l.source_id == person_id)
                    .unwrap_or_else(|| panic!("{} not linked: {report:?}", p.first));
                assert_eq!(l.destination_id, existing[name], "{}", p.first);
            }
            Expect::Queued(names) => {
                let q = report
                    .queued
                    .iter()
                    .find(|q| &q.source_id == person_id)
                    .unwrap_or_else(|| panic!("{} not queued: {report:?}", p.first));
                let got: BTreeSet<&str> = q.candidates.iter().map(|c| c.id.as_str()).collect();
                let want: BTreeSet<&str> = names.iter().map(|n| existing[n].as_str()).collect();
                assert_eq!(got, want, "{}: {}", p.first, q.why);
            }
            Expect::Created => assert!(report.unmatched.contains(person_id), "{}", p.first),
        }
    }
    assert_eq!(
        (
            first.counts.created,
            first.counts.updated,
            first.counts.held,
            first.counts.failed
        ),
        (2, 3, 3, 0),
        "{:?}",
        first.counts
    );

    // Zero duplicates, read from the books: the linked customers are the
    // records that were there (now carrying the CRM's number), only the
    // two new people were added, the queued ones wait.
    let after = contacts(books);
    assert_eq!(after.len(), EXISTING.len() + 2, "{after:?}");
    for (i, p) in CRM.iter().enumerate() {
        let number = format!("hubspot:{}", crm_ids[i]);
        let holders: Vec<&String> = after
            .iter()
            .filter(|(_, (_, n))| *n == number)
            .map(|(id, _)| id)
            .collect();
        match p.expect {
            Expect::Linked(name) => assert_eq!(holders, [&existing[name]], "{}", p.first),
            Expect::Created => assert_eq!(holders.len(), 1, "{}", p.first),
            Expect::Queued(_) => assert!(holders.is_empty(), "{} was written", p.first),
        }
    }
    assert_eq!(
        after[&existing["Zeta Trading Ltd"]],
        before[&existing["Zeta Trading Ltd"]]
    );

    // Held, not dropped: a second run still holds them, writes nothing.
    let again = host.run("customers").await;
    assert!(again.matching.is_none(), "matched once");
    assert_eq!(again.counts.written(), 0, "{:?}", again.counts);
    assert_eq!(contacts(books), after);

    // A person decides.
    let open = host
        .db
        .reviews(&ReviewFilter {
            pipeline: Some("customers".into()),
            status: Some(ReviewStatus::Open),
        })
        .unwrap();
    assert_eq!(open.len(), 3);
    let review_of = |first_name: &str| {
        let i = CRM.iter().position(|p| p.first == first_name).unwrap();
        open.iter().find(|r| r.source_id == crm_ids[i]).unwrap()
    };
    let farah = review_of("Farah");
    let dmitri = review_of("Dmitri");
    let elif = review_of("Elif");
    assert_eq!(farah.mapped["name"], "Farah Haddad");
    assert_eq!(farah.candidates[0].record["name"], "Farrah Hadad");
    let by = "cli:test";
    host.engine
        .decide_review(farah.id, Verdict::Accept(None), by)
        .unwrap();
    // Not one of its candidates: refused, nothing decided.
    let wrong = host
        .engine
        .decide_review(
            dmitri.id,
            Verdict::Accept(Some(existing["Zeta Trading Ltd"].clone())),
            by,
        )
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("not one of its candidates"), "{wrong}");
    let other = existing["DMITRI IVANOV"].clone();
    host.engine
        .decide_review(dmitri.id, Verdict::Accept(Some(other.clone())), by)
        .unwrap();
    host.engine
        .decide_review(elif.id, Verdict::Reject, by)
        .unwrap();
    let twice = host
        .engine
        .decide_review(elif.id, Verdict::Accept(None), by)
        .unwrap_err()
        .to_string();
    assert!(twice.contains("already rejected"), "{twice}");

    // The next run delivers the decisions: the accepted records are
    // updated where they are, the rejected one is created.
    let next = host.predicted_run("customers").await;
    assert_eq!(
        (next.counts.created, next.counts.updated, next.counts.held),
        (1, 2, 0),
        "{:?}",
        next.counts
    );
    let last = contacts(books);
    assert_eq!(last.len(), EXISTING.len() + 3, "{last:?}");
    let number_of = |first_name: &str| {
        let i = CRM.iter().position(|p| p.first == first_name).unwrap();
        format!("hubspot:{}", crm_ids[i])
    };
    assert_eq!(
        last[&existing["Farrah Hadad"]],
        ("Farah Haddad".to_string(), number_of("Farah"))
    );
    assert_eq!(
        last[&other],
        ("Dmitri Ivanov".to_string(), number_of("Dmitri"))
    );
    assert_eq!(
        last[&existing["Dmitri Ivanov GmbH"]],
        before[&existing["Dmitri Ivanov GmbH"]]
    );
    assert_eq!(
        last[&existing["ELIF YILMAZ"]],
        before[&existing["ELIF YILMAZ"]]
    );
    let elif_holders = last
        .values()
        .filter(|(_, n)| *n == number_of("Elif"))
        .count();
    assert_eq!(elif_holders, 1);
    let records = host.db.run_records(next.run_id.unwrap()).unwrap();
    assert!(
        records.iter().all(|r| r.outcome != RecordOutcome::Held),
        "{records:?}"
    );
    assert!(
        host.db
            .reviews(&ReviewFilter {
                pipeline: Some("customers".into()),
                status: None
            })
            .unwrap()
            .iter()
            .all(|r| r.delivered_run == next.run_id),
        "every decision delivered by that run"
    );

    // In step now: nothing more to write.
    let settled = host.run("customers").await;
    assert_eq!(settled.counts.written(), 0, "{:?}", settled.counts);
}

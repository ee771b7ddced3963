//! Going live from the command line, as an admin would: a pipeline whose
//! destination already holds some of the source's contacts (another case,
//! another phone format, a similar company name). A typo in `[match]` is
//! refused by name; `nexo pipeline match --dry-run` says what would be
//! linked, queued and created and writes nothing; `nexo pipeline match`
//! links and queues; `nexo review show` puts the queued record beside its
//! candidate; a pick that is not a candidate is refused; `nexo review
//! accept` links it, the audit trail says who; the run updates the linked
//! records and creates only the one the destination lacked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::{Kit, pipeline};
use serde_json::{Value, json};

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

fn contact(
    id: &str,
    first: &str,
    company: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> Value {
    json!({"id": id, "first_name": first, "last_name": "Example", "company": company,
        "email": email.unwrap_or(""), "phone": phone.unwrap_or(""), "lifecycle_stage": "customer", "country": "gb",
        "city": "Leeds", "updated_at": "2026-01-01T00:00:00Z"})
}

fn contacts(list: Vec<Value>) -> BTreeMap<String, Value> {
    list.into_iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c))
        .collect()
}

const MATCH: &str = "[match]\nkeys = [\"email\", \"phone\", \"name~0.9\"]\nfields = { name = \"company\" }\nfirst_run = false";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_matches_reviews_and_goes_live_without_a_duplicate() {
    let source = contacts(vec![
        contact("a1", "Ana", "Silva Lda", Some("ana@silva.pt"), None),
        contact(
            "a2",
            "Bo",
            "Berg Consulting",
            Some("bo@berg.se"),
            Some("+46 8 123 456 78"),
        ),
        contact("a3", "Cy", "Chen Imports", Some("cy@chen.cn"), None),
        contact("a4", "Dee", "Dunn & Co", Some("dee@dunn.ie"), None),
    ]);
    let books = contacts(vec![
        contact("b1", "Ana", "Silva", Some("ANA@Silva.PT"), None),
        contact("b2", "Bo", "Berg", None, Some("08-123 456 78")),
        contact("b3", "Cy", "Chen Import", None, None),
    ]);
    let kit = Kit::new(source, books, 10).await;
    let dir = kit.dir.path();
    let file = dir.join("a-to-b.toml");

    // A typo in the keys: named, with what a key can name; nothing saved.
    std::fs::write(
        &file,
        pipeline("a-to-b", "", &MATCH.replace("\"email\"", "\"emial\"")),
    )
    .unwrap();
    let err = fails(nexo(dir, &["pipeline", "apply", file.to_str().unwrap()]));
    assert!(
        err.contains("match.keys[0]") && err.contains("`emial`") && err.contains("tax_id, email"),
        "{err}"
    );
    std::fs::write(&file, pipeline("a-to-b", "", MATCH)).unwrap();
    ok(nexo(dir, &["pipeline", "apply", file.to_str().unwrap()]));

    // The dry run of matching writes nothing.
    let out = ok(nexo(dir, &["pipeline", "match", "a-to-b", "--dry-run"]));
    assert!(
        out.contains("would link 2, would queue 1, would create 1"),
        "{out}"
    );
    assert!(out.contains("link    a1 → b1  (by email)"), "{out}");
    assert!(out.contains("link    a2 → b2  (by phone)"), "{out}");
    assert!(ok(nexo(dir, &["review", "list"])).contains("no reviews"));

    let show = ok(nexo(dir, &["pipeline", "show", "a-to-b"]));
    assert!(show.contains("# matched: not yet"), "{show}");
    let out = ok(nexo(dir, &["pipeline", "match", "a-to-b"]));
    assert!(
        out.contains("linked 2, queued for review 1, to create 1"),
        "{out}"
    );
    let show = ok(nexo(dir, &["pipeline", "show", "a-to-b"]));
    assert!(
        show.contains("linked 2, queued 1, to create 1")
            && show.contains("# waiting for review: 1"),
        "{show}"
    );
    let list = ok(nexo(dir, &["review", "list", "--json"]));
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].to_string();
    assert_eq!(list[0]["source_id"], "a3");

    // Side by side: the company differs, the city agrees.
    let show = ok(nexo(dir, &["review", "show", &id]));
    assert!(
        show.contains("Chen Imports") && show.contains("≠ Chen Import"),
        "{show}"
    );
    assert!(show.contains("= Leeds"), "{show}");

    // A second pass finds nothing new to do.
    let out = ok(nexo(dir, &["pipeline", "match", "a-to-b"]));
    assert!(
        out.contains("linked 0, queued for review 0, to create 1, linked or queued before 3"),
        "{out}"
    );

    let err = fails(nexo(dir, &["review", "accept", &id, "--pick", "b1"]));
    assert!(
        err.contains("`b1` is not one of its candidates (b3)"),
        "{err}"
    );
    let out = ok(cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .env("NEXO_ACTOR", "ana")
        .args(["review", "accept", &id])
        .output()
        .unwrap());
    assert!(out.contains("linked to b3"), "{out}");
    let err = fails(nexo(dir, &["review", "reject", &id]));
    assert!(err.contains("already accepted (by cli:ana)"), "{err}");
    let audit = ok(nexo(dir, &["audit", "--action", "review.accept"]));
    assert!(
        audit.contains("cli:ana") && audit.contains(&format!("review/{id}")),
        "{audit}"
    );
    let entries = ok(nexo(dir, &["audit", "--action", "review.accept", "--json"]));
    let entries: Value = serde_json::from_str(&entries).unwrap();
    let entry = &entries.as_array().unwrap()[0];
    assert_eq!(entry["before"]["status"], "open", "{entry}");
    assert_eq!(entry["after"]["chosen"], "b3", "{entry}");

    // The run: three updated where they are, one created.
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(
        out.contains("created 1, updated 3") && out.contains("failed 0"),
        "{out}"
    );
    let b = kit.b.contacts();
    assert_eq!(b.len(), 4, "{b:?}");
    let by_company: BTreeMap<&str, &str> = b
        .iter()
        .map(|c| (c["company"].as_str().unwrap(), c["id"].as_str().unwrap()))
        .collect();
    assert_eq!(by_company["Chen Imports"], "b3", "updated in place: {b:?}");
    assert_eq!(by_company["Berg Consulting"], "b2");
    assert_eq!(by_company["Silva Lda"], "b1");
    assert!(by_company.contains_key("Dunn & Co"));
}

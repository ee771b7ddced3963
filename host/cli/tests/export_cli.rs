//! `nexo stream export` as an analyst or auditor runs it: every record of a
//! connection's stream, once, as JSON lines or CSV; a page limit that is
//! reached is an error saying how to go on, and the same command with its
//! state file goes on from where it stopped without repeating a record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::Kit;
use nexo_tests::tinycrm;
use serde_json::Value;

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

fn ids_of(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["stream"], "contacts", "{l}");
            assert!(v["payload"].is_object(), "{l}");
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_exported_once_as_json_lines() {
    let kit = Kit::new(tinycrm::seed(25), Default::default(), 10).await;
    let dir = kit.dir.path();
    let out = dir.join("contacts.jsonl");
    let o = nexo(
        dir,
        &[
            "stream",
            "export",
            "crm-a",
            "contacts",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    ok(o);
    assert!(
        err.contains("exported 25 records of contacts from crm-a in 3 pages"),
        "{err}"
    );
    let ids = ids_of(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(ids.len(), 25);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 25);

    // To stdout as well.
    let stdout = ok(nexo(dir, &["stream", "export", "crm-a", "contacts"]));
    assert_eq!(ids_of(&stdout).len(), 25);
}

/// Before: `--all-pages` (the only way to take a copy) stopped at its page
/// limit with exit 0 and no word, so a copy of a large system silently
/// lacked its last records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_limit_is_an_error_and_the_state_file_goes_on_without_repeats() {
    let kit = Kit::new(tinycrm::seed(25), Default::default(), 10).await;
    let dir = kit.dir.path();
    let out = dir.join("contacts.jsonl");
    let state = dir.join("contacts.state");
    let args = [
        "stream",
        "export",
        "crm-a",
        "contacts",
        "--out",
        out.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--max-pages",
        "1",
    ];
    let err = fails(nexo(dir, &args));
    assert!(
        err.contains("stopped at --max-pages 1") && err.contains("run the same command again"),
        "{err}"
    );
    assert_eq!(ids_of(&std::fs::read_to_string(&out).unwrap()).len(), 10);
    assert!(state.exists());
    // Twice more: the second page, then the last (which ends the stream).
    fails(nexo(dir, &args));
    let done = nexo(dir, &args);
    ok(done);
    let ids = ids_of(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(ids.len(), 25, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 25);
    assert!(!state.exists(), "a finished export leaves no state behind");

    // Without a state file the error says what to add.
    let err = fails(nexo(
        dir,
        &["stream", "export", "crm-a", "contacts", "--max-pages", "2"],
    ));
    assert!(
        err.contains("--state-file") && err.contains("--max-pages"),
        "{err}"
    );
}

/// An export killed after a page reached the file but before its state
/// was saved: the resumed export cuts the file back to where the state
/// says, so that page is neither doubled nor left half written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_cuts_off_what_was_written_after_the_saved_state() {
    let kit = Kit::new(tinycrm::seed(25), Default::default(), 10).await;
    let dir = kit.dir.path();
    let out = dir.join("contacts.jsonl");
    let state = dir.join("contacts.state");
    let args = [
        "stream",
        "export",
        "crm-a",
        "contacts",
        "--out",
        out.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
    ];
    fails(nexo(dir, &[&args[..], &["--max-pages", "1"]].concat()));
    // What a kill between the flush and the state's save leaves: records
    // past the saved state, the last one cut short.
    let mut text = std::fs::read_to_string(&out).unwrap();
    let first_ten = text.clone();
    text.push_str(first_ten.lines().next().unwrap());
    text.push('\n');
    text.push_str("{\"stream\":\"contacts\",\"id\":\"c00");
    std::fs::write(&out, text).unwrap();
    ok(nexo(dir, &args));
    let ids = ids_of(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(ids.len(), 25, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_has_a_header_and_a_row_per_record_and_typos_are_named() {
    let kit = Kit::new(tinycrm::seed(12), Default::default(), 5).await;
    let dir = kit.dir.path();
    let csv = ok(nexo(
        dir,
        &["stream", "export", "crm-a", "contacts", "--format", "csv"],
    ));
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("id,") && header.contains("email"),
        "{header}"
    );
    assert_eq!(lines.count(), 12, "{csv}");

    let err = fails(nexo(dir, &["stream", "export", "crm-a", "contact"]));
    assert!(
        err.contains("no stream `contact`") && err.contains("contacts"),
        "{err}"
    );
    let err = fails(nexo(dir, &["stream", "export", "crm-z", "contacts"]));
    assert!(err.contains("crm-z"), "{err}");
}

//! The run history as an admin reads it with the `nexo` binary: a run
//! whose process was killed does not stay `running`, and keeps the
//! duration it had when it last made progress.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nexo::sync::store::{QueueStore, RunStore};
use nexo_tests::cli::{self, ok};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;

fn nexo_cmd(dir: &Path) -> Command {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
}

fn nexo(dir: &Path, args: &[&str]) -> Output {
    nexo_cmd(dir).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_listed_interrupted_with_the_time_it_ran() {
    let kit = Kit::new(tinycrm::seed(200), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "batch_size = 5", "")).await;
    // Slow writes: the run is still going after its first pages.
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(20);
    let dir = kit.dir.path();
    let mut child = nexo_cmd(dir)
        .args(["pipeline", "run", "a-to-b"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has committed two pages.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the run never committed a page");
        if let Some(r) = kit.runs("a-to-b").first()
            && r.pages >= 2
        {
            break r.id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let listed = ok(nexo(dir, &["runs", "--pipeline", "a-to-b"]));
    let line = listed
        .lines()
        .find(|l| l.starts_with(&format!("#{id} ")))
        .unwrap_or_else(|| panic!("run #{id} not listed: {listed}"));
    assert!(
        line.contains(" interrupted "),
        "a killed run is listed as: {line}"
    );
    let ms: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix("ms")?.parse().ok())
        .unwrap_or_else(|| panic!("no duration in: {line}"));
    assert!(ms > 0, "a run that committed pages shows {ms}ms: {line}");
    let run = kit.db.run(id).unwrap().unwrap();
    assert!(run.finished_at.is_some(), "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("stopped before it finished"),
        "{run:?}"
    );

    // The next run resumes and finishes; the interrupted one stays as it is.
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(kit.b.crm.lock().unwrap().creates, 200);
    assert_eq!(kit.db.run(id).unwrap().unwrap(), run);
}

/// The source id of the one record `b` refused once (`reject_writes`),
/// after a run through the binary.
fn the_refused_record(kit: &Kit) -> (i64, String) {
    let letters = kit.db.dead_letters(Some("a-to-b"), None).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    (letters[0].id, letters[0].letter.source_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_record_a_later_run_delivered_is_listed_resolved() {
    let kit = Kit::new(tinycrm::seed(5), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "batch_size = 1", "")).await;
    let dir = kit.dir.path();
    // The destination refuses one record for a while.
    kit.b.crm.lock().unwrap().reject_writes = 1;
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("failed 1"), "{out}");
    let (letter, source_id) = the_refused_record(&kit);
    let open = ok(nexo(dir, &["dlq", "list", "--pipeline", "a-to-b"]));
    assert!(open.contains(&source_id), "{open}");

    // It is edited in the source; the next run reads it again and
    // delivers it.
    kit.a.edit(&source_id, "city", "Lyon");
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("created 1"), "{out}");
    assert_eq!(kit.b.contacts().len(), 5);

    let open = ok(nexo(dir, &["dlq", "list", "--pipeline", "a-to-b"]));
    assert!(open.contains("no dead letters"), "still open: {open}");
    let resolved = ok(nexo(dir, &["dlq", "list", "--status", "resolved"]));
    let line = resolved
        .lines()
        .find(|l| l.starts_with(&format!("{letter} ")))
        .unwrap_or_else(|| panic!("dead letter {letter} not listed resolved: {resolved}"));
    assert!(line.ends_with("(resolved)"), "{line}");
    let all = ok(nexo(dir, &["dlq", "list", "--status", "all"]));
    assert!(all.contains("(resolved)"), "{all}");
    let err = cli::fails(nexo(dir, &["dlq", "list", "--status", "fixed"]));
    assert!(
        err.contains("resolved"),
        "the statuses are not named: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_the_policy_settled_are_counted_in_the_summary_and_listed() {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    kit.apply(&pipeline(
        "a-to-b",
        "",
        "[conflicts]\npolicy = \"source-wins\"",
    ))
    .await;
    kit.run("a-to-b").await;
    // Both sides change the same contact: the source wins by policy.
    let a_id = kit.a.contacts()[0]["id"].as_str().unwrap().to_string();
    let email = kit.a.contacts()[0]["email"].as_str().unwrap().to_string();
    let b_id = kit
        .b
        .contacts()
        .into_iter()
        .find(|c| c["email"] == email.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    kit.b.edit(&b_id, "city", "Milan");
    tokio::time::sleep(Duration::from_millis(5)).await;
    kit.a.edit(&a_id, "city", "Paris");
    let dir = kit.dir.path();
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(
        out.contains("1 conflicts auto-resolved by the pipeline's policy")
            && out.contains("nexo conflict list --pipeline a-to-b --status auto-resolved"),
        "the summary does not say where the settled conflict is: {out}"
    );
    let listed = ok(nexo(
        dir,
        &[
            "conflict",
            "list",
            "--pipeline",
            "a-to-b",
            "--status",
            "auto-resolved",
        ],
    ));
    assert!(
        listed.contains(&a_id) && listed.contains("auto-resolved: source written by policy"),
        "{listed}"
    );
    let all = ok(nexo(dir, &["conflict", "list", "--status", "all"]));
    assert!(all.contains(&a_id), "{all}");
    let open = ok(nexo(dir, &["conflict", "list"]));
    assert!(open.contains("no conflicts"), "{open}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_show_tells_a_create_found_by_its_key_from_a_created_one() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    let dir = kit.dir.path();
    ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    // The next create is applied, then its answer is lost (a timeout):
    // the retry finds it by its idempotency key.
    {
        let mut b = kit.b.crm.lock().unwrap();
        b.apply_then_stall = 1;
        b.stall = Duration::from_millis(1500);
    }
    kit.a.insert(serde_json::json!({"first_name": "Lost", "last_name": "Answer", "email": "lost@example.com"}));
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("created 0, matched 1,"), "{out}");
    let id = kit.runs("a-to-b")[0].id.to_string();
    let shown = ok(nexo(dir, &["run", "show", &id]));
    assert!(shown.contains("created 0, matched 1,"), "{shown}");
    assert!(shown.contains("matched "), "the record's outcome: {shown}");
    let json = ok(nexo(dir, &["run", "show", &id, "--json"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["counts"]["matched"], 1, "{v}");
    assert_eq!(v["records"][0]["outcome"], "matched", "{v}");
}

/// A mistyped status is refused with the statuses there are, not answered
/// with an empty history an admin would take for "nothing failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_status_filter_is_refused_naming_the_statuses() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.run("a-to-b").await;
    let dir = kit.dir.path();
    let listed = ok(nexo(dir, &["runs", "--status", "succeeded"]));
    assert!(listed.contains(" succeeded "), "{listed}");
    let typo = nexo(dir, &["runs", "--status", "succeded"]);
    assert!(!typo.status.success(), "a typo listed: {typo:?}");
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        err.contains("succeeded") && err.contains("interrupted"),
        "{err}"
    );
}

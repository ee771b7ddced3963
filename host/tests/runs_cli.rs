//! The run history as an admin reads it with the `nexo` binary: a run
//! whose process was killed does not stay `running`, and keeps the
//! duration it had when it last made progress.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nexo::sync::store::SyncStore;
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

//! `nexo serve` as a process: SIGTERM in the middle of a run lets the page
//! in hand commit and exits cleanly; the next start resumes the run from
//! there, and the destination ends with exactly the source's records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nexo::sync::store::{RunFilter, RunStore};
use nexo_tests::cli::{listening_url, terminate, until};
use nexo_tests::synckit::{Kit, contents, pipeline};
use nexo_tests::tinycrm;

/// `nexo serve` on a free port; killed on drop if still running.
struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nexo"))
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("NEXO_LOG", "info")
            .env_remove("NEXO_SECRET_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first line says where it listens.
        let url = listening_url(&mut child);
        Daemon { child, url }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pipeline's runs, newest first.
fn runs_of(kit: &Kit, name: &str) -> Vec<nexo::sync::store::RunRow> {
    kit.db
        .runs(&RunFilter {
            pipeline: Some(name.into()),
            status: None,
            limit: 10,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_then_restart_loses_nothing_and_duplicates_nothing() {
    let kit = Kit::new(tinycrm::seed(200), Default::default(), 10).await;
    // Scheduled and never run: the daemon starts it at once.
    kit.apply(&pipeline(
        "a-to-b",
        "batch_size = 5",
        "[schedule]\nevery = \"1h\"",
    ))
    .await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(10);
    let dir = kit.dir.path();
    let runs = || runs_of(&kit, "a-to-b");

    let mut first = Daemon::start(dir);
    assert!(first.url.starts_with("http://127.0.0.1:"));
    until("some pages committed", || {
        runs().first().is_some_and(|r| r.pages >= 2)
    })
    .await;
    let status = first.terminate();
    assert!(status.success(), "exit status {status}");
    let cut = runs();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].status, "interrupted", "{:?}", cut[0]);
    assert!(
        cut[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("shutting down"),
        "{:?}",
        cut[0].error
    );
    let written = kit.b.contacts().len();
    assert!(written > 0 && written < 200, "stopped mid-run: {written}");
    // Everything written before the stop was committed with its page: the
    // identity map knows each destination record.
    let committed: u64 = cut[0].counts.created;
    assert_eq!(committed as usize, written, "a write outlived its commit");

    // Started again: the interrupted run is resumed, not left for the
    // schedule (an hour away).
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    let mut second = Daemon::start(dir);
    until("the resumed run finished", || {
        runs()
            .first()
            .is_some_and(|r| r.id != cut[0].id && r.status == "succeeded")
    })
    .await;
    assert!(second.terminate().success());
    assert_eq!(
        contents(&kit.a),
        contents(&kit.b),
        "lost or changed records"
    );
    assert_eq!(
        kit.b.crm.lock().unwrap().creates,
        200,
        "a record was created twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_upgraded_while_serving_is_used_by_the_next_run_not_the_one_in_flight() {
    let kit = Kit::new(tinycrm::seed(120), Default::default(), 10).await;
    kit.apply(&pipeline(
        "a-to-b",
        "batch_size = 5",
        "[schedule]\nevery = \"1h\"",
    ))
    .await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(10);
    let dir = kit.dir.path();
    let nexo = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_nexo"))
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("NEXO_LOG", "warn")
            .env_remove("NEXO_SECRET_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nexo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let secret = nexo(&["pipeline", "webhook", "a-to-b"]).trim().to_string();
    let runs = || runs_of(&kit, "a-to-b");
    let versions = |run: i64| {
        kit.db
            .run_log(run)
            .unwrap()
            .into_iter()
            .map(|(_, _, m)| m)
            .find(|m| m.starts_with("plugins:"))
            .unwrap_or_default()
    };

    let mut daemon = Daemon::start(dir);
    until("the first run is under way", || {
        runs().first().is_some_and(|r| r.pages >= 1)
    })
    .await;
    // The admin upgrades the connector from another shell, host serving.
    let file = dir.join("crm-1.1.0.nexo");
    std::fs::write(&file, kit.crm_bundle("1.1.0").await).unwrap();
    nexo(&[
        "plugin",
        "upgrade",
        "acme/crm",
        file.to_str().unwrap(),
        "--grant",
        "all",
    ]);
    until("the first run finished", || {
        runs().first().is_some_and(|r| r.finished_at.is_some())
    })
    .await;
    let first = runs()[0].clone();
    assert_eq!(first.status, "succeeded", "{first:?}");
    assert!(
        versions(first.id).contains("acme/crm@1.0.0"),
        "{}",
        versions(first.id)
    );

    // The next run, asked for by a webhook, uses the new version: no restart.
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    let id = kit.a.contacts()[0]["id"].as_str().unwrap().to_string();
    kit.a.edit(&id, "city", "After the upgrade");
    let body = b"{}".to_vec();
    let resp = reqwest::Client::new()
        .post(format!("{}/hooks/a-to-b", daemon.url))
        .header(
            nexo::serve::webhook::SIGNATURE_HEADER,
            nexo::serve::webhook::sign_now(&secret, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    until("the second run finished", || {
        runs()
            .first()
            .is_some_and(|r| r.id != first.id && r.finished_at.is_some())
    })
    .await;
    let second = runs()[0].clone();
    assert_eq!(second.status, "succeeded", "{second:?}");
    assert!(
        versions(second.id).contains("acme/crm@1.1.0"),
        "{}",
        versions(second.id)
    );
    assert!(daemon.terminate().success());
    assert_eq!(contents(&kit.a), contents(&kit.b));
}

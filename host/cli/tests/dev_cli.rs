//! `nexo plugin dev` through the binary, as a vendor runs it: one round of
//! an operation or of the kit (`--once`), and the watching loop — a new
//! component starts a new round, a failing build is shown and the loop
//! goes on until the sources are fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nexo_tests::{programs, tinycrm};
use serde_json::json;

const TOKEN: &str = "dev-cli-token-7f20";

/// `nexo plugin dev COMPONENT` against `crm`, with the data directory, the
/// config file and the current directory in `dir`; the config is
/// `{"base_url", "page_size": 5}` and `more_config`.
fn nexo_dev(
    dir: &Path,
    component: &Path,
    crm: &tinycrm::Server,
    more_config: &[(&str, &str)],
    extra: &[&str],
) -> Command {
    let config = dir.join("config.json");
    let mut value = json!({"base_url": crm.url(), "page_size": 5});
    for (k, v) in more_config {
        value[*k] = json!(v);
    }
    std::fs::write(&config, value.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexo"));
    cmd.current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["plugin", "dev"])
        .arg(component)
        .arg("--config")
        .arg(&config)
        .args(["--grant-private-http", &crm.url()])
        .args(["--secret", "api_token=env:DEV_TOKEN"])
        .args(extra)
        .env("DEV_TOKEN", TOKEN)
        .env("NEXO_LOG", "warn");
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_read_shows_the_records_and_the_plugin_log() {
    let crm = tinycrm::start(tinycrm::seed(7), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let out = nexo_dev(
        dir.path(),
        Path::new(programs::KIT_FAULTY_CONNECTOR),
        &crm,
        &[],
        &[
            "--once", "--op", "read", "--stream", "contacts", "--show", "3",
        ],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("── round 1 · "), "{stdout}");
    assert!(lines[0].contains(" · component "), "{stdout}");
    assert!(lines[1].starts_with("5 record(s) in "), "{stdout}");
    assert!(lines[1].ends_with("has_more: true"), "{stdout}");
    // Three records, one line each, then the count of the rest.
    for (line, id) in lines[2..5].iter().zip(["c0001", "c0002", "c0003"]) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["id"], id, "{stdout}");
        assert_eq!(record["payload"]["last_name"], "Lovelace");
    }
    assert_eq!(lines[5], "… 2 more (--show)");
    assert!(lines[6].starts_with("state: "), "{stdout}");
    // The plugin's own log line of that round.
    assert_eq!(lines[7], "log:");
    assert!(
        lines[8].ends_with("INFO read(contacts): page of 5 contact(s) after the start"),
        "{stdout}"
    );
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_suite_shows_the_kit_report_and_its_status() {
    let crm = tinycrm::start(tinycrm::seed(12), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    // `--suite` without a file: `nexo-test.toml` in the current directory.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example-crm/nexo-test.toml"),
        dir.path().join("nexo-test.toml"),
    )
    .unwrap();
    let out = nexo_dev(
        dir.path(),
        Path::new(programs::EXAMPLE_CRM),
        &crm,
        &[],
        &["--once", "--suite"],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("── round 1 · "), "{stdout}");
    for check in [
        "ok    check.credentials",
        "ok    read.contacts.resume",
        "ok    write.contacts.idempotent-create",
        "ok    faults.contacts.write-lost-answer",
    ] {
        assert!(stdout.contains(check), "{check}:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");

    // A failing check fails the round, and so the command.
    let out = nexo_dev(
        dir.path(),
        Path::new(programs::KIT_FAULTY_CONNECTOR),
        &crm,
        &[("fault", "auth-as-internal")],
        &["--once", "--suite"],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL  check.wrong-credentials"), "{stdout}");
    assert!(stderr.contains("round 1 failed"), "{stderr}");
}

/// A `plugin dev` left running, its stdout read line by line; killed when
/// dropped.
struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watching {
    fn start(mut cmd: Command) -> Watching {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The lines up to and including the first that contains `what`.
    fn until(&mut self, what: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let found = line.contains(what);
                    got.push(line);
                    if found {
                        return got;
                    }
                }
                Err(_) => panic!("no line with {what:?}; so far:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The component's short digest in a round header.
fn digest(header: &str) -> String {
    let (_, rest) = header.split_once(" · component ").unwrap();
    rest.split_whitespace().next().unwrap().to_string()
}

/// `from` copied over `to` the way a build tool finishes: written beside,
/// then renamed into place.
fn replace(from: &str, to: &Path) {
    let tmp = to.with_extension("wasm.partial");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_component_starts_a_new_round() {
    let crm = tinycrm::start(tinycrm::seed(7), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("plugin.wasm");
    replace(programs::EXAMPLE_CRM, &component);
    let mut dev = Watching::start(nexo_dev(
        dir.path(),
        &component,
        &crm,
        &[],
        &["--op", "read", "--stream", "contacts"],
    ));
    let round1 = dev.until("watching");
    assert!(round1[0].starts_with("── round 1 · "), "{round1:?}");
    assert!(
        round1.iter().any(|l| l.starts_with("5 record(s)")),
        "{round1:?}"
    );
    // example-crm does not log on read.
    assert!(!round1.iter().any(|l| l == "log:"), "{round1:?}");

    replace(programs::KIT_FAULTY_CONNECTOR, &component);
    let round2 = dev.until("watching");
    assert!(round2[0].starts_with("── round 2 · "), "{round2:?}");
    assert_ne!(digest(&round1[0]), digest(&round2[0]));
    assert!(
        round2
            .iter()
            .any(|l| l.contains("INFO read(contacts): page of 5 contact(s) after the start")),
        "{round2:?}"
    );

    // A file that is no component is an error of that round, not the end.
    std::fs::write(&component, b"not a component").unwrap();
    let round3 = dev.until("watching");
    assert!(
        round3[0].starts_with("── round 3 · ") && round3[0].contains(" · component ? ──"),
        "{round3:?}"
    );
    assert!(round3[1].starts_with("error: "), "{round3:?}");
    replace(programs::EXAMPLE_CRM, &component);
    let round4 = dev.until("watching");
    assert_eq!(digest(&round4[0]), digest(&round1[0]), "{round4:?}");
    assert!(
        round4.iter().any(|l| l.starts_with("5 record(s)")),
        "{round4:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_is_shown_and_the_loop_goes_on() {
    let crm = tinycrm::start(tinycrm::seed(7), TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("lib.rs"), "broken").unwrap();
    let component: PathBuf = dir.path().join("plugin.wasm");
    // The "build": fails while src/lib.rs says so, else puts the component
    // in place.
    let build = format!(
        "if grep -q broken src/lib.rs; then echo 'error[E0001]: src/lib.rs is broken' >&2; exit 2; fi; cp '{}' plugin.wasm",
        programs::KIT_FAULTY_CONNECTOR
    );
    let mut dev = Watching::start(nexo_dev(
        dir.path(),
        &component,
        &crm,
        &[],
        &["--op", "read", "--stream", "contacts", "--build", &build],
    ));
    let round1 = dev.until("watching");
    assert!(
        round1[0].starts_with("── round 1 · ") && round1[0].contains("build FAILED"),
        "{round1:?}"
    );
    assert!(
        round1.contains(&"  error[E0001]: src/lib.rs is broken".to_string()),
        "{round1:?}"
    );
    assert!(!component.exists());

    // Fixing the source (`src` is watched by default) builds and runs again.
    std::fs::write(src.join("lib.rs"), "fixed").unwrap();
    let round2 = dev.until("watching");
    assert!(round2[0].starts_with("── round 2 · "), "{round2:?}");
    assert!(round2[0].contains(" ms ──"), "build took: {round2:?}");
    assert!(
        round2.iter().any(|l| l.starts_with("5 record(s)")),
        "{round2:?}"
    );
    assert!(
        round2
            .iter()
            .any(|l| l.contains("INFO read(contacts): page of 5")),
        "{round2:?}"
    );
}

#[test]
fn a_trapping_plugin_is_shown_and_an_edited_config_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let input = dir.path().join("input.json");
    std::fs::write(&config, r#"{"trap": true}"#).unwrap();
    let records = json!([
        {"id": "1", "payload": {"email": "a@example.com"}},
        {"id": "2", "payload": {"email": "b@example.com"}},
    ]);
    std::fs::write(&input, records.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexo"));
    cmd.arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["plugin", "dev", programs::TEST_MAPPER, "--op", "map"])
        .arg("--config")
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .env("NEXO_LOG", "warn");
    let mut dev = Watching::start(cmd);
    let round1 = dev.until("watching");
    let error = round1.iter().find(|l| l.starts_with("error: ")).unwrap();
    assert!(error.contains("trap"), "{round1:?}");
    assert!(round1.last().unwrap().contains("config.json"), "{round1:?}");

    // The loop goes on; a new config is a new round.
    std::fs::write(&config, r#"{"set": {"city": "Paris"}}"#).unwrap();
    let round2 = dev.until("watching");
    assert!(round2[0].starts_with("── round 2 · "), "{round2:?}");
    assert!(!round2.iter().any(|l| l.starts_with("error")), "{round2:?}");
    let mapped: Vec<&String> = round2.iter().filter(|l| l.contains(" → ")).collect();
    assert_eq!(mapped.len(), 2, "{round2:?}");
    assert!(mapped[0].starts_with("1 → [") && mapped[0].contains(r#""city":"Paris""#));
}

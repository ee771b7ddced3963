//! Helpers for tests that drive the `nexo` binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output};

/// `bin` (the `nexo` binary: only the host's own tests can name it, with
/// `env!("CARGO_BIN_EXE_nexo")`) on the data directory `dir`, logging at
/// `log`, without a `NEXO_SECRET_KEY` from the environment running the
/// tests (the data directory's own key file is used).
pub fn command(bin: &str, dir: &Path, log: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg("--data-dir")
        .arg(dir)
        .env("NEXO_LOG", log)
        .env("NEXO_CACHE_DIR", crate::cache_dir())
        .env_remove("NEXO_SECRET_KEY");
    c
}

/// The base URL `nexo serve` gives on the first line of its stdout, read
/// from `child` (spawned with a piped stdout, which this takes).
pub fn listening_url(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string()
}

/// The stdout of a command that must have succeeded (else its stderr).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "nexo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must have failed (else its stdout).
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Wait until `cond` holds, polling for at most 30 s: real work (a run, a
/// server starting) takes its time, and a slow machine must not fail a test
/// that would pass. Panics naming `what` on time-out.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// SIGTERM `child`, then wait up to `within` for it to exit.
pub fn terminate(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM failed");
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the process did not stop within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

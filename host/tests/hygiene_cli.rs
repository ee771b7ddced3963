//! What the `nexo` binary shows and leaves behind when plugins and remote
//! systems are hostile (issue 14, classes 9 and 10): no raw terminal
//! escapes and no forged log lines in any output, a private data directory,
//! key-value data that one local component cannot read from another, and a
//! quiet exit when stdout is closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use nexo_tests::cli::{fails, ok};
use nexo_tests::programs;
use nexo_tests::synckit::{Kit, connection};
use nexo_tests::tinycrm;
use serde_json::json;

/// What the hostile plugin and server send.
const TITLE_AND_CLEAR: &str = "\x1b]0;pwned\x07\x1b[2J";

fn nexo_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nexo"));
    c.arg("--data-dir")
        .arg(dir)
        .env("NEXO_LOG", "info")
        .env_remove("NEXO_SECRET_KEY");
    c
}

fn nexo(dir: &Path, args: &[&str]) -> Output {
    nexo_cmd(dir).args(args).output().unwrap()
}

/// Control characters a terminal acts on (C0 but tab and newline, DEL, C1).
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect()
}

/// Both streams of `out` hold no raw control character.
fn assert_clean(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let raw = raw_controls(&text);
        assert!(
            raw.is_empty(),
            "{what}: raw control characters {raw:?} on {stream}:\n{text}"
        );
    }
}

#[test]
fn a_plugins_log_cannot_drive_the_terminal_or_forge_a_host_log_line() {
    let data = tempfile::tempdir().unwrap();
    let out = nexo(
        data.path(),
        &[
            "plugin",
            "call",
            programs::HOSTILE_OUTPUT,
            "read",
            "--stream",
            "log",
        ],
    );
    assert_clean("plugin log", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Shown, escaped: the admin sees what the plugin tried.
    assert!(stderr.contains("\\x1b]0;pwned"), "{stderr}");
    // One plugin log call is one line: the forged line stays inside it.
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("2026-12-05T00:00:00Z")),
        "a forged host log line:\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("forged"))
        .unwrap_or_else(|| panic!("the plugin's line is missing:\n{stderr}"));
    assert!(
        line.contains("nexo::plugin") && line.contains("ok\\n2026-12-05"),
        "{line}"
    );
}

#[test]
fn a_plugins_error_and_records_are_shown_escaped() {
    let data = tempfile::tempdir().unwrap();
    let read = |stream: &str| {
        nexo(
            data.path(),
            &[
                "plugin",
                "call",
                programs::HOSTILE_OUTPUT,
                "read",
                "--stream",
                stream,
            ],
        )
    };
    let out = read("fail");
    assert_clean("plugin error", &out);
    let err = fails(out);
    assert!(
        err.contains("remote said: \\x1b]0;pwned") && err.contains("\\u{9b}31m"),
        "{err}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("2026-12-05T00:00:00Z")),
        "{err}"
    );

    // JSON output: serde escapes C0; DEL and C1 must be escaped too, and
    // the output must still be the same JSON.
    let out = read("records");
    assert_clean("plugin records", &out);
    let text = ok(out);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let record = &v["pages"][0]["records"][0];
    assert_eq!(
        record["id"],
        json!(format!("id{TITLE_AND_CLEAR}\u{9b}2J\u{7f}"))
    );
}

/// A server that answers every request with 401 and `body`.
async fn hostile_server(body: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_systems_error_is_shown_escaped_by_pipeline_run_runs_and_run_show() {
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 50).await;
    let (url, server) =
        hostile_server("\x1b]0;pwned\x07\x1b[2J\u{9b}31m\nerror: forged by the server").await;
    let mut evil = connection("evil", &kit.a, json!({"base_url": url, "page_size": 50}));
    evil.grants.private_http = vec![url.clone()];
    kit.connections.add(evil).unwrap();
    kit.apply(
        "name = \"from-evil\"\nentity = \"contact\"\n\
         [source]\nconnection = \"evil\"\nstream = \"contacts\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n",
    )
    .await;
    let dir = kit.dir.path();

    let out = nexo(dir, &["pipeline", "run", "from-evil"]);
    assert_clean("pipeline run", &out);
    let err = fails(out);
    assert!(err.contains("\\x1b]0;pwned"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("error: forged")),
        "{err}"
    );

    let out = nexo(dir, &["runs"]);
    assert_clean("runs", &out);
    let text = ok(out);
    assert!(text.contains("\\x1b]0;pwned"), "{text}");
    assert!(text.contains("\\u{9b}31m"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("error: forged")),
        "{text}"
    );
    let id = text
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches('#')
        .to_string();

    let out = nexo(dir, &["run", "show", &id]);
    assert_clean("run show", &out);
    let text = ok(out);
    assert!(text.contains("\\x1b]0;pwned"), "{text}");

    let out = nexo(dir, &["run", "show", &id, "--json"]);
    assert_clean("run show --json", &out);
    let v: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains(TITLE_AND_CLEAR),
        "JSON keeps the exact text: {v}"
    );
    server.abort();
}

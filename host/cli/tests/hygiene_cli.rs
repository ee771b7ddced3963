//! What the `nexo` binary shows and leaves behind when plugins and remote
//! systems are hostile (issue 14, classes 9 and 10): no raw terminal
//! escapes and no forged log lines in any output, a private data directory,
//! key-value data that one local component cannot read from another, and a
//! quiet exit when stdout is closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use nexo_tests::cli::{self, fails, ok};
use nexo_tests::programs;
use nexo_tests::synckit::{Kit, connection};
use nexo_tests::tinycrm;
use serde_json::json;

/// What the hostile plugin and server send.
const TITLE_AND_CLEAR: &str = "\x1b]0;pwned\x07\x1b[2J";

fn nexo_cmd(dir: &Path) -> Command {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "info")
}

fn nexo(dir: &Path, args: &[&str]) -> Output {
    nexo_cmd(dir).args(args).output().unwrap()
}

/// `nexo plugin call` reading `stream` of the hostile-output connector.
fn read_hostile(dir: &Path, stream: &str) -> Output {
    nexo(
        dir,
        &[
            "plugin",
            "call",
            programs::HOSTILE_OUTPUT,
            "read",
            "--stream",
            stream,
        ],
    )
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
    let out = read_hostile(data.path(), "log");
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
    let read = |stream: &str| read_hostile(data.path(), stream);
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
    // The SDK quotes a failed answer's body as one line with its control
    // characters blanked, and the host escapes whatever still has any: the
    // server's words arrive ("]0;pwned"), its escapes never act.

    let out = nexo(dir, &["pipeline", "run", "from-evil"]);
    assert_clean("pipeline run", &out);
    let err = fails(out);
    assert!(err.contains("]0;pwned"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("error: forged")),
        "{err}"
    );

    let out = nexo(dir, &["runs"]);
    assert_clean("runs", &out);
    let text = ok(out);
    assert!(text.contains("]0;pwned"), "{text}");
    assert!(text.contains("31m"), "{text}");
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
    assert!(text.contains("]0;pwned"), "{text}");

    let out = nexo(dir, &["run", "show", &id, "--json"]);
    assert_clean("run show --json", &out);
    let v: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("]0;pwned"), "{v}");
    assert!(
        !error.chars().any(|c| c.is_control()),
        "no control character is stored from the answer: {v}"
    );
    server.abort();
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_database_are_private_and_tightened_if_loose() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    ok(nexo(&data, &["plugin", "list"]));
    assert_eq!(mode(&data), 0o700, "data directory");
    let db = data.join("nexo.db");
    assert_eq!(mode(&db), 0o600, "database");
    for side in ["nexo.db-wal", "nexo.db-shm"] {
        let p = data.join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }

    // Loosened by hand (a copy, a umask): tightened again, with a warning.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = nexo(&data, &["plugin", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert_eq!(mode(&data), 0o700, "data directory, tightened");
    assert_eq!(mode(&db), 0o600, "database, tightened");
    assert!(
        stderr.contains("WARN") && stderr.contains("0644") && stderr.contains("0600"),
        "{stderr}"
    );
}

#[test]
fn two_local_components_with_one_id_do_not_share_key_value_data() {
    let data = tempfile::tempdir().unwrap();
    let call = |wasm: &str, stream: &str| {
        nexo(
            data.path(),
            &[
                "plugin",
                "call",
                wasm,
                "read",
                "--stream",
                stream,
                "--grant-kv",
                "1024",
                "--id",
                "local/shared",
            ],
        )
    };
    ok(call(programs::HOSTILE_OUTPUT, "kv-plant"));
    // The other component, claiming the same id, lists its keys.
    let text = ok(call(programs::HOSTILE, "kv"));
    assert!(text.contains("stored 10 bytes"), "{text}");
    assert!(
        !text.contains("planted-by-hostile-output"),
        "one component read another's key-value data: {text}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let data = tempfile::tempdir().unwrap();
    // The reader is gone before nexo writes a byte: `nexo runs | head -0`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = nexo_cmd(data.path())
        .args(["runs"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(141)),
        "{:?}: {stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_budget_gets_the_default_one() {
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 50).await;
    let mut plain = connection("plain", &kit.a, json!({"base_url": kit.a.url()}));
    plain.grants.requests_per_minute = None;
    kit.connections.add(plain).unwrap();
    let shown = ok(nexo(kit.dir.path(), &["connection", "show", "plain"]));
    assert!(
        shown.contains("requests     at most 600 per minute (the default)"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_record_values_are_shown_escaped_by_dry_run_and_dead_letters() {
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 50).await;
    kit.apply(&nexo_tests::synckit::pipeline("a-to-b", "", ""))
        .await;
    kit.run("a-to-b").await;
    let id = kit.a.contacts()[0]["id"].as_str().unwrap().to_string();
    // A person (or an attacker) with write access to the source system.
    let hostile = format!("Ada{TITLE_AND_CLEAR}\u{9b}2J");
    kit.a.edit(&id, "first_name", hostile.clone());
    let dir = kit.dir.path();

    let out = nexo(dir, &["pipeline", "run", "a-to-b", "--dry-run"]);
    assert_clean("pipeline run --dry-run", &out);
    let text = ok(out);
    assert!(text.contains("first_name"), "{text}");

    let out = nexo(dir, &["pipeline", "run", "a-to-b", "--dry-run", "--json"]);
    assert_clean("pipeline run --dry-run --json", &out);
    let v: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert!(v.to_string().contains("\\u001b]0;pwned"), "{v}");

    // The destination refuses the write: a dead letter holding the record.
    kit.b.crm.lock().unwrap().reject_writes = 1;
    kit.b.crm.lock().unwrap().fail_writes = 0;
    let out = nexo(dir, &["pipeline", "run", "a-to-b"]);
    assert_clean("pipeline run", &out);
    let out = nexo(dir, &["dlq", "list", "--status", "all"]);
    assert_clean("dlq list", &out);
    let list = ok(out);
    let letter = list.split_whitespace().next().unwrap().to_string();
    let out = nexo(dir, &["dlq", "show", &letter]);
    assert_clean("dlq show", &out);
    let shown = ok(out);
    assert!(shown.contains("\\u009b2J"), "{shown}");
}

//! `nexo alert` as an admin uses it: channels whose secrets come from stdin
//! or the environment (never argv), rules, the test button on the command
//! line and through the API of `nexo serve`, against a real SMTP server
//! and a webhook receiver on 127.0.0.1. Then every CLI output, every API
//! answer, the daemon's log and every file of the data directory (the
//! database included) are searched for the two secrets: zero hits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nexo_tests::alerts::{SmtpServer, webhook_receiver};
use nexo_tests::cli::{fails, listening_url, ok, terminate, until};
use serde_json::{Value, json};

const HOOK_SECRET: &str = "whsec_cli-Hk7/Qz+9pL";
const SMTP_PASSWORD: &str = "smtp-Pw\"4xR!m2Tq";

struct Admin {
    dir: tempfile::TempDir,
    outputs: Vec<(String, Vec<u8>)>,
}

impl Admin {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nexo"));
        c.arg("--data-dir")
            .arg(self.dir.path())
            .env("NEXO_LOG", "info")
            .env("NEXO_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
            .env_remove("NEXO_SECRET_KEY");
        c
    }

    fn keep(&mut self, what: String, out: &Output) {
        self.outputs
            .push((format!("{what} stdout"), out.stdout.clone()));
        self.outputs
            .push((format!("{what} stderr"), out.stderr.clone()));
    }

    fn nexo(&mut self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        self.keep(format!("`nexo {}`", args.join(" ")), &out);
        out
    }

    fn nexo_stdin(&mut self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        self.keep(format!("`nexo {}` (stdin)", args.join(" ")), &out);
        out
    }
}

fn every_file(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn hits(place: &str, text: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for secret in [HOOK_SECRET, SMTP_PASSWORD] {
        let json = serde_json::to_string(secret).unwrap();
        for needle in [secret, &json[1..json.len() - 1]] {
            if text.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{place}: {needle}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_channels_keep_their_secrets_and_the_test_button_reaches_smtp_and_the_webhook() {
    let smtp = SmtpServer::start();
    let (hooks, hook_url, stop_hooks) = webhook_receiver(HOOK_SECRET).await;
    let mut admin = Admin {
        dir: tempfile::tempdir().unwrap(),
        outputs: Vec::new(),
    };
    let port = smtp.port.to_string();

    // A secret on the command line is refused, without being echoed.
    let err = fails(admin.nexo(&[
        "alert",
        "channel",
        "add",
        "hook",
        "--webhook",
        &hook_url,
        "--secret",
        HOOK_SECRET,
    ]));
    assert!(err.contains("never appears on the command line"), "{err}");
    // A webhook needs its signing secret.
    let err = fails(admin.nexo(&["alert", "channel", "add", "hook", "--webhook", &hook_url]));
    assert!(err.contains("signing secret"), "{err}");
    ok(admin.nexo_stdin(
        &[
            "alert",
            "channel",
            "add",
            "hook",
            "--webhook",
            &hook_url,
            "--secret",
            "-",
        ],
        &format!("{HOOK_SECRET}\n"),
    ));
    ok(admin.nexo(&[
        "alert",
        "channel",
        "add",
        "mail",
        "--smtp",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "plain",
        "--from",
        "nexo@example.test",
        "--to",
        "ops@example.test",
    ]));
    // Plain SMTP to another machine is refused.
    let err = fails(admin.nexo(&[
        "alert",
        "channel",
        "add",
        "far",
        "--smtp",
        "smtp.example.test",
        "--security",
        "plain",
        "--from",
        "nexo@example.test",
        "--to",
        "ops@example.test",
    ]));
    assert!(err.contains("only to a server on this machine"), "{err}");
    ok(admin.nexo(&[
        "alert",
        "channel",
        "add",
        "mail-auth",
        "--smtp",
        "smtp.example.test",
        "--username",
        "nexo",
        "--secret",
        "env:NEXO_TEST_SMTP_PASSWORD",
        "--from",
        "nexo@example.test",
        "--to",
        "ops@example.test",
    ]));
    let list: Value =
        serde_json::from_str(&ok(admin.nexo(&["alert", "channel", "list", "--json"]))).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hook", "mail", "mail-auth"]);
    assert_eq!(list[2]["has_secret"], true);
    assert_eq!(list[2]["config"]["port"], 587);
    ok(admin.nexo(&["alert", "channel", "list"]));

    // Rules.
    let err = fails(admin.nexo(&[
        "alert",
        "rule",
        "add",
        "dlq",
        "--when",
        "dead-letters-above",
        "--channel",
        "hook",
    ]));
    assert!(err.contains("--threshold"), "{err}");
    let err = fails(admin.nexo(&[
        "alert",
        "rule",
        "add",
        "x",
        "--when",
        "run-failed",
        "--channel",
        "nope",
    ]));
    assert!(err.contains("no alert channel named `nope`"), "{err}");
    ok(admin.nexo(&[
        "alert",
        "rule",
        "add",
        "failing",
        "--when",
        "run-failed",
        "--channel",
        "hook",
        "--channel",
        "mail",
        "--quiet-hours",
        "22:00-07:00",
        "--utc-offset",
        "-05:00",
    ]));
    let rules: Value =
        serde_json::from_str(&ok(admin.nexo(&["alert", "rule", "list", "--json"]))).unwrap();
    assert_eq!(
        rules[0],
        json!({"name": "failing", "condition": {"kind": "run-failed"}, "channels": ["hook", "mail"],
               "quiet_hours": {"from": "22:00", "to": "07:00", "utc_offset_minutes": -300}})
    );
    let incidents = ok(admin.nexo(&["alert", "incidents", "--json"]));
    assert_eq!(
        serde_json::from_str::<Value>(&incidents).unwrap(),
        json!([])
    );

    // The test button on the command line: both receivers get it.
    ok(admin.nexo(&["alert", "test", "hook"]));
    ok(admin.nexo(&["alert", "test", "mail"]));
    assert_eq!(smtp.subjects(), ["[Nexo] test of alert channel mail"]);
    assert_eq!(
        hooks.lock().unwrap().accepted,
        vec![json!({"event": "test", "channel": "hook"})]
    );
    // A failing channel says why, without its secret.
    let err = fails(admin.nexo(&["alert", "test", "mail-auth"]));
    assert!(err.contains("smtp.example.test"), "{err}");

    // The API.
    let token = ok(admin.nexo(&["token", "create", "--name", "auditor", "--role", "admin"]))
        .trim()
        .to_string();
    let mut serve = admin
        .cmd()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = listening_url(&mut serve);
    let mut stderr = serve.stderr.take().unwrap();
    let daemon_log = std::thread::spawn(move || {
        let mut all = Vec::new();
        stderr.read_to_end(&mut all).unwrap();
        all
    });
    let http = reqwest::Client::new();
    let mut answers: Vec<(String, Vec<u8>)> = Vec::new();
    for path in [
        "/api/alerts/channels",
        "/api/alerts/rules",
        "/api/alerts/incidents?open=true",
    ] {
        let resp = http
            .get(format!("{url}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}");
        answers.push((path.into(), resp.bytes().await.unwrap().to_vec()));
    }
    let resp = http
        .post(format!("{url}/api/alerts/channels/hook/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"ok": true, "error": null}));
    until("the API's test reached the receiver", || {
        hooks.lock().unwrap().accepted.len() == 2
    })
    .await;
    // A channel added through the API, its secret write-only; a body the
    // API refuses does not echo the secret either.
    for (body, status) in [
        (
            json!({"name": "hook2", "config": {"kind": "webhook", "url": hook_url}, "secret": HOOK_SECRET, "extra": 1}),
            400,
        ),
        (
            json!({"name": "hook2", "config": {"kind": "webhook", "url": 7}, "secret": HOOK_SECRET}),
            400,
        ),
        (
            json!({"name": "hook2", "config": {"kind": "webhook", "url": hook_url}, "secret": HOOK_SECRET}),
            201,
        ),
        (
            json!({"name": "hook2", "config": {"kind": "webhook", "url": hook_url}, "secret": HOOK_SECRET}),
            409,
        ),
    ] {
        let resp = http
            .post(format!("{url}/api/alerts/channels"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        answers.push((
            "POST /api/alerts/channels".into(),
            resp.bytes().await.unwrap().to_vec(),
        ));
    }
    let resp = http
        .post(format!("{url}/api/alerts/channels/hook2/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["ok"], true);
    until("hook2's test was verified with its secret", || {
        hooks.lock().unwrap().accepted.len() == 3
    })
    .await;
    assert_eq!(hooks.lock().unwrap().refused, 0);
    assert!(terminate(&mut serve, Duration::from_secs(30)).success());
    let log = daemon_log.join().unwrap();

    // Removing.
    ok(admin.nexo(&["alert", "rule", "remove", "failing"]));
    ok(admin.nexo(&["alert", "channel", "remove", "mail-auth"]));
    let err = fails(admin.nexo(&["alert", "channel", "remove", "mail-auth"]));
    assert!(err.contains("no alert channel named `mail-auth`"), "{err}");

    // Zero hits anywhere.
    let mut found = Vec::new();
    for (place, text) in admin.outputs.iter().chain(&answers) {
        found.extend(hits(place, text));
    }
    found.extend(hits("`nexo serve` stderr", &log));
    let mut files = Vec::new();
    every_file(admin.dir.path(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("nexo.db")), "{files:?}");
    for f in &files {
        found.extend(hits(&f.display().to_string(), &std::fs::read(f).unwrap()));
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    let _ = stop_hooks.send(());
}

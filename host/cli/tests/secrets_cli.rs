//! Secret values never come back into the sandbox nor out of the host.
//!
//! An admin installs a hostile connector (`hostile-secrets`), adds two
//! connections with a secret, and runs two pipelines through the `nexo`
//! binary; the API the secret is bound to echoes every request header
//! (and answers 401 quoting the credential). The connector tries every
//! route out: records, page state, kv, its log, stdout, its errors (run
//! error, dead letters), and a second granted origin. Then the whole data
//! directory, every CLI output, every admin API answer, the console's pages
//! in headless Chromium and what the second server received are searched
//! for the secret in every encoding: zero hits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use nexo_tests::browser::{Browser, click, login, wait};
use nexo_tests::cli::{fails, listening_url, ok, terminate};
use nexo_tests::{echo, programs};
use serde_json::Value;

/// The secret: long enough to be redacted, with characters that JSON and
/// percent-encoding spell differently.
const TOKEN: &str = "hs-\"tok/en+Zq8w2Lx9";
const USER: &str = "ada";

/// The secret in every form a system could echo it in.
fn forms() -> Vec<(String, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let b64url = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let pct: String = TOKEN
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let json = serde_json::to_string(TOKEN).unwrap();
    let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    let basic = format!("{USER}:{TOKEN}");
    vec![
        ("plaintext".into(), TOKEN.into()),
        ("base64".into(), b64(TOKEN)),
        (
            "base64 unpadded".into(),
            b64(TOKEN).trim_end_matches('=').into(),
        ),
        ("base64url".into(), b64url(TOKEN)),
        ("basic auth base64".into(), b64(&basic)),
        ("percent-encoded".into(), pct),
        ("JSON-escaped".into(), json[1..json.len() - 1].to_string()),
        ("hex".into(), hex),
        ("HTML-escaped".into(), TOKEN.replace('"', "&quot;")),
    ]
}

/// Where and in which form the secret occurs in `text`, if it does.
fn hits(place: &str, text: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (form, needle) in forms() {
        let hit = text
            .windows(needle.len())
            .position(|w| w == needle.as_bytes());
        if let Some(at) = hit {
            let from = at.saturating_sub(60);
            let to = (at + needle.len() + 20).min(text.len());
            found.push(format!(
                "{place} ({form}): …{}…",
                String::from_utf8_lossy(&text[from..to])
            ));
        }
    }
    found
}

struct Admin {
    dir: tempfile::TempDir,
    /// stdout and stderr of every command run so far.
    outputs: Vec<(String, Vec<u8>)>,
}

impl Admin {
    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nexo"));
        c.arg("--data-dir")
            .arg(self.data())
            // Plugin log lines are info: the console shows them.
            .env("NEXO_LOG", "info")
            .env("HS_TOKEN", TOKEN)
            .env("HS_SHORT", "abc1234")
            .env_remove("NEXO_SECRET_KEY");
        c
    }

    fn nexo(&mut self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        let what = format!("`nexo {}`", args.join(" "));
        self.outputs
            .push((format!("{what} stdout"), out.stdout.clone()));
        self.outputs
            .push((format!("{what} stderr"), out.stderr.clone()));
        out
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

/// `nexo serve` on a free port, its stderr kept for the search.
struct Daemon {
    child: Child,
    url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn every_file(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_carries_a_secret_out_of_the_sandbox() {
    let api = echo::start_echo().await;
    let drop_box = echo::start_collector().await;
    let mut admin = Admin {
        dir: tempfile::tempdir().unwrap(),
        outputs: Vec::new(),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/programs/hostile-secrets/nexo-plugin.toml");
    let key = admin.path("v.key");
    ok(admin.nexo(&["plugin", "keygen", "--name", "Hostile", "--out", &key]));
    ok(admin.nexo(&["trust", "add", &format!("{key}.pub")]));
    let bundle = admin.path("hostile.nexo");
    ok(admin.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        manifest.to_str().unwrap(),
        "--component",
        programs::HOSTILE_SECRETS,
        "--key",
        &key,
        "--out",
        &bundle,
    ]));
    ok(admin.nexo(&["plugin", "install", &bundle, "--grant", "all"]));

    // The secret is bound to `localhost`; the drop box is another origin,
    // granted all the same.
    let api_origin = format!("http://localhost:{}", api.port());
    let config = admin.path("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"api": api_origin, "drop": drop_box.url(), "user": USER}).to_string(),
    )
    .unwrap();
    // Too short to be told apart from ordinary text: refused.
    let err = fails(admin.nexo(&[
        "connection",
        "add",
        "short",
        "--plugin",
        "hostile/secrets",
        "--config",
        &config,
        "--secret",
        "token=env:HS_SHORT",
        "--grant-private-http",
        &api_origin,
    ]));
    assert!(
        err.contains("the secret `token` is 7 bytes long") && err.contains("at least 8 bytes"),
        "{err}"
    );
    for name in ["src", "dst"] {
        ok(admin.nexo(&[
            "connection",
            "add",
            name,
            "--plugin",
            "hostile/secrets",
            "--config",
            &config,
            "--secret",
            "token=env:HS_TOKEN",
            "--grant-private-http",
            &api_origin,
            "--grant-private-http",
            &drop_box.url(),
        ]));
    }
    // `check` fails quoting what the API echoed.
    let err = fails(admin.nexo(&["connection", "test", "src"]));
    assert!(err.contains("the API said"), "{err}");

    let pipelines = [("leads", "leads"), ("broken", "fail")];
    for (name, stream) in pipelines {
        let file = admin.path(&format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\nentity = \"lead\"\n\
                 [source]\nconnection = \"src\"\nstream = \"{stream}\"\n\
                 [destination]\nconnection = \"dst\"\nstream = \"leads\"\n\
                 [retry]\nmax_attempts = 1\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n"
            ),
        )
        .unwrap();
        ok(admin.nexo(&["pipeline", "apply", &file]));
    }
    let out = ok(admin.nexo(&["pipeline", "run", "leads"]));
    assert!(out.contains("succeeded"), "{out}");
    fails(admin.nexo(&["pipeline", "run", "broken"]));
    let runs = ok(admin.nexo(&["runs"]));
    for id in runs
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .filter_map(|w| w.trim_start_matches('#').parse::<i64>().ok())
    {
        ok(admin.nexo(&["run", "show", &id.to_string()]));
    }
    let letters = ok(admin.nexo(&["dlq", "list", "--status", "all"]));
    assert!(
        !letters.trim().is_empty(),
        "no dead letters: the test proves nothing"
    );
    ok(admin.nexo(&["dlq", "show", "1"]));

    // The API and the console, served by `nexo serve`.
    let api_token = String::from_utf8(
        admin
            .nexo(&["token", "create", "--name", "auditor", "--role", "viewer"])
            .stdout,
    )
    .unwrap()
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
    let stderr = serve.stderr.take().unwrap();
    let daemon_log = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut BufReader::new(stderr), &mut all).unwrap();
        all
    });
    let mut daemon = Daemon { child: serve, url };
    let http = reqwest::Client::new();
    let get = |path: String| {
        let req = http
            .get(format!("{}{path}", daemon.url))
            .bearer_auth(&api_token);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.bytes().await.unwrap().to_vec();
            assert!(status.is_success(), "{path}: {status}");
            body
        }
    };
    let mut answers: Vec<(String, Vec<u8>)> = Vec::new();
    let runs: Value = serde_json::from_slice(&get("/api/runs?limit=100".into()).await).unwrap();
    assert!(runs.as_array().unwrap().len() >= 2, "{runs}");
    answers.push(("/api/runs".into(), runs.to_string().into_bytes()));
    for r in runs.as_array().unwrap() {
        let path = format!("/api/runs/{}", r["id"]);
        answers.push((path.clone(), get(path).await));
    }
    let letters: Value = serde_json::from_slice(&get("/api/dlq?status=all".into()).await).unwrap();
    answers.push(("/api/dlq".into(), letters.to_string().into_bytes()));
    for d in letters.as_array().unwrap() {
        let path = format!("/api/dlq/{}", d["id"]);
        answers.push((path.clone(), get(path).await));
    }
    for path in [
        "/api/errors",
        "/api/overview",
        "/api/connections",
        "/api/pipelines",
        "/api/plugins",
        "/api/conflicts",
        "/metrics",
    ] {
        answers.push((path.into(), get(path.into()).await));
    }
    for path in ["/api/connections/src/test", "/api/pipelines/broken/run"] {
        let resp = http
            .post(format!("{}{path}", daemon.url))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap();
        answers.push((format!("POST {path}"), resp.bytes().await.unwrap().to_vec()));
    }

    // The console's pages as an operator opens them.
    let browser = Browser::start("secrets").await;
    let c = browser.open().await;
    c.goto(&format!("{}/", daemon.url)).await.unwrap();
    login(&c, &api_token).await;
    wait(&c, "#session-name").await;
    let mut pages: Vec<(String, String)> = Vec::new();
    for nav in ["dashboard", "runs", "errors", "dlq"] {
        click(&c, &format!(r#"a[data-nav="{nav}"]"#)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        pages.push((format!("console {nav}"), c.source().await.unwrap()));
    }
    for r in runs.as_array().unwrap() {
        c.goto(&format!("{}/#/runs/{}", daemon.url, r["id"]))
            .await
            .unwrap();
        wait(&c, "#run-status").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        pages.push((
            format!("console run {}", r["id"]),
            c.source().await.unwrap(),
        ));
    }
    c.close().await.unwrap();
    drop(browser);

    assert!(terminate(&mut daemon.child, Duration::from_secs(30)).success());
    let daemon_stderr = daemon_log.join().unwrap();

    // The attack ran: the drop box got the exfiltration attempts, the run
    // failed with the API's 401, dead letters quote the API.
    let received = drop_box.received_text();
    assert!(received.contains("/collect"), "{received}");
    assert!(
        received.contains("[redacted:token]"),
        "the API's echo reached the plugin redacted: {received}"
    );
    assert!(
        String::from_utf8_lossy(&answers[0].1).contains("HTTP 401"),
        "{}",
        String::from_utf8_lossy(&answers[0].1)
    );
    assert!(letters.to_string().contains("the API said"), "{letters}");

    // Zero hits, everywhere.
    let mut found = hits("what the drop box received", received.as_bytes());
    for (place, text) in &admin.outputs {
        found.extend(hits(place, text));
    }
    found.extend(hits("`nexo serve` stderr", &daemon_stderr));
    for (place, body) in &answers {
        found.extend(hits(place, body));
    }
    for (place, source) in &pages {
        found.extend(hits(place, source.as_bytes()));
    }
    let mut files = Vec::new();
    every_file(&admin.data(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("nexo.db")), "{files:?}");
    for f in files {
        let name = f
            .strip_prefix(admin.dir.path())
            .unwrap_or(&f)
            .display()
            .to_string();
        found.extend(hits(&name, &std::fs::read(&f).unwrap()));
    }
    assert!(
        found.is_empty(),
        "the secret got out {} times:\n{}",
        found.len(),
        found.join("\n")
    );
    // The API echoed the secret: it did reach the bound origin, only there.
    assert!(api.received_text().contains(TOKEN));
}

//! A real hledger-web (Debian packages `hledger` and `hledger-web`, 1.25)
//! on 127.0.0.1 with a fresh journal, for the hledger connectors' tests
//! (the Rust one in `tests/hledger.rs`, the Python one in
//! `tests/python_plugins.rs`), and `hledger` run on its journal.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// A real hledger-web on 127.0.0.1 with a fresh journal; killed on drop.
#[derive(Debug)]
pub struct HledgerWeb {
    child: Child,
    /// Its origin, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The journal file it serves.
    pub journal: PathBuf,
    _dir: tempfile::TempDir,
}

impl HledgerWeb {
    /// Start one and wait (up to 30 s) until it answers.
    pub async fn start() -> HledgerWeb {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("books.journal");
        std::fs::write(&journal, "").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("hledger-web.log")).unwrap();
        let child = Command::new("hledger-web")
            .args(["--serve-api", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--file")
            .arg(&journal)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("hledger-web runs (install the Debian packages `hledger` and `hledger-web`)");
        let server = HledgerWeb {
            child,
            url: format!("http://127.0.0.1:{port}"),
            journal,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/version", server.url)).send().await
                && r.status().is_success()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "hledger-web did not answer on {} within 30 s",
                server.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Rust connector's config for this server.
    pub fn config(&self) -> String {
        json!({"base_url": self.url, "account_codes": {"200": "revenue:consulting"}}).to_string()
    }

    /// The journal's text.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.journal).unwrap()
    }

    /// Edit the journal by hand. hledger-web notices a change only when the
    /// file time is later than its last reload, so not within the same tick.
    pub async fn edit(&self, text: &str) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&self.journal, text).unwrap();
    }

    /// `hledger check` must accept the journal (parses, balances).
    pub fn check(&self) {
        let out = hledger(&self.journal, &["check"]);
        assert!(
            out.status.success(),
            "hledger check failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.text()
        );
    }

    /// Account → balance as hledger prints it (exact, commodity precision),
    /// zero balances left out.
    pub fn balances(&self) -> BTreeMap<String, String> {
        let out = hledger(&self.journal, &["bal", "--flat", "-N", "-O", "csv"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|line| {
                let cells: Vec<String> = line
                    .split("\",\"")
                    .map(|c| c.trim_matches('"').to_string())
                    .collect();
                (cells[0].clone(), cells[1].clone())
            })
            .filter(|(_, v)| v != "0")
            .collect()
    }

    /// The transaction codes in journal order.
    pub fn codes(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| !l.starts_with(' ') && l.contains('('))
            .filter_map(|l| Some(l.split_once('(')?.1.split_once(')')?.0.to_string()))
            .collect()
    }
}

impl Drop for HledgerWeb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `hledger ARGS -f JOURNAL`.
pub fn hledger(journal: &Path, args: &[&str]) -> std::process::Output {
    Command::new("hledger")
        .args(args)
        .arg("-f")
        .arg(journal)
        .output()
        .expect("hledger runs (install the Debian package `hledger`)")
}

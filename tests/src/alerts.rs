//! The receivers of the alert tests, real and on 127.0.0.1: an SMTP server
//! (aiosmtpd from PyPI, installed by `cargo xtask setup` into
//! `target/smtp`) writing each message it receives to a maildir, and a
//! webhook receiver that verifies `X-Nexo-Signature` itself (its own
//! HMAC-SHA256, not the host's code) and keeps what it accepted.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;

/// aiosmtpd on a free port of 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The virtualenv holding aiosmtpd: `$NEXO_SMTP_HOME`, else `target/smtp`.
fn smtp_home() -> PathBuf {
    match std::env::var_os("NEXO_SMTP_HOME") {
        Some(h) => PathBuf::from(h),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/smtp"),
    }
}

impl SmtpServer {
    /// Start it; panics saying how to install it when it is missing.
    pub fn start() -> Self {
        let python = smtp_home().join("bin").join("python");
        assert!(
            python.is_file(),
            "aiosmtpd is not installed at {}: run `cargo xtask setup`",
            smtp_home().display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = SmtpServer { port, child, dir };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("aiosmtpd did not listen on 127.0.0.1:{port}");
    }

    /// Every message received so far (headers and body as text), in the
    /// order received.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail").join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(new)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// The `Subject:` of each message received, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter_map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the webhook receiver saw.
#[derive(Debug, Default)]
pub struct Received {
    /// Bodies of the deliveries whose signature verified, in order.
    pub accepted: Vec<Value>,
    /// Deliveries refused (no or bad signature).
    pub refused: usize,
}

/// A webhook receiver at `http://ADDR/hook` verifying signatures under
/// `secret`: what it received, its URL, and the sender that stops it.
pub async fn webhook_receiver(secret: &str) -> (Arc<Mutex<Received>>, String, oneshot::Sender<()>) {
    let seen = Arc::new(Mutex::new(Received::default()));
    let state = (seen.clone(), secret.to_string());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state);
    let (addr, stop) = crate::loopback::serve(app).await;
    (seen, format!("http://{addr}/hook"), stop)
}

type ReceiverState = (Arc<Mutex<Received>>, String);

async fn receive(
    State((seen, secret)): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = headers
        .get("x-nexo-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if verify(&secret, header, &body) {
        seen.lock()
            .unwrap()
            .accepted
            .push(serde_json::from_slice(&body).unwrap());
        StatusCode::NO_CONTENT
    } else {
        seen.lock().unwrap().refused += 1;
        StatusCode::UNAUTHORIZED
    }
}

/// `t=<unix seconds>,v1=<hex>` over `"<t>.<body>"`, within 5 minutes.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

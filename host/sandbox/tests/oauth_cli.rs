//! `nexo connection authorize` as an admin runs it against the Xero-like
//! sandbox: the command prints the sign-in address and waits on a loopback
//! redirect; the admin signs in and consents; the command exchanges the
//! code, takes the organisation given, and the connection works — its
//! access token refreshed by the host when it expires. A revoked refresh
//! token shows as "needs re-authorization". No token or client secret is in
//! any output (debug logs included) or in the data directory in plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nexo::store::Database;
use nexo::store::sealed::Sealer;
use nexo_sandbox::oauth::{CLIENT_ID, CLIENT_SECRET, OAuthSettings};
use nexo_sandbox::xero::{self, XeroConfig};
use nexo_tests::cli::{fails, ok};
use nexo_tests::programs;

const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000ee";

/// The product binary, built beside this crate's.
fn nexo(dir: &Path) -> Command {
    let sandbox = Path::new(env!("CARGO_BIN_EXE_nexo-sandbox"));
    let bin = sandbox.with_file_name(format!("nexo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build -p nexo --bin nexo` (or `cargo test --workspace`)",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("NEXO_SECRET_KEY")
        .env("NEXO_LOG", "debug")
        .env("XERO_CLIENT_SECRET", CLIENT_SECRET);
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_authorizes_at_the_terminal_and_the_host_refreshes_until_revoked() {
    let books = xero::start(XeroConfig {
        token: "xero-static-token-unused-here".into(),
        tenant_id: TENANT.into(),
        rate_limit: None,
        oauth: OAuthSettings {
            access_ttl: Duration::from_secs(1),
            ..OAuthSettings::xero()
        },
        ..XeroConfig::default()
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let p = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    let outputs = std::cell::RefCell::new(String::new());
    let run = |args: &[&str]| -> Output {
        let out = nexo(&data).args(args).output().unwrap();
        outputs.borrow_mut().push_str(&text(&out));
        out
    };
    ok(run(&[
        "plugin",
        "keygen",
        "--name",
        "Vendor",
        "--out",
        &p("v.key"),
    ]));
    ok(run(&["trust", "add", &p("v.key.pub")]));
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/xero/nexo-plugin.toml");
    ok(run(&[
        "plugin",
        "pack",
        "--manifest",
        manifest.to_str().unwrap(),
        "--component",
        programs::XERO,
        "--key",
        &p("v.key"),
        "--out",
        &p("xero.nexo"),
    ]));
    let installed = ok(run(&[
        "plugin",
        "install",
        &p("xero.nexo"),
        "--grant",
        "all",
    ]));
    assert!(
        !installed.contains('*'),
        "only Xero's own hosts: {installed}"
    );
    std::fs::write(work.path().join("xero.json"), "{}").unwrap();
    let sandbox = books.url();
    let overrides: Vec<String> = [
        "https://api.xero.com",
        "https://login.xero.com",
        "https://identity.xero.com",
    ]
    .iter()
    .map(|o| format!("{o}={sandbox}"))
    .collect();
    let mut add = vec![
        "connection",
        "add",
        "books",
        "--plugin",
        "nexo/xero",
        "--config",
    ];
    let config = p("xero.json");
    add.push(&config);
    for o in &overrides {
        add.push("--origin-override");
        add.push(o);
    }
    ok(run(&add));

    // Before: not authorized, and a test says how to authorize.
    let shown = ok(run(&["connection", "show", "books"]));
    assert!(shown.contains("oauth        not authorized yet"), "{shown}");

    // The command prints the address and waits for the redirect.
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let mut child = nexo(&data)
        .args([
            "connection",
            "authorize",
            "books",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            "env:XERO_CLIENT_SECRET",
            "--redirect-uri",
            &redirect,
            "--tenant",
            TENANT,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no address: {printed}"
        );
        printed.push_str(&line);
        if let Some(url) = line.trim().strip_prefix("http://") {
            break format!("http://{url}");
        }
    };
    assert!(address.starts_with(&sandbox), "{address}");
    let location = nexo_tests::oauth::consent_redirect(&address, None).await;
    assert!(location.starts_with(&redirect), "{location}");
    let page = reqwest::get(&location).await.unwrap().text().await.unwrap();
    assert!(page.contains("Connection books is authorized"), "{page}");
    let done = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    printed.push_str(&rest);
    outputs.borrow_mut().push_str(&printed);
    outputs
        .borrow_mut()
        .push_str(&String::from_utf8_lossy(&done.stderr));
    assert!(
        done.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        printed.contains("authorized connection books for Nexo Sandbox Trading Ltd"),
        "{printed}"
    );
    assert!(
        printed.contains("connection books: check passed"),
        "{printed}"
    );

    // It works, and keeps working past the token's one-second life.
    let shown = ok(run(&["connection", "show", "books"]));
    assert!(
        shown.contains("oauth        authorized (authorization-code"),
        "{shown}"
    );
    assert!(shown.contains(TENANT), "{shown}");
    ok(run(&["connection", "test", "books"]));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ok(run(&["connection", "test", "books"]));
    assert!(
        books.oauth().stats().refreshes >= 1,
        "{:?}",
        books.oauth().stats()
    );

    // What the host holds, to look for in every output and file.
    let db = Database::open(&data.join("nexo.db")).unwrap();
    let sealer = Sealer::from_env_or_file(&data.join("secret.key")).unwrap();
    let row = db.oauth("books").unwrap().unwrap();
    let access = sealer
        .open(
            "books/oauth/access",
            &row.access_token.nonce,
            &row.access_token.sealed,
        )
        .unwrap();
    let refresh = row.refresh_token.clone().unwrap();
    let refresh = sealer
        .open("books/oauth/refresh", &refresh.nonce, &refresh.sealed)
        .unwrap();
    drop(db);

    // Revoked: the next refresh fails for good; the connection says so.
    books.oauth().revoke_refresh_tokens();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused = fails(run(&["connection", "test", "books"]));
    assert!(
        refused.contains("nexo connection authorize books"),
        "{refused}"
    );
    let shown = ok(run(&["connection", "show", "books"]));
    assert!(shown.contains("NEEDS RE-AUTHORIZATION"), "{shown}");
    assert!(shown.contains("invalid_grant"), "{shown}");

    for (what, value) in [
        ("access token", access.expose()),
        ("refresh token", refresh.expose()),
        ("client secret", CLIENT_SECRET),
    ] {
        assert!(
            !outputs.borrow().contains(value),
            "the {what} is in the command output or logs"
        );
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                    "the {what} is in {} in plaintext",
                    path.display()
                );
            }
        }
    }
    assert!(
        outputs.borrow().contains("access token refreshed"),
        "the debug logs were captured"
    );
}

//! Project tasks: `cargo xtask demo` runs Nexo's main job on a fresh machine
//! (see `demo.rs`); `cargo xtask tour` walks through a vendor's and an
//! admin's work step by step; `cargo xtask setup` installs what the tests
//! run for real.
//!
//! The tour builds the example plugins for wasm32-wasip2 (adding the target
//! if needed), starts a TinyCRM on 127.0.0.1, and drives the `nexo` binary
//! through the vendor's loop: inspect the connector, check, discover, read
//! every page, then map the contacts to canonical customer contacts; then the
//! admin's: sign and pack the connector, trust the vendor, install it with a
//! grant, connect it to the CRM and test the connection; and finally the
//! point of it all: a pipeline from this CRM to a second one (another
//! office's), dry-run, run, run again with nothing to do, and the history.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

mod demo;
mod js;
mod python;
mod smtp;
mod tryton;
mod venv;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo::demo(&args[1..]),
        Some("tour") => tour(!args.iter().any(|a| a == "--no-serve")),
        Some("setup") => setup(),
        _ => bail!(
            "usage: cargo xtask demo [nexo-sandbox demo options, e.g. --no-serve] | cargo xtask tour [--no-serve] | cargo xtask setup"
        ),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") =>
        {
            Ok(())
        }
        Ok(_) => run(
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
            "rustup target add wasm32-wasip2",
        ),
        Err(e) => {
            bail!("rustup not found ({e}); install the wasm32-wasip2 target for your toolchain")
        }
    }
}

/// Debian packages the console's browser test drives, and the binaries they
/// install (the paths `tests/tests/console.rs` expects).
const TEST_PACKAGES: [(&str, &str); 5] = [
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("hledger", "/usr/bin/hledger"),
    ("hledger-web", "/usr/bin/hledger-web"),
    // The stores' tests on PostgreSQL and the cluster tests start their own
    // server with these (`nexo_db::postgres::testing`); the version in the
    // path is whichever the Debian release ships.
    ("postgresql", "/usr/lib/postgresql/*/bin/initdb"),
];

/// Whether `path` exists; one `*` component stands for any directory.
fn installed(path: &str) -> bool {
    match path.split_once("/*/") {
        None => Path::new(path).exists(),
        Some((dir, rest)) => std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join(rest).exists()),
    }
}

/// Install what the tests run for real, unless it is already there: from
/// Debian's packages headless Chromium and its WebDriver (the console test),
/// hledger and hledger-web (the hledger connector's tests), PostgreSQL's
/// server (the stores on PostgreSQL, several hosts); from PyPI, in
/// virtualenvs, Tryton ERP (the Tryton connector's tests and the demo) and
/// componentize-py (building the Python plugins, `target/py`) and aiosmtpd
/// (the SMTP server of the alert tests, `target/smtp`); from npm,
/// componentize-qjs (building the JavaScript plugins, `target/js`).
fn setup() -> Result<()> {
    debian_packages()?;
    tryton::setup()?;
    python::setup()?;
    smtp::setup()?;
    js::setup()
}

/// The Debian half of [`setup`].
fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(_, bin)| !installed(bin))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        for (package, bin) in TEST_PACKAGES {
            println!("{package}: {bin} is installed");
        }
        println!("Debian packages: nothing to do.");
        return Ok(());
    }
    let all: Vec<&str> = TEST_PACKAGES.iter().map(|(p, _)| *p).collect();
    if !on_path("apt-get") {
        bail!(
            "missing {}, and apt-get is not available to install it; install the packages {} \
             (binaries {}) by hand",
            missing.join(" and "),
            all.join(" and "),
            TEST_PACKAGES.map(|(_, bin)| bin).join(" and ")
        );
    }
    // Root needs no sudo (and containers often have none); anyone else does.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Command {
        let mut c = if !root && on_path("sudo") {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        // No debconf questions: nobody is there to answer them.
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    println!(
        "==> installing {} (missing: {})",
        all.join(" "),
        missing.join(" ")
    );
    run(&mut apt(&["update"]), "apt-get update")?;
    run(
        &mut apt(&[&["install", "-y", "--no-install-recommends"][..], &all[..]].concat()),
        "apt-get install",
    )?;
    for (package, bin) in TEST_PACKAGES {
        if !Path::new(bin).exists() {
            bail!("{package} was installed but {bin} is still missing");
        }
    }
    println!("Done: {}.", TEST_PACKAGES.map(|(_, bin)| bin).join(" and "));
    Ok(())
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Start the TinyCRM demo server with `contacts` seeded; its URL.
fn start_tinycrm(bin: &Path, contacts: usize) -> Result<(Server, String)> {
    let mut child = Command::new(bin.join("tinycrm"))
        .args([contacts.to_string().as_str(), "demo-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the TinyCRM server")?;
    let stdout = child.stdout.take().context("no stdout from TinyCRM")?;
    let server = Server(child);
    let mut url = String::new();
    BufReader::new(stdout).read_line(&mut url)?;
    let url = url.trim().to_string();
    if !url.starts_with("http://127.0.0.1:") {
        bail!("TinyCRM did not report its address (got {url:?})");
    }
    Ok((server, url))
}

/// Kills the CRM server when the demo ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tour; with `serve`, it ends by serving the console until Ctrl-C.
fn tour(serve: bool) -> Result<()> {
    ensure_wasm_target()?;
    let guests = root().join("target").join("guests");
    println!("==> building the example plugins for wasm32-wasip2");
    run(
        cargo()
            .args([
                "build",
                "--profile",
                "plugin",
                "--target",
                "wasm32-wasip2",
                "-p",
                "example-crm",
                "-p",
                "contact-mapper",
            ])
            .arg("--target-dir")
            .arg(&guests),
        "building the plugins",
    )?;
    println!("==> building nexo and the TinyCRM demo server");
    run(
        cargo().args([
            "build",
            "-p",
            "nexo",
            "--bin",
            "nexo",
            "-p",
            "nexo-tests",
            "--bin",
            "tinycrm",
        ]),
        "building nexo",
    )?;
    let bin = root().join("target").join("debug");
    let wasm = guests.join("wasm32-wasip2").join("plugin");
    let crm_wasm = wasm.join("example_crm.wasm");
    let mapper_wasm = wasm.join("contact_mapper.wasm");

    let (server, url) = start_tinycrm(&bin, 25)?;
    println!("==> TinyCRM with 25 contacts at {url}");

    // A fresh data directory each time, so the demo starts from nothing.
    let data = root().join("target").join("tour-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot clear {}", data.display()))?;
    }
    std::fs::create_dir_all(&data)?;
    let config = data.join("tinycrm.json");
    std::fs::write(
        &config,
        format!("{{\"base_url\": \"{url}\", \"page_size\": 10}}"),
    )?;
    let nexo = |args: &[&str]| -> Result<String> {
        let out = Command::new(bin.join("nexo"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("TINYCRM_TOKEN", "demo-token")
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run nexo")?;
        if !out.status.success() {
            bail!("nexo {} failed", args.join(" "));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let crm = crm_wasm.to_string_lossy().into_owned();
    let cfg = config.to_string_lossy().into_owned();
    let grants = [
        "--grant-private-http",
        url.as_str(),
        "--secret",
        "api_token=env:TINYCRM_TOKEN",
    ];

    println!("\n$ nexo plugin inspect example_crm.wasm");
    print!("{}", nexo(&["plugin", "inspect", &crm])?);

    println!(
        "\n$ nexo plugin call example_crm.wasm check --config tinycrm.json --grant-private-http {url} --secret api_token=env:TINYCRM_TOKEN"
    );
    print!(
        "{}",
        nexo(
            &[
                &["plugin", "call", &crm, "check", "--config", &cfg][..],
                &grants[..]
            ]
            .concat()
        )?
    );

    println!("\n$ nexo plugin call example_crm.wasm discover ...");
    let discovered: Value = serde_json::from_str(&nexo(
        &[
            &["plugin", "call", &crm, "discover", "--config", &cfg][..],
            &grants[..],
        ]
        .concat(),
    )?)?;
    for s in discovered.as_array().into_iter().flatten() {
        println!(
            "stream {} (primary key {}, cursor {}, writable {})",
            s["name"], s["primary_key"], s["cursor_field"], s["can_write"]
        );
    }

    println!("\n$ nexo plugin call example_crm.wasm read --stream contacts --all-pages ...");
    let read: Value = serde_json::from_str(&nexo(
        &[
            &[
                "plugin",
                "call",
                &crm,
                "read",
                "--config",
                &cfg,
                "--stream",
                "contacts",
                "--all-pages",
            ][..],
            &grants[..],
        ]
        .concat(),
    )?)?;
    let records: Vec<Value> = read["pages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["records"].as_array().cloned().unwrap_or_default())
        .collect();
    let records_file = data.join("contacts.json");
    std::fs::write(&records_file, serde_json::to_string_pretty(&records)?)?;
    println!(
        "read {} contacts in {} pages; next incremental read resumes from state {}",
        records.len(),
        read["pages"].as_array().map_or(0, Vec::len),
        read["state"]
    );

    println!(
        "\n$ nexo plugin call contact_mapper.wasm map --input contacts.json   (mapper: no network, no storage)"
    );
    let mapper_cfg = data.join("mapper.json");
    std::fs::write(
        &mapper_cfg,
        r#"{"only_stage": "customer", "system": "tinycrm"}"#,
    )?;
    let mapped = nexo(&[
        "plugin",
        "call",
        &mapper_wasm.to_string_lossy(),
        "map",
        "--config",
        &mapper_cfg.to_string_lossy(),
        "--input",
        &records_file.to_string_lossy(),
    ])?;
    let mapped_file = data.join("canonical-contacts.json");
    std::fs::write(&mapped_file, &mapped)?;
    let mapped: Value = serde_json::from_str(&mapped)?;
    let customers = mapped.as_array().cloned().unwrap_or_default();
    if let Some(first) = customers.first() {
        println!("{}", serde_json::to_string_pretty(first)?);
    }
    println!(
        "mapped {} of {} CRM contacts to canonical customer contacts (full output: {})",
        customers.len(),
        records.len(),
        mapped_file.display()
    );

    println!("\n== The same connector shipped as a signed bundle, installed by an admin ==");
    let key = data.join("vendor.key").to_string_lossy().into_owned();
    let bundle = data.join("tinycrm.nexo").to_string_lossy().into_owned();
    let manifest = root()
        .join("plugins/example-crm/nexo-plugin.toml")
        .to_string_lossy()
        .into_owned();
    println!("\n$ nexo plugin keygen --name \"Nexo examples\" --out vendor.key");
    print!(
        "{}",
        nexo(&["plugin", "keygen", "--name", "Nexo examples", "--out", &key])?
    );
    println!(
        "\n$ nexo plugin pack --manifest plugins/example-crm/nexo-plugin.toml --component example_crm.wasm --key vendor.key --out tinycrm.nexo"
    );
    print!(
        "{}",
        nexo(&[
            "plugin",
            "pack",
            "--manifest",
            &manifest,
            "--component",
            &crm,
            "--key",
            &key,
            "--out",
            &bundle
        ])?
    );
    println!("\n$ nexo trust add vendor.key.pub");
    print!("{}", nexo(&["trust", "add", &format!("{key}.pub")])?);
    println!("\n$ nexo plugin install tinycrm.nexo --grant all");
    print!(
        "{}",
        nexo(&["plugin", "install", &bundle, "--grant", "all"])?
    );
    println!(
        "\n$ nexo connection add tinycrm-sandbox --plugin nexo-examples/tinycrm --config tinycrm.json --secret api_token=env:TINYCRM_TOKEN --grant-private-http {url}"
    );
    print!(
        "{}",
        nexo(&[
            "connection",
            "add",
            "tinycrm-sandbox",
            "--plugin",
            "nexo-examples/tinycrm",
            "--config",
            &cfg,
            "--secret",
            "api_token=env:TINYCRM_TOKEN",
            "--grant-private-http",
            &url,
        ])?
    );
    println!("\n$ nexo connection test tinycrm-sandbox");
    print!("{}", nexo(&["connection", "test", "tinycrm-sandbox"])?);
    println!("\n$ nexo plugin list");
    print!("{}", nexo(&["plugin", "list"])?);

    // The sync: this CRM's contacts into another office's (empty) CRM.
    let (office, office_url) = start_tinycrm(&bin, 0)?;
    println!("\n==> a second, empty TinyCRM (another office) at {office_url}");
    let office_cfg = data.join("office.json");
    std::fs::write(
        &office_cfg,
        format!("{{\"base_url\": \"{office_url}\", \"page_size\": 10}}"),
    )?;
    println!("\n$ nexo connection add office-sandbox ... --grant-private-http {office_url}");
    print!(
        "{}",
        nexo(&[
            "connection",
            "add",
            "office-sandbox",
            "--plugin",
            "nexo-examples/tinycrm",
            "--config",
            &office_cfg.to_string_lossy(),
            "--secret",
            "api_token=env:TINYCRM_TOKEN",
            "--grant-private-http",
            &office_url,
        ])?
    );
    let pipeline = root()
        .join("plugins")
        .join("example-crm")
        .join("demo-pipeline.toml");
    println!("\n$ cat plugins/example-crm/demo-pipeline.toml");
    print!(
        "{}",
        std::fs::read_to_string(&pipeline)
            .with_context(|| format!("cannot read {}", pipeline.display()))?
    );
    println!("\n$ nexo pipeline apply demo-pipeline.toml");
    print!(
        "{}",
        nexo(&["pipeline", "apply", &pipeline.to_string_lossy()])?
    );
    println!("\n$ nexo pipeline run contacts-to-office --dry-run   (first lines)");
    let dry = nexo(&["pipeline", "run", "contacts-to-office", "--dry-run"])?;
    for line in dry.lines().take(6) {
        println!("{line}");
    }
    println!("  ...");
    println!("{}", dry.lines().last().unwrap_or_default());
    println!("\n$ nexo pipeline run contacts-to-office");
    print!("{}", nexo(&["pipeline", "run", "contacts-to-office"])?);
    println!(
        "\n$ nexo pipeline run contacts-to-office   (again: nothing changed, nothing written)"
    );
    print!("{}", nexo(&["pipeline", "run", "contacts-to-office"])?);
    println!("\n$ nexo runs");
    print!("{}", nexo(&["runs"])?);

    if !serve {
        drop(office);
        drop(server);
        println!(
            "\nDone. Data in {}; try `target/debug/nexo --data-dir {} plugin list`.",
            data.display(),
            data.display()
        );
        return Ok(());
    }
    println!("\n$ nexo token create --name demo --role admin");
    let token = nexo(&["token", "create", "--name", "demo", "--role", "admin"])?;
    let token = token.trim();
    println!("(a token for the console; shown once)");
    println!("\n$ nexo serve --addr 127.0.0.1:7373");
    let mut daemon = Command::new(bin.join("nexo"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--addr", "127.0.0.1:7373"])
        .env("TINYCRM_TOKEN", "demo-token")
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start nexo serve")?;
    let mut line = String::new();
    if let Some(out) = daemon.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let console = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string)
        .context("nexo serve did not say where it listens (is port 7373 taken?)")?;
    println!(
        "\nThe console is at {console}  — log in with the token {token}\n\
         The pipeline runs every minute. Change a contact in the sales CRM and watch it\n\
         reach the office CRM (and appear in the console's runs and lookup), e.g.:\n\n  \
         curl -X PUT -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"first_name\": \"Ada1\", \"last_name\": \"Lovelace\", \"email\": \"ada1@example.com\", \"city\": \"Lisbon\"}}' \\\n    \
         {url}/api/contacts/c0001\n\n\
         Ctrl-C stops the host (runs commit their page first) and the two CRMs."
    );
    let status = daemon.wait()?;
    drop(office);
    drop(server);
    if !status.success() {
        bail!("nexo serve ended with {status}");
    }
    Ok(())
}

//! A real PostgreSQL for tests: one server per test process, made with
//! Debian's `initdb` and run by `postgres` on 127.0.0.1 at a free port,
//! and a fresh database per test ([`database`]). `cargo xtask setup`
//! installs the server package; a machine without it fails the tests that
//! need it with a message that says so (they never skip).
//!
//! The server outlives no test process: it runs under a small shell that
//! watches the process that started it and stops the server and deletes
//! its directory once that process is gone. Run as root (CI), the server
//! runs as the `postgres` user, since PostgreSQL refuses root.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The running server of this test process.
#[derive(Debug)]
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its data lives (deleted when the test process ends).
    pub dir: PathBuf,
    /// Its superuser (no password: trust on loopback).
    pub user: &'static str,
}

const USER: &str = "nexo";

/// The directory of `initdb`, `postgres` and `pg_ctl`: `NEXO_PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin`, else wherever `PATH` has them.
pub fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("NEXO_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").exists())
        .ok_or_else(|| {
            "PostgreSQL's server programs (initdb, postgres) are not installed: run `cargo xtask setup` (Debian package `postgresql`), or set NEXO_PG_BIN to their directory".to_string()
        })
}

/// The uid and gid of `postgres` when this process is root (PostgreSQL
/// refuses to run as root), none otherwise.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    let me = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("id -u: {e}"))?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("id {flag} postgres: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                "running as root needs the `postgres` user (Debian package `postgresql` makes it)"
                    .to_string()
            })
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn command(program: PathBuf, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c.env_remove("PGDATA").current_dir("/");
    c
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start() -> Result<Server, String> {
    let bin = bin_dir()?;
    let user = run_as()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("nexo-pg-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let init = command(bin.join("initdb"), user)
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let port = free_port()?;
    // The watcher: start the server, then stop it and delete its files
    // once the test process is gone (or the server died).
    let script = r#"
        "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200 >"$2/log" 2>&1 &
        pg=$!
        while [ -d "/proc/$4" ] && kill -0 "$pg" 2>/dev/null; do sleep 0.3; done
        kill -INT "$pg" 2>/dev/null
        wait "$pg"
        rm -rf "$2"
    "#;
    command(PathBuf::from("/bin/sh"), user)
        .arg("-c")
        .arg(script)
        .arg("nexo-test-postgres")
        .arg(&bin)
        .arg(&dir)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && ready(&bin, port, user) {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!("postgres did not start on port {port}: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Server {
        port,
        dir,
        user: USER,
    })
}

/// Whether the server accepts connections (`pg_isready`).
fn ready(bin: &Path, port: u16, user: Option<(u32, u32)>) -> bool {
    command(bin.join("pg_isready"), user)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            USER,
            "-d",
            "postgres",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This test process's server, started on first use.
pub fn server() -> Result<&'static Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER.get_or_init(start).as_ref().map_err(Clone::clone)
}

impl Server {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{name}", self.user, self.port)
    }

    /// Run SQL as the superuser in the `postgres` database.
    pub fn admin(&self, sql: &str) -> Result<(), String> {
        let admin = super::Postgres::connect(&self.url("postgres")).map_err(|e| e.to_string())?;
        admin
            .with(async |c| Ok(c.batch_execute(sql).await?))
            .map_err(|e| e.to_string())
    }
}

/// A new, empty database on this process's server: its URL.
pub fn database() -> Result<String, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = server()?;
    let name = format!("nexo_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    server.admin(&format!("CREATE DATABASE {name}"))?;
    Ok(server.url(&name))
}

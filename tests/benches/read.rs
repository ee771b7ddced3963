//! Extract throughput as a user meets it: N contacts in the HubSpot-like
//! sandbox on 127.0.0.1, read by the HubSpot connector (Wasm) at 100 per
//! page (HubSpot's page size) through `nexo stream export CONNECTION
//! contacts --format jsonl --out FILE`, the `nexo` binary in its own
//! process. Every round checks the file (N lines, N distinct ids) and
//! prints records/s, the CPU seconds and the peak RSS of that process;
//! a summary gives the median and range, beside the targets (printed,
//! never asserted).
//!
//! Run: `cargo build --release -p nexo --bin nexo` (the binary this bench
//! drives; a crate's bench cannot name another crate's binary), then
//! `cargo bench -p nexo-tests --bench read -- 100000 1000000 --rounds 3`.
//!
//! - `--call`: also time `nexo plugin call hubspot.wasm read --all-pages
//!   --max-pages P` (the same reads, the records in one JSON document).
//! - `--keep DIR`: set up the sandbox (first size) and a data directory in
//!   DIR per component, print each export command, and serve until killed,
//!   so that two builds can be timed in turn from outside (A/B).
//! - `--connector rust|js` (repeatable, or `rust,js`): which HubSpot
//!   connector reads — the Rust one (`plugins/hubspot`, the default) or the
//!   JavaScript one (`plugins/js-hubspot`, QuickJS); with both, their
//!   rounds alternate on the same sandbox.
//! - `NEXO_BIN`: the `nexo` binary (default: `release/nexo` beside this
//!   bench); `NEXO_BENCH_HUBSPOT`: the connector component(s), `:`-separated
//!   (default: the one built for the tests); `NEXO_BENCH_WRAP` (e.g. `perf
//!   record -g -o read-{}.perf --`) runs each export under a profiler.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo_tests::benchkit::{load_average, spread};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nexo::bundle::keys::SecretKey;
use nexo::connections::{Connections, NewConnection};
use nexo::registry::Registry;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, SeedData};
use nexo_tests::{programs, runtime, synckit};
use serde::Deserialize;
use serde_json::json;

/// The origin the HubSpot connector calls; the sandbox is reached through
/// an origin override.
const HUBSPOT_API: &str = "https://api.hubapi.com";
const TOKEN: &str = "pat-na1-read-bench";
/// HubSpot's page size (and its batch limit).
const PAGE: u32 = 100;
/// Targets of issue 17 (printed, never asserted).
const TARGET_RATE: f64 = 160_000.0;
/// Issue 19's target for a JavaScript connector's read.
const TARGET_RATE_JS: f64 = 20_000.0;
const TARGET_RSS_MIB: f64 = 100.0;

fn nexo_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NEXO_BIN") {
        return p.into();
    }
    // target/release/deps/read-HASH → target/release/nexo
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("nexo");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release -p nexo --bin nexo`, or set NEXO_BIN",
        bin.display()
    );
    bin
}

/// A HubSpot connector under test.
#[derive(Clone)]
struct Connector {
    /// `rust` or `js`, as given to `--connector`.
    label: &'static str,
    /// Its folder under `plugins/` (the manifest it is packed with).
    folder: &'static str,
    plugin_id: &'static str,
    wasm: String,
}

impl Connector {
    fn rust(wasm: String) -> Connector {
        Connector {
            label: "rust",
            folder: "hubspot",
            plugin_id: "nexo/hubspot",
            wasm,
        }
    }

    fn js() -> Connector {
        Connector {
            label: "js",
            folder: "js-hubspot",
            plugin_id: "nexo/js-hubspot",
            wasm: programs::JS_HUBSPOT.to_string(),
        }
    }

    fn target(&self) -> f64 {
        if self.label == "js" {
            TARGET_RATE_JS
        } else {
            TARGET_RATE
        }
    }
}

/// The connectors `--connector` names (default: the Rust one); the Rust
/// one is each component of `NEXO_BENCH_HUBSPOT` when it is set.
fn components(labels: &[String]) -> Vec<Connector> {
    let rust: Vec<String> = match std::env::var("NEXO_BENCH_HUBSPOT") {
        Ok(list) if !list.is_empty() => list.split(':').map(str::to_string).collect(),
        _ => vec![programs::HUBSPOT.to_string()],
    };
    let labels = if labels.is_empty() {
        vec!["rust".to_string()]
    } else {
        labels.to_vec()
    };
    let mut out = Vec::new();
    for label in labels {
        match label.as_str() {
            "rust" => out.extend(rust.iter().cloned().map(Connector::rust)),
            "js" => out.push(Connector::js()),
            other => panic!("--connector takes rust or js, not {other:?}"),
        }
    }
    out
}

/// A data directory with the HubSpot connector (`wasm`) installed and a
/// connection `hs` to `sandbox` without a request budget
/// (`requests_per_minute: Some(0)`, what `nexo connection add
/// --requests-per-minute unlimited` saves): the bench measures the host,
/// not the default budget of 600 requests a minute.
async fn data_dir(dir: &Path, sandbox: &HubSpotSandbox, c: &Connector) {
    std::fs::create_dir_all(dir).unwrap();
    let db = Database::open(&dir.join("nexo.db")).unwrap();
    let registry = Registry::new(db.clone(), runtime().clone(), dir.join("bundles"));
    let key = SecretKey::generate("Nexo").unwrap();
    db.trust_key(&key.public()).unwrap();
    synckit::install_shipped(&registry, &key, c.folder, &c.wasm).await;
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key")).unwrap();
    let connections = Connections::new(registry, sealer);
    connections
        .add(NewConnection {
            name: "hs".into(),
            plugin_id: c.plugin_id.into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"page_size": PAGE}),
            secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
            grants: ConnectionGrants {
                requests_per_minute: Some(0),
                origin_overrides: BTreeMap::from([(HUBSPOT_API.to_string(), sandbox.url())]),
                ..Default::default()
            },
        })
        .unwrap();
}

fn export_args(dir: &Path, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["--data-dir".into(), dir.display().to_string()];
    args.extend(
        [
            "stream", "export", "hs", "contacts", "--format", "jsonl", "--out",
        ]
        .map(String::from),
    );
    args.push(out.display().to_string());
    args
}

/// What one child process took.
struct Measured {
    secs: f64,
    cpu: f64,
    /// CPU seconds of this process meanwhile: the sandbox serving.
    server_cpu: f64,
    peak_mib: f64,
    ok: bool,
    stderr: String,
}

/// CPU seconds (user + system) of this process and of its waited-for
/// children.
fn cpu_self_children() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14 to 17; USER_HZ is 100.
    let at = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / 100.0;
    (at(14) + at(15), at(16) + at(17))
}

fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Run `nexo args` (under `NEXO_BENCH_WRAP` when `wrap`) on a blocking
/// thread. The peak RSS is the child's `VmHWM`, read every 5 ms while it
/// runs (it only grows, and an export's memory does not grow in its last
/// milliseconds); with a wrapper it is the wrapper's.
async fn measure(args: Vec<String>, wrap: bool, stdout: Option<PathBuf>) -> Measured {
    measure_with(args, wrap, stdout, Vec::new()).await
}

async fn measure_with(
    args: Vec<String>,
    wrap: bool,
    stdout: Option<PathBuf>,
    envs: Vec<(&'static str, &'static str)>,
) -> Measured {
    tokio::task::spawn_blocking(move || {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let wrapper: Vec<String> = match std::env::var("NEXO_BENCH_WRAP") {
            Ok(w) if wrap => {
                let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                w.split_whitespace()
                    .map(|p| p.replace("{}", &n.to_string()))
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut cmd = match wrapper.split_first() {
            Some((tool, rest)) => {
                let mut c = Command::new(tool);
                c.args(rest).arg(nexo_bin());
                c
            }
            None => Command::new(nexo_bin()),
        };
        cmd.args(&args)
            .env("NEXO_LOG", "warn")
            .env_remove("NEXO_SECRET_KEY")
            .envs(envs)
            .stderr(std::process::Stdio::piped());
        match &stdout {
            Some(file) => cmd.stdout(std::fs::File::create(file).unwrap()),
            None => cmd.stdout(std::process::Stdio::null()),
        };
        let cpu0 = cpu_self_children();
        let t0 = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let mut stderr = child.stderr.take().unwrap();
        let drain = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut s).ok();
            s
        });
        let mut peak = 0u64;
        let status = loop {
            if let Some(k) = vm_kib(pid, "VmHWM:") {
                peak = peak.max(k);
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = cpu_self_children();
        Measured {
            secs,
            cpu: cpu1.1 - cpu0.1,
            server_cpu: cpu1.0 - cpu0.0,
            peak_mib: peak as f64 / 1024.0,
            ok: status.success(),
            stderr: drain.join().unwrap_or_default(),
        }
    })
    .await
    .unwrap()
}

/// The export file holds `n` lines with `n` distinct contact ids.
fn check_jsonl(file: &Path, n: usize) {
    #[derive(Deserialize)]
    struct Line {
        stream: String,
        id: String,
    }
    let text = std::fs::read_to_string(file).unwrap();
    let mut ids = HashSet::with_capacity(n);
    let mut lines = 0;
    for l in text.lines() {
        let line: Line = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(line.stream, "contacts");
        ids.insert(line.id);
        lines += 1;
    }
    assert_eq!(lines, n, "lines in {}", file.display());
    assert_eq!(ids.len(), n, "distinct ids in {}", file.display());
}

/// `plugin call … read --all-pages`'s document holds `n` records with `n`
/// distinct ids.
fn check_document(file: &Path, n: usize) {
    #[derive(Deserialize)]
    struct Doc {
        pages: Vec<DocPage>,
    }
    #[derive(Deserialize)]
    struct DocPage {
        records: Vec<DocRecord>,
    }
    #[derive(Deserialize)]
    struct DocRecord {
        id: String,
    }
    let reader = std::io::BufReader::new(std::fs::File::open(file).unwrap());
    let doc: Doc = serde_json::from_reader(reader).unwrap();
    let ids: Vec<String> = doc
        .pages
        .into_iter()
        .flat_map(|p| p.records)
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), n, "records in {}", file.display());
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n);
}

async fn sandbox(n: usize) -> (HubSpotSandbox, f64, f64) {
    let rss0 = vm_kib(std::process::id(), "VmRSS:").unwrap_or(0);
    let t0 = Instant::now();
    let sandbox = hubspot::start(HubSpotConfig {
        token: TOKEN.into(),
        seed: SeedData {
            seed: 1,
            companies: 0,
            contacts: n,
            deals: 0,
        },
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let rss = vm_kib(std::process::id(), "VmRSS:").unwrap_or(0);
    (sandbox, secs, rss.saturating_sub(rss0) as f64 / 1024.0)
}

struct Row {
    rate: f64,
    cpu: f64,
    peak: f64,
}

fn print_row(what: &str, n: usize, round: usize, m: &Measured) -> Row {
    let rate = n as f64 / m.secs;
    println!(
        "{what:<12} {n:>8}   {round:>5}   {:>8.2} s   {rate:>10.0}   {:>7.2}   {:>8.1} MiB   {:>7.2}",
        m.secs, m.cpu, m.peak_mib, m.server_cpu
    );
    Row {
        rate,
        cpu: m.cpu,
        peak: m.peak_mib,
    }
}

fn summary(what: &str, n: usize, rows: &[Row], target: f64) {
    let (r, r0, r1) = spread(rows.iter().map(|x| x.rate).collect());
    let (c, c0, c1) = spread(rows.iter().map(|x| x.cpu).collect());
    let (p, p0, p1) = spread(rows.iter().map(|x| x.peak).collect());
    println!(
        "{what:<12} {n:>8}   {:>6}   {r:>10.0} ({r0:.0}–{r1:.0})   {c:>6.2} ({c0:.2}–{c1:.2})   {p:>6.1} MiB ({p0:.1}–{p1:.1})",
        rows.len()
    );
    if what.starts_with("export") {
        println!(
            "             target ≥ {target:.0} records/s: {} by the median ({:.2}× the target)",
            if r >= target { "PASS" } else { "MISS" },
            r / target
        );
        if n >= 1_000_000 {
            println!(
                "             target peak RSS < {TARGET_RSS_MIB:.0} MiB at {n}: {}",
                if p1 < TARGET_RSS_MIB { "PASS" } else { "MISS" }
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut sizes = Vec::new();
    let mut rounds = 3usize;
    let mut call = false;
    let mut keep: Option<PathBuf> = None;
    let mut labels: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .filter(|r| *r > 0)
                    .expect("--rounds takes a number ≥ 1");
            }
            "--call" => call = true,
            "--keep" => keep = Some(args.next().expect("--keep takes a directory").into()),
            "--connector" => labels.extend(
                args.next()
                    .expect("--connector takes rust or js")
                    .split(',')
                    .map(str::to_string),
            ),
            _ => {
                if let Ok(n) = a.parse() {
                    sizes.push(n);
                }
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![100_000];
    }
    let bin = nexo_bin();
    let wasm = components(&labels);

    if let Some(root) = keep {
        let n = sizes[0];
        let (sandbox, secs, mib) = sandbox(n).await;
        println!(
            "sandbox {} seeded with {n} contacts in {secs:.1} s (+{mib:.0} MiB)",
            sandbox.url()
        );
        for (i, w) in wasm.iter().enumerate() {
            let dir = root.join(format!("data-{i}"));
            data_dir(&dir, &sandbox, w).await;
            let out = root.join(format!("out-{i}.jsonl"));
            let args = export_args(&dir, &out);
            // Compiles the component into this data directory's cache.
            let warm = measure(args.clone(), false, None).await;
            assert!(warm.ok, "{}", warm.stderr);
            check_jsonl(&out, n);
            println!(
                "{} ({}):\n  {} {}",
                w.label,
                w.wasm,
                bin.display(),
                args.join(" ")
            );
        }
        println!("serving until killed");
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    println!("load average at start: {}", load_average());
    println!("nexo: {}", bin.display());
    for c in &wasm {
        println!("connector {}: {}", c.label, c.wasm);
    }
    println!(
        "what         records   round   wall         records/s   CPU s     peak RSS   sandbox CPU s"
    );
    let mut all = Vec::new();
    for &n in &sizes {
        let (sandbox, secs, mib) = sandbox(n).await;
        println!("(sandbox seeded with {n} contacts in {secs:.1} s, +{mib:.0} MiB of RSS)");
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("contacts.jsonl");
        let mut dirs = Vec::new();
        for (i, c) in wasm.iter().enumerate() {
            let dir = root.path().join(format!("data-{i}"));
            data_dir(&dir, &sandbox, c).await;
            // Warm-up: compiles the component into the data directory's
            // cache (as installing through the binary would) and warms the
            // sandbox.
            let warm = measure(
                [
                    export_args(&dir, &out),
                    vec!["--max-pages".into(), "1".into()],
                ]
                .concat(),
                false,
                None,
            )
            .await;
            assert!(
                !warm.ok && warm.stderr.contains("--max-pages"),
                "{}",
                warm.stderr
            );
            dirs.push(dir);
        }
        let mut exports: Vec<Vec<Row>> = wasm.iter().map(|_| Vec::new()).collect();
        let mut calls: Vec<Vec<Row>> = wasm.iter().map(|_| Vec::new()).collect();
        // Round-robin: the connectors take turns, so the machine's load
        // drifts over all of them alike.
        for r in 1..=rounds {
            for (i, c) in wasm.iter().enumerate() {
                let dir = &dirs[i];
                let m = measure(export_args(dir, &out), true, None).await;
                assert!(m.ok, "{}", m.stderr);
                check_jsonl(&out, n);
                exports[i].push(print_row(&format!("export {}", c.label), n, r, &m));
                if call {
                    let m = plugin_call(root.path(), dir, c, &sandbox, n).await;
                    calls[i].push(print_row(&format!("call {}", c.label), n, r, &m));
                }
            }
        }
        std::fs::remove_file(&out).ok();
        all.push((n, exports, calls));
        sandbox.shutdown().await;
    }
    println!("load average at end: {}", load_average());
    println!();
    println!(
        "what         records   rounds   records/s: median (min–max)   CPU s: median (min–max)   peak RSS: median (min–max)"
    );
    for (n, exports, calls) in &all {
        for (i, c) in wasm.iter().enumerate() {
            summary(&format!("export {}", c.label), *n, &exports[i], c.target());
            if !calls[i].is_empty() {
                summary(&format!("call {}", c.label), *n, &calls[i], c.target());
            }
        }
    }
}

/// `nexo plugin call WASM read --all-pages`: the same reads, the records
/// in one JSON document (checked).
async fn plugin_call(
    root: &Path,
    dir: &Path,
    c: &Connector,
    sandbox: &HubSpotSandbox,
    n: usize,
) -> Measured {
    let config = root.join("config.json");
    std::fs::write(&config, json!({"page_size": PAGE}).to_string()).unwrap();
    let doc = root.join("call.json");
    // Never the limit: a search restarts every 10 000 results on a record
    // already read, so pages hold 99 new ones.
    let pages = (n as u32).div_ceil(PAGE) * 2 + 10;
    let args: Vec<String> = [
        "--data-dir",
        &dir.display().to_string(),
        "plugin",
        "call",
        &c.wasm,
        "read",
        "--config",
        &config.display().to_string(),
        "--stream",
        "contacts",
        "--all-pages",
        "--max-pages",
        &pages.to_string(),
        "--origin-override",
        &format!("{HUBSPOT_API}={}", sandbox.url()),
        "--secret",
        "api_token=env:NEXO_BENCH_TOKEN",
    ]
    .map(String::from)
    .to_vec();
    // The token reaches the child through its environment, never its
    // command line.
    let token = vec![("NEXO_BENCH_TOKEN", TOKEN)];
    let m = measure_with(args, false, Some(doc.clone()), token).await;
    assert!(m.ok, "{}", m.stderr);
    check_document(&doc, n);
    std::fs::remove_file(&doc).ok();
    m
}

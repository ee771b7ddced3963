//! From a change in the CRM to the books, through a webhook: the HubSpot-like
//! and Xero-like sandboxes in this process on 127.0.0.1, `nexo serve` as a
//! child process (its own data directory and port) with a pipeline from
//! HubSpot contacts to Xero contacts, and the sandbox's webhook subscription
//! (`contact.propertyChange` on `lastname`, signed HubSpot's v3 way) pointed
//! at the pipeline's hook. Changes arrive at a steady rate, then in a burst;
//! for each change the time from the edit in the HubSpot-like store to the
//! new value readable in the Xero-like store (watched in-process every
//! millisecond) is recorded. Prints p50/p95/p99/max per phase, the runs the
//! host made and the target (p95 ≤ 2 s at 10 changes/s); never asserts a
//! timing, but fails if any change does not arrive with its final value.
//!
//! ```text
//! cargo build --release -p nexo --bin nexo
//! cargo bench -p nexo-tests --bench latency -- [CHANGES] [PER_SECOND] [BURST]
//! ```
//! (defaults 1000, 10, 200; `NEXO_BIN` names another `nexo` binary).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexo::connections::NewConnection;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::sync::store::{RunFilter, RunRow, RunStore};
use nexo::sync::{Pipeline, RunOptions};
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, ObjectType, SeedData};
use nexo_sandbox::xero::{self, Collection, XeroConfig, XeroSandbox};
use nexo_tests::cli::{command, listening_url, terminate};
use nexo_tests::tryton::Host;
use serde_json::json;

const PIPELINE: &str = "contacts-to-xero";
const TARGET_P95: Duration = Duration::from_secs(2);

/// Every change waits at most this long after the last one of its phase.
const DRAIN: Duration = Duration::from_secs(120);

fn pipeline_toml() -> String {
    format!(
        r#"name = "{PIPELINE}"
description = "HubSpot contacts → Xero contacts, on HubSpot's webhooks"
entity = "contact"

[source]
connection = "hubspot"
stream = "contacts"

[[mappers]]
plugin = "nexo/field-mapper"

[mappers.config]
templates = {{ name = "{{firstname}} {{lastname}}" }}
keep = ["name", "email"]
stream = "contacts"

[destination]
connection = "xero"
stream = "contacts"
"#
    )
}

/// A change waiting to be seen in the books.
struct Pending {
    contact_id: String,
    /// The Xero contact's `Name` once it has arrived.
    value: String,
    at: Instant,
}

/// Watches the Xero-like store every millisecond for pending changes.
struct Watch {
    pending: Arc<Mutex<Vec<Pending>>>,
    seen: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(books: Arc<XeroSandbox>) -> Watch {
        let pending: Arc<Mutex<Vec<Pending>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, st) = (pending.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                {
                    let mut p = p.lock().unwrap();
                    if !p.is_empty() {
                        let now = Instant::now();
                        let mut s = s.lock().unwrap();
                        p.retain(|c| {
                            let arrived = books
                                .record(Collection::Contacts, &c.contact_id)
                                .is_some_and(|r| r["Name"] == c.value.as_str());
                            if arrived {
                                s.push(now - c.at);
                            }
                            !arrived
                        });
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Watch {
            pending,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn expect(&self, contact_id: &str, value: String, at: Instant) {
        self.pending.lock().unwrap().push(Pending {
            contact_id: contact_id.to_string(),
            value,
            at,
        });
    }

    /// Wait until nothing is pending (or `DRAIN` passed); the latencies
    /// seen, and how many never arrived.
    async fn drain(&self) -> (Vec<Duration>, usize) {
        let deadline = Instant::now() + DRAIN;
        while !self.pending.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let missing = self.pending.lock().unwrap().len();
        let mut seen = std::mem::take(&mut *self.seen.lock().unwrap());
        seen.sort();
        (seen, missing)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn runs(db: &nexo::store::Database) -> Vec<RunRow> {
    db.runs(&RunFilter {
        pipeline: Some(PIPELINE.into()),
        status: None,
        limit: 1_000_000,
    })
    .unwrap()
}

fn report(phase: &str, sorted: &[Duration], runs: &[RunRow], requests: u64) {
    let durations: Vec<i64> = runs.iter().filter_map(|r| r.duration_ms).collect();
    let mean_run = durations.iter().sum::<i64>() as f64 / durations.len().max(1) as f64;
    println!(
        "{phase:<28} n={:<5} p50 {:>7}  p95 {:>7}  p99 {:>7}  max {:>7}  | runs {:>3} (mean {:.0} ms, max {} ms), webhook requests {requests}",
        sorted.len(),
        ms(pct(sorted, 0.50)),
        ms(pct(sorted, 0.95)),
        ms(pct(sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
        runs.len(),
        mean_run,
        durations.iter().max().copied().unwrap_or(0),
    );
}

fn nexo_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NEXO_BIN") {
        return PathBuf::from(p);
    }
    // target/release/deps/latency-<hash> → target/release/nexo
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("nexo"))
        .unwrap();
    if !bin.exists() {
        eprintln!(
            "no nexo binary at {}: build it first with `cargo build --release -p nexo --bin nexo` (or set NEXO_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

async fn connect(host: &Host, hub: &HubSpotSandbox, books: &XeroSandbox) {
    let xero = XeroConfig::default();
    for (name, plugin, config, secret, token, logical, origin) in [
        (
            "hubspot",
            "nexo/hubspot",
            json!({"page_size": 100}),
            "api_token",
            HubSpotConfig::default().token,
            "https://api.hubapi.com",
            hub.url(),
        ),
        (
            "xero",
            "nexo/xero",
            json!({"tenant_id": xero.tenant_id}),
            "access_token",
            xero.token.clone(),
            "https://api.xero.com",
            books.url(),
        ),
    ] {
        host.connections
            .add(NewConnection {
                name: name.into(),
                plugin_id: plugin.into(),
                pinned_version: None,
                environment: Environment::Sandbox,
                config,
                secrets: BTreeMap::from([(secret.to_string(), SecretValue::new(token))]),
                // The sandbox is reached through the connection's override.
                grants: ConnectionGrants {
                    origin_overrides: BTreeMap::from([(logical.to_string(), origin)]),
                    ..Default::default()
                },
            })
            .unwrap();
    }
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let changes = arg(0, 1000).max(1);
    let per_second = arg(1, 10).max(1);
    let burst = arg(2, 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(changes, per_second, burst));
}

async fn bench(changes: usize, per_second: usize, burst: usize) {
    let bin = nexo_bin();
    let contacts = changes.max(burst);
    println!(
        "latency: {changes} changes at {per_second}/s, then a burst of {burst}; {contacts} contacts; nexo = {}",
        bin.display()
    );
    let hub = hubspot::start(HubSpotConfig {
        seed: SeedData::EMPTY,
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let books = Arc::new(
        xero::start(XeroConfig {
            rate_limit: None,
            ..XeroConfig::default()
        })
        .await
        .unwrap(),
    );
    let mut ids = Vec::with_capacity(contacts);
    for i in 0..contacts {
        let c = hub
            .create(
                ObjectType::Contacts,
                &[
                    ("firstname", "Bench"),
                    ("lastname", &format!("c{i}")),
                    ("email", &format!("bench{i}@example.com")),
                ],
            )
            .unwrap();
        ids.push(c.id);
    }

    // The data directory: plugins, connections, the pipeline, a first run.
    let host = Host::new().await;
    connect(&host, &hub, &books).await;
    let p = Pipeline::from_toml(&pipeline_toml(), PIPELINE).unwrap();
    host.engine.apply(&p).await.unwrap();
    let first = host
        .engine
        .run(PIPELINE, RunOptions::default())
        .await
        .unwrap();
    assert!(first.error.is_none(), "first run: {:?}", first.error);
    let Host { dir, db, .. } = host;
    // HubSpot contact id → Xero ContactID, by the unique email.
    let by_email: BTreeMap<String, String> = books
        .records(Collection::Contacts)
        .into_iter()
        .filter_map(|c| {
            Some((
                c["EmailAddress"].as_str()?.to_string(),
                c["ContactID"].as_str()?.to_string(),
            ))
        })
        .collect();
    let xero_id: Vec<String> = (0..contacts)
        .map(|i| {
            by_email
                .get(&format!("bench{i}@example.com"))
                .unwrap_or_else(|| panic!("contact {i} not in the books after the first run"))
                .clone()
        })
        .collect();
    println!(
        "first run: {contacts} contacts in the books ({} ms)",
        runs(&db)[0].duration_ms.unwrap_or(0)
    );

    // A run through the binary, as an admin's first sync would be: it
    // compiles the plugins into the data directory's cache, which
    // `nexo serve` then loads them from (otherwise the first measured run
    // pays for compiling them).
    let warm = command(bin.to_str().unwrap(), dir.path(), "warn")
        .args(["pipeline", "run", PIPELINE])
        .output()
        .unwrap();
    assert!(
        warm.status.success(),
        "{}",
        String::from_utf8_lossy(&warm.stderr)
    );

    // The hook expects HubSpot's signature under the app's client secret,
    // set as an admin would.
    let mut set = command(bin.to_str().unwrap(), dir.path(), "warn")
        .args(["pipeline", "webhook", PIPELINE, "--hubspot"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(set.stdin.take().unwrap(), "{}", hub.client_secret()).unwrap();
    let out = set.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut serve = command(
        bin.to_str().unwrap(),
        dir.path(),
        &std::env::var("NEXO_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .args(["serve", "--addr", "127.0.0.1:0"])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let url = listening_url(&mut serve);
    hub.set_webhook_target(&format!("{url}/hooks/{PIPELINE}"));
    hub.subscribe("contact.propertyChange", Some("lastname"))
        .unwrap();
    let watch = Watch::start(books.clone());
    let mut failed = false;

    // Steady: one change every 1/per_second s, each to its own contact.
    let runs_before = runs(&db).len();
    let requests_before = hub.webhook_counts().requests;
    let period = Duration::from_secs_f64(1.0 / per_second as f64);
    let start = tokio::time::Instant::now();
    for (i, id) in ids.iter().take(changes).enumerate() {
        tokio::time::sleep_until(start + period * i as u32).await;
        let value = format!("s{i}");
        let at = Instant::now();
        hub.edit(ObjectType::Contacts, *id, &[("lastname", &value)])
            .unwrap();
        watch.expect(&xero_id[i], format!("Bench {value}"), at);
    }
    let (steady, missing) = watch.drain().await;
    // Wait for the host to be idle before counting its runs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = runs(&db);
    let steady_runs = &all[..all.len() - runs_before];
    if missing > 0 {
        eprintln!("steady: {missing} changes never arrived");
        failed = true;
    }

    // Burst: `burst` changes at once.
    let runs_mid = all.len();
    let requests_mid = hub.webhook_counts().requests;
    for (i, id) in ids.iter().take(burst).enumerate() {
        let value = format!("b{i}");
        let at = Instant::now();
        hub.edit(ObjectType::Contacts, *id, &[("lastname", &value)])
            .unwrap();
        watch.expect(&xero_id[i], format!("Bench {value}"), at);
    }
    let (bursted, missing) = watch.drain().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = runs(&db);
    let burst_runs = &all[..all.len() - runs_mid];
    if missing > 0 {
        eprintln!("burst: {missing} changes never arrived");
        failed = true;
    }
    drop(watch);
    let requests_end = hub.webhook_counts().requests;

    // Every contact in the books with its final value.
    let mut wrong = 0;
    for (i, id) in ids.iter().enumerate() {
        let want = hub
            .get(ObjectType::Contacts, *id)
            .and_then(|c| c.property("lastname"))
            .unwrap();
        let got = books.record(Collection::Contacts, &xero_id[i]);
        if got
            .as_ref()
            .map(|r| r["Name"] == format!("Bench {want}").as_str())
            != Some(true)
        {
            wrong += 1;
        }
    }
    let status = terminate(&mut serve, Duration::from_secs(30));

    println!();
    report(
        &format!("steady {per_second}/s"),
        &steady,
        steady_runs,
        requests_mid - requests_before,
    );
    report(
        &format!("burst of {burst}"),
        &bursted,
        burst_runs,
        requests_end - requests_mid,
    );
    let p95 = pct(&steady, 0.95);
    println!(
        "target: p95 ≤ {} at 10 changes/s — steady p95 {} ({})",
        ms(TARGET_P95),
        ms(p95),
        if p95 <= TARGET_P95 { "met" } else { "missed" }
    );
    let counts = hub.webhook_counts();
    println!(
        "webhooks: {} requests, {} failed, {} events delivered; nexo serve exited {status}",
        counts.requests, counts.failed, counts.delivered_events
    );
    let bad_runs = all
        .iter()
        .filter(|r| r.status != nexo::sync::store::RunStatus::Succeeded)
        .count();
    if wrong > 0 || bad_runs > 0 {
        eprintln!("{wrong} contacts without their final value; {bad_runs} runs not succeeded");
        failed = true;
    }
    if steady.len() + bursted.len() != changes.min(contacts) + burst {
        failed = true;
    }
    drop(dir);
    if failed {
        std::process::exit(1);
    }
}

//! What a plugin costs the host per language (issue 19): Rust, Python
//! (componentize-py, CPython pre-initialised) and JavaScript (componentize-qjs,
//! QuickJS) — each language's mapper and connector, side by side: component
//! size, compile (nothing cached), load from the on-disk cache, pooled
//! instantiation, and one call's cost (a mapper's `map` of 100 TinyCRM
//! contacts; a connector's `read` of one 100-contact page from the
//! HubSpot-like sandbox on 127.0.0.1). Through the host's own API
//! (`Runtime`, `MapperPlugin`, `ConnectorPlugin`) with the default limits,
//! as production runs them.
//!
//! `cargo bench -p nexo-tests --bench languages` (release). Variants run
//! round-robin so the shared machine's load hits them alike; medians are
//! printed with the load average; targets are printed, never asserted. It
//! aborts if a mapper does not map all 100 contacts or a page is not 100
//! records, since timing a wrong answer would be worthless. The end-to-end
//! figures (records/s through `nexo pipeline run` / `nexo stream export`)
//! come from the `sync` bench (`--mapper`) and the `read` bench
//! (`--connector`). `NEXO_BENCH_VS=js-hubspot=/path/other.wasm` adds that
//! subject again from another build of its component, in the same rounds
//! (an interleaved A/B of two builds). Results: `docs/BENCHMARKS.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo_tests::benchkit::{Samples, cwasm_size, dur, load_average, rate, verdict};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use nexo::plugin::{MapOutcome, Operation, Record};
use nexo::sandbox::overrides::Overrides;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{
    ConnectorPlugin, Grants, Limits, LoadedPlugin, MapperPlugin, PluginRef, Runtime, RuntimeConfig,
    Sandbox,
};
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, SeedData};
use nexo_tests::{programs, tinycrm};

/// Issue 19's target for instantiating a plugin whose code is cached.
const TARGET_INSTANTIATE: Duration = Duration::from_millis(1);
/// Records per mapper call, and per connector page.
const PAGE: usize = 100;
const HUBSPOT_API: &str = "https://api.hubapi.com";
const TOKEN: &str = "pat-na1-languages-bench";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mapper,
    Connector,
}

/// One component under test.
#[derive(Clone)]
struct Subject {
    language: &'static str,
    name: String,
    path: String,
    kind: Kind,
    /// The mapper's config (TinyCRM contacts pass through it unrejected), or
    /// the connector's.
    config: &'static str,
    /// A connector read against the HubSpot-like sandbox.
    reads_hubspot: bool,
}

/// The six subjects: each language's mapper and connector.
fn subjects() -> Vec<Subject> {
    let subject = |language, name: &str, path: &str, kind, config, reads_hubspot| Subject {
        language,
        name: name.into(),
        path: path.into(),
        kind,
        config,
        reads_hubspot,
    };
    let mut all = vec![
        subject(
            "Rust",
            "contact-mapper",
            programs::CONTACT_MAPPER,
            Kind::Mapper,
            "{}",
            false,
        ),
        subject(
            "Python",
            "py-contact-cleaner",
            programs::PY_CONTACT_CLEANER,
            Kind::Mapper,
            r#"{"default_country_code": "44"}"#,
            false,
        ),
        subject(
            "JS",
            "js-mapper",
            programs::JS_MAPPER,
            Kind::Mapper,
            r#"{"field": "last_name"}"#,
            false,
        ),
        subject(
            "Rust",
            "hubspot",
            programs::HUBSPOT,
            Kind::Connector,
            r#"{"page_size": 100}"#,
            true,
        ),
        subject(
            "Python",
            "py-hledger",
            programs::PY_HLEDGER,
            Kind::Connector,
            "{}",
            false,
        ),
        subject(
            "JS",
            "js-hubspot",
            programs::JS_HUBSPOT,
            Kind::Connector,
            r#"{"page_size": 100}"#,
            true,
        ),
    ];
    // `NEXO_BENCH_VS=NAME=PATH,…`: subject NAME again, from another build of
    // its component, run in the same rounds (an A/B of two builds).
    for pair in std::env::var("NEXO_BENCH_VS")
        .unwrap_or_default()
        .split(',')
    {
        let Some((name, path)) = pair.split_once('=') else {
            continue;
        };
        let base = all
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("NEXO_BENCH_VS: no subject named {name}"))
            .clone();
        all.push(Subject {
            name: format!("{name} (vs)"),
            path: path.into(),
            ..base
        });
    }
    all
}

/// A subject opened in the cached runtime.
enum Opened {
    Mapper(MapperPlugin),
    Connector(ConnectorPlugin),
}

impl Opened {
    async fn warm_up(&self) {
        let outcome = match self {
            Opened::Mapper(m) => m.warm_up().await,
            Opened::Connector(c) => c.warm_up().await,
        };
        outcome.result.expect("instantiates");
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    rt.block_on(run());
    println!(
        "\n(total bench time {:.1} s; load average at the end: {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

async fn run() {
    header();
    let subjects = subjects();
    let bytes: Vec<Vec<u8>> = subjects
        .iter()
        .map(|s| std::fs::read(&s.path).unwrap_or_else(|e| panic!("{}: {e}", s.path)))
        .collect();

    // 1. Compile with nothing cached: a fresh Runtime per run, its cache a
    // throw-away directory (what installing a new plugin version pays; the
    // .cwasm is written too, as at install).
    let rounds = compile_rounds();
    let mut compile: Vec<Vec<Duration>> = vec![Vec::new(); subjects.len()];
    let mut cwasm = vec![0u64; subjects.len()];
    for _ in 0..rounds {
        for (i, s) in subjects.iter().enumerate() {
            let dir = tempfile::tempdir().expect("temp dir");
            let fresh = cached_runtime(dir.path());
            let t = Instant::now();
            black_box(fresh.compile(&bytes[i], &s.name).expect("compiles"));
            compile[i].push(t.elapsed());
            cwasm[i] = cwasm_size(dir.path(), &bytes[i]);
        }
    }
    let compile: Vec<Samples> = compile.into_iter().map(Samples::sorted).collect();

    // 2. Load from the on-disk cache (one runtime, as a host process after
    // install): `Runtime::compile` (SHA-256 + mmap deserialize) and
    // `Runtime::load` (+ inspect, link, pre-instantiate).
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let cached = cached_runtime(cache_dir.path());
    for (i, s) in subjects.iter().enumerate() {
        cached.compile(&bytes[i], &s.name).expect("fills the cache");
    }
    let load_rounds = 15;
    let hash = interleave(subjects.len(), 2, load_rounds, async |i| {
        black_box(nexo::cache::sha256_hex(&bytes[i]));
    })
    .await;
    let from_cache = interleave(subjects.len(), 2, load_rounds, async |i| {
        black_box(cached.compile(&bytes[i], &subjects[i].name).expect("loads"));
    })
    .await;
    let full_load = interleave(subjects.len(), 2, load_rounds, async |i| {
        black_box(cached.load(&bytes[i], &subjects[i].name).expect("loads"));
    })
    .await;

    println!("\n1–2. Size, compile (nothing cached), load from the on-disk cache");
    println!("{}", "─".repeat(118));
    println!(
        "{:<8} {:<20} {:>10} {:>10} │ {:>9} {:>9} {:>5} │ {:>10} {:>10} {:>12}",
        "language",
        "component",
        ".wasm",
        ".cwasm",
        "compile",
        "(min)",
        "runs",
        "sha256",
        "compile()",
        "load()"
    );
    for (i, s) in subjects.iter().enumerate() {
        println!(
            "{:<8} {:<20} {:>10} {:>10} │ {:>9} {:>9} {:>5} │ {:>10} {:>10} {:>12}",
            s.language,
            s.name,
            size(bytes[i].len() as u64),
            size(cwasm[i]),
            dur(compile[i].median()),
            dur(compile[i].min()),
            compile[i].len(),
            dur(hash[i].median()),
            dur(from_cache[i].median()),
            dur(full_load[i].median()),
        );
    }
    println!(
        "  compile() from the cache = sha256 of the .wasm + mmap of the .cwasm; load() adds inspect, link and pre-instantiate ({load_rounds} runs each, interleaved)"
    );

    // 3. Instantiate, pooled: `warm_up` (fresh Store, limits, instantiate).
    let server = hubspot::start(HubSpotConfig {
        token: TOKEN.into(),
        seed: SeedData {
            seed: 1,
            companies: 0,
            contacts: 1_000,
            deals: 0,
        },
        ..HubSpotConfig::default()
    })
    .await
    .expect("HubSpot sandbox starts");
    let mut opened = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let plugin = cached.load(&bytes[i], &s.name).expect("loads");
        opened.push(open(&plugin, s, &server).await);
    }
    let instantiate = interleave(subjects.len(), 20, instantiate_rounds(), async |i| {
        opened[i].warm_up().await;
    })
    .await;
    println!(
        "\n3. Instantiate from the cache, pooled (warm_up: fresh Store + limits + instantiate_pre, no call)"
    );
    println!("{}", "─".repeat(96));
    println!(
        "{:<8} {:<20} {:>10} {:>10} {:>6} │ {:>9} {:>7} │ {:>14}",
        "language", "component", "median", "p90", "runs", "target", "verdict", "+ load() above"
    );
    for (i, s) in subjects.iter().enumerate() {
        let m = instantiate[i].median();
        println!(
            "{:<8} {:<20} {:>10} {:>10} {:>6} │ {:>9} {:>7} │ {:>14}",
            s.language,
            s.name,
            dur(m),
            dur(instantiate[i].p90()),
            instantiate[i].len(),
            "≤ 1 ms",
            verdict(m <= TARGET_INSTANTIATE),
            dur(m + full_load[i].median()),
        );
    }

    // 4. One call: a mapper's map of 100 contacts (and of none: the fixed
    // cost), a connector's read of one 100-contact page.
    let contacts: Vec<Record> = tinycrm::seed(PAGE).values().map(record).collect();
    let mappers: Vec<usize> = (0..subjects.len())
        .filter(|&i| subjects[i].kind == Kind::Mapper)
        .collect();
    for &i in &mappers {
        verify_map(&opened[i], &subjects[i], &contacts).await;
    }
    let readers: Vec<usize> = (0..subjects.len())
        .filter(|&i| subjects[i].reads_hubspot)
        .collect();
    for &i in &readers {
        verify_read(&opened[i], &subjects[i]).await;
    }
    let empty = interleave(mappers.len(), 10, 200, async |j| {
        map(&opened[mappers[j]], &subjects[mappers[j]], &[]).await;
    })
    .await;
    let full = interleave(mappers.len(), 5, 60, async |j| {
        map(&opened[mappers[j]], &subjects[mappers[j]], &contacts).await;
    })
    .await;
    let reads = interleave(readers.len(), 5, 60, async |j| {
        read_page(&opened[readers[j]], &subjects[readers[j]]).await;
    })
    .await;
    println!(
        "\n4. One call (mapper: map of {PAGE} TinyCRM contacts; connector: read of one {PAGE}-contact page from the HubSpot-like sandbox on 127.0.0.1)"
    );
    println!("{}", "─".repeat(110));
    println!(
        "{:<8} {:<20} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "language", "component", "empty call", "per page", "p90", "records/s", "runs"
    );
    for (j, &i) in mappers.iter().enumerate() {
        println!(
            "{:<8} {:<20} {:>12} {:>12} {:>12} {:>12} {:>8}",
            subjects[i].language,
            subjects[i].name,
            dur(empty[j].median()),
            dur(full[j].median()),
            dur(full[j].p90()),
            rate(PAGE, full[j].median()),
            full[j].len()
        );
    }
    for (j, &i) in readers.iter().enumerate() {
        println!(
            "{:<8} {:<20} {:>12} {:>12} {:>12} {:>12} {:>8}",
            subjects[i].language,
            subjects[i].name,
            "",
            dur(reads[j].median()),
            dur(reads[j].p90()),
            rate(PAGE, reads[j].median()),
            reads[j].len()
        );
    }
    println!(
        "  empty call = map(config, []): instantiate + config parse + call; the end-to-end targets (≥ 20 000 records/s) are measured by the sync and read benches"
    );
    server.shutdown().await;
}

/// A runtime as production builds one (pooling allocator, default limits),
/// caching compiled code in `dir`.
fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.into()),
        ..RuntimeConfig::default()
    })
    .expect("runtime starts")
}

/// Compile rounds (`NEXO_BENCH_COMPILE_ROUNDS`, default 3): each Python
/// compile takes seconds.
fn compile_rounds() -> usize {
    std::env::var("NEXO_BENCH_COMPILE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(3)
}

/// Instantiate rounds (`NEXO_BENCH_INSTANTIATE_ROUNDS`, default 300): more
/// to profile this section (`perf record -g`).
fn instantiate_rounds() -> usize {
    std::env::var("NEXO_BENCH_INSTANTIATE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(300)
}

async fn open(plugin: &LoadedPlugin, s: &Subject, server: &HubSpotSandbox) -> Opened {
    let plugin_ref = PluginRef {
        id: format!("bench/{}", s.name),
        version: "0.0.0-bench".into(),
    };
    match s.kind {
        Kind::Mapper => {
            let sandbox = Sandbox {
                plugin: plugin_ref,
                limits: Limits::default(),
                grants: Grants::default(),
                secrets: BTreeMap::new(),
                credentials: Default::default(),
                kv: None,
            };
            Opened::Mapper(MapperPlugin::open(plugin, sandbox).expect("mapper opens"))
        }
        Kind::Connector => {
            let grants = if s.reads_hubspot {
                Grants {
                    http: vec![HttpGrant::public(HUBSPOT_API).expect("grant")],
                    kv_bytes: 0,
                }
            } else {
                Grants::default()
            };
            let sandbox = Sandbox {
                plugin: plugin_ref,
                limits: Limits::default(),
                grants,
                secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
                credentials: Default::default(),
                kv: None,
            };
            let c = ConnectorPlugin::open(plugin, sandbox)
                .await
                .expect("connector opens (spec)");
            if s.reads_hubspot {
                let pair = [(HUBSPOT_API.to_string(), server.url())];
                Opened::Connector(
                    c.with_origin_overrides(
                        Overrides::parse(pair.iter().map(|(a, b)| (a, b))).expect("override"),
                    )
                    .expect("override applies"),
                )
            } else {
                Opened::Connector(c)
            }
        }
    }
}

async fn map(o: &Opened, s: &Subject, batch: &[Record]) -> Vec<MapOutcome> {
    let Opened::Mapper(m) = o else {
        unreachable!("{} is a mapper", s.name)
    };
    m.map(s.config, batch).await.result.expect("maps")
}

async fn read_page(o: &Opened, s: &Subject) -> nexo::plugin::Page {
    let Opened::Connector(c) = o else {
        unreachable!("{} is a connector", s.name)
    };
    c.read(s.config, "contacts", None)
        .await
        .result
        .expect("reads a page")
}

/// Every contact maps to exactly one record, or the bench stops.
async fn verify_map(o: &Opened, s: &Subject, batch: &[Record]) {
    let out = map(o, s, batch).await;
    let ok = out.len() == batch.len()
        && out
            .iter()
            .all(|o| matches!(o, MapOutcome::Mapped(r) if r.len() == 1));
    if !ok {
        abort(&format!(
            "{} did not map each of {} contacts to one record: {out:?}",
            s.name,
            batch.len()
        ));
    }
}

async fn verify_read(o: &Opened, s: &Subject) {
    let page = read_page(o, s).await;
    if page.records.len() != PAGE || !page.has_more {
        abort(&format!(
            "{} read {} records (has_more {}), not a full page of {PAGE}",
            s.name,
            page.records.len(),
            page.has_more
        ));
    }
}

fn abort(message: &str) -> ! {
    eprintln!("\nBENCHMARK ABORTED: {message}");
    std::process::exit(2)
}

fn record(contact: &serde_json::Value) -> Record {
    Record {
        stream: "contacts".into(),
        id: contact["id"].as_str().unwrap_or_default().into(),
        operation: Operation::Upsert,
        payload: contact.to_string(),
        cursor: contact["updated_at"].as_str().map(Into::into),
    }
}

// ---------------------------------------------------------------------------
// Timing (the rest is in `nexo_tests::benchkit`).

/// Runs `variants` round-robin, one run of each per round, `warmup` rounds
/// untimed, then `rounds` timed.
async fn interleave(
    variants: usize,
    warmup: usize,
    rounds: usize,
    mut f: impl AsyncFnMut(usize),
) -> Vec<Samples> {
    for _ in 0..warmup {
        for i in 0..variants {
            f(i).await;
        }
    }
    let mut out: Vec<Vec<Duration>> = (0..variants).map(|_| Vec::with_capacity(rounds)).collect();
    for _ in 0..rounds {
        for (i, samples) in out.iter_mut().enumerate() {
            let t = Instant::now();
            f(i).await;
            samples.push(t.elapsed());
        }
    }
    out.into_iter().map(Samples::sorted).collect()
}

fn header() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "Nexo plugins in three languages (wasmtime 48, pooling allocator, {} build)",
        if cfg!(debug_assertions) {
            "DEBUG — numbers meaningless"
        } else {
            "release"
        }
    );
    println!(
        "machine: {cores} cores, {cpu}; load average at start: {}",
        load_average()
    );
    println!(
        "figures: medians unless said otherwise, Limits::default(); targets are printed, never asserted"
    );
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{} KB", bytes / 1024)
    }
}

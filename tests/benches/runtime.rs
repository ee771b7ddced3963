//! Runtime benchmark: what a plugin costs the host before, around and while
//! it runs — compile, load from the on-disk cache, pooled instantiation,
//! the host→guest call, and the contact mapper's throughput in Wasm next to
//! the same mapping compiled natively. Measured with the default limits
//! (fuel and epoch deadline on), because that is what production pays.
//!
//! `cargo bench -p nexo-tests --bench runtime`. It prints a table and never
//! fails on a missed target (it is a measurement, not a test); it does abort
//! if the Wasm and native mappings disagree, since timing a wrong mapping
//! would be worthless. Results and their reading: `docs/BENCHMARKS.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nexo::bindings::mapper::MapperPre;
use nexo::limits::StoreLimiter;
use nexo::plugin::{Operation, Record as HostRecord};
use nexo::runtime::EPOCH_TICK;
use nexo::{
    ConnectorPlugin, Grants, Limits, MapperPlugin, PluginRef, Runtime, RuntimeConfig, Sandbox,
};
use nexo_tests::{programs, tinycrm};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The mapper's configuration in every run, Wasm and native alike.
const MAPPER_CONFIG: &str = r#"{"stream":"customers","default_currency":"EUR"}"#;
const BATCH_SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// Batch size of the "where does the time go" breakdown.
const BREAKDOWN_BATCH: usize = 1_000;

const TARGET_INSTANTIATE: Duration = Duration::from_micros(25);
const TARGET_CACHE_LOAD: Duration = Duration::from_millis(1);
const TARGET_RATIO: f64 = 3.0;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    rt.block_on(run());
    println!(
        "\n(total bench time {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

async fn run() {
    let crm_bytes = std::fs::read(programs::EXAMPLE_CRM)
        .expect("example-crm component (built by tests/build.rs)");
    let mapper_bytes = std::fs::read(programs::CONTACT_MAPPER)
        .expect("contact-mapper component (built by tests/build.rs)");
    let components = [
        ("example-crm", &crm_bytes),
        ("contact-mapper", &mapper_bytes),
    ];

    header();

    // 1. Compile, no cache: what the first load of a new plugin version costs.
    let fresh = Runtime::new(RuntimeConfig::default()).expect("runtime without cache");
    section("1. Compile (Runtime without cache_dir: Cranelift, in memory)");
    row_head(&["median", "min", "runs"]);
    for (name, bytes) in components {
        let s = sample_sync(1, 7, 7, Duration::ZERO, || {
            black_box(fresh.compile(bytes, name).expect("compiles"));
        });
        row(
            &format!("{name} ({} KB)", bytes.len() / 1024),
            &[dur(s.median()), dur(s.min()), s.len().to_string()],
        );
    }

    // 2. Load from the on-disk cache: every later load (restart, new run).
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir.path().into()),
        ..RuntimeConfig::default()
    })
    .expect("runtime with cache");
    section("2. Load from the on-disk cache (Runtime with cache_dir; first compile populated it)");
    row_head(&["median", "p90", "runs", "target", "verdict"]);
    for (name, bytes) in components {
        cached
            .compile(bytes, name)
            .expect("first compile fills the cache");
        let s = sample_sync(20, 300, 300, Duration::ZERO, || {
            black_box(cached.compile(bytes, name).expect("loads from cache"));
        });
        let verdict = verdict(s.median() <= TARGET_CACHE_LOAD);
        row(
            &format!("{name}: Runtime::compile (sha256 + mmap)"),
            &[
                dur(s.median()),
                dur(s.p90()),
                s.len().to_string(),
                "≤ 1 ms".into(),
                verdict.into(),
            ],
        );
    }
    for (name, bytes) in components {
        let s = sample_sync(20, 300, 300, Duration::ZERO, || {
            black_box(nexo::cache::sha256_hex(bytes));
        });
        row(
            &format!("  of which sha256 of {name}"),
            &[dur(s.median()), dur(s.p90()), s.len().to_string()],
        );
    }
    for (name, bytes) in components {
        let s = sample_sync(20, 200, 200, Duration::ZERO, || {
            black_box(cached.load(bytes, name).expect("loads"));
        });
        row(
            &format!("{name}: Runtime::load (+ parse, link, pre)"),
            &[dur(s.median()), dur(s.p90()), s.len().to_string()],
        );
    }

    // 3. Instantiate: the fixed cost of every call (fresh Store per call).
    let mapper_plugin = cached
        .load(&mapper_bytes, "contact-mapper")
        .expect("mapper loads");
    let crm_plugin = cached
        .load(&crm_bytes, "example-crm")
        .expect("example-crm loads");
    let mapper =
        MapperPlugin::open(&mapper_plugin, sandbox("bench/contact-mapper")).expect("mapper opens");
    let connector = ConnectorPlugin::open(&crm_plugin, sandbox("bench/example-crm"))
        .await
        .expect("example-crm opens (spec)");
    section("3. Instantiate, pooled (warm_up: fresh Store + limits + instantiate_pre, no call)");
    row_head(&["median", "p90", "runs", "target", "verdict"]);
    let s = sample(500, 20_000, 20_000, Duration::ZERO, async || {
        mapper.warm_up().await.result.expect("mapper instantiates");
    })
    .await;
    let instantiate = s.median();
    row(
        "contact-mapper  MapperPlugin::warm_up",
        &[
            dur(s.median()),
            dur(s.p90()),
            s.len().to_string(),
            "≤ 25 µs".into(),
            verdict(s.median() <= TARGET_INSTANTIATE).into(),
        ],
    );
    let s = sample(500, 20_000, 20_000, Duration::ZERO, async || {
        connector
            .warm_up()
            .await
            .result
            .expect("connector instantiates");
    })
    .await;
    row(
        "example-crm     ConnectorPlugin::warm_up",
        &[
            dur(s.median()),
            dur(s.p90()),
            s.len().to_string(),
            "≤ 25 µs".into(),
            verdict(s.median() <= TARGET_INSTANTIATE).into(),
        ],
    );

    // 4. Host→guest call: map an empty batch, minus the instantiation.
    section("4. Host→guest call overhead (contact-mapper)");
    row_head(&["median", "p90", "runs"]);
    let s = sample(500, 20_000, 20_000, Duration::ZERO, async || {
        black_box(
            mapper
                .map(MAPPER_CONFIG, &[])
                .await
                .result
                .expect("empty map"),
        );
    })
    .await;
    let empty_map = s.median();
    row(
        "map(config, []) = instantiate + call",
        &[dur(s.median()), dur(s.p90()), s.len().to_string()],
    );
    row(
        "  call alone (minus instantiate median)",
        &[
            dur(empty_map.saturating_sub(instantiate)),
            "".into(),
            "".into(),
        ],
    );

    // 5. Mapper throughput, Wasm next to native, on the same records.
    let contacts: Vec<serde_json::Value> = tinycrm::seed(*BATCH_SIZES.iter().max().unwrap_or(&1))
        .into_values()
        .collect();
    let host_records: Vec<HostRecord> = contacts.iter().map(host_record).collect();
    let sdk_records: Vec<nexo_sdk::Record> = contacts.iter().map(sdk_record).collect();
    verify_same_output(&mapper, &host_records, &sdk_records).await;

    section(
        "5. Mapper throughput: contact → customer (Wasm per batch includes its fresh instance)",
    );
    println!(
        "{:>7} │ {:>11} {:>11} │ {:>11} {:>11} │ {:>11} {:>7} {:>7}",
        "batch",
        "Wasm/batch",
        "Wasm rec/s",
        "native/b.",
        "native rec/s",
        "Wasm/native",
        "target",
        "verdict"
    );
    println!("{}", "─".repeat(96));
    let mut wasm_breakdown = Duration::ZERO;
    let mut native_breakdown = Duration::ZERO;
    for n in BATCH_SIZES {
        let host = &host_records[..n];
        let sdk = &sdk_records[..n];
        let (warm, max) = iterations_for(n);
        let w = sample(warm, 5, max, Duration::from_secs(3), async || {
            black_box(
                mapper
                    .map(MAPPER_CONFIG, host)
                    .await
                    .result
                    .expect("wasm map"),
            );
        })
        .await;
        let nat = sample_sync(warm * 4, 5, max * 20, Duration::from_secs(1), || {
            black_box(map_native(MAPPER_CONFIG, sdk));
        });
        let ratio = w.median().as_secs_f64() / nat.median().as_secs_f64();
        let (target, verdict) = if n >= 100 {
            ("≤ 3×", verdict(ratio <= TARGET_RATIO))
        } else {
            ("—", "")
        };
        if n == BREAKDOWN_BATCH {
            wasm_breakdown = w.median();
            native_breakdown = nat.median();
        }
        println!(
            "{:>7} │ {:>11} {:>11} │ {:>11} {:>11} │ {:>10.2}× {:>7} {:>7}",
            n,
            dur(w.median()),
            rate(n, w.median()),
            dur(nat.median()),
            rate(n, nat.median()),
            ratio,
            target,
            verdict
        );
    }

    // 6. Where the Wasm time goes: the same component on engines configured
    // like the host's but without the host wrapper, with and without fuel
    // and epoch instrumentation.
    section(&format!(
        "6. Breakdown at batch {BREAKDOWN_BATCH} (raw wasmtime, same pool settings, no host wrapper; native {} per batch)",
        dur(native_breakdown)
    ));
    row_head(&["empty", "per batch", "rec/s", "Wasm/native"]);
    let batch = &host_records[..BREAKDOWN_BATCH];
    let mut raw_default = Duration::ZERO;
    for (label, fuel, epoch) in [
        ("fuel + epoch (as the host)", true, true),
        ("fuel only", true, false),
        ("epoch only", false, true),
        ("neither", false, false),
    ] {
        let raw = RawMapper::new(&mapper_bytes, fuel, epoch);
        let empty = sample(200, 5_000, 5_000, Duration::ZERO, async || {
            black_box(raw.map(MAPPER_CONFIG, &[]).await);
        })
        .await;
        let full = sample(20, 5, 300, Duration::from_secs(3), async || {
            black_box(raw.map(MAPPER_CONFIG, batch).await);
        })
        .await;
        if fuel && epoch {
            raw_default = full.median();
        }
        row(
            label,
            &[
                dur(empty.median()),
                dur(full.median()),
                rate(BREAKDOWN_BATCH, full.median()),
                format!(
                    "{:.2}×",
                    full.median().as_secs_f64() / native_breakdown.as_secs_f64()
                ),
            ],
        );
    }
    let validation = {
        let out = map_native(MAPPER_CONFIG, &sdk_records[..BREAKDOWN_BATCH]);
        sample_sync(20, 5, 2_000, Duration::from_secs(1), || {
            for r in &out {
                black_box(matches!(
                    serde_json::from_str::<serde_json::Value>(&r.payload),
                    Ok(serde_json::Value::Object(_))
                ));
            }
        })
        .median()
    };
    row(
        "host wrapper: MapperPlugin::map − raw",
        &[
            "".into(),
            dur(wasm_breakdown.saturating_sub(raw_default)),
            "".into(),
            "".into(),
        ],
    );
    row(
        "  of which output check (JSON re-parse)",
        &["".into(), dur(validation), "".into(), "".into()],
    );
}

// ---------------------------------------------------------------------------
// The mapping, natively and in Wasm.

/// Exactly what the guest does per batch (see `nexo_sdk::mapper::glue`):
/// parse the config, map every record, collect the output vector.
fn map_native(config: &str, batch: &[nexo_sdk::Record]) -> Vec<nexo_sdk::Record> {
    let config: contact_mapper::Config =
        serde_json::from_str(config).expect("mapper config parses");
    let mut out = Vec::with_capacity(batch.len());
    for record in batch {
        if let Some(r) = contact_mapper::map_contact(&config, record).expect("native map") {
            out.push(r);
        }
    }
    out
}

fn host_record(contact: &serde_json::Value) -> HostRecord {
    HostRecord {
        stream: "contacts".into(),
        id: contact["id"].as_str().unwrap_or_default().into(),
        operation: Operation::Upsert,
        payload: contact.to_string(),
        cursor: contact["updated_at"].as_str().map(Into::into),
    }
}

fn sdk_record(contact: &serde_json::Value) -> nexo_sdk::Record {
    let h = host_record(contact);
    nexo_sdk::Record {
        stream: h.stream,
        id: h.id,
        operation: nexo_sdk::Operation::Upsert,
        payload: h.payload,
        cursor: h.cursor,
    }
}

/// Map the whole data set both ways and compare record by record; abort
/// the benchmark on any difference.
async fn verify_same_output(mapper: &MapperPlugin, host: &[HostRecord], sdk: &[nexo_sdk::Record]) {
    let wasm = match mapper.map(MAPPER_CONFIG, host).await.result {
        Ok(w) => w,
        Err(e) => abort(&format!(
            "the Wasm mapper failed on the verification batch of {}: {e}",
            host.len()
        )),
    };
    let native = map_native(MAPPER_CONFIG, sdk);
    if wasm.len() != native.len() {
        abort(&format!(
            "Wasm mapped {} records, native {} (of {})",
            wasm.len(),
            native.len(),
            host.len()
        ));
    }
    for (w, n) in wasm.iter().zip(&native) {
        let op_same = matches!(
            (w.operation, n.operation),
            (Operation::Upsert, nexo_sdk::Operation::Upsert)
                | (Operation::Delete, nexo_sdk::Operation::Delete)
        );
        if w.stream != n.stream
            || w.id != n.id
            || w.payload != n.payload
            || w.cursor != n.cursor
            || !op_same
        {
            abort(&format!(
                "Wasm and native mappings differ on record {}:\n  wasm:   {} {:?} {}\n  native: {} {:?} {}",
                n.id, w.stream, w.cursor, w.payload, n.stream, n.cursor, n.payload
            ));
        }
    }
    println!(
        "\nverified: Wasm and native map all {} records to identical output (stream, id, operation, payload, cursor)",
        host.len()
    );
}

fn abort(message: &str) -> ! {
    eprintln!(
        "\nBENCHMARK ABORTED: {message}\nA benchmark of a wrong mapping is meaningless; fix the mapper first."
    );
    std::process::exit(2)
}

fn sandbox(id: &str) -> Sandbox {
    Sandbox {
        plugin: PluginRef {
            id: id.into(),
            version: "0.0.0-bench".into(),
        },
        limits: Limits::default(),
        grants: Grants::default(),
        secrets: BTreeMap::new(),
        kv: None,
    }
}

// ---------------------------------------------------------------------------
// The same component on a bare engine, to split the host's cost into
// wasmtime + instrumentation + host wrapper.

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: StoreLimiter,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct RawMapper {
    engine: Engine,
    pre: MapperPre<RawState>,
    fuel: bool,
    epoch: bool,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RawMapper {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl RawMapper {
    /// An engine set up as `Runtime::new` does (pool sizes of the default
    /// `RuntimeConfig`), with fuel and epochs switchable.
    fn new(bytes: &[u8], fuel: bool, epoch: bool) -> Self {
        let defaults = RuntimeConfig::default();
        let n = defaults.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(usize::try_from(defaults.max_memory_bytes).unwrap_or(usize::MAX));
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(fuel)
            .epoch_interruption(epoch)
            .max_wasm_stack(defaults.max_wasm_stack)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).expect("engine");
        let component = Component::new(&engine, bytes).expect("compiles");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links");
        // The mapper's only other import is `log`, unused on the happy path.
        linker
            .define_unknown_imports_as_traps(&component)
            .expect("stubs");
        let pre = MapperPre::new(linker.instantiate_pre(&component).expect("links"))
            .expect("mapper world");
        let ticker_stop = Arc::new(AtomicBool::new(false));
        if epoch {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        }
        RawMapper {
            engine,
            pre,
            fuel,
            epoch,
            ticker_stop,
        }
    }

    async fn map(&self, config: &str, batch: &[HostRecord]) -> Vec<HostRecord> {
        let limits = Limits::default();
        let state = RawState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: StoreLimiter::new(&limits),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.fuel {
            store.set_fuel(limits.fuel_per_call).expect("fuel");
        }
        if self.epoch {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        }
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiates");
        bindings
            .nexo_connector_mapping()
            .call_map(&mut store, config, batch)
            .await
            .expect("no trap")
            .expect("guest maps")
    }
}

// ---------------------------------------------------------------------------
// Timing and printing.

struct Samples(Vec<Duration>);

impl Samples {
    fn sorted(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Samples(v)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.0.len().saturating_sub(1)) as f64 * q).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }
    fn median(&self) -> Duration {
        self.quantile(0.5)
    }
    fn p90(&self) -> Duration {
        self.quantile(0.9)
    }
    fn min(&self) -> Duration {
        self.quantile(0.0)
    }
}

/// Warm-up runs, then timed runs until at least `min` runs and `budget`
/// time, or `max` runs.
async fn sample(
    warmup: usize,
    min: usize,
    max: usize,
    budget: Duration,
    mut f: impl AsyncFnMut(),
) -> Samples {
    for _ in 0..warmup {
        f().await;
    }
    let mut out = Vec::with_capacity(max.min(100_000));
    let start = Instant::now();
    while out.len() < max && (out.len() < min || start.elapsed() < budget) {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed());
    }
    Samples::sorted(out)
}

fn sample_sync(
    warmup: usize,
    min: usize,
    max: usize,
    budget: Duration,
    mut f: impl FnMut(),
) -> Samples {
    for _ in 0..warmup {
        f();
    }
    let mut out = Vec::with_capacity(max.min(100_000));
    let start = Instant::now();
    while out.len() < max && (out.len() < min || start.elapsed() < budget) {
        let t = Instant::now();
        f();
        out.push(t.elapsed());
    }
    Samples::sorted(out)
}

/// (warm-up runs, max runs) for a batch of `n`: many for tiny batches,
/// bounded by the time budget for big ones.
fn iterations_for(n: usize) -> (usize, usize) {
    match n {
        0..=10 => (500, 20_000),
        11..=1_000 => (50, 5_000),
        _ => (5, 500),
    }
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let limits = Limits::default();
    println!(
        "Nexo runtime benchmark (wasmtime 48, pooling allocator, {} build)",
        if cfg!(debug_assertions) {
            "DEBUG — numbers meaningless"
        } else {
            "release"
        }
    );
    println!(
        "machine: {cores} cores, {cpu}; load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "limits:  Limits::default() — fuel {} per call, epoch deadline checked every {} ms tick, {} MiB memory",
        limits.fuel_per_call,
        EPOCH_TICK.as_millis(),
        limits.memory_bytes >> 20
    );
    println!("figures: medians unless said otherwise; targets are printed, never asserted");
}

fn section(title: &str) {
    println!("\n{title}");
    println!("{}", "─".repeat(title.chars().count().min(110)));
}

const LABEL_WIDTH: usize = 44;

fn row_head(cols: &[&str]) {
    print!("{:LABEL_WIDTH$}", "");
    for c in cols {
        print!(" {c:>11}");
    }
    println!();
}

fn row(label: &str, cols: &[String]) {
    print!("{label:LABEL_WIDTH$}");
    for c in cols {
        print!(" {c:>11}");
    }
    println!();
}

fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}

fn dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn rate(n: usize, per_batch: Duration) -> String {
    let r = n as f64 / per_batch.as_secs_f64();
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.0} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

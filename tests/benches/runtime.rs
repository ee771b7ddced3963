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

use nexo_tests::benchkit::{Samples, cwasm_size, dur, load_average, rate, verdict};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nexo::bindings::mapper::MapperPre;
use nexo::bindings::v1_1::convert;
use nexo::limits::StoreLimiter;
use nexo::plugin::{MapOutcome, Operation, Record as HostRecord};
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

/// The mapper's configuration in every run, Wasm and native alike: the
/// defaults (every field is optional), so no contact is filtered out.
const MAPPER_CONFIG: &str = "{}";
const BATCH_SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// Batch size of the "where does the time go" breakdown.
const BREAKDOWN_BATCH: usize = 1_000;

// Issue 17's targets (issue 1's were 25 µs, 1 ms and 3×).
const TARGET_INSTANTIATE: Duration = Duration::from_micros(20);
const TARGET_CACHE_LOAD: Duration = Duration::from_micros(500);
const TARGET_RATIO: f64 = 2.0;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
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
        let cwasm = cwasm_size(cache_dir.path(), bytes);
        let load = sample_sync(20, 500, 500, Duration::ZERO, || {
            black_box(cached.compile(bytes, name).expect("loads from cache"));
        });
        let hash = sample_sync(20, 500, 500, Duration::ZERO, || {
            black_box(nexo::cache::sha256_hex(bytes));
        });
        let full = sample_sync(20, 300, 300, Duration::ZERO, || {
            black_box(cached.load(bytes, name).expect("loads"));
        });
        row(
            &format!("{name}: Runtime::compile"),
            &[
                dur(load.median()),
                dur(load.p90()),
                load.len().to_string(),
                "≤ 0.5 ms".into(),
                verdict(load.median() <= TARGET_CACHE_LOAD).into(),
            ],
        );
        row(
            &format!("  sha256 of the {} KB component", bytes.len() / 1024),
            &[dur(hash.median()), dur(hash.p90()), hash.len().to_string()],
        );
        row(
            &format!("  deserialize {} KB .cwasm (difference)", cwasm / 1024),
            &[dur(load.median().saturating_sub(hash.median()))],
        );
        row(
            "  Runtime::load (+ inspect, link, pre-inst.)",
            &[dur(full.median()), dur(full.p90()), full.len().to_string()],
        );
    }

    // 3. and 4. Instantiate, and instantiate + an empty call: the fixed
    // cost of every call (a fresh Store per call).
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
    let fixed = interleave(3, 500, 20_000, 20_000, Duration::ZERO, async |i| match i {
        0 => mapper.warm_up().await.result.expect("mapper instantiates"),
        1 => connector
            .warm_up()
            .await
            .result
            .expect("connector instantiates"),
        _ => {
            black_box(
                mapper
                    .map(MAPPER_CONFIG, &[])
                    .await
                    .result
                    .expect("empty map"),
            );
        }
    })
    .await;
    section("3. Instantiate, pooled (warm_up: fresh Store + limits + instantiate_pre, no call)");
    row_head(&["median", "p90", "runs", "target", "verdict"]);
    for (label, s) in [
        ("contact-mapper  MapperPlugin::warm_up", &fixed[0]),
        ("example-crm     ConnectorPlugin::warm_up", &fixed[1]),
    ] {
        row(
            label,
            &[
                dur(s.median()),
                dur(s.p90()),
                s.len().to_string(),
                "≤ 20 µs".into(),
                verdict(s.median() <= TARGET_INSTANTIATE).into(),
            ],
        );
    }
    section("4. Host→guest call overhead (contact-mapper)");
    row_head(&["median", "p90", "runs"]);
    row(
        "map(config, []) = instantiate + call",
        &[
            dur(fixed[2].median()),
            dur(fixed[2].p90()),
            fixed[2].len().to_string(),
        ],
    );
    row(
        "  the call alone (minus warm_up median)",
        &[dur(fixed[2].median().saturating_sub(fixed[0].median()))],
    );

    // 5. Mapper throughput, Wasm next to native, on the same records.
    let contacts: Vec<serde_json::Value> = tinycrm::seed(BATCH_SIZES[BATCH_SIZES.len() - 1])
        .into_values()
        .collect();
    let host_records: Vec<HostRecord> = contacts.iter().map(host_record).collect();
    let sdk_records: Vec<nexo_sdk::Record> = contacts.iter().map(sdk_record).collect();
    verify_same_output(&mapper, &host_records, &sdk_records).await;

    section(
        "5. Mapper throughput, CRM contact → canonical Contact (Wasm and native runs alternate)",
    );
    println!(
        "{:>7} │ {:>11} {:>11} │ {:>11} {:>11} │ {:>11} {:>7} {:>7} │ {:>6}",
        "batch",
        "Wasm/batch",
        "Wasm rec/s",
        "native/b.",
        "native rec/s",
        "Wasm/native",
        "target",
        "verdict",
        "rounds"
    );
    println!("{}", "─".repeat(105));
    let mut native_breakdown = Duration::ZERO;
    for n in BATCH_SIZES {
        let host = &host_records[..n];
        let sdk = &sdk_records[..n];
        let (warm, max) = iterations_for(n);
        let both = interleave(2, warm, 5, max, Duration::from_secs(4), async |i| {
            if i == 0 {
                black_box(
                    mapper
                        .map(MAPPER_CONFIG, host)
                        .await
                        .result
                        .expect("wasm map"),
                );
            } else {
                black_box(map_native(MAPPER_CONFIG, sdk));
            }
        })
        .await;
        let (w, nat) = (&both[0], &both[1]);
        let ratio = w.median().as_secs_f64() / nat.median().as_secs_f64();
        let (target, verdict) = if n >= 100 {
            ("≤ 2×", verdict(ratio <= TARGET_RATIO))
        } else {
            ("—", "")
        };
        if n == BREAKDOWN_BATCH {
            native_breakdown = nat.median();
        }
        println!(
            "{:>7} │ {:>11} {:>11} │ {:>11} {:>11} │ {:>10.2}× {:>7} {:>7} │ {:>6}",
            n,
            dur(w.median()),
            rate(n, w.median()),
            dur(nat.median()),
            rate(n, nat.median()),
            ratio,
            target,
            verdict,
            w.len()
        );
    }

    // 6. Where the Wasm time goes: the same component on bare engines set
    // up like the host's, with and without fuel and epoch instrumentation,
    // alternating with the host's own `map`.
    section(&format!(
        "6. Breakdown at batch {BREAKDOWN_BATCH}: bare wasmtime (host's pool settings, no host wrapper), all variants alternating"
    ));
    let variants = [
        ("Nexo MapperPlugin::map (epoch; fuel off)", None),
        ("bare engine, fuel + epoch", Some((true, true))),
        ("bare engine, fuel only", Some((true, false))),
        ("bare engine, epoch only", Some((false, true))),
        ("bare engine, neither", Some((false, false))),
    ];
    let raws: Vec<Option<RawMapper>> = variants
        .iter()
        .map(|(_, v)| v.map(|(fuel, epoch)| RawMapper::new(&mapper_bytes, fuel, epoch)))
        .collect();
    let batch = &host_records[..BREAKDOWN_BATCH];
    let run_variant = async |i: usize, records: &[HostRecord]| match &raws[i] {
        None => black_box(
            mapper
                .map(MAPPER_CONFIG, records)
                .await
                .result
                .expect("wasm map"),
        ),
        Some(raw) => black_box(raw.map(MAPPER_CONFIG, records).await),
    };
    let empty = interleave(
        variants.len(),
        200,
        5_000,
        5_000,
        Duration::ZERO,
        async |i| {
            run_variant(i, &[]).await;
        },
    )
    .await;
    let full = interleave(
        variants.len(),
        3,
        5,
        400,
        Duration::from_secs(8),
        async |i| {
            run_variant(i, batch).await;
        },
    )
    .await;
    let native = interleave(1, 20, 5, 2_000, Duration::from_secs(1), async |_| {
        black_box(map_native(MAPPER_CONFIG, &sdk_records[..BREAKDOWN_BATCH]));
    })
    .await;
    let native_now = native[0].median();
    row_head(&["map([])", "per batch", "rec/s", "Wasm/native", "rounds"]);
    for (((label, _), e), f) in variants.iter().zip(&empty).zip(&full) {
        row(
            label,
            &[
                dur(e.median()),
                dur(f.median()),
                rate(BREAKDOWN_BATCH, f.median()),
                format!(
                    "{:.2}×",
                    f.median().as_secs_f64() / native_now.as_secs_f64()
                ),
                f.len().to_string(),
            ],
        );
    }
    row(
        "native map_contact loop (same moment)",
        &[
            "".into(),
            dur(native_now),
            rate(BREAKDOWN_BATCH, native_now),
            format!("(§5: {})", dur(native_breakdown)),
        ],
    );
    let pct = |a: Duration| 100.0 * (a.as_secs_f64() / full[4].median().as_secs_f64() - 1.0);
    println!();
    println!(
        "  instrumentation vs the bare engine with neither: fuel {:+.0}%, epoch {:+.0}%, both {:+.0}% ({} per batch)",
        pct(full[2].median()),
        pct(full[3].median()),
        pct(full[1].median()),
        signed_dur(full[1].median(), full[4].median())
    );
    println!(
        "  host wrapper: {} per batch (MapperPlugin::map − bare engine with epoch only)",
        signed_dur(full[0].median(), full[3].median()),
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
        Ok(w) => w
            .into_iter()
            .flat_map(|o| match o {
                MapOutcome::Mapped(records) => records,
                MapOutcome::Failed(e) => abort(&format!("the Wasm mapper failed a record: {e}")),
            })
            .collect::<Vec<_>>(),
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
    let mean = |total: usize| total / host.len().max(1);
    println!(
        "\nverified: Wasm and native map all {} records to identical output (stream, id, operation, payload, cursor); \
         payloads average {} B in, {} B out",
        host.len(),
        mean(host.iter().map(|r| r.payload.len()).sum()),
        mean(native.iter().map(|r| r.payload.len()).sum())
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
        credentials: Default::default(),
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

    async fn map(&self, config: &str, batch: &[HostRecord]) -> Vec<MapOutcome> {
        let limits = Limits::default();
        let state = RawState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: StoreLimiter::new(&limits, nexo::InstanceCaps::default()),
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
        // The same edge conversions the engine makes (contract 1.1): the
        // batch as owned records, the answer moved.
        let batch = convert::owned_records(batch);
        convert::map_outcomes(
            bindings
                .nexo_connector_mapping()
                .call_map(&mut store, config, &batch)
                .await
                .expect("no trap")
                .expect("guest maps"),
        )
    }
}

// ---------------------------------------------------------------------------
// Timing and printing (the shared part is in `nexo_tests::benchkit`).

/// Runs `variants` round-robin, one run of each per round, so that
/// background load (this is a shared 2-core machine) and cache state hit
/// every variant alike; `warmup` rounds first, then timed rounds until
/// `min` rounds and `budget` have passed, or `max` rounds.
async fn interleave(
    variants: usize,
    warmup: usize,
    min: usize,
    max: usize,
    budget: Duration,
    mut f: impl AsyncFnMut(usize),
) -> Vec<Samples> {
    for _ in 0..warmup {
        for i in 0..variants {
            f(i).await;
        }
    }
    let mut out: Vec<Vec<Duration>> = (0..variants)
        .map(|_| Vec::with_capacity(max.min(100_000)))
        .collect();
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < max && (rounds < min || start.elapsed() < budget) {
        for (i, samples) in out.iter_mut().enumerate() {
            let t = Instant::now();
            f(i).await;
            samples.push(t.elapsed());
        }
        rounds += 1;
    }
    out.into_iter().map(Samples::sorted).collect()
}

/// Warm-up runs, then timed runs until `min` runs and `budget` have
/// passed, or `max` runs.
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
        11..=100 => (50, 5_000),
        101..=1_000 => (10, 1_000),
        _ => (2, 100),
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
        load_average()
    );
    println!(
        "limits:  Limits::default() — epoch deadline checked every {} ms tick, {} MiB memory; fuel off (RuntimeConfig::consume_fuel)",
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

/// `a − b`, signed.
fn signed_dur(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", dur(a - b))
    } else {
        format!("−{}", dur(b - a))
    }
}

//! End-to-end sync throughput: N contacts in a TinyCRM on 127.0.0.1, read
//! by the Wasm connector, mapped by a Wasm mapper, written in bulk to a
//! second TinyCRM by the same connector, every page committed to SQLite
//! with its identity links and per-record results. The `nexo` binary runs
//! the pipeline in its own process, so its peak RSS is the host's alone.
//!
//! Run: `cargo bench -p nexo --bench sync` (optionally `-- 10000 100000`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;
use serde_json::{Value, json};

/// `NEXO_BENCH_WRAP` (e.g. `perf record -g -o nexo.perf --`) runs the
/// binary under a profiler.
fn nexo(kit: &Kit, args: &[&str]) -> Vec<u8> {
    let wrap: Vec<String> = std::env::var("NEXO_BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut cmd = match wrap.split_first() {
        Some((tool, rest)) => {
            let mut c = Command::new(tool);
            c.args(rest).arg(env!("CARGO_BIN_EXE_nexo"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_nexo")),
    };
    let out = cmd
        .arg("--data-dir")
        .arg(kit.dir.path())
        .args(args)
        .env(
            "NEXO_LOG",
            std::env::var("NEXO_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("NEXO_SECRET_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With NEXO_BENCH_LOG=info the run's own breakdown (read/map/write/
    // commit) is shown.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn run(kit: &Kit, name: &str) -> Value {
    serde_json::from_slice(&nexo(kit, &["pipeline", "run", name, "--json"])).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!("records   first run        records/s   peak RSS    no-change run   records/s");
    for n in sizes {
        let kit = Kit::with_config(
            tinycrm::seed(n),
            Default::default(),
            json!({"page_size": 5000, "bulk": true, "timeout_ms": 60000}),
        )
        .await;
        // Applied through the binary, as an admin would: that also compiles
        // the plugins into the data directory's cache (install precompiles
        // into the installing runtime's cache, here the test kit's).
        let file = kit.dir.path().join("bench.toml");
        std::fs::write(
            &file,
            pipeline(
                "bench",
                "batch_size = 1000",
                "[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = { set = { lifecycle_stage = \"customer\" } }",
            ),
        )
        .unwrap();
        nexo(&kit, &["pipeline", "apply", file.to_str().unwrap()]);
        let first = run(&kit, "bench");
        assert_eq!(first["counts"]["created"], n as u64, "{first}");
        assert_eq!(kit.b.contacts().len(), n);
        // Force a full re-read: every record is read, mapped and found
        // unchanged (the identity map's hash check).
        nexo(&kit, &["pipeline", "reset", "bench"]);
        let second = run(&kit, "bench");
        assert_eq!(second["counts"]["unchanged"], n as u64, "{second}");
        let rate = |v: &Value| n as f64 / (v["ms"].as_f64().unwrap() / 1000.0);
        println!(
            "{n:>7}   {:>8.2} s   {:>12.0}   {:>6} MiB   {:>8.2} s   {:>12.0}",
            first["ms"].as_f64().unwrap() / 1000.0,
            rate(&first),
            first["peak_rss_kb"].as_u64().unwrap_or(0) / 1024,
            second["ms"].as_f64().unwrap() / 1000.0,
            rate(&second),
        );
    }
}

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

/// `NEXO_BENCH_WRAP` (e.g. `perf record -g -o nexo-{}.perf --`) runs each
/// `pipeline run` under a profiler; `{}` becomes the run's number.
fn nexo(kit: &Kit, args: &[&str]) -> Vec<u8> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let wrap: Vec<String> = match std::env::var("NEXO_BENCH_WRAP") {
        Ok(w) if args.starts_with(&["pipeline", "run"]) => {
            let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            w.split_whitespace()
                .map(|part| part.replace("{}", &n.to_string()))
                .collect()
        }
        _ => Vec::new(),
    };
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

fn run(kit: &Kit, name: &str) -> (Value, Cpu) {
    let before = Cpu::now();
    let out = serde_json::from_slice(&nexo(kit, &["pipeline", "run", name, "--json"])).unwrap();
    (out, Cpu::now().since(before))
}

/// CPU seconds (user + system) of this process (the two TinyCRM servers)
/// and of its waited-for children (the `nexo` run), from `/proc/self/stat`.
#[derive(Clone, Copy)]
struct Cpu {
    servers: f64,
    nexo: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the parenthesised command name; utime is field 14.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let tick = 100.0; // USER_HZ on Linux
        let at = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / tick;
        Cpu {
            servers: at(14) + at(15),
            nexo: at(16) + at(17),
        }
    }
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            servers: self.servers - before.servers,
            nexo: self.nexo - before.nexo,
        }
    }
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
    println!(
        "records   first run        records/s   peak RSS    no-change run   records/s   CPU s first (nexo/servers)   CPU s no-change"
    );
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
        let (first, cpu1) = run(&kit, "bench");
        assert_eq!(first["counts"]["created"], n as u64, "{first}");
        assert_eq!(kit.b.contacts().len(), n);
        // Force a full re-read: every record is read, mapped and found
        // unchanged (the identity map's hash check).
        nexo(&kit, &["pipeline", "reset", "bench"]);
        let (second, cpu2) = run(&kit, "bench");
        assert_eq!(second["counts"]["unchanged"], n as u64, "{second}");
        let rate = |v: &Value| n as f64 / (v["ms"].as_f64().unwrap() / 1000.0);
        println!(
            "{n:>7}   {:>8.2} s   {:>12.0}   {:>6} MiB   {:>8.2} s   {:>12.0}   {:>9.2} / {:<9.2}            {:>6.2} / {:<6.2}",
            first["ms"].as_f64().unwrap() / 1000.0,
            rate(&first),
            first["peak_rss_kb"].as_u64().unwrap_or(0) / 1024,
            second["ms"].as_f64().unwrap() / 1000.0,
            rate(&second),
            cpu1.nexo,
            cpu1.servers,
            cpu2.nexo,
            cpu2.servers,
        );
    }
}

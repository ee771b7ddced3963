//! One plugin, one memory budget: a component whose core instances each
//! bring their own linear memory shares one cap, and the process's
//! resident memory grows by no more than that cap plus a small fixed
//! overhead. Alone in its test binary, so no other test moves the peak.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use nexo::limits::Limit;
use nexo::{Limits, MapperPlugin, PluginRef, Runtime, RuntimeConfig, Sandbox};
use nexo_tests::shapes;

/// Peak resident set of this process, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Start the peak over from the current resident set.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_memories_share_one_cap_and_rss_stays_within_it() {
    // Before the per-plugin count, each memory was checked alone: three
    // 60 MiB memories passed a 64 MiB limit and 180 MiB became resident.
    const LIMIT: u64 = 64 << 20;
    const OVERHEAD: u64 = 16 << 20;
    let component = shapes::mapper_with_memories(3, 960).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/nexo-test-cache"),
        ),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = runtime.load(&component, "memory-hog").unwrap();
    let mapper = MapperPlugin::open(
        &plugin,
        Sandbox {
            plugin: PluginRef {
                id: "test/memory-hog".into(),
                version: "1.0.0".into(),
            },
            limits: Limits {
                memory_bytes: LIMIT,
                ..Limits::default()
            },
            grants: Default::default(),
            secrets: Default::default(),
            credentials: Default::default(),
            kv: None,
        },
    )
    .unwrap();

    reset_peak_rss();
    let before = peak_rss();
    let outcome = mapper.map("{}", &[]).await;
    let grown = peak_rss().saturating_sub(before);
    println!(
        "peak RSS grew by {} MiB (limit {} MiB)",
        grown >> 20,
        LIMIT >> 20
    );
    let err = outcome.result.expect_err("the hog must be stopped");
    assert_eq!(err.limit(), Some(Limit::Memory(LIMIT)), "{err}");
    assert!(
        err.to_string().contains("exceeded its 64 MiB memory limit"),
        "{err}"
    );
    assert!(
        grown <= LIMIT + OVERHEAD,
        "peak RSS grew by {} MiB, over the {} MiB limit plus {} MiB",
        grown >> 20,
        LIMIT >> 20,
        OVERHEAD >> 20
    );
}

//! Nexo's test kit: paths of the guest programs built by `build.rs`, a shared
//! runtime, and real HTTP servers on 127.0.0.1 for plugins to talk to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alerts;
pub mod benchkit;
pub mod browser;
pub mod cli;
pub mod connkit;
pub mod daemon;
pub mod echo;
pub mod going_live;
pub mod greedy;
pub mod hledger;
pub mod hostile;
pub mod loopback;
pub mod oauth;
pub mod shapes;
pub mod synckit;
pub mod tinycrm;
pub mod tryton;

use std::path::PathBuf;
use std::sync::OnceLock;

use nexo::{LoadedPlugin, Runtime, RuntimeConfig};

/// Paths of the guest components.
pub mod programs {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// The compile cache every test shares (the runtimes here and the `nexo`
/// processes the tests start, through `NEXO_CACHE_DIR`): each component is
/// compiled once per engine build, not once per test.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/nexo-test-cache")
}

/// The one runtime of a test process (one engine, as in production), with
/// its compile cache under the target directory so each component is
/// compiled once per engine build.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir()),
            ..RuntimeConfig::default()
        })
        .expect("runtime starts")
    })
}

/// A second runtime that counts fuel, for the CPU-budget cases (fuel is an
/// engine-wide setting, off by default for throughput).
pub fn runtime_with_fuel() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir()),
            max_instances: 8,
            consume_fuel: true,
            ..RuntimeConfig::default()
        })
        .expect("runtime starts")
    })
}

/// Load a guest program through the shared runtime.
pub fn load(path: &str) -> LoadedPlugin {
    runtime()
        .load_file(std::path::Path::new(path))
        .expect("guest program loads")
}

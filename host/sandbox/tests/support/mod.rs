//! What the demo's tests share: the `nexo` binary built beside this
//! crate's, and the demo's plugins signed and packed as a vendor would.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;

use nexo_tests::cli::ok;
use nexo_tests::programs;

/// The product binary, built beside this crate's by `cargo test --workspace`
/// (cargo gives a test the path of its own package's binaries only).
pub fn nexo(dir: &Path) -> Command {
    let demo = Path::new(env!("CARGO_BIN_EXE_nexo-sandbox"));
    let bin = demo.with_file_name(format!("nexo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build -p nexo --bin nexo` (or `cargo test --workspace`)",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.arg("--data-dir")
        .arg(dir)
        .env("NEXO_CACHE_DIR", nexo_tests::cache_dir())
        .env_remove("NEXO_SECRET_KEY");
    c
}

/// `nexo-sandbox` on data directory `dir`, with no sealing key from the
/// environment.
pub fn nexo_sandbox(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nexo-sandbox"));
    c.arg("--data-dir").arg(dir).env_remove("NEXO_SECRET_KEY");
    c
}

/// The demo on `data` with the plugins in `bundles`, serving its console
/// and both sandboxes on free ports, `extra` options before them.
pub fn serving_demo(data: &Path, bundles: &Path, extra: &[&str]) -> Command {
    let mut c = nexo_sandbox(data);
    c.arg("demo")
        .arg("--bundles")
        .arg(bundles)
        .args(extra)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--hubspot-port",
            "0",
            "--xero-port",
            "0",
        ]);
    c
}

/// The lines `child` prints on its (piped) standard output, as they come.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("a piped standard output");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sign and pack the five plugins the demo installs into `bundles`, with
/// the vendor's public key beside them.
pub fn pack_bundles(work: &Path, bundles: &Path) {
    std::fs::create_dir_all(bundles).unwrap();
    let key = work.join("vendor.key");
    ok(nexo(&work.join("vendor"))
        .args([
            "plugin",
            "keygen",
            "--name",
            "Nexo reference plugins",
            "--out",
        ])
        .arg(&key)
        .output()
        .unwrap());
    std::fs::copy(work.join("vendor.key.pub"), bundles.join("vendor.pub")).unwrap();
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    for (name, wasm) in [
        ("hubspot", programs::HUBSPOT),
        ("xero", programs::XERO),
        ("deal-to-invoice", programs::DEAL_TO_INVOICE),
        ("field-mapper", programs::FIELD_MAPPER),
        ("tryton", programs::TRYTON),
    ] {
        ok(nexo(&work.join("vendor"))
            .args(["plugin", "pack", "--manifest"])
            .arg(plugins.join(name).join("nexo-plugin.toml"))
            .arg("--component")
            .arg(wasm)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(bundles.join(format!("{name}.nexo")))
            .output()
            .unwrap());
    }
}

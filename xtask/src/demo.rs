//! `cargo xtask demo`: build the reference plugins for wasm32-wasip2, sign
//! and pack them as a vendor would, then hand them to `nexo-sandbox demo`, which
//! does the rest (sandbox services, install, connections, pipelines, runs,
//! console).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, ensure_wasm_target, root, run};

/// Plugins the demo installs: package name, and the folder under `plugins/`.
const PLUGINS: [&str; 5] = [
    "hubspot",
    "xero",
    "deal-to-invoice",
    "field-mapper",
    "tryton",
];

/// Build, pack, and run `nexo-sandbox demo` with `args` passed through.
pub fn demo(args: &[String]) -> Result<()> {
    ensure_wasm_target()?;
    let target = root().join("target");
    let guests = target.join("guests");
    println!(
        "==> building the plugins for wasm32-wasip2: {}",
        PLUGINS.join(", ")
    );
    let mut build = cargo();
    build.args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"]);
    for p in PLUGINS {
        build.args(["-p", p]);
    }
    run(
        build.arg("--target-dir").arg(&guests),
        "building the plugins",
    )?;
    println!("==> building nexo and nexo-sandbox");
    run(
        cargo().args([
            "build",
            "-p",
            "nexo",
            "--bin",
            "nexo",
            "-p",
            "nexo-sandbox",
            "--bin",
            "nexo-sandbox",
        ]),
        "building nexo and nexo-sandbox",
    )?;
    let nexo = target.join("debug").join("nexo");
    let nexo_sandbox = target.join("debug").join("nexo-sandbox");
    let wasm = guests.join("wasm32-wasip2").join("plugin");

    // A fresh demo each time: new data, newly signed bundles.
    let demo = target.join("demo");
    if demo.exists() {
        std::fs::remove_dir_all(&demo)
            .with_context(|| format!("cannot clear {}", demo.display()))?;
    }
    let bundles = demo.join("bundles");
    std::fs::create_dir_all(&bundles)?;
    let key = demo.join("vendor.key");
    println!(
        "==> signing the plugins as their vendor would (key {})",
        key.display()
    );
    nexo_cmd(&nexo, &demo, |c| {
        c.args([
            "plugin",
            "keygen",
            "--name",
            "Nexo reference plugins",
            "--out",
        ])
        .arg(&key)
    })?;
    std::fs::copy(demo.join("vendor.key.pub"), bundles.join("vendor.pub"))
        .context("copying the vendor's public key")?;
    for p in PLUGINS {
        let component = wasm.join(format!("{}.wasm", p.replace('-', "_")));
        let out = bundles.join(format!("{p}.nexo"));
        nexo_cmd(&nexo, &demo, |c| {
            c.args(["plugin", "pack", "--manifest"])
                .arg(root().join("plugins").join(p).join("nexo-plugin.toml"))
                .arg("--component")
                .arg(&component)
                .arg("--key")
                .arg(&key)
                .arg("--out")
                .arg(&out)
        })?;
    }
    println!("==> nexo-sandbox demo --bundles {}", bundles.display());
    let status = Command::new(&nexo_sandbox)
        .arg("--data-dir")
        .arg(demo.join("data"))
        .arg("demo")
        .arg("--bundles")
        .arg(&bundles)
        .args(args)
        .status()
        .context("cannot run nexo-sandbox")?;
    if !status.success() {
        bail!("nexo-sandbox demo ended with {status}");
    }
    Ok(())
}

/// Run `nexo` with a data directory under `demo`; fail on a non-zero exit.
fn nexo_cmd(
    nexo: &Path,
    demo: &Path,
    args: impl FnOnce(&mut Command) -> &mut Command,
) -> Result<()> {
    let mut c = Command::new(nexo);
    c.arg("--data-dir").arg(demo.join("pack"));
    args(&mut c);
    run(&mut c, "nexo")
}

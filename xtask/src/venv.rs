//! A Python virtualenv holding exact pins from PyPI, made and filled only
//! when a pin is missing: the Tryton ERP of the tests and the demo, and
//! componentize-py for the Python plugins.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `name==version` as pip freeze prints it: lower case, `_` for `-`.
fn normalise(pin: &str) -> String {
    pin.trim().to_ascii_lowercase().replace('-', "_")
}

/// The pins the virtualenv at `home` already satisfies, normalised.
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

/// Make the virtualenv `home` (for `what`, e.g. "Tryton") and install
/// `pins` into it; nothing when every pin is installed already.
pub fn ensure(what: &str, home: &Path, pins: &[&str]) -> Result<()> {
    let have = installed(home);
    let missing: Vec<&str> = pins
        .iter()
        .copied()
        .filter(|r| !have.contains(&normalise(r)))
        .collect();
    if missing.is_empty() {
        println!(
            "{what}: {} has {} (all pinned)",
            home.display(),
            pins.join(" ")
        );
        return Ok(());
    }
    if !home.join("bin").join("pip").is_file() {
        println!("==> creating the {what} virtualenv {}", home.display());
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .with_context(|| {
                format!("{what} needs Python 3.9 or later (python3) with the venv module")
            })?;
        let status = Command::new(python)
            .args(["-m", "venv"])
            .arg(home)
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
        .args(pins)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install of the {what} packages failed ({status})");
    }
    Ok(())
}

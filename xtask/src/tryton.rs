//! Installs Tryton ERP from PyPI for the Tryton connector's tests and
//! demos: a virtualenv at `target/tryton` (where `nexo_sandbox::tryton`
//! looks for it) with pinned versions of trytond and its modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Exact versions installed; `pip` resolves nothing else from the index
/// except these packages' own dependencies. The modules of one Tryton
/// series (8.2) go together.
pub const REQUIREMENTS: &[&str] = &[
    "trytond==8.2.1",
    "trytond_party==8.2.0",
    "trytond_company==8.2.0",
    "trytond_currency==8.2.0",
    "trytond_country==8.2.0",
    "trytond_product==8.2.0",
    "trytond_account==8.2.1",
    "trytond_account_product==8.2.0",
    "trytond_account_invoice==8.2.0",
    "trytond_account_invoice_stock==8.2.0",
    "trytond_stock==8.2.1",
    "trytond_sale==8.2.0",
    "proteus==8.2.0",
];

/// The virtualenv: `$NEXO_TRYTON_HOME`, else `target/tryton` of the workspace.
fn home() -> PathBuf {
    match std::env::var_os("NEXO_TRYTON_HOME") {
        Some(h) => PathBuf::from(h),
        None => crate::root().join("target").join("tryton"),
    }
}

/// The `name==version` pins the virtualenv already satisfies.
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
                .map(|l| l.trim().to_ascii_lowercase().replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Creates the virtualenv and installs [`REQUIREMENTS`]; does nothing when
/// every pin is installed already.
pub fn setup() -> Result<()> {
    let home = home();
    let have = installed(&home);
    let missing: Vec<&str> = REQUIREMENTS
        .iter()
        .copied()
        .filter(|r| !have.contains(&r.to_ascii_lowercase().replace('-', "_")))
        .collect();
    if missing.is_empty() {
        println!(
            "tryton: {} has {} (all pinned)",
            home.display(),
            REQUIREMENTS.join(" ")
        );
        return Ok(());
    }
    if !home.join("bin").join("pip").is_file() {
        println!("==> creating the Tryton virtualenv {}", home.display());
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .context("Tryton needs Python 3.9 or later (python3) with the venv module")?;
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
        bail!("pip install of the Tryton packages failed ({status})");
    }
    Ok(())
}

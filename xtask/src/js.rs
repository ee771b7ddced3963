//! Installs the pinned JavaScript toolchain that builds JS plugins
//! (`node sdk/js/build.mjs`, run by `tests/build.rs`): `npm ci` of the
//! committed `sdk/js/toolchain/package.json` and `package-lock.json` into
//! `target/js` (or `$NEXO_JS_HOME`). componentize-qjs 0.4.5 (QuickJS) is the
//! only package: the SDK's TypeScript declarations of the WIT are written by
//! hand and checked against it by the SDK's tests, so jco (and its 340 MB)
//! is not needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The toolchain's home: `$NEXO_JS_HOME`, else `target/js` of the workspace.
fn home() -> PathBuf {
    match std::env::var_os("NEXO_JS_HOME") {
        Some(h) => PathBuf::from(h),
        None => crate::root().join("target").join("js"),
    }
}

/// The committed manifest and lock file.
fn toolchain_dir() -> PathBuf {
    crate::root().join("sdk").join("js").join("toolchain")
}

/// Whether every package of the lock file is installed at its locked
/// version: npm's own record of the last install (`node_modules/.package-lock.json`)
/// lists the same packages and versions.
fn up_to_date(home: &Path, lock: &serde_json::Value) -> bool {
    let Ok(text) = std::fs::read_to_string(home.join("node_modules").join(".package-lock.json"))
    else {
        return false;
    };
    let Ok(installed) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let Some(wanted) = lock["packages"].as_object() else {
        return false;
    };
    let have = &installed["packages"];
    wanted
        .iter()
        .filter(|(path, p)| !path.is_empty() && !p["optional"].as_bool().unwrap_or(false))
        .all(|(path, p)| have[path.as_str()]["version"] == p["version"])
        && home
            .join("node_modules")
            .join(".bin")
            .join("componentize-qjs")
            .exists()
}

/// Copies the manifest and lock into the home and runs `npm ci`; does
/// nothing when the locked packages are installed already.
pub fn setup() -> Result<()> {
    let home = home();
    let src = toolchain_dir();
    let lock_text = std::fs::read_to_string(src.join("package-lock.json"))
        .with_context(|| format!("reading {}", src.join("package-lock.json").display()))?;
    let lock: serde_json::Value = serde_json::from_str(&lock_text)
        .context("sdk/js/toolchain/package-lock.json is not JSON")?;
    let same_lock = std::fs::read_to_string(home.join("package-lock.json"))
        .is_ok_and(|installed| installed == lock_text);
    if same_lock && up_to_date(&home, &lock) {
        println!("js: {} has componentize-qjs (as locked)", home.display());
        return Ok(());
    }
    let npm_works = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_works {
        bail!(
            "the JavaScript plugins need Node.js 20 or later with npm (to install componentize-qjs); \
             on Debian: apt-get install nodejs npm"
        );
    }
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(src.join(file), home.join(file))
            .with_context(|| format!("copying {file} into {}", home.display()))?;
    }
    println!(
        "==> installing the JS toolchain (componentize-qjs) into {}",
        home.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&home)
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!(
            "`npm ci` in {} failed ({status}); it needs the npm registry (or a mirror set in ~/.npmrc)",
            home.display()
        );
    }
    Ok(())
}

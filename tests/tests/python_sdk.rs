//! The Python SDK's and the Python plugins' own unit tests (`unittest`,
//! pure Python: no component, no bindings), run with the toolchain's
//! interpreter (`target/py/bin/python`, from `cargo xtask setup`) so that
//! they run in the project's test command; and the SDK build tool's
//! refusals, which must say what is missing and how to fix it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> PathBuf {
    std::env::var_os("NEXO_PY_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("py"))
        .join("bin")
        .join("python")
}

/// `python -m ARGS` in `dir`, with the SDK importable and no bytecode
/// written into the source tree.
fn run(dir: &Path, args: &[&str]) -> Output {
    let python = python();
    assert!(
        python.is_file(),
        "{} is missing; run `cargo xtask setup`",
        python.display()
    );
    Command::new(python)
        .current_dir(dir)
        .env("PYTHONPATH", root().join("sdk/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-m")
        .args(args)
        .output()
        .unwrap()
}

/// Runs the `unittest` suite under `dir/tests`; returns how many ran.
fn unit_tests(dir: &str) -> usize {
    let out = run(
        &root().join(dir),
        &["unittest", "discover", "-s", "tests", "-t", "."],
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{dir}: unit tests failed:\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{dir}: no test count in:\n{text}"))
}

#[test]
fn sdk_unit_tests_pass() {
    assert!(unit_tests("sdk/python") >= 30);
}

#[test]
fn contact_cleaner_unit_tests_pass() {
    assert!(unit_tests("plugins/py-contact-cleaner") >= 9);
}

#[test]
fn hledger_connector_unit_tests_pass() {
    assert!(unit_tests("plugins/py-hledger") >= 4);
}

#[test]
fn the_build_tool_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out_wasm = dir.path().join("x.wasm");
    let build = |plugin: &Path| {
        let out = run(
            &root(),
            &[
                "nexo_sdk.build",
                plugin.to_str().unwrap(),
                "-o",
                out_wasm.to_str().unwrap(),
            ],
        );
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = build(dir.path());
    assert!(
        err.contains("nexo-plugin.toml is missing") && err.contains("id, version and kind"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("nexo-plugin.toml"),
        "id = \"x/y\"\nversion = \"0.1.0\"\nkind = \"exporter\"\n",
    )
    .unwrap();
    let err = build(dir.path());
    assert!(
        err.contains("it must be \"connector\" or \"mapper\""),
        "{err}"
    );
    std::fs::write(
        dir.path().join("nexo-plugin.toml"),
        "id = \"x/y\"\nversion = \"0.1.0\"\nkind = \"mapper\"\n",
    )
    .unwrap();
    let err = build(dir.path());
    assert!(err.contains("app.py is missing"), "{err}");
    std::fs::write(dir.path().join("app.py"), "Mapping = None\n").unwrap();
    let err = build(dir.path());
    assert!(err.contains("componentize-py failed"), "{err}");
    assert!(!out_wasm.exists(), "no half-built component is left");
}

//! Builds the Python components (plugins and hostile programs written with
//! `sdk/python`) with the SDK's build tool, `python -m nexo_sdk.build`, into
//! `target/guests/python/NAME.wasm`, and returns their path constants for
//! `programs.rs`.
//!
//! A Python build takes 10–15 s and is not reproducible byte for byte, so a
//! component is rebuilt only when a hash of its inputs (the SDK, its folder,
//! the contract) changed: the hash is kept beside it in `NAME.inputs`.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// (folder under the workspace, constant name). Every one must have a test.
const PY_GUESTS: &[(&str, &str)] = &[
    ("plugins/py-contact-cleaner", "PY_CONTACT_CLEANER"),
    ("plugins/py-hledger", "PY_HLEDGER"),
    ("tests/programs/py-hostile", "PY_HOSTILE"),
];

/// The contract the Python SDK targets.
const WIT_DIR: &str = "wit/1.1.0";

/// Builds what changed and returns the `pub const` lines; exits the build
/// with a message saying what to run when the toolchain is missing.
pub fn build(root: &Path, guest_dir: &Path) -> String {
    for input in ["sdk/python", WIT_DIR] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=NEXO_PY_HOME");
    let home = env::var_os("NEXO_PY_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("py"));
    let python = home.join("bin").join("python");
    if !python.is_file() || !home.join("bin").join("componentize-py").is_file() {
        super::fail(&format!(
            "the Python plugin toolchain is missing ({} with componentize-py); run `cargo xtask setup`",
            python.display()
        ));
    }
    let out_dir = guest_dir.join("python");
    if let Err(e) = fs::create_dir_all(&out_dir) {
        super::fail(&format!("cannot create {}: {e}", out_dir.display()));
    }
    let mut code = String::new();
    for (folder, constant) in PY_GUESTS {
        let dir = root.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let name = folder.rsplit('/').next().unwrap_or(folder);
        let wasm = out_dir.join(format!("{name}.wasm"));
        let stamp = out_dir.join(format!("{name}.inputs"));
        let inputs = format!(
            "{:016x}",
            inputs_hash(&[&root.join("sdk/python"), &dir, &root.join(WIT_DIR)])
        );
        let fresh = wasm.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s == inputs);
        if !fresh {
            let status = Command::new(&python)
                .current_dir(root)
                .env("PYTHONPATH", root.join("sdk/python"))
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .args(["-m", "nexo_sdk.build"])
                .arg(&dir)
                .arg("-o")
                .arg(&wasm)
                .arg("--wit")
                .arg(root.join(WIT_DIR))
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => super::fail(&format!(
                    "building the Python component {folder} failed ({s}; see above)"
                )),
                Err(e) => super::fail(&format!("could not run {}: {e}", python.display())),
            }
            if let Err(e) = fs::write(&stamp, &inputs) {
                super::fail(&format!("cannot write {}: {e}", stamp.display()));
            }
        }
        code.push_str(&format!(
            "/// Path of the `{folder}` Python component.\npub const {constant}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }
    code
}

/// A hash of every file's path and contents under `dirs`, in a fixed
/// order, leaving out bytecode caches.
fn inputs_hash(dirs: &[&Path]) -> u64 {
    let mut files = Vec::new();
    for dir in dirs {
        collect(dir, &mut files);
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

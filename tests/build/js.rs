//! The JavaScript half of the guest build (included by `tests/build.rs`):
//! builds every JS plugin with `node sdk/js/build.mjs` (componentize-qjs
//! from `target/js`, installed by `cargo xtask setup`) into
//! `target/guests/js/NAME.wasm`, and gives `programs.rs` their constants.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (plugin folder, output name, constant). Every one must have a test.
const JS_GUESTS: &[(&str, &str, &str)] = &[
    ("plugins/js-hubspot", "js-hubspot", "JS_HUBSPOT"),
    ("tests/programs/js-hostile", "js-hostile", "JS_HOSTILE"),
    ("tests/programs/js-mapper", "js-mapper", "JS_MAPPER"),
];

/// Builds the JS guests; the `programs.rs` lines for them. Exits the build
/// with a message saying what to install when the toolchain is missing.
pub fn build(root: &Path, guests_dir: &Path) -> String {
    for dir in [
        "sdk/js/src",
        "sdk/js/build.mjs",
        "sdk/js/package.json",
        "sdk/js/toolchain/package-lock.json",
        "wit/1.1.0",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=NEXO_JS_HOME");
    let home = std::env::var_os("NEXO_JS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("js"));
    let tool = home
        .join("node_modules")
        .join(".bin")
        .join("componentize-qjs");
    if !tool.exists() {
        super::fail(&format!(
            "the JavaScript toolchain is missing ({} does not exist): run `cargo xtask setup` \
             (it installs componentize-qjs from npm into target/js, or $NEXO_JS_HOME)",
            tool.display()
        ));
    }
    let out_dir = guests_dir.join("js");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        super::fail(&format!("cannot create {}: {e}", out_dir.display()));
    }
    let mut code = String::new();
    for (dir, name, constant) in JS_GUESTS {
        let plugin = root.join(dir);
        println!("cargo:rerun-if-changed={}", plugin.display());
        let out = out_dir.join(format!("{name}.wasm"));
        let status = Command::new("node")
            .arg(root.join("sdk/js/build.mjs"))
            .arg(&plugin)
            .arg("-o")
            .arg(&out)
            .env("NEXO_JS_HOME", &home)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => super::fail(&format!(
                "building the JS plugin {dir} failed ({s}; the build tool said why above)"
            )),
            Err(e) => super::fail(&format!(
                "cannot run node to build the JS plugin {dir}: {e}; install Node.js 20 or later"
            )),
        }
        code.push_str(&format!(
            "/// Path of the `{name}` component (JavaScript, built from `{dir}`).\npub const {constant}: &str = {:?};\n",
            out.display().to_string()
        ));
    }
    code
}

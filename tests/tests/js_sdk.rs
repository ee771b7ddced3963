//! The JavaScript SDK (`sdk/js`): its unit tests (`node --test`, the host's
//! imports replaced by fakes) pass, and `tests/build.rs` built the JS
//! plugins into components of the right world that embed the `nexo-sdk`
//! section (`sdk=js-…;wit=1.1.0;plugin=ID;version=V`) with their
//! manifest's id and version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use nexo::inspect::{ComponentInfo, WorldKind};
use nexo_tests::programs;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/js")
}

#[test]
fn the_sdk_unit_tests_pass_under_node() {
    let out = Command::new("node")
        .args(["--import", "./test/register.mjs", "--test", "test/"])
        .current_dir(sdk_dir())
        .output()
        .expect("node runs (install Node.js 20 or later)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node --test failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The runner found the tests (a glob that matched nothing also exits 0).
    let passed = report
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(passed >= 30, "only {passed} SDK tests ran:\n{report}");
}

#[test]
fn the_js_plugins_are_components_that_name_their_sdk_and_plugin() {
    let sdk_version = {
        let text = std::fs::read_to_string(sdk_dir().join("package.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["version"].as_str().unwrap().to_string()
    };
    for (path, id, version) in [
        (programs::JS_HUBSPOT, "nexo/js-hubspot", "0.1.0"),
        (programs::JS_HOSTILE, "test/js-hostile", "6.6.6"),
    ] {
        let bytes = std::fs::read(path).unwrap();
        let info = ComponentInfo::parse(&bytes, path).unwrap();
        assert_eq!(info.world, WorldKind::Connector, "{path}");
        assert_eq!(info.wit_version(), Some("1.1.0"), "{path}");
        assert_eq!(
            info.embedded("sdk"),
            Some(format!("js-{sdk_version}").as_str())
        );
        assert_eq!(info.embedded("wit"), Some("1.1.0"));
        assert_eq!(info.embedded("plugin"), Some(id));
        assert_eq!(info.embedded("version"), Some(version));
        // Plugins reach the network through nexo:connector/http only.
        assert!(
            !info.imports.iter().any(|i| i.starts_with("wasi:http")),
            "{path} imports {:?}",
            info.imports
        );
    }
}

#[test]
fn a_js_mapper_imports_nothing_of_the_connector_world() {
    let bytes = std::fs::read(programs::JS_MAPPER).unwrap();
    let info = ComponentInfo::parse(&bytes, programs::JS_MAPPER).unwrap();
    assert_eq!(info.world, WorldKind::Mapper);
    assert_eq!(info.embedded("plugin"), Some("test/js-mapper"));
    let nexo: Vec<&String> = info
        .imports
        .iter()
        .filter(|i| i.starts_with("nexo:connector/"))
        .collect();
    assert_eq!(
        nexo,
        ["nexo:connector/log@1.1.0", "nexo:connector/types@1.1.0"],
        "{:?}",
        info.imports
    );
}

#[test]
fn the_build_tool_says_what_is_missing_and_how_to_fix_it() {
    let out_dir = tempfile::tempdir().unwrap();
    let build = |plugin: &str, js_home: &str| {
        let out = Command::new("node")
            .arg(sdk_dir().join("build.mjs"))
            .arg(plugin)
            .arg("-o")
            .arg(out_dir.path().join("x.wasm"))
            .env("NEXO_JS_HOME", js_home)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugin = root.join("plugins/js-hubspot");
    let missing = build(plugin.to_str().unwrap(), "/nonexistent/js-toolchain");
    assert!(
        missing.contains("componentize-qjs is not installed")
            && missing.contains("npm install --save-dev componentize-qjs@0.4.5")
            && missing.contains("`cargo xtask setup`"),
        "{missing}"
    );
    let toolchain = root.join("target/js");
    let no_manifest = build(
        out_dir.path().to_str().unwrap(),
        toolchain.to_str().unwrap(),
    );
    assert!(
        no_manifest.contains("nexo-plugin.toml is missing"),
        "{no_manifest}"
    );
}

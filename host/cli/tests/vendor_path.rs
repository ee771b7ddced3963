//! A new vendor's path, in Rust, Python and JavaScript: `nexo new connector
//! acme --lang L` into an empty directory, the SDK packaged as it is
//! published (a `.crate`, a wheel, an npm tarball) and the project built
//! from that package by version — never from a path into this repository —
//! then `nexo plugin keygen`, `pack` (signed), `trust add`, `install`, two
//! connections to two TinyCRMs and a pipeline between them through the
//! installed connector (source and destination), which must deliver every
//! contact once, then an edit and a delete. A mapper per language is
//! written by `nexo new mapper`, built the same way and called with
//! `nexo plugin call … map`.
//!
//! Only `nexo` commands, the generated files (their `scripts/build.sh`) and
//! the language's toolchain run; no generated file is edited. It lives with
//! the CLI's tests because only they can name the `nexo` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nexo_tests::cli::{self, ok};
use nexo_tests::synckit::{contents, pipeline};
use nexo_tests::tinycrm;
use serde_json::{Value, json};

const TOKEN: &str = "vendor-path-token";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nexo(data: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), data, "warn")
        .env("ACME_TOKEN", TOKEN)
        .env("ACME_WRONG_TOKEN", "not-the-token")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `command`, failing the test with its output unless it succeeds.
fn run(what: &str, command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// The SDK of a language as a vendor gets it, packaged from this
/// repository into `dir`, and what a build needs to use it.
enum Sdk {
    /// The `.crate` unpacked, for `--config patch.crates-io.nexo-sdk.path`:
    /// what cargo would fetch from crates.io for `nexo-sdk = "1.1"`.
    Rust { unpacked: PathBuf },
    /// A folder holding the wheel, for `pip install --find-links`.
    Python { wheels: PathBuf },
    /// The SDK's npm tarball, and the build tool's (packed from the
    /// toolchain `cargo xtask setup` installed, for an offline install).
    Js { tarballs: Vec<PathBuf> },
}

fn package_sdk(lang: Lang, dir: &Path) -> Sdk {
    let root = repo();
    match lang {
        Lang::Rust => {
            run(
                "cargo package -p nexo-sdk",
                Command::new("cargo")
                    .current_dir(&root)
                    // Verified: the packaged crate builds on its own (the
                    // contract it binds is inside it).
                    .args(["package", "-p", "nexo-sdk", "--allow-dirty"])
                    .args(["--offline", "--target-dir"])
                    .arg(root.join("target/vendor")),
            );
            let version = nexo_sdk::SDK_VERSION;
            let krate = root.join(format!("target/vendor/package/nexo-sdk-{version}.crate"));
            run(
                "unpacking the .crate",
                Command::new("tar")
                    .arg("xzf")
                    .arg(&krate)
                    .arg("-C")
                    .arg(dir),
            );
            Sdk::Rust {
                unpacked: dir.join(format!("nexo-sdk-{version}")),
            }
        }
        Lang::Python => {
            let wheels = dir.join("wheels");
            run(
                "pip wheel sdk/python",
                Command::new(root.join("target/py/bin/pip"))
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .args(["wheel", "--no-deps", "--no-build-isolation", "--no-index"])
                    .arg("-w")
                    .arg(&wheels)
                    .arg(root.join("sdk/python")),
            );
            Sdk::Python { wheels }
        }
        Lang::Js => {
            let toolchain = root.join("target/js/node_modules");
            let mut packages = vec![root.join("sdk/js"), toolchain.join("componentize-qjs")];
            // The native binding of this platform (the others are optional
            // dependencies npm skips).
            for entry in std::fs::read_dir(toolchain.join("@andreiltd")).unwrap() {
                packages.push(entry.unwrap().path());
            }
            let mut pack = Command::new("npm");
            pack.args(["pack", "--silent", "--pack-destination"])
                .arg(dir);
            pack.args(&packages);
            let names = run("npm pack", &mut pack);
            Sdk::Js {
                tarballs: names.lines().map(|n| dir.join(n.trim())).collect(),
            }
        }
    }
}

/// `nexo new KIND NAME --lang L` into `dir`/NAME, built with its own
/// `scripts/build.sh` against the packaged SDK; the component's path.
fn new_and_build(
    data: &Path,
    sdk: &Sdk,
    lang: Lang,
    kind: &str,
    name: &str,
    dir: &Path,
) -> PathBuf {
    let project = dir.join(name);
    let said = ok(nexo(
        data,
        &[
            "new",
            kind,
            name,
            "--lang",
            lang.name(),
            "--dir",
            s(&project),
        ],
    ));
    assert!(said.contains(&format!("{name}/{name}")), "{said}");
    let mut build = Command::new("sh");
    build.current_dir(&project).arg("scripts/build.sh");
    match sdk {
        Sdk::Rust { unpacked } => {
            let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
            let minor: Vec<&str> = nexo_sdk::SDK_VERSION.split('.').take(2).collect();
            assert!(
                manifest.contains(&format!("nexo-sdk = \"{}\"", minor.join("."))),
                "{manifest}"
            );
            // One target dir for every run: wit-bindgen and serde are built
            // once, not per test.
            build
                .env("CARGO_TARGET_DIR", repo().join("target/vendor"))
                .arg("--offline")
                .arg("--config")
                .arg(format!(
                    "patch.crates-io.nexo-sdk.path={:?}",
                    unpacked.to_str().unwrap()
                ));
        }
        Sdk::Python { wheels } => {
            // The SDK by the version requirements.txt names, from the wheel.
            let deps = project.join(".deps");
            run(
                "pip install -r requirements.txt",
                Command::new(repo().join("target/py/bin/pip"))
                    .current_dir(&project)
                    .args(["install", "--no-index", "--no-deps", "--find-links"])
                    .arg(wheels)
                    .arg("--target")
                    .arg(&deps)
                    .args(["-r", "requirements.txt"]),
            );
            build
                .env("PYTHON", repo().join("target/py/bin/python"))
                .env("PYTHONPATH", &deps)
                .env("PYTHONDONTWRITEBYTECODE", "1");
        }
        Sdk::Js { tarballs } => {
            // `^1.1.0` in package.json, satisfied by the packed SDK.
            let mut install = Command::new("npm");
            install
                .current_dir(&project)
                .args([
                    "install",
                    "--offline",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                ])
                .args(tarballs);
            run("npm install", &mut install);
        }
    }
    run(&format!("scripts/build.sh of {name}"), &mut build);
    if let Sdk::Rust { unpacked } = sdk {
        // The unit tests the generated CI runs first.
        let tested = run(
            &format!("cargo test of {name}"),
            Command::new("cargo")
                .current_dir(&project)
                .env("CARGO_TARGET_DIR", repo().join("target/vendor"))
                .args(["test", "--offline", "--config"])
                .arg(format!(
                    "patch.crates-io.nexo-sdk.path={:?}",
                    unpacked.to_str().unwrap()
                )),
        );
        assert!(tested.contains("test result: ok"), "{tested}");
    }
    let wasm = project.join("build").join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    wasm
}

/// The whole path for one language.
async fn vendor_path(lang: Lang) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let sdk = package_sdk(lang, dir);

    let component = new_and_build(&data, &sdk, lang, "connector", "acme", dir);
    let project = dir.join("acme");
    kit(&project, &component, lang).await;

    let key = dir.join("acme.key");
    ok(nexo(
        &data,
        &["plugin", "keygen", "--name", "Acme Inc", "--out", s(&key)],
    ));
    let bundle = dir.join("acme-0.1.0.nexo");
    let packed = ok(nexo(
        &data,
        &[
            "plugin",
            "pack",
            "--manifest",
            s(&project.join("nexo-plugin.toml")),
            "--component",
            s(&component),
            "--key",
            s(&key),
            "--out",
            s(&bundle),
        ],
    ));
    assert!(
        packed.contains("packed acme/acme@0.1.0 (connector"),
        "{packed}"
    );
    assert!(packed.contains("signed by key"), "{packed}");
    // The signed bundle itself passes the kit (its manifest's id and
    // memory apply), through the generated script.
    {
        let crm = tinycrm::start(tinycrm::seed(11), TOKEN).await;
        std::fs::write(
            project.join("config.json"),
            json!({"base_url": crm.url(), "page_size": 4}).to_string(),
        )
        .unwrap();
        let out = run(
            &format!("{lang:?}: scripts/test.sh on the bundle"),
            Command::new("sh")
                .current_dir(&project)
                .args(["scripts/test.sh", "--format", "json"])
                .env("COMPONENT", &bundle)
                .env("API_TOKEN", TOKEN)
                .env("NEXO", env!("CARGO_BIN_EXE_nexo"))
                .env("NEXO_DATA_DIR", project.join(".nexo-data"))
                .env("NEXO_LOG", "warn"),
        );
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["plugin"], "acme/acme@0.1.0", "{report:#}");
        assert_eq!(report["failed"], 0, "{lang:?}: {report:#}");
    }
    ok(nexo(&data, &["trust", "add", &format!("{}.pub", s(&key))]));
    ok(nexo(
        &data,
        &["plugin", "install", s(&bundle), "--grant", "all"],
    ));

    let a = tinycrm::start(tinycrm::seed(23), TOKEN).await;
    let b = tinycrm::start(Default::default(), TOKEN).await;
    for (name, crm) in [("crm-a", &a), ("crm-b", &b)] {
        // Small pages: the page token and the cursor ties in the seed.
        let config = dir.join(format!("{name}.json"));
        std::fs::write(
            &config,
            json!({"base_url": crm.url(), "page_size": 5}).to_string(),
        )
        .unwrap();
        ok(nexo(
            &data,
            &[
                "connection",
                "add",
                name,
                "--plugin",
                "acme/acme",
                "--config",
                s(&config),
                "--secret",
                "api_token=env:ACME_TOKEN",
                "--grant-private-http",
                &crm.url(),
            ],
        ));
    }
    let file = dir.join("a-to-b.toml");
    std::fs::write(
        &file,
        pipeline("a-to-b", "", "[deletes]\npolicy = \"propagate\""),
    )
    .unwrap();
    ok(nexo(&data, &["pipeline", "apply", s(&file)]));

    let report = |data: &Path| -> Value {
        let out = ok(nexo(data, &["pipeline", "run", "a-to-b", "--json"]));
        serde_json::from_str(out.trim()).unwrap()
    };
    let first = report(&data);
    assert_eq!(first["counts"]["created"], 23, "{first}");
    assert_eq!(b.contacts().len(), 23);
    assert_eq!(
        b.crm.lock().unwrap().creates,
        23,
        "each contact created once"
    );
    assert_eq!(contents(&a), contents(&b));

    let again = report(&data);
    assert_eq!(again["counts"]["created"], 0, "{again}");
    assert_eq!(again["counts"]["updated"], 0, "{again}");

    a.edit("c0003", "city", "Paris");
    a.delete("c0004");
    let last = report(&data);
    assert_eq!(last["counts"]["updated"], 1, "{last}");
    assert_eq!(last["counts"]["deleted"], 1, "{last}");
    assert_eq!(b.contacts().len(), 22);
    assert_eq!(b.crm.lock().unwrap().creates, 23, "no create repeated");
    assert_eq!(contents(&a), contents(&b));

    // A contact the destination refuses (422) fails alone; a 500 is retried.
    a.insert(json!({"first_name": "No", "last_name": "Mail", "email": "not-an-e-mail"}));
    a.edit("c0005", "city", "Rome");
    b.crm.lock().unwrap().fail_writes = 1;
    let refused = report(&data);
    assert_eq!(refused["counts"]["failed"], 1, "{refused}");
    assert_eq!(refused["counts"]["updated"], 1, "{refused}");
    assert_eq!(b.contacts().len(), 22);
    assert_eq!(b.crm.lock().unwrap().fail_writes, 0, "the 500 was met");

    // A wrong token is an authentication failure, said as such.
    let config = dir.join("crm-a.json");
    ok(nexo(
        &data,
        &[
            "connection",
            "add",
            "crm-wrong",
            "--plugin",
            "acme/acme",
            "--config",
            s(&config),
            "--secret",
            "api_token=env:ACME_WRONG_TOKEN",
            "--grant-private-http",
            &a.url(),
        ],
    ));
    ok(nexo(&data, &["connection", "test", "crm-a"]));
    let out = nexo(&data, &["connection", "test", "crm-wrong"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    // The plugin's error class, not `internal`: what the kit checks too.
    assert!(
        said.contains("failed in check: authentication failed"),
        "{lang:?}: {said}"
    );
    assert!(!said.contains("not-the-token"), "{said}");

    mapper(lang, &sdk, &data, dir);
}

/// The generated `scripts/test.sh` (the conformance kit) against a sandbox
/// TinyCRM: every check passes, live and recording; then, with the system
/// stopped and no token, the recording replays to the same verdicts.
async fn kit(project: &Path, component: &Path, lang: Lang) {
    let crm = tinycrm::start(tinycrm::seed(17), TOKEN).await;
    std::fs::write(
        project.join("config.json"),
        json!({"base_url": crm.url(), "page_size": 5}).to_string(),
    )
    .unwrap();
    assert!(component.is_file());
    let test = |extra: &[&str], token: Option<&str>| {
        let mut c = Command::new("sh");
        c.current_dir(project)
            .arg("scripts/test.sh")
            .args(extra)
            .args(["--format", "json"])
            .env("NEXO", env!("CARGO_BIN_EXE_nexo"))
            .env("NEXO_DATA_DIR", project.join(".nexo-data"))
            .env("NEXO_LOG", "warn")
            .env_remove("API_TOKEN");
        if let Some(t) = token {
            c.env("API_TOKEN", t);
        }
        c
    };
    let verdicts = |out: &str| -> Vec<(String, String)> {
        let report: Value = serde_json::from_str(out).unwrap();
        assert_eq!(report["failed"], 0, "{lang:?}: {report:#}");
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let live = verdicts(&run(
        &format!("{lang:?}: scripts/test.sh --record"),
        &mut test(&["--record", "fixtures"], Some(TOKEN)),
    ));
    for check in [
        "check.wrong-credentials",
        "read.contacts.resume",
        "read.contacts.incremental",
        "write.contacts.idempotent-create",
        "write.contacts.refused-alone",
        "faults.contacts.write-lost-answer",
        "sandbox.secrets",
    ] {
        assert!(
            live.contains(&(check.to_string(), "pass".to_string())),
            "{lang:?}: {check} did not pass: {live:?}"
        );
    }
    assert_eq!(
        crm.contacts().len(),
        17,
        "the suite cleaned up after itself"
    );
    drop(crm);
    let replayed = verdicts(&run(
        &format!("{lang:?}: scripts/test.sh --replay"),
        &mut test(&["--replay", "fixtures"], None),
    ));
    assert_eq!(replayed, live, "{lang:?}: the replay's verdicts");
}

/// `nexo new mapper` builds, and maps a sample through `nexo plugin call`.
fn mapper(lang: Lang, sdk: &Sdk, data: &Path, dir: &Path) {
    let component = new_and_build(data, sdk, lang, "mapper", "acme-mapper", dir);
    let input = dir.join("sample.json");
    std::fs::write(
        &input,
        json!([
            {"id": "1", "payload": {"name": "Ada", "email": "ada@example.com"}},
            {"id": "2", "payload": {"email": "no-name@example.com"}},
        ])
        .to_string(),
    )
    .unwrap();
    let out = ok(nexo(
        data,
        &["plugin", "call", s(&component), "map", "--input", s(&input)],
    ));
    let outcomes: Value = serde_json::from_str(&out).unwrap();
    let payloads: Vec<&Value> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["outcome"], "mapped", "{outcomes}");
            &o["records"][0]["payload"]
        })
        .collect();
    assert_eq!(
        payloads,
        [
            &json!({"full_name": "Ada", "email": "ada@example.com"}),
            &json!({"email": "no-name@example.com"}),
        ],
        "{lang:?}"
    );

    // Its generated kit script: deterministic, total, within budget.
    let project = dir.join("acme-mapper");
    let out = run(
        &format!("{lang:?}: the mapper's scripts/test.sh"),
        Command::new("sh")
            .current_dir(&project)
            .args(["scripts/test.sh", "--format", "json"])
            .env("NEXO", env!("CARGO_BIN_EXE_nexo"))
            .env("NEXO_DATA_DIR", project.join(".nexo-data"))
            .env("NEXO_LOG", "warn"),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["failed"], 0, "{lang:?}: {report:#}");
    assert_eq!(report["passed"], 3, "{lang:?}: {report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_vendor_path() {
    vendor_path(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_vendor_path() {
    vendor_path(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_vendor_path() {
    vendor_path(Lang::Js).await;
}

#[test]
fn new_refuses_bad_names_and_non_empty_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let err = cli::fails(nexo(&data, &["new", "connector", "Acme", "--lang", "rust"]));
    assert!(err.contains("[a-z][a-z0-9-]*"), "{err}");
    let dir = tmp.path().join("taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let err = cli::fails(nexo(
        &data,
        &["new", "mapper", "acme", "--lang", "js", "--dir", s(&dir)],
    ));
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing written"
    );
    assert!(!data.exists(), "nexo new touches no data directory");
}

//! The contract, versioned: `wit/<version>/` folders that never change once
//! released, a host that serves every one of them and names the version it
//! refuses, and a 1.0 component — built without the SDK from the bytes as
//! released — that runs through the whole engine (registry, connection,
//! pipeline, run) like any plugin.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::pack;
use nexo_tests::synckit::Kit;
use nexo_tests::{programs, runtime};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve};

/// Every released `wit/` folder and the SHA-256 of its `nexo.wit`. A
/// released folder is never edited: a new version is a new folder, added
/// here when it is released.
const RELEASED: &[(&str, &str)] = &[
    (
        "1.0.0",
        "df06f5a604f72e3e56ea6319d0d29cba0a138e6838345361d5c41ae59feba78b",
    ),
    (
        "1.1.0",
        "fc2c393cae40cdf3060f510d90d9a1016c4de245aa7f5d21e5e0f444d486736a",
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wit_of(version: &str) -> String {
    let path = repo().join("wit").join(version).join("nexo.wit");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn released_wit_folders_are_never_edited() {
    let mut folders: Vec<String> = std::fs::read_dir(repo().join("wit"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let released: Vec<&str> = RELEASED.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        folders, released,
        "every wit/ folder is a released version listed in RELEASED (and the other way round)"
    );
    for (version, sha) in RELEASED {
        let text = wit_of(version);
        assert!(
            text.contains(&format!("package nexo:connector@{version};")),
            "wit/{version}/ holds another version"
        );
        assert_eq!(
            hex::encode(Sha256::digest(text.as_bytes())),
            *sha,
            "wit/{version}/nexo.wit changed after its release: add a new minor folder instead"
        );
    }
}

#[test]
fn the_host_serves_every_released_folder_and_the_sdk_targets_one_of_them() {
    for version in nexo::bindings::SERVED {
        assert!(
            RELEASED.iter().any(|(v, _)| v == version),
            "the host serves {version}, which has no released wit/ folder"
        );
    }
    for (version, _) in RELEASED {
        assert!(
            nexo::bindings::serves(version),
            "wit/{version}/ is released but the host does not serve it"
        );
    }
    // bindgen! needs a literal path: each served version's module must name
    // its own folder (`v1_0` for 1.0.0).
    for version in nexo::bindings::SERVED {
        let mut parts = version.split('.');
        let module = format!(
            "host/runtime/src/bindings/v{}_{}/mod.rs",
            parts.next().unwrap(),
            parts.next().unwrap()
        );
        let text = std::fs::read_to_string(repo().join(&module)).unwrap();
        assert_eq!(
            text.matches(&format!("path: \"../../wit/{version}\""))
                .count(),
            2,
            "both worlds of {module} are generated from wit/{version}/"
        );
    }
    let sdk = nexo_sdk::WIT_VERSION;
    assert!(nexo::bindings::serves(sdk), "the SDK targets {sdk}");
    // wit-bindgen needs a literal path: it must name the SDK's version (the
    // copy inside the crate, so that the packaged crate builds on its own).
    let bindings = std::fs::read_to_string(repo().join("sdk/src/wit.rs")).unwrap();
    assert_eq!(
        bindings.matches(&format!("path: \"wit/{sdk}\"")).count(),
        2,
        "both worlds of sdk/src/wit.rs are generated from sdk/wit/{sdk}/"
    );
}

#[test]
fn the_packaged_sdks_carry_the_released_contract_they_target() {
    // A vendor builds from the packaged SDKs (crate, wheel, npm tarball),
    // which cannot reach this repository's wit/: each carries a copy, and
    // the copy must be the released bytes, at the version the SDK names.
    let sdk = nexo_sdk::WIT_VERSION;
    let released = wit_of(sdk);
    for copy in [
        format!("sdk/wit/{sdk}/nexo.wit"),
        format!("sdk/python/nexo_sdk/wit/{sdk}/nexo.wit"),
        format!("sdk/js/wit/{sdk}/nexo.wit"),
    ] {
        let text = std::fs::read_to_string(repo().join(&copy))
            .unwrap_or_else(|e| panic!("{copy}: {e} (copy wit/{sdk}/nexo.wit there)"));
        assert!(
            text == released,
            "{copy} differs from wit/{sdk}/nexo.wit: copy the released file again"
        );
    }
    // Each SDK is versioned with the contract: major.minor of the one = the other's.
    let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let python = std::fs::read_to_string(repo().join("sdk/python/pyproject.toml")).unwrap();
    let js = std::fs::read_to_string(repo().join("sdk/js/package.json")).unwrap();
    let python: toml::Value = toml::from_str(&python).unwrap();
    let js: serde_json::Value = serde_json::from_str(&js).unwrap();
    for (sdk_name, version) in [
        ("nexo-sdk (Rust)", nexo_sdk::SDK_VERSION),
        (
            "nexo-sdk (Python)",
            python["project"]["version"].as_str().unwrap(),
        ),
        ("nexo-sdk (JS)", js["version"].as_str().unwrap()),
    ] {
        assert_eq!(
            minor(version),
            minor(sdk),
            "{sdk_name} {version} targets contract {sdk}"
        );
    }
}

/// `text` without its `///` documentation lines.
fn without_docs(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("///"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_fixture_is_built_from_1_0_as_released_which_differs_only_in_documentation() {
    let fixture =
        std::fs::read_to_string(repo().join("tests/programs/wit-1-0-fixture/wit/nexo.wit"))
            .unwrap();
    let released = wit_of("1.0.0");
    assert_eq!(
        without_docs(&fixture),
        without_docs(&released),
        "wit/1.0.0/ and the fixture's copy of 1.0 as released differ in more than documentation"
    );
}

/// A connector component of the `nexo:connector` WIT at `version`: the
/// released 1.0 text with only its package version changed, encoded around
/// wit-component's dummy module (every export traps; loading never calls
/// one).
fn connector_at(version: &str) -> Vec<u8> {
    let text = wit_of("1.0.0").replace(
        "package nexo:connector@1.0.0;",
        &format!("package nexo:connector@{version};"),
    );
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str(format!("nexo-{version}.wit"), &text)
        .unwrap();
    let world = resolve.select_world(&[package], Some("connector")).unwrap();
    let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .unwrap();
    ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_host_does_not_serve_is_refused_by_name() {
    // The construction itself loads at a served version, so what refuses
    // the others is their version.
    let served = runtime().load(&connector_at("1.0.0"), "acme/now@1.0.0");
    assert!(served.is_ok(), "{:?}", served.err());

    for (version, why) in [("2.0.0", "another major"), ("1.2.0", "a newer minor")] {
        let what = format!("acme/future@{version}");
        let err = runtime()
            .load(&connector_at(version), &what)
            .expect_err(why)
            .to_string();
        assert!(
            err.contains(&format!(
                "{what} was built against nexo:connector {version}, but this host serves nexo:connector 1.x"
            )),
            "{why}: {err}"
        );
    }

    // A component that claims 1.1 but carries 1.0's types (a `write` of
    // plain records, a `map` returning records) is refused at link time:
    // each version is served with exactly its own types.
    let err = runtime()
        .load(&connector_at("1.1.0"), "acme/liar@1.1.0")
        .expect_err("1.0 types under a 1.1 name")
        .to_string();
    assert!(err.contains("acme/liar@1.1.0"), "{err}");

    // Packing one is refused the same way: the runtime decides what is served.
    let src: ManifestSource = toml::from_str(
        "id = \"acme/future\"\nversion = \"2.0.0\"\nkind = \"connector\"\ndescription = \"d\"\nvendor = \"Acme\"\n",
    )
    .unwrap();
    let err = pack(runtime(), src, connector_at("2.0.0"), None)
        .await
        .expect_err("a 2.0 component cannot be packed")
        .to_string();
    assert!(err.contains("built against nexo:connector 2.0.0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_0_component_runs_through_the_whole_engine() {
    let kit = Kit::new(BTreeMap::new(), BTreeMap::new(), 10).await;
    // Packed, signed, reviewed and installed like any vendor's plugin, with a
    // connection of its own.
    kit.add_connector("old/fixture", programs::WIT_1_0_FIXTURE, "old")
        .await;
    kit.apply(
        "name = \"old-items\"\nentity = \"item\"\n\
         [source]\nconnection = \"old\"\nstream = \"items\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n\
         [[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = { set = { first_name = \"Item\", last_name = \"Fixture\", email = \"items@example.com\" } }\n",
    )
    .await;
    let report = kit.run("old-items").await;
    assert_eq!(report.error, None);
    assert_eq!(report.counts.read, 3, "{report:?}");
    assert_eq!(report.counts.created, 3, "{report:?}");

    // What the 1.0 component read arrived in the destination.
    let mut arrived: Vec<Value> = kit
        .b
        .contacts()
        .iter()
        .map(|c| json!({"n": c["n"], "email": c["email"]}))
        .collect();
    arrived.sort_by_key(|c| c["n"].as_i64());
    assert_eq!(
        arrived,
        (1..=3)
            .map(|n| json!({"n": n, "email": "items@example.com"}))
            .collect::<Vec<_>>()
    );

    // Its state was committed: the next run reads, finds nothing new to
    // write, and creates nothing.
    let again = kit.run("old-items").await;
    assert_eq!(again.error, None);
    assert_eq!(again.counts.created, 0, "{again:?}");
    assert_eq!(kit.b.contacts().len(), 3);
}

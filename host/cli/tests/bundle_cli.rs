//! The vendor's and the admin's bundle commands end to end through the
//! `nexo` binary: keygen, pack, verify, trust add/list/remove.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nexo_tests::cli::{fails, ok};
use nexo_tests::programs;

fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(name)
        .join("nexo-plugin.toml")
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn nexo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nexo"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .env("NEXO_LOG", "warn")
            .output()
            .unwrap()
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

#[test]
fn keygen_pack_verify_and_trust() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let key = env.path("acme.key");
    let text = ok(env.nexo(&["plugin", "keygen", "--name", "Acme Inc", "--out", &key]));
    assert!(text.contains("key id"), "{text}");
    assert!(Path::new(&format!("{key}.pub")).exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the secret key is private");
    }
    let again = fails(env.nexo(&["plugin", "keygen", "--name", "Acme Inc", "--out", &key]));
    assert!(
        again.contains("File exists") || again.contains("already exists"),
        "{again}"
    );

    let bundle = env.path("tinycrm.nexo");
    let text = ok(env.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        manifest("example-crm").to_str().unwrap(),
        "--component",
        programs::EXAMPLE_CRM,
        "--key",
        &key,
        "--out",
        &bundle,
    ]));
    assert!(
        text.contains("packed nexo-examples/tinycrm@0.1.0 (connector, nexo:connector 1.1.0)"),
        "{text}"
    );

    // Not trusted yet.
    let err = fails(env.nexo(&["plugin", "verify", &bundle]));
    assert!(
        err.contains("not trusted") && err.contains("nexo trust add"),
        "{err}"
    );

    let text = ok(env.nexo(&["trust", "add", &format!("{key}.pub")]));
    assert!(
        text.contains("trusted key") && text.contains("Acme Inc"),
        "{text}"
    );
    let listed = ok(env.nexo(&["trust", "list"]));
    assert!(listed.contains("Acme Inc"), "{listed}");
    let text = ok(env.nexo(&["plugin", "verify", &bundle]));
    assert!(
        text.contains(": OK") && text.contains("signed by  Acme Inc"),
        "{text}"
    );

    // One flipped byte anywhere in the component: refused.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.windows(4).position(|w| w == b"\0asm").unwrap() + 100;
    bytes[at] ^= 0x01;
    let evil = env.path("evil.nexo");
    std::fs::write(&evil, bytes).unwrap();
    let err = fails(env.nexo(&["plugin", "verify", &evil]));
    assert!(err.contains("has been tampered with"), "{err}");

    let key_id = listed.split_whitespace().next().unwrap().to_string();
    ok(env.nexo(&["trust", "remove", &key_id]));
    let err = fails(env.nexo(&["plugin", "verify", &bundle]));
    assert!(err.contains("not trusted"), "{err}");
    let err = fails(env.nexo(&["trust", "remove", &key_id]));
    assert!(err.contains("no trusted key with id"), "{err}");
}

#[test]
fn unsigned_bundles_need_the_development_flag() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let bundle = env.path("mapper.nexo");
    let text = ok(env.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        manifest("contact-mapper").to_str().unwrap(),
        "--component",
        programs::CONTACT_MAPPER,
        "--unsigned",
        "--out",
        &bundle,
    ]));
    assert!(text.contains("UNSIGNED"), "{text}");
    let err = fails(env.nexo(&["plugin", "verify", &bundle]));
    assert!(
        err.contains("not signed") && err.contains("--allow-unsigned"),
        "{err}"
    );
    let text = ok(env.nexo(&["plugin", "verify", "--allow-unsigned", &bundle]));
    assert!(text.contains("UNSIGNED"), "{text}");
}

#[test]
fn pack_refuses_a_lying_manifest_and_writes_nothing() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let lying = env.path("lying.toml");
    let text = std::fs::read_to_string(manifest("example-crm"))
        .unwrap()
        .replace(
            r#"http_origins = ["https://*:*", "http://*:*"]"#,
            r#"http_origins = ["https://api.tinycrm.example"]"#,
        );
    std::fs::write(&lying, text).unwrap();
    let out = env.path("never.nexo");
    let err = fails(env.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        &lying,
        "--component",
        programs::EXAMPLE_CRM,
        "--unsigned",
        "--out",
        &out,
    ]));
    assert!(
        err.contains("the manifest does not match the component") && err.contains("http_origins"),
        "{err}"
    );
    assert!(!Path::new(&out).exists());
}

#[test]
fn install_shows_the_capabilities_and_needs_a_grant() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let key = env.path("acme.key");
    ok(env.nexo(&["plugin", "keygen", "--name", "Acme Inc", "--out", &key]));
    ok(env.nexo(&["trust", "add", &format!("{key}.pub")]));
    let bundle = env.path("tinycrm.nexo");
    ok(env.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        manifest("example-crm").to_str().unwrap(),
        "--component",
        programs::EXAMPLE_CRM,
        "--key",
        &key,
        "--out",
        &bundle,
    ]));

    // No terminal, no --grant: the request is shown, nothing is installed.
    let out = env.nexo(&["plugin", "install", &bundle]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = fails(out);
    for needle in [
        "nexo-examples/tinycrm 0.1.0 - Contacts from TinyCRM, the example REST CRM (connector)",
        "signed by  Acme Inc",
        "It asks to:",
        "- talk to any site matching https://*:*",
        "- use the secret `api_token` (TinyCRM API token (Settings → API)), sent only to https://*:*, http://*:*",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    assert!(
        err.contains("need an explicit grant") && err.contains("--grant all"),
        "{err}"
    );
    assert!(ok(env.nexo(&["plugin", "list"])).contains("no plugins installed"));

    let text = ok(env.nexo(&["plugin", "install", &bundle, "--grant", "all"]));
    assert!(
        text.contains("installed nexo-examples/tinycrm@0.1.0"),
        "{text}"
    );
    let listed = ok(env.nexo(&["plugin", "list"]));
    assert!(
        listed.contains("nexo-examples/tinycrm  [connector]  0.1.0 (active)"),
        "{listed}"
    );
    assert!(listed.contains("secret api_token"), "{listed}");

    let err = fails(env.nexo(&["plugin", "install", &bundle, "--grant", "all"]));
    assert!(err.contains("already installed"), "{err}");
    let err = fails(env.nexo(&[
        "plugin",
        "upgrade",
        "nexo-examples/tinycrm",
        &bundle,
        "--grant",
        "all",
    ]));
    assert!(err.contains("is not newer than the active 0.1.0"), "{err}");
    let err = fails(env.nexo(&["plugin", "rollback", "nexo-examples/tinycrm"]));
    assert!(err.contains("no version older"), "{err}");
}

/// An interpreter-based plugin asks for more than the default 64 MiB: it is
/// granted its ask within the admin's cap (shown at install), refused when
/// the ask is above the cap (naming the setting that raises it), and a
/// cap the admin mistyped is named, not ignored.
#[test]
fn declared_memory_is_granted_only_within_the_admins_cap_and_shown_at_install() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let manifest = env.path("nexo-plugin.toml");
    std::fs::write(
        &manifest,
        "id = \"acme/big-mapper\"\nversion = \"1.0.0\"\nkind = \"mapper\"\n\
         description = \"a mapper run by an interpreter\"\nvendor = \"Acme\"\n\
         [capabilities]\nmemory_bytes = 134217728\n",
    )
    .unwrap();
    let bundle = env.path("big.nexo");
    ok(env.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        &manifest,
        "--component",
        programs::TEST_MAPPER,
        "--unsigned",
        "--out",
        &bundle,
    ]));
    let install = |cap: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nexo"));
        c.arg("--data-dir")
            .arg(env.dir.path().join("data"))
            .args([
                "plugin",
                "install",
                &bundle,
                "--allow-unsigned",
                "--grant",
                "all",
            ])
            .env("NEXO_LOG", "warn");
        match cap {
            Some(cap) => c.env("NEXO_PLUGIN_MEMORY_CAP", cap),
            None => c.env_remove("NEXO_PLUGIN_MEMORY_CAP"),
        };
        c.output().unwrap()
    };

    let err = fails(install(Some("64MiB")));
    assert!(
        err.contains("acme/big-mapper@1.0.0 is refused: it asks for 128 MiB of memory, more than this host's cap of 64 MiB")
            && err.contains("NEXO_PLUGIN_MEMORY_CAP=128MiB"),
        "{err}"
    );
    assert!(ok(env.nexo(&["plugin", "list"])).contains("no plugins installed"));

    let err = fails(install(Some("lots")));
    assert!(
        err.contains("NEXO_PLUGIN_MEMORY_CAP=lots: expected a size such as 512MiB"),
        "{err}"
    );

    let text = ok(install(None));
    assert!(
        text.contains("up to 128 MiB of memory while it runs; this host's cap is 256 MiB"),
        "{text}"
    );
    assert!(text.contains("installed acme/big-mapper@1.0.0"), "{text}");
}

//! `nexo plugin verify` and `nexo plugin install` ask the component: a
//! bundle whose manifest, signed by a trusted key, lies about what its
//! component asks for is refused, naming the difference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use nexo::bundle::keys::SecretKey;
use nexo_tests::cli::fails;
use nexo_tests::greedy;

fn nexo(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexo"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env("NEXO_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_signature_on_a_lying_manifest_is_not_enough() {
    // Before, `plugin verify` said OK and `plugin install` installed it,
    // showing "token → http://localhost:*" for a component that sends the
    // token anywhere.
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate("Acme").unwrap();
    let public = dir.path().join("acme.pub");
    std::fs::write(&public, key.public().to_line()).unwrap();
    let out = nexo(dir.path(), &["trust", "add", public.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.path().join("greedy.nexo");
    std::fs::write(&bundle, greedy::lying_bundle(&key).await).unwrap();
    let bundle = bundle.to_str().unwrap();

    for args in [
        vec!["plugin", "verify", bundle],
        vec!["plugin", "install", bundle, "--grant", "all"],
    ] {
        let err = fails(nexo(dir.path(), &args));
        assert!(err.contains("secrets are"), "{args:?}: {err}");
        assert!(err.contains("http://*:*"), "{args:?}: {err}");
    }
}

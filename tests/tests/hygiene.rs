//! The smaller holes of issue 14 (class 10), attacked in-process: oversized
//! manifests refused at once, `/metrics` behind the admin token, webhooks
//! that cannot be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::{Bundle, BundleError, pack};
use nexo_tests::synckit::Kit;
use nexo_tests::{programs, runtime};

/// The start of an error message (a refused manifest may name thousands of
/// origins).
fn head(text: &str) -> String {
    text.chars().take(400).collect()
}

fn crm_manifest(origins: usize) -> ManifestSource {
    let mut src: ManifestSource = toml::from_str(
        r#"
        id = "acme/tinycrm"
        version = "1.2.0"
        kind = "connector"
        description = "TinyCRM contacts"
        vendor = "Acme Inc"
        [capabilities]
        http_origins = ["https://*:*", "http://*:*"]
        secrets = [{ name = "api_token", description = "TinyCRM API token", origins = ["https://*:*", "http://*:*"] }]
        "#,
    )
    .unwrap();
    if origins > 2 {
        src.capabilities.http_origins = (0..origins)
            .map(|i| format!("https://host-{i}.example"))
            .collect();
    }
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_thirty_thousand_origins_is_refused_at_once_everywhere() {
    let component = std::fs::read(programs::EXAMPLE_CRM).unwrap();

    // At pack: refused before the component is even compiled.
    let started = Instant::now();
    let err = pack(runtime(), crm_manifest(30_000), component.clone(), None)
        .await
        .unwrap_err();
    eprintln!("pack refused in {:?}", started.elapsed());
    let text = err.to_string();
    assert!(
        text.contains("30000 HTTP origins") && text.contains("at most 64"),
        "{}",
        head(&text)
    );

    // At verify and install: bundles whose manifest was written by hand,
    // 30 000 origins (over a megabyte) and 1 000 (under the size cap).
    let good = pack(runtime(), crm_manifest(2), component, None)
        .await
        .unwrap();
    let evil = |origins: usize| {
        let mut manifest = good.manifest.clone();
        manifest.capabilities.http_origins = crm_manifest(origins).capabilities.http_origins;
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        Bundle {
            manifest,
            manifest_bytes,
            component: good.component.clone(),
            signature: None,
        }
        .to_bytes()
        .unwrap()
    };
    let kit = Kit::new(Default::default(), Default::default(), 10).await;
    for (origins, why) in [
        (30_000, "bytes (at most 256 KiB)"),
        (1_000, "1000 HTTP origins (at most 64"),
    ] {
        let bytes = evil(origins);
        let started = Instant::now();
        let err = Bundle::parse(&bytes, "evil.nexo").unwrap_err();
        eprintln!(
            "{origins} origins: parse refused in {:?}",
            started.elapsed()
        );
        let text = err.to_string();
        assert!(
            matches!(err, BundleError::ManifestTooLarge { .. })
                && text.starts_with("evil.nexo is refused")
                && text.contains(why),
            "{}",
            head(&text)
        );
        let started = Instant::now();
        let err = kit
            .registry
            .review(bytes, "evil.nexo", true, None)
            .unwrap_err();
        eprintln!(
            "{origins} origins: install refused in {:?}",
            started.elapsed()
        );
        let text = err.to_string();
        assert!(text.contains(why), "{}", head(&text));
    }

    // A manifest file of megabytes: refused by size, before parsing.
    let mut manifest = good.manifest.clone();
    manifest.description = "x".repeat(300 << 10);
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let big = Bundle {
        manifest,
        manifest_bytes,
        component: good.component,
        signature: None,
    }
    .to_bytes()
    .unwrap();
    let err = Bundle::parse(&big, "big.nexo").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("256 KiB"), "{}", head(&text));
}

//! The smaller holes of issue 14 (class 10), attacked in-process: oversized
//! manifests refused at once, `/metrics` behind the admin token, webhooks
//! that cannot be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::{Bundle, BundleError, pack};
use nexo::serve::clock::SystemClock;
use nexo::serve::{ServeConfig, webhook};
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::{programs, runtime, tinycrm};
use serde_json::Value;
use sha2::Sha256;

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
            .await
            .expect_err("the oversized manifest is refused");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token() {
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 50).await;
    kit.db
        .insert_token(
            "scraper",
            "nexo_test_token_m",
            nexo::store::service::Role::Admin,
        )
        .unwrap();
    let (url, stop, handle) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let resp = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("Bearer"), "{err}");
    let resp = http
        .get(format!("{url}/metrics"))
        .bearer_auth("nexo_test_token_m")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = stop.send(());
    handle.await.unwrap();

    // Asked for: public, and still nothing secret in it.
    let config = ServeConfig {
        metrics_public: true,
        ..ServeConfig::default()
    };
    let (url, stop, handle) = serve(app(&kit, Arc::new(SystemClock)), config).await;
    let resp = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(nexo_tests::synckit::TOKEN) && !text.contains("nexo_test_token_m"),
        "{text}"
    );
    let _ = stop.send(());
    handle.await.unwrap();
}

/// `t=<unix>,v1=<hex>` over `t.body`, as a sender computes it.
fn stripe_style(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_cannot_be_replayed_or_sent_late() {
    let kit = Kit::new(tinycrm::seed(2), Default::default(), 50).await;
    kit.apply(&pipeline("hooked", "", "")).await;
    let app = app(&kit, Arc::new(SystemClock));
    let secret = webhook::rotate_secret(kit.registry.db(), &app.sealer, "hooked").unwrap();
    let (url, stop, handle) = serve(app.clone(), ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let body = br#"{"event":"deal.updated","id":7}"#.to_vec();
    let post = |signature: String| {
        http.post(format!("{url}/hooks/hooked"))
            .header(webhook::SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
    };
    let error = |v: Value| v["error"].as_str().unwrap_or_default().to_string();

    // The old format, over the body alone: refused, saying what to send.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let old = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let resp = post(old).await.unwrap();
    assert_eq!(resp.status(), 400);
    let e = error(resp.json().await.unwrap());
    assert!(e.contains("t=<unix seconds>,v1="), "{e}");

    // Signed ten minutes ago (a captured delivery sent again): too old.
    let resp = post(stripe_style(&secret, now() - 600, &body))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let e = error(resp.json().await.unwrap());
    assert!(e.contains("timestamp") && e.contains("300 s"), "{e}");

    // Fresh: accepted, once.
    let fresh = stripe_style(&secret, now(), &body);
    let resp = post(fresh.clone()).await.unwrap();
    assert_eq!(resp.status(), 202);
    let resp = post(fresh).await.unwrap();
    assert_eq!(resp.status(), 409);
    let e = error(resp.json().await.unwrap());
    assert!(e.contains("already delivered"), "{e}");

    // A wrong signature with a fresh timestamp: still a plain 401.
    let resp = post(stripe_style("whsec_wrong", now(), &body))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    app.scheduler.idle().await;
    let _ = stop.send(());
    handle.await.unwrap();
}

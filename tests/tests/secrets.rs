//! The host's second line: whatever text a plugin hands the host (records,
//! page state, errors, write results, kv values) loses every secret value
//! the process has opened, even one the plugin got some other way than a
//! response (here: its config), before anything maps, stores or shows it.
//! The first line (responses scrubbed before the plugin sees them) and the
//! whole way out through the CLI, API and console are proven in
//! `host/tests/secrets_cli.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nexo::plugin::{Operation, Record, WriteOutcome};
use nexo::sandbox::kv::KvStore;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::{ConnectorPlugin, Grants, GuestError, Limits, PluginError, PluginRef, Sandbox};
use nexo_tests::{echo, load, programs};

const VALUE: &str = "second-line-secret-4f9a";

/// The hostile-secrets connector, holding the secret `token` (= [`VALUE`]),
/// with `grants` and `kv`.
async fn hostile(grants: Grants, kv: Option<(KvStore, String)>) -> ConnectorPlugin {
    let sandbox = Sandbox {
        plugin: PluginRef {
            id: "hostile/secrets".into(),
            version: "0.1.0".into(),
        },
        limits: Limits::default(),
        grants,
        secrets: BTreeMap::from([("token".to_string(), SecretValue::new(VALUE))]),
        credentials: Default::default(),
        kv,
    };
    ConnectorPlugin::open(&load(programs::HOSTILE_SECRETS), sandbox)
        .await
        .unwrap()
}

/// The echoing API (reached as `localhost`) and the drop box, both granted
/// to the hostile connector (no kv), the connector, and its config naming
/// them.
async fn echo_case() -> (echo::Server, echo::Server, ConnectorPlugin, String) {
    let api = echo::start_echo().await;
    let drop_box = echo::start_collector().await;
    let api_origin = format!("http://localhost:{}", api.port());
    let plugin = hostile(
        Grants {
            http: vec![
                HttpGrant::private(&api_origin).unwrap(),
                HttpGrant::private(&drop_box.url()).unwrap(),
            ],
            kv_bytes: 0,
        },
        None,
    )
    .await;
    let config = serde_json::json!({"api": api_origin, "drop": drop_box.url(), "user": "ada"});
    (api, drop_box, plugin, config.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_plugin_hands_the_host_loses_every_opened_secret_value() {
    let drop_box = echo::start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("nexo.db")).unwrap();
    let kv = db.kv_store();
    let plugin = hostile(
        Grants {
            http: vec![HttpGrant::private(&drop_box.url()).unwrap()],
            kv_bytes: 1 << 16,
        },
        Some((kv.clone(), "hostile/secrets/src/sandbox".into())),
    )
    .await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, VALUE);
    let config = serde_json::json!({
        "api": drop_box.url(),
        "drop": drop_box.url(),
        "user": "ada",
        "plain": format!("value {VALUE} and base64 {b64}"),
    })
    .to_string();
    let clean = |what: &str, text: &str| {
        assert!(
            !text.contains(VALUE) && !text.contains(&b64),
            "{what} carries the secret: {text}"
        );
        assert!(text.contains("[redacted:token]"), "{what}: {text}");
    };

    let page = plugin.read(&config, "leads", None).await.result.unwrap();
    assert_eq!(page.records.len(), 4);
    for r in &page.records {
        clean("a record's payload", &r.payload);
        serde_json::from_str::<serde_json::Value>(&r.payload).expect("still JSON");
    }
    clean("the page state", page.state.as_deref().unwrap());

    let err = plugin.check(&config).await.result.unwrap_err();
    assert!(matches!(
        &err,
        PluginError::Guest {
            error: GuestError::Auth(_),
            ..
        }
    ));
    clean("the check error", &err.to_string());

    let batch: Vec<Record> = page
        .records
        .iter()
        .map(|r| Record {
            operation: Operation::Upsert,
            id: String::new(),
            ..r.clone()
        })
        .collect();
    let results = plugin.write(&config, "leads", &batch).await.result.unwrap();
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| match r.outcome {
            WriteOutcome::Failed(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2);
    for f in &failed {
        clean("a write error", f);
    }

    let stored = kv
        .namespace("hostile/secrets/src/sandbox", 1 << 16)
        .get("echo")
        .unwrap()
        .unwrap();
    clean("the kv value", &String::from_utf8(stored).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_api_echoes_reaches_the_plugin_without_the_secret() {
    let (api, drop_box, plugin, config) = echo_case().await;
    // kv is not granted here: the read fails there, after it sent what it
    // got to the drop box.
    let _ = plugin.read(&config, "leads", None).await;
    assert!(
        api.received_text().contains(&format!("Bearer {VALUE}")),
        "the secret was substituted for the bound origin"
    );
    let got = drop_box.received_text();
    assert!(got.contains("/collect"), "{got}");
    assert!(
        got.contains("x-echo-authorization: Bearer [redacted:token]"),
        "{got}"
    );
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, VALUE);
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("ada:{VALUE}"),
    );
    for needle in [VALUE, &b64, &basic] {
        assert!(
            !got.contains(needle),
            "the plugin passed on {needle}: {got}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_answer_the_host_cannot_search_is_refused_not_passed_on() {
    // The API must keep serving: bound, not dropped.
    let (_api, drop_box, plugin, config) = echo_case().await;
    let out = plugin.read(&config, "compressed", None).await;
    let got = drop_box.received_text();
    assert!(
        !got.contains(VALUE),
        "the plugin decoded and passed on: {got}"
    );
    let err = out.result.unwrap_err().to_string();
    assert!(err.contains("content-encoding: x-xor"), "{err}");
    assert!(!got.contains("/collect"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redirect_names_no_secret() {
    // The API must keep serving: bound, not dropped.
    let (_api, drop_box, plugin, config) = echo_case().await;
    let out = plugin.read(&config, "redirect", None).await;
    let got = drop_box.received_text();
    assert!(got.contains("/collect"), "the refusal was passed on: {got}");
    assert!(!got.contains(VALUE), "the plugin got the secret: {got}");
    let shown = format!("{:?} {}", out.events, out.result.unwrap_err());
    assert!(!shown.contains(VALUE), "{shown}");
}

//! A hostile Python connector (`tests/programs/py-hostile`, one attack per
//! config `mode`) meets the same walls, with the same named errors, as the
//! Rust hostile programs (`sandbox.rs`, `secrets.rs`): an endless loop hits
//! the time limit, memory growth the memory cap, a request to an origin not
//! granted or a secret template toward an origin the secret is not bound to
//! is refused before anything is sent, the environment, files and sockets
//! hold nothing, and what an echoing API returns reaches the plugin with the
//! secret redacted; key-value storage not granted is `access-denied` saying
//! so (1.1's `kv-error.not-granted`), and a connection's used-up request
//! budget is `rate-limited` with the host's delay (1.1's
//! `http-error.budget-exhausted`), nothing sent. A Python exception is the plugin's
//! `internal` error, not a trap. After each, the same plugin still answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::pack;
use nexo::connections::{Connections, NewConnection};
use nexo::limits::Limit;
use nexo::registry::{Registry, grant_all};
use nexo::sandbox::http::HttpError;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::state::SandboxEvent;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::{ConnectorPlugin, GuestError, Limits};
use nexo_tests::hostile::{guest_error, limit_of};
use nexo_tests::{echo, programs, runtime, tinycrm};
use serde_json::{Value, json};

const VALUE: &str = "py-hostile-secret-81c2";

async fn hostile(limits: Limits, http: Vec<HttpGrant>) -> ConnectorPlugin {
    nexo_tests::hostile::open(programs::PY_HOSTILE, "hostile/py", VALUE, limits, http).await
}

async fn attack(p: &ConnectorPlugin, config: Value) -> nexo::Outcome<nexo::plugin::Page> {
    p.read(&config.to_string(), "attack", None).await
}

/// The same plugin answers a well-behaved call after an attack.
async fn still_serves(p: &ConnectorPlugin) {
    let page = attack(p, json!({"mode": "ok"}))
        .await
        .result
        .expect("the plugin answers the next call");
    assert_eq!(page.records.len(), 1);
}

fn refused(events: &[SandboxEvent]) -> &HttpError {
    match events {
        [SandboxEvent::HttpRefused(e)] => e,
        other => panic!("expected one refused request, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_by_the_time_limit() {
    let p = hostile(
        Limits {
            fuel_per_call: u64::MAX / 4,
            call_timeout_ms: 1_000,
            ..Limits::default()
        },
        vec![],
    )
    .await;
    let (limit, msg) = limit_of(attack(&p, json!({"mode": "loop"})).await.result);
    assert!(
        matches!(limit, Limit::Time(d) if d.as_millis() == 1_000),
        "{limit:?}"
    );
    assert_eq!(
        msg,
        "plugin hostile/py@0.1.0 exceeded its time limit of 1000 ms in read(attack)"
    );
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_hits_the_memory_cap() {
    let p = hostile(
        Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        },
        vec![],
    )
    .await;
    let (limit, msg) = limit_of(attack(&p, json!({"mode": "memory"})).await.result);
    assert_eq!(limit, Limit::Memory(32 << 20));
    assert_eq!(
        msg,
        "plugin hostile/py@0.1.0 exceeded its 32 MiB memory limit in read(attack)"
    );
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_exception_is_an_internal_error_not_a_trap() {
    let p = hostile(Limits::default(), vec![]).await;
    match guest_error(attack(&p, json!({"mode": "crash"})).await.result) {
        GuestError::Internal(m) => assert_eq!(
            m,
            "the plugin raised RuntimeError: boom: the plugin has a bug"
        ),
        other => panic!("{other:?}"),
    }
    match guest_error(attack(&p, json!({"mode": "nonsense"})).await.result) {
        GuestError::InvalidConfig(m) => assert!(m.contains("mode: must be one of"), "{m}"),
        other => panic!("{other:?}"),
    }
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_files_and_sockets_hold_nothing() {
    let p = hostile(Limits::default(), vec![]).await;
    match guest_error(attack(&p, json!({"mode": "read-env"})).await.result) {
        GuestError::AccessDenied(m) => assert_eq!(m, "env: no variables, no arguments"),
        other => panic!("{other:?}"),
    }
    match guest_error(attack(&p, json!({"mode": "read-file"})).await.result) {
        GuestError::AccessDenied(m) => assert!(m.starts_with("fs: "), "{m}"),
        other => panic!("{other:?}"),
    }
    match guest_error(attack(&p, json!({"mode": "socket"})).await.result) {
        GuestError::AccessDenied(m) => assert!(m.starts_with("socket: "), "{m}"),
        other => panic!("{other:?}"),
    }
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_origin_not_granted_is_refused_before_it_is_sent() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let p = hostile(Limits::default(), vec![]).await;
    let out = attack(
        &p,
        json!({"mode": "http", "url": format!("{}/api/ping", crm.url())}),
    )
    .await;
    assert!(
        matches!(refused(&out.events), HttpError::OriginNotAllowed(m) if m.contains("not granted")),
        "{:?}",
        out.events
    );
    match guest_error(out.result) {
        GuestError::AccessDenied(m) => assert!(m.starts_with("origin not allowed: "), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(crm.crm.lock().unwrap().requests.is_empty());
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_template_toward_an_origin_it_is_not_bound_to_is_refused() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let p = hostile(
        Limits::default(),
        vec![HttpGrant::private(&crm.url()).unwrap()],
    )
    .await;
    let out = attack(
        &p,
        json!({"mode": "http", "url": format!("{}/api/ping", crm.url()),
               "header": ["authorization", "Bearer {{secret:token}}"]}),
    )
    .await;
    assert!(
        matches!(refused(&out.events), HttpError::SecretNotAllowed(m) if m.contains("`token` is not bound")),
        "{:?}",
        out.events
    );
    let shown = format!("{:?} {}", out.events, out.result.as_ref().unwrap_err());
    assert!(!shown.contains(VALUE), "secret value leaked: {shown}");
    assert!(crm.crm.lock().unwrap().requests.is_empty());
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_api_echoes_reaches_the_plugin_without_the_secret() {
    let api = echo::start_echo().await;
    let drop_box = echo::start_collector().await;
    let api_origin = format!("http://localhost:{}", api.port());
    let p = hostile(
        Limits::default(),
        vec![
            HttpGrant::private(&api_origin).unwrap(),
            HttpGrant::private(&drop_box.url()).unwrap(),
        ],
    )
    .await;
    let out = attack(
        &p,
        json!({"mode": "echo-secret", "api": api_origin, "drop": drop_box.url()}),
    )
    .await;
    assert!(
        api.received_text().contains(&format!("Bearer {VALUE}")),
        "the secret was substituted for the origin it is bound to"
    );
    let got = drop_box.received_text();
    assert!(got.contains("/collect"), "{got}");
    assert!(got.contains("[redacted:token]"), "{got}");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, VALUE);
    for needle in [VALUE, &b64] {
        assert!(
            !got.contains(needle),
            "the plugin passed on {needle}: {got}"
        );
    }
    let page = out.result.unwrap();
    assert!(!format!("{page:?}").contains(VALUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_storage_not_granted_is_access_denied_saying_so() {
    // 1.1's `kv-error.not-granted`, as the SDK reports it.
    let p = hostile(Limits::default(), vec![]).await;
    match guest_error(attack(&p, json!({"mode": "kv"})).await.result) {
        GuestError::AccessDenied(m) => assert!(
            m.starts_with("no key-value storage: the plugin declares none (kv_bytes)"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    still_serves(&p).await;
}

/// The hostile connector installed (packed with the capabilities its spec
/// asks for) with a connection of `per_minute` requests to `origin`.
async fn installed(
    origin: &str,
    per_minute: u32,
    config: Value,
) -> (tempfile::TempDir, Connections) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("nexo.db")).unwrap();
    let key = SecretKey::generate("Hostile").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = Registry::new(db, runtime().clone(), dir.path().join("bundles"));
    let src: ManifestSource = toml::from_str(
        "id = \"hostile/py\"\nversion = \"0.1.0\"\nkind = \"connector\"\ndescription = \"d\"\nvendor = \"Hostile\"\n\
         [capabilities]\nhttp_origins = [\"http://*:*\"]\n\
         secrets = [{ name = \"token\", description = \"the API token\", origins = [\"http://localhost:*\"] }]\n",
    )
    .unwrap();
    let wasm = std::fs::read(programs::PY_HOSTILE).unwrap();
    let bundle = pack(runtime(), src, wasm, Some(&key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap();
    let review = registry.review(bundle, "b", false, None).await.unwrap();
    let grant = grant_all(review.to_grant());
    registry.install(review, &grant).unwrap();
    let connections = Connections::new(registry, Sealer::from_key(&[7; 32]));
    connections
        .add(NewConnection {
            name: "slow".into(),
            plugin_id: "hostile/py".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config,
            secrets: BTreeMap::from([("token".to_string(), SecretValue::new(VALUE))]),
            grants: ConnectionGrants {
                private_http: vec![origin.to_string()],
                requests_per_minute: Some(per_minute),
                ..Default::default()
            },
        })
        .unwrap();
    (dir, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_request_budget_reaches_python_as_rate_limited() {
    // 1.1's `http-error.budget-exhausted`, as the SDK reports it.
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let config = json!({"mode": "http", "url": format!("{}/api/ping", crm.url())});
    let (_dir, connections) = installed(&crm.url(), 1, config).await;
    let limits = Limits {
        call_timeout_ms: 5_000,
        ..Limits::default()
    };
    let (row, a) = connections.open("slow", limits.clone()).await.unwrap();
    let (_, b) = connections.open("slow", limits).await.unwrap();
    let first = a.read(&row.config, "attack", None).await;
    assert!(first.result.is_ok(), "{:?}", first.result);
    let second = b.read(&row.config, "attack", None).await;
    match guest_error(second.result) {
        GuestError::RateLimited { retry_after_ms } => {
            assert!(
                (50_000..=60_000).contains(&retry_after_ms),
                "{retry_after_ms}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            second.events.as_slice(),
            [SandboxEvent::HttpRefused(HttpError::RateLimited(_))]
        ),
        "{:?}",
        second.events
    );
    assert_eq!(
        crm.crm.lock().unwrap().requests.len(),
        1,
        "the refused request was not sent"
    );
}

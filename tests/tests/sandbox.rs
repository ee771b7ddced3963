//! The sandbox holds: every hostile program is stopped or refused with its
//! exact, named error, and the host then still serves a good plugin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nexo::limits::Limit;
use nexo::sandbox::http::HttpError;
use nexo::sandbox::kv::KvStore;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::state::SandboxEvent;
use nexo::{ConnectorPlugin, Grants, GuestError, Limits, PluginError, PluginRef, Sandbox};
use nexo_tests::hostile::{guest_error, limit_of};
use nexo_tests::{load, programs, tinycrm};

fn sandbox(limits: Limits, http: Vec<HttpGrant>) -> Sandbox {
    Sandbox {
        plugin: PluginRef {
            id: "test/hostile".into(),
            version: "6.6.6".into(),
        },
        limits,
        grants: Grants { http, kv_bytes: 0 },
        secrets: BTreeMap::new(),
        credentials: Default::default(),
        kv: None,
    }
}

async fn hostile(limits: Limits, http: Vec<HttpGrant>) -> ConnectorPlugin {
    ConnectorPlugin::open(&load(programs::HOSTILE), sandbox(limits, http))
        .await
        .unwrap()
}

/// After any hostile case, the same runtime serves a well-behaved call, of
/// the same plugin and of another one.
async fn host_still_serves(plugin: &ConnectorPlugin) {
    let page = plugin
        .read("{}", "ok", None)
        .await
        .result
        .expect("same plugin answers the next call");
    assert_eq!(page.records.len(), 1);
    let mapper = nexo::MapperPlugin::open(
        &load(programs::CONTACT_MAPPER),
        Sandbox {
            plugin: PluginRef {
                id: "test/mapper".into(),
                version: "1.0.0".into(),
            },
            ..sandbox(Limits::default(), vec![])
        },
    )
    .unwrap();
    let out = mapper
        .map("{}", &[])
        .await
        .result
        .expect("another plugin answers");
    assert!(out.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_by_the_cpu_budget() {
    let plugin = nexo_tests::runtime_with_fuel()
        .load_file(std::path::Path::new(programs::HOSTILE))
        .unwrap();
    let limits = Limits {
        fuel_per_call: 300_000_000,
        ..Limits::default()
    };
    let p = ConnectorPlugin::open(&plugin, sandbox(limits, vec![]))
        .await
        .unwrap();
    let (limit, msg) = limit_of(p.read("{}", "loop", None).await.result);
    assert_eq!(limit, Limit::Cpu(300_000_000));
    assert_eq!(
        msg,
        "plugin test/hostile@6.6.6 exceeded its CPU budget of 300000000 fuel units in read(loop)"
    );
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_by_the_time_limit() {
    let p = hostile(
        Limits {
            fuel_per_call: u64::MAX / 4,
            call_timeout_ms: 300,
            ..Limits::default()
        },
        vec![],
    )
    .await;
    let (limit, msg) = limit_of(p.read("{}", "loop", None).await.result);
    assert!(
        matches!(limit, Limit::Time(d) if d.as_millis() == 300),
        "{limit:?}"
    );
    assert!(
        msg.contains("exceeded its time limit of 300 ms in read(loop)"),
        "{msg}"
    );
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_cap() {
    let p = hostile(
        Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        },
        vec![],
    )
    .await;
    let (limit, msg) = limit_of(p.read("{}", "memory-bomb", None).await.result);
    assert_eq!(limit, Limit::Memory(32 << 20));
    assert_eq!(
        msg,
        "plugin test/hostile@6.6.6 exceeded its 32 MiB memory limit in read(memory-bomb)"
    );
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_hits_the_stack_limit() {
    let p = hostile(Limits::default(), vec![]).await;
    let (limit, msg) = limit_of(p.read("{}", "recursion", None).await.result);
    assert_eq!(limit, Limit::Stack);
    assert_eq!(
        msg,
        "plugin test/hostile@6.6.6 exceeded its stack limit (recursion too deep) in read(recursion)"
    );
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_reported_with_its_message() {
    let p = hostile(Limits::default(), vec![]).await;
    match p.read("{}", "panic", None).await.result {
        Err(PluginError::Panic {
            plugin,
            call,
            message,
        }) => {
            assert_eq!(plugin.to_string(), "test/hostile@6.6.6");
            assert_eq!(call.to_string(), "read(panic)");
            assert!(
                message.starts_with("hostile plugin indexed 3 of an empty list (at "),
                "{message}"
            );
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_hits_the_log_volume_limit() {
    let p = hostile(
        Limits {
            log_bytes_per_call: 64 << 10,
            ..Limits::default()
        },
        vec![],
    )
    .await;
    let (limit, _) = limit_of(p.read("{}", "log-flood", None).await.result);
    assert_eq!(limit, Limit::LogVolume(64 << 10));
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_flood_is_capped_and_stopped() {
    let p = hostile(
        Limits {
            log_bytes_per_call: 64 << 10,
            ..Limits::default()
        },
        vec![],
    )
    .await;
    let out = p.read("{}", "stdout-flood", None).await;
    // The pipe refuses writes past the cap; whatever the guest then does,
    // the call fails with the log volume limit.
    assert_eq!(limit_of(out.result).0, Limit::LogVolume(64 << 10));
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_file_finds_no_filesystem() {
    let p = hostile(Limits::default(), vec![]).await;
    match guest_error(p.read("{}", "read-file", None).await.result) {
        GuestError::AccessDenied(m) => assert!(m.starts_with("fs: "), "{m}"),
        other => panic!("{other:?}"),
    }
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_env_and_args_finds_nothing() {
    // The test process has variables (PATH, HOME...); none may reach the plugin.
    let p = hostile(Limits::default(), vec![]).await;
    match guest_error(p.read("{}", "read-env", None).await.result) {
        GuestError::AccessDenied(m) => assert_eq!(m, "env: no variables, no arguments"),
        other => panic!("{other:?}"),
    }
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_not_available() {
    let p = hostile(Limits::default(), vec![]).await;
    match guest_error(p.read("{}", "socket", None).await.result) {
        GuestError::AccessDenied(m) => assert!(m.starts_with("socket: "), "{m}"),
        other => panic!("{other:?}"),
    }
    host_still_serves(&p).await;
}

/// Run the `http` attack with `config`; return the guest error and the
/// sandbox's record of what it refused.
async fn http_attack(
    grants: Vec<HttpGrant>,
    config: serde_json::Value,
) -> (GuestError, Vec<SandboxEvent>, ConnectorPlugin) {
    let p = hostile(
        Limits {
            http_response_bytes: 1 << 20,
            ..Limits::default()
        },
        grants,
    )
    .await;
    let out = p.read(&config.to_string(), "http", None).await;
    (guest_error(out.result), out.events, p)
}

fn refused(events: &[SandboxEvent]) -> &HttpError {
    match events {
        [SandboxEvent::HttpRefused(e)] => e,
        other => panic!("expected one refused request, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_host_not_granted_is_refused() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let (err, events, p) = http_attack(
        vec![],
        serde_json::json!({"url": format!("{}/api/ping", crm.url())}),
    )
    .await;
    assert!(matches!(err, GuestError::AccessDenied(_)), "{err:?}");
    assert!(
        matches!(refused(&events), HttpError::OriginNotAllowed(m) if m.contains("not granted"))
    );
    assert!(
        crm.crm.lock().unwrap().requests.is_empty(),
        "nothing reached the server"
    );
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_loopback_or_metadata_is_refused_when_another_origin_is_granted() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let granted = vec![HttpGrant::public("https://api.example.com").unwrap()];
    for url in [
        format!("{}/api/ping", crm.url()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let (err, events, p) =
            http_attack(granted.clone(), serde_json::json!({ "url": url })).await;
        assert!(matches!(err, GuestError::AccessDenied(_)), "{err:?}");
        assert!(
            matches!(refused(&events), HttpError::OriginNotAllowed(_)),
            "{url}: {events:?}"
        );
        host_still_serves(&p).await;
    }
    assert!(crm.crm.lock().unwrap().requests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_internal_addresses_need_a_private_grant() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let url = format!("http://localhost:{}/limited", crm.addr.port());
    let public = vec![HttpGrant::public(&format!("http://localhost:{}", crm.addr.port())).unwrap()];
    let (_, events, _) = http_attack(public, serde_json::json!({ "url": url })).await;
    assert!(
        matches!(refused(&events), HttpError::AddressNotAllowed(_)),
        "{events:?}"
    );
    assert!(
        crm.crm.lock().unwrap().requests.is_empty(),
        "refused before connecting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_an_origin_not_granted_is_refused() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let grant = vec![HttpGrant::private(&crm.url()).unwrap()];
    let url = format!(
        "{}/redirect?to=http://169.254.169.254/latest/meta-data/",
        crm.url()
    );
    let (err, events, p) = http_attack(grant, serde_json::json!({ "url": url })).await;
    assert!(matches!(err, GuestError::AccessDenied(_)));
    assert!(
        matches!(refused(&events), HttpError::RedirectNotAllowed(m) if m.contains("169.254.169.254"))
    );
    assert_eq!(
        crm.crm.lock().unwrap().requests.len(),
        1,
        "the granted hop was made, the next was not"
    );
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_sent_to_an_origin_it_is_not_bound_to_is_refused() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let mut sb = sandbox(
        Limits::default(),
        vec![HttpGrant::private(&crm.url()).unwrap()],
    );
    sb.secrets
        .insert("token".into(), SecretValue::new("super-secret-token-value"));
    let p = ConnectorPlugin::open(&load(programs::HOSTILE), sb)
        .await
        .unwrap();
    let config = serde_json::json!({
        "url": format!("{}/api/ping", crm.url()),
        "header": ["authorization", "Bearer {{secret:token}}"],
    });
    let out = p.read(&config.to_string(), "http", None).await;
    assert!(
        matches!(refused(&out.events), HttpError::SecretNotAllowed(m) if m.contains("`token` is not bound"))
    );
    let shown = format!("{:?} {}", out.events, out.result.as_ref().unwrap_err());
    assert!(
        !shown.contains("super-secret"),
        "secret value leaked: {shown}"
    );
    assert!(crm.crm.lock().unwrap().requests.is_empty());
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_is_cut_off() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let grant = vec![HttpGrant::private(&crm.url()).unwrap()];
    let url = format!("{}/big?bytes={}", crm.url(), 3 << 20);
    let (err, events, p) = http_attack(grant, serde_json::json!({ "url": url })).await;
    assert!(matches!(err, GuestError::Internal(m) if m.contains("1048576")));
    assert_eq!(refused(&events), &HttpError::ResponseTooLarge(1 << 20));
    host_still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_answers_are_retried_after_retry_after() {
    let crm = tinycrm::start(tinycrm::seed(1), "t").await;
    let grant = vec![HttpGrant::private(&crm.url()).unwrap()];
    let p = hostile(Limits::default(), grant).await;
    let config = serde_json::json!({ "url": format!("{}/limited", crm.url()) });
    let page = p
        .read(&config.to_string(), "http", None)
        .await
        .result
        .unwrap();
    assert!(
        page.records[0].payload.contains("status 200"),
        "{:?}",
        page.records[0]
    );
    assert_eq!(
        crm.crm.lock().unwrap().requests.len(),
        2,
        "one 429, then one retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_store_is_private_and_quota_bound() {
    let store = KvStore::in_memory();
    let plugin = load(programs::HOSTILE);
    let open = |ns: &str, granted: u64| {
        let mut sb = sandbox(Limits::default(), vec![]);
        sb.grants.kv_bytes = granted;
        sb.kv = Some((store.clone(), ns.to_string()));
        ConnectorPlugin::open(&plugin, sb)
    };
    let a = open("test/hostile/conn-a", 4096).await.unwrap();
    let page = a
        .read(r#"{"kv_bytes": 100}"#, "kv", None)
        .await
        .result
        .unwrap();
    assert!(
        page.records[0]
            .payload
            .contains(r#"stored 100 bytes, keys [\"blob\"]"#),
        "{}",
        page.records[0].payload
    );

    // Declared 1024 bytes: the quota is the smaller of declared and granted.
    let out = a.read(r#"{"kv_bytes": 2000}"#, "kv", None).await;
    assert!(
        matches!(guest_error(out.result), GuestError::AccessDenied(m) if m.contains("quota of 1024"))
    );
    assert!(matches!(
        out.events.as_slice(),
        [SandboxEvent::KvRefused(_)]
    ));

    // Without a grant: no storage at all.
    let none = open("test/hostile/conn-b", 0).await.unwrap();
    let out = none.read("{}", "kv", None).await;
    assert!(
        matches!(out.events.as_slice(), [SandboxEvent::KvNotGranted]),
        "{:?}",
        out.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_go_to_the_plugin_log() {
    let p = hostile(Limits::default(), vec![]).await;
    let page = p.read("{}", "print", None).await.result.unwrap();
    assert!(
        page.records[0].payload.contains("Ok(()) Ok(())"),
        "{}",
        page.records[0].payload
    );
}

//! A hostile JavaScript plugin (`tests/programs/js-hostile`, QuickJS) is
//! held exactly as the Rust hostile programs are (`sandbox.rs`,
//! `egress.rs`, `secrets.rs`): an endless loop hits the time limit, memory
//! growth the memory limit, a request to an origin not granted and a secret
//! template sent to an origin the secret is not bound to are refused with
//! their named errors (and an echoing server gets nothing to echo), an
//! uncaught exception is an `internal` error rather than a trap, and the
//! host then still serves the plugin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo::limits::Limit;
use nexo::sandbox::http::HttpError;
use nexo::sandbox::policy::HttpGrant;
use nexo::state::SandboxEvent;
use nexo::{ConnectorPlugin, GuestError, Limits};
use nexo_tests::hostile::{guest_error, limit_of};
use nexo_tests::{echo, programs};

const SECRET: &str = "js-hostile-secret-91c3";

async fn hostile(limits: Limits, http: Vec<HttpGrant>) -> ConnectorPlugin {
    nexo_tests::hostile::open(
        programs::JS_HOSTILE,
        "test/js-hostile",
        SECRET,
        limits,
        http,
    )
    .await
}

/// After a hostile call, the same plugin answers a well-behaved one.
async fn still_serves(plugin: &ConnectorPlugin) {
    let page = plugin
        .read("{}", "ok", None)
        .await
        .result
        .expect("the plugin answers the next call");
    assert_eq!(page.records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_by_the_time_limit() {
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
    let (limit, msg) = limit_of(p.read("{}", "memory-bomb", None).await.result);
    assert_eq!(limit, Limit::Memory(32 << 20));
    assert_eq!(
        msg,
        "plugin test/js-hostile@0.1.0 exceeded its 32 MiB memory limit in read(memory-bomb)"
    );
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_origin_not_granted_is_refused() {
    let granted = echo::start_echo().await;
    let other = echo::start_echo().await;
    let p = hostile(
        Limits::default(),
        vec![HttpGrant::private(&granted.url()).unwrap()],
    )
    .await;
    let config = serde_json::json!({"url": format!("{}/x", other.url())});
    let out = p.read(&config.to_string(), "http", None).await;
    match out.events.as_slice() {
        [SandboxEvent::HttpRefused(HttpError::OriginNotAllowed(m))] => {
            assert!(m.contains("not granted"), "{m}")
        }
        other => panic!("expected one refused request, got {other:?}"),
    }
    let err = guest_error(out.result);
    assert!(
        matches!(&err, GuestError::AccessDenied(m) if m.contains(&other.url())),
        "{err:?}"
    );
    assert!(other.received_text().is_empty(), "nothing reached it");
    // The granted origin is reachable: the refusal was the grant's.
    let config = serde_json::json!({"url": format!("{}/x", granted.url())});
    let page = p
        .read(&config.to_string(), "http", None)
        .await
        .result
        .unwrap();
    assert!(
        page.records[0].payload.contains("\"status\":200"),
        "{:?}",
        page.records
    );
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_sent_to_an_origin_it_is_not_bound_to_is_refused_and_never_echoed() {
    let api = echo::start_echo().await;
    let p = hostile(
        Limits::default(),
        vec![HttpGrant::private(&api.url()).unwrap()],
    )
    .await;
    let config = serde_json::json!({
        "url": format!("{}/echo", api.url()),
        "header": ["authorization", "Bearer {{secret:token}}"],
    });
    let out = p.read(&config.to_string(), "http", None).await;
    assert!(
        matches!(out.events.as_slice(), [SandboxEvent::HttpRefused(HttpError::SecretNotAllowed(m))] if m.contains("`token` is not bound")),
        "{:?}",
        out.events
    );
    let shown = format!("{:?} {:?}", out.events, out.result);
    let err = guest_error(out.result);
    assert!(matches!(err, GuestError::AccessDenied(_)), "{err:?}");
    assert!(!shown.contains(SECRET), "secret value leaked: {shown}");
    assert!(
        api.received_text().is_empty(),
        "the echo server got nothing to echo"
    );
    still_serves(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_exception_is_an_internal_error_not_a_trap() {
    let p = hostile(Limits::default(), vec![]).await;
    let err = guest_error(p.read("{}", "throw", None).await.result);
    assert_eq!(
        err,
        GuestError::Internal("TypeError: not a plugin error".into())
    );
    still_serves(&p).await;
}

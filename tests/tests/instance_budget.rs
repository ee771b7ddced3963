//! One plugin, one share of the host: a component shaped to multiply
//! memories, tables or core instances is refused when it is loaded, with a
//! named error; and a plugin that holds every instance it can, sleeping in
//! its calls, never makes another plugin's call fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{
    ConnectorPlugin, Grants, Limits, LoadError, MapperPlugin, PluginRef, Runtime, RuntimeConfig,
    Sandbox,
};
use nexo_tests::{programs, shapes, tinycrm};

fn runtime(max_instances: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/nexo-test-cache"),
        ),
        max_instances,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn sandbox(id: &str, http: Vec<HttpGrant>) -> Sandbox {
    Sandbox {
        plugin: PluginRef {
            id: id.into(),
            version: "1.0.0".into(),
        },
        limits: Limits::default(),
        grants: Grants { http, kv_bytes: 0 },
        secrets: BTreeMap::new(),
        credentials: Default::default(),
        kv: None,
    }
}

#[test]
fn a_component_with_more_memories_than_a_plugin_may_hold_is_refused_at_load() {
    // Before the caps, 40 instances of one-page memories loaded (and, at
    // 960 pages each, used 2.4 GB in one call against a 64 MiB limit).
    let component = shapes::mapper_with_memories(40, 1).unwrap();
    let err = runtime(4).load(&component, "acme/hog@1.0.0").unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("acme/hog@1.0.0"), "{text}");
    assert!(text.contains("41 linear memories"), "{text}");
    assert!(text.contains("at most 4"), "{text}");
}

#[test]
fn a_component_with_more_core_instances_than_a_plugin_may_hold_is_refused_at_load() {
    let component = shapes::mapper_with_memories(100, 0).unwrap();
    let err = runtime(4).load(&component, "acme/many@1.0.0").unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("core instances"), "{err}");
    // Within the caps, the same shape loads.
    runtime(4)
        .load(
            &shapes::mapper_with_memories(3, 1).unwrap(),
            "acme/fits@1.0.0",
        )
        .unwrap();
}

/// A server that answers every request after `delay`.
async fn slow_server(delay: Duration) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        "late"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_holding_every_instance_it_can_starves_no_other_plugin() {
    // A pool of 8 instances; the hostile plugin starts 12 calls that each
    // sit in a slow request. Before each plugin had a share, its calls took
    // all 8 instances and every other plugin's call failed with the pool's
    // "maximum concurrent limit"; now it holds 2, its other calls queue
    // behind its own, and everyone else runs.
    let rt = runtime(8);
    let (url, server) = slow_server(Duration::from_millis(1500)).await;
    let grant = HttpGrant::private(&url).unwrap();
    let hostile = ConnectorPlugin::open(
        &rt.load_file(programs::HOSTILE_AUTHORITY.as_ref()).unwrap(),
        sandbox("test/greedy", vec![grant]),
    )
    .await
    .unwrap();
    let config = serde_json::json!({ "url": url }).to_string();
    let mut holds = Vec::new();
    for _ in 0..12 {
        let (hostile, config) = (hostile.clone(), config.clone());
        holds.push(tokio::spawn(async move {
            hostile.read(&config, "hold", None).await.result
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another connection: TinyCRM through the example connector, with its
    // token, tested (check) and run (read) while the hostile plugin holds.
    const TOKEN: &str = "instance-budget-token";
    let tiny = tinycrm::start(tinycrm::seed(5), TOKEN).await;
    let mut crm_sandbox = sandbox("test/crm", vec![HttpGrant::private(&tiny.url()).unwrap()]);
    crm_sandbox
        .secrets
        .insert("api_token".into(), SecretValue::new(TOKEN));
    let crm = ConnectorPlugin::open(
        &rt.load_file(programs::EXAMPLE_CRM.as_ref()).unwrap(),
        crm_sandbox,
    )
    .await
    .unwrap();
    let crm_config = serde_json::json!({ "base_url": tiny.url() }).to_string();
    let mapper = MapperPlugin::open(
        &rt.load_file(programs::CONTACT_MAPPER.as_ref()).unwrap(),
        sandbox("test/mapper", vec![]),
    )
    .unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        let (tester, config) = (crm.clone(), crm_config.clone());
        others.push(tokio::spawn(async move {
            tester.check(&config).await.result.map(|()| 0)
        }));
        let (reader, config) = (crm.clone(), crm_config.clone());
        others.push(tokio::spawn(async move {
            reader
                .read(&config, "contacts", None)
                .await
                .result
                .map(|page| page.records.len())
        }));
        let mapper = mapper.clone();
        others.push(tokio::spawn(async move {
            mapper.map("{}", &[]).await.result.map(|r| r.len())
        }));
    }
    for other in others {
        other
            .await
            .unwrap()
            .expect("another plugin's call succeeds while the hostile one holds its share");
    }
    // The hostile plugin's own calls were served in turn, none refused.
    for hold in holds {
        let page = hold
            .await
            .unwrap()
            .expect("each hold is served in its turn");
        assert_eq!(page.records.len(), 1);
    }
    server.abort();
}

/// An instance a 1.1 plugin keeps for its run's next call holds a pool
/// slot; left unused (a run waiting out a rate limit, a run that is over
/// but whose plugin is still held), the slot goes back to the pool within
/// seconds, and another plugin's call, waiting for it, runs. Without the
/// release the waiting call would find no slot until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_kept_for_the_next_call_gives_its_slot_back_when_unused() {
    // One slot in all: what the first plugin keeps is the whole pool.
    let rt = runtime(1);
    let first = MapperPlugin::open(
        &rt.load_file(programs::TEST_MAPPER.as_ref()).unwrap(),
        sandbox("test/first", vec![]),
    )
    .unwrap();
    first.map("{}", &[]).await.into_result().unwrap();
    let limits = Limits {
        call_timeout_ms: 15_000,
        ..Limits::default()
    };
    let second = MapperPlugin::open(
        &rt.load_file(programs::CONTACT_MAPPER.as_ref()).unwrap(),
        Sandbox {
            limits,
            ..sandbox("test/second", vec![])
        },
    )
    .unwrap();
    second
        .map("{}", &[])
        .await
        .into_result()
        .expect("the kept instance's slot came back to the pool");
    drop(first);
}

//! The runtime around the sandbox: loading and refusing components, the
//! on-disk compile cache, world checks, and many calls at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nexo::plugin::{MapOutcome, OpenError, Operation, Record};
use nexo::{
    ConnectorPlugin, Grants, Limits, LoadError, MapperPlugin, PluginRef, Runtime, RuntimeConfig,
    Sandbox,
};
use nexo_tests::connkit::mapped;
use nexo_tests::{load, programs, runtime};

fn sandbox(id: &str) -> Sandbox {
    Sandbox {
        plugin: PluginRef {
            id: id.into(),
            version: "1.0.0".into(),
        },
        limits: Limits::default(),
        grants: Grants::default(),
        secrets: BTreeMap::new(),
        credentials: Default::default(),
        kv: None,
    }
}

#[test]
fn a_mapper_that_imports_the_network_is_refused_at_load() {
    let err = runtime()
        .load_file(std::path::Path::new(programs::NETWORKED_MAPPER))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{msg}");
    assert!(
        msg.contains("mappers get no network and no storage"),
        "{msg}"
    );
    assert!(msg.contains("nexo:connector/http"), "{msg}");
}

#[test]
fn garbage_and_core_modules_are_refused_with_a_reason() {
    let err = runtime()
        .load(b"definitely not wasm", "junk.wasm")
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("junk.wasm is not a valid WebAssembly component"),
        "{err}"
    );
    let core = b"\0asm\x01\0\0\0";
    let err = runtime().load(core, "core.wasm").unwrap_err();
    assert!(
        err.to_string().contains("core module, not a component"),
        "{err}"
    );
    let err = runtime()
        .load_file(std::path::Path::new("/nonexistent/plugin.wasm"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read plugin file /nonexistent/plugin.wasm"),
        "{err}"
    );
}

#[tokio::test]
async fn worlds_are_checked_when_opening() {
    let crm = load(programs::EXAMPLE_CRM);
    let err = MapperPlugin::open(&crm, sandbox("x/crm")).unwrap_err();
    assert!(matches!(err, OpenError::WrongWorld { .. }));
    assert_eq!(
        err.to_string(),
        "plugin x/crm@1.0.0 is a connector, not a mapper"
    );
    let mapper = load(programs::CONTACT_MAPPER);
    let err = ConnectorPlugin::open(&mapper, sandbox("x/map"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin x/map@1.0.0 is a mapper, not a connector"
    );
}

#[test]
fn compiled_components_are_cached_on_disk_and_a_bad_artefact_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(programs::CONTACT_MAPPER).unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        max_instances: 4,
        ..RuntimeConfig::default()
    };

    let first = Runtime::new(config()).unwrap();
    let plugin = first.load(&bytes, "mapper").unwrap();
    let artefacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artefacts.len(), 1, "{artefacts:?}");
    let artefact = &artefacts[0];
    let name = artefact.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(plugin.sha256()),
        "keyed by the component's hash: {name}"
    );
    let written = std::fs::metadata(artefact).unwrap().modified().unwrap();

    // A new engine (same build and settings) maps the same artefact.
    let second = Runtime::new(config()).unwrap();
    second.load(&bytes, "mapper").unwrap();
    assert_eq!(
        std::fs::metadata(artefact).unwrap().modified().unwrap(),
        written,
        "not recompiled"
    );

    // A corrupt artefact is discarded and rebuilt, not trusted or fatal.
    std::fs::write(artefact, b"garbage").unwrap();
    let third = Runtime::new(config()).unwrap();
    third.load(&bytes, "mapper").unwrap();
    assert!(std::fs::metadata(artefact).unwrap().len() > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_at_once_each_get_their_own_store() {
    let mapper = MapperPlugin::open(&load(programs::CONTACT_MAPPER), sandbox("x/map")).unwrap();
    let contacts = nexo_tests::tinycrm::seed(50);
    let batch: Vec<Record> = contacts
        .into_iter()
        .map(|(id, c)| Record {
            stream: "contacts".into(),
            id,
            operation: Operation::Upsert,
            payload: c.to_string(),
            cursor: None,
        })
        .collect();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mapper = mapper.clone();
        let batch = batch[..(i % 50) + 1].to_vec();
        tasks.push(tokio::spawn(async move {
            (batch.len(), mapper.map("{}", &batch).await.into_result())
        }));
    }
    for t in tasks {
        let (n, out) = t.await.unwrap();
        assert_eq!(out.unwrap().len(), n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_rejects_a_bad_record_with_its_id() {
    let mapper = MapperPlugin::open(&load(programs::CONTACT_MAPPER), sandbox("x/map")).unwrap();
    let bad = Record {
        stream: "contacts".into(),
        id: "c9".into(),
        operation: Operation::Upsert,
        payload: r#"{"id":"c9","first_name":"A","last_name":"B","email":"nope","updated_at":"t"}"#
            .into(),
        cursor: None,
    };
    // The record alone is refused (contract 1.1), with the mapper's reason.
    let out = mapper.map("{}", &[bad]).await.into_result().unwrap();
    assert_eq!(
        out,
        [MapOutcome::Failed(nexo::GuestError::Rejected(
            "contact c9: `nope` is not an e-mail address".into()
        ))]
    );
    let err = mapper
        .map(r#"{"stream": 5}"#, &[])
        .await
        .into_result()
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid config: field `stream`"),
        "{err}"
    );
}

/// The oldest supported `nexo:connector` 1.x, built without the SDK against a
/// frozen copy of its WIT, keeps loading and running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_wit_1_0_still_loads_and_runs() {
    let plugin = load(programs::WIT_1_0_FIXTURE);
    assert_eq!(plugin.info().wit_version(), Some("1.0.0"));
    assert_eq!(
        plugin.info().embedded("sdk"),
        None,
        "built without nexo-sdk"
    );
    let c = ConnectorPlugin::open(&plugin, sandbox("old/fixture"))
        .await
        .unwrap();
    c.check("{}").await.into_result().unwrap();
    let page = c.read("{}", "items", None).await.into_result().unwrap();
    assert_eq!(page.records.len(), 3);
    let written = c
        .write("{}", "items", &page.records)
        .await
        .into_result()
        .unwrap();
    assert!(
        matches!(&written[0].outcome, nexo::plugin::WriteOutcome::Created(id) if id == "dest-item-1")
    );
}

/// The configurable test mapper: `set`, `drop` and `filter_field` shape
/// upserts, deletes pass through, and its `malformed` output is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mapper_sets_drops_filters_and_its_malformed_output_is_refused() {
    let mapper =
        MapperPlugin::open(&load(programs::TEST_MAPPER), sandbox("x/test-mapper")).unwrap();
    let record = |id: &str, operation, payload: serde_json::Value| Record {
        stream: "contacts".into(),
        id: id.into(),
        operation,
        payload: payload.to_string(),
        cursor: Some(format!("key-{id}")),
    };
    let batch = [
        record(
            "c1",
            Operation::Upsert,
            serde_json::json!({"id": "c1", "city": "London", "phone": "1", "vip": true}),
        ),
        record("c2", Operation::Delete, serde_json::json!({})),
        record(
            "c3",
            Operation::Upsert,
            serde_json::json!({"id": "c3", "vip": false}),
        ),
    ];
    let config = serde_json::json!({
        "set": {"city": "Paris", "source": "a"},
        "drop": ["phone"],
        "filter_field": "vip",
    });
    let out = mapped(
        mapper
            .map(&config.to_string(), &batch)
            .await
            .into_result()
            .unwrap(),
    );
    let kept: Vec<(&str, Operation, Option<&str>)> = out
        .iter()
        .map(|r| (r.id.as_str(), r.operation, r.cursor.as_deref()))
        .collect();
    assert_eq!(
        kept,
        [
            ("c1", Operation::Upsert, Some("key-c1")),
            ("c2", Operation::Delete, Some("key-c2")),
        ],
        "c3 is filtered out"
    );
    let payload: serde_json::Value = serde_json::from_str(&out[0].payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"id": "c1", "city": "Paris", "source": "a", "vip": true})
    );
    assert_eq!(out[1].payload, batch[1].payload);

    let err = mapper
        .map(r#"{"malformed": true}"#, &batch)
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(err, nexo::PluginError::InvalidOutput { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not a JSON object"), "{err}");
}

/// Contract 1.1 lets the host call one instance more than once within a
/// run: a mapper opened once (a run) serves its calls from a kept instance,
/// a plugin opened again (the next run) starts fresh, and an instance that
/// trapped is never called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_1_instance_serves_the_calls_of_a_run_and_never_outlives_a_trap() {
    let open = || MapperPlugin::open(&load(programs::TEST_MAPPER), sandbox("x/reuse")).unwrap();
    let batch = [Record {
        stream: "contacts".into(),
        id: "c1".into(),
        operation: Operation::Upsert,
        payload: r#"{"id":"c1"}"#.into(),
        cursor: None,
    }];
    let stamp = async |m: &MapperPlugin, config: &str| -> Result<i64, String> {
        let out = m.map(config, &batch).await.into_result();
        let out = mapped(out.map_err(|e| e.to_string())?);
        let payload: serde_json::Value = serde_json::from_str(&out[0].payload).unwrap();
        Ok(payload["calls"].as_i64().unwrap())
    };
    let config = r#"{"stamp_calls": "calls"}"#;
    let run = open();
    assert_eq!(stamp(&run, config).await, Ok(1));
    assert_eq!(stamp(&run, config).await, Ok(2), "the run's instance, kept");
    assert_eq!(stamp(&run.clone(), config).await, Ok(3), "shared by clones");

    let next_run = open();
    assert_eq!(
        stamp(&next_run, config).await,
        Ok(1),
        "a new run starts fresh"
    );

    let err = stamp(&run, r#"{"trap": true}"#).await.unwrap_err();
    assert!(err.contains("trapping on purpose"), "{err}");
    assert_eq!(
        stamp(&run, config).await,
        Ok(1),
        "the trapped instance is gone"
    );

    // Warming up starts a new instance (proving the plugin starts under its
    // limits) instead of taking the kept one; the next call gets it.
    run.warm_up().await.into_result().unwrap();
    assert_eq!(
        stamp(&run, config).await,
        Ok(1),
        "warm_up started a new instance"
    );
}

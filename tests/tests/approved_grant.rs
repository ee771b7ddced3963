//! The approved grant is the only authority: an installed plugin runs with
//! what its signed manifest asked for and the admin granted, whatever its
//! live `spec()` says. A signed manifest that lies about its component is
//! refused at install; a component whose `spec()` turns greedy after it was
//! packed and installed reaches nothing beyond its approval, and the excess
//! is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use nexo::Limits;
use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::{BundleError, VetError, pack};
use nexo::connections::{Connections, NewConnection};
use nexo::registry::{Registry, RegistryError, grant_all};
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo_tests::{greedy, runtime};

const TOKEN: &str = "approved-only-token-5c1e";
/// A server on 127.0.0.1 that keeps every `Authorization` it receives.
async fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let keep = keep.clone();
        async move {
            if let Some(v) = headers.get("authorization") {
                keep.lock()
                    .unwrap()
                    .push(v.to_str().unwrap_or_default().to_string());
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// The connection `vendor` to the greedy connector, sending to `api`,
/// with its token and private grants to `origins`.
fn vendor_connection(api: &str, origins: &[&str]) -> NewConnection {
    NewConnection {
        name: "vendor".into(),
        plugin_id: "acme/greedy".into(),
        pinned_version: None,
        environment: Environment::Sandbox,
        config: serde_json::json!({ "url": api }),
        secrets: BTreeMap::from([("token".to_string(), SecretValue::new(TOKEN))]),
        grants: ConnectionGrants {
            http: vec![],
            private_http: origins.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        },
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    connections: Connections,
    key: SecretKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("nexo.db")).unwrap();
    let key = SecretKey::generate("Acme").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = Registry::new(db, runtime().clone(), dir.path().join("bundles"));
    let connections = Connections::new(registry.clone(), Sealer::from_key(&[7; 32]));
    Fixture {
        _dir: dir,
        registry,
        connections,
        key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_manifest_that_lies_about_its_component_is_refused_at_install() {
    // Before install asked the component again, the vendor's signature was
    // enough: this bundle installed, showing "token → localhost" while the
    // component sent it anywhere.
    let f = fixture();
    // The official pack refuses the greedy component outright...
    let err = greedy::packed(&f.key, greedy::component_greedy_at(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, VetError::Bundle(BundleError::ManifestMismatch(_))),
        "{err}"
    );
    // ...so the attacker packs the honest one, swaps the component in and
    // signs the edited manifest with their (trusted) key.
    let bundle = greedy::lying_bundle(&f.key).await;
    let err = f
        .registry
        .review(bundle, "lying.nexo", false, None)
        .await
        .expect_err("the lying bundle is refused");
    assert!(
        matches!(err, RegistryError::Bundle(BundleError::ManifestMismatch(_))),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("secrets are"), "{text}");
    assert!(text.contains("http://*:*"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_that_turns_greedy_after_install_reaches_only_what_was_approved() {
    let f = fixture();
    let (api_port, api_seen) = recorder().await;
    let (collector_port, collector_seen) = recorder().await;
    let api = format!("http://localhost:{api_port}");
    let collector = format!("http://127.0.0.1:{collector_port}");

    // Packed and installed while the spec is honest (token → localhost)...
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let switch_at = now + 3;
    let bundle = greedy::packed(&f.key, greedy::component_greedy_at(switch_at))
        .await
        .unwrap();
    let review = f
        .registry
        .review(bundle.to_bytes().unwrap(), "greedy.nexo", false, None)
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    f.registry.install(review, &grant).unwrap();
    // ...and the admin lets the connection reach both systems.
    f.connections
        .add(vendor_connection(&api, &[&api, &collector]))
        .unwrap();

    // Once the switch is past, the live spec binds the token everywhere.
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= switch_at
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, connector) = f
        .connections
        .open("vendor", Limits::default())
        .await
        .unwrap();
    // The token goes where the approval binds it...
    let to_api = serde_json::json!({ "url": api }).to_string();
    connector
        .read(&to_api, "send", None)
        .await
        .result
        .expect("the approved origin gets the token");
    assert_eq!(
        api_seen.lock().unwrap().clone(),
        vec![format!("Bearer {TOKEN}")]
    );
    // ...and nowhere else, although the spec now says otherwise.
    let to_collector = serde_json::json!({ "url": collector }).to_string();
    let outcome = connector.read(&to_collector, "send", None).await;
    assert!(outcome.result.is_err(), "the request is refused");
    assert!(
        collector_seen.lock().unwrap().is_empty(),
        "the collector received {:?}",
        collector_seen.lock().unwrap()
    );

    // And the admin is told what the plugin asked for.
    let excess = connector.beyond_approval();
    assert!(
        excess
            .iter()
            .any(|e| e.contains("`token`") && e.contains("http://*:*")),
        "the greedy spec is reported: {excess:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_runs_within_the_memory_its_manifest_asked_for() {
    use nexo::sync::RunOptions;
    use nexo::sync::store::PipelineStore;
    use nexo_tests::synckit::{Kit, pipeline};
    use nexo_tests::tinycrm;
    // The engine's limit is 64 MiB; this mapper's signed manifest asks for
    // 1 MiB, so 1 MiB is all it gets. Before, a mapper ran with the
    // engine's limit whatever its manifest said.
    let kit = Kit::new(tinycrm::seed(2), Default::default(), 10).await;
    let src: ManifestSource = toml::from_str(
        "id = \"acme/small-mapper\"\nversion = \"1.0.0\"\nkind = \"mapper\"\ndescription = \"d\"\nvendor = \"Acme\"\n[capabilities]\nmemory_bytes = 1048576\n",
    )
    .unwrap();
    let bytes = pack(
        runtime(),
        src,
        std::fs::read(nexo_tests::programs::TEST_MAPPER).unwrap(),
        Some(&kit.key),
    )
    .await
    .unwrap()
    .to_bytes()
    .unwrap();
    let review = kit
        .registry
        .review(bytes, "small.nexo", false, None)
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    kit.registry.install(review, &grant).unwrap();
    // Apply calls the mapper once with an empty batch, in the sandbox a
    // run gives it: held to 1 MiB, it cannot run, and apply says so.
    let p = nexo::sync::Pipeline::from_toml(
        &pipeline(
            "small",
            "",
            "[[mappers]]\nplugin = \"acme/small-mapper\"\nconfig = {}",
        ),
        "small.toml",
    )
    .unwrap();
    let err = kit
        .engine
        .apply(&p)
        .await
        .expect_err("the mapper is held to 1 MiB");
    assert!(
        err.to_string().contains("mappers[0].plugin")
            && err.to_string().contains("exceeded its 1 MiB memory limit"),
        "{err}"
    );
    // A definition saved before (by an older host) fails its run the same way.
    kit.db.save_pipeline(&p).unwrap();
    let err = kit
        .engine
        .run("small", RunOptions::default())
        .await
        .expect_err("the mapper is held to 1 MiB");
    assert!(
        err.to_string().contains("exceeded its 1 MiB memory limit"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_source_asks_beyond_its_approval_says_so_in_its_log() {
    use nexo::sync::RunOptions;
    use nexo::sync::store::RunStore;
    use nexo_tests::synckit::Kit;
    // Before, what the live spec asked beyond the install went unseen: the
    // run log named only the plugins' versions.
    let kit = Kit::new(Default::default(), Default::default(), 10).await;
    let (api_port, _) = recorder().await;
    let api = format!("http://localhost:{api_port}");
    let switch_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let bundle = greedy::packed(&kit.key, greedy::component_greedy_at(switch_at))
        .await
        .unwrap();
    let review = kit
        .registry
        .review(bundle.to_bytes().unwrap(), "greedy.nexo", false, None)
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    kit.registry.install(review, &grant).unwrap();
    kit.connections
        .add(vendor_connection(&api, &[&api]))
        .unwrap();
    kit.apply(
        "name = \"from-vendor\"\nentity = \"contact\"\n\
         [source]\nconnection = \"vendor\"\nstream = \"send\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n",
    )
    .await;
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= switch_at
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Whatever the destination makes of the record, the run has a log.
    let _ = kit.engine.run("from-vendor", RunOptions::default()).await;
    let runs = kit.db.runs(&Default::default()).unwrap();
    let log = kit.db.run_log(runs[0].id).unwrap();
    assert!(
        log.iter().any(|(_, level, message)| level == "warn"
            && message.contains("source plugin acme/greedy@1.0.0 asked at run time")
            && message.contains("`token`")),
        "{log:?}"
    );
}

//! Connectors ask only for the hosts they need: the shipped manifests name
//! no wildcard origin, installing HubSpot or Xero shows only the vendor's
//! host, an old config that still points `base_url` at a sandbox is refused
//! naming the field, and a sandbox is reached only through an origin
//! override the admin sets on a sandbox connection — refused on a
//! production one, and for an origin the plugin does not name. The
//! self-hosted ones (Tryton, hledger) ask to reach the server the admin
//! names on each connection, shown as such at install: a connection that
//! names nothing reaches nothing, and their key goes exactly to the server
//! named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use nexo::bundle::manifest::ManifestSource;
use nexo::connections::{ConnectionError, NewConnection};
use nexo::sandbox::secrets::SecretValue;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo_tests::tryton::Host;
use nexo_tests::{programs, runtime};
use serde_json::json;

const TOKEN: &str = "vendor-origins-token-4be1";

fn manifest_path(folder: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(folder)
        .join("nexo-plugin.toml")
}

#[test]
fn the_shipped_connectors_declare_no_wildcard_origin() {
    for folder in ["hubspot", "xero", "tryton", "hledger"] {
        let path = manifest_path(folder);
        let text = std::fs::read_to_string(&path).unwrap();
        let source = ManifestSource::read(&path).unwrap();
        let caps = &source.capabilities;
        let origins = caps
            .http_origins
            .iter()
            .chain(caps.secrets.iter().flat_map(|s| s.origins.iter()));
        for o in origins {
            assert!(!o.contains('*'), "{folder} declares {o}");
        }
        // And nothing else in the file says `*` either (a comment aside).
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(!line.contains('*'), "{folder}: {line}");
        }
    }
}

/// The capabilities the install screen shows for a shipped connector.
async fn shown_at_install(folder: &str, wasm: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let db = nexo::store::Database::open(&dir.path().join("nexo.db")).unwrap();
    let key = nexo::bundle::keys::SecretKey::generate("Nexo").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = nexo::registry::Registry::new(db, runtime().clone(), dir.path().join("b"));
    let src = ManifestSource::read(&manifest_path(folder)).unwrap();
    let bytes = nexo::bundle::pack(runtime(), src, std::fs::read(wasm).unwrap(), Some(&key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap();
    let review = registry.review(bytes, folder, false, None).await.unwrap();
    review.requested.iter().map(|c| c.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_hubspot_or_xero_shows_only_the_vendors_host() {
    for (folder, wasm, host) in [
        ("hubspot", programs::HUBSPOT, "https://api.hubapi.com"),
        ("xero", programs::XERO, "https://api.xero.com"),
    ] {
        let shown = shown_at_install(folder, wasm).await;
        assert!(!shown.is_empty());
        for line in &shown {
            assert!(!line.contains('*'), "{folder}: {line}");
            assert!(
                !line.contains("any site"),
                "{folder} asks for any site: {line}"
            );
        }
        assert!(
            shown.iter().any(|l| l == &format!("talk to {host}")),
            "{folder}: {shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|l| l.contains("use the secret")
                    && l.ends_with(&format!("sent only to {host}"))),
            "{folder}: {shown:?}"
        );
    }
}

fn xero_connection(
    name: &str,
    environment: Environment,
    config: serde_json::Value,
    overrides: &[(&str, &str)],
) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "nexo/xero".into(),
        pinned_version: None,
        environment,
        config,
        secrets: BTreeMap::from([("access_token".to_string(), SecretValue::new(TOKEN))]),
        grants: ConnectionGrants {
            origin_overrides: overrides
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_are_for_sandbox_connections_and_the_plugins_own_origins_only() {
    let host = Host::new().await;
    let config = json!({"tenant_id": "t-1"});

    // A config that still points at a sandbox is refused, naming the field.
    let err = host
        .connections
        .add(xero_connection(
            "old",
            Environment::Sandbox,
            json!({"tenant_id": "t-1", "base_url": "http://127.0.0.1:9"}),
            &[],
        ))
        .unwrap_err();
    assert!(
        matches!(err, ConnectionError::InvalidConfig { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("base_url"), "{err}");

    // An override on a production connection: refused.
    let err = host
        .connections
        .add(xero_connection(
            "prod",
            Environment::Production,
            config.clone(),
            &[("https://api.xero.com", "http://127.0.0.1:9")],
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("only for sandbox connections"),
        "{err}"
    );

    // An origin the plugin does not declare: refused, naming the ones it does.
    let err = host
        .connections
        .add(xero_connection(
            "evil",
            Environment::Sandbox,
            config.clone(),
            &[("https://evil.example", "http://127.0.0.1:9")],
        ))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("does not declare the origin https://evil.example")
            && text.contains("https://api.xero.com:443"),
        "{text}"
    );

    // A target that is not one exact origin: refused.
    let err = host
        .connections
        .add(xero_connection(
            "path",
            Environment::Sandbox,
            config.clone(),
            &[("https://api.xero.com", "http://127.0.0.1:9/api")],
        ))
        .unwrap_err();
    assert!(err.to_string().contains("scheme://host:port"), "{err}");
    assert!(host.connections.get("prod").is_err());
    assert!(host.connections.get("evil").is_err());

    // The sandbox one is saved, normalised, and read back.
    let row = host
        .connections
        .add(xero_connection(
            "books",
            Environment::Sandbox,
            config,
            &[("https://api.xero.com", "http://127.0.0.1:9")],
        ))
        .unwrap();
    assert_eq!(
        row.grants.origin_overrides,
        BTreeMap::from([(
            "https://api.xero.com:443".to_string(),
            "http://127.0.0.1:9".to_string()
        )])
    );
    assert_eq!(host.connections.get("books").unwrap(), row);

    // A row turned production behind the registry's back is not obeyed.
    host.db
        .lock()
        .unwrap()
        .execute(
            "UPDATE connections SET environment = 'production' WHERE name = 'books'",
            [],
        )
        .unwrap();
    let err = host
        .connections
        .open("books", nexo::Limits::default())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("only for sandbox connections"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_a_self_hosted_connector_shows_the_server_named_on_each_connection() {
    for (folder, wasm) in [("tryton", programs::TRYTON), ("hledger", programs::HLEDGER)] {
        let shown = shown_at_install(folder, wasm).await;
        assert!(
            shown
                .iter()
                .any(|l| l
                    == "talk to the server you name on each connection (a self-hosted system)"),
            "{folder}: {shown:?}"
        );
        for line in &shown {
            assert!(!line.contains('*'), "{folder}: {line}");
        }
    }
    let shown = shown_at_install("tryton", programs::TRYTON).await;
    assert!(
        shown
            .iter()
            .any(|l| l.starts_with("use the secret `application_key`")
                && l.ends_with("sent only to the server you name on each connection")),
        "{shown:?}"
    );
}

/// A server on 127.0.0.1 that keeps the `Authorization` of every request
/// it receives (`""` when none), answering 404.
async fn recorder() -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let keep = keep.clone();
        async move {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            keep.lock().unwrap().push(auth);
            (axum::http::StatusCode::NOT_FOUND, "no such thing")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen, task)
}

const KEY: &str = "self-hosted-application-key-61d0";

fn tryton_connection(name: &str, server: &str, private: &[&str]) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "nexo/tryton".into(),
        pinned_version: None,
        environment: Environment::Sandbox,
        config: json!({"base_url": format!("{server}/nexo/"), "page_size": 50, "company": 1,
                       "account_category": 1, "payment_term": 1}),
        secrets: BTreeMap::from([("application_key".to_string(), SecretValue::new(KEY))]),
        grants: ConnectionGrants {
            private_http: private.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_connector_reaches_exactly_the_server_its_connection_names() {
    let host = Host::new().await;
    let (erp, erp_seen, _a) = recorder().await;
    let (other, other_seen, _b) = recorder().await;

    // A connection that names no server reaches none.
    host.connections
        .add(tryton_connection("nowhere", &erp, &[]))
        .unwrap();
    let err = host.connections.test("nowhere").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("is not the server this connection names")
            && err.to_string().contains("--grant-http"),
        "{err}"
    );
    assert!(
        erp_seen.lock().unwrap().is_empty(),
        "{:?}",
        erp_seen.lock().unwrap()
    );

    // One that names the ERP: the key goes there...
    host.connections
        .add(tryton_connection("erp", &erp, &[&erp]))
        .unwrap();
    let _ = host.connections.test("erp").await;
    assert_eq!(
        erp_seen.lock().unwrap().first().cloned(),
        Some(format!("Bearer {KEY}"))
    );
    // ...and a config pointing elsewhere reaches nothing there.
    host.connections
        .add(tryton_connection("elsewhere", &other, &[&erp]))
        .unwrap();
    assert!(host.connections.test("elsewhere").await.is_err());
    assert!(other_seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_connector_is_not_installed_without_that_capability_granted() {
    let dir = tempfile::tempdir().unwrap();
    let db = nexo::store::Database::open(&dir.path().join("nexo.db")).unwrap();
    let key = nexo::bundle::keys::SecretKey::generate("Nexo").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = nexo::registry::Registry::new(db, runtime().clone(), dir.path().join("b"));
    let src = ManifestSource::read(&manifest_path("tryton")).unwrap();
    let bytes = nexo::bundle::pack(
        runtime(),
        src,
        std::fs::read(programs::TRYTON).unwrap(),
        Some(&key),
    )
    .await
    .unwrap()
    .to_bytes()
    .unwrap();
    let review = registry.review(bytes, "tryton", false, None).await.unwrap();
    // Everything but the server named on each connection.
    let mut grant = nexo::registry::grant_all(review.to_grant());
    assert!(grant.connection_origins);
    grant.connection_origins = false;
    let err = registry.install(review, &grant).unwrap_err();
    assert!(
        err.to_string()
            .contains("talk to the server you name on each connection"),
        "{err}"
    );
}

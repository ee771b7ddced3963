//! Connections: config validated against the plugin's schema, secrets sealed
//! at rest, grants per system, versions pinned or followed, and plugins not
//! removed from under their connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nexo::Limits;
use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::pack;
use nexo::connections::{ConnectionError, Connections, NewConnection};
use nexo::registry::{Registry, RegistryError, grant_all};
use nexo::sandbox::secrets::SecretValue;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo_tests::{programs, runtime, tinycrm};
use serde_json::json;

const TOKEN: &str = "tiny-secret-token-93af";

struct Fixture {
    _dir: tempfile::TempDir,
    db: Database,
    registry: Registry,
    connections: Connections,
    key: SecretKey,
}

async fn bundle(key: &SecretKey, version: &str, wasm: &str, caps: &str) -> Vec<u8> {
    let src: ManifestSource = toml::from_str(&format!(
        "id = \"acme/crm\"\nversion = \"{version}\"\nkind = \"connector\"\ndescription = \"d\"\nvendor = \"Acme\"\n[capabilities]\n{caps}"
    ))
    .unwrap();
    pack(runtime(), src, std::fs::read(wasm).unwrap(), Some(key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap()
}

const CRM_CAPS: &str = r#"http_origins = ["https://*:*", "http://*:*"]
secrets = [{ name = "api_token", description = "t", origins = ["https://*:*", "http://*:*"] }]"#;

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("nexo.db")).unwrap();
    let key = SecretKey::generate("Acme").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
    let review = registry
        .review(
            bundle(&key, "1.0.0", programs::EXAMPLE_CRM, CRM_CAPS).await,
            "b",
            false,
            None,
        )
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    registry.install(review, &grant).unwrap();
    let connections = Connections::new(registry.clone(), Sealer::from_key(&[9; 32]));
    Fixture {
        _dir: dir,
        db,
        registry,
        connections,
        key,
    }
}

fn new(name: &str, crm: &tinycrm::Server, config: serde_json::Value) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "acme/crm".into(),
        pinned_version: None,
        environment: Environment::Sandbox,
        config,
        secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
        grants: ConnectionGrants {
            http: vec![],
            private_http: vec![crm.url()],
            ..Default::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_checks_against_the_real_system_with_its_sealed_secret() {
    let f = fixture().await;
    let crm = tinycrm::start(tinycrm::seed(3), TOKEN).await;
    f.connections
        .add(new("crm-sandbox", &crm, json!({"base_url": crm.url()})))
        .unwrap();
    f.connections.test("crm-sandbox").await.unwrap();
    assert_eq!(
        crm.crm.lock().unwrap().auth_headers,
        vec![format!("Bearer {TOKEN}")]
    );
    assert_eq!(
        f.connections.secret_names("crm-sandbox").unwrap(),
        vec!["api_token"]
    );

    // At rest the token is sealed: not in the database file in clear.
    let raw = std::fs::read(f._dir.path().join("nexo.db")).unwrap();
    let wal = std::fs::read(f._dir.path().join("nexo.db-wal")).unwrap_or_default();
    assert!(!raw.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    assert!(!wal.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));

    // Another key cannot open it, and says why.
    let wrong = Connections::new(f.registry.clone(), Sealer::from_key(&[1; 32]));
    let err = wrong.test("crm-sandbox").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be opened with this secret key"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_configs_and_secrets_are_refused_naming_the_field_and_nothing_is_saved() {
    let f = fixture().await;
    let crm = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let err = f
        .connections
        .add(new("c1", &crm, json!({"base_url": 42})))
        .unwrap_err();
    assert!(
        matches!(err, ConnectionError::InvalidConfig { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("field `/base_url`"), "{err}");
    let err = f
        .connections
        .add(new("c1", &crm, json!({"base_url": "x", "bogus": 1})))
        .unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = f.connections.add(new("c1", &crm, json!({}))).unwrap_err();
    assert!(err.to_string().contains("base_url"), "{err}");

    let mut c = new("c1", &crm, json!({"base_url": crm.url()}));
    c.secrets.clear();
    let err = f.connections.add(c).unwrap_err();
    assert!(
        err.to_string().contains("needs the secret `api_token`"),
        "{err}"
    );
    let mut c = new("c1", &crm, json!({"base_url": crm.url()}));
    c.secrets.insert("other".into(), SecretValue::new("x"));
    let err = f.connections.add(c).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not use a secret named `other`"),
        "{err}"
    );
    let err = f
        .connections
        .add(new("Bad Name", &crm, json!({"base_url": crm.url()})))
        .unwrap_err();
    assert!(matches!(err, ConnectionError::BadName(_)));
    assert!(
        f.db.connection_names(None).unwrap().is_empty(),
        "nothing saved"
    );

    f.connections
        .add(new("c1", &crm, json!({"base_url": crm.url()})))
        .unwrap();
    let err = f
        .connections
        .add(new("c1", &crm, json!({"base_url": crm.url()})))
        .unwrap_err();
    assert!(matches!(err, ConnectionError::Exists(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_pin_a_version_or_follow_the_active_one_and_keep_plugins_installed() {
    let f = fixture().await;
    let crm = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let mut pinned = new("pinned", &crm, json!({"base_url": crm.url()}));
    pinned.pinned_version = Some(semver::Version::new(1, 0, 0));
    f.connections.add(pinned).unwrap();
    f.connections
        .add(new("follows", &crm, json!({"base_url": crm.url()})))
        .unwrap();

    let v2 = bundle(
        &f.key,
        "2.0.0",
        programs::HOSTILE,
        r#"http_origins = ["http://*:*"]
secrets = [{ name = "token", description = "t", origins = ["http://127.0.0.1:1"] }]
kv_bytes = 1024"#,
    )
    .await;
    let review = f
        .registry
        .review(v2, "v2", false, Some("acme/crm"))
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    f.registry.install(review, &grant).unwrap();

    let (_, p) = f
        .connections
        .open("pinned", Limits::default())
        .await
        .unwrap();
    assert_eq!(p.plugin().version, "1.0.0");
    assert_eq!(p.spec().streams, vec!["contacts".to_string()]);
    let (_, p) = f
        .connections
        .open("follows", Limits::default())
        .await
        .unwrap();
    assert_eq!(p.plugin().version, "2.0.0");

    let err = f.registry.remove("acme/crm", false).unwrap_err();
    assert!(
        matches!(&err, RegistryError::InUse { connections, .. } if connections == &["follows", "pinned"]),
        "{err}"
    );
    assert!(err.to_string().contains("follows, pinned"), "{err}");
    assert!(
        f.db.active_version("acme/crm").unwrap().is_some(),
        "still installed"
    );
    let removed = f.registry.remove("acme/crm", true).unwrap();
    assert_eq!(removed, vec!["follows", "pinned"]);
    assert!(f.db.active_version("acme/crm").unwrap().is_none());
    assert!(f.db.connection_names(None).unwrap().is_empty());
}

//! The plugin registry: install only with a grant, upgrade with a review of
//! new capabilities, roll back with the old grants, versions side by side,
//! and a run in flight keeps the version it started with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::{Bundle, BundleError, pack};
use nexo::registry::{Capability, Registry, RegistryError, grant_all};
use nexo::store::Database;
use nexo::store::registry::CapabilityGrant;
use nexo::{ConnectorPlugin, Grants, Limits, PluginRef, Sandbox};
use nexo_tests::{programs, runtime};

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    key: SecretKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::in_memory().unwrap();
    let key = SecretKey::generate("Acme Inc").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = Registry::new(db, runtime().clone(), dir.path().join("bundles"));
    Fixture {
        _dir: dir,
        registry,
        key,
    }
}

fn source(version: &str, extra: &str) -> ManifestSource {
    toml::from_str(&format!(
        r#"
        id = "acme/crm"
        version = "{version}"
        kind = "connector"
        description = "Acme CRM"
        vendor = "Acme Inc"
        {extra}
        "#
    ))
    .unwrap()
}

/// acme/crm 1.0.0: the example CRM connector.
async fn v1(f: &Fixture) -> Vec<u8> {
    let src = source(
        "1.0.0",
        r#"[capabilities]
        http_origins = ["https://*:*", "http://*:*"]
        secrets = [{ name = "api_token", description = "API token", origins = ["https://*:*", "http://*:*"] }]"#,
    );
    let component = std::fs::read(programs::EXAMPLE_CRM).unwrap();
    pack(runtime(), src, component, Some(&f.key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// acme/crm 2.0.0: asks for a new secret and storage.
async fn v2(f: &Fixture) -> Vec<u8> {
    let src = source(
        "2.0.0",
        r#"[capabilities]
        http_origins = ["http://*:*"]
        secrets = [{ name = "token", description = "a token", origins = ["http://127.0.0.1:1"] }]
        kv_bytes = 1024"#,
    );
    let component = std::fs::read(programs::HOSTILE).unwrap();
    pack(runtime(), src, component, Some(&f.key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap()
}

#[tokio::test]
async fn install_needs_a_grant_and_is_atomic() {
    let f = fixture();
    let review = f
        .registry
        .review(v1(&f).await, "crm-1.nexo", false, None)
        .await
        .unwrap();
    let shown: Vec<String> = review.to_grant().iter().map(|c| c.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("use the secret `api_token` (API token), sent only to")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.contains("talk to any site matching https://*:*")),
        "{shown:?}"
    );

    let err = f
        .registry
        .install(review, &CapabilityGrant::default())
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NotGranted { ref missing, .. } if missing.len() == 3),
        "{err}"
    );
    assert!(
        f.registry
            .db()
            .active_version("acme/crm")
            .unwrap()
            .is_none(),
        "nothing installed"
    );

    let review = f
        .registry
        .review(v1(&f).await, "crm-1.nexo", false, None)
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    let row = f.registry.install(review, &grant).unwrap();
    assert_eq!(row.version.to_string(), "1.0.0");
    assert_eq!(row.signer_key_id, Some(f.key.public().key_id()));
    let (active, plugin) = f.registry.load_active("acme/crm").unwrap();
    assert_eq!(active.version, row.version);
    assert_eq!(plugin.info().embedded("plugin"), Some("example-crm"));

    let err = f
        .registry
        .review(v1(&f).await, "again.nexo", false, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::AlreadyInstalled { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn upgrade_reviews_new_capabilities_and_rollback_restores_the_old_version_and_grants() {
    let f = fixture();
    let review = f
        .registry
        .review(v1(&f).await, "crm-1.nexo", false, None)
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    let v1_row = f.registry.install(review, &grant).unwrap();

    // A run starts on 1.0.0 and holds its plugin.
    let (_, in_flight) = f.registry.load_active("acme/crm").unwrap();

    let review = f
        .registry
        .review(v2(&f).await, "crm-2.nexo", false, Some("acme/crm"))
        .await
        .unwrap();
    let new: Vec<&Capability> = review.to_grant().iter().collect();
    assert!(new.contains(&&Capability::Storage(1024)), "{new:?}");
    assert!(
        new.iter()
            .any(|c| matches!(c, Capability::Secret { name, .. } if name == "token")),
        "{new:?}"
    );
    assert!(
        !new.contains(&&Capability::Http("http://*:*".into())),
        "already granted, not asked again"
    );
    let err = f
        .registry
        .install(review, &CapabilityGrant::default())
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NotGranted { .. }),
        "escalation needs a grant: {err}"
    );
    assert_eq!(
        f.registry
            .db()
            .active_version("acme/crm")
            .unwrap()
            .unwrap()
            .version,
        v1_row.version
    );

    let review = f
        .registry
        .review(v2(&f).await, "crm-2.nexo", false, Some("acme/crm"))
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    let v2_row = f.registry.install(review, &grant).unwrap();
    assert_eq!(v2_row.grants.kv_bytes, 1024);
    assert_eq!(
        v2_row.grants.http_origins,
        vec!["http://*:*".to_string()],
        "grants never exceed the request"
    );

    // The next run gets 2.0.0; the run in flight finishes on 1.0.0.
    let (_, next) = f.registry.load_active("acme/crm").unwrap();
    assert_eq!(next.info().embedded("plugin"), Some("hostile"));
    let sandbox = |v: &str| Sandbox {
        plugin: PluginRef {
            id: "acme/crm".into(),
            version: v.into(),
        },
        limits: Limits::default(),
        grants: Grants::default(),
        secrets: BTreeMap::new(),
        credentials: Default::default(),
        kv: None,
    };
    let old = ConnectorPlugin::open(&in_flight, sandbox("1.0.0"))
        .await
        .unwrap();
    assert_eq!(old.spec().streams, vec!["contacts".to_string()]);
    let new = ConnectorPlugin::open(&next, sandbox("2.0.0"))
        .await
        .unwrap();
    assert!(new.spec().streams.contains(&"kv".to_string()));

    let err = f
        .registry
        .review(v1(&f).await, "crm-1.nexo", false, Some("acme/crm"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotNewer { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("nexo plugin rollback acme/crm 1.0.0"),
        "{err}"
    );

    let back = f.registry.rollback("acme/crm", None).unwrap();
    assert_eq!(back.version.to_string(), "1.0.0");
    assert_eq!(
        back.grants, v1_row.grants,
        "the old grants come back with the old version"
    );
    let (active, plugin) = f.registry.load_active("acme/crm").unwrap();
    assert_eq!(active.version.to_string(), "1.0.0");
    assert_eq!(plugin.info().embedded("plugin"), Some("example-crm"));
    assert_eq!(
        f.registry.db().plugin_versions("acme/crm").unwrap().len(),
        2,
        "both stay installed"
    );

    let err = f.registry.rollback("acme/crm", None).unwrap_err();
    assert!(matches!(err, RegistryError::NothingToRollBack(_)));
    let forward = f
        .registry
        .rollback("acme/crm", Some(&semver::Version::new(2, 0, 0)))
        .unwrap();
    assert_eq!(forward.version.to_string(), "2.0.0");
    let err = f
        .registry
        .rollback("acme/crm", Some(&semver::Version::new(9, 9, 9)))
        .unwrap_err();
    assert!(err.to_string().contains("installed: 1.0.0, 2.0.0"), "{err}");
}

#[tokio::test]
async fn incompatible_wit_majors_and_unsigned_bundles_are_refused() {
    let f = fixture();
    // A bundle claiming WIT 2.0, correctly signed: refused for its WIT major.
    let mut bundle = Bundle::parse(&v1(&f).await, "x").unwrap();
    bundle.manifest.wit_version = semver::Version::new(2, 0, 0);
    bundle.manifest_bytes = serde_json::to_vec_pretty(&bundle.manifest).unwrap();
    // Re-sign the edited manifest the way pack signs.
    let msg = [&b"nexo-bundle-v1\0"[..], &bundle.manifest_bytes].concat();
    if let Some(sig) = bundle.signature.as_mut() {
        use base64::Engine as _;
        sig.signature = base64::engine::general_purpose::STANDARD.encode(f.key.sign(&msg));
    }
    let err = f
        .registry
        .review(bundle.to_bytes().unwrap(), "wit2.nexo", false, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Bundle(BundleError::IncompatibleWit { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "built against nexo:connector 2.0.0, but this host serves nexo:connector 1.x"
        ),
        "{err}"
    );

    let component = std::fs::read(programs::EXAMPLE_CRM).unwrap();
    let src = source(
        "1.0.0",
        r#"[capabilities]
        http_origins = ["https://*:*", "http://*:*"]
        secrets = [{ name = "api_token", description = "API token", origins = ["https://*:*", "http://*:*"] }]"#,
    );
    let unsigned = pack(runtime(), src, component, None)
        .await
        .unwrap()
        .to_bytes()
        .unwrap();
    let err = f
        .registry
        .review(unsigned.clone(), "dev.nexo", false, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Bundle(BundleError::Unsigned { .. })),
        "{err}"
    );
    let review = f
        .registry
        .review(unsigned, "dev.nexo", true, None)
        .await
        .unwrap();
    let grant = grant_all(review.to_grant());
    assert_eq!(
        f.registry.install(review, &grant).unwrap().signer_key_id,
        None,
        "marked unsigned"
    );
}

#[tokio::test]
async fn a_plugin_built_against_the_oldest_supported_wit_installs_and_runs() {
    let f = fixture();
    let src: ManifestSource = toml::from_str(
        r#"
        id = "old/fixture"
        version = "1.0.0"
        kind = "connector"
        description = "built against nexo:connector@1.0.0 without the SDK"
        vendor = "Acme Inc"
        "#,
    )
    .unwrap();
    let component = std::fs::read(programs::WIT_1_0_FIXTURE).unwrap();
    let bytes = pack(runtime(), src, component, Some(&f.key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap();
    let review = f
        .registry
        .review(bytes, "fixture.nexo", false, None)
        .await
        .unwrap();
    assert_eq!(review.manifest().wit_version, semver::Version::new(1, 0, 0));
    assert!(review.to_grant().is_empty());
    f.registry
        .install(review, &CapabilityGrant::default())
        .unwrap();
    let (_, plugin) = f.registry.load_active("old/fixture").unwrap();
    let c = ConnectorPlugin::open(
        &plugin,
        Sandbox {
            plugin: PluginRef {
                id: "old/fixture".into(),
                version: "1.0.0".into(),
            },
            limits: Limits::default(),
            grants: Grants::default(),
            secrets: BTreeMap::new(),
            credentials: Default::default(),
            kv: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        c.read("{}", "items", None)
            .await
            .into_result()
            .unwrap()
            .records
            .len(),
        3
    );
}

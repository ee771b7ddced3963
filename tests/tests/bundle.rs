//! Bundles: packed from a component and the vendor's manifest, verified
//! against trusted keys; every way a bundle can be wrong has its own error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nexo::bundle::keys::{PublicKey, SecretKey};
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::{Bundle, BundleError, Signer, VetError, pack};
use nexo_tests::{programs, runtime};

fn crm_manifest() -> ManifestSource {
    toml::from_str(
        r#"
        id = "acme/tinycrm"
        version = "1.2.0"
        kind = "connector"
        description = "TinyCRM contacts"
        vendor = "Acme Inc"
        homepage = "https://acme.example"
        [capabilities]
        http_origins = ["https://*:*", "http://*:*"]
        secrets = [{ name = "api_token", description = "TinyCRM API token", origins = ["https://*:*", "http://*:*"] }]
        "#,
    )
    .unwrap()
}

async fn signed(key: &SecretKey) -> Bundle {
    let component = std::fs::read(programs::EXAMPLE_CRM).unwrap();
    pack(runtime(), crm_manifest(), component, Some(key))
        .await
        .unwrap()
}

fn trusting(key: &PublicKey) -> impl Fn(&str) -> Option<PublicKey> + '_ {
    move |id| (id == key.key_id()).then(|| key.clone())
}

#[tokio::test]
async fn a_signed_bundle_round_trips_and_verifies() {
    let key = SecretKey::generate("Acme Inc").unwrap();
    let bundle = signed(&key).await;
    let m = &bundle.manifest;
    assert_eq!(
        (m.id.as_str(), m.version.to_string().as_str()),
        ("acme/tinycrm", "1.2.0")
    );
    assert_eq!(m.wit_version.to_string(), nexo_sdk::WIT_VERSION);
    assert_eq!(m.sdk_version.as_deref(), Some(nexo_sdk::SDK_VERSION));
    assert!(m.config_schema.as_ref().unwrap()["properties"]["base_url"].is_object());
    let bytes = bundle.to_bytes().unwrap();
    let back = Bundle::parse(&bytes, "b.nexo").unwrap();
    assert_eq!(back.manifest, bundle.manifest);
    assert_eq!(
        back.verify("b.nexo", trusting(&key.public()), false)
            .unwrap(),
        Signer::Trusted(Box::new(key.public()))
    );
}

/// Rewrite one entry of a bundle, keeping the others as they are.
fn rewrite(bundle: &Bundle, f: impl FnOnce(&mut Bundle)) -> Vec<u8> {
    let mut b = bundle.clone();
    f(&mut b);
    b.to_bytes().unwrap()
}

#[tokio::test]
async fn a_tampered_component_or_manifest_is_refused() {
    let key = SecretKey::generate("Acme Inc").unwrap();
    let bundle = signed(&key).await;

    let bytes = rewrite(&bundle, |b| {
        let last = b.component.len() - 1;
        b.component[last] ^= 0xff;
    });
    let err = Bundle::parse(&bytes, "evil.nexo").unwrap_err();
    assert!(matches!(err, BundleError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("plugin.wasm has SHA-256"), "{err}");

    // A capability slipped into the manifest after signing.
    let bytes = rewrite(&bundle, |b| {
        b.manifest
            .capabilities
            .http_origins
            .push("https://evil.example".into());
        b.manifest_bytes = serde_json::to_vec_pretty(&b.manifest).unwrap();
    });
    let parsed = Bundle::parse(&bytes, "evil.nexo").unwrap();
    let err = parsed
        .verify("evil.nexo", trusting(&key.public()), false)
        .unwrap_err();
    assert!(matches!(err, BundleError::Tampered { .. }), "{err}");
    assert!(
        err.to_string().contains("signature does not match"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_signers_and_unsigned_bundles_are_refused() {
    let vendor = SecretKey::generate("Acme Inc").unwrap();
    let other = SecretKey::generate("Someone Else").unwrap();
    let bundle = signed(&vendor).await;
    let err = bundle
        .verify("b.nexo", trusting(&other.public()), false)
        .unwrap_err();
    assert!(
        matches!(&err, BundleError::UnknownSigner { key_id, .. } if *key_id == vendor.public().key_id())
    );
    assert!(err.to_string().contains("nexo trust add"), "{err}");

    let component = std::fs::read(programs::EXAMPLE_CRM).unwrap();
    let unsigned = pack(runtime(), crm_manifest(), component, None)
        .await
        .unwrap();
    let err = unsigned
        .verify("dev.nexo", trusting(&vendor.public()), false)
        .unwrap_err();
    assert!(matches!(err, BundleError::Unsigned { .. }));
    assert!(err.to_string().contains("--allow-unsigned"));
    assert_eq!(
        unsigned
            .verify("dev.nexo", trusting(&vendor.public()), true)
            .unwrap(),
        Signer::UnsignedDev
    );
}

#[tokio::test]
async fn pack_refuses_a_manifest_that_lies_about_the_component() {
    let component = std::fs::read(programs::EXAMPLE_CRM).unwrap();
    let mut source = crm_manifest();
    source.capabilities.http_origins = vec!["https://api.acme.example".into()];
    source.capabilities.secrets.clear();
    let err = pack(runtime(), source, component.clone(), None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, VetError::Bundle(BundleError::ManifestMismatch(ref d)) if d.len() == 2),
        "{msg}"
    );
    assert!(
        msg.contains("http_origins") && msg.contains("secrets"),
        "{msg}"
    );

    let mut source = crm_manifest();
    source.kind = nexo::bundle::manifest::Kind::Mapper;
    let err = pack(runtime(), source, component.clone(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("kind is `mapper` but the component is a connector"),
        "{err}"
    );

    let mut source = crm_manifest();
    source.id = "Acme CRM".into();
    assert!(matches!(
        pack(runtime(), source, component, None).await,
        Err(VetError::Bundle(BundleError::InvalidManifest(_)))
    ));
}

#[tokio::test]
async fn a_mappers_config_schema_file_is_checked_and_signed_into_its_manifest() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/deal-to-invoice/nexo-plugin.toml");
    let component = std::fs::read(programs::DEAL_TO_INVOICE).unwrap();
    let source = ManifestSource::read(&shipped).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shipped.with_file_name("config.schema.json")).unwrap(),
    )
    .unwrap();
    let bundle = pack(runtime(), source.clone(), component.clone(), None)
        .await
        .unwrap();
    assert_eq!(bundle.manifest.config_schema.as_ref(), Some(&file));

    // Not a JSON Schema: refused, naming the file.
    let mut bad = source.clone();
    bad.config_schema_json = Some(serde_json::json!({"type": 5}));
    let err = pack(runtime(), bad, component.clone(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config schema config.schema.json is not a valid JSON Schema"),
        "{err}"
    );
    // Named but never read (parsed as bare TOML): refused, not dropped.
    let mut unread = source;
    unread.config_schema_json = None;
    let err = pack(runtime(), unread, component, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("was not read"), "{err}");
    // A connector's schema comes from spec(), never from a file.
    let mut connector = crm_manifest();
    connector.config_schema = Some("schema.json".into());
    let err = pack(
        runtime(),
        connector,
        std::fs::read(programs::EXAMPLE_CRM).unwrap(),
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("remove `config_schema`"), "{err}");
}

#[test]
fn corrupt_files_and_future_formats_get_their_own_errors() {
    let err = Bundle::parse(
        b"this is not a tar file at all, not even close........",
        "x.nexo",
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::Corrupt { .. }), "{err}");
    let err = Bundle::parse(&[], "empty.nexo").unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");

    let mut builder = tar::Builder::new(Vec::new());
    let manifest = br#"{"format": 7, "id": "acme/x"}"#;
    let mut header = tar::Header::new_ustar();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "manifest.json", &manifest[..])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_size(4);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "plugin.wasm", &b"\0asm"[..])
        .unwrap();
    let err = Bundle::parse(&builder.into_inner().unwrap(), "future.nexo").unwrap_err();
    assert!(
        matches!(err, BundleError::UnsupportedFormat { found: 7, .. }),
        "{err}"
    );
}

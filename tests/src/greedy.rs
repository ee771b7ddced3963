//! The greedy connector (`tests/programs/hostile-authority`) as an attacker
//! ships it: its manifest, its component with the moment its `spec()`
//! turns greedy, and a bundle whose signed manifest lies about it.

use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::{Bundle, pack};

use crate::{programs, runtime};

/// The honest manifest: the secret `token` goes to `http://localhost:*`.
pub const MANIFEST: &str = r#"id = "acme/greedy"
version = "1.0.0"
kind = "connector"
description = "d"
vendor = "Acme"
[capabilities]
http_origins = ["http://*:*"]
secrets = [{ name = "token", description = "an API token for the vendor's API on localhost", origins = ["http://localhost:*"] }]
"#;

/// The component with its switch set to `at` (unix seconds; 0: never
/// greedy, 1: always).
pub fn component_greedy_at(at: u64) -> Vec<u8> {
    let mut wasm = std::fs::read(programs::HOSTILE_AUTHORITY).unwrap();
    let marker = b"NEXO-SWITCH-AT=";
    let pos = wasm
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the component carries its switch");
    let digits = format!("{at:010}");
    wasm[pos + marker.len()..pos + marker.len() + 10].copy_from_slice(digits.as_bytes());
    wasm
}

/// Pack `component` under [`MANIFEST`] with the official `pack`.
pub async fn packed(key: &SecretKey, component: Vec<u8>) -> Result<Bundle, nexo::bundle::VetError> {
    let src: ManifestSource = toml::from_str(MANIFEST).unwrap();
    pack(runtime(), src, component, Some(key)).await
}

/// The bytes of a bundle signed by `key` whose manifest shows the honest
/// binding while its component is always greedy: packed honest, the
/// component swapped, the digest fixed and the manifest signed again.
pub async fn lying_bundle(key: &SecretKey) -> Vec<u8> {
    let mut bundle = packed(key, component_greedy_at(0)).await.unwrap();
    let greedy = component_greedy_at(1);
    bundle.manifest.component.sha256 = nexo::cache::sha256_hex(&greedy);
    bundle.manifest.component.size = greedy.len() as u64;
    bundle.component = greedy;
    bundle.manifest_bytes = serde_json::to_vec_pretty(&bundle.manifest).unwrap();
    let msg = [&b"nexo-bundle-v1\0"[..], &bundle.manifest_bytes].concat();
    if let Some(sig) = bundle.signature.as_mut() {
        use base64::Engine as _;
        sig.signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&msg));
    }
    bundle.to_bytes().unwrap()
}

//! Plugin bundles: one file a vendor ships, holding the component, its
//! manifest and the vendor's signature.
//!
//! A bundle is an uncompressed tar (inspect it with `tar tvf`) with exactly
//! `manifest.json`, `plugin.wasm` and, when signed, `signature.json`. The
//! manifest carries the component's SHA-256; the ed25519 signature covers
//! the manifest bytes (with a domain prefix), so one signature vouches for
//! the component *and* for the capabilities it asks for. (wasmsign2 signs a
//! module's sections but not a separate manifest, which is what an admin
//! grants against, so it does not fit here.)
//!
//! **Owns** the bundle file format: the manifest and its limits, signing
//! keys and signatures, origin patterns in their normal form. **Must not
//! touch** a component's code (no wasmtime: what loading a component tells
//! arrives as [`ComponentFacts`]), the database or the network — so that a
//! bundle can be read, checked and signed by any tool.

pub mod keys;
pub mod manifest;
pub mod oauth;
pub mod origin;
mod pack;

pub use manifest::PluginRef;
pub(crate) use pack::check_limits;
pub use pack::{ComponentFacts, assemble, check_source, spec_differences};

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use keys::PublicKey;
use manifest::{MANIFEST_FORMAT, MAX_MANIFEST_BYTES, Manifest};

/// Prefix of every signed message, so a bundle signature can never be
/// replayed as a signature of something else.
const SIGNING_CONTEXT: &[u8] = b"nexo-bundle-v1\0";
/// Largest component accepted.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;
const MAX_SMALL_ENTRY: u64 = 1 << 20;

/// A bundle that cannot be packed, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle, or a damaged one.
    #[error("{what} is not a valid Nexo bundle: {reason}")]
    Corrupt {
        /// The file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Contents do not match what was signed.
    #[error(
        "{what} has been tampered with: {reason}; do not install it, get a fresh copy from the vendor"
    )]
    Tampered {
        /// The file.
        what: String,
        /// What does not match.
        reason: String,
    },
    /// Signed by a key the admin does not trust.
    #[error(
        "{what} is signed by key {key_id} (\"{signer}\"), which is not trusted; if you trust this vendor, add their public key with `nexo trust add KEYFILE`"
    )]
    UnknownSigner {
        /// The file.
        what: String,
        /// The signing key's id.
        key_id: String,
        /// The name the signer gave.
        signer: String,
    },
    /// Not signed, and unsigned bundles were not allowed.
    #[error(
        "{what} is not signed; unsigned plugins are accepted only for local development with --allow-unsigned"
    )]
    Unsigned {
        /// The file.
        what: String,
    },
    /// Built against a WIT version this host does not serve. The bundle
    /// format does not decide which versions are served: the runtime does
    /// (`nexo_runtime::bindings::SERVED`), and fills in `served`.
    #[error(
        "{plugin} was built against nexo:connector {found}, but this host serves nexo:connector {served}; ask the vendor for a build against one of those"
    )]
    IncompatibleWit {
        /// `id@version`.
        plugin: String,
        /// Its WIT version.
        found: String,
        /// What the host serves, e.g. `1.x (up to 1.0.0)`.
        served: String,
    },
    /// A manifest format this build cannot read.
    #[error(
        "{what} uses manifest format {found}; this nexo reads format {MANIFEST_FORMAT}; upgrade nexo"
    )]
    UnsupportedFormat {
        /// The file.
        what: String,
        /// Its format.
        found: u32,
    },
    /// At pack time: the manifest says something the component does not.
    #[error("the manifest does not match the component:\n  - {}", .0.join("\n  - "))]
    ManifestMismatch(Vec<String>),
    /// The manifest is invalid.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// The manifest is larger, or asks for more, than any plugin may: refused
    /// before anything else is done with it.
    #[error(
        "{what} is refused: {reason}; this is far beyond what a plugin needs, ask the vendor for a corrected manifest"
    )]
    ManifestTooLarge {
        /// The bundle, or "the manifest" at pack time.
        what: String,
        /// Which cap it exceeds.
        reason: String,
    },
}

/// The signature entry of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Id of the signing key.
    pub key_id: String,
    /// The name the signer gave its key (informational; trust is by key).
    pub signer: String,
    /// Base64 signature of the manifest bytes.
    pub signature: String,
}

/// A bundle in memory.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest exactly as signed.
    pub manifest_bytes: Vec<u8>,
    /// The component.
    pub component: Vec<u8>,
    /// The signature, if signed.
    pub signature: Option<SignatureEntry>,
}

/// Who vouches for a verified bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A trusted vendor key.
    Trusted(Box<PublicKey>),
    /// Nobody: accepted for local development only.
    UnsignedDev,
}

pub(crate) fn signed_message(manifest_bytes: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, manifest_bytes].concat()
}

impl Bundle {
    /// Read a bundle's structure and check the component against the
    /// manifest's digest. Does not check the signature: see [`Bundle::verify`].
    pub fn parse(bytes: &[u8], what: &str) -> Result<Bundle, BundleError> {
        let corrupt = |reason: String| BundleError::Corrupt {
            what: what.to_string(),
            reason,
        };
        let mut manifest_bytes = None;
        let mut component = None;
        let mut signature = None;
        let mut archive = tar::Archive::new(bytes);
        let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let name = entry
                .path()
                .map_err(|e| corrupt(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            if name == "manifest.json" && entry.size() > MAX_MANIFEST_BYTES {
                return Err(BundleError::ManifestTooLarge {
                    what: what.to_string(),
                    reason: format!(
                        "its manifest.json is {} bytes (at most {} KiB)",
                        entry.size(),
                        MAX_MANIFEST_BYTES >> 10
                    ),
                });
            }
            let limit = if name == "plugin.wasm" {
                MAX_COMPONENT_BYTES
            } else {
                MAX_SMALL_ENTRY
            };
            if entry.size() > limit {
                return Err(corrupt(format!("{name} is larger than {limit} bytes")));
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| corrupt(e.to_string()))?;
            let slot = match name.as_str() {
                "manifest.json" => &mut manifest_bytes,
                "plugin.wasm" => &mut component,
                "signature.json" => &mut signature,
                other => return Err(corrupt(format!("unexpected entry `{other}`"))),
            };
            if slot.replace(data).is_some() {
                return Err(corrupt(format!("entry `{name}` appears twice")));
            }
        }
        let manifest_bytes = manifest_bytes.ok_or_else(|| corrupt("no manifest.json".into()))?;
        let component = component.ok_or_else(|| corrupt("no plugin.wasm".into()))?;
        let raw: serde_json::Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| corrupt(format!("manifest.json: {e}")))?;
        let format = raw
            .get("format")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as u32;
        if format != MANIFEST_FORMAT {
            return Err(BundleError::UnsupportedFormat {
                what: what.to_string(),
                found: format,
            });
        }
        let manifest: Manifest =
            serde_json::from_value(raw).map_err(|e| corrupt(format!("manifest.json: {e}")))?;
        check_limits(&manifest.capabilities, what)?;
        let signature = match signature {
            None => None,
            Some(s) => Some(
                serde_json::from_slice::<SignatureEntry>(&s)
                    .map_err(|e| corrupt(format!("signature.json: {e}")))?,
            ),
        };
        let digest = sha256_hex(&component);
        if digest != manifest.component.sha256 || component.len() as u64 != manifest.component.size
        {
            return Err(BundleError::Tampered {
                what: what.to_string(),
                reason: format!(
                    "plugin.wasm has SHA-256 {digest}, but the manifest says {}",
                    manifest.component.sha256
                ),
            });
        }
        Ok(Bundle {
            manifest,
            manifest_bytes,
            component,
            signature,
        })
    }

    /// Check the signature against the trusted keys (looked up by id).
    pub fn verify(
        &self,
        what: &str,
        trusted: impl Fn(&str) -> Option<PublicKey>,
        allow_unsigned: bool,
    ) -> Result<Signer, BundleError> {
        let Some(sig) = &self.signature else {
            return if allow_unsigned {
                Ok(Signer::UnsignedDev)
            } else {
                Err(BundleError::Unsigned {
                    what: what.to_string(),
                })
            };
        };
        if sig.algorithm != "ed25519" {
            return Err(BundleError::Corrupt {
                what: what.to_string(),
                reason: format!("unsupported signature algorithm `{}`", sig.algorithm),
            });
        }
        let Some(key) = trusted(&sig.key_id) else {
            return Err(BundleError::UnknownSigner {
                what: what.to_string(),
                key_id: sig.key_id.clone(),
                signer: sig.signer.clone(),
            });
        };
        let bytes = B64.decode(&sig.signature).unwrap_or_default();
        if !key.verify(&signed_message(&self.manifest_bytes), &bytes) {
            return Err(BundleError::Tampered {
                what: what.to_string(),
                reason: format!(
                    "the signature does not match the manifest for key {}",
                    sig.key_id
                ),
            });
        }
        Ok(Signer::Trusted(Box::new(key)))
    }

    /// The bundle as a file (a deterministic tar).
    pub fn to_bytes(&self) -> Result<Vec<u8>, std::io::Error> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| -> Result<(), std::io::Error> {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, data)
        };
        add("manifest.json", &self.manifest_bytes)?;
        add("plugin.wasm", &self.component)?;
        if let Some(sig) = &self.signature {
            let text = serde_json::to_vec_pretty(sig).map_err(std::io::Error::other)?;
            add("signature.json", &text)?;
        }
        builder.into_inner()
    }
}

/// Lower-case hex SHA-256 of `bytes`: the digest a manifest carries and the
/// compile cache is keyed by.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

//! Packing: a vendor's manifest source checked against what the host
//! learnt from the component ([`ComponentFacts`]), completed and signed into
//! a [`Bundle`]; and the comparison of a manifest's capabilities with a
//! connector's `spec()`, which installing repeats.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::keys::SecretKey;
use crate::manifest;
use crate::manifest::{
    Capabilities, ComponentDigest, Kind, MANIFEST_FORMAT, Manifest, ManifestSource,
    SecretCapability,
};
use crate::origin::OriginPattern;
use crate::{Bundle, BundleError, SignatureEntry, sha256_hex, signed_message};

/// Refuse capabilities beyond the manifest caps, naming `what`.
pub(crate) fn check_limits(caps: &Capabilities, what: &str) -> Result<(), BundleError> {
    match caps.over_limits() {
        Some(reason) => Err(BundleError::ManifestTooLarge {
            what: what.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn normalised_origins(origins: &[String]) -> Result<BTreeSet<String>, String> {
    origins
        .iter()
        .map(|o| {
            OriginPattern::parse(o)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// How `connection_origins` reads in a comparison: a 1.0 component's
/// `spec()` cannot say it, so a component that leaves the origin to the
/// admin declares the any-host patterns instead.
const CONNECTION_ORIGINS: &str = "the origins named on each connection";

/// The patterns a 1.0 `spec()` says "any host" with, which a manifest's
/// `connection_origins` stands for.
const ANY_HOST: [&str; 2] = ["http://*:*", "https://*:*"];

/// A spec's origins in normal form, its any-host patterns read as
/// `connection_origins` when the manifest declares that (`as_connection`).
fn spec_origins(origins: &[String], as_connection: bool) -> Result<BTreeSet<String>, String> {
    let mut out = normalised_origins(origins)?;
    if as_connection && ANY_HOST.iter().any(|p| out.contains(*p)) {
        for p in ANY_HOST {
            out.remove(p);
        }
        out.insert(CONNECTION_ORIGINS.to_string());
    }
    Ok(out)
}

/// The manifest's origins in normal form, plus `connection_origins`.
fn manifest_origins(origins: &[String], connection: bool) -> Result<BTreeSet<String>, String> {
    let mut out = normalised_origins(origins)?;
    if connection {
        out.insert(CONNECTION_ORIGINS.to_string());
    }
    Ok(out)
}

type SecretsSet = BTreeSet<(String, BTreeSet<String>)>;

/// The manifest's secrets by name and origins (`connection_origins` as
/// one origin).
fn secrets_set(secrets: &[SecretCapability]) -> Result<SecretsSet, String> {
    secrets
        .iter()
        .map(|s| {
            Ok((
                s.name.clone(),
                manifest_origins(&s.origins, s.connection_origins)?,
            ))
        })
        .collect()
}

/// A spec's secrets as [`secrets_set`] reads them, a secret's any-host
/// patterns read as `connection_origins` where the manifest marks it so.
fn spec_secrets_set(
    secrets: &[SecretCapability],
    declared: &[SecretCapability],
) -> Result<SecretsSet, String> {
    secrets
        .iter()
        .map(|s| {
            let marked = declared
                .iter()
                .any(|d| d.name == s.name && d.connection_origins);
            Ok((s.name.clone(), spec_origins(&s.origins, marked)?))
        })
        .collect()
}

/// Where a manifest's capabilities and a connector's `spec()` disagree, one
/// sentence each (empty: they agree). Origins are compared in their
/// normal form, secrets by name and origins.
pub fn spec_differences(
    declared: &manifest::Capabilities,
    caps: &Capabilities,
) -> Result<Vec<String>, BundleError> {
    // A spec asking for more than any manifest may is refused before the
    // comparison, whose cost grows with what is compared.
    check_limits(caps, "the component's spec")?;
    let mut differences = Vec::new();
    let theirs = spec_origins(&caps.http_origins, declared.connection_origins)
        .map_err(BundleError::InvalidManifest)?;
    let ours = manifest_origins(&declared.http_origins, declared.connection_origins)
        .map_err(BundleError::InvalidManifest)?;
    if theirs != ours {
        differences.push(format!(
            "http_origins are {ours:?} but the component asks for {theirs:?}"
        ));
    }
    let (a, b) = (
        secrets_set(&declared.secrets).map_err(BundleError::InvalidManifest)?,
        spec_secrets_set(&caps.secrets, &declared.secrets).map_err(BundleError::InvalidManifest)?,
    );
    if a != b {
        differences.push(format!("secrets are {a:?} but the component uses {b:?}"));
    }
    if caps.kv_bytes != declared.kv_bytes {
        differences.push(format!(
            "kv_bytes is {} but the component asks for {}",
            declared.kv_bytes, caps.kv_bytes
        ));
    }
    Ok(differences)
}

/// A mapper's config schema as its manifest source names it: read (by
/// [`ManifestSource::read`]) and a valid JSON Schema.
fn mapper_schema(source: &ManifestSource) -> Result<Option<serde_json::Value>, BundleError> {
    let Some(file) = &source.config_schema else {
        return Ok(None);
    };
    let Some(schema) = &source.config_schema_json else {
        return Err(BundleError::InvalidManifest(format!(
            "`config_schema = {:?}` was not read; read the manifest with ManifestSource::read (as `nexo plugin pack` does)",
            file.display().to_string()
        )));
    };
    jsonschema::meta::validate(schema).map_err(|e| {
        BundleError::InvalidManifest(format!(
            "config schema {} is not a valid JSON Schema: {e} (at {})",
            file.display(),
            e.instance_path()
        ))
    })?;
    Ok(Some(schema.clone()))
}

/// The checks on a vendor's manifest source that come before its component
/// is even loaded: a valid id, and nothing asked beyond any plugin's limits.
pub fn check_source(source: &ManifestSource) -> Result<(), BundleError> {
    manifest::check_id(&source.id).map_err(BundleError::InvalidManifest)?;
    check_limits(&source.capabilities, "the manifest")?;
    if let Some(oauth) = &source.capabilities.oauth2 {
        oauth
            .check(&source.capabilities)
            .map_err(BundleError::InvalidManifest)?;
    }
    let caps = &source.capabilities;
    if let Some(s) = caps
        .secrets
        .iter()
        .find(|s| s.connection_origins && !caps.connection_origins)
    {
        return Err(BundleError::InvalidManifest(format!(
            "the secret `{}` goes to the connection's origins (connection_origins = true) but \
             [capabilities] does not declare connection_origins = true; declare it or bind the \
             secret to origins",
            s.name
        )));
    }
    Ok(())
}

/// What the host learnt by loading a component, for [`assemble`]: the
/// bundle format itself never runs a component.
#[derive(Debug, Clone)]
pub struct ComponentFacts {
    /// The world the component implements.
    pub kind: Kind,
    /// The `nexo:connector` version it imports, as embedded (`None`: it names none).
    pub wit_version: Option<String>,
    /// The SDK version embedded in it, if any.
    pub sdk_version: Option<String>,
    /// A connector's `spec()`: its capabilities (in manifest form) and
    /// config schema (JSON text). `None` for a mapper.
    pub spec: Option<(Capabilities, String)>,
}

/// Build a bundle from the vendor's manifest and component: check the
/// manifest against what the component is and declares (`facts`), complete
/// it (WIT version, SDK, config schema, digest) and sign it (unless `key` is
/// `None`).
pub fn assemble(
    source: ManifestSource,
    component: Vec<u8>,
    facts: ComponentFacts,
    key: Option<&SecretKey>,
) -> Result<Bundle, BundleError> {
    let mut differences = Vec::new();
    let kind = facts.kind;
    if kind != source.kind {
        differences.push(format!(
            "kind is `{}` but the component is a {kind}",
            source.kind
        ));
    }
    let wit_version = facts
        .wit_version
        .as_deref()
        .and_then(|v| semver::Version::parse(v).ok())
        .ok_or_else(|| {
            BundleError::InvalidManifest(
                "the component does not name its nexo:connector version".into(),
            )
        })?;
    // Whether the version is served was decided when the runtime loaded the
    // component these facts come from.
    let declared = &source.capabilities;
    let config_schema = match (&facts.spec, kind) {
        (Some((caps, schema)), Kind::Connector) => {
            differences.extend(spec_differences(declared, caps)?);
            Some(serde_json::from_str(schema).map_err(|e| {
                BundleError::InvalidManifest(format!(
                    "the component's config schema is not JSON: {e}"
                ))
            })?)
        }
        (None, Kind::Connector) => {
            return Err(BundleError::InvalidManifest(
                "a connector's spec() is needed to pack it".into(),
            ));
        }
        (_, Kind::Mapper) => {
            if !declared.http_origins.is_empty()
                || declared.connection_origins
                || !declared.secrets.is_empty()
                || declared.kv_bytes != 0
            {
                differences.push(
                    "a mapper gets no network, secrets or storage; remove them from [capabilities]"
                        .into(),
                );
            }
            mapper_schema(&source)?
        }
    };
    if kind == Kind::Connector && source.config_schema.is_some() {
        differences.push(
            "a connector's config schema comes from its spec(); remove `config_schema` from the manifest"
                .into(),
        );
    }
    if !differences.is_empty() {
        return Err(BundleError::ManifestMismatch(differences));
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id: source.id,
        version: source.version,
        kind,
        wit_version,
        sdk_version: facts.sdk_version,
        description: source.description,
        vendor: source.vendor,
        homepage: source.homepage,
        capabilities: source.capabilities,
        config_schema,
        component: ComponentDigest {
            sha256: sha256_hex(&component),
            size: component.len() as u64,
        },
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BundleError::InvalidManifest(e.to_string()))?;
    let signature = key.map(|k| {
        let public = k.public();
        SignatureEntry {
            algorithm: "ed25519".into(),
            key_id: public.key_id(),
            signer: public.name.clone(),
            signature: B64.encode(k.sign(&signed_message(&manifest_bytes))),
        }
    });
    Ok(Bundle {
        manifest,
        manifest_bytes,
        component,
        signature,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caps(text: &str) -> Capabilities {
        toml::from_str::<ManifestSource>(&format!(
            "id = \"a/b\"\nversion = \"1.0.0\"\nkind = \"connector\"\ndescription = \"d\"\nvendor = \"v\"\n[capabilities]\n{text}"
        ))
        .unwrap()
        .capabilities
    }

    /// What a 1.0 self-hosted connector's `spec()` says.
    fn any_host_spec() -> Capabilities {
        caps(
            r#"http_origins = ["https://*:*", "http://*:*"]
            secrets = [{ name = "key", origins = ["https://*:*", "http://*:*"] }]"#,
        )
    }

    #[test]
    fn connection_origins_matches_a_specs_any_host_patterns() {
        let declared = caps(
            r#"connection_origins = true
            secrets = [{ name = "key", connection_origins = true }]"#,
        );
        assert_eq!(
            spec_differences(&declared, &any_host_spec()).unwrap(),
            Vec::<String>::new()
        );
        // The wildcard manifest of another plugin compares as before.
        let wildcard = any_host_spec();
        assert!(
            spec_differences(&wildcard, &any_host_spec())
                .unwrap()
                .is_empty()
        );
        // A secret not marked does not stand for the spec's any-host binding.
        let unmarked = caps(
            r#"connection_origins = true
            secrets = [{ name = "key", origins = [] }]"#,
        );
        let d = spec_differences(&unmarked, &any_host_spec()).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("secrets are"), "{d:?}");
        // A spec with exact origins only is not a self-hosted one.
        let exact = caps(
            r#"http_origins = ["https://api.example.com"]
            secrets = [{ name = "key", origins = ["https://api.example.com"] }]"#,
        );
        let d = spec_differences(&declared, &exact).unwrap();
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn a_flag_left_false_is_not_written() {
        let plain = caps(r#"http_origins = ["https://api.example.com"]"#);
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("connection_origins"), "{json}");
        let marked = caps(
            r#"connection_origins = true
            secrets = [{ name = "key", connection_origins = true }]"#,
        );
        let json = serde_json::to_string(&marked).unwrap();
        assert_eq!(
            json.matches("\"connection_origins\":true").count(),
            2,
            "{json}"
        );
    }
}

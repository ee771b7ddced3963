//! The bundle manifest: what a plugin is, what it was built against, what it
//! asks for. Versioned (`format`) from day one; the vendor writes the source
//! form (`nexo-plugin.toml`) and `nexo plugin pack` completes and checks it
//! against the component.

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Largest `manifest.json` (and `nexo-plugin.toml`) accepted. Real ones
/// are a few KiB; the cap keeps a hostile one from costing seconds to
/// parse, check and show before it is refused.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 10;
/// Most HTTP origins a plugin may ask for (wildcards cover many hosts).
pub const MAX_HTTP_ORIGINS: usize = 64;
/// Most secrets a plugin may ask for.
pub const MAX_SECRETS: usize = 32;
/// Most origins one secret may be bound to.
pub const MAX_SECRET_ORIGINS: usize = 64;

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A connector.
    Connector,
    /// A mapper.
    Mapper,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Connector => "connector",
            Kind::Mapper => "mapper",
        })
    }
}

/// A secret a plugin uses and the origins it may go to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretCapability {
    /// Name used in `{{secret:NAME}}`.
    pub name: String,
    /// What it is, for the admin.
    #[serde(default)]
    pub description: String,
    /// Origins it is bound to.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Whether it also goes to the origins the admin names on each
    /// connection (needs [`Capabilities::connection_origins`]): a
    /// self-hosted system's credential. Not written when false, so
    /// manifests packed before keep their bytes (and signatures).
    #[serde(default, skip_serializing_if = "is_false")]
    pub connection_origins: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a plugin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Origins it calls.
    #[serde(default)]
    pub http_origins: Vec<String>,
    /// Whether it calls the server the admin names on each connection (a
    /// self-hosted system: `--grant-http` / `--grant-private-http` on the
    /// connection), instead of declaring a wildcard. Not written when
    /// false, so manifests packed before keep their bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub connection_origins: bool,
    /// Secrets it uses.
    #[serde(default)]
    pub secrets: Vec<SecretCapability>,
    /// Key-value bytes it needs.
    #[serde(default)]
    pub kv_bytes: u64,
    /// Memory it needs (the admin's limit must be at least this).
    #[serde(default = "default_memory")]
    pub memory_bytes: u64,
    /// An OAuth 2.0 credential the host obtains and refreshes for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<crate::oauth::OAuth2>,
}

fn default_memory() -> u64 {
    64 << 20
}

impl Default for Capabilities {
    /// Nothing asked for, and the default memory (a manifest without a
    /// `[capabilities]` table asks for what one with an empty table does).
    fn default() -> Self {
        Capabilities {
            http_origins: Vec::new(),
            connection_origins: false,
            secrets: Vec::new(),
            kv_bytes: 0,
            memory_bytes: default_memory(),
            oauth2: None,
        }
    }
}

impl Capabilities {
    /// The memory the manifest asks for, if it says: bundles packed before
    /// a manifest without `[capabilities]` got the default say `0`.
    pub fn memory_asked(&self) -> Option<u64> {
        (self.memory_bytes > 0).then_some(self.memory_bytes)
    }
}

impl Capabilities {
    /// Why these capabilities exceed what a manifest may ask for, if they
    /// do: counts only, checked before any origin is parsed or compared.
    pub fn over_limits(&self) -> Option<String> {
        let origins = self.http_origins.len();
        if origins > MAX_HTTP_ORIGINS {
            return Some(format!(
                "it declares {origins} HTTP origins (at most {MAX_HTTP_ORIGINS}; use wildcards such as `https://*.example.com`)"
            ));
        }
        let secrets = self.secrets.len();
        if secrets > MAX_SECRETS {
            return Some(format!(
                "it declares {secrets} secrets (at most {MAX_SECRETS})"
            ));
        }
        self.secrets.iter().find_map(|s| {
            let n = s.origins.len();
            (n > MAX_SECRET_ORIGINS).then(|| {
                format!(
                    "its secret `{}` is bound to {n} origins (at most {MAX_SECRET_ORIGINS})",
                    s.name.chars().take(64).collect::<String>()
                )
            })
        })
    }
}

/// What the vendor writes (`nexo-plugin.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSource {
    /// `vendor/name`, lower-case.
    pub id: String,
    /// Semantic version.
    pub version: semver::Version,
    /// Connector or mapper.
    pub kind: Kind,
    /// One line on what it does.
    pub description: String,
    /// Who ships it.
    pub vendor: String,
    /// Where to learn more.
    #[serde(default)]
    pub homepage: Option<String>,
    /// What it asks for; must match what the component declares.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Mappers: the JSON Schema file of the config, relative to this
    /// manifest (e.g. `config.schema.json`). The packer checks it is a
    /// valid JSON Schema and signs it into the manifest, so `pipeline
    /// apply` validates each mapper step's config against it. Connectors
    /// give theirs through `spec()` instead.
    #[serde(default)]
    pub config_schema: Option<std::path::PathBuf>,
    /// The schema file's JSON, read by [`ManifestSource::read`].
    #[serde(skip)]
    pub config_schema_json: Option<serde_json::Value>,
}

impl ManifestSource {
    /// Read `nexo-plugin.toml` and the config schema file it names (both
    /// at most [`MAX_MANIFEST_BYTES`]).
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = read_capped(path)?;
        let mut source: ManifestSource = toml::from_str(&text)
            .map_err(|e| format!("manifest {} is not valid: {e}", path.display()))?;
        if let Some(file) = &source.config_schema {
            let file = path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(file);
            let text = read_capped(&file)?;
            source.config_schema_json = Some(serde_json::from_str(&text).map_err(|e| {
                format!(
                    "config schema {} (named by `config_schema` in {}) is not JSON: {e}",
                    file.display(),
                    path.display()
                )
            })?);
        }
        Ok(source)
    }
}

fn read_capped(path: &std::path::Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{} is {size} bytes; it may be at most {} KiB",
            path.display(),
            MAX_MANIFEST_BYTES >> 10
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The component's digest, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDigest {
    /// Hex SHA-256 of `plugin.wasm`.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The manifest inside a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// `vendor/name`.
    pub id: String,
    /// Semantic version.
    pub version: semver::Version,
    /// Connector or mapper.
    pub kind: Kind,
    /// The `nexo:connector` version the component was built against.
    pub wit_version: semver::Version,
    /// The SDK it was built with, when known.
    #[serde(default)]
    pub sdk_version: Option<String>,
    /// One line on what it does.
    pub description: String,
    /// Who ships it.
    pub vendor: String,
    /// Where to learn more.
    #[serde(default)]
    pub homepage: Option<String>,
    /// What it asks for.
    pub capabilities: Capabilities,
    /// JSON Schema of its config: a connector's from its `spec()`, a
    /// mapper's from the file its `nexo-plugin.toml` names (none for
    /// mappers packed before mappers shipped one).
    #[serde(default)]
    pub config_schema: Option<serde_json::Value>,
    /// The component it ships.
    pub component: ComponentDigest,
}

/// Why a plugin id is not acceptable.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !p.starts_with('-')
    };
    match id.split_once('/') {
        Some((vendor, name)) if ok_part(vendor) && ok_part(name) => Ok(()),
        _ => Err(format!(
            "plugin id `{id}` must be `vendor/name` in lower-case letters, digits, `-` and `_` (e.g. `acme/crm`)"
        )),
    }
}

impl Manifest {
    /// `id@version`.
    pub fn plugin_ref(&self) -> PluginRef {
        PluginRef {
            id: self.id.clone(),
            version: self.version.to_string(),
        }
    }
}

/// What an admin granted one installed plugin version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityGrant {
    /// Origins it may call.
    pub http_origins: Vec<String>,
    /// Secrets it may use.
    pub secrets: Vec<String>,
    /// Key-value bytes.
    pub kv_bytes: u64,
    /// Whether it may call the servers named on each of its connections
    /// (and send its self-hosted secrets there); see
    /// [`Capabilities::connection_origins`]. Absent in grants saved before.
    #[serde(default)]
    pub connection_origins: bool,
}

/// A plugin and version, as shown in messages: `acme/crm@1.2.0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    /// `vendor/name`.
    pub id: String,
    /// Semantic version.
    pub version: String,
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_vendor_slash_name() {
        assert!(check_id("acme/crm").is_ok());
        assert!(check_id("acme-inc/hub_spot2").is_ok());
        for bad in [
            "acme",
            "Acme/crm",
            "acme/crm/x",
            "/crm",
            "acme/",
            "acme/c rm",
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capability_counts_are_capped() {
        let mut caps = Capabilities {
            http_origins: vec!["https://a.example".into(); MAX_HTTP_ORIGINS],
            ..Capabilities::default()
        };
        assert_eq!(caps.over_limits(), None);
        caps.http_origins.push("https://b.example".into());
        let why = caps.over_limits().unwrap_or_default();
        assert!(why.contains("65 HTTP origins (at most 64"), "{why}");
        caps.http_origins.clear();
        caps.secrets = vec![SecretCapability {
            name: "token".into(),
            description: String::new(),
            origins: vec!["https://a.example".into(); MAX_SECRET_ORIGINS + 1],
            connection_origins: false,
        }];
        let why = caps.over_limits().unwrap_or_default();
        assert!(
            why.contains("secret `token` is bound to 65 origins"),
            "{why}"
        );
    }

    #[test]
    fn source_manifest_parses_from_toml_and_refuses_unknown_keys() {
        let src: ManifestSource = toml::from_str(
            r#"
            id = "acme/crm"
            version = "1.2.0"
            kind = "connector"
            description = "Acme CRM"
            vendor = "Acme Inc"
            [capabilities]
            http_origins = ["https://api.acme.test"]
            secrets = [{ name = "token", description = "API token", origins = ["https://api.acme.test"] }]
            "#,
        )
        .unwrap();
        assert_eq!(src.version, semver::Version::new(1, 2, 0));
        assert_eq!(src.capabilities.memory_bytes, 64 << 20);
        let bare: ManifestSource = toml::from_str(
            "id = \"a/b\"\nversion = \"1.0.0\"\nkind = \"mapper\"\ndescription = \"d\"\nvendor = \"v\"\n",
        )
        .unwrap();
        assert_eq!(
            bare.capabilities.memory_bytes,
            64 << 20,
            "no table, default memory"
        );
        let err =
            toml::from_str::<ManifestSource>("id = \"a/b\"\nversoin = \"1.0.0\"").unwrap_err();
        assert!(err.to_string().contains("versoin"), "{err}");
    }
}

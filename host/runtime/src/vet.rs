//! A bundle's claims checked against its component: packing a bundle runs
//! the component's `spec()` in a sandbox that grants nothing and compares
//! what it asks for with what the manifest declares; installing asks again,
//! because a signature proves who wrote a manifest, not that it is true.

use nexo_bundle::keys::SecretKey;
use nexo_bundle::manifest::{Capabilities, Kind, Manifest, ManifestSource, SecretCapability};
use nexo_bundle::{Bundle, BundleError, ComponentFacts, PluginRef};

use crate::Limits;
use crate::error::LoadError;
use crate::inspect::WorldKind;
use crate::plugin::{self, ConnectorPlugin, Grants, OpenError, Sandbox};
use crate::runtime::{LoadedPlugin, Runtime};

/// Packing or vetting a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum VetError {
    /// The manifest or bundle is wrong.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The component does not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The connector could not be opened to read its spec.
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl From<WorldKind> for Kind {
    fn from(w: WorldKind) -> Self {
        match w {
            WorldKind::Connector => Kind::Connector,
            WorldKind::Mapper => Kind::Mapper,
        }
    }
}

/// A connector's `spec()` capabilities in the manifest's terms.
fn declared(caps: &plugin::Capabilities) -> Capabilities {
    Capabilities {
        http_origins: caps.http_origins.clone(),
        secrets: caps
            .secrets
            .iter()
            .map(|s| SecretCapability {
                name: s.name.clone(),
                description: String::new(),
                origins: s.origins.clone(),
                connection_origins: false,
            })
            .collect(),
        kv_bytes: caps.kv_bytes,
        ..Capabilities::default()
    }
}

/// What a connector's `spec()` says, called in a sandbox that grants nothing.
pub async fn spec_of(
    plugin: &LoadedPlugin,
    id: &str,
    version: &str,
) -> Result<plugin::Spec, VetError> {
    let sandbox = Sandbox {
        plugin: PluginRef {
            id: id.to_string(),
            version: version.to_string(),
        },
        limits: Limits::default(),
        grants: Grants::default(),
        secrets: Default::default(),
        credentials: Default::default(),
        kv: None,
    };
    let connector = ConnectorPlugin::open(plugin, sandbox).await?;
    Ok(connector.spec().clone())
}

/// Ask a connector's `spec()` again and refuse a manifest that disagrees
/// with it. A mapper has no `spec()` to ask.
pub async fn confirm_spec(plugin: &LoadedPlugin, manifest: &Manifest) -> Result<(), VetError> {
    if manifest.kind != Kind::Connector {
        return Ok(());
    }
    let spec = spec_of(plugin, &manifest.id, &manifest.version.to_string()).await?;
    let differences =
        nexo_bundle::spec_differences(&manifest.capabilities, &declared(&spec.capabilities))?;
    if differences.is_empty() {
        Ok(())
    } else {
        Err(BundleError::ManifestMismatch(differences).into())
    }
}

/// Build a bundle from the vendor's manifest and component: load the
/// component, learn what it is and (for a connector) what its `spec()`
/// asks, and let [`nexo_bundle::assemble`] check, complete and sign.
pub async fn pack(
    runtime: &Runtime,
    source: ManifestSource,
    component: Vec<u8>,
    key: Option<&SecretKey>,
) -> Result<Bundle, VetError> {
    nexo_bundle::check_source(&source)?;
    let plugin = runtime.load(&component, &format!("{}@{}", source.id, source.version))?;
    let info = plugin.info();
    let kind = Kind::from(info.world);
    let spec = if kind == Kind::Connector {
        let spec = spec_of(&plugin, &source.id, &source.version.to_string()).await?;
        Some((declared(&spec.capabilities), spec.config_schema))
    } else {
        None
    };
    let facts = ComponentFacts {
        kind,
        wit_version: info.wit_version().map(str::to_string),
        sdk_version: info.embedded("sdk").map(str::to_string),
        spec,
    };
    Ok(nexo_bundle::assemble(source, component, facts, key)?)
}

//! The plugin registry: installing bundles with a capability review,
//! upgrading and rolling back, versions side by side.
//!
//! Installing is two steps, so nothing is installed before an admin has seen
//! what a plugin asks for: [`Registry::review`] verifies the bundle (integrity,
//! signature, WIT compatibility), precompiles the component and describes the
//! requested capabilities (for an upgrade, what is new); [`Registry::install`]
//! then records it, only if the grant covers every request. Bundles are kept
//! content-addressed under the data directory; the registry rows live in the
//! database and change in one transaction, so a failed install leaves the
//! installed set exactly as it was.

use std::path::PathBuf;

use nexo_bundle::manifest::{Kind, Manifest};
use nexo_bundle::sha256_hex;
use nexo_bundle::{Bundle, BundleError, Signer};
use nexo_db::registry::{CapabilityGrant, VersionRow};
use nexo_db::{Database, StoreError};
use nexo_runtime::limits::Limits;
use nexo_runtime::{LoadedPlugin, Runtime};

use crate::error::RegistryError;
use crate::grants::{Capability, capabilities_of, grant_all, granted};

/// A verified bundle, ready to install once granted.
pub struct Review {
    bundle: Bundle,
    bundle_bytes_sha256: String,
    bundle_bytes: Vec<u8>,
    signer: Signer,
    /// What it asks for.
    pub requested: Vec<Capability>,
    /// For an upgrade: the active version and what this one asks for beyond
    /// what that one was granted.
    pub upgrade: Option<(VersionRow, Vec<Capability>)>,
    /// The precompiled plugin (so the first run is fast).
    pub plugin: LoadedPlugin,
}

impl std::fmt::Debug for Review {
    /// What an admin would read: the plugin, its signer and its requests;
    /// never the bundle's bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.bundle.manifest;
        f.debug_struct("Review")
            .field("plugin", &format_args!("{}@{}", m.id, m.version))
            .field("bundle_sha256", &self.bundle_bytes_sha256)
            .field("signer", &self.signer)
            .field("requested", &self.requested)
            .field(
                "upgrade_of",
                &self.upgrade.as_ref().map(|(a, _)| a.version.to_string()),
            )
            .finish_non_exhaustive()
    }
}

impl Review {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }
    /// Who signed it.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
    /// What needs a decision: everything for an install, only what is new
    /// for an upgrade (the rest carries over).
    pub fn to_grant(&self) -> &[Capability] {
        match &self.upgrade {
            Some((_, new)) => new,
            None => &self.requested,
        }
    }
}

/// The registry of one host.
#[derive(Debug, Clone)]
pub struct Registry {
    db: Database,
    runtime: Runtime,
    bundles: PathBuf,
}

impl Registry {
    /// The registry in `db`, keeping bundles under `bundles_dir`.
    pub fn new(db: Database, runtime: Runtime, bundles_dir: PathBuf) -> Self {
        Registry {
            db,
            runtime,
            bundles: bundles_dir,
        }
    }

    /// Verify a bundle and describe what it asks for. Installs nothing.
    ///
    /// A connector's `spec()` is asked again and must say what the signed
    /// manifest says: a signature proves who made the manifest, not that it
    /// tells the truth about the component.
    pub async fn review(
        &self,
        bytes: Vec<u8>,
        what: &str,
        allow_unsigned: bool,
        upgrade_of: Option<&str>,
    ) -> Result<Review, RegistryError> {
        let bundle = Bundle::parse(&bytes, what)?;
        let signer = bundle.verify(
            what,
            |id| self.db.trusted_key(id).ok().flatten(),
            allow_unsigned,
        )?;
        let m = &bundle.manifest;
        let plugin_ref = format!("{}@{}", m.id, m.version);
        if !nexo_runtime::bindings::serves(&m.wit_version.to_string()) {
            return Err(BundleError::IncompatibleWit {
                plugin: plugin_ref,
                found: m.wit_version.to_string(),
                served: nexo_runtime::bindings::served_text(),
            }
            .into());
        }
        // Memory is granted as asked, within the admin's cap: an ask above
        // it is refused here, before anything is installed.
        Limits::default()
            .memory_for(m.capabilities.memory_asked())
            .map_err(|source| RegistryError::MemoryOverCap {
                plugin: plugin_ref.clone(),
                source,
            })?;
        let active = self.db.active_version(&m.id)?;
        let upgrade = match (upgrade_of, active) {
            (None, Some(active)) => {
                return Err(RegistryError::AlreadyInstalled {
                    id: m.id.clone(),
                    active: active.version.to_string(),
                });
            }
            (None, None) => None,
            (Some(id), _) if id != m.id => {
                return Err(RegistryError::WrongPlugin {
                    expected: id.to_string(),
                    found: plugin_ref,
                });
            }
            (Some(id), None) => return Err(RegistryError::NotInstalled(id.to_string())),
            (Some(_), Some(active)) => {
                if m.version <= active.version {
                    return Err(RegistryError::NotNewer {
                        id: m.id.clone(),
                        offered: m.version.to_string(),
                        active: active.version.to_string(),
                    });
                }
                let active_wit = semver::Version::parse(&active.wit_version)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if active_wit.major != m.wit_version.major {
                    return Err(RegistryError::IncompatibleUpgrade {
                        id: m.id.clone(),
                        offered: m.version.to_string(),
                        offered_wit: m.wit_version.to_string(),
                        active: active.version.to_string(),
                        active_wit: active.wit_version.clone(),
                    });
                }
                let new: Vec<Capability> = capabilities_of(&m.capabilities)
                    .into_iter()
                    .filter(|c| !granted(&active.grants, c))
                    .collect();
                Some((active, new))
            }
        };
        // Precompile now: the component must load as the kind it claims,
        // and the first run should not pay for compilation.
        let plugin = self
            .runtime
            .load_verified(&bundle, &plugin_ref)
            .map_err(RegistryError::from)?;
        if Kind::from(plugin.info().world) != m.kind {
            return Err(BundleError::ManifestMismatch(vec![format!(
                "the manifest says {} but the component is a {}",
                m.kind,
                plugin.info().world
            )])
            .into());
        }
        nexo_runtime::vet::confirm_spec(&plugin, m).await?;
        Ok(Review {
            requested: capabilities_of(&m.capabilities),
            bundle_bytes_sha256: sha256_hex(&bytes),
            bundle_bytes: bytes,
            bundle,
            signer,
            upgrade,
            plugin,
        })
    }

    /// Install (or upgrade to) a reviewed bundle with `grant`. Refused,
    /// leaving everything as it was, unless the grant covers every request.
    pub fn install(
        &self,
        review: Review,
        grant: &CapabilityGrant,
    ) -> Result<VersionRow, RegistryError> {
        let m = &review.bundle.manifest;
        // An upgrade keeps what the active version was granted.
        let mut effective = review
            .upgrade
            .as_ref()
            .map(|(a, _)| a.grants.clone())
            .unwrap_or_default();
        effective
            .http_origins
            .extend(grant.http_origins.iter().cloned());
        effective.secrets.extend(grant.secrets.iter().cloned());
        effective.kv_bytes = effective.kv_bytes.max(grant.kv_bytes);
        effective.connection_origins |= grant.connection_origins;
        let missing: Vec<String> = review
            .requested
            .iter()
            .filter(|c| !granted(&effective, c))
            .map(|c| c.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(RegistryError::NotGranted {
                plugin: format!("{}@{}", m.id, m.version),
                missing,
            });
        }
        // Only what was asked for is kept: a grant never exceeds the request.
        let asked = grant_all(&review.requested);
        effective
            .http_origins
            .retain(|o| asked.http_origins.contains(o));
        effective.http_origins.sort();
        effective.http_origins.dedup();
        effective.secrets.retain(|s| asked.secrets.contains(s));
        effective.secrets.sort();
        effective.secrets.dedup();
        effective.kv_bytes = effective.kv_bytes.min(asked.kv_bytes);
        effective.connection_origins &= asked.connection_origins;

        let path = self
            .bundles
            .join(format!("{}.nexo", review.bundle_bytes_sha256));
        if !path.exists() {
            let io = |e: std::io::Error| RegistryError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            };
            std::fs::create_dir_all(&self.bundles).map_err(io)?;
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, &review.bundle_bytes).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
        }
        // Several hosts: every one of them loads it from the database.
        if self.db.postgres().is_some() {
            self.db
                .put_bundle(&review.bundle_bytes_sha256, &review.bundle_bytes)?;
        }
        let row = VersionRow {
            plugin_id: m.id.clone(),
            version: m.version.clone(),
            kind: m.kind.to_string(),
            wit_version: m.wit_version.to_string(),
            manifest: String::from_utf8_lossy(&review.bundle.manifest_bytes).into_owned(),
            bundle_sha256: review.bundle_bytes_sha256.clone(),
            component_sha256: m.component.sha256.clone(),
            signer_key_id: match &review.signer {
                Signer::Trusted(k) => Some(k.key_id()),
                Signer::UnsignedDev => None,
            },
            grants: effective,
            installed_at: String::new(),
        };
        self.db.insert_version(&row)?;
        tracing::info!(plugin = %m.id, version = %m.version, "plugin installed");
        Ok(row)
    }

    /// Make an older installed version active again (default: the newest
    /// one below the active version). Its own grants come back with it.
    pub fn rollback(
        &self,
        id: &str,
        to: Option<&semver::Version>,
    ) -> Result<VersionRow, RegistryError> {
        let active = self
            .db
            .active_version(id)?
            .ok_or_else(|| RegistryError::NotInstalled(id.to_string()))?;
        let versions = self.db.plugin_versions(id)?;
        let target = match to {
            Some(v) => versions
                .iter()
                .find(|r| &r.version == v)
                .cloned()
                .ok_or_else(|| RegistryError::NoSuchVersion {
                    id: id.to_string(),
                    version: v.to_string(),
                    installed: versions
                        .iter()
                        .map(|r| r.version.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?,
            None => versions
                .iter()
                .rev()
                .find(|r| r.version < active.version)
                .cloned()
                .ok_or_else(|| RegistryError::NothingToRollBack(id.to_string()))?,
        };
        self.db.set_active_version(id, &target.version)?;
        tracing::info!(plugin = %id, from = %active.version, to = %target.version, "plugin rolled back");
        Ok(target)
    }

    /// Remove a plugin, every version. Refused while connections use it,
    /// naming them, unless `force`, which removes those connections too
    /// and pauses the pipelines that used them.
    /// Returns the connections removed.
    pub fn remove(&self, id: &str, force: bool) -> Result<Vec<String>, RegistryError> {
        if self.db.active_version(id)?.is_none() {
            return Err(RegistryError::NotInstalled(id.to_string()));
        }
        let users = self.db.connection_names(Some(id))?;
        let pipelines = self.db.pipelines_using_mapper(id)?;
        if !pipelines.is_empty() && !force {
            return Err(RegistryError::UsedByPipelines {
                id: id.to_string(),
                pipelines,
            });
        }
        if !users.is_empty() && !force {
            return Err(RegistryError::InUse {
                id: id.to_string(),
                connections: users,
            });
        }
        // As `nexo connection remove --force` does: the pipelines that
        // used a removed connection are paused, saying why.
        for c in &users {
            let reason = format!(
                "connection {c} was removed with its plugin {id} (`nexo plugin remove --force`); \
                 add a connection named {c} again or point the pipeline at another one, then \
                 `nexo pipeline resume`"
            );
            self.db.remove_connection(c, Some(&reason))?;
        }
        self.db.delete_plugin(id)?;
        tracing::info!(plugin = %id, removed_connections = users.len(), "plugin removed");
        Ok(users)
    }

    /// A given installed version of `id`, loaded for a run.
    pub fn load_version(
        &self,
        id: &str,
        version: &semver::Version,
    ) -> Result<(VersionRow, LoadedPlugin), RegistryError> {
        let row = self
            .db
            .plugin_versions(id)?
            .into_iter()
            .find(|r| &r.version == version)
            .ok_or_else(|| RegistryError::NoSuchVersion {
                id: id.to_string(),
                version: version.to_string(),
                installed: "see `nexo plugin list`".into(),
            })?;
        self.load_row(row)
    }

    /// The active version of `id`, loaded (from the compile cache) for a run.
    /// A run keeps what this returns, so an upgrade meanwhile affects only
    /// the next run.
    pub fn load_active(&self, id: &str) -> Result<(VersionRow, LoadedPlugin), RegistryError> {
        let row = self
            .db
            .active_version(id)?
            .ok_or_else(|| RegistryError::NotInstalled(id.to_string()))?;
        self.load_row(row)
    }

    fn load_row(&self, row: VersionRow) -> Result<(VersionRow, LoadedPlugin), RegistryError> {
        let what = format!("{}@{}", row.plugin_id, row.version);
        let bytes = self.bundle_bytes(&row, &what)?;
        // The stored bundle is checked again: the data directory is not
        // trusted more than the bundle was.
        let bundle = Bundle::parse(&bytes, &what)?;
        let plugin = self
            .runtime
            .load_verified(&bundle, &what)
            .map_err(RegistryError::from)?;
        Ok((row, plugin))
    }

    /// The bytes of a version's bundle: from this host's content-addressed
    /// store, else (several hosts) from the database, checked against the
    /// digest it was installed with and kept here for the next load.
    fn bundle_bytes(&self, row: &VersionRow, what: &str) -> Result<Vec<u8>, RegistryError> {
        let path = self.bundles.join(format!("{}.nexo", row.bundle_sha256));
        let io = |e: std::io::Error| RegistryError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.db.postgres().is_some() => {}
            Err(e) => return Err(io(e)),
        }
        let shared = |problem| RegistryError::SharedBundle {
            plugin: what.to_string(),
            sha256: row.bundle_sha256.clone(),
            problem,
        };
        let bytes = self
            .db
            .bundle(&row.bundle_sha256)?
            .ok_or_else(|| shared("is not stored"))?;
        if sha256_hex(&bytes) != row.bundle_sha256 {
            return Err(shared("does not match the digest it was installed with"));
        }
        std::fs::create_dir_all(&self.bundles).map_err(io)?;
        // Unique per fetch: two runs starting at once on a fresh host both
        // fetch the bundle, and each must rename its own file.
        static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("partial-{}-{n}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        tracing::info!(plugin = what, "bundle fetched from the shared database");
        Ok(bytes)
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }
}

//! Connections: an installed plugin, its config (validated against the
//! plugin's JSON Schema when saved, errors naming the field), its secrets
//! (sealed at rest, never shown back), the origins of *this* system granted
//! to it, and an environment (sandbox or production).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::{Registry, RegistryError};
use nexo_bundle::manifest::Manifest;
use nexo_db::StoreError;
use nexo_db::connections::{ConnectionGrants, ConnectionRow, Environment, Removal, SealedSecret};
use nexo_db::sealed::{SealError, Sealer};
use nexo_runtime::limits::Limits;
use nexo_runtime::plugin::{Approved, ConnectorPlugin, Grants, OpenError, Sandbox};
use nexo_runtime::sandbox::budget::{Budget, RequestBudgets};
use nexo_runtime::sandbox::credential::Credential;
use nexo_runtime::sandbox::kv::KvStore;
use nexo_runtime::sandbox::policy::HttpGrant;
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_runtime::{PluginError, PluginRef};

mod checks;
mod update;
pub use checks::overrides_of;
use checks::*;
pub use update::{ConnectionUpdate, Origins, RequestsPerMinute};

/// A connection operation that failed; nothing was saved.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Bad name.
    #[error("connection name `{0}` must be 1-64 lower-case letters, digits, `-` or `_`")]
    BadName(String),
    /// Name taken.
    #[error("a connection named `{0}` already exists; remove it first or pick another name")]
    Exists(String),
    /// No such connection.
    #[error("no connection named `{0}`; see `nexo connection list`")]
    Unknown(String),
    /// The config does not match the plugin's schema.
    #[error("the config does not fit {plugin}'s schema:\n  - {}", .errors.join("\n  - "))]
    InvalidConfig {
        /// Plugin.
        plugin: String,
        /// One line per problem, naming the field.
        errors: Vec<String>,
    },
    /// A secret the plugin does not use, or one it needs that is missing.
    #[error("{0}")]
    Secrets(String),
    /// An origin not covered by what the plugin was granted at install.
    #[error(
        "origin {origin} is not covered by what {plugin} was granted at install ({granted}); upgrade the grant or use another origin"
    )]
    OriginNotGranted {
        /// The origin.
        origin: String,
        /// Plugin.
        plugin: String,
        /// Its grants.
        granted: String,
    },
    /// Registry failure (plugin not installed, ...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing failure.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The plugin could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Bad origin text.
    #[error("{0}")]
    Origin(String),
    /// An OAuth 2.0 flow or refresh failed.
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    /// Pipelines use the connection that was to be removed.
    #[error(
        "connection `{connection}` is used by pipeline(s) {}: point them at another connection \
         (`nexo pipeline apply`) or remove them first (`nexo pipeline remove`), or pass --force to \
         remove it anyway and pause them",
        .pipelines.join(", ")
    )]
    InUse {
        /// The connection.
        connection: String,
        /// The pipelines using it, by name.
        pipelines: Vec<String>,
    },
    /// An origin override on a production connection.
    #[error(
        "origin overrides ({overrides}) are only for sandbox connections: a production connection \
         reaches the system's own hosts; remove the --origin-override or use --env sandbox"
    )]
    OverrideOnProduction {
        /// The overridden origins.
        overrides: String,
    },
    /// An origin override of an origin the plugin does not name exactly.
    #[error(
        "{plugin} does not declare the origin {from}, so it cannot be overridden; the origins it \
         declares exactly are: {declared}"
    )]
    OverrideNotDeclared {
        /// The origin to override.
        from: String,
        /// Plugin.
        plugin: String,
        /// Its exact origins.
        declared: String,
    },
    /// An origin override that is not one exact origin on each side.
    #[error(transparent)]
    Override(#[from] nexo_runtime::sandbox::overrides::OverrideError),
    /// An update that names nothing to change.
    #[error(
        "nothing to update on connection `{0}`: give --config, --secret, --remove-secret, \
         --grant-http / --grant-private-http, --origin-override / --remove-origin-override or \
         --requests-per-minute"
    )]
    NothingToUpdate(String),
}

/// Requests per minute a connection may send when its admin chose no
/// budget: a plugin in a loop, or a bug, must not hammer the remote system
/// (and use up the account's quota) at the host's full speed.
pub const DEFAULT_REQUESTS_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(599);

/// The budget a connection's grants give it: `None` (not set) is the
/// default of [`DEFAULT_REQUESTS_PER_MINUTE`]; `Some(0)` is no limit, an
/// explicit choice (`--requests-per-minute unlimited`); `Some(n)` is `n`.
pub fn request_budget(grants: &ConnectionGrants) -> Option<NonZeroU32> {
    match grants.requests_per_minute {
        None => Some(DEFAULT_REQUESTS_PER_MINUTE),
        Some(n) => NonZeroU32::new(n),
    }
}

/// Check `config` against `manifest`'s config schema.
pub(crate) fn check_config_of(
    manifest: &Manifest,
    config: &serde_json::Value,
) -> Result<(), ConnectionError> {
    check_config(
        &format!("{}@{}", manifest.id, manifest.version),
        manifest,
        config,
    )
}

/// What `add` needs.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// Unique name.
    pub name: String,
    /// Installed plugin id.
    pub plugin_id: String,
    /// Pin to this version (else follow the active one).
    pub pinned_version: Option<semver::Version>,
    /// Environment.
    pub environment: Environment,
    /// Config.
    pub config: serde_json::Value,
    /// Secret values by name.
    pub secrets: BTreeMap<String, SecretValue>,
    /// Origins of this system, and the request budget.
    pub grants: ConnectionGrants,
}

/// The connections of a host. Clones share everything, including the
/// request budgets: open every connection of a process through clones of
/// one `Connections`, so that all its runs share each connection's budget.
#[derive(Debug, Clone)]
pub struct Connections {
    pub(crate) registry: Registry,
    sealer: Arc<Sealer>,
    kv: KvStore,
    budgets: RequestBudgets,
    pub(crate) oauth: Arc<crate::oauth::Keeper>,
}

impl Connections {
    /// The registry (and through it the database) these connections use.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Connections over this registry, sealing with `sealer`.
    pub fn new(registry: Registry, sealer: Sealer) -> Self {
        let kv = registry.db().kv_store();
        let sealer = Arc::new(sealer);
        let oauth = Arc::new(crate::oauth::Keeper::new(
            registry.db().clone(),
            sealer.clone(),
        ));
        Connections {
            registry,
            sealer,
            kv,
            budgets: RequestBudgets::new(),
            oauth,
        }
    }

    /// The request budgets of the connections opened through this value
    /// and its clones.
    pub fn request_budgets(&self) -> &RequestBudgets {
        &self.budgets
    }

    /// A connection's request budget, unless it was explicitly given none.
    fn budget_of(&self, row: &ConnectionRow) -> Option<Arc<Budget>> {
        match request_budget(&row.grants) {
            None => {
                self.budgets.forget(&row.name);
                None
            }
            Some(per_minute) => Some(self.budgets.for_connection(&row.name, per_minute)),
        }
    }

    pub(crate) fn manifest_for(
        &self,
        plugin_id: &str,
        pinned: Option<&semver::Version>,
    ) -> Result<(nexo_db::registry::VersionRow, Manifest), ConnectionError> {
        let db = self.registry.db();
        let row = match pinned {
            Some(v) => db
                .plugin_versions(plugin_id)?
                .into_iter()
                .find(|r| &r.version == v)
                .ok_or_else(|| RegistryError::NoSuchVersion {
                    id: plugin_id.to_string(),
                    version: v.to_string(),
                    installed: "see `nexo plugin list`".into(),
                })?,
            None => db
                .active_version(plugin_id)?
                .ok_or_else(|| RegistryError::NotInstalled(plugin_id.to_string()))?,
        };
        let manifest: Manifest =
            serde_json::from_str(&row.manifest).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((row, manifest))
    }

    /// Seal `secrets` for the connection `name` (each bound to the
    /// connection and the secret's name).
    fn seal(
        &self,
        name: &str,
        secrets: &BTreeMap<String, SecretValue>,
    ) -> Result<Vec<SealedSecret>, SealError> {
        secrets
            .iter()
            .map(|(secret, value)| {
                let (nonce, sealed) = self.sealer.seal(&format!("{name}/{secret}"), value)?;
                Ok(SealedSecret {
                    name: secret.clone(),
                    nonce,
                    sealed,
                })
            })
            .collect()
    }

    /// Validate and save a new connection. Nothing is saved on any error.
    pub fn add(&self, new: NewConnection) -> Result<ConnectionRow, ConnectionError> {
        check_name(&new.name)?;
        let db = self.registry.db();
        if db.connection(&new.name)?.is_some() {
            return Err(ConnectionError::Exists(new.name));
        }
        let (version, manifest) = self.manifest_for(&new.plugin_id, new.pinned_version.as_ref())?;
        let plugin = format!("{}@{}", manifest.id, manifest.version);

        check_config(&plugin, &manifest, &new.config)?;
        let declared = declared_secrets(&manifest);
        check_given_secrets(&plugin, &declared, &new.secrets)?;
        // The secret an OAuth credential fills comes from `nexo connection
        // authorize`, unless the admin gives a static token for it.
        let by_oauth = manifest
            .capabilities
            .oauth2
            .as_ref()
            .map(|o| o.secret.as_str());
        if let Some(missing) = declared
            .iter()
            .find(|d| !new.secrets.contains_key(**d) && Some(**d) != by_oauth)
        {
            return Err(missing_secret(&plugin, missing));
        }
        let self_hosted =
            manifest.capabilities.connection_origins && version.grants.connection_origins;
        check_origins(
            &plugin,
            &version.grants.http_origins,
            self_hosted,
            &new.grants,
        )?;
        let mut grants = new.grants;
        grants.origin_overrides = checked_overrides(&plugin, &manifest, new.environment, &grants)?;

        let sealed = self.seal(&new.name, &new.secrets)?;
        let row = ConnectionRow {
            name: new.name,
            plugin_id: new.plugin_id,
            pinned_version: new.pinned_version,
            environment: new.environment,
            config: new.config.to_string(),
            grants,
        };
        db.insert_connection(&row, &sealed)?;
        tracing::info!(connection = %row.name, plugin = %plugin, environment = row.environment.as_str(), "connection added");
        Ok(row)
    }

    /// A connection's row.
    pub fn get(&self, name: &str) -> Result<ConnectionRow, ConnectionError> {
        self.registry
            .db()
            .connection(name)?
            .ok_or_else(|| ConnectionError::Unknown(name.to_string()))
    }

    /// Names of the secrets a connection has (never their values).
    pub fn secret_names(&self, name: &str) -> Result<Vec<String>, ConnectionError> {
        Ok(self
            .registry
            .db()
            .connection_secrets(name)?
            .into_iter()
            .map(|s| s.name)
            .collect())
    }

    /// Open the connection's connector under its sandbox: the pinned (or
    /// active) plugin version, its grants, its secrets opened for the call,
    /// and the connection's request budget, shared with every other
    /// instance opened through this `Connections` (or a clone).
    pub async fn open(
        &self,
        name: &str,
        limits: Limits,
    ) -> Result<(ConnectionRow, ConnectorPlugin), ConnectionError> {
        let row = self.get(name)?;
        let budget = self.budget_of(&row);
        let (version, plugin) = match &row.pinned_version {
            Some(v) => self.registry.load_version(&row.plugin_id, v)?,
            None => self.registry.load_active(&row.plugin_id)?,
        };
        let mut http = Vec::new();
        for o in &row.grants.http {
            http.push(HttpGrant::public(o).map_err(|e| ConnectionError::Origin(e.to_string()))?);
        }
        for o in &row.grants.private_http {
            http.push(HttpGrant::private(o).map_err(|e| ConnectionError::Origin(e.to_string()))?);
        }
        // An overridden origin is granted by its override: the admin named
        // it, and it is still only reachable as far as the install approved.
        // A production row with overrides is never saved by `add` or
        // `update`; one written behind their back is refused, not obeyed.
        if row.environment == Environment::Production && !row.grants.origin_overrides.is_empty() {
            return Err(ConnectionError::OverrideOnProduction {
                overrides: row
                    .grants
                    .origin_overrides
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let overrides = overrides_of(&row.grants)?;
        for (logical, _) in overrides.iter() {
            http.push(
                HttpGrant::public(&logical.to_string())
                    .map_err(|e| ConnectionError::Origin(e.to_string()))?,
            );
        }
        let mut secrets = BTreeMap::new();
        for s in self.registry.db().connection_secrets(name)? {
            let value = self
                .sealer
                .open(&format!("{name}/{}", s.name), &s.nonce, &s.sealed)?;
            secrets.insert(s.name, value);
        }
        // The signed manifest, as granted at install, is the plugin's whole
        // authority; what its live `spec()` says beyond it is ignored.
        let manifest: Manifest = serde_json::from_str(&version.manifest)
            .map_err(|e| StoreError::Corrupt(format!("manifest of {}: {e}", version.plugin_id)))?;
        // An authorized OAuth credential fills its secret (over a static
        // token of the same name); one not authorized yet answers the
        // plugin's requests with a 401 that says how to authorize.
        let mut credentials: BTreeMap<String, Arc<dyn Credential>> = BTreeMap::new();
        if let Some(decl) = &manifest.capabilities.oauth2
            && (!secrets.contains_key(&decl.secret) || self.registry.db().oauth(name)?.is_some())
        {
            secrets.remove(&decl.secret);
            credentials.insert(decl.secret.clone(), self.credential_of(&row, decl)?);
        }
        let sandbox = Sandbox {
            plugin: PluginRef {
                id: row.plugin_id.clone(),
                version: version.version.to_string(),
            },
            limits,
            grants: Grants {
                http,
                kv_bytes: version.grants.kv_bytes,
            },
            secrets,
            credentials,
            kv: Some((
                self.kv.clone(),
                format!(
                    "{}/{}/{}",
                    row.plugin_id,
                    row.name,
                    row.environment.as_str()
                ),
            )),
        };
        let approved = Approved::of(&manifest.capabilities, &version.grants);
        let mut connector = ConnectorPlugin::open_approved(&plugin, sandbox, &approved).await?;
        if let Some(budget) = budget {
            connector = connector.with_request_budget(budget);
        }
        if !overrides.is_empty() {
            connector = connector.with_origin_overrides(overrides)?;
        }
        Ok((row, connector))
    }

    fn credential_of(
        &self,
        row: &ConnectionRow,
        decl: &nexo_bundle::oauth::OAuth2,
    ) -> Result<Arc<dyn Credential>, ConnectionError> {
        Ok(Arc::new(crate::oauth::ConnectionCredential {
            keeper: self.oauth.clone(),
            connection: row.name.clone(),
            decl: decl.clone(),
            overrides: overrides_of(&row.grants)?,
            last: std::sync::Mutex::new(None),
        }))
    }

    /// The OAuth access token of connection `name` as the host keeps it
    /// fresh (what its plugin's `{{secret:NAME}}` is filled with); `None`
    /// when its plugin declares no OAuth credential. Every connection
    /// opened through this value and its clones shares one refresh at a
    /// time.
    pub fn credential(&self, name: &str) -> Result<Option<Arc<dyn Credential>>, ConnectionError> {
        let row = self.get(name)?;
        let (_, manifest) = self.manifest_for(&row.plugin_id, row.pinned_version.as_ref())?;
        manifest
            .capabilities
            .oauth2
            .as_ref()
            .map(|decl| self.credential_of(&row, decl))
            .transpose()
    }

    /// Run the plugin's `check` with the connection's config.
    pub async fn test(&self, name: &str) -> Result<(), ConnectionError> {
        let (row, connector) = self.open(name, Limits::default()).await?;
        connector.check(&row.config).await.into_result()?;
        Ok(())
    }

    /// Delete a connection and its secrets. Refused while pipelines use it
    /// (as source or destination), naming them, unless `force`: then it is
    /// removed anyway and those pipelines are paused with a reason naming
    /// it. Returns the pipelines paused.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<String>, ConnectionError> {
        let reason = format!(
            "connection {name} was removed (with --force); point the pipeline at another connection \
             (`nexo pipeline apply`) or add a connection named {name} again, then `nexo pipeline resume`"
        );
        let paused = match self
            .registry
            .db()
            .remove_connection(name, force.then_some(reason.as_str()))?
        {
            Removal::Unknown => return Err(ConnectionError::Unknown(name.to_string())),
            Removal::InUse(pipelines) => {
                return Err(ConnectionError::InUse {
                    connection: name.to_string(),
                    pipelines,
                });
            }
            Removal::Removed { paused } => paused,
        };
        self.budgets.forget(name);
        tracing::info!(connection = %name, paused = ?paused, "connection removed");
        Ok(paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexo_runtime::sandbox::policy::OriginPattern;

    #[test]
    fn no_budget_set_is_the_default_and_zero_is_explicitly_unlimited() {
        let with = |n| ConnectionGrants {
            requests_per_minute: n,
            ..ConnectionGrants::default()
        };
        assert_eq!(request_budget(&with(None)), NonZeroU32::new(600));
        assert_eq!(request_budget(&with(Some(0))), None);
        assert_eq!(request_budget(&with(Some(90))), NonZeroU32::new(90));
    }

    #[test]
    fn connection_origins_must_sit_inside_the_plugin_grant() {
        let granted = vec![
            "https://*.crm.example".to_string(),
            "http://*:*".to_string(),
        ];
        let p = |s| OriginPattern::parse(s).unwrap();
        assert!(covered(&p("https://acme.crm.example"), &granted));
        assert!(covered(&p("http://127.0.0.1:8080"), &granted));
        assert!(!covered(&p("https://evil.example"), &granted));
        assert!(
            !covered(&p("https://*.example"), &granted),
            "a wider wildcard is not covered"
        );
        assert!(
            covered(&p("https://*.crm.example"), &granted),
            "the same wildcard is"
        );
    }
}

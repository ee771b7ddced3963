//! Changing a connection in place (`nexo connection update`, `PATCH
//! /api/connections/{name}`): what is given is checked exactly as `add`
//! checks it, against the plugin version the connection uses, and saved in
//! one transaction; what is not given stays. A replaced secret takes effect
//! the next time the connection is opened (each run and test opens it).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use super::{
    ConnectionError, Connections, check_config, check_given_secrets, check_origins,
    checked_overrides, declared_secrets, missing_secret,
};
use nexo_db::connections::{ConnectionChange, ConnectionGrants, ConnectionRow};
use nexo_runtime::sandbox::overrides::exact_origin;
use nexo_runtime::sandbox::secrets::SecretValue;

/// The origins of this system a connection may reach, replacing both
/// lists of its grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// Origins on public addresses.
    pub http: Vec<String>,
    /// Exact origins that may be internal addresses.
    pub private_http: Vec<String>,
}

/// A connection's new request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestsPerMinute {
    /// Back to [`super::DEFAULT_REQUESTS_PER_MINUTE`].
    Default,
    /// No limit, chosen explicitly.
    Unlimited,
    /// At most this many a minute.
    Limit(NonZeroU32),
}

impl RequestsPerMinute {
    /// As stored in [`ConnectionGrants::requests_per_minute`].
    fn stored(self) -> Option<u32> {
        match self {
            RequestsPerMinute::Default => None,
            RequestsPerMinute::Unlimited => Some(0),
            RequestsPerMinute::Limit(n) => Some(n.get()),
        }
    }
}

/// What to change on a connection; what is `None` or empty stays as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    /// A new config, validated against the plugin's schema.
    pub config: Option<serde_json::Value>,
    /// Secrets to set (each one the plugin declares), replacing the
    /// stored value of the same name.
    pub secrets: BTreeMap<String, SecretValue>,
    /// Secrets to delete: only ones the plugin no longer declares (left
    /// over from an older version), or the static token of the secret its
    /// OAuth credential fills (the connection then uses its authorization);
    /// any other declared secret is required, and replaced with `secrets`
    /// instead.
    pub remove_secrets: Vec<String>,
    /// New origins (both lists are replaced).
    pub origins: Option<Origins>,
    /// A new request budget.
    pub requests_per_minute: Option<RequestsPerMinute>,
    /// Origin overrides to set, `FROM` → `TO` (replacing one of the same
    /// `FROM`); checked as `add` checks them (sandbox connections only).
    pub origin_overrides: BTreeMap<String, String>,
    /// Overridden origins (`FROM`) whose override to delete.
    pub remove_origin_overrides: Vec<String>,
}

impl ConnectionUpdate {
    fn is_empty(&self) -> bool {
        self.config.is_none()
            && self.secrets.is_empty()
            && self.remove_secrets.is_empty()
            && self.origins.is_none()
            && self.requests_per_minute.is_none()
            && self.origin_overrides.is_empty()
            && self.remove_origin_overrides.is_empty()
    }
}

impl Connections {
    /// Change the connection `name` as `update` says, with the checks of
    /// [`Connections::add`]; nothing changes on any error. Returns the
    /// updated row and one phrase per change (secret names, never values).
    pub fn update(
        &self,
        name: &str,
        update: ConnectionUpdate,
    ) -> Result<(ConnectionRow, Vec<String>), ConnectionError> {
        let row = self.get(name)?;
        if update.is_empty() {
            return Err(ConnectionError::NothingToUpdate(name.to_string()));
        }
        let (version, manifest) = self.manifest_for(&row.plugin_id, row.pinned_version.as_ref())?;
        let plugin = format!("{}@{}", manifest.id, manifest.version);
        let mut changes = Vec::new();
        let mut change = ConnectionChange::default();

        if let Some(config) = &update.config {
            check_config(&plugin, &manifest, config)?;
            change.config = Some(config.to_string());
            changes.push("config replaced".to_string());
        }

        let declared = declared_secrets(&manifest);
        check_given_secrets(&plugin, &declared, &update.secrets)?;
        // The secret an OAuth credential fills is not required: without a
        // static token it comes from `nexo connection authorize`.
        let by_oauth = manifest
            .capabilities
            .oauth2
            .as_ref()
            .map(|o| o.secret.as_str());
        let mut held: BTreeSet<String> = self
            .registry
            .db()
            .connection_secrets(name)?
            .into_iter()
            .map(|s| s.name)
            .collect();
        for secret in &update.remove_secrets {
            if declared.contains(&secret.as_str()) && Some(secret.as_str()) != by_oauth {
                return Err(ConnectionError::Secrets(format!(
                    "{plugin} needs the secret `{secret}`, so it cannot be removed: replace it with \
                     --secret {secret}=env:VAR (or file:PATH)"
                )));
            }
            if !held.remove(secret) {
                return Err(ConnectionError::Secrets(format!(
                    "connection `{name}` has no secret named `{secret}` (it has: {}); see `nexo connection show {name}`",
                    if held.is_empty() {
                        "none".to_string()
                    } else {
                        held.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
            changes.push(format!("secret {secret} removed"));
        }
        for secret in update.secrets.keys() {
            let verb = if held.insert(secret.clone()) {
                "added"
            } else {
                "replaced"
            };
            changes.push(format!("secret {secret} {verb}"));
        }
        // A plugin upgraded since the connection was added may declare a
        // secret it does not have yet: the update must bring it.
        if let Some(missing) = declared
            .iter()
            .find(|d| !held.contains(**d) && Some(**d) != by_oauth)
        {
            return Err(missing_secret(&plugin, missing));
        }

        let overrides_change =
            !update.origin_overrides.is_empty() || !update.remove_origin_overrides.is_empty();
        if update.origins.is_some() || update.requests_per_minute.is_some() || overrides_change {
            let origins = update.origins.clone().unwrap_or_else(|| Origins {
                http: row.grants.http.clone(),
                private_http: row.grants.private_http.clone(),
            });
            let mut grants = ConnectionGrants {
                http: origins.http,
                private_http: origins.private_http,
                requests_per_minute: match update.requests_per_minute {
                    Some(r) => r.stored(),
                    None => row.grants.requests_per_minute,
                },
                origin_overrides: row.grants.origin_overrides.clone(),
            };
            for from in &update.remove_origin_overrides {
                let key = exact_origin("FROM", from)?.to_string();
                if grants.origin_overrides.remove(&key).is_none() {
                    return Err(ConnectionError::Origin(format!(
                        "connection `{name}` has no origin override of {from} (it has: {}); see `nexo connection show {name}`",
                        if grants.origin_overrides.is_empty() {
                            "none".to_string()
                        } else {
                            grants
                                .origin_overrides
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )));
                }
                changes.push(format!("origin override of {key} removed"));
            }
            for (from, to) in &update.origin_overrides {
                let key = exact_origin("FROM", from)?.to_string();
                grants.origin_overrides.insert(key.clone(), to.clone());
                changes.push(format!("origin {key} overridden to {to}"));
            }
            grants.origin_overrides =
                checked_overrides(&plugin, &manifest, row.environment, &grants)?;
            if update.origins.is_some() {
                let self_hosted =
                    manifest.capabilities.connection_origins && version.grants.connection_origins;
                check_origins(&plugin, &version.grants.http_origins, self_hosted, &grants)?;
                changes.push("origins replaced".to_string());
            }
            if let Some(r) = update.requests_per_minute {
                changes.push(match r {
                    RequestsPerMinute::Default => format!(
                        "requests per minute back to the default of {}",
                        super::DEFAULT_REQUESTS_PER_MINUTE
                    ),
                    RequestsPerMinute::Unlimited => "requests per minute unlimited".to_string(),
                    RequestsPerMinute::Limit(n) => format!("at most {n} requests per minute"),
                });
            }
            change.grants = Some(grants);
        }

        change.set_secrets = self.seal(name, &update.secrets)?;
        change.remove_secrets = update.remove_secrets;
        if !self.registry.db().update_connection(name, &change)? {
            return Err(ConnectionError::Unknown(name.to_string()));
        }
        tracing::info!(connection = %name, plugin = %plugin, changes = %changes.join(", "), "connection updated");
        Ok((self.get(name)?, changes))
    }
}

//! What a connection must satisfy before it is stored: a usable name, a
//! config its plugin's schema accepts, exactly the secrets the plugin
//! declares, and origins inside what the plugin was granted.

use nexo_bundle::manifest::Manifest;
use nexo_db::connections::{ConnectionGrants, Environment};
use nexo_runtime::sandbox::overrides::{Overrides, exact_origin};
use nexo_runtime::sandbox::policy::{HttpGrant, Origin, OriginPattern};
use nexo_runtime::sandbox::redact::MIN_SECRET_BYTES;
use nexo_runtime::sandbox::secrets::SecretValue;
use std::collections::BTreeMap;

use super::ConnectionError;

pub(super) fn check_name(name: &str) -> Result<(), ConnectionError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConnectionError::BadName(name.to_string()))
    }
}

/// Whether a connection's origin is inside a plugin-level grant pattern.
pub(super) fn covered(origin: &OriginPattern, granted: &[String]) -> bool {
    let as_origin = match (&origin.host, origin.port) {
        (nexo_runtime::sandbox::policy::HostPattern::Exact(h), Some(port)) => Some(Origin {
            scheme: origin.scheme.clone(),
            host: h.clone(),
            port,
        }),
        _ => None,
    };
    granted
        .iter()
        .filter_map(|g| OriginPattern::parse(g).ok())
        .any(|g| match &as_origin {
            Some(o) => g.matches(o),
            None => &g == origin,
        })
}

/// Check `config` against the plugin's config schema, naming each field
/// that does not fit.
pub(super) fn check_config(
    plugin: &str,
    manifest: &Manifest,
    config: &serde_json::Value,
) -> Result<(), ConnectionError> {
    let Some(schema) = &manifest.config_schema else {
        return Ok(());
    };
    let validator =
        jsonschema::validator_for(schema).map_err(|e| ConnectionError::InvalidConfig {
            plugin: plugin.to_string(),
            errors: vec![format!("the plugin's own config schema is invalid: {e}")],
        })?;
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = if path.is_empty() {
                "the config".to_string()
            } else {
                format!("field `{path}`")
            };
            format!("{field}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConnectionError::InvalidConfig {
            plugin: plugin.to_string(),
            errors,
        })
    }
}

/// The names of the secrets a plugin declares (each one is required).
pub(super) fn declared_secrets(manifest: &Manifest) -> Vec<&str> {
    manifest
        .capabilities
        .secrets
        .iter()
        .map(|s| s.name.as_str())
        .collect()
}

/// The error for a declared secret a connection would not have.
pub(super) fn missing_secret(plugin: &str, missing: &str) -> ConnectionError {
    ConnectionError::Secrets(format!(
        "{plugin} needs the secret `{missing}`: pass --secret {missing}=env:VAR (or file:PATH)"
    ))
}

/// Secrets given by the admin: each one the plugin declares, and long
/// enough to be redacted.
pub(super) fn check_given_secrets(
    plugin: &str,
    declared: &[&str],
    given: &BTreeMap<String, SecretValue>,
) -> Result<(), ConnectionError> {
    if let Some(extra) = given.keys().find(|k| !declared.contains(&k.as_str())) {
        return Err(ConnectionError::Secrets(format!(
            "{plugin} does not use a secret named `{extra}` (it uses: {})",
            if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            }
        )));
    }
    // Shorter values could not be told apart from ordinary text, so they
    // could not be kept out of logs, errors and records.
    if let Some((name, value)) = given
        .iter()
        .find(|(_, v)| v.expose().len() < MIN_SECRET_BYTES)
    {
        return Err(ConnectionError::Secrets(format!(
            "the secret `{name}` is {} bytes long; secrets must be at least {MIN_SECRET_BYTES} bytes \
             (the host removes their values from everything a system answers, which needs a value \
             that cannot occur by chance): check that the variable or file holds the real credential",
            value.expose().len()
        )));
    }
    Ok(())
}

/// A connection's origins: each inside what the plugin was granted at
/// install (`approved`) — any, for a plugin approved to reach the server
/// named on each connection (`connection_origins`) — and each internal one
/// exact.
pub(super) fn check_origins(
    plugin: &str,
    approved: &[String],
    connection_origins: bool,
    grants: &ConnectionGrants,
) -> Result<(), ConnectionError> {
    for o in grants.http.iter().chain(&grants.private_http) {
        let pattern =
            OriginPattern::parse(o).map_err(|e| ConnectionError::Origin(e.to_string()))?;
        if !connection_origins && !covered(&pattern, approved) {
            return Err(ConnectionError::OriginNotGranted {
                origin: o.clone(),
                plugin: plugin.to_string(),
                granted: approved.join(", "),
            });
        }
    }
    for o in &grants.private_http {
        HttpGrant::private(o).map_err(|e| ConnectionError::Origin(e.to_string()))?;
    }
    Ok(())
}

/// A connection's origin overrides, normalised (`FROM` and `TO` each as
/// one exact origin): only on a sandbox connection, each `FROM` one of the
/// plugin's exact origins (its exact HTTP origins and OAuth endpoints),
/// each `TO` one exact `scheme://host:port`.
pub(super) fn checked_overrides(
    plugin: &str,
    manifest: &Manifest,
    environment: Environment,
    grants: &ConnectionGrants,
) -> Result<BTreeMap<String, String>, ConnectionError> {
    if grants.origin_overrides.is_empty() {
        return Ok(BTreeMap::new());
    }
    if environment == Environment::Production {
        return Err(ConnectionError::OverrideOnProduction {
            overrides: grants
                .origin_overrides
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let exact = manifest.capabilities.exact_origins();
    let mut out = BTreeMap::new();
    for (from, to) in &grants.origin_overrides {
        let logical = exact_origin("FROM", from)?;
        if !exact.contains(&logical) {
            return Err(ConnectionError::OverrideNotDeclared {
                from: from.clone(),
                plugin: plugin.to_string(),
                declared: if exact.is_empty() {
                    "none: it declares no exact origin".to_string()
                } else {
                    exact
                        .iter()
                        .map(|o| o.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        let physical = exact_origin("TO", to)?;
        if out
            .insert(logical.to_string(), physical.to_string())
            .is_some()
        {
            return Err(ConnectionError::Override(
                nexo_runtime::sandbox::overrides::OverrideError::Twice(logical.to_string()),
            ));
        }
    }
    Ok(out)
}

/// The overrides stored on a connection, ready for the runtime (and for
/// the host's own requests on its behalf).
pub fn overrides_of(grants: &ConnectionGrants) -> Result<Overrides, ConnectionError> {
    Ok(Overrides::parse(grants.origin_overrides.iter())?)
}

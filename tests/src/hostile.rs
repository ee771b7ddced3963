//! Opening a hostile test program the way every language's hostile tests
//! do: as a connector with one secret `token` it must never see, the given
//! limits and HTTP grants, and nothing else.

use std::collections::BTreeMap;

use nexo::limits::Limit;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{ConnectorPlugin, Grants, GuestError, Limits, PluginError, PluginRef, Sandbox};

use crate::load;

/// The sandbox of hostile plugin `id`: `limits`, `http`, no storage, and
/// the secret `token` = `secret`.
pub fn sandbox(id: &str, secret: &str, limits: Limits, http: Vec<HttpGrant>) -> Sandbox {
    Sandbox {
        plugin: PluginRef {
            id: id.into(),
            version: "0.1.0".into(),
        },
        limits,
        grants: Grants { http, kv_bytes: 0 },
        secrets: BTreeMap::from([("token".to_string(), SecretValue::new(secret))]),
        credentials: Default::default(),
        kv: None,
    }
}

/// The component `path` (a constant of [`crate::programs`]) opened in
/// [`sandbox`].
pub async fn open(
    path: &str,
    id: &str,
    secret: &str,
    limits: Limits,
    http: Vec<HttpGrant>,
) -> ConnectorPlugin {
    ConnectorPlugin::open(&load(path), sandbox(id, secret, limits, http))
        .await
        .unwrap()
}

/// The limit a call hit and its message; any other result fails the test.
pub fn limit_of(r: Result<impl std::fmt::Debug, PluginError>) -> (Limit, String) {
    match r {
        Err(e) => (
            e.limit()
                .unwrap_or_else(|| panic!("expected a limit error, got {e}")),
            e.to_string(),
        ),
        Ok(v) => panic!("expected a limit error, got {v:?}"),
    }
}

/// The plugin's own error value a call returned; any other result fails
/// the test.
pub fn guest_error(r: Result<impl std::fmt::Debug, PluginError>) -> GuestError {
    match r {
        Err(PluginError::Guest { error, .. }) => error,
        other => panic!("expected the plugin's own error value, got {other:?}"),
    }
}

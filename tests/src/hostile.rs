//! Opening a hostile test program the way every language's hostile tests
//! do: as a connector with one secret `token` it must never see, the given
//! limits and HTTP grants, and nothing else.

use std::collections::BTreeMap;

use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{ConnectorPlugin, Grants, Limits, PluginRef, Sandbox};

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

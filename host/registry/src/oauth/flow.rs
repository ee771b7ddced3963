//! The flows an admin runs to authorize a connection: the
//! authorization-code flow with PKCE (the admin signs in at the system and
//! consents; the system redirects back with a code, exchanged here), and
//! the client-credentials flow. Then, where one sign-in reaches several
//! tenants (Xero's organisations), the admin picks one and its id goes into
//! the connection's config. Nothing is saved until [`Connections::save_authorization`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use nexo_bundle::manifest::Manifest;
use nexo_bundle::oauth::{Flow, OAuth2};
use nexo_db::StoreError;
use nexo_db::oauth::{OAuthRow, OAuthStatus};
use nexo_runtime::sandbox::redact;
use nexo_runtime::sandbox::secrets::SecretValue;
use sha2::Digest as _;

use super::token::{Overrides, TokenAnswer, browser_url};
use super::{OAuthClient, OAuthError, now_ms};
use crate::connections::{ConnectionError, Connections};

/// One tenant (organisation) an authorization reaches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// Its id, as the system's API wants it.
    pub id: String,
    /// Its name, for the admin.
    pub name: String,
}

/// An authorization-code flow under way: the address the admin opens, and
/// what checks and completes the redirect. Holds the client secret: keep
/// it in memory only.
#[derive(Debug)]
pub struct PendingAuthorization {
    /// The connection.
    pub connection: String,
    /// Where the admin's browser goes (the system's authorization page; a
    /// sandbox connection's override applied).
    pub url: String,
    /// The `state` the redirect must carry back.
    pub state: String,
    /// The redirect URI given to the system.
    pub redirect_uri: String,
    verifier: Option<String>,
    client: OAuthClient,
}

/// What the system's redirect carried.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CallbackParams {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The state sent.
    #[serde(default)]
    pub state: Option<String>,
    /// An OAuth error code (`access_denied`, ...).
    #[serde(default)]
    pub error: Option<String>,
    /// Its description.
    #[serde(default)]
    pub error_description: Option<String>,
}

/// A completed flow, not saved yet: the tokens (in memory) and the tenants
/// they reach, for the admin to pick one.
#[derive(Debug)]
pub struct Authorization {
    /// The connection.
    pub connection: String,
    /// The flow it came from.
    pub flow: Flow,
    /// The tenants it reaches (empty when the system has none).
    pub tenants: Vec<Tenant>,
    client: OAuthClient,
    access: SecretValue,
    refresh: Option<SecretValue>,
    issued_at_ms: i64,
    expires_at_ms: i64,
    config_field: Option<String>,
}

/// What saving an authorization did.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The tenant chosen, if the system has tenants.
    pub tenant: Option<Tenant>,
    /// Pipelines paused for re-authorization and now resumed.
    pub resumed: Vec<String>,
    /// When the access token expires (ms since the epoch).
    pub expires_at_ms: i64,
}

fn random_token(bytes: usize) -> Result<String, OAuthError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| OAuthError::Unavailable(format!("no randomness: {e}")))?;
    Ok(B64URL.encode(buf))
}

impl Connections {
    /// The connection's plugin's OAuth declaration, its manifest, and the
    /// connection's overrides.
    pub(crate) fn oauth_decl(
        &self,
        name: &str,
    ) -> Result<(OAuth2, Manifest, Overrides), ConnectionError> {
        let row = self.get(name)?;
        let (_, manifest) = self.manifest_for(&row.plugin_id, row.pinned_version.as_ref())?;
        let Some(decl) = manifest.capabilities.oauth2.clone() else {
            return Err(OAuthError::NotOAuth {
                connection: name.to_string(),
                plugin: format!("{}@{}", manifest.id, manifest.version),
            }
            .into());
        };
        let overrides = crate::connections::overrides_of(&row.grants)?;
        Ok((decl, manifest, overrides))
    }

    /// The OAuth client a connection last authorized as, if any.
    pub fn stored_oauth_client(&self, name: &str) -> Result<Option<OAuthClient>, ConnectionError> {
        let Some(row) = self.registry.db().oauth(name)? else {
            return Ok(None);
        };
        let secret = row
            .client_secret
            .as_ref()
            .map(|s| self.oauth.open(name, "client-secret", s))
            .transpose()?;
        Ok(Some(OAuthClient {
            id: row.client_id,
            secret,
        }))
    }

    /// Start the authorization-code flow for `name`: the address for the
    /// admin's browser, with a fresh `state` and PKCE verifier.
    pub fn begin_authorization(
        &self,
        name: &str,
        client: OAuthClient,
        redirect_uri: &str,
    ) -> Result<PendingAuthorization, ConnectionError> {
        let (decl, manifest, overrides) = self.oauth_decl(name)?;
        let plugin = format!("{}@{}", manifest.id, manifest.version);
        if !decl.flows.contains(&Flow::AuthorizationCode) {
            return Err(not_offered(&plugin, &decl, Flow::AuthorizationCode).into());
        }
        let redirect = url::Url::parse(redirect_uri).map_err(|e| {
            OAuthError::Endpoint(format!("redirect URI `{redirect_uri}` is not a URL: {e}"))
        })?;
        if !matches!(redirect.scheme(), "http" | "https") {
            return Err(OAuthError::Endpoint(format!(
                "redirect URI `{redirect_uri}` must be http(s)"
            ))
            .into());
        }
        let Some(authorize) = &decl.authorization_url else {
            return Err(not_offered(&plugin, &decl, Flow::AuthorizationCode).into());
        };
        let mut url = browser_url(&overrides, authorize)?;
        let state = random_token(24)?;
        let verifier = decl.pkce.then(|| random_token(48)).transpose()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client.id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", &state);
            if !decl.scopes.is_empty() {
                q.append_pair("scope", &decl.scopes.join(" "));
            }
            if let Some(v) = &verifier {
                let challenge = B64URL.encode(sha2::Sha256::digest(v.as_bytes()));
                q.append_pair("code_challenge", &challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(PendingAuthorization {
            connection: name.to_string(),
            url: url.to_string(),
            state,
            redirect_uri: redirect_uri.to_string(),
            verifier,
            client,
        })
    }

    /// Complete the authorization-code flow with the redirect's
    /// parameters: check the state, exchange the code, list the tenants.
    pub async fn finish_authorization(
        &self,
        pending: PendingAuthorization,
        callback: &CallbackParams,
    ) -> Result<Authorization, ConnectionError> {
        if callback.state.as_deref() != Some(pending.state.as_str()) {
            return Err(OAuthError::StateMismatch.into());
        }
        if let Some(error) = &callback.error {
            return Err(OAuthError::Denied(match &callback.error_description {
                Some(d) => format!("{error} ({d})"),
                None => error.clone(),
            })
            .into());
        }
        let Some(code) = &callback.code else {
            return Err(
                OAuthError::NoCode("the system sent neither a code nor an error".into()).into(),
            );
        };
        let (decl, _, overrides) = self.oauth_decl(&pending.connection)?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", pending.redirect_uri.clone()),
        ];
        if let Some(v) = &pending.verifier {
            form.push(("code_verifier", v.clone()));
        }
        let issued = now_ms();
        let answer = self
            .oauth
            .tokens
            .token(&decl, &overrides, &pending.client, form)
            .await?;
        self.authorization(
            pending.connection,
            Flow::AuthorizationCode,
            pending.client,
            &decl,
            &overrides,
            answer,
            issued,
        )
        .await
    }

    /// Authorize `name` with the client-credentials flow.
    pub async fn authorize_client_credentials(
        &self,
        name: &str,
        client: OAuthClient,
    ) -> Result<Authorization, ConnectionError> {
        let (decl, manifest, overrides) = self.oauth_decl(name)?;
        if !decl.flows.contains(&Flow::ClientCredentials) {
            let plugin = format!("{}@{}", manifest.id, manifest.version);
            return Err(not_offered(&plugin, &decl, Flow::ClientCredentials).into());
        }
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if !decl.scopes.is_empty() {
            form.push(("scope", decl.scopes.join(" ")));
        }
        let issued = now_ms();
        let answer = self
            .oauth
            .tokens
            .token(&decl, &overrides, &client, form)
            .await?;
        self.authorization(
            name.to_string(),
            Flow::ClientCredentials,
            client,
            &decl,
            &overrides,
            answer,
            issued,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn authorization(
        &self,
        connection: String,
        flow: Flow,
        client: OAuthClient,
        decl: &OAuth2,
        overrides: &Overrides,
        answer: TokenAnswer,
        issued: i64,
    ) -> Result<Authorization, ConnectionError> {
        let access = SecretValue::new(answer.access_token);
        redact::register("access_token", &access);
        let refresh = answer.refresh_token.map(SecretValue::new);
        if let Some(r) = &refresh {
            redact::register("refresh_token", r);
        }
        let tenants = self.oauth.tokens.tenants(decl, overrides, &access).await?;
        if decl.tenants.is_some() && tenants.is_empty() {
            return Err(OAuthError::Tenant(format!(
                "the authorization of `{connection}` reaches no tenant (organisation): connect one when you consent at the system, then authorize again"
            ))
            .into());
        }
        let lifetime = answer.expires_in.unwrap_or(3600).max(1) * 1000;
        Ok(Authorization {
            connection,
            flow,
            tenants,
            client,
            access,
            refresh,
            issued_at_ms: issued,
            expires_at_ms: issued + lifetime,
            config_field: decl.tenants.as_ref().map(|t| t.config_field.clone()),
        })
    }

    /// Save a completed authorization with the tenant `choice` (its id or
    /// name; may be omitted when there is one): the tokens sealed, the
    /// tenant id in the connection's config, and the pipelines paused for
    /// re-authorization resumed — one transaction.
    pub fn save_authorization(
        &self,
        auth: Authorization,
        choice: Option<&str>,
    ) -> Result<Saved, ConnectionError> {
        let tenant = pick_tenant(&auth.connection, &auth.tenants, choice)?;
        let row = self.get(&auth.connection)?;
        let config = match (&tenant, &auth.config_field) {
            (Some(t), Some(field)) => {
                let mut config: serde_json::Value = serde_json::from_str(&row.config)
                    .map_err(|e| StoreError::Corrupt(format!("config of {}: {e}", row.name)))?;
                if let Some(obj) = config.as_object_mut() {
                    obj.insert(field.clone(), serde_json::Value::String(t.id.clone()));
                }
                let (_, manifest) =
                    self.manifest_for(&row.plugin_id, row.pinned_version.as_ref())?;
                super::super::connections::check_config_of(&manifest, &config)?;
                Some(config.to_string())
            }
            _ => None,
        };
        let name = &auth.connection;
        let seal = |what, v: &SecretValue| self.oauth.seal(name, what, v);
        let oauth_row = OAuthRow {
            connection: name.clone(),
            flow: auth.flow.to_string(),
            client_id: auth.client.id.clone(),
            client_secret: auth
                .client
                .secret
                .as_ref()
                .map(|s| seal("client-secret", s))
                .transpose()?,
            access_token: seal("access", &auth.access)?,
            refresh_token: auth
                .refresh
                .as_ref()
                .map(|r| seal("refresh", r))
                .transpose()?,
            issued_at_ms: auth.issued_at_ms,
            expires_at_ms: auth.expires_at_ms,
            generation: 0,
            status: OAuthStatus::Authorized,
            reason: None,
            tenant: tenant.as_ref().map(|t| t.id.clone()),
        };
        let resumed = self
            .registry
            .db()
            .save_oauth(&oauth_row, config.as_deref())?;
        tracing::info!(
            connection = %name,
            flow = %auth.flow,
            tenant = ?tenant.as_ref().map(|t| &t.name),
            resumed = ?resumed,
            "connection authorized"
        );
        Ok(Saved {
            tenant,
            resumed,
            expires_at_ms: auth.expires_at_ms,
        })
    }
}

fn not_offered(plugin: &str, decl: &OAuth2, flow: Flow) -> OAuthError {
    OAuthError::FlowNotOffered {
        plugin: plugin.to_string(),
        flow,
        offered: decl
            .flows
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The tenant `choice` names (by id, or by name ignoring case), or the
/// only one.
fn pick_tenant(
    connection: &str,
    tenants: &[Tenant],
    choice: Option<&str>,
) -> Result<Option<Tenant>, OAuthError> {
    if tenants.is_empty() {
        return match choice {
            None => Ok(None),
            Some(c) => Err(OAuthError::Tenant(format!(
                "connection `{connection}`'s system has no tenants to choose from, but `{c}` was given"
            ))),
        };
    }
    let listed = || {
        tenants
            .iter()
            .map(|t| format!("`{}` ({})", t.name, t.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match choice {
        None if tenants.len() == 1 => Ok(tenants.first().cloned()),
        None => Err(OAuthError::Tenant(format!(
            "the authorization reaches {} tenants: choose one with --tenant ID or NAME: {}",
            tenants.len(),
            listed()
        ))),
        Some(c) => tenants
            .iter()
            .find(|t| t.id == c)
            .or_else(|| {
                tenants
                    .iter()
                    .find(|t| t.name.to_lowercase() == c.to_lowercase())
            })
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                OAuthError::Tenant(format!(
                    "no tenant `{c}` in this authorization; it reaches: {}",
                    listed()
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tenants() -> Vec<Tenant> {
        vec![
            Tenant {
                id: "a1".into(),
                name: "Demo Company (UK)".into(),
            },
            Tenant {
                id: "b2".into(),
                name: "Second Org".into(),
            },
        ]
    }

    #[test]
    fn a_tenant_is_picked_by_id_or_name_and_several_need_a_choice() {
        let t = tenants();
        assert_eq!(pick_tenant("c", &t, Some("b2")).unwrap().unwrap().id, "b2");
        assert_eq!(
            pick_tenant("c", &t, Some("demo company (uk)"))
                .unwrap()
                .unwrap()
                .id,
            "a1"
        );
        let why = pick_tenant("c", &t, None).unwrap_err().to_string();
        assert!(
            why.contains("--tenant") && why.contains("Second Org"),
            "{why}"
        );
        let why = pick_tenant("c", &t, Some("nope")).unwrap_err().to_string();
        assert!(why.contains("no tenant `nope`"), "{why}");
        assert_eq!(
            pick_tenant("c", &t[..1], None).unwrap().unwrap().id,
            "a1",
            "one is chosen alone"
        );
        assert_eq!(pick_tenant("c", &[], None).unwrap(), None);
    }
}

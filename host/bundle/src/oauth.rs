//! An OAuth 2.0 credential a connector declares in its manifest: where the
//! host sends the admin to authorize, where it gets and refreshes tokens,
//! how it authenticates as the client, and which declared secret the access
//! token fills. The host runs the flows and keeps every token; the plugin
//! keeps writing `{{secret:NAME}}` and never sees a value, and the access
//! token goes only to the origins that secret is bound to.

use serde::{Deserialize, Serialize};

use crate::manifest::Capabilities;
use crate::origin::{Origin, OriginPattern};

/// The OAuth 2.0 grant types the host can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    /// An admin signs in at the system and consents (RFC 6749 §4.1, with
    /// PKCE when the manifest asks for it); gives a refresh token.
    AuthorizationCode,
    /// The client's own credentials (RFC 6749 §4.4), for systems that
    /// issue per-organisation clients (Xero's custom connections).
    ClientCredentials,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flow::AuthorizationCode => "authorization-code",
            Flow::ClientCredentials => "client-credentials",
        })
    }
}

/// How the host authenticates as the OAuth client at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// The client id and secret in the form body (`client_secret_post`).
    Post,
}

/// Where the tenants (organisations) an authorization reaches are listed,
/// for systems where one sign-in can reach several (Xero's `/connections`).
/// After authorizing, the admin picks one and its id is written into the
/// connection's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenants {
    /// `GET` with the new access token; answers a JSON array of objects.
    pub url: String,
    /// The field of each object holding the tenant id (e.g. `tenantId`).
    pub id_field: String,
    /// The field holding its display name (e.g. `tenantName`).
    pub name_field: String,
    /// The connection config field the chosen id goes to (e.g. `tenant_id`).
    pub config_field: String,
}

/// An OAuth 2.0 credential (`[capabilities.oauth2]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The declared secret the access token fills (`{{secret:NAME}}`); it
    /// is sent only to the origins that secret is bound to. An admin may
    /// still set it to a static token (a private app's) instead.
    pub secret: String,
    /// The flows the system offers.
    pub flows: Vec<Flow>,
    /// The authorization endpoint (needed for `authorization-code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// The token endpoint.
    pub token_url: String,
    /// Scopes asked for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Client authentication at the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Whether the authorization-code flow uses PKCE (S256).
    #[serde(default = "yes")]
    pub pkce: bool,
    /// Where the tenants one authorization reaches are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Tenants>,
}

fn yes() -> bool {
    true
}

/// An https URL with a host, its origin exact: what every endpoint of a
/// credential must be (a token endpoint gets the client secret).
fn endpoint(what: &str, url: &str) -> Result<Origin, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{what} `{url}` is not a URL: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "{what} `{url}` must be an https URL (a sandbox is reached through the connection's origin override)"
        ));
    }
    Origin::of(&parsed).ok_or_else(|| format!("{what} `{url}` has no host"))
}

impl OAuth2 {
    /// Why this declaration is not usable with `caps`, if it is not: the
    /// secret it fills must be declared, each endpoint an https URL, and
    /// the authorization endpoint present for the authorization-code flow.
    pub fn check(&self, caps: &Capabilities) -> Result<(), String> {
        if !caps.secrets.iter().any(|s| s.name == self.secret) {
            return Err(format!(
                "[capabilities.oauth2] fills the secret `{}`, which [capabilities] secrets does not declare",
                self.secret
            ));
        }
        if self.flows.is_empty() {
            return Err("[capabilities.oauth2] flows is empty: name `authorization-code`, `client-credentials` or both".into());
        }
        endpoint("[capabilities.oauth2] token_url", &self.token_url)?;
        match (
            &self.authorization_url,
            self.flows.contains(&Flow::AuthorizationCode),
        ) {
            (Some(url), _) => {
                endpoint("[capabilities.oauth2] authorization_url", url)?;
            }
            (None, true) => {
                return Err(
                    "[capabilities.oauth2] offers the authorization-code flow but has no authorization_url"
                        .into(),
                );
            }
            (None, false) => {}
        }
        if let Some(t) = &self.tenants {
            endpoint("[capabilities.oauth2.tenants] url", &t.url)?;
            for (field, value) in [
                ("id_field", &t.id_field),
                ("name_field", &t.name_field),
                ("config_field", &t.config_field),
            ] {
                if value.trim().is_empty() {
                    return Err(format!("[capabilities.oauth2.tenants] {field} is empty"));
                }
            }
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(
                "[capabilities.oauth2] scopes must be non-empty and without spaces, one per entry"
                    .into(),
            );
        }
        Ok(())
    }

    /// The exact origins of its endpoints (authorization, token, tenants),
    /// each once: where the host itself goes on the plugin's behalf, and
    /// so what a sandbox connection may override.
    pub fn origins(&self) -> Vec<Origin> {
        let mut out: Vec<Origin> = Vec::new();
        let urls = self
            .authorization_url
            .iter()
            .chain(std::iter::once(&self.token_url))
            .chain(self.tenants.iter().map(|t| &t.url));
        for url in urls {
            if let Ok(o) = endpoint("", url)
                && !out.contains(&o)
            {
                out.push(o);
            }
        }
        out
    }
}

impl Capabilities {
    /// Every exact origin the manifest names: its HTTP origins without a
    /// wildcard, and its OAuth endpoints. A sandbox connection may point
    /// exactly these elsewhere.
    pub fn exact_origins(&self) -> Vec<Origin> {
        let mut out: Vec<Origin> = Vec::new();
        for o in &self.http_origins {
            if let Ok(p) = OriginPattern::parse(o)
                && let (crate::origin::HostPattern::Exact(host), Some(port)) = (&p.host, p.port)
            {
                let origin = Origin {
                    scheme: p.scheme.clone(),
                    host: host.clone(),
                    port,
                };
                if !out.contains(&origin) {
                    out.push(origin);
                }
            }
        }
        if let Some(oauth) = &self.oauth2 {
            for o in oauth.origins() {
                if !out.contains(&o) {
                    out.push(o);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::manifest::ManifestSource;

    const XERO: &str = r#"
        id = "acme/books"
        version = "1.0.0"
        kind = "connector"
        description = "d"
        vendor = "v"
        [capabilities]
        http_origins = ["https://api.books.test"]
        secrets = [{ name = "access_token", origins = ["https://api.books.test"] }]
        [capabilities.oauth2]
        secret = "access_token"
        flows = ["authorization-code", "client-credentials"]
        authorization_url = "https://login.books.test/authorize"
        token_url = "https://identity.books.test/token"
        scopes = ["offline_access", "books.read"]
        [capabilities.oauth2.tenants]
        url = "https://api.books.test/connections"
        id_field = "tenantId"
        name_field = "tenantName"
        config_field = "tenant_id"
    "#;

    fn source(text: &str) -> ManifestSource {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_declared_credential_parses_and_checks() {
        let s = source(XERO);
        let oauth = s.capabilities.oauth2.clone().unwrap();
        assert_eq!(oauth.client_auth, ClientAuth::Basic);
        assert!(oauth.pkce, "PKCE unless the manifest says otherwise");
        oauth.check(&s.capabilities).unwrap();
        let origins: Vec<String> = s
            .capabilities
            .exact_origins()
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            origins,
            [
                "https://api.books.test:443",
                "https://login.books.test:443",
                "https://identity.books.test:443"
            ]
        );
    }

    #[test]
    fn a_credential_filling_an_undeclared_secret_or_over_http_is_refused() {
        let s = source(&XERO.replace("secret = \"access_token\"", "secret = \"token\""));
        let why = s
            .capabilities
            .oauth2
            .clone()
            .unwrap()
            .check(&s.capabilities);
        assert!(why.unwrap_err().contains("`token`"));
        let s = source(&XERO.replace(
            "https://identity.books.test/token",
            "http://identity.books.test/token",
        ));
        let why = s
            .capabilities
            .oauth2
            .clone()
            .unwrap()
            .check(&s.capabilities);
        assert!(why.unwrap_err().contains("must be an https URL"));
        let s = source(&XERO.replace(
            "authorization_url = \"https://login.books.test/authorize\"",
            "",
        ));
        let why = s
            .capabilities
            .oauth2
            .clone()
            .unwrap()
            .check(&s.capabilities);
        assert!(why.unwrap_err().contains("no authorization_url"));
    }

    #[test]
    fn a_misspelt_key_is_named() {
        let err = toml::from_str::<ManifestSource>(&XERO.replace("token_url", "token_uri"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("token_uri"), "{err}");
    }
}

//! The host's own requests to an OAuth system: the token endpoint (code
//! exchange, refresh, client credentials) and the tenants list. They carry
//! the client secret and tokens, so they go only where the signed manifest
//! says (or, for a sandbox connection, where the admin's origin override
//! points), never follow redirects, and never reach an internal address
//! unless the admin's override names it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nexo_bundle::oauth::{ClientAuth, OAuth2};
use nexo_runtime::sandbox::http::error_chain;
use nexo_runtime::sandbox::policy::{Origin, is_public};
use nexo_runtime::sandbox::secrets::SecretValue;
use serde::Deserialize;
use url::Url;

use super::{OAuthClient, OAuthError, Tenant};

/// How long one request to an OAuth endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read from an OAuth endpoint.
const MAX_ANSWER_BYTES: usize = 1 << 20;

pub use nexo_runtime::sandbox::overrides::Overrides;

/// Where `url` really goes under a sandbox connection's `overrides`, and
/// whether that target was named by the admin (and so may be an internal
/// address).
pub(crate) fn route(overrides: &Overrides, url: &str) -> Result<(Url, bool), OAuthError> {
    let parsed =
        Url::parse(url).map_err(|e| OAuthError::Endpoint(format!("`{url}` is not a URL: {e}")))?;
    let Some(origin) = Origin::of(&parsed) else {
        return Err(OAuthError::Endpoint(format!(
            "`{url}` is not an http(s) URL with a host"
        )));
    };
    if overrides.physical_origin(&origin).is_none() {
        return Ok((parsed, false));
    }
    Ok((overrides.physical(&parsed), true))
}

/// A token endpoint's answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(i64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        None => None,
        Some(N::Int(n)) => Some(n),
        Some(N::Float(f)) => Some(f as i64),
        Some(N::Text(t)) => t.trim().parse().ok(),
    })
}

/// A token endpoint's refusal (RFC 6749 §5.2).
#[derive(Debug, Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Resolves names and refuses internal addresses, except for the hosts
/// the admin's overrides name.
#[derive(Debug)]
struct PublicResolver {
    allowed: Arc<BTreeSet<String>>,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allowed.contains(&host)
                && let Some(a) = addrs.iter().find(|a| !is_public(a.ip()))
            {
                return Err(format!(
                    "{host} resolves to internal address {}, which an OAuth endpoint may not reach",
                    a.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends the host's OAuth requests.
#[derive(Debug, Default)]
pub(crate) struct TokenClient;

impl TokenClient {
    pub(crate) fn new() -> Self {
        TokenClient
    }

    fn client(&self, url: &Url, overridden: bool) -> Result<reqwest::Client, OAuthError> {
        let host = url.host_str().unwrap_or_default().to_string();
        if !overridden
            && let Ok(ip) = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            && !is_public(ip)
        {
            return Err(OAuthError::Endpoint(format!(
                "OAuth endpoint {url} is an internal address; only a sandbox connection's origin override may point there"
            )));
        }
        let allowed: BTreeSet<String> = if overridden {
            [host].into_iter().collect()
        } else {
            BTreeSet::new()
        };
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .dns_resolver(Arc::new(PublicResolver {
                allowed: Arc::new(allowed),
            }))
            .user_agent(concat!("nexo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Unavailable(format!("cannot set up HTTP: {e}")))
    }

    /// POST `form` to the token endpoint, authenticating as `client` the
    /// way the manifest says.
    pub(crate) async fn token(
        &self,
        decl: &OAuth2,
        overrides: &Overrides,
        client: &OAuthClient,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenAnswer, OAuthError> {
        let (url, overridden) = route(overrides, &decl.token_url)?;
        let endpoint = decl.token_url.clone();
        let http = self.client(&url, overridden)?;
        let mut request = http.post(url).header("accept", "application/json");
        match (decl.client_auth, &client.secret) {
            (ClientAuth::Basic, Some(secret)) => {
                request =
                    request.basic_auth(form_encode(&client.id), Some(form_encode(secret.expose())));
            }
            (ClientAuth::Post, Some(secret)) => {
                form.push(("client_id", client.id.clone()));
                form.push(("client_secret", secret.expose().to_string()));
            }
            (_, None) => form.push(("client_id", client.id.clone())),
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                OAuthError::Unavailable(format!(
                    "the token endpoint {endpoint} could not be reached: {}",
                    error_chain(&e)
                ))
            })?;
        let status = response.status().as_u16();
        let bytes = read_capped(response, &endpoint).await?;
        if (200..300).contains(&status) {
            let answer: TokenAnswer =
                serde_json::from_slice(&bytes).map_err(|e| OAuthError::BadResponse {
                    endpoint: endpoint.clone(),
                    reason: format!("not a token response: {e}"),
                })?;
            if let Some(t) = &answer.token_type
                && !t.eq_ignore_ascii_case("bearer")
            {
                return Err(OAuthError::BadResponse {
                    endpoint,
                    reason: format!("token type `{t}` is not `Bearer`"),
                });
            }
            if answer.access_token.is_empty() {
                return Err(OAuthError::BadResponse {
                    endpoint,
                    reason: "the access token is empty".into(),
                });
            }
            return Ok(answer);
        }
        if status == 429 || status >= 500 || status == 408 {
            return Err(OAuthError::Unavailable(format!(
                "the token endpoint {endpoint} answered HTTP {status}; it will be tried again"
            )));
        }
        match serde_json::from_slice::<Refusal>(&bytes) {
            Ok(r) => Err(OAuthError::Refused {
                endpoint,
                error: r.error,
                description: r.error_description,
            }),
            Err(_) => Err(OAuthError::Refused {
                endpoint,
                error: format!("HTTP {status}"),
                description: None,
            }),
        }
    }

    /// The tenants an access token reaches.
    pub(crate) async fn tenants(
        &self,
        decl: &OAuth2,
        overrides: &Overrides,
        access: &SecretValue,
    ) -> Result<Vec<Tenant>, OAuthError> {
        let Some(t) = &decl.tenants else {
            return Ok(Vec::new());
        };
        let (url, overridden) = route(overrides, &t.url)?;
        let http = self.client(&url, overridden)?;
        let response = http
            .get(url)
            .bearer_auth(access.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                OAuthError::Unavailable(format!(
                    "the tenants list {} could not be reached: {}",
                    t.url,
                    error_chain(&e)
                ))
            })?;
        let status = response.status().as_u16();
        let bytes = read_capped(response, &t.url).await?;
        if !(200..300).contains(&status) {
            return Err(OAuthError::Tenant(format!(
                "the tenants list {} answered HTTP {status}",
                t.url
            )));
        }
        let list: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            OAuthError::Tenant(format!(
                "the tenants list {} is not a JSON array: {e}",
                t.url
            ))
        })?;
        Ok(list
            .iter()
            .filter_map(|v| {
                let id = v.get(&t.id_field)?.as_str()?.to_string();
                let name = v
                    .get(&t.name_field)
                    .and_then(|n| n.as_str())
                    .unwrap_or(&id)
                    .to_string();
                Some(Tenant { id, name })
            })
            .collect())
    }
}

async fn read_capped(
    mut response: reqwest::Response,
    endpoint: &str,
) -> Result<Vec<u8>, OAuthError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        OAuthError::Unavailable(format!(
            "reading the answer of {endpoint}: {}",
            error_chain(&e)
        ))
    })? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(OAuthError::BadResponse {
                endpoint: endpoint.to_string(),
                reason: format!("larger than {} KiB", MAX_ANSWER_BYTES >> 10),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1 asks
/// the same of the Basic credentials).
pub(crate) fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn overrides(from: &str, to: &str) -> Overrides {
        let (from, to) = (from.to_string(), to.to_string());
        Overrides::parse([(&from, &to)]).unwrap()
    }

    #[test]
    fn an_endpoint_on_an_internal_address_is_refused_unless_an_override_names_it() {
        let tokens = TokenClient::new();
        // A manifest whose token endpoint is an internal address (a lying
        // manifest aiming the client secret at the host's network).
        for url in [
            "https://127.0.0.1/token",
            "https://10.0.0.5:8443/token",
            "https://[::1]/token",
            "https://169.254.169.254/latest",
        ] {
            let (routed, overridden) = route(&Overrides::none(), url).unwrap();
            assert!(!overridden);
            let why = tokens.client(&routed, overridden).unwrap_err().to_string();
            assert!(why.contains("internal address"), "{url}: {why}");
        }
        // The admin's override of a declared endpoint may point at loopback.
        let o = overrides("https://identity.xero.com", "http://127.0.0.1:7402");
        let (routed, overridden) = route(&o, "https://identity.xero.com/connect/token").unwrap();
        assert!(overridden);
        assert_eq!(routed.as_str(), "http://127.0.0.1:7402/connect/token");
        assert!(tokens.client(&routed, overridden).is_ok());
        // Another endpoint is not moved by it.
        let (routed, overridden) =
            route(&o, "https://login.xero.com/identity/connect/authorize").unwrap();
        assert!(!overridden);
        assert_eq!(routed.host_str(), Some("login.xero.com"));
    }

    #[test]
    fn token_answers_accept_numbers_or_text_for_the_lifetime() {
        let a: TokenAnswer = serde_json::from_str(
            r#"{"access_token":"a","expires_in":"1800","token_type":"bearer"}"#,
        )
        .unwrap();
        assert_eq!(a.expires_in, Some(1800));
        let a: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"a","expires_in":1799.6}"#).unwrap();
        assert_eq!(a.expires_in, Some(1799));
        let a: TokenAnswer = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(a.expires_in, None);
    }
}

//! The host's own requests to an OAuth system: the token endpoint (code
//! exchange, refresh, client credentials) and the tenants list. They carry
//! the client secret and tokens, so they go out through the same
//! [`OutboundHttp`] as a plugin's requests, under a policy of exactly the
//! endpoint's origin: only where the signed manifest says (or, for a sandbox
//! connection, where the admin's origin override points), no redirect, and
//! no internal address unless the admin's override names it.

use std::time::{Duration, Instant};

use base64::Engine as _;
use nexo_bundle::oauth::{ClientAuth, OAuth2};
use nexo_runtime::sandbox::http::{
    HttpError, HttpSettings, Method, OutboundHttp, OutboundRequest, OutboundResponse,
};
use nexo_runtime::sandbox::policy::{HttpGrant, Origin, OriginPattern, OutboundPolicy};
use nexo_runtime::sandbox::secrets::{SecretSet, SecretValue};
use serde::Deserialize;
use url::Url;

use super::{OAuthClient, OAuthError, Tenant};

/// How long one request to an OAuth endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read from an OAuth endpoint.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

pub use nexo_runtime::sandbox::overrides::Overrides;

/// Where the admin's browser goes for `url` under a sandbox connection's
/// `overrides`.
pub(crate) fn browser_url(overrides: &Overrides, url: &str) -> Result<Url, OAuthError> {
    let parsed =
        Url::parse(url).map_err(|e| OAuthError::Endpoint(format!("`{url}` is not a URL: {e}")))?;
    Ok(overrides.physical(&parsed))
}

/// Send `req` to the OAuth endpoint `url` (its origin the only one
/// allowed), following `overrides`.
async fn send(
    overrides: &Overrides,
    url: &str,
    mut req: OutboundRequest,
) -> Result<OutboundResponse, OAuthError> {
    let parsed =
        Url::parse(url).map_err(|e| OAuthError::Endpoint(format!("`{url}` is not a URL: {e}")))?;
    let origin = Origin::of(&parsed).ok_or_else(|| {
        OAuthError::Endpoint(format!("`{url}` is not an http(s) URL with a host"))
    })?;
    let pattern = OriginPattern::parse(&origin.to_string())
        .map_err(|e| OAuthError::Endpoint(e.to_string()))?;
    let policy = OutboundPolicy::new(
        vec![pattern.clone()],
        vec![HttpGrant {
            pattern,
            allow_private: false,
        }],
    );
    let settings = HttpSettings {
        timeout: TIMEOUT,
        max_response_bytes: MAX_ANSWER_BYTES,
        max_redirects: 0,
        ..HttpSettings::default()
    };
    let http = OutboundHttp::new(policy, SecretSet::default(), settings)
        .and_then(|h| h.with_overrides(overrides.clone()))
        .map_err(|e| OAuthError::Unavailable(format!("cannot set up HTTP: {e}")))?;
    req.url = parsed.to_string();
    http.send(req, Instant::now() + TIMEOUT)
        .await
        .map_err(|e| match e {
            HttpError::OriginNotAllowed(m)
            | HttpError::AddressNotAllowed(m)
            | HttpError::RedirectNotAllowed(m)
            | HttpError::SecretNotAllowed(m)
            | HttpError::InvalidRequest(m) => OAuthError::Endpoint(format!(
                "OAuth endpoint {url} refused by the host: {m} (only a sandbox connection's origin override may point an endpoint elsewhere)"
            )),
            HttpError::ResponseTooLarge(cap) => OAuthError::BadResponse {
                endpoint: url.to_string(),
                reason: format!("larger than {} KiB", cap >> 10),
            },
            e @ (HttpError::Timeout
            | HttpError::ConnectionFailed(_)
            | HttpError::RateLimited(_)
            | HttpError::NeedsAuthorization { .. }) => {
                OAuthError::Unavailable(format!("{url} could not be reached: {e}"))
            }
        })
}

fn request(
    method: Method,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
) -> OutboundRequest {
    OutboundRequest {
        method,
        url: String::new(),
        headers,
        basic_auth: None,
        body,
        timeout_ms: None,
    }
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

/// Sends the host's OAuth requests.
#[derive(Debug, Default)]
pub(crate) struct TokenClient;

impl TokenClient {
    pub(crate) fn new() -> Self {
        TokenClient
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
        let endpoint = decl.token_url.clone();
        let mut headers = vec![
            ("accept".to_string(), "application/json".to_string()),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        match (decl.client_auth, &client.secret) {
            (ClientAuth::Basic, Some(secret)) => {
                // RFC 6749 §2.3.1: both parts form-encoded, then Basic.
                let pair = format!(
                    "{}:{}",
                    form_encode(&client.id),
                    form_encode(secret.expose())
                );
                headers.push((
                    "authorization".to_string(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ));
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
        let answer = send(
            overrides,
            &endpoint,
            request(Method::Post, headers, Some(body.into_bytes())),
        )
        .await?;
        let status = answer.status;
        if (200..300).contains(&status) {
            let answer: TokenAnswer =
                serde_json::from_slice(&answer.body).map_err(|e| OAuthError::BadResponse {
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
        match serde_json::from_slice::<Refusal>(&answer.body) {
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
        let headers = vec![
            ("accept".to_string(), "application/json".to_string()),
            (
                "authorization".to_string(),
                format!("Bearer {}", access.expose()),
            ),
        ];
        let answer = send(overrides, &t.url, request(Method::Get, headers, None)).await?;
        if !(200..300).contains(&answer.status) {
            return Err(OAuthError::Tenant(format!(
                "the tenants list {} answered HTTP {}",
                t.url, answer.status
            )));
        }
        let list: Vec<serde_json::Value> = serde_json::from_slice(&answer.body).map_err(|e| {
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

    fn decl(token_url: &str) -> OAuth2 {
        OAuth2 {
            secret: "access_token".into(),
            flows: vec![nexo_bundle::oauth::Flow::ClientCredentials],
            authorization_url: None,
            token_url: token_url.into(),
            scopes: vec![],
            client_auth: ClientAuth::Basic,
            pkce: false,
            tenants: None,
        }
    }

    async fn ask(url: &str, overrides: &Overrides) -> OAuthError {
        let client = OAuthClient {
            id: "client".into(),
            secret: Some(SecretValue::new("client-secret-1234")),
        };
        TokenClient::new()
            .token(
                &decl(url),
                overrides,
                &client,
                vec![("grant_type", "client_credentials".into())],
            )
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn an_endpoint_on_an_internal_address_is_refused_unless_an_override_names_it() {
        // A manifest whose token endpoint is an internal address (a lying
        // manifest aiming the client secret at the host's network).
        for url in [
            "https://127.0.0.1/token",
            "https://10.0.0.5:8443/token",
            "https://[::1]/token",
            "https://169.254.169.254/latest",
        ] {
            let why = ask(url, &Overrides::none()).await.to_string();
            assert!(why.contains("internal address"), "{url}: {why}");
        }
        // The admin's override of a declared endpoint may point at loopback
        // (here a closed port: the request goes out and finds nobody).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let o = overrides("https://identity.xero.com", &target);
        let why = ask("https://identity.xero.com/connect/token", &o).await;
        assert!(matches!(why, OAuthError::Unavailable(_)), "{why}");
        assert!(!why.to_string().contains("internal address"), "{why}");
        // The browser's address follows the override; another endpoint is
        // not moved by it.
        let routed = browser_url(&o, "https://identity.xero.com/connect/token").unwrap();
        assert_eq!(routed.as_str(), format!("{target}/connect/token"));
        let routed = browser_url(&o, "https://login.xero.com/identity/connect/authorize").unwrap();
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

//! The identity server's HTTP face: the authorize, login and consent pages,
//! the token endpoint, what a token reaches (Xero's `/connections`,
//! HubSpot's access-token information) and the test hooks, as routes a
//! sandbox merges into its own router.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::ledger::{Grant, Issued, SignIn, TokenError};
use super::{OAuthServer, Refusal, Tenant, Vendor, pages, same_secret};

/// The identity server's routes, to merge into a sandbox's router.
pub(crate) fn router(server: Arc<OAuthServer>) -> Router {
    let hooks = Router::new()
        .route("/_sandbox/oauth/stats", get(stats))
        .route("/_sandbox/oauth/revoke", post(revoke));
    let vendor = match server.vendor {
        Vendor::Xero => Router::new()
            .route("/identity/connect/authorize", get(authorize))
            .route("/identity/login", post(login))
            .route("/identity/consent", post(consent))
            .route("/connect/token", post(token))
            .route("/connections", get(connections)),
        Vendor::HubSpot => Router::new()
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/login", post(login))
            .route("/oauth/consent", post(consent))
            .route("/oauth/v1/token", post(token))
            .route("/oauth/v1/access-tokens/{token}", get(access_token_info)),
    };
    hooks.merge(vendor).with_state(server)
}

/// A form or query string; a repeated name keeps every value.
struct Form(HashMap<String, Vec<String>>);

impl Form {
    fn parse(text: &[u8]) -> Form {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(text) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Form(map)
    }
    /// The value of `name`, if given and not empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    fn all(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

fn error_page(server: &OAuthServer, message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        pages::error(server.vendor, message),
    )
}

/// `302` to the client's redirect URI with `params` added to its query.
fn back_to_client(redirect_uri: &str, params: &[(&str, Option<&str>)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response();
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            if let Some(v) = v {
                query.append_pair(k, v);
            }
        }
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (
            StatusCode::FOUND,
            [(header::LOCATION, location)],
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "redirect_uri is not a valid header",
        )
            .into_response(),
    }
}

/// Whether the app may be sent back to `uri`: one of the registered URIs
/// exactly, or with none registered any loopback http URI (RFC 8252 §7.3).
fn allowed_redirect(server: &OAuthServer, uri: &str) -> bool {
    if !server.settings.redirect_uris.is_empty() {
        return server.settings.redirect_uris.iter().any(|r| r == uri);
    }
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost"))
}

/// `GET` authorize: checks the client and the redirect URI, then opens a
/// sign-in and answers the login page.
async fn authorize(State(server): State<Arc<OAuthServer>>, uri: Uri) -> Response {
    let q = Form::parse(uri.query().unwrap_or_default().as_bytes());
    let settings = &server.settings;
    let client_id = q.get("client_id").unwrap_or_default();
    if client_id != settings.client_id {
        return error_page(
            &server,
            &format!(
                "No app with client_id `{client_id}` is registered in this sandbox: use the client id `nexo-sandbox start` prints."
            ),
        );
    }
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return error_page(
            &server,
            "redirect_uri is missing: the app must say where to send the code.",
        );
    };
    if !allowed_redirect(&server, redirect_uri) {
        return error_page(
            &server,
            &format!(
                "redirect_uri `{redirect_uri}` is not registered for this app: register it in the sandbox's OAuth settings, or use a loopback http://127.0.0.1:PORT/… URI."
            ),
        );
    }
    let state = q.get("state");
    let refuse = |error: &str, why: &str| {
        back_to_client(
            redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(why)),
                ("state", state),
            ],
        )
    };
    if q.get("response_type") != Some("code") {
        return refuse("unsupported_response_type", "response_type must be `code`");
    }
    let scopes: Vec<String> = q
        .get("scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return refuse("invalid_scope", "scope is missing");
    }
    let challenge = q.get("code_challenge");
    if let Some(c) = challenge {
        if q.get("code_challenge_method") != Some("S256") {
            return refuse(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            );
        }
        if !(43..=128).contains(&c.len()) {
            return refuse(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier",
            );
        }
    }
    let sign_in = SignIn {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scopes,
        state: state.map(str::to_string),
        challenge: challenge.map(str::to_string),
        user: None,
        opened: Instant::now(),
    };
    match server.ledger().open(sign_in) {
        Ok(request) => html(
            StatusCode::OK,
            pages::login(server.vendor, client_id, &request, "", None),
        ),
        Err(e) => error_page(
            &server,
            &format!("The sandbox could not draw random bytes ({e}); try again."),
        ),
    }
}

const GONE: &str =
    "This sign-in is unknown or expired (they last 10 minutes): start again from the app.";

/// The tenants offered at consent: Xero's organisations; HubSpot shows
/// none (the hub is implied).
fn offered(server: &OAuthServer) -> &[Tenant] {
    match server.vendor {
        Vendor::Xero => &server.settings.tenants,
        Vendor::HubSpot => &[],
    }
}

/// `POST` login: the consent page for a right password, the login page
/// again with an error for a wrong one.
async fn login(State(server): State<Arc<OAuthServer>>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let request = form.get("request").unwrap_or_default();
    let email = form.get("email").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    let mut ledger = server.ledger();
    let Some(sign_in) = ledger.sign_in(request, Instant::now()) else {
        drop(ledger);
        return error_page(&server, GONE);
    };
    let known = server
        .settings
        .users
        .iter()
        .any(|u| u.email.eq_ignore_ascii_case(email) && same_secret(&u.password, password));
    if !known {
        let page = pages::login(
            server.vendor,
            &sign_in.client_id,
            request,
            email,
            Some("Wrong email or password."),
        );
        return html(StatusCode::OK, page);
    }
    sign_in.user = Some(email.to_string());
    let page = pages::consent(
        server.vendor,
        &sign_in.client_id,
        &sign_in.scopes,
        offered(&server),
        request,
        None,
    );
    html(StatusCode::OK, page)
}

/// `POST` consent: a code (allow) or `access_denied` (deny), back to the
/// client.
async fn consent(State(server): State<Arc<OAuthServer>>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let request = form.get("request").unwrap_or_default();
    let now = Instant::now();
    let mut ledger = server.ledger();
    let Some(sign_in) = ledger.sign_in(request, now).map(|s| s.clone()) else {
        drop(ledger);
        return error_page(&server, GONE);
    };
    let Some(user) = sign_in.user.clone() else {
        drop(ledger);
        return error_page(
            &server,
            "Log in before consenting: start again from the app.",
        );
    };
    let state = sign_in.state.as_deref();
    match form.get("decision") {
        Some("deny") => {
            ledger.close(request);
            back_to_client(
                &sign_in.redirect_uri,
                &[("error", Some("access_denied")), ("state", state)],
            )
        }
        Some("allow") => {
            let tenants: Vec<String> = match server.vendor {
                Vendor::HubSpot => vec![server.home_tenant.clone()],
                Vendor::Xero => {
                    let mut chosen: Vec<String> = Vec::new();
                    for t in form.all("tenant") {
                        if !chosen.contains(t) {
                            chosen.push(t.clone());
                        }
                    }
                    chosen
                }
            };
            let offered = &server.settings.tenants;
            let unknown = tenants
                .iter()
                .find(|t| !offered.iter().any(|o| &o.id == *t));
            if tenants.is_empty() || unknown.is_some() {
                let page = pages::consent(
                    server.vendor,
                    &sign_in.client_id,
                    &sign_in.scopes,
                    offered,
                    request,
                    Some("Choose at least one of the organisations listed."),
                );
                return html(StatusCode::OK, page);
            }
            let issued = Grant::new(
                &sign_in.client_id,
                Some(user),
                sign_in.scopes.clone(),
                &tenants,
            )
            .and_then(|grant| {
                let grant = ledger.add_grant(grant);
                ledger.issue_code(grant, &sign_in, now)
            });
            match issued {
                Ok(code) => {
                    ledger.close(request);
                    back_to_client(
                        &sign_in.redirect_uri,
                        &[("code", Some(&code)), ("state", state)],
                    )
                }
                Err(e) => {
                    drop(ledger);
                    error_page(
                        &server,
                        &format!("The sandbox could not draw random bytes ({e}); try again."),
                    )
                }
            }
        }
        _ => {
            drop(ledger);
            error_page(&server, "decision must be `allow` or `deny`.")
        }
    }
}

/// The client id a token request authenticated as.
fn authenticate_client(
    server: &OAuthServer,
    headers: &HeaderMap,
    form: &Form,
) -> Result<String, TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let posted = form.get("client_secret");
    let (id, secret) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "the client authenticated twice (HTTP Basic and client_secret in the body): use one".into(),
            ));
        }
        (Some(_), None) if server.vendor == Vendor::HubSpot => {
            return Err(TokenError::InvalidClient(
                "HubSpot takes client_id and client_secret in the form body, not HTTP Basic".into(),
            ));
        }
        (Some(encoded), None) => basic_credentials(encoded).ok_or_else(|| {
            TokenError::InvalidClient(
                "the HTTP Basic credentials are not base64 of `client_id:client_secret`".into(),
            )
        })?,
        (None, Some(secret)) => (
            form.get("client_id").unwrap_or_default().to_string(),
            secret.to_string(),
        ),
        (None, None) => {
            return Err(TokenError::InvalidClient(match server.vendor {
                Vendor::Xero => {
                    "no client authentication: send HTTP Basic client_id:client_secret".into()
                }
                Vendor::HubSpot => {
                    "client_id and client_secret are missing from the form body".into()
                }
            }));
        }
    };
    let settings = &server.settings;
    if id != settings.client_id || !same_secret(&secret, &settings.client_secret) {
        return Err(TokenError::InvalidClient(
            "client authentication failed: unknown client_id or wrong client_secret".into(),
        ));
    }
    Ok(id)
}

/// RFC 6749 §2.3.1: base64 of the form-encoded id, `:`, the form-encoded
/// secret.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// `POST` token (RFC 6749 §3.2, form body).
async fn token(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let answer = authenticate_client(&server, &headers, &form)
        .and_then(|client| grant(&server, &client, &form));
    let no_store = [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ];
    match answer {
        Ok(issued) => {
            let mut body = json!({
                "access_token": issued.access_token,
                "expires_in": issued.expires_in,
                "token_type": match server.vendor { Vendor::Xero => "Bearer", Vendor::HubSpot => "bearer" },
                "scope": issued.scope,
            });
            if let Some(refresh) = issued.refresh_token {
                body["refresh_token"] = json!(refresh);
            }
            (StatusCode::OK, no_store, axum::Json(body)).into_response()
        }
        Err(e) => {
            tracing::info!(
                vendor = server.vendor.name(),
                error = e.code(),
                "sandbox token request refused: {e}"
            );
            let status = match e {
                TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
                TokenError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = json!({"error": e.code(), "error_description": e.to_string()});
            let mut response = (status, no_store, axum::Json(body)).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sandbox\""),
                );
            }
            response
        }
    }
}

fn grant(server: &OAuthServer, client: &str, form: &Form) -> Result<Issued, TokenError> {
    let settings = &server.settings;
    let now = Instant::now();
    let required = |name: &str| {
        form.get(name).ok_or_else(|| {
            TokenError::InvalidRequest(format!("{name} is missing from the form body"))
        })
    };
    match form.get("grant_type") {
        Some("authorization_code") => server.ledger().exchange_code(
            settings,
            client,
            required("code")?,
            form.get("redirect_uri"),
            form.get("code_verifier"),
            now,
        ),
        Some("refresh_token") => server.ledger().refresh(
            settings,
            client,
            required("refresh_token")?,
            form.get("scope"),
            now,
        ),
        Some("client_credentials") if settings.client_credentials => {
            server.ledger().client_credentials(
                settings,
                client,
                &server.home_tenant,
                form.get("scope"),
                now,
            )
        }
        Some(other) => Err(TokenError::UnsupportedGrantType(format!(
            "grant_type `{other}` is not offered here (authorization_code, refresh_token{})",
            if settings.client_credentials {
                ", client_credentials"
            } else {
                ""
            }
        ))),
        None => Err(TokenError::InvalidRequest(
            "grant_type is missing from the form body".into(),
        )),
    }
}

/// Xero's date-time without zone, to 100 ns (`2019-07-09T23:40:30.1833130`).
fn xero_utc(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike as _;
    format!(
        "{}.{:07}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

/// Xero's `GET /connections`: the organisations the token's consent chose.
async fn connections(State(server): State<Arc<OAuthServer>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut ledger = server.ledger();
    let grant = match ledger.bearer(bearer, Instant::now()) {
        Ok(grant) => grant.clone(),
        Err(_) => {
            let body = json!({"Type": null, "Title": "Unauthorized", "Status": 401,
                "Detail": "AuthenticationUnsuccessful", "Instance": "00000000-0000-4000-8000-000000000000",
                "Extensions": {}});
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
    };
    drop(ledger);
    let list: Vec<Value> = grant
        .tenants
        .iter()
        .map(|(tenant, connection)| {
            let name = server
                .settings
                .tenants
                .iter()
                .find(|t| &t.id == tenant)
                .map_or(super::XERO_ORGANISATION, |t| t.name.as_str());
            json!({"id": connection, "authEventId": grant.auth_event, "tenantId": tenant,
                   "tenantType": "ORGANISATION", "tenantName": name,
                   "createdDateUtc": xero_utc(grant.created), "updatedDateUtc": xero_utc(grant.created)})
        })
        .collect();
    (StatusCode::OK, axum::Json(Value::Array(list))).into_response()
}

/// HubSpot's `GET /oauth/v1/access-tokens/{token}`: what the token is.
async fn access_token_info(
    State(server): State<Arc<OAuthServer>>,
    Path(token): Path<String>,
) -> Response {
    let ledger = server.ledger();
    let Some((grant, left)) = ledger.introspect(&token, Instant::now()) else {
        let body = json!({"status": "error", "category": "EXPIRED_AUTHENTICATION",
            "message": "The access token is unknown or expired: refresh it or authorize again",
            "correlationId": "8b1f3c2a-0000-4000-8000-000000000000"});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    let user = grant.user.clone().unwrap_or_default();
    let user_id = server
        .settings
        .users
        .iter()
        .position(|u| u.email.eq_ignore_ascii_case(&user))
        .map_or(0, |i| 6_000_001 + i as u64);
    let hub = server.settings.tenants.first();
    let body = json!({
        "token": token,
        "user": user,
        "hub_domain": hub.map(|t| t.name.as_str()).unwrap_or_default(),
        "scopes": grant.scopes,
        "hub_id": hub.and_then(|t| t.id.parse::<u64>().ok()).unwrap_or_default(),
        "app_id": crate::hubspot::webhooks::APP_ID,
        "expires_in": left.as_secs(),
        "user_id": user_id,
        "token_type": "access",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn stats(State(server): State<Arc<OAuthServer>>) -> Response {
    axum::Json(server.stats()).into_response()
}

async fn revoke(State(server): State<Arc<OAuthServer>>) -> Response {
    let revoked = server.revoke_refresh_tokens();
    axum::Json(json!({"revoked": revoked})).into_response()
}

/// Refusal text for logs (never the token).
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Expired => "the access token expired",
            Refusal::Unknown => "the access token is unknown or revoked",
        })
    }
}

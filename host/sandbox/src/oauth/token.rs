//! The token endpoint (RFC 6749 §3.2: client authentication, then the
//! grant) and what an access token reaches: Xero's `/connections`,
//! HubSpot's access-token information.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::http::Form;
use super::ledger::{Issued, TokenError};
use super::{OAuthServer, Vendor, same_secret};

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
pub(super) async fn token(
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
pub(super) async fn connections(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
) -> Response {
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
pub(super) async fn access_token_info(
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

//! The identity server's HTTP face: the routes a sandbox merges into its
//! own router (the sign-in pages in [`signin`](super::signin), the token
//! endpoint and what a token reaches in [`token`](super::token)), the form
//! parsing they share, and the test hooks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::signin::{authorize, consent, login};
use super::token::{access_token_info, connections, token};
use super::{OAuthServer, Refusal, Vendor, pages};

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
pub(super) struct Form(HashMap<String, Vec<String>>);

impl Form {
    pub(super) fn parse(text: &[u8]) -> Form {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(text) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Form(map)
    }
    /// The value of `name`, if given and not empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    pub(super) fn all(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

pub(super) fn html(status: StatusCode, body: String) -> Response {
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

pub(super) fn error_page(server: &OAuthServer, message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        pages::error(server.vendor, message),
    )
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

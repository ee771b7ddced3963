//! The sign-in pages of the authorization-code flow: the authorize request
//! checked (client and redirect URI first: a fault there never redirects),
//! the login, the consent, and the way back to the client with a code or an
//! error.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::http::{Form, error_page, html};
use super::ledger::{Grant, SignIn};
use super::{OAuthServer, Tenant, Vendor, pages, same_secret};

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
pub(super) async fn authorize(State(server): State<Arc<OAuthServer>>, uri: Uri) -> Response {
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
pub(super) async fn login(State(server): State<Arc<OAuthServer>>, body: Bytes) -> Response {
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
pub(super) async fn consent(State(server): State<Arc<OAuthServer>>, body: Bytes) -> Response {
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

//! Authorizing a connection from the console: the admin's API call starts
//! the authorization-code flow and gets the system's sign-in address; the
//! system redirects the browser back to `/oauth/callback`, where the code
//! is exchanged; when the authorization reaches several tenants a page asks
//! which one, posted to `/oauth/tenant`. The two browser routes carry no
//! API token: the flow's `state` — random, single-use, known only to the
//! admin who started it, and forgotten after ten minutes — is what lets
//! them through, and what makes a forged or replayed redirect fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexo_registry::oauth::{Authorization, CallbackParams, OAuthClient, PendingAuthorization};
use nexo_runtime::sandbox::secrets::SecretValue;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::api::{ApiError, Caller};
use nexo_db::audit::{Action, Actor, Change};

/// How long a started flow waits for its redirect and tenant choice.
const PENDING_FOR: Duration = Duration::from_secs(600);

#[derive(Debug)]
enum Step {
    /// Waiting for the system's redirect.
    Redirect(PendingAuthorization),
    /// Authorized; waiting for the admin to pick a tenant.
    Tenant(Authorization),
}

/// Flows started from the console, by `state`.
#[derive(Debug, Default)]
pub struct PendingFlows {
    /// By state: when it started, who started it (the audit trail records
    /// the authorization as theirs), and where it is.
    flows: Mutex<HashMap<String, (Instant, Actor, Step)>>,
}

impl PendingFlows {
    fn put(&self, state: String, who: Actor, step: Step) {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.retain(|_, (at, _, _)| at.elapsed() < PENDING_FOR);
        flows.insert(state, (Instant::now(), who, step));
    }

    /// The flow of `state` and who started it, removed: each state is used
    /// once.
    fn take(&self, state: &str) -> Option<(Actor, Step)> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        let (at, who, step) = flows.remove(state)?;
        (at.elapsed() < PENDING_FOR).then_some((who, step))
    }
}

/// `POST /api/connections/{name}/authorize`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorizeBody {
    /// The OAuth client id (default: the stored one).
    #[serde(default)]
    client_id: Option<String>,
    /// The client secret (default: the stored one, with the stored id).
    #[serde(default)]
    client_secret: Option<String>,
    /// Where the system sends the browser back: this daemon's
    /// `/oauth/callback` as the browser reaches it, registered at the vendor.
    redirect_uri: String,
}

pub(crate) async fn start(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<AuthorizeBody>,
) -> Result<Json<Value>, ApiError> {
    let redirect = url::Url::parse(&body.redirect_uri)
        .map_err(|e| ApiError::bad(format!("redirect_uri is not a URL: {e}")))?;
    if redirect.path() != "/oauth/callback" {
        return Err(ApiError::bad(
            "redirect_uri must be this daemon's /oauth/callback as the browser reaches it (e.g. http://127.0.0.1:7400/oauth/callback)",
        ));
    }
    let client = match (body.client_id, body.client_secret) {
        (Some(id), secret) if !id.trim().is_empty() => OAuthClient {
            id: id.trim().to_string(),
            secret: secret.filter(|s| !s.is_empty()).map(SecretValue::new),
        },
        _ => app
            .connections
            .stored_oauth_client(&name)?
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "connection `{name}` has no OAuth client yet: give the client id and secret you registered at the vendor"
                ))
            })?,
    };
    let pending = app
        .connections
        .begin_authorization(&name, client, &body.redirect_uri)?;
    let url = pending.url.clone();
    app.oauth_flows.put(
        pending.state.clone(),
        caller.actor(),
        Step::Redirect(pending),
    );
    tracing::info!(connection = %name, "authorization started from the console");
    Ok(Json(json!({"url": url})))
}

/// `GET /oauth/callback`: the system's redirect.
pub(crate) async fn callback(
    State(app): State<Arc<App>>,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some((who, Step::Redirect(pending))) = params
        .state
        .as_deref()
        .and_then(|s| app.oauth_flows.take(s))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not authorized",
            "This redirect does not belong to an authorization in progress (it was used already, is older than ten minutes, or was not started here). Start again from the connection in the console.",
            None,
        );
    };
    let connection = pending.connection.clone();
    match app.connections.finish_authorization(pending, &params).await {
        Ok(auth) if auth.tenants.len() > 1 => {
            let state = params.state.clone().unwrap_or_default();
            let form = tenant_form(&state, &auth);
            app.oauth_flows.put(state, who, Step::Tenant(auth));
            page(
                StatusCode::OK,
                "Choose the organisation",
                &format!(
                    "The authorization of {connection} reaches several organisations. Which one should it use?"
                ),
                Some(form),
            )
        }
        Ok(auth) => saved(&app, &who, auth, None).await,
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Not authorized",
            &e.to_string(),
            None,
        ),
    }
}

/// `POST /oauth/tenant`: the admin's tenant choice.
pub(crate) async fn tenant(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let mut state = None;
    let mut tenant = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "state" => state = Some(v.into_owned()),
            "tenant" => tenant = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some((who, Step::Tenant(auth))) = state.as_deref().and_then(|s| app.oauth_flows.take(s))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not authorized",
            "This choice does not belong to an authorization in progress (it was made already or is older than ten minutes). Start again from the connection in the console.",
            None,
        );
    };
    saved(&app, &who, auth, tenant.as_deref()).await
}

/// Save the authorization, then check the connection at once, so the
/// dashboard's health reflects the new tokens rather than the last check.
async fn saved(app: &App, who: &Actor, auth: Authorization, tenant: Option<&str>) -> Response {
    let connection = auth.connection.clone();
    match app.connections.save_authorization(auth, tenant) {
        Ok(saved) => {
            crate::audit::record(
                app.registry.db(),
                who,
                Change::new(
                    Action::ConnectionAuthorize,
                    format!("connection/{connection}"),
                )
                .after(json!({
                    "tenant": saved.tenant.as_ref().map(|t| t.name.clone()),
                    "resumed_pipelines": saved.resumed,
                })),
            );
            let mut text = format!("Connection {connection} is authorized");
            if let Some(t) = &saved.tenant {
                text.push_str(&format!(" for {}", t.name));
            }
            text.push('.');
            let check = app
                .connections
                .test(&connection)
                .await
                .err()
                .map(|e| e.to_string());
            if let Err(e) = app.registry.db().set_health(&connection, check.as_deref()) {
                tracing::warn!(connection = %connection, error = %e, "cannot save a health check");
            }
            match &check {
                None => text.push_str(" Its check passed."),
                Some(e) => text.push_str(&format!(" Its check failed: {e}.")),
            }
            if !saved.resumed.is_empty() {
                text.push_str(&format!(
                    " Pipelines resumed: {}.",
                    saved.resumed.join(", ")
                ));
            }
            page(StatusCode::OK, "Authorized", &text, None)
        }
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Not authorized",
            &e.to_string(),
            None,
        ),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn tenant_form(state: &str, auth: &Authorization) -> String {
    let mut radios = String::new();
    for (i, t) in auth.tenants.iter().enumerate() {
        radios.push_str(&format!(
            "<label class=\"tenant\"><input type=\"radio\" name=\"tenant\" value=\"{}\"{}> {} <span class=\"mono muted\">{}</span></label>",
            esc(&t.id),
            if i == 0 { " checked" } else { "" },
            esc(&t.name),
            esc(&t.id)
        ));
    }
    format!(
        "<form method=\"post\" action=\"/oauth/tenant\" id=\"tenant-form\"><input type=\"hidden\" name=\"state\" value=\"{}\">{radios}<p><button id=\"choose-tenant\" class=\"btn btn-primary\" type=\"submit\">Use this organisation</button></p></form>",
        esc(state)
    )
}

fn page(status: StatusCode, title: &str, message: &str, form: Option<String>) -> Response {
    let message = nexo_runtime::sandbox::redact::scrub(message);
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Nexo: {t}</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body><main class=\"oauth-page\"><h1 id=\"oauth-title\">{t}</h1><p id=\"oauth-message\">{m}</p>{f}<p><a href=\"/\" id=\"back\">Back to the console</a></p></main></body></html>",
        t = esc(title),
        m = esc(&message),
        f = form.unwrap_or_default()
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

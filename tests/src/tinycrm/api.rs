//! TinyCRM's HTTP handlers: authentication, validation, idempotent creates,
//! keyset paging over contacts and tombstones, and the injected faults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Change, Crm};

/// The state every handler gets: the CRM and the token it accepts.
pub(super) type Shared = (Arc<Mutex<Crm>>, Arc<String>);

/// Records the request; `false` when the bearer token is wrong.
pub(super) fn authorized(state: &Shared, headers: &HeaderMap, what: String) -> bool {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut crm = state.0.lock().unwrap();
    crm.requests.push(what);
    crm.auth_headers.push(auth.clone());
    auth == format!("Bearer {}", state.1)
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

pub(super) fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "bad token")
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such contact")
}

/// The injected faults every write goes through before it is handled:
/// `write_latency`, then (for POST/PUT) one of the `fail_writes`, answered
/// 500 without applying anything, then one of the `reject_writes`,
/// answered 422.
pub(super) async fn before_write(s: &Shared, post_or_put: bool) -> Option<Response> {
    let latency = s.0.lock().unwrap().write_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut crm = s.0.lock().unwrap();
    if post_or_put && crm.fail_writes > 0 {
        crm.fail_writes -= 1;
        return Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure: nothing was written",
        ));
    }
    (post_or_put && crm.reject_writes > 0).then(|| {
        crm.reject_writes -= 1;
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "injected refusal: this record cannot be accepted right now",
        )
    })
}

/// After a POST/PUT was applied: how long to hold the answer back (one of
/// the `apply_then_stall`), zero when none is due.
pub(super) fn take_stall(crm: &mut Crm) -> Duration {
    if crm.apply_then_stall == 0 {
        return Duration::ZERO;
    }
    crm.apply_then_stall -= 1;
    crm.stall
}

pub(super) async fn answer_after(
    stall: Duration,
    status: StatusCode,
    body: impl Serialize,
) -> Response {
    if !stall.is_zero() {
        tokio::time::sleep(stall).await;
    }
    (status, Json(body)).into_response()
}

/// The request body as a contact: a JSON object with a valid e-mail.
/// `id` and `updated_at` are the server's and are dropped. A refusal is the
/// status and error body to answer with.
fn contact_body(body: &[u8]) -> Result<Map<String, Value>, (StatusCode, Json<Value>)> {
    let refuse = |status, error: String| (status, Json(json!({"error": error})));
    let mut body = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object".into(),
            ));
        }
        Err(e) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("body is not JSON: {e}"),
            ));
        }
    };
    contact_fields(&mut body).map_err(|(error, field)| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error, "field": field})),
        )
    })?;
    Ok(body)
}

/// Checks a contact sent by a client, once it is known to be a JSON
/// object, and drops the fields the server owns (`id`, `updated_at`). A
/// refusal is the message and the field at fault (answered with 422).
pub(super) fn contact_fields(
    body: &mut Map<String, Value>,
) -> Result<(), (&'static str, &'static str)> {
    body.remove("id");
    body.remove("updated_at");
    let email = body.get("email").and_then(Value::as_str).unwrap_or("");
    if !email.contains('@') {
        return Err(("email is invalid", "email"));
    }
    Ok(())
}

pub(super) async fn ping(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers, "GET /api/ping".into()) {
        return unauthorized();
    }
    Json(json!({"ok": true})).into_response()
}

/// The largest `limit` a list request gets; more is clamped to it.
const MAX_PAGE: usize = 5000;

/// A page of the change stream (not built with `json!`, which would copy
/// every contact into a new `Value` first).
#[derive(Serialize)]
struct ListAnswer<'a> {
    results: Vec<Change<'a>>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    updated_after: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

pub(super) async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if !authorized(
        &s,
        &headers,
        format!(
            "GET /api/contacts after={:?} token={:?}",
            q.updated_after, q.page_token
        ),
    ) {
        return unauthorized();
    }
    // Keyset paging: the token is the (updated_at, id) of the last row
    // served, so a contact changed between two pages moves behind the
    // reader instead of shifting the rows after it out of sight (which
    // offset paging does). `updated_after` is inclusive: rows at the
    // cursor value come back and the client's tie set filters them, as
    // many real APIs require.
    let after_row = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match t.split_once('|') {
            Some(key) => Some(key),
            None => return error(StatusCode::BAD_REQUEST, "invalid page_token"),
        },
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    // Serialised under the lock, straight from the state: a page of 5000
    // contacts is not copied first.
    let body = {
        let mut crm = s.0.lock().unwrap();
        let edit_now = crm.edit_after_first_page && after_row.is_none();
        let (page, more) = crm.changes(q.updated_after.as_deref(), after_row, limit);
        let next_page_token = page.last().filter(|_| more).map(|last| last.token());
        let edit = (edit_now && more)
            .then(|| page.first().map(|c| c.id.to_string()))
            .flatten();
        let body = serde_json::to_vec(&ListAnswer {
            results: page,
            next_page_token,
        });
        if let Some(id) = edit {
            crm.edit_after_first_page = false;
            crm.edit(&id, "city", json!("Edited between two pages"));
        }
        body
    };
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("page does not serialise: {e}"),
        ),
    }
}

pub(super) async fn fetch(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&s, &headers, format!("GET /api/contacts/{id}")) {
        return unauthorized();
    }
    match s.0.lock().unwrap().contacts.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => not_found(),
    }
}

/// `POST /api/contacts`. With an `Idempotency-Key` seen before, nothing is
/// created: the answer is 200 with the contact created for that key (as it
/// is now, or as it was when deleted).
pub(super) async fn create(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let what = match &key {
        Some(k) => format!("POST /api/contacts key={k}"),
        None => "POST /api/contacts".to_string(),
    };
    if !authorized(&s, &headers, what) {
        return unauthorized();
    }
    if let Some(failed) = before_write(&s, true).await {
        return failed;
    }
    let replayed = {
        let mut crm = s.0.lock().unwrap();
        key.as_deref()
            .and_then(|k| crm.replay(k))
            .map(|now| (now, take_stall(&mut crm)))
    };
    if let Some((contact, stall)) = replayed {
        return answer_after(stall, StatusCode::OK, contact).await;
    }
    let body = match contact_body(&body) {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let (contact, stall) = {
        let mut crm = s.0.lock().unwrap();
        let id = crm.create_counted(body, key);
        let contact = crm.contacts.get(&id).cloned().unwrap_or_default();
        (contact, take_stall(&mut crm))
    };
    answer_after(stall, StatusCode::CREATED, contact).await
}

/// `PUT /api/contacts/{id}`: replaces an existing contact; 404 otherwise.
pub(super) async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !authorized(&s, &headers, format!("PUT /api/contacts/{id}")) {
        return unauthorized();
    }
    if let Some(failed) = before_write(&s, true).await {
        return failed;
    }
    if !s.0.lock().unwrap().contacts.contains_key(&id) {
        return not_found();
    }
    let body = match contact_body(&body) {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let replaced = {
        let mut crm = s.0.lock().unwrap();
        if crm.replace(&id, body) {
            let contact = crm.contacts.get(&id).cloned();
            contact.map(|c| (c, take_stall(&mut crm)))
        } else {
            None
        }
    };
    match replaced {
        Some((contact, stall)) => answer_after(stall, StatusCode::OK, contact).await,
        // Deleted while this request was being validated.
        None => not_found(),
    }
}

/// `DELETE /api/contacts/{id}`: 204 and a tombstone; 404 for an unknown id.
pub(super) async fn remove(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&s, &headers, format!("DELETE /api/contacts/{id}")) {
        return unauthorized();
    }
    if let Some(failed) = before_write(&s, false).await {
        return failed;
    }
    match s.0.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}

#[derive(Deserialize)]
pub(super) struct RedirectQuery {
    to: String,
}

pub(super) async fn redirect(State(s): State<Shared>, Query(q): Query<RedirectQuery>) -> Response {
    s.0.lock()
        .unwrap()
        .requests
        .push(format!("GET /redirect to={}", q.to));
    (StatusCode::FOUND, [(header::LOCATION, q.to)]).into_response()
}

#[derive(Deserialize)]
pub(super) struct BigQuery {
    bytes: usize,
}

pub(super) async fn big(Query(q): Query<BigQuery>) -> Response {
    vec![b'x'; q.bytes].into_response()
}

pub(super) async fn limited(State(s): State<Shared>) -> Response {
    let mut crm = s.0.lock().unwrap();
    crm.requests.push("GET /limited".into());
    let n = crm.requests.iter().filter(|r| *r == "GET /limited").count();
    if n <= 1 {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "slow down",
        )
            .into_response()
    } else {
        Json(json!({"ok": true, "attempt": n})).into_response()
    }
}

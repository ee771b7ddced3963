//! The HTTP side of the sandbox: one handler that checks the token and the
//! rate limit, routes by path, answers in HubSpot's shapes and records the
//! exchange.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{ChangeError, Filter, ObjectType, PropertyError, Sort, Store, iso};
use super::{App, Exchange, lock, now_ms};

pub(super) fn router(app: Arc<App>) -> Router {
    let identity = crate::oauth::router(app.oauth.clone());
    Router::new()
        .fallback(handle)
        .with_state(app)
        .merge(identity)
}

/// A refusal, in HubSpot's error shape.
#[derive(Debug)]
pub(super) enum ApiError {
    Unauthorized,
    RateLimited { retry_after_s: u64 },
    NotFound(String),
    Validation { message: String, errors: Vec<Value> },
}

pub(super) type Answer = Result<(StatusCode, Option<Value>), ApiError>;

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError::Validation {
            message: message.into(),
            errors: Vec::new(),
        }
    }
    fn invalid(errors: &[PropertyError], prefix: &str) -> Self {
        let details: Vec<Value> = errors
            .iter()
            .map(|e| {
                json!({"message": e.message, "code": e.code, "in": e.name,
                       "context": {"propertyName": [e.name]}})
            })
            .collect();
        let listed: Vec<Value> = errors
            .iter()
            .map(|e| json!({"isValid": false, "message": e.message, "error": e.code, "name": e.name}))
            .collect();
        ApiError::Validation {
            message: format!(
                "{prefix}Property values were not valid: {}",
                Value::Array(listed)
            ),
            errors: details,
        }
    }
    fn body(&self, correlation: String) -> (StatusCode, Value) {
        let (status, category, message, errors) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview".to_string(),
                Vec::new(),
            ),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITS",
                "You have reached your ten_secondly_rolling limit.".to_string(),
                Vec::new(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", m.clone(), Vec::new()),
            ApiError::Validation { message, errors } => (
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                message.clone(),
                errors.clone(),
            ),
        };
        let mut body = json!({"status": "error", "message": message,
                              "correlationId": correlation, "category": category});
        if !errors.is_empty() {
            body["errors"] = Value::Array(errors);
        }
        if let ApiError::RateLimited { .. } = self {
            body["errorType"] = json!("RATE_LIMIT");
            body["policyName"] = json!("TEN_SECONDLY_ROLLING");
        }
        (status, body)
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let answer =
        admit(&app, &headers).and_then(|()| route(&app, &method, uri.path(), &query, &body));
    let (status, response, retry_after) = match answer {
        Ok((status, body)) => (status, body, None),
        Err(e) => {
            let n = app.correlation.fetch_add(1, Ordering::Relaxed);
            let (status, body) = e.body(format!("8b1f3c2a-0000-4000-8000-{n:012x}"));
            let retry = match e {
                ApiError::RateLimited { retry_after_s } => Some(retry_after_s),
                _ => None,
            };
            (status, Some(body), retry)
        }
    };
    app.served.fetch_add(1, Ordering::Relaxed);
    if let Some(log) = lock(&app.recording).as_mut() {
        log.push(Exchange {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            request,
            status: status.as_u16(),
            response: response.clone(),
        });
    }
    let mut out = match response {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => status.into_response(),
    };
    if let Some(s) = retry_after {
        out.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    out
}

/// The token (the private-app one or an OAuth access token), then the
/// rate limit (a refused token does not count).
fn admit(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match sent {
        Some(token) if token == app.token => {}
        // An access token of the identity server: any live one reaches the
        // one hub.
        Some(token) => {
            if let Err(refusal) = app.oauth.tenants_of(token) {
                tracing::debug!("hubspot sandbox refused a bearer token: {refusal}");
                return Err(ApiError::Unauthorized);
            }
        }
        None => return Err(ApiError::Unauthorized),
    }
    let Some(limit) = *lock(&app.limit) else {
        return Ok(());
    };
    let now = Instant::now();
    let mut window = lock(&app.window);
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= limit.per)
    {
        window.pop_front();
    }
    if window.len() >= limit.requests as usize {
        app.refused.fetch_add(1, Ordering::Relaxed);
        let wait = window
            .front()
            .map(|t| limit.per.saturating_sub(now.duration_since(*t)))
            .unwrap_or(limit.per);
        return Err(ApiError::RateLimited {
            retry_after_s: wait.as_millis().div_ceil(1000).max(1) as u64,
        });
    }
    window.push_back(now);
    Ok(())
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Comma-separated and repeated values of a list parameter.
fn list_param(query: &[(String, String)], name: &str) -> Vec<String> {
    query
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("Invalid input JSON: {e}")))
}

fn object_type(s: &str) -> Result<ObjectType, ApiError> {
    ObjectType::parse(s)
        .ok_or_else(|| ApiError::bad(format!("Unable to infer object type from: {s}")))
}

fn route(
    app: &App,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Answer {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut store = lock(&app.store);
    match (method, segments.as_slice()) {
        (&Method::GET, ["crm", "v3", "objects", ty]) => list(&store, object_type(ty)?, query),
        (&Method::POST, ["crm", "v3", "objects", ty]) => {
            let ty = object_type(ty)?;
            let input: ForCreate = parse(body)?;
            let created = store
                .create(ty, input.properties, now_ms())
                .map_err(|e| change(ty, e, ""))?;
            associate_all(&mut store, ty, created.id, &input.associations);
            ok(StatusCode::CREATED, Store::render_written(ty, &created))
        }
        (&Method::POST, ["crm", "v3", "objects", ty, "search"]) => {
            search(&store, object_type(ty)?, body)
        }
        (&Method::POST, ["crm", "v3", "objects", ty, "batch", op]) => {
            super::api_batch::batch(&mut store, object_type(ty)?, op, body)
        }
        (&Method::GET, ["crm", "v3", "objects", ty, id]) => {
            let ty = object_type(ty)?;
            let obj = find(&store, ty, id, param(query, "idProperty"))?;
            let mut out = Store::render(ty, obj, &list_param(query, "properties"));
            with_associations(
                &store,
                ty,
                obj.id,
                &list_param(query, "associations"),
                &mut out,
            )?;
            ok(StatusCode::OK, out)
        }
        (&Method::PATCH, ["crm", "v3", "objects", ty, id]) => {
            let ty = object_type(ty)?;
            let id = find(&store, ty, id, param(query, "idProperty"))?.id;
            let input: Input = parse(body)?;
            let obj = store
                .update(ty, id, input.properties, now_ms())
                .map_err(|e| change(ty, e, ""))?;
            ok(StatusCode::OK, Store::render_written(ty, &obj))
        }
        (&Method::DELETE, ["crm", "v3", "objects", ty, id]) => {
            let ty = object_type(ty)?;
            // Archiving what is already gone succeeds, as in HubSpot.
            if let Ok(id) = id.parse() {
                store.archive(ty, id, now_ms());
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        (&Method::GET, ["crm", "v4", "objects", from, id, "associations", to]) => {
            let (from, to) = (object_type(from)?, object_type(to)?);
            let id = find(&store, from, id, None)?.id;
            let results: Vec<Value> = store
                .associated(from, id, to)
                .into_iter()
                .map(|other| v4_target(from, to, other))
                .collect();
            ok(StatusCode::OK, json!({"results": results}))
        }
        (
            &Method::PUT,
            [
                "crm",
                "v4",
                "objects",
                from,
                id,
                "associations",
                "default",
                to,
                to_id,
            ],
        ) => {
            let (from, to) = (object_type(from)?, object_type(to)?);
            let id = find(&store, from, id, None)?.id;
            let to_id = find(&store, to, to_id, None)?.id;
            store.associate(from, id, to, to_id);
            ok(
                StatusCode::OK,
                json!({"status": "COMPLETE", "results": [], "startedAt": iso(now_ms()), "completedAt": iso(now_ms())}),
            )
        }
        (&Method::POST, ["crm", "v4", "associations", from, to, "batch", "read"]) => {
            let (from, to) = (object_type(from)?, object_type(to)?);
            let input: IdInputs = parse(body)?;
            let results: Vec<Value> = input
                .inputs
                .iter()
                .filter_map(|i| i.id.parse::<u64>().ok())
                .filter(|&id| store.get(from, id).is_some())
                .map(|id| {
                    let to_list: Vec<Value> = store
                        .associated(from, id, to)
                        .into_iter()
                        .map(|other| v4_target(from, to, other))
                        .collect();
                    json!({"from": {"id": id.to_string()}, "to": to_list})
                })
                .collect();
            let t = iso(now_ms());
            ok(
                StatusCode::OK,
                json!({"status": "COMPLETE", "results": results, "startedAt": t, "completedAt": t}),
            )
        }
        (_, ["webhooks", "v3", app_id, rest @ ..]) => {
            super::webhooks::route(app, &mut store, method, app_id, rest, body)
        }
        _ => Err(ApiError::NotFound(format!("No route for {method} {path}"))),
    }
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Some(body)))
}

fn v4_target(from: ObjectType, to: ObjectType, id: u64) -> Value {
    let (type_id, _) = super::store::association_type(from, to);
    json!({"toObjectId": id, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]})
}

pub(super) fn change(ty: ObjectType, e: ChangeError, prefix: &str) -> ApiError {
    match e {
        ChangeError::NotFound(id) => ApiError::NotFound(format!(
            "Object not found. {} {id} does not exist",
            ty.name()
        )),
        ChangeError::Invalid(errors) => ApiError::invalid(&errors, prefix),
    }
}

fn find<'s>(
    store: &'s Store,
    ty: ObjectType,
    id: &str,
    id_property: Option<&str>,
) -> Result<&'s super::CrmObject, ApiError> {
    let found = match id_property {
        Some(p) if p != "hs_object_id" => store.find_by(ty, p, id),
        _ => id.parse().ok().and_then(|id| store.get(ty, id)),
    };
    found.ok_or_else(|| {
        ApiError::NotFound(format!(
            "Object not found.  objectId are usually numeric. ({id})"
        ))
    })
}

/// `SimplePublicObjectWithAssociations.associations`: `{type: {results: [{id, type}]}}`.
fn with_associations(
    store: &Store,
    ty: ObjectType,
    id: u64,
    to: &[String],
    out: &mut Value,
) -> Result<(), ApiError> {
    if to.is_empty() {
        return Ok(());
    }
    let mut map = serde_json::Map::new();
    for name in to {
        let other = object_type(name)?;
        let (_, label) = super::store::association_type(ty, other);
        let results: Vec<Value> = store
            .associated(ty, id, other)
            .into_iter()
            .map(|o| json!({"id": o.to_string(), "type": label}))
            .collect();
        if !results.is_empty() {
            map.insert(other.name().to_string(), json!({"results": results}));
        }
    }
    out["associations"] = Value::Object(map);
    Ok(())
}

fn limit(query_or_body: Option<i64>, max: i64, default: i64) -> Result<usize, ApiError> {
    let n = query_or_body.unwrap_or(default);
    if !(1..=max).contains(&n) {
        return Err(ApiError::bad(format!(
            "limit must be between 1 and {max}, got {n}"
        )));
    }
    Ok(n as usize)
}

/// `GET /crm/v3/objects/{type}`: by id, `after` = the last id returned;
/// with `archived=true`, only the archived objects (as HubSpot does).
fn list(store: &Store, ty: ObjectType, query: &[(String, String)]) -> Answer {
    let limit = limit(param(query, "limit").and_then(|l| l.parse().ok()), 100, 10)?;
    let after: u64 = match param(query, "after").filter(|a| !a.is_empty()) {
        Some(a) => a
            .parse()
            .map_err(|_| ApiError::bad(format!("after must be numeric, got {a}")))?,
        None => 0,
    };
    let properties = list_param(query, "properties");
    let associations = list_param(query, "associations");
    let archived = match param(query, "archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "archived must be true or false, got {other}"
            )));
        }
    };
    let mut page: Vec<&super::CrmObject> = if archived {
        store
            .archived(ty)
            .filter(|o| o.id > after)
            .take(limit + 1)
            .collect()
    } else {
        store
            .live(ty)
            .filter(|o| o.id > after)
            .take(limit + 1)
            .collect()
    };
    let more = page.len() > limit;
    page.truncate(limit);
    let mut results = Vec::with_capacity(page.len());
    for obj in &page {
        let mut out = Store::render(ty, obj, &properties);
        with_associations(store, ty, obj.id, &associations, &mut out)?;
        results.push(out);
    }
    let mut body = json!({"results": results});
    if let (true, Some(last)) = (more, page.last()) {
        let after = last.id.to_string();
        body["paging"] = json!({"next": {"after": after, "link": format!("?after={after}")}});
    }
    ok(StatusCode::OK, body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchRequest {
    #[serde(default)]
    filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    sorts: Vec<Value>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    after: Option<Value>,
}

#[derive(Deserialize)]
struct FilterGroup {
    #[serde(default)]
    filters: Vec<Filter>,
}

/// HubSpot's search: at most 200 per page and 10 000 in all (`after` is
/// an offset).
fn search(store: &Store, ty: ObjectType, body: &[u8]) -> Answer {
    let req: SearchRequest = parse(body)?;
    let limit = limit(req.limit, 200, 10)?;
    let after: usize = match &req.after {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) if s.is_empty() => 0,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ApiError::bad(format!("after must be numeric, got {s}")))?,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "after must be a string, got {other}"
            )));
        }
    };
    if after + limit > 10_000 {
        return Err(ApiError::bad(
            "Search results are limited to 10000; narrow the filter instead of paging further",
        ));
    }
    let sorts: Vec<Sort> = req
        .sorts
        .iter()
        .map(|s| Sort::from_json(s).ok_or_else(|| ApiError::bad(format!("Invalid sort {s}"))))
        .collect::<Result<_, _>>()?;
    let groups: Vec<Vec<Filter>> = req.filter_groups.into_iter().map(|g| g.filters).collect();
    let (total, found) = store
        .search_page(ty, &groups, &sorts, after, limit)
        .map_err(ApiError::bad)?;
    let results: Vec<Value> = found
        .iter()
        .map(|o| Store::render(ty, o, &req.properties))
        .collect();
    let mut body = json!({"total": total, "results": results});
    if after + limit < total {
        let next = (after + limit).to_string();
        body["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
    }
    ok(StatusCode::OK, body)
}

/// `SimplePublicObjectInput`.
#[derive(Deserialize)]
pub(super) struct Input {
    pub properties: BTreeMap<String, String>,
}

/// `SimplePublicObjectInputForCreate` (also a batch create input).
#[derive(Deserialize)]
pub(super) struct ForCreate {
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub associations: Vec<AssociationInput>,
}

/// `PublicAssociationsForObject`.
#[derive(Deserialize)]
pub(super) struct AssociationInput {
    to: IdInput,
}

/// `SimplePublicObjectId`.
#[derive(Deserialize)]
pub(super) struct IdInput {
    pub id: String,
}

/// `{"inputs": [{"id"}]}`.
#[derive(Deserialize)]
pub(super) struct IdInputs {
    pub inputs: Vec<IdInput>,
}

/// Associate a new object with the objects its input names (any type
/// holding that id).
pub(super) fn associate_all(
    store: &mut Store,
    ty: ObjectType,
    id: u64,
    inputs: &[AssociationInput],
) {
    for input in inputs {
        let Ok(other) = input.to.id.parse::<u64>() else {
            continue;
        };
        if let Some(to) = ObjectType::ALL
            .into_iter()
            .find(|&t| store.get(t, other).is_some())
        {
            store.associate(ty, id, to, other);
        }
    }
}

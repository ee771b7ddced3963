//! The HTTP face of the sandbox: authentication, the per-tenant rate limit,
//! idempotency keys, paging and batch writes, and the recording of every
//! exchange for the tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

use super::store::{Books, Collection, matches, ms_date, parse_date, parse_where};
use super::{Exchange, XeroConfig, lock};
use crate::oauth::{self, OAuthServer};

/// Records per page.
const PAGE_SIZE: usize = 100;
/// Path prefix of the API.
const PREFIX: &str = "/api.xro/2.0/";

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    config: XeroConfig,
    oauth: Arc<OAuthServer>,
    books: Mutex<Books>,
    rate: Mutex<RateState>,
    idempotency: Mutex<BTreeMap<String, (u16, Value)>>,
    exchanges: Mutex<Vec<Exchange>>,
    stall: Mutex<Option<(Collection, Duration)>>,
}

#[derive(Debug)]
struct RateState {
    limit: Option<u32>,
    calls: VecDeque<Instant>,
    refused: u64,
}

/// An answer before it is recorded and sent.
struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn json(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            body,
            retry_after: None,
        }
    }
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Answer {
    Answer::json(
        status,
        json!({"Type": null, "Title": title, "Status": status.as_u16(), "Detail": detail,
               "Instance": "00000000-0000-4000-8000-000000000000", "Extensions": {}}),
    )
}

fn validation_exception(elements: Vec<Value>) -> Answer {
    Answer::json(
        StatusCode::BAD_REQUEST,
        json!({"ErrorNumber": 10, "Type": "ValidationException",
               "Message": "A validation exception occurred", "Elements": elements}),
    )
}

impl App {
    pub fn new(config: XeroConfig, books: Books) -> App {
        let limit = config.rate_limit;
        App {
            oauth: OAuthServer::xero(config.oauth.clone(), &config.tenant_id),
            config,
            books: Mutex::new(books),
            rate: Mutex::new(RateState {
                limit,
                calls: VecDeque::new(),
                refused: 0,
            }),
            idempotency: Mutex::new(BTreeMap::new()),
            exchanges: Mutex::new(Vec::new()),
            stall: Mutex::new(None),
        }
    }

    pub fn with_books<T>(&self, f: impl FnOnce(&mut Books) -> T) -> T {
        f(&mut lock(&self.books))
    }

    pub fn oauth(&self) -> &Arc<OAuthServer> {
        &self.oauth
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.exchanges).clone()
    }

    pub fn rate_limited(&self) -> u64 {
        lock(&self.rate).refused
    }

    pub fn stall_next_write(&self, c: Collection, delay: Duration) {
        *lock(&self.stall) = Some((c, delay));
    }

    pub fn set_rate_limit(&self, limit: Option<u32>) {
        let mut rate = lock(&self.rate);
        rate.limit = limit;
        rate.calls.clear();
    }

    /// Xero's 401/403 when the token or tenant is missing or wrong: the
    /// static token reaches the configured tenant; an OAuth access token
    /// reaches it when its consent chose it (any other organisation has no
    /// data here, so it is refused as a wrong tenant).
    fn authenticate(&self, headers: &HeaderMap) -> Option<Answer> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let unauthorized = || {
            Some(problem(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "AuthenticationUnsuccessful",
            ))
        };
        let granted = match bearer {
            None => return unauthorized(),
            Some(token) if token == self.config.token => None,
            Some(token) => match self.oauth.tenants_of(token) {
                Ok(tenants) => Some(tenants),
                Err(refusal) => {
                    tracing::debug!("xero sandbox refused a bearer token: {refusal}");
                    return unauthorized();
                }
            },
        };
        let tenant = headers.get("xero-tenant-id").and_then(|v| v.to_str().ok());
        let reached = tenant == Some(self.config.tenant_id.as_str())
            && granted.is_none_or(|t| t.iter().any(|t| t == &self.config.tenant_id));
        if !reached {
            return Some(problem(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "AuthenticationUnsuccessful",
            ));
        }
        None
    }

    /// A 429 with `Retry-After` once the window's calls are used up.
    fn throttle(&self) -> Option<Answer> {
        let mut rate = lock(&self.rate);
        let limit = rate.limit? as usize;
        let window = self.config.rate_window;
        let now = Instant::now();
        while rate
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            rate.calls.pop_front();
        }
        if rate.calls.len() >= limit {
            rate.refused += 1;
            let wait = rate
                .calls
                .front()
                .map_or(window, |t| window.saturating_sub(now.duration_since(*t)));
            let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
            return Some(Answer {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: json!({"Title": "Too Many Requests", "Status": 429,
                             "Detail": "Rate limit exceeded: minute"}),
                retry_after: Some(secs),
            });
        }
        rate.calls.push_back(now);
        None
    }
}

pub fn router(app: Arc<App>) -> Router {
    let identity = oauth::router(app.oauth.clone());
    Router::new()
        .fallback(handle)
        .with_state(app)
        .merge(identity)
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    let mut parts = rest.splitn(2, '/');
    let collection = parts.next().and_then(Collection::parse);
    let id = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    let (answer, stall) = match app.authenticate(&headers).or_else(|| app.throttle()) {
        Some(refusal) => (refusal, None),
        None => match collection {
            None => (
                problem(
                    StatusCode::NOT_FOUND,
                    "Not Found",
                    "The resource you're looking for cannot be found",
                ),
                None,
            ),
            Some(c) => dispatch(
                &app,
                &method,
                c,
                id.as_deref(),
                &query,
                &headers,
                request.as_ref(),
            ),
        },
    };
    lock(&app.exchanges).push(Exchange {
        method: method.to_string(),
        path,
        query,
        collection,
        request,
        status: answer.status.as_u16(),
        response: Some(answer.body.clone()),
    });
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    let mut response = (answer.status, axum::Json(answer.body)).into_response();
    if let Some(secs) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
            .headers_mut()
            .insert("x-rate-limit-problem", HeaderValue::from_static("minute"));
    }
    response
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

fn dispatch(
    app: &App,
    method: &Method,
    c: Collection,
    id: Option<&str>,
    query: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> (Answer, Option<Duration>) {
    match *method {
        Method::GET => (read(app, c, id, query, headers), None),
        Method::PUT | Method::POST if c != Collection::Accounts => {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(|k| format!("{}:{k}", c.name()));
            if let Some(key) = &key
                && let Some((status, body)) = lock(&app.idempotency).get(key).cloned()
            {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return (Answer::json(status, body), None);
            }
            let answer = write(app, method, c, id, query, body);
            if let Some(key) = key {
                lock(&app.idempotency).insert(key, (answer.status.as_u16(), answer.body.clone()));
            }
            let stall = {
                let mut stall = lock(&app.stall);
                match *stall {
                    Some((sc, delay)) if sc == c && answer.status == StatusCode::OK => {
                        *stall = None;
                        Some(delay)
                    }
                    _ => None,
                }
            };
            (answer, stall)
        }
        _ => (
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                "The method is not supported for this resource",
            ),
            None,
        ),
    }
}

fn envelope(c: Collection, records: Vec<Value>) -> Value {
    json!({"Id": "00000000-0000-4000-8000-000000000001", "Status": "OK",
           "ProviderName": "Nexo Xero sandbox",
           "DateTimeUTC": ms_date(chrono::Utc::now().timestamp_millis()),
           c.name(): records})
}

fn read(app: &App, c: Collection, id: Option<&str>, query: &str, headers: &HeaderMap) -> Answer {
    let books = lock(&app.books);
    if let Some(id) = id {
        return match books.get(c, id) {
            Some(doc) => Answer::json(StatusCode::OK, envelope(c, vec![doc])),
            None => problem(
                StatusCode::NOT_FOUND,
                "Not Found",
                "The resource you're looking for cannot be found",
            ),
        };
    }
    let since = match headers.get(header::IF_MODIFIED_SINCE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) => match parse_date(text) {
            Some(ms) => Some(ms),
            None => {
                return validation_exception(vec![
                    json!({"ValidationErrors": [{"Message": format!("If-Modified-Since `{text}` is not a valid date")}]}),
                ]);
            }
        },
        Some(Err(_)) => return validation_exception(vec![]),
    };
    let mut rows = books.list_since(c, since);
    if let Some(w) = query_param(query, "where") {
        match parse_where(&w) {
            Ok(clauses) => rows.retain(|d| matches(d, &clauses)),
            Err(e) => {
                return validation_exception(vec![json!({"ValidationErrors": [{"Message": e}]})]);
            }
        }
    }
    // `IDs=a,b,c`: those records only (contacts and invoices, as Xero).
    if let Some(ids) = query_param(query, "IDs") {
        let wanted: std::collections::HashSet<&str> = ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        rows.retain(|d| {
            d[c.id_field()]
                .as_str()
                .is_some_and(|id| wanted.contains(id))
        });
    }
    if query_param(query, "order").is_some_and(|o| o.to_ascii_uppercase().ends_with("DESC")) {
        rows.reverse();
    }
    let page = query_param(query, "page").and_then(|p| p.parse::<usize>().ok());
    let Some(page) = page else {
        return Answer::json(StatusCode::OK, envelope(c, rows));
    };
    let page = page.max(1);
    let count = rows.len();
    let slice: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    let mut body = envelope(c, slice);
    body["pagination"] = json!({"page": page, "pageSize": PAGE_SIZE,
        "pageCount": count.div_ceil(PAGE_SIZE), "itemCount": count});
    Answer::json(StatusCode::OK, body)
}

fn write(
    app: &App,
    method: &Method,
    c: Collection,
    id: Option<&str>,
    query: &str,
    body: Option<&Value>,
) -> Answer {
    let Some(body) = body else {
        return validation_exception(vec![
            json!({"ValidationErrors": [{"Message": "The request body is not valid JSON."}]}),
        ]);
    };
    let inputs: Vec<Value> = match body.get(c.name()) {
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        None if body.is_object() => vec![body.clone()],
        _ => {
            return validation_exception(vec![
                json!({"ValidationErrors": [{"Message": format!("Expected an object with an array `{}`.", c.name())}]}),
            ]);
        }
    };
    let summarize = query_param(query, "summarizeErrors").is_none_or(|v| v != "false");
    let mut books = lock(&app.books);
    let before = books.clone();
    let mut out = Vec::new();
    let mut failed = false;
    for input in inputs {
        let target = id
            .map(str::to_string)
            .or_else(|| input[c.id_field()].as_str().map(str::to_string));
        if *method == Method::PUT && target.is_some() && id.is_none() {
            // PUT only creates.
            out.push(errors_element(
                c,
                input,
                vec![format!(
                    "{} cannot be set when creating with PUT; use POST to update.",
                    c.id_field()
                )],
            ));
            failed = true;
            continue;
        }
        match books.upsert(c, target.as_deref(), input.clone()) {
            Ok(doc) => out.push(doc),
            Err(messages) => {
                failed = true;
                out.push(errors_element(c, input, messages));
            }
        }
    }
    if failed && summarize {
        *books = before;
        return validation_exception(out);
    }
    Answer::json(StatusCode::OK, envelope(c, out))
}

/// The input echoed with its validation errors, as Xero answers with
/// `summarizeErrors=false`.
fn errors_element(c: Collection, mut input: Value, messages: Vec<String>) -> Value {
    let flag = if c == Collection::Invoices {
        "HasErrors"
    } else {
        "HasValidationErrors"
    };
    if !input.is_object() {
        input = json!({});
    }
    input[flag] = json!(true);
    input["StatusAttributeString"] = json!("ERROR");
    input["ValidationErrors"] = Value::Array(
        messages
            .into_iter()
            .map(|m| json!({"Message": m}))
            .collect(),
    );
    input
}

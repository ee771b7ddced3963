//! Typed outbound HTTP for connectors.
//!
//! Requests go through the host, which only sends them to origins the admin
//! granted. Credentials are never in the plugin: write
//! [`Request::bearer_secret`] or `{{secret:NAME}}` in a header and the host
//! substitutes the value at send time, for the origins the secret is bound to.

use serde::{Deserialize, Serialize};

use crate::Error;

/// HTTP methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// An outbound request, built fluently and sent with [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    basic_auth: Option<(String, String)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u32>,
}

/// A `{{secret:NAME}}` template for use in headers.
pub fn secret_ref(name: &str) -> String {
    format!("{{{{secret:{name}}}}}")
}

impl Request {
    /// A request with this method and absolute URL.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            query: Vec::new(),
            headers: Vec::new(),
            basic_auth: None,
            body: None,
            timeout_ms: None,
        }
    }
    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }
    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }
    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }
    /// A PATCH request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }
    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Add a query parameter (percent-encoded for you). Empty values are skipped.
    pub fn query(mut self, name: &str, value: impl AsRef<str>) -> Self {
        if !value.as_ref().is_empty() {
            self.query
                .push((name.to_string(), value.as_ref().to_string()));
        }
        self
    }
    /// Add a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    /// `Authorization: Bearer <secret NAME>`, substituted by the host.
    pub fn bearer_secret(self, secret: &str) -> Self {
        let value = format!("Bearer {}", secret_ref(secret));
        self.header("authorization", value)
    }
    /// Basic auth; the user and password may be secret templates
    /// ([`secret_ref`]); the host substitutes and encodes them.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }
    /// A JSON body (and `content-type: application/json`).
    pub fn json(mut self, body: &impl Serialize) -> Result<Self, Error> {
        self.body = Some(serde_json::to_vec(body)?);
        Ok(self.header("content-type", "application/json"))
    }
    /// A raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// Per-request timeout (the host caps it with its own limit).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The full URL with the query string.
    pub fn full_url(&self) -> String {
        if self.query.is_empty() {
            return self.url.clone();
        }
        let mut url = self.url.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        let encoded: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        url.push_str(&encoded.join("&"));
        url
    }

    /// Send through the host. Host denials (origin not granted, secret not
    /// bound) become [`Error::AccessDenied`]; timeouts and connection
    /// failures [`Error::Transient`].
    pub fn send(self) -> Result<Response, Error> {
        imp::send(self)
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Most characters of a body an error message quotes.
pub const ERROR_EXCERPT_CHARS: usize = 160;

/// A short, single-line excerpt of an error body for a message, or `None`
/// for an empty one. The host has already replaced the secrets it sent by
/// `[redacted:NAME]`; as a second guard the excerpt is bounded, control
/// characters become spaces, and the word after `Bearer`, `Basic`, `Token`
/// or a `token=`/`password=`-like key is masked. Request headers are never
/// quoted.
pub fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut mask_next = false;
    for word in words {
        if out.chars().count() >= ERROR_EXCERPT_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        if mask_next {
            out.push_str("***");
            mask_next = false;
            continue;
        }
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if ["bearer", "basic", "token"].contains(&bare.to_ascii_lowercase().as_str()) {
            mask_next = true;
            out.push_str(word);
            continue;
        }
        out.push_str(&mask_credential_pair(word));
    }
    let mut bounded: String = out.chars().take(ERROR_EXCERPT_CHARS).collect();
    if bounded.len() < out.len() {
        bounded.push('…');
    }
    Some(bounded)
}

/// `password=hunter2` → `password=***` for credential-like keys.
fn mask_credential_pair(word: &str) -> String {
    const KEYS: &[&str] = &[
        "token",
        "access_token",
        "api_key",
        "apikey",
        "password",
        "secret",
        "authorization",
    ];
    for sep in ['=', ':'] {
        if let Some((key, value)) = word.split_once(sep) {
            let k = key
                .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .to_ascii_lowercase();
            if !value.is_empty() && KEYS.contains(&k.as_str()) {
                return format!("{key}{sep}***");
            }
        }
    }
    word.to_string()
}

/// An HTTP response, whatever its status.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON. `T` may borrow from the body (e.g.
    /// [`Text`](crate::json::Text), [`Fields`](crate::json::Fields) with
    /// `#[serde(borrow)]`), so a record passed through is not copied.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Internal(format!(
                "the system answered {} with a body that is not the expected JSON: {e}",
                self.status
            ))
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Ok(self)` for 2xx; otherwise the error class the status implies:
    /// 401 → `Auth`, 403 → `AccessDenied`, 429 → `RateLimited` (from
    /// `Retry-After`), 408/5xx → `Transient`, 400/404/409/422 → `Rejected`.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let msg = match excerpt(&self.body) {
            Some(e) => format!("HTTP {}: {e}", self.status),
            None => format!("HTTP {} (empty body)", self.status),
        };
        Err(match self.status {
            401 => Error::Auth(msg),
            403 => Error::AccessDenied(msg),
            429 => Error::RateLimited(self.retry_after_ms().unwrap_or(1_000)),
            408 | 500..=599 => Error::Transient(msg),
            400 | 404 | 409 | 410 | 422 => Error::Rejected(msg),
            _ => Error::Internal(msg),
        })
    }

    /// `Retry-After` in milliseconds (seconds form only).
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|s| s.saturating_mul(1000))
    }

    /// The `rel="next"` target of a `Link` header (RFC 8288), for APIs that
    /// page that way.
    pub fn link_next(&self) -> Option<String> {
        let link = self.header("link")?;
        link.split(',').find_map(|part| {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            (is_next && target.starts_with('<') && target.ends_with('>'))
                .then(|| target[1..target.len() - 1].to_string())
        })
    }
}

mod imp {
    use super::*;
    use crate::wit::connector::nexo::connector::http as wit;

    pub fn send(req: Request) -> Result<Response, Error> {
        let url = req.full_url();
        let wit_req = wit::Request {
            method: match req.method {
                Method::Get => wit::Method::Get,
                Method::Head => wit::Method::Head,
                Method::Post => wit::Method::Post,
                Method::Put => wit::Method::Put,
                Method::Patch => wit::Method::Patch,
                Method::Delete => wit::Method::Delete,
            },
            url,
            headers: req.headers,
            basic_auth: req.basic_auth,
            body: req.body,
            timeout_ms: req.timeout_ms,
        };
        match wit::send(&wit_req) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                // Text is the body's bytes, already checked as UTF-8.
                body: match r.body {
                    wit::ResponseBody::Text(text) => text.into_bytes(),
                    wit::ResponseBody::Bytes(bytes) => bytes,
                },
            }),
            Err(e) => Err(match e {
                wit::HttpError::OriginNotAllowed(m)
                | wit::HttpError::AddressNotAllowed(m)
                | wit::HttpError::RedirectNotAllowed(m)
                | wit::HttpError::SecretNotAllowed(m) => Error::AccessDenied(m),
                wit::HttpError::InvalidRequest(m) => Error::Internal(m),
                wit::HttpError::ResponseTooLarge(n) => {
                    Error::Internal(format!("response larger than the host's {n}-byte cap"))
                }
                wit::HttpError::Timeout => Error::Transient("request timed out".into()),
                wit::HttpError::ConnectionFailed(m) => Error::Transient(m),
                // The host's own refusals (contract 1.1): the connection's
                // request budget is used up for now; a credential needs an
                // admin to authorize the connection again.
                wit::HttpError::BudgetExhausted(ms) => Error::RateLimited(ms),
                wit::HttpError::NeedsAuthorization(m) => Error::Auth(m),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_percent_encoded_and_empty_values_skipped() {
        let r = Request::get("https://x.test/a?b=1")
            .query("after", "2026-01-01T00:00:00+01:00")
            .query("empty", "");
        assert_eq!(
            r.full_url(),
            "https://x.test/a?b=1&after=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn status_classes() {
        let resp = |status, headers: Vec<(String, String)>| Response {
            status,
            headers,
            body: b"no".to_vec(),
        };
        assert!(matches!(
            resp(401, vec![]).error_for_status(),
            Err(Error::Auth(_))
        ));
        assert_eq!(
            resp(429, vec![("Retry-After".into(), "7".into())])
                .error_for_status()
                .unwrap_err(),
            Error::RateLimited(7000)
        );
        assert!(matches!(
            resp(503, vec![]).error_for_status(),
            Err(Error::Transient(_))
        ));
        assert!(matches!(
            resp(422, vec![]).error_for_status(),
            Err(Error::Rejected(_))
        ));
        assert!(resp(204, vec![]).error_for_status().is_ok());
    }

    #[test]
    fn error_text_is_a_short_single_line_with_credentials_masked() {
        let resp = |status, body: &str| Response {
            status,
            headers: vec![("www-authenticate".into(), "Bearer realm=x".into())],
            body: body.as_bytes().to_vec(),
        };
        let Err(Error::Auth(m)) = resp(
            401,
            "bad credentials\r\nyou sent: Bearer abc123XYZ and token=q9q9q9",
        )
        .error_for_status() else {
            panic!("401 is an auth error")
        };
        assert_eq!(
            m,
            "HTTP 401: bad credentials you sent: Bearer *** and token=***"
        );
        assert!(!m.contains("abc123XYZ") && !m.contains("q9q9q9"), "{m}");
        assert!(!m.contains("realm"), "headers are never quoted: {m}");
        let long = "x ".repeat(1000);
        let Err(Error::Transient(m)) = resp(503, &long).error_for_status() else {
            panic!("503 is transient")
        };
        assert!(m.chars().count() <= ERROR_EXCERPT_CHARS + 12, "{m}");
        assert!(m.ends_with('…'), "{m}");
        let Err(Error::Rejected(m)) = resp(422, "").error_for_status() else {
            panic!("422 is rejected")
        };
        assert_eq!(m, "HTTP 422 (empty body)");
    }

    #[test]
    fn link_header_next() {
        let r = Response {
            status: 200,
            headers: vec![(
                "link".into(),
                r#"<https://x.test/p?page=1>; rel="prev", <https://x.test/p?page=3>; rel="next""#
                    .into(),
            )],
            body: vec![],
        };
        assert_eq!(r.link_next().as_deref(), Some("https://x.test/p?page=3"));
    }

    #[test]
    fn bearer_secret_is_a_template_not_a_value() {
        let r = Request::get("https://x.test").bearer_secret("token");
        assert_eq!(r.headers[0].1, "Bearer {{secret:token}}");
    }
}

//! The generated `Host` traits of `nexo:connector@1.0.0`, implemented as thin
//! adapters from WIT types to the sandbox capabilities (the parts every
//! version shares come from [`crate::bindings::host_adapters`]). Every
//! capability check happens in the sandbox, at the import boundary, the
//! same way for every import and every version.
//!
//! 1.0 has no words for the host's own refusals, so they reach the guest as
//! the answers a system would give: a used-up request budget as a `429`, a
//! credential that needs authorizing as a `401`, storage not granted as
//! `quota-exceeded(0)`.

use super::{wit_http, wit_kv, wit_log, wit_secrets, wit_types};
use crate::sandbox::budget::BudgetExhausted;
use crate::sandbox::http::HttpError;
use crate::sandbox::kv::KvError;
use crate::state::{PluginState, SandboxEvent};

crate::bindings::host_adapters!(wit_types, wit_log, wit_http, wit_secrets, wit_kv);

/// A response body as 1.0 carries it: the bytes.
fn to_wit_body(body: Vec<u8>) -> Vec<u8> {
    body
}

/// The guest's view of a used-up request budget: the answer a rate-limited
/// system gives, `429` with `Retry-After` (whole seconds, rounded up), which
/// the SDK's `error_for_status` turns into `rate-limited(ms)` as for the
/// system's own 429s. `http-error` (WIT 1.0) has no rate-limited case, and
/// adding one would break every plugin built against 1.0. The
/// `x-nexo-rate-limited` header tells it apart from the system's own.
fn budget_answer(e: &BudgetExhausted) -> wit_http::Response {
    let seconds = e.retry_after.as_millis().div_ceil(1000).max(1);
    wit_http::Response {
        status: 429,
        headers: vec![
            ("retry-after".into(), seconds.to_string()),
            ("x-nexo-rate-limited".into(), "connection-budget".into()),
            ("content-type".into(), "text/plain; charset=utf-8".into()),
        ],
        body: e.to_string().into_bytes(),
    }
}

/// The guest's view of a credential that needs an admin to authorize the
/// connection again: the system's own answer to a missing credential, a
/// `401` (which the SDK classes as `auth`), marked
/// `x-nexo-credential: needs-authorization`.
fn authorization_answer(secret: &str, why: &str) -> wit_http::Response {
    let body = serde_json::json!({
        "error": "needs_authorization",
        "secret": secret,
        "message": why,
    });
    wit_http::Response {
        status: 401,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-nexo-credential".into(), "needs-authorization".into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// What the guest gets for a request that got no response from the system.
fn to_wit_http_result(e: HttpError) -> Result<wit_http::Response, wit_http::HttpError> {
    Err(match e {
        HttpError::OriginNotAllowed(m) => wit_http::HttpError::OriginNotAllowed(m),
        HttpError::AddressNotAllowed(m) => wit_http::HttpError::AddressNotAllowed(m),
        HttpError::RedirectNotAllowed(m) => wit_http::HttpError::RedirectNotAllowed(m),
        HttpError::SecretNotAllowed(m) => wit_http::HttpError::SecretNotAllowed(m),
        HttpError::InvalidRequest(m) => wit_http::HttpError::InvalidRequest(m),
        HttpError::ResponseTooLarge(n) => wit_http::HttpError::ResponseTooLarge(n),
        HttpError::Timeout => wit_http::HttpError::Timeout,
        HttpError::ConnectionFailed(m) => wit_http::HttpError::ConnectionFailed(m),
        HttpError::RateLimited(e) => return Ok(budget_answer(&e)),
        HttpError::NeedsAuthorization { secret, why } => {
            return Ok(authorization_answer(&secret, &why));
        }
    })
}

fn to_wit_kv_error(e: KvError) -> wit_kv::KvError {
    match e {
        KvError::QuotaExceeded { quota } => wit_kv::KvError::QuotaExceeded(quota),
        KvError::InvalidKey(m) => wit_kv::KvError::InvalidKey(m),
        KvError::Storage(m) => wit_kv::KvError::Storage(m),
    }
}

/// Storage not granted, as 1.0 says it: a quota of nothing.
const KV_NOT_GRANTED: wit_kv::KvError = wit_kv::KvError::QuotaExceeded(0);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_used_up_budget_reaches_the_guest_as_a_429_with_whole_seconds_rounded_up() {
        let e = |ms| BudgetExhausted {
            connection: "crm".into(),
            per_minute: 6,
            retry_after: Duration::from_millis(ms),
        };
        let retry_after = |r: &wit_http::Response| {
            r.headers
                .iter()
                .find(|(k, _)| k == "retry-after")
                .map(|(_, v)| v.clone())
        };
        for (ms, seconds) in [(1, "1"), (1000, "1"), (1001, "2"), (9_500, "10")] {
            let answer = to_wit_http_result(HttpError::RateLimited(e(ms))).unwrap();
            assert_eq!(answer.status, 429);
            assert_eq!(retry_after(&answer).as_deref(), Some(seconds), "{ms} ms");
            assert!(
                answer
                    .headers
                    .contains(&("x-nexo-rate-limited".into(), "connection-budget".into()))
            );
            assert!(String::from_utf8(answer.body).unwrap().contains("`crm`"));
        }
    }

    #[test]
    fn a_credential_that_needs_authorizing_reaches_a_1_0_guest_as_a_marked_401() {
        let answer = to_wit_http_result(HttpError::NeedsAuthorization {
            secret: "access_token".into(),
            why: "run `nexo connection authorize books`".into(),
        })
        .unwrap();
        assert_eq!(answer.status, 401);
        assert!(
            answer
                .headers
                .contains(&("x-nexo-credential".into(), "needs-authorization".into()))
        );
        let body = String::from_utf8(answer.body).unwrap();
        assert!(body.contains("nexo connection authorize books"), "{body}");
    }

    #[test]
    fn storage_not_granted_reaches_a_1_0_guest_as_a_quota_of_nothing() {
        assert!(matches!(KV_NOT_GRANTED, wit_kv::KvError::QuotaExceeded(0)));
    }
}

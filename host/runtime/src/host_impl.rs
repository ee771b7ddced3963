//! The generated `Host` traits of `nexo:connector@1.0.0`, implemented as thin
//! adapters from WIT types to the sandbox capabilities. Every capability check happens here, at the
//! import boundary, the same way for every import.

use crate::bindings::v1_0::{wit_http, wit_kv, wit_log, wit_secrets, wit_types};
use crate::sandbox::budget::BudgetExhausted;
use crate::sandbox::http::{HttpError, Method, OutboundRequest};
use crate::sandbox::kv::KvError;
use crate::sandbox::log::Level;
use crate::sandbox::redact;
use crate::state::{PluginState, SandboxEvent};

impl wit_types::Host for PluginState {}

impl wit_log::Host for PluginState {
    async fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            wit_log::Level::Trace => Level::Trace,
            wit_log::Level::Debug => Level::Debug,
            wit_log::Level::Info => Level::Info,
            wit_log::Level::Warn => Level::Warn,
            wit_log::Level::Error => Level::Error,
        };
        self.log.log(level, &message).map_err(wasmtime::Error::new)
    }
}

impl wit_http::Host for PluginState {
    async fn send(
        &mut self,
        request: wit_http::Request,
    ) -> wasmtime::Result<Result<wit_http::Response, wit_http::HttpError>> {
        let Some(http) = self.http.clone() else {
            let e = HttpError::OriginNotAllowed("this plugin has no HTTP grant".into());
            self.events.push(SandboxEvent::HttpRefused(e.clone()));
            return Ok(to_wit_http_result(e));
        };
        let req = OutboundRequest {
            method: match request.method {
                wit_http::Method::Get => Method::Get,
                wit_http::Method::Head => Method::Head,
                wit_http::Method::Post => Method::Post,
                wit_http::Method::Put => Method::Put,
                wit_http::Method::Patch => Method::Patch,
                wit_http::Method::Delete => Method::Delete,
            },
            url: request.url,
            headers: request.headers,
            basic_auth: request.basic_auth,
            body: request.body,
            timeout_ms: request.timeout_ms,
        };
        match http.send(req, self.deadline).await {
            Ok(r) => Ok(Ok(wit_http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })),
            Err(e) => {
                let e = e.redacted(http.secrets());
                tracing::warn!(error = %e, "plugin HTTP request refused or failed");
                self.events.push(SandboxEvent::HttpRefused(e.clone()));
                Ok(to_wit_http_result(e))
            }
        }
    }
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
    })
}

impl wit_secrets::Host for PluginState {
    async fn is_set(&mut self, name: String) -> wasmtime::Result<bool> {
        Ok(self
            .http
            .as_ref()
            .is_some_and(|h| h.secrets().is_set(&name)))
    }
}

impl PluginState {
    fn kv_result<T>(&mut self, r: Result<T, KvError>) -> Result<T, wit_kv::KvError> {
        r.map_err(|e| {
            self.events.push(SandboxEvent::KvRefused(e.clone()));
            match e {
                KvError::QuotaExceeded { quota } => wit_kv::KvError::QuotaExceeded(quota),
                KvError::InvalidKey(m) => wit_kv::KvError::InvalidKey(m),
                KvError::Storage(m) => wit_kv::KvError::Storage(m),
            }
        })
    }

    fn kv_denied<T>(&mut self) -> Result<T, wit_kv::KvError> {
        self.events.push(SandboxEvent::KvNotGranted);
        Err(wit_kv::KvError::QuotaExceeded(0))
    }
}

impl wit_kv::Host for PluginState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit_kv::KvError>> {
        let Some(ns) = self.kv.clone() else {
            return Ok(self.kv_denied());
        };
        Ok(self.kv_result(ns.get(&key)))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit_kv::KvError>> {
        let Some(ns) = self.kv.clone() else {
            return Ok(self.kv_denied());
        };
        // Stored in the host's database: no secret value goes there.
        Ok(self.kv_result(ns.set(&key, &redact::scrub_bytes(&value))))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), wit_kv::KvError>> {
        let Some(ns) = self.kv.clone() else {
            return Ok(self.kv_denied());
        };
        Ok(self.kv_result(ns.delete(&key)))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, wit_kv::KvError>> {
        let Some(ns) = self.kv.clone() else {
            return Ok(self.kv_denied());
        };
        Ok(self.kv_result(ns.list_keys(&prefix)))
    }
}

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
}

//! The generated `Host` traits of `nexo:connector@1.1.0`: the adapters every
//! version shares ([`crate::bindings::host_adapters`]), with 1.1's own
//! words for the host's refusals — a used-up request budget is
//! `budget-exhausted`, a credential that needs authorizing is
//! `needs-authorization`, storage not granted is `not-granted` — instead of
//! the made-up system answers 1.0 needs.

use super::{wit_http, wit_kv, wit_log, wit_secrets, wit_types};
use crate::sandbox::http::HttpError;
use crate::sandbox::kv::KvError;
use crate::state::{PluginState, SandboxEvent};

crate::bindings::host_adapters!(wit_types, wit_log, wit_http, wit_secrets, wit_kv);

/// A response body as 1.1 carries it: the text when the bytes are UTF-8
/// (checking costs the host microseconds; an interpreted guest decoding
/// byte by byte, milliseconds a page), else the bytes.
fn to_wit_body(body: Vec<u8>) -> wit_http::ResponseBody {
    match String::from_utf8(body) {
        Ok(text) => wit_http::ResponseBody::Text(text),
        Err(e) => wit_http::ResponseBody::Bytes(e.into_bytes()),
    }
}

/// What the guest gets for a request that got no response from the system.
fn to_wit_http_result(e: HttpError) -> Result<wit_http::Response, wit_http::HttpError> {
    use wit_http::HttpError as W;
    Err(match e {
        HttpError::OriginNotAllowed(m) => W::OriginNotAllowed(m),
        HttpError::AddressNotAllowed(m) => W::AddressNotAllowed(m),
        HttpError::RedirectNotAllowed(m) => W::RedirectNotAllowed(m),
        HttpError::SecretNotAllowed(m) => W::SecretNotAllowed(m),
        HttpError::InvalidRequest(m) => W::InvalidRequest(m),
        HttpError::ResponseTooLarge(n) => W::ResponseTooLarge(n),
        HttpError::Timeout => W::Timeout,
        HttpError::ConnectionFailed(m) => W::ConnectionFailed(m),
        HttpError::RateLimited(b) => W::BudgetExhausted(
            u64::try_from(b.retry_after.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        e @ HttpError::NeedsAuthorization { .. } => W::NeedsAuthorization(e.to_string()),
    })
}

fn to_wit_kv_error(e: KvError) -> wit_kv::KvError {
    match e {
        KvError::QuotaExceeded { quota } => wit_kv::KvError::QuotaExceeded(quota),
        KvError::InvalidKey(m) => wit_kv::KvError::InvalidKey(m),
        KvError::Storage(m) => wit_kv::KvError::Storage(m),
    }
}

/// Storage not granted: its own case since 1.1.
const KV_NOT_GRANTED: wit_kv::KvError = wit_kv::KvError::NotGranted;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::sandbox::budget::BudgetExhausted;

    #[test]
    fn a_utf8_body_is_text_and_any_other_the_bytes_as_received() {
        match to_wit_body("{\"name\":\"Zoë\"}".as_bytes().to_vec()) {
            wit_http::ResponseBody::Text(t) => assert_eq!(t, "{\"name\":\"Zoë\"}"),
            other => panic!("{other:?}"),
        }
        let latin1 = vec![b'Z', b'o', 0xeb];
        match to_wit_body(latin1.clone()) {
            wit_http::ResponseBody::Bytes(b) => assert_eq!(b, latin1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            to_wit_body(Vec::new()),
            wit_http::ResponseBody::Text(t) if t.is_empty()
        ));
    }

    #[test]
    fn the_hosts_own_refusals_are_their_own_cases_not_made_up_answers() {
        let budget = to_wit_http_result(HttpError::RateLimited(BudgetExhausted {
            connection: "crm".into(),
            per_minute: 6,
            retry_after: Duration::from_millis(1500),
        }));
        assert!(matches!(
            budget,
            Err(wit_http::HttpError::BudgetExhausted(1500))
        ));
        let auth = to_wit_http_result(HttpError::NeedsAuthorization {
            secret: "access_token".into(),
            why: "run `nexo connection authorize books`".into(),
        });
        let Err(wit_http::HttpError::NeedsAuthorization(m)) = auth else {
            panic!("{auth:?}")
        };
        assert!(
            m.contains("`access_token`") && m.contains("authorize books"),
            "{m}"
        );
        assert!(matches!(KV_NOT_GRANTED, wit_kv::KvError::NotGranted));
    }
}

//! The outbound HTTP capability without Wasm in between: secret
//! substitution for basic auth, credentials dropped on cross-origin
//! redirects, deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use nexo::sandbox::http::{HttpError, HttpSettings, Method, OutboundHttp, OutboundRequest};
use nexo::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy};
use nexo::sandbox::secrets::{BoundSecret, SecretSet, SecretValue};
use nexo_tests::tinycrm;

fn client(granted: &[&str], secrets: &[(&str, &str, &[&str])]) -> OutboundHttp {
    let policy = OutboundPolicy::new(
        vec![OriginPattern::parse("http://*:*").unwrap()],
        granted
            .iter()
            .map(|o| HttpGrant::private(o).unwrap())
            .collect(),
    );
    let mut set = SecretSet::default();
    for (name, value, origins) in secrets {
        set.insert(
            *name,
            BoundSecret {
                value: SecretValue::new(*value),
                origins: origins
                    .iter()
                    .map(|o| OriginPattern::parse(o).unwrap())
                    .collect(),
            },
        );
    }
    OutboundHttp::new(policy, set, HttpSettings::default()).unwrap()
}

fn get(url: String) -> OutboundRequest {
    OutboundRequest {
        method: Method::Get,
        url,
        headers: vec![],
        basic_auth: None,
        body: None,
        timeout_ms: None,
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn basic_auth_parts_are_substituted_and_encoded_by_the_host() {
    let crm = tinycrm::start(tinycrm::seed(1), "unused").await;
    let http = client(
        &[&crm.url()],
        &[
            ("user", "alice", &[&crm.url()]),
            ("pass", "s3cret:pw", &[&crm.url()]),
        ],
    );
    let mut req = get(format!("{}/api/ping", crm.url()));
    req.basic_auth = Some(("{{secret:user}}".into(), "{{secret:pass}}".into()));
    let resp = http.send(req, deadline()).await.unwrap();
    assert_eq!(
        resp.status, 401,
        "TinyCRM wants a bearer token, but it saw the request"
    );
    let seen = crm.crm.lock().unwrap().auth_headers.clone();
    // base64("alice:s3cret:pw")
    assert_eq!(seen, vec!["Basic YWxpY2U6czNjcmV0OnB3".to_string()]);
}

#[tokio::test]
async fn credentials_are_dropped_on_a_cross_origin_redirect() {
    let a = tinycrm::start(tinycrm::seed(1), "tok").await;
    let b = tinycrm::start(tinycrm::seed(1), "tok").await;
    let http = client(
        &[&a.url(), &b.url()],
        &[("token", "tok", &[&a.url(), &b.url()])],
    );
    let mut req = get(format!("{}/redirect?to={}/api/ping", a.url(), b.url()));
    req.headers
        .push(("authorization".into(), "Bearer {{secret:token}}".into()));
    let resp = http.send(req, deadline()).await.unwrap();
    assert_eq!(resp.status, 401, "the second origin got no credentials");
    assert_eq!(b.crm.lock().unwrap().auth_headers, vec![String::new()]);

    // Same-origin redirects keep them.
    let mut req = get(format!("{}/redirect?to=/api/ping", a.url()));
    req.headers
        .push(("authorization".into(), "Bearer {{secret:token}}".into()));
    assert_eq!(http.send(req, deadline()).await.unwrap().status, 200);
}

#[tokio::test]
async fn an_expired_deadline_is_a_timeout_and_nothing_is_sent() {
    let crm = tinycrm::start(tinycrm::seed(1), "tok").await;
    let http = client(&[&crm.url()], &[]);
    let err = http
        .send(get(format!("{}/api/ping", crm.url())), Instant::now())
        .await
        .unwrap_err();
    assert_eq!(err, HttpError::Timeout);
    assert!(crm.crm.lock().unwrap().requests.is_empty());
}

#[tokio::test]
async fn malformed_requests_are_refused_without_echoing_header_values() {
    let crm = tinycrm::start(tinycrm::seed(1), "tok").await;
    let http = client(
        &[&crm.url()],
        &[("token", "line\nbreak-secret", &[&crm.url()])],
    );
    let mut req = get(format!("{}/api/ping", crm.url()));
    req.headers
        .push(("x-token".into(), "{{secret:token}}".into()));
    let err = http.send(req, deadline()).await.unwrap_err();
    assert!(
        matches!(&err, HttpError::InvalidRequest(m) if m.contains("x-token")),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("break-secret"));
    let err = http
        .send(get("not a url".into()), deadline())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::InvalidRequest(_)));
    let err = http
        .send(get("ftp://example.com/x".into()), deadline())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::InvalidRequest(_)));
}

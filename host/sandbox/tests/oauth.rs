//! The sandboxes' identity servers driven as a host drives the vendors':
//! the authorize, login and consent pages posted with a plain HTTP client
//! (no browser), the token endpoint, then the API with the access token.
//! Each refusal a careless client or an attacker meets is checked for its
//! error and, where it matters, for the redirect that must not happen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, SeedData};
use nexo_sandbox::oauth::{
    CLIENT_ID, CLIENT_SECRET, OAuthSettings, USER_EMAIL, USER_PASSWORD, XERO_EMPTY_TENANT,
};
use nexo_sandbox::xero::{self, XeroConfig, XeroSandbox};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TENANT: &str = "00000000-0000-4000-8000-00000000a001";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";
const VERIFIER: &str = "a-verifier-of-forty-three-or-more-characters-0123456789";

/// Which identity server, and where its endpoints are.
#[derive(Clone, Copy)]
enum Vendor {
    Xero,
    HubSpot,
}

impl Vendor {
    fn authorize(self) -> &'static str {
        match self {
            Vendor::Xero => "/identity/connect/authorize",
            Vendor::HubSpot => "/oauth/authorize",
        }
    }
    fn login(self) -> &'static str {
        match self {
            Vendor::Xero => "/identity/login",
            Vendor::HubSpot => "/oauth/login",
        }
    }
    fn consent(self) -> &'static str {
        match self {
            Vendor::Xero => "/identity/consent",
            Vendor::HubSpot => "/oauth/consent",
        }
    }
    fn token(self) -> &'static str {
        match self {
            Vendor::Xero => "/connect/token",
            Vendor::HubSpot => "/oauth/v1/token",
        }
    }
    fn scope(self) -> &'static str {
        match self {
            Vendor::Xero => "openid offline_access accounting.contacts accounting.transactions",
            Vendor::HubSpot => "oauth crm.objects.contacts.read crm.objects.contacts.write",
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The value of the hidden `request` input of a page.
fn request_of(html: &str) -> String {
    let start = html
        .find("name=\"request\" value=\"")
        .unwrap_or_else(|| panic!("no request field in {html}"))
        + "name=\"request\" value=\"".len();
    html[start..].split('"').next().unwrap().to_string()
}

fn query_of(location: &str) -> Vec<(String, String)> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn param(query: &[(String, String)], name: &str) -> Option<String> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The authorize URL a host would open.
fn authorize_url(base: &str, vendor: Vendor, redirect: &str, pkce: Option<&str>) -> String {
    let mut url = url::Url::parse(&format!("{base}{}", vendor.authorize())).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", vendor.scope())
            .append_pair("state", "st-42");
        if let Some(verifier) = pkce {
            q.append_pair("code_challenge", &challenge(verifier))
                .append_pair("code_challenge_method", "S256");
        }
    }
    url.to_string()
}

/// Authorize, log in, consent (to `tenants`, Xero): the redirect's query.
async fn consent(
    base: &str,
    vendor: Vendor,
    pkce: Option<&str>,
    tenants: &[&str],
    decision: &str,
) -> Vec<(String, String)> {
    let http = http();
    let page = http
        .get(authorize_url(base, vendor, REDIRECT, pkce))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"{}\"", vendor.login())),
        "{html}"
    );
    assert!(
        html.contains("<input name=\"email\" id=\"email\""),
        "{html}"
    );
    assert!(
        html.contains("<button id=\"login\" type=\"submit\">"),
        "{html}"
    );
    let request = request_of(&html);

    let consent_page = http
        .post(format!("{base}{}", vendor.login()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("request", &request),
            ("email", USER_EMAIL),
            ("password", USER_PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(consent_page.status(), StatusCode::OK);
    let html = consent_page.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"{}\"", vendor.consent())),
        "{html}"
    );
    assert!(html.contains("<button id=\"allow\" name=\"decision\" value=\"allow\""));
    assert!(html.contains(CLIENT_ID));
    if let Vendor::Xero = vendor {
        for t in [TENANT, XERO_EMPTY_TENANT] {
            assert!(
                html.contains(&format!(
                    "<input type=\"checkbox\" name=\"tenant\" value=\"{t}\" checked>"
                )),
                "{html}"
            );
        }
    }
    let mut fields = vec![("request", request.as_str()), ("decision", decision)];
    fields.extend(tenants.iter().map(|t| ("tenant", *t)));
    let back = http
        .post(format!("{base}{}", vendor.consent()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::FOUND);
    let location = back.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(REDIRECT), "{location}");
    query_of(&location)
}

/// A code for the default user, consenting to `tenants` (Xero).
async fn code(base: &str, vendor: Vendor, pkce: Option<&str>, tenants: &[&str]) -> String {
    let query = consent(base, vendor, pkce, tenants, "allow").await;
    assert_eq!(param(&query, "state").as_deref(), Some("st-42"));
    param(&query, "code").expect("a code in the redirect")
}

/// A token request authenticated as each vendor expects (Xero: Basic;
/// HubSpot: in the body), with `secret` as the client secret.
async fn token_with(
    base: &str,
    vendor: Vendor,
    secret: &str,
    pairs: &[(&str, &str)],
) -> (StatusCode, Value) {
    let http = http();
    let request = match vendor {
        Vendor::Xero => http
            .post(format!("{base}{}", vendor.token()))
            .basic_auth(CLIENT_ID, Some(secret))
            .body(form(pairs)),
        Vendor::HubSpot => {
            let mut all = pairs.to_vec();
            all.extend([("client_id", CLIENT_ID), ("client_secret", secret)]);
            http.post(format!("{base}{}", vendor.token()))
                .body(form(&all))
        }
    };
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn token(base: &str, vendor: Vendor, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    token_with(base, vendor, CLIENT_SECRET, pairs).await
}

async fn exchange(base: &str, vendor: Vendor, code: &str, verifier: &str) -> (StatusCode, Value) {
    token(
        base,
        vendor,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(base: &str, vendor: Vendor, refresh_token: &str) -> (StatusCode, Value) {
    token(
        base,
        vendor,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Xero's contacts with `access` for `tenant`: the status.
async fn xero_api(base: &str, access: &str, tenant: &str) -> StatusCode {
    http()
        .get(format!("{base}/api.xro/2.0/Contacts"))
        .bearer_auth(access)
        .header("xero-tenant-id", tenant)
        .send()
        .await
        .unwrap()
        .status()
}

async fn hubspot_api(base: &str, access: &str) -> StatusCode {
    http()
        .get(format!("{base}/crm/v3/objects/contacts"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

async fn xero_sandbox() -> XeroSandbox {
    xero::start(XeroConfig {
        seed: 3,
        rate_limit: None,
        ..XeroConfig::default()
    })
    .await
    .unwrap()
}

async fn hubspot_sandbox(settings: OAuthSettings) -> HubSpotSandbox {
    hubspot::start(HubSpotConfig {
        seed: SeedData::of_size(4, 1),
        oauth: settings,
        ..HubSpotConfig::default()
    })
    .await
    .unwrap()
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

#[tokio::test]
async fn xero_code_flow_with_pkce_gives_tokens_that_reach_the_chosen_organisations() {
    let books = xero_sandbox().await;
    let base = books.url();
    let code = code(
        &base,
        Vendor::Xero,
        Some(VERIFIER),
        &[TENANT, XERO_EMPTY_TENANT],
    )
    .await;
    let (status, tokens) = exchange(&base, Vendor::Xero, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 1800);
    assert_eq!(tokens["scope"], Vendor::Xero.scope());
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let access = s(&tokens, "access_token");

    assert_eq!(xero_api(&base, access, TENANT).await, StatusCode::OK);
    // The empty organisation was chosen but holds nothing here: 403, as a
    // wrong tenant.
    assert_eq!(
        xero_api(&base, access, XERO_EMPTY_TENANT).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        xero_api(&base, "not-a-token", TENANT).await,
        StatusCode::UNAUTHORIZED
    );

    let connections: Value = http()
        .get(format!("{base}/connections"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = connections.as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|c| s(c, "tenantId")).collect();
    assert_eq!(ids, [TENANT, XERO_EMPTY_TENANT]);
    assert_eq!(list[0]["tenantType"], "ORGANISATION");
    assert_eq!(
        list[0]["tenantName"],
        nexo_sandbox::oauth::XERO_ORGANISATION
    );
    assert_eq!(list[0]["authEventId"], list[1]["authEventId"]);
    assert_ne!(list[0]["id"], list[1]["id"]);
    assert!(s(&list[0], "createdDateUtc").starts_with("20"));

    let stats = books.oauth().stats();
    assert_eq!(stats.codes_issued, 1);
    assert_eq!(stats.code_exchanges, 1);
    assert_eq!(stats.access_tokens_issued, 1);
    assert_eq!(stats.unknown_rejections, 1);
    // The static token still works beside OAuth.
    assert_eq!(
        xero_api(&base, &XeroConfig::default().token, TENANT).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn xero_connections_list_only_the_organisation_chosen_at_consent() {
    let books = xero_sandbox().await;
    let base = books.url();
    let code = code(&base, Vendor::Xero, Some(VERIFIER), &[XERO_EMPTY_TENANT]).await;
    let (_, tokens) = exchange(&base, Vendor::Xero, &code, VERIFIER).await;
    let access = s(&tokens, "access_token");
    let connections: Value = http()
        .get(format!("{base}/connections"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = connections
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(c, "tenantId"))
        .collect();
    assert_eq!(ids, [XERO_EMPTY_TENANT]);
    // Not chosen: the sandbox's own organisation is out of reach.
    assert_eq!(xero_api(&base, access, TENANT).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn hubspot_code_flow_with_pkce_gives_a_token_for_the_api_and_its_information() {
    let hub = hubspot_sandbox(OAuthSettings::hubspot()).await;
    let base = hub.url();
    let code = code(&base, Vendor::HubSpot, Some(VERIFIER), &[]).await;
    let (status, tokens) = exchange(&base, Vendor::HubSpot, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 1800);
    let access = s(&tokens, "access_token");
    assert_eq!(hubspot_api(&base, access).await, StatusCode::OK);
    assert_eq!(
        hubspot_api(&base, "not-a-token").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hubspot_api(&base, "pat-na1-sandbox").await, StatusCode::OK);

    let info: Value = http()
        .get(format!("{base}/oauth/v1/access-tokens/{access}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["token"], access);
    assert_eq!(info["user"], USER_EMAIL);
    assert_eq!(info["token_type"], "access");
    assert_eq!(info["hub_id"], 24_310_001);
    assert_eq!(info["app_id"], hub.app_id());
    assert_eq!(
        info["scopes"],
        serde_json::json!([
            "oauth",
            "crm.objects.contacts.read",
            "crm.objects.contacts.write"
        ])
    );
    assert!(info["expires_in"].as_u64().unwrap() <= 1800);
    let stats = hub.oauth().stats();
    assert_eq!((stats.codes_issued, stats.code_exchanges), (1, 1));
}

#[tokio::test]
async fn a_wrong_code_verifier_is_refused() {
    let books = xero_sandbox().await;
    let hub = hubspot_sandbox(OAuthSettings::hubspot()).await;
    for (base, vendor) in [(books.url(), Vendor::Xero), (hub.url(), Vendor::HubSpot)] {
        let code = code(&base, vendor, Some(VERIFIER), &[TENANT]).await;
        let wrong = "another-verifier-of-forty-three-or-more-characters-0";
        let (status, err) = exchange(&base, vendor, &code, wrong).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "invalid_grant", "{err}");
        assert!(s(&err, "error_description").contains("code_verifier"));
        // Without any verifier, too.
        let (status, err) = token(
            &base,
            vendor,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
        assert_eq!(
            (status, &err["error"]),
            (StatusCode::BAD_REQUEST, &"invalid_grant".into())
        );
    }
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_gave() {
    let books = xero_sandbox().await;
    let base = books.url();
    let code = code(&base, Vendor::Xero, Some(VERIFIER), &[TENANT]).await;
    let (status, first) = exchange(&base, Vendor::Xero, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK);
    let access = s(&first, "access_token");
    assert_eq!(xero_api(&base, access, TENANT).await, StatusCode::OK);
    let (status, err) = exchange(&base, Vendor::Xero, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    // RFC 6749 §4.1.2: what the code gave is revoked.
    assert_eq!(
        xero_api(&base, access, TENANT).await,
        StatusCode::UNAUTHORIZED
    );
    let (_, err) = refresh(&base, Vendor::Xero, s(&first, "refresh_token")).await;
    assert_eq!(err["error"], "invalid_grant");
    assert_eq!(books.oauth().stats().code_exchanges, 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_as_invalid_client() {
    let books = xero_sandbox().await;
    let hub = hubspot_sandbox(OAuthSettings::hubspot()).await;
    for (base, vendor) in [(books.url(), Vendor::Xero), (hub.url(), Vendor::HubSpot)] {
        let code = code(&base, vendor, Some(VERIFIER), &[TENANT]).await;
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let (status, err) = token_with(&base, vendor, "not-the-secret", &pairs).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(err["error"], "invalid_client", "{err}");
        assert!(!err.to_string().contains("not-the-secret"));
        // The code is still good for the real client.
        let (status, _) = token(&base, vendor, &pairs).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Xero also takes client_secret_post.
    let base = books.url();
    let code = code(&base, Vendor::Xero, None, &[TENANT]).await;
    let response = http()
        .post(format!("{base}/connect/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unregistered_redirect_uri_or_client_gets_an_error_page_and_no_redirect() {
    let books = xero_sandbox().await;
    let hub = hubspot_sandbox(OAuthSettings {
        redirect_uris: vec!["http://127.0.0.1:53682/callback".into()],
        ..OAuthSettings::hubspot()
    })
    .await;
    let cases = [
        (books.url(), Vendor::Xero, "https://attacker.example/cb"),
        (books.url(), Vendor::Xero, "http://192.168.1.9:8080/cb"),
        (
            hub.url(),
            Vendor::HubSpot,
            "http://127.0.0.1:53683/callback",
        ),
    ];
    for (base, vendor, redirect) in cases {
        let response = http()
            .get(authorize_url(&base, vendor, redirect, Some(VERIFIER)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{redirect}");
        assert!(response.headers().get("location").is_none());
        let html = response.text().await.unwrap();
        assert!(html.contains("<p id=\"error\">"), "{html}");
        assert!(html.contains("is not registered"), "{html}");
    }
    let unknown_client = authorize_url(&books.url(), Vendor::Xero, REDIRECT, None)
        .replace(CLIENT_ID, "someone-else");
    let response = http().get(unknown_client).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
    // At the token endpoint, a redirect URI other than the authorized one.
    let base = books.url();
    let code = code(&base, Vendor::Xero, Some(VERIFIER), &[TENANT]).await;
    let (status, err) = token(
        &base,
        Vendor::Xero,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:1/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(
        (status, &err["error"]),
        (StatusCode::BAD_REQUEST, &"invalid_grant".into())
    );
}

#[tokio::test]
async fn a_wrong_password_shows_the_login_page_again_and_deny_sends_access_denied() {
    let books = xero_sandbox().await;
    let base = books.url();
    let http = http();
    let html = http
        .get(authorize_url(&base, Vendor::Xero, REDIRECT, None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let request = request_of(&html);
    let again = http
        .post(format!("{base}/identity/login"))
        .body(form(&[
            ("request", &request),
            ("email", USER_EMAIL),
            ("password", "guess"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let html = again.text().await.unwrap();
    assert!(html.contains("<p id=\"error\">"), "{html}");
    assert!(html.contains("id=\"password\""));
    // Consent without a login is refused.
    let skipped = http
        .post(format!("{base}/identity/consent"))
        .body(form(&[
            ("request", &request),
            ("decision", "allow"),
            ("tenant", TENANT),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), StatusCode::BAD_REQUEST);
    assert!(skipped.headers().get("location").is_none());

    let query = consent(&base, Vendor::Xero, None, &[TENANT], "deny").await;
    assert_eq!(param(&query, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&query, "state").as_deref(), Some("st-42"));
    assert_eq!(param(&query, "code"), None);
    assert_eq!(books.oauth().stats().codes_issued, 0);
}

#[tokio::test]
async fn xero_rotates_refresh_tokens_and_counts_a_reuse() {
    let books = xero_sandbox().await;
    let base = books.url();
    let code = code(&base, Vendor::Xero, Some(VERIFIER), &[TENANT]).await;
    let (_, first) = exchange(&base, Vendor::Xero, &code, VERIFIER).await;
    let old = s(&first, "refresh_token");

    let (status, second) = refresh(&base, Vendor::Xero, old).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new = s(&second, "refresh_token");
    assert_ne!(new, old);
    assert_eq!(
        xero_api(&base, s(&second, "access_token"), TENANT).await,
        StatusCode::OK
    );

    let (status, err) = refresh(&base, Vendor::Xero, old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    let stats = books.oauth().stats();
    assert_eq!((stats.refreshes, stats.refresh_reuses), (1, 1));

    let (status, third) = refresh(&base, Vendor::Xero, new).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let stats = books.oauth().stats();
    assert_eq!((stats.refreshes, stats.refresh_reuses), (2, 1));
    assert_eq!(stats.access_tokens_issued, 3);
}

#[tokio::test]
async fn hubspot_refresh_keeps_the_same_refresh_token() {
    let hub = hubspot_sandbox(OAuthSettings::hubspot()).await;
    let base = hub.url();
    let code = code(&base, Vendor::HubSpot, None, &[]).await;
    let (_, first) = exchange(&base, Vendor::HubSpot, &code, "").await;
    let token = s(&first, "refresh_token");
    for _ in 0..2 {
        let (status, next) = refresh(&base, Vendor::HubSpot, token).await;
        assert_eq!(status, StatusCode::OK, "{next}");
        assert_eq!(next["refresh_token"], token);
        assert_eq!(
            hubspot_api(&base, s(&next, "access_token")).await,
            StatusCode::OK
        );
    }
    let stats = hub.oauth().stats();
    assert_eq!((stats.refreshes, stats.refresh_reuses), (2, 0));
}

#[tokio::test]
async fn an_expired_access_token_is_refused_and_counted() {
    let books = xero_sandbox().await;
    books.oauth().set_access_ttl(Duration::from_secs(1));
    let hub = hubspot_sandbox(OAuthSettings {
        access_ttl: Duration::from_secs(1),
        ..OAuthSettings::hubspot()
    })
    .await;
    let code_x = code(&books.url(), Vendor::Xero, Some(VERIFIER), &[TENANT]).await;
    let (_, x) = exchange(&books.url(), Vendor::Xero, &code_x, VERIFIER).await;
    let code_h = code(&hub.url(), Vendor::HubSpot, Some(VERIFIER), &[]).await;
    let (_, h) = exchange(&hub.url(), Vendor::HubSpot, &code_h, VERIFIER).await;
    assert_eq!(
        (x["expires_in"].as_u64(), h["expires_in"].as_u64()),
        (Some(1), Some(1))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        xero_api(&books.url(), s(&x, "access_token"), TENANT).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        hubspot_api(&hub.url(), s(&h, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(books.oauth().stats().expired_rejections, 1);
    assert_eq!(hub.oauth().stats().expired_rejections, 1);
    assert_eq!(hub.oauth().stats().unknown_rejections, 0);
    // A refresh brings a working token back.
    let (_, fresh) = refresh(&books.url(), Vendor::Xero, s(&x, "refresh_token")).await;
    assert_eq!(
        xero_api(&books.url(), s(&fresh, "access_token"), TENANT).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoked_refresh_tokens_answer_invalid_grant() {
    let books = xero_sandbox().await;
    let hub = hubspot_sandbox(OAuthSettings::hubspot()).await;
    let code_x = code(&books.url(), Vendor::Xero, Some(VERIFIER), &[TENANT]).await;
    let (_, x) = exchange(&books.url(), Vendor::Xero, &code_x, VERIFIER).await;
    let code_h = code(&hub.url(), Vendor::HubSpot, Some(VERIFIER), &[]).await;
    let (_, h) = exchange(&hub.url(), Vendor::HubSpot, &code_h, VERIFIER).await;

    assert_eq!(books.oauth().revoke_refresh_tokens(), 1);
    // Over HTTP, as a CLI-driven test would.
    let revoked: Value = http()
        .post(format!("{}/_sandbox/oauth/revoke", hub.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["revoked"], 1);

    let (status, err) = refresh(&books.url(), Vendor::Xero, s(&x, "refresh_token")).await;
    assert_eq!(
        (status, &err["error"]),
        (StatusCode::BAD_REQUEST, &"invalid_grant".into())
    );
    let (status, err) = refresh(&hub.url(), Vendor::HubSpot, s(&h, "refresh_token")).await;
    assert_eq!(
        (status, &err["error"]),
        (StatusCode::BAD_REQUEST, &"invalid_grant".into())
    );
    // A revocation is not a reuse.
    assert_eq!(books.oauth().stats().refresh_reuses, 0);
    let stats: Value = http()
        .get(format!("{}/_sandbox/oauth/stats", hub.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["code_exchanges"], 1);
    assert_eq!(stats["refreshes"], 0);
}

#[tokio::test]
async fn xero_client_credentials_reach_the_configured_organisation_without_a_refresh_token() {
    let books = xero_sandbox().await;
    let base = books.url();
    let (status, tokens) = token(
        &base,
        Vendor::Xero,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "accounting.contacts"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    let access = s(&tokens, "access_token");
    assert_eq!(xero_api(&base, access, TENANT).await, StatusCode::OK);
    let connections: Value = http()
        .get(format!("{base}/connections"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(connections.as_array().unwrap().len(), 1);
    assert_eq!(connections[0]["tenantId"], TENANT);

    let hub = hubspot_sandbox(OAuthSettings::hubspot()).await;
    let (status, err) = token(
        &hub.url(),
        Vendor::HubSpot,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "unsupported_grant_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_prints_the_oauth_clients_and_applies_the_token_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexo-sandbox"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "start",
            "--hubspot-port",
            "0",
            "--xero-port",
            "0",
            "--size",
            "2",
            "--token-ttl",
            "7",
        ])
        .env("NEXO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line);
    }
    for line in &lines[2..4] {
        for printed in [
            CLIENT_ID,
            CLIENT_SECRET,
            USER_EMAIL,
            USER_PASSWORD,
            "live 7 s",
        ] {
            assert!(line.contains(printed), "{printed} not in {line:?}");
        }
    }
    let books = lines[1]
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .to_string();
    assert!(
        lines[3].contains(&format!("{books}/connect/token")),
        "{}",
        lines[3]
    );
    let (status, tokens) = token(
        &books,
        Vendor::Xero,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["expires_in"], 7);
    let stats: Value = http()
        .get(format!("{books}/_sandbox/oauth/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["access_tokens_issued"], 1);
    let status = nexo_tests::cli::terminate(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

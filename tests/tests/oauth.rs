//! OAuth 2.0 run by the host against the Xero-like sandbox's identity
//! server: an admin authorizes a connection (sign-in, consent, tenant
//! choice); pipelines then run on tokens that expire every second — two at
//! once on the one connection — with no failed request reaching a run,
//! every rotating refresh token spent exactly once, and the same records
//! as with a static token; a refresh token revoked mid-run fails the run
//! as `auth`, pauses the pipelines as needing re-authorization, keeps what
//! was committed, and a new authorization resumes them where they stopped.
//! No token or client secret is ever in the data directory in plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nexo::connections::NewConnection;
use nexo::registry::oauth::OAuthClient;
use nexo::sandbox::secrets::SecretValue;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::sync::RunOptions;
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, ObjectType, SeedData};
use nexo_sandbox::oauth::{CLIENT_ID, CLIENT_SECRET, OAuthSettings, XERO_EMPTY_TENANT};
use nexo_sandbox::xero::{self, Collection, XeroConfig, XeroSandbox};
use nexo_tests::tryton::{Host, deals_pipeline, won_deals};
use serde_json::json;

const HUBSPOT_TOKEN: &str = "pat-na1-oauth-tests";
const STATIC_TOKEN: &str = "xero-static-token-for-comparison";
const TENANT: &str = "7a0c1f2e-0000-4000-8000-0000000000cc";

async fn books(access_ttl: Duration) -> XeroSandbox {
    xero::start(XeroConfig {
        token: STATIC_TOKEN.into(),
        tenant_id: TENANT.into(),
        rate_limit: None,
        oauth: OAuthSettings {
            access_ttl,
            ..OAuthSettings::xero()
        },
        ..XeroConfig::default()
    })
    .await
    .unwrap()
}

async fn crm(deals: u64) -> (HubSpotSandbox, Vec<u64>) {
    let hub = hubspot::start(HubSpotConfig {
        token: HUBSPOT_TOKEN.into(),
        seed: SeedData::of_size(6, 0),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let won = won_deals(&hub, deals);
    (hub, won)
}

/// How many of the CRM's deals are won (each becomes one invoice).
fn won_in(hub: &HubSpotSandbox) -> usize {
    hub.objects(ObjectType::Deals)
        .iter()
        .filter(|d| d.property("dealstage").as_deref() == Some("closedwon"))
        .count()
}

/// The grants of a sandbox connection reaching `url` in place of the
/// vendor's origins.
fn sandbox_grants(origins: &[&str], url: &str, per_minute: Option<u32>) -> ConnectionGrants {
    ConnectionGrants {
        requests_per_minute: per_minute,
        origin_overrides: origins
            .iter()
            .map(|o| (o.to_string(), url.to_string()))
            .collect(),
        ..ConnectionGrants::default()
    }
}

/// The `xero` OAuth connection (no token given: it comes from authorizing).
fn connect_books(host: &Host, name: &str, books: &XeroSandbox, per_minute: Option<u32>) {
    host.connections
        .add(NewConnection {
            name: name.into(),
            plugin_id: "nexo/xero".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"timeout_ms": 5000}),
            secrets: BTreeMap::new(),
            grants: sandbox_grants(
                &[
                    "https://api.xero.com",
                    "https://login.xero.com",
                    "https://identity.xero.com",
                ],
                &books.url(),
                per_minute,
            ),
        })
        .unwrap();
}

fn connect_crm(host: &Host, hub: &HubSpotSandbox) {
    host.connections
        .add(NewConnection {
            name: "hubspot".into(),
            plugin_id: "nexo/hubspot".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"page_size": 5}),
            secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(HUBSPOT_TOKEN))]),
            grants: sandbox_grants(&["https://api.hubapi.com"], &hub.url(), Some(0)),
        })
        .unwrap();
}

/// The OAuth client the sandboxes know.
fn sandbox_client() -> OAuthClient {
    OAuthClient {
        id: CLIENT_ID.into(),
        secret: Some(SecretValue::new(CLIENT_SECRET)),
    }
}

/// An admin authorizes `name`: sign in, consent for both organisations,
/// the redirect, then the organisation with the books.
async fn authorize(host: &Host, name: &str) -> Vec<String> {
    let pending = host
        .connections
        .begin_authorization(name, sandbox_client(), "http://127.0.0.1:7459/callback")
        .unwrap();
    assert!(
        pending.url.starts_with("http://127.0.0.1:"),
        "the override sends the browser to the sandbox: {}",
        pending.url
    );
    let back = nexo_tests::oauth::consent(&pending.url, None).await;
    let auth = host
        .connections
        .finish_authorization(pending, &back)
        .await
        .unwrap();
    let ids: Vec<&str> = auth.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [TENANT, XERO_EMPTY_TENANT],
        "both organisations listed"
    );
    let saved = host
        .connections
        .save_authorization(auth, Some(TENANT))
        .unwrap();
    assert_eq!(saved.tenant.unwrap().id, TENANT);
    saved.resumed
}

fn pipelines(host_books: &str, suffix: &str) -> [String; 3] {
    [
        deals_pipeline(
            &format!("customers{suffix}"),
            "customer",
            "emit = \"customer\"",
            host_books,
            "contacts",
            "[commit]\nrecords = 1",
        ),
        deals_pipeline(
            &format!("invoices{suffix}"),
            "invoice",
            "emit = \"invoice\", status = \"authorised\", default_tax_rate = \"20\", account_code = \"200\"",
            host_books,
            "invoices",
            "[commit]\nrecords = 1",
        ),
        format!(
            "name = \"payments{suffix}\"\nentity = \"invoice\"\nupdate_only = true\ntrack_destination = false\n\
             [source]\nconnection = \"{host_books}\"\nstream = \"invoices\"\n\
             [[mappers]]\nplugin = \"nexo/field-mapper\"\n\
             [mappers.config]\nrename = {{ number = \"nexo_invoice_number\", status = \"nexo_invoice_status\" }}\n\
             keep = [\"nexo_invoice_number\", \"nexo_invoice_status\"]\nstream = \"deals\"\n\
             [destination]\nconnection = \"hubspot\"\nstream = \"deals\"\n\
             [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n"
        ),
    ]
}

/// Every file under `dir`, as bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn assert_nowhere(dir: &Path, values: &[(&str, &str)]) {
    for (file, bytes) in files(dir) {
        for (what, value) in values {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "the {what} is in {file} in plaintext"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_every_second_refresh_under_two_pipelines_at_once_and_match_a_static_token()
{
    let (hub, _) = crm(4).await;
    let books = books(Duration::from_secs(1)).await;
    let reference = xero::start(XeroConfig {
        token: STATIC_TOKEN.into(),
        tenant_id: TENANT.into(),
        rate_limit: None,
        ..XeroConfig::default()
    })
    .await
    .unwrap();
    let host = Host::new().await;
    connect_crm(&host, &hub);
    connect_books(&host, "books", &books, Some(0));
    // The comparison: the same pipelines into another Xero with a static token.
    host.connections
        .add(NewConnection {
            name: "reference".into(),
            plugin_id: "nexo/xero".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"tenant_id": TENANT, "timeout_ms": 5000}),
            secrets: BTreeMap::from([("access_token".to_string(), SecretValue::new(STATIC_TOKEN))]),
            grants: sandbox_grants(&["https://api.xero.com"], &reference.url(), Some(0)),
        })
        .unwrap();

    // Before authorizing, the plugin's requests get a 401 that says how.
    for p in pipelines("books", "") {
        host.apply(&p).await;
    }
    let refused = host
        .engine
        .run("customers", RunOptions::default())
        .await
        .expect_err("nothing works before the connection is authorized");
    assert!(
        refused.to_string().contains("nexo connection authorize"),
        "{refused}"
    );
    assert_eq!(books.records(Collection::Contacts).len(), 0);

    assert!(authorize(&host, "books").await.is_empty());
    host.run("customers").await;
    host.run("invoices").await;

    // Rounds of new deals, each synced by two pipelines on the one
    // connection at once, until tokens were refreshed ten times over.
    let oauth = books.oauth();
    let mut rounds = 0;
    while oauth.stats().refreshes < 10 {
        rounds += 1;
        assert!(rounds <= 200, "no refreshes: {:?}", oauth.stats());
        won_deals(&hub, 1);
        let (a, b) = tokio::join!(
            host.engine.run("invoices", RunOptions::default()),
            host.engine.run("payments", RunOptions::default()),
        );
        for report in [a.unwrap(), b.unwrap()] {
            assert!(
                report.error.is_none() && report.counts.failed == 0,
                "a request failed in round {rounds}: {:?} {:?}",
                report.error,
                report.counts
            );
        }
    }
    let stats = oauth.stats();
    eprintln!("{rounds} rounds of two pipelines at once: {stats:?}");
    assert_eq!(
        stats.refresh_reuses, 0,
        "a rotating refresh token was used twice: {stats:?}"
    );

    // The same deals through a static token: the same books.
    for p in pipelines("reference", "-reference") {
        host.apply(&p).await;
    }
    host.run("customers-reference").await;
    host.run("invoices-reference").await;
    let count = |s: &XeroSandbox, c| s.records(c).len();
    assert_eq!(
        count(&books, Collection::Contacts),
        count(&reference, Collection::Contacts)
    );
    assert_eq!(
        count(&books, Collection::Invoices),
        count(&reference, Collection::Invoices)
    );
    assert_eq!(count(&books, Collection::Invoices), won_in(&hub));

    // What the host held: never in plaintext on disk.
    let credential = host.connections.credential("books").unwrap().unwrap();
    let access = credential.current().await.unwrap();
    let sealer =
        nexo::store::sealed::Sealer::from_env_or_file(&host.dir.path().join("secret.key")).unwrap();
    let row = host.db.oauth("books").unwrap().unwrap();
    let refresh = row.refresh_token.unwrap();
    let refresh = sealer
        .open("books/oauth/refresh", &refresh.nonce, &refresh.sealed)
        .unwrap();
    assert_nowhere(
        host.dir.path(),
        &[
            ("access token", access.value.expose()),
            ("refresh token", refresh.expose()),
            ("client secret", CLIENT_SECRET),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_fails_the_run_as_auth_pauses_the_pipelines_and_loses_nothing() {
    let (hub, _) = crm(30).await;
    let won = won_in(&hub);
    let books = books(Duration::from_secs(1)).await;
    let host = Host::new().await;
    connect_crm(&host, &hub);
    connect_books(&host, "books", &books, Some(120));
    for p in pipelines("books", "") {
        host.apply(&p).await;
    }
    assert!(authorize(&host, "books").await.is_empty());
    host.run("customers").await;

    // Revoke every refresh token once the invoices run has committed a
    // few pages; the run goes on until its access token needs a refresh
    // (the connection's budget of 120 requests a minute keeps it going for
    // many token lifetimes).
    let oauth = books.oauth();
    let watch = async {
        // Past the first page of five: at least one page is committed.
        while books.records(Collection::Invoices).len() < 8 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        oauth.revoke_refresh_tokens()
    };
    let (run, revoked) = tokio::join!(host.engine.run("invoices", RunOptions::default()), watch);
    assert!(revoked > 0);
    let error = run.expect_err("the run fails once the refresh token is refused");
    assert_eq!(error.class(), "auth", "{error}");
    let text = error.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("needs re-authorization"), "{text}");
    let committed = books.records(Collection::Invoices).len();
    assert!(
        committed > 0 && committed < won,
        "pages committed before the revocation stay: {committed} of {won}"
    );

    // Every pipeline of the connection is paused, saying why.
    for name in ["customers", "invoices", "payments"] {
        let p = host.engine.store().pipeline(name).unwrap().unwrap();
        assert!(p.paused, "{name} is not paused");
        assert!(
            p.paused_reason
                .as_deref()
                .unwrap_or_default()
                .starts_with("needs re-authorization"),
            "{name}: {:?}",
            p.paused_reason
        );
    }
    let state = host.connections.oauth_status("books").unwrap().unwrap();
    assert_eq!(state.status, "needs-reauthorization");
    assert!(
        state.describe().contains("invalid_grant"),
        "{}",
        state.describe()
    );
    let paused = host.engine.run("invoices", RunOptions::default()).await;
    assert!(paused.is_err(), "a paused pipeline does not run");

    // A new authorization resumes them; the next run goes on from its last
    // committed page and every deal has exactly one invoice.
    let mut resumed = authorize(&host, "books").await;
    resumed.sort();
    assert_eq!(resumed, ["customers", "invoices", "payments"]);
    let again = host.run("invoices").await;
    assert!(
        (again.counts.read as usize) < won,
        "the run resumed after its committed pages instead of starting over: {:?}",
        again.counts
    );
    assert_eq!(
        books.records(Collection::Invoices).len(),
        won,
        "every deal's invoice, none twice"
    );
    assert_eq!(oauth.stats().refresh_reuses, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_refreshing_one_connection_spend_its_refresh_token_once() {
    let books = books(Duration::from_secs(1800)).await;
    let host = Host::new().await;
    connect_books(&host, "books", &books, None);
    authorize(&host, "books").await;
    // A second process on the same database: its own connections, locks
    // and token client; only the database is shared.
    let db = nexo::store::Database::open(&host.dir.path().join("nexo.db")).unwrap();
    let registry = nexo::registry::Registry::new(
        db,
        nexo_tests::runtime().clone(),
        host.dir.path().join("bundles"),
    );
    let other = nexo::connections::Connections::new(
        registry,
        nexo::store::sealed::Sealer::from_env_or_file(&host.dir.path().join("secret.key")).unwrap(),
    );
    let ours = host.connections.credential("books").unwrap().unwrap();
    let theirs = other.credential("books").unwrap().unwrap();
    let token = ours.current().await.unwrap();
    assert_eq!(theirs.current().await.unwrap(), token);
    // Both see the system refuse the same token (a 401 in each process) and
    // refresh at once.
    let refreshes = books.oauth().stats().refreshes;
    let (a, b) = tokio::join!(ours.rejected(token.clone()), theirs.rejected(token.clone()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both end with the one new token");
    assert_eq!(a.generation, token.generation + 1);
    let stats = books.oauth().stats();
    assert_eq!(stats.refreshes, refreshes + 1, "{stats:?}");
    assert_eq!(stats.refresh_reuses, 0, "{stats:?}");
    // And the new token works.
    host.connections.test("books").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_public_app_authorizes_with_its_secret_in_the_body_and_refreshes() {
    let hub = hubspot::start(HubSpotConfig {
        token: HUBSPOT_TOKEN.into(),
        seed: SeedData::of_size(4, 0),
        oauth: OAuthSettings {
            access_ttl: Duration::from_secs(1),
            ..OAuthSettings::hubspot()
        },
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();
    let host = Host::new().await;
    host.connections
        .add(NewConnection {
            name: "crm".into(),
            plugin_id: "nexo/hubspot".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({}),
            secrets: BTreeMap::new(),
            grants: sandbox_grants(
                &["https://api.hubapi.com", "https://app.hubspot.com"],
                &hub.url(),
                None,
            ),
        })
        .unwrap();
    let pending = host
        .connections
        .begin_authorization("crm", sandbox_client(), "http://localhost:7459/callback")
        .unwrap();
    let back = nexo_tests::oauth::consent(&pending.url, None).await;
    let auth = host
        .connections
        .finish_authorization(pending, &back)
        .await
        .unwrap();
    assert!(auth.tenants.is_empty(), "HubSpot has no tenant list");
    let saved = host.connections.save_authorization(auth, None).unwrap();
    assert!(saved.tenant.is_none());
    host.connections.test("crm").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    host.connections.test("crm").await.unwrap();
    let stats = hub.oauth().stats();
    assert!(stats.refreshes >= 1, "{stats:?}");
    assert_eq!(stats.refresh_reuses, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_connection_uses_client_credentials_and_gets_a_new_token_when_it_expires() {
    let books = books(Duration::from_secs(1)).await;
    let host = Host::new().await;
    connect_books(&host, "books", &books, None);
    let auth = host
        .connections
        .authorize_client_credentials("books", sandbox_client())
        .await
        .unwrap();
    let ids: Vec<&str> = auth.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [TENANT],
        "a custom connection reaches its one organisation"
    );
    let saved = host.connections.save_authorization(auth, None).unwrap();
    assert_eq!(saved.tenant.unwrap().id, TENANT, "chosen alone");
    host.connections.test("books").await.unwrap();
    let issued = books.oauth().stats().access_tokens_issued;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    host.connections.test("books").await.unwrap();
    let stats = books.oauth().stats();
    assert!(
        stats.access_tokens_issued > issued,
        "no refresh token: a new client-credentials token instead ({stats:?})"
    );
    // A wrong client secret is refused, naming the error, and saves nothing.
    let err = host
        .connections
        .authorize_client_credentials(
            "books",
            OAuthClient {
                id: CLIENT_ID.into(),
                secret: Some(SecretValue::new("not-the-secret-1234")),
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("not-the-secret-1234"), "{err}");
    assert_eq!(
        host.connections
            .oauth_status("books")
            .unwrap()
            .unwrap()
            .status,
        "authorized"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_connection_is_updated_without_a_static_token_and_a_static_one_can_give_way() {
    let books = books(Duration::from_secs(1800)).await;
    let host = Host::new().await;
    connect_books(&host, "books", &books, None);
    authorize(&host, "books").await;
    // Before: "nexo/xero@0.1.0 needs the secret `access_token`", since the
    // update required every declared secret to be stored.
    let (_, changes) = host
        .connections
        .update(
            "books",
            nexo::connections::ConnectionUpdate {
                config: Some(json!({"tenant_id": TENANT, "timeout_ms": 4000})),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(changes, ["config replaced"]);
    host.connections.test("books").await.unwrap();

    // A connection that started on a static token moves to OAuth: the
    // static token can be removed, and authorizing fills the secret.
    host.connections
        .add(NewConnection {
            name: "books-static".into(),
            plugin_id: "nexo/xero".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: json!({"tenant_id": TENANT}),
            secrets: BTreeMap::from([("access_token".to_string(), SecretValue::new(STATIC_TOKEN))]),
            grants: sandbox_grants(
                &[
                    "https://api.xero.com",
                    "https://login.xero.com",
                    "https://identity.xero.com",
                ],
                &books.url(),
                None,
            ),
        })
        .unwrap();
    host.connections.test("books-static").await.unwrap();
    host.connections
        .update(
            "books-static",
            nexo::connections::ConnectionUpdate {
                remove_secrets: vec!["access_token".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let refused = host.connections.test("books-static").await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("nexo connection authorize books-static"),
        "{refused}"
    );
    authorize(&host, "books-static").await;
    host.connections.test("books-static").await.unwrap();
}

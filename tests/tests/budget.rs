//! A connection's request budget, end to end: two runs reading through two
//! plugin instances of one connection share its budget against a real
//! loopback server, wait for their turn instead of failing, and a turn that
//! would come after the call's deadline reaches the plugin as a 429 the SDK
//! reports as `rate-limited`. The host's own retries take tokens too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use nexo::bundle::keys::SecretKey;
use nexo::bundle::manifest::ManifestSource;
use nexo::bundle::pack;
use nexo::connections::{Connections, DEFAULT_REQUESTS_PER_MINUTE, NewConnection, request_budget};
use nexo::registry::{Registry, grant_all};
use nexo::sandbox::budget::{RequestBudgets, burst_for};
use nexo::sandbox::http::{HttpError, HttpSettings, Method, OutboundHttp, OutboundRequest};
use nexo::sandbox::policy::{HttpGrant, OriginPattern, OutboundPolicy};
use nexo::sandbox::secrets::SecretSet;
use nexo::sandbox::secrets::SecretValue;
use nexo::state::SandboxEvent;
use nexo::store::Database;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::{ConnectorPlugin, GuestError, Limits};
use nexo_tests::{programs, runtime, tinycrm};
use serde_json::{Value, json};

const CRM_CAPS: &str = r#"http_origins = ["https://*:*", "http://*:*"]
secrets = [{ name = "api_token", description = "t", origins = ["https://*:*", "http://*:*"] }]"#;

/// A contacts API that answers `pages` empty pages per reader (the page
/// token counts them) and records when each request arrived.
#[derive(Debug, Clone)]
struct Api {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Api {
    async fn start(pages: u32) -> Api {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/api/contacts", get(contacts))
            .with_state((arrivals.clone(), pages));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Api { addr, arrivals }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Arrival times, sorted.
    fn arrivals(&self) -> Vec<Instant> {
        let mut a = self.arrivals.lock().unwrap().clone();
        a.sort();
        a
    }
}

async fn contacts(
    State((arrivals, pages)): State<(Arc<Mutex<Vec<Instant>>>, u32)>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    arrivals.lock().unwrap().push(Instant::now());
    let page: u32 = q.get("page_token").map_or(0, |t| t.parse().unwrap());
    let next = (page + 1 < pages).then(|| (page + 1).to_string());
    axum::Json(json!({"results": [], "next_page_token": next}))
}

struct Fixture {
    _dir: tempfile::TempDir,
    connections: Connections,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("nexo.db")).unwrap();
    let key = SecretKey::generate("Acme").unwrap();
    db.trust_key(&key.public()).unwrap();
    let registry = Registry::new(db.clone(), runtime().clone(), dir.path().join("bundles"));
    let src: ManifestSource = toml::from_str(&format!(
        "id = \"acme/crm\"\nversion = \"1.0.0\"\nkind = \"connector\"\ndescription = \"d\"\nvendor = \"Acme\"\n[capabilities]\n{CRM_CAPS}"
    ))
    .unwrap();
    let wasm = std::fs::read(programs::EXAMPLE_CRM).unwrap();
    let bundle = pack(runtime(), src, wasm, Some(&key))
        .await
        .unwrap()
        .to_bytes()
        .unwrap();
    let review = registry.review(bundle, "b", false, None).await.unwrap();
    let grant = grant_all(review.to_grant());
    registry.install(review, &grant).unwrap();
    Fixture {
        _dir: dir,
        connections: Connections::new(registry, Sealer::from_key(&[9; 32])),
    }
}

fn connection(name: &str, api: &Api, per_minute: Option<u32>) -> NewConnection {
    NewConnection {
        name: name.into(),
        plugin_id: "acme/crm".into(),
        pinned_version: None,
        environment: Environment::Sandbox,
        config: json!({"base_url": api.url()}),
        secrets: BTreeMap::from([(
            "api_token".to_string(),
            SecretValue::new("budget-test-token"),
        )]),
        grants: ConnectionGrants {
            http: vec![],
            private_http: vec![api.url()],
            requests_per_minute: per_minute,
            ..Default::default()
        },
    }
}

/// Read `contacts` to the end: pages read, and every sandbox refusal seen.
async fn read_all(plugin: ConnectorPlugin, config: String) -> (u32, Vec<SandboxEvent>) {
    let mut state = None;
    let mut pages = 0;
    let mut events = Vec::new();
    loop {
        let out = plugin.read(&config, "contacts", state.as_deref()).await;
        events.extend(out.events);
        let page = out.result.unwrap();
        pages += 1;
        if !page.has_more {
            return (pages, events);
        }
        state = page.state;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_connection_share_its_budget_and_wait_instead_of_failing() {
    const PAGES: u32 = 20;
    const PER_MINUTE: u32 = 600;
    let interval = Duration::from_secs(60) / PER_MINUTE;
    let burst = burst_for(PER_MINUTE.try_into().unwrap()) as usize;
    assert_eq!(burst, 20);

    let f = fixture().await;
    let api = Api::start(PAGES).await;
    f.connections
        .add(connection("crm", &api, Some(PER_MINUTE)))
        .unwrap();
    // Two runs: each opens its own instance, one through a clone, as two
    // pipelines of one `nexo serve` process do.
    let (row, a) = f.connections.open("crm", Limits::default()).await.unwrap();
    let (_, b) = f
        .connections
        .clone()
        .open("crm", Limits::default())
        .await
        .unwrap();
    let runs = [a, b].map(|p| tokio::spawn(read_all(p, row.config.clone())));
    for run in runs {
        let (pages, events) = run.await.unwrap();
        assert_eq!(pages, PAGES, "each run read to the end");
        assert!(events.is_empty(), "nothing refused: {events:?}");
    }

    // Twice the burst arrived, never more than the budget allows in any
    // window the server measured. Latency can bunch requests sent one
    // interval apart together, so each window gets a few intervals of slack;
    // without the budget, all 40 arrive within a fraction of a second.
    let arrivals = api.arrivals();
    assert_eq!(arrivals.len(), 2 * PAGES as usize);
    let slack = 4;
    for window in [Duration::from_millis(300), Duration::from_secs(1)] {
        let allowed = burst + (window.as_millis() / interval.as_millis()) as usize + slack;
        for (i, start) in arrivals.iter().enumerate() {
            let inside = arrivals[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < window)
                .count();
            assert!(
                inside <= allowed,
                "{inside} requests arrived within {window:?} of request {i}; the budget allows {allowed}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_after_the_call_deadline_reaches_the_plugin_as_rate_limited() {
    let f = fixture().await;
    let api = Api::start(1).await;
    // One request a minute: the second must wait ~60 s, past a 5 s call.
    f.connections
        .add(connection("slow", &api, Some(1)))
        .unwrap();
    let limits = Limits {
        call_timeout_ms: 5_000,
        ..Limits::default()
    };
    let (row, a) = f.connections.open("slow", limits.clone()).await.unwrap();
    let (_, b) = f.connections.open("slow", limits).await.unwrap();

    let first = a.read(&row.config, "contacts", None).await;
    assert!(first.result.is_ok(), "{:?}", first.result);
    let second = b.read(&row.config, "contacts", None).await;
    let err = second.result.unwrap_err();
    let guest = err.guest_error().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(guest, GuestError::RateLimited { retry_after_ms } if (50_000..=60_000).contains(retry_after_ms)),
        "{err}"
    );
    assert!(guest.is_retryable());
    match second.events.as_slice() {
        [SandboxEvent::HttpRefused(HttpError::RateLimited(e))] => {
            assert_eq!(e.connection, "slow");
            assert_eq!(e.per_minute, 1);
        }
        other => panic!("expected one budget refusal, got {other:?}"),
    }
    assert_eq!(api.arrivals().len(), 1, "the refused request was not sent");

    // Another connection to the same server has a budget of its own.
    f.connections.add(connection("other", &api, None)).unwrap();
    let (row, c) = f
        .connections
        .open("other", Limits::default())
        .await
        .unwrap();
    assert!(c.read(&row.config, "contacts", None).await.result.is_ok());
    assert_eq!(api.arrivals().len(), 2);
}

#[tokio::test]
async fn the_budget_is_stored_with_the_connection_and_none_means_the_default() {
    let f = fixture().await;
    let api = Api::start(1).await;
    // Zero is the explicit "no limit" (`--requests-per-minute unlimited`).
    f.connections
        .add(connection("unlimited", &api, Some(0)))
        .unwrap();
    let grants = f.connections.get("unlimited").unwrap().grants;
    assert_eq!(grants.requests_per_minute, Some(0));
    assert_eq!(request_budget(&grants), None);

    f.connections
        .add(connection("limited", &api, Some(90)))
        .unwrap();
    f.connections
        .add(connection("defaulted", &api, None))
        .unwrap();
    assert_eq!(
        f.connections
            .get("limited")
            .unwrap()
            .grants
            .requests_per_minute,
        Some(90)
    );
    let grants = f.connections.get("defaulted").unwrap().grants;
    assert_eq!(grants.requests_per_minute, None);
    assert_eq!(request_budget(&grants), Some(DEFAULT_REQUESTS_PER_MINUTE));
    assert_eq!(DEFAULT_REQUESTS_PER_MINUTE.get(), 600);
}

#[tokio::test]
async fn the_hosts_own_retries_take_tokens_too() {
    // `/limited` answers 429 with `Retry-After: 1` once, then 200. With one
    // request a minute, the host's retry has no token before the deadline.
    let crm = tinycrm::start(tinycrm::seed(0), "t").await;
    let policy = OutboundPolicy::new(
        vec![OriginPattern::parse("http://*:*").unwrap()],
        vec![HttpGrant::private(&crm.url()).unwrap()],
    );
    let budgets = RequestBudgets::new();
    let http = OutboundHttp::new(policy, SecretSet::default(), HttpSettings::default())
        .unwrap()
        .with_budget(budgets.for_connection("crm", NonZeroU32::MIN));
    let request = OutboundRequest {
        method: Method::Get,
        url: format!("{}/limited", crm.url()),
        headers: vec![],
        basic_auth: None,
        body: None,
        timeout_ms: None,
    };
    let err = http
        .send(request, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::RateLimited(e) if e.connection == "crm" && e.retry_after > Duration::from_secs(45)),
        "{err:?}"
    );
    assert_eq!(
        crm.crm.lock().unwrap().requests,
        vec!["GET /limited".to_string()],
        "the retry was not sent"
    );
}

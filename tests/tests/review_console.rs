//! The review queue of going live through the daemon: the CRM's people
//! (HubSpot-like) going to books that already hold most of them (Xero-like,
//! the fixture of `going_live.rs`). Over the admin API: the matching pass
//! dry, the first run, the queue listed and shown, a pick that is not a
//! candidate refused, decisions made by an operator token and audited as
//! it, a viewer refused, a decision not made twice, and the next run
//! delivering them. In a real headless Chromium: the Review page shows a
//! queued record beside its candidates with = / ≠ marks, and "This one"
//! decides it. Screenshots in `target/test-artifacts/review/`.
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo xtask setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fantoccini::Locator;
use nexo::registry::Registry;
use nexo::serve::clock::SystemClock;
use nexo::serve::scheduler::SchedulerConfig;
use nexo::serve::{App, ServeConfig};
use nexo::store::sealed::Sealer;
use nexo::store::service::Role;
use nexo_sandbox::xero::Collection;
use nexo_tests::browser::{Browser, Screenshots, click, login, wait, wait_text};
use nexo_tests::daemon::serve;
use nexo_tests::going_live::Systems;
use nexo_tests::tryton::Host;
use serde_json::{Value, json};

const OPERATOR: &str = "nexo_review_operator_5e81";
const VIEWER: &str = "nexo_review_viewer_93ad";

/// A host with both systems connected, pipeline `customers`, an operator
/// token `ops` and a viewer token `watcher`, and its daemon's state.
async fn setup() -> (Host, Systems, Arc<App>) {
    let host = Host::new().await;
    let systems = Systems::connect(&host).await;
    host.db
        .insert_token("ops", OPERATOR, Role::Operator)
        .unwrap();
    host.db
        .insert_token("watcher", VIEWER, Role::Viewer)
        .unwrap();
    let registry = Registry::new(
        host.db.clone(),
        nexo_tests::runtime().clone(),
        host.dir.path().join("bundles"),
    );
    let app = App::new(
        host.engine.clone(),
        registry,
        host.connections.clone(),
        Sealer::from_env_or_file(&host.dir.path().join("secret.key")).unwrap(),
        Arc::new(SystemClock),
        SchedulerConfig::default(),
    );
    (host, systems, app)
}

/// The admin API as one token sees it.
struct Api {
    url: String,
    token: &'static str,
    http: reqwest::Client,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }
    /// Starts a run of `customers` and waits for it to finish; its row.
    async fn run(&self, runs_before: usize) -> Value {
        let (status, queued) = self.post("/api/pipelines/customers/run", None).await;
        assert_eq!(status, 202, "{queued}");
        let mut last = Value::Null;
        for _ in 0..1200 {
            let (_, runs) = self.get("/api/runs?pipeline=customers").await;
            let runs = runs.as_array().cloned().unwrap_or_default();
            if runs.len() > runs_before && runs[0]["finished_at"].is_string() {
                last = runs[0].clone();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(last["status"], "succeeded", "{last}");
        last
    }
}

/// The review of the person with this first name among `list`.
fn review_of<'a>(systems: &Systems, list: &'a Value, first_name: &str) -> &'a Value {
    let id = systems.crm_id(first_name);
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["source_id"] == id)
        .unwrap_or_else(|| panic!("no review of {first_name} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_through_the_review_queue_over_the_api_and_the_trail_names_the_token() {
    let (host, systems, app) = setup().await;
    let (url, stop, daemon) = serve(app, ServeConfig::default()).await;
    let ops = Api {
        url: url.clone(),
        token: OPERATOR,
        http: reqwest::Client::new(),
    };
    let viewer = Api {
        url,
        token: VIEWER,
        http: reqwest::Client::new(),
    };

    // The matching pass, dry: what the first run will do, nothing written.
    let (status, dry) = ops
        .post(
            "/api/pipelines/customers/match",
            Some(json!({"dry_run": true})),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["run"], Value::Null);
    let counts = &dry["report"]["counts"];
    assert_eq!(
        (&counts["linked"], &counts["queued"], &counts["unmatched"]),
        (&json!(3), &json!(3), &json!(2)),
        "{dry}"
    );
    assert_eq!(ops.get("/api/reviews").await, (200, json!([])));
    let (status, err) = ops.post("/api/pipelines/nope/match", None).await;
    assert_eq!(status, 404, "{err}");

    // The first run, through the API: it matches first, queues three.
    ops.run(0).await;
    let (status, open) = viewer.get("/api/reviews?pipeline=customers").await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open.as_array().unwrap().len(), 3, "{open}");
    let (farah, dmitri, elif) = (
        review_of(&systems, &open, "Farah")["id"].as_i64().unwrap(),
        review_of(&systems, &open, "Dmitri")["id"].as_i64().unwrap(),
        review_of(&systems, &open, "Elif")["id"].as_i64().unwrap(),
    );
    let (status, shown) = viewer.get(&format!("/api/reviews/{farah}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["mapped"]["name"], "Farah Haddad");
    assert_eq!(shown["candidates"][0]["record"]["name"], "Farrah Hadad");
    assert_eq!(
        shown["candidates"][0]["id"],
        json!(systems.existing["Farrah Hadad"])
    );
    assert_eq!(shown["status"], "open");
    let (status, err) = viewer.get("/api/reviews/99999").await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().unwrap().contains("no review 99999"));
    let (status, err) = viewer.get("/api/reviews?status=maybe").await;
    assert_eq!(status, 400, "{err}");

    // A viewer reads the queue but cannot decide.
    let (status, err) = viewer
        .post(&format!("/api/reviews/{farah}/accept"), None)
        .await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("needs operator"),
        "{err}"
    );

    // A pick that is not one of the candidates: refused, nothing decided.
    let zeta = systems.existing["Zeta Trading Ltd"].clone();
    let (status, err) = ops
        .post(
            &format!("/api/reviews/{dmitri}/accept"),
            Some(json!({"pick": zeta})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("is not one of its candidates"),
        "{err}"
    );
    let (status, err) = ops
        .post(
            &format!("/api/reviews/{dmitri}/accept"),
            Some(json!({"pik": "x"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");

    // Decisions: the best candidate, another one, none of them.
    let (status, a) = ops
        .post(&format!("/api/reviews/{farah}/accept"), None)
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (&a["status"], &a["chosen"], &a["decided_by"]),
        (
            &json!("accepted"),
            &json!(systems.existing["Farrah Hadad"]),
            &json!("token:ops")
        )
    );
    let other = systems.existing["DMITRI IVANOV"].clone();
    let (status, d) = ops
        .post(
            &format!("/api/reviews/{dmitri}/accept"),
            Some(json!({"pick": other})),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["chosen"], json!(other));
    let (status, e) = ops.post(&format!("/api/reviews/{elif}/reject"), None).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(
        (&e["status"], &e["chosen"]),
        (&json!("rejected"), &Value::Null)
    );
    // Decided once.
    let (status, err) = ops.post(&format!("/api/reviews/{elif}/accept"), None).await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("already rejected"),
        "{err}"
    );
    assert_eq!(ops.get("/api/reviews").await, (200, json!([])));

    // The trail names the token, as the CLI's names the user.
    let (_, accepts) = viewer.get("/api/audit?action=review.accept").await;
    let accepts = accepts["entries"].as_array().unwrap().clone();
    assert_eq!(accepts.len(), 2, "{accepts:?}");
    assert!(
        accepts.iter().all(|e| e["actor"] == "token:ops"),
        "{accepts:?}"
    );
    let targets: Vec<&str> = accepts
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(
        targets.contains(&format!("review/{dmitri}").as_str()),
        "{targets:?}"
    );
    assert_eq!(accepts[0]["after"]["chosen"], json!(other), "{accepts:?}");
    let (_, rejects) = viewer.get("/api/audit?action=review.reject").await;
    let rejects = rejects["entries"].as_array().unwrap().clone();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(
        (&rejects[0]["actor"], &rejects[0]["target"]),
        (&json!("token:ops"), &json!(format!("review/{elif}")))
    );

    // A second pass finds nothing new, and is audited; a dry one is not.
    let (status, again) = ops.post("/api/pipelines/customers/match", None).await;
    assert_eq!(status, 200, "{again}");
    assert!(again["run"].is_i64(), "{again}");
    assert_eq!(again["report"]["counts"]["already"], 8, "{again}");
    let (_, matches) = viewer.get("/api/audit?action=pipeline.match").await;
    let matches = matches["entries"].as_array().unwrap().clone();
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(
        (&matches[0]["actor"], &matches[0]["target"]),
        (&json!("token:ops"), &json!("pipeline/customers"))
    );

    // The next run delivers the decisions: Farah and Dmitri updated where
    // they are, Elif created.
    let (_, runs) = ops.get("/api/runs?pipeline=customers").await;
    let next = ops.run(runs.as_array().unwrap().len()).await;
    assert_eq!(
        (&next["counts"]["created"], &next["counts"]["updated"]),
        (&json!(1), &json!(2)),
        "{next}"
    );
    let books = systems.books.records(Collection::Contacts);
    let name_of = |id: &str| {
        books
            .iter()
            .find(|c| c["ContactID"] == id)
            .map(|c| c["Name"].clone())
    };
    assert_eq!(
        name_of(&systems.existing["Farrah Hadad"]),
        Some(json!("Farah Haddad"))
    );
    assert_eq!(name_of(&other), Some(json!("Dmitri Ivanov")));
    let (_, all) = viewer.get("/api/reviews?status=all").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|r| r["delivered_run"] == next["id"]),
        "{all}"
    );
    drop(host);
    let _ = stop.send(());
    daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_page_shows_a_record_beside_its_candidates_and_this_one_decides_it() {
    let browser = Browser::start("review").await;
    let (host, systems, app) = setup().await;
    host.run("customers").await;
    let (url, stop, daemon) = serve(app, ServeConfig::default()).await;
    let ops = Api {
        url: url.clone(),
        token: OPERATOR,
        http: reqwest::Client::new(),
    };
    let (_, open) = ops.get("/api/reviews").await;
    let dmitri = review_of(&systems, &open, "Dmitri")["id"].as_i64().unwrap();
    let farah = review_of(&systems, &open, "Farah")["id"].as_i64().unwrap();
    let (gmbh, other) = (
        systems.existing["Dmitri Ivanov GmbH"].clone(),
        systems.existing["DMITRI IVANOV"].clone(),
    );
    let mut shots = Screenshots::new(
        "review",
        &[("API token", OPERATOR), ("viewer token", VIEWER)],
    );

    let c = browser.open().await;
    c.goto(&format!("{url}/")).await.unwrap();
    login(&c, OPERATOR).await;
    wait_text(&c, "#session-name", "token: ops").await;
    click(&c, r#"a[data-nav="review"]"#).await;
    let row = wait_text(
        &c,
        &format!(r#"tr[data-review="{dmitri}"]"#),
        systems.crm_id("Dmitri"),
    )
    .await;
    assert!(row.contains("Dmitri Ivanov"), "{row}");
    wait(&c, &format!(r#"tr[data-review="{farah}"]"#)).await;
    shots.step(&c, "queue").await;

    // Dmitri beside his two candidates, field by field.
    click(&c, &format!(r#"tr[data-review="{dmitri}"] a"#)).await;
    wait_text(&c, "#review-why", "Why uncertain").await;
    let name = |cand: &str| format!(r#"tr[data-field="name"] td[data-candidate="{cand}"]"#);
    let gmbh_name = wait(&c, &name(&gmbh)).await;
    assert_eq!(
        gmbh_name.attr("data-mark").await.unwrap().as_deref(),
        Some("differ")
    );
    assert!(gmbh_name.text().await.unwrap().contains("≠"));
    let email = wait(
        &c,
        &format!(r#"tr[data-field="email"] td[data-candidate="{gmbh}"]"#),
    )
    .await;
    assert_eq!(
        email.attr("data-mark").await.unwrap().as_deref(),
        Some("differ")
    );
    let mine = wait_text(
        &c,
        r#"tr[data-field="name"] td.review-mine"#,
        "Dmitri Ivanov",
    )
    .await;
    assert!(!mine.contains("GmbH"), "{mine}");
    let country = wait(
        &c,
        &format!(r#"tr[data-field="address"] td[data-candidate="{other}"]"#),
    )
    .await;
    assert_eq!(
        country.attr("data-mark").await.unwrap().as_deref(),
        Some("same"),
        "{}",
        country.text().await.unwrap()
    );
    wait(&c, "#review-reject").await;
    shots.step(&c, "side-by-side").await;

    // "This one" on the second candidate decides it.
    // (In its own column, under the candidate it accepts.)
    click(
        &c,
        &format!(r#"th[data-candidate="{other}"] button[data-accept="{other}"]"#),
    )
    .await;
    wait_text(&c, "#review-status", "accepted").await;
    let outcome = wait_text(&c, "#review-outcome", "next run").await;
    assert!(
        outcome.contains(&other) && outcome.contains("token:ops"),
        "{outcome}"
    );
    shots.step(&c, "accepted").await;
    let (_, decided) = ops.get(&format!("/api/reviews/{dmitri}")).await;
    assert_eq!(
        (&decided["status"], &decided["chosen"]),
        (&json!("accepted"), &json!(other))
    );
    let (_, trail) = ops.get("/api/audit?action=review.accept").await;
    assert_eq!(trail["entries"][0]["actor"], "token:ops", "{trail}");

    // A viewer sees the queue and the comparison, without the buttons.
    click(&c, "#logout").await;
    login(&c, VIEWER).await;
    wait_text(&c, "#session-name", "token: watcher").await;
    c.goto(&format!("{url}/#/review/{farah}")).await.unwrap();
    wait_text(&c, "#review-why", "Why uncertain").await;
    wait_text(&c, ".review-actions", "an operator decides").await;
    assert!(
        c.find_all(Locator::Css("button[data-accept]"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.find_all(Locator::Css("#review-reject"))
            .await
            .unwrap()
            .is_empty()
    );
    shots.step(&c, "viewer").await;

    c.close().await.unwrap();
    drop(browser);
    drop(host);
    let _ = stop.send(());
    daemon.await.unwrap();
}

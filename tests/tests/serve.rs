//! The daemon in-process: the scheduler on a clock moved by hand, webhooks
//! and the admin API over real HTTP on 127.0.0.1, auto-pause, and a plugin
//! upgraded while the host serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nexo::serve::clock::{ManualClock, SystemClock};
use nexo::serve::scheduler::Triggered;
use nexo::serve::{ServeConfig, webhook};
use nexo::sync::Pipeline;
use nexo::sync::store::{PipelineStore, RunRow, RunStore};
use nexo_tests::cli::until;
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{Kit, contents, pipeline};
use nexo_tests::tinycrm;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_schedule_fires_on_time_by_the_clock() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 50).await;
    kit.apply(&pipeline("every-minute", "", "[schedule]\nevery = \"1m\""))
        .await;
    let t0 = Utc::now();
    let clock = ManualClock::new(t0);
    let app = app(&kit, Arc::new(clock.clone()));
    let sched = app.scheduler.clone();
    let task = tokio::spawn(sched.clone().run());

    // Never ran: due at once.
    sched.settled(t0).await;
    sched.idle().await;
    assert_eq!(kit.runs("every-minute").len(), 1);
    assert_eq!(kit.b.contacts().len(), 3);
    let next = sched.view("every-minute").next_run.unwrap();
    assert_eq!(next, t0 + chrono::Duration::seconds(60));

    // 59 s later: not yet.
    clock.advance(chrono::Duration::seconds(59));
    sched.settled(t0 + chrono::Duration::seconds(59)).await;
    sched.idle().await;
    assert_eq!(kit.runs("every-minute").len(), 1, "fired early");

    // At 60 s: the second run.
    clock.advance(chrono::Duration::seconds(1));
    sched.settled(t0 + chrono::Duration::seconds(60)).await;
    sched.idle().await;
    assert_eq!(kit.runs("every-minute").len(), 2, "did not fire on time");

    // A paused pipeline does not fire.
    kit.db.set_paused("every-minute", true, None).unwrap();
    clock.advance(chrono::Duration::seconds(120));
    sched.settled(t0 + chrono::Duration::seconds(180)).await;
    sched.idle().await;
    assert_eq!(kit.runs("every-minute").len(), 2, "a paused pipeline ran");
    sched.shutdown().await;
    task.await.unwrap();
}

/// A cron schedule that never ran fires at its first match after the host
/// first saw it (it used to count from each look's `now`, so its match was
/// always ahead and it never fired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_that_never_ran_fires_at_its_first_match() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 50).await;
    kit.apply(&pipeline("hourly", "", "[schedule]\ncron = \"0 * * * *\""))
        .await;
    let t0: chrono::DateTime<Utc> = "2026-12-05T10:59:30Z".parse().unwrap();
    let clock = ManualClock::new(t0);
    let app = app(&kit, Arc::new(clock.clone()));
    let sched = app.scheduler.clone();
    let task = tokio::spawn(sched.clone().run());
    sched.settled(t0).await;
    sched.idle().await;
    assert!(kit.runs("hourly").is_empty(), "fired before its match");
    let first = "2026-12-05T11:00:00Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    assert_eq!(sched.view("hourly").next_run, Some(first));
    let mut at = t0;
    for step in [20, 10, 5] {
        clock.advance(chrono::Duration::seconds(step));
        at += chrono::Duration::seconds(step);
        sched.settled(at).await;
        sched.idle().await;
    }
    assert_eq!(kit.runs("hourly").len(), 1, "did not fire at 11:00");
    let second = "2026-12-05T12:00:00Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    assert_eq!(sched.view("hourly").next_run, Some(second));
    sched.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_during_a_run_coalesce_and_runs_never_overlap() {
    let kit = Kit::new(tinycrm::seed(40), Default::default(), 5).await;
    kit.apply(&pipeline("slow", "", "")).await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(10);
    let app = app(&kit, Arc::new(SystemClock));
    let sched = app.scheduler.clone();
    let task = tokio::spawn(sched.clone().run());

    assert_eq!(sched.trigger("slow").unwrap(), Triggered::Queued);
    until("the run started", || sched.view("slow").running).await;
    // A burst while it runs: one more run, not ten.
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        outcomes.push(sched.trigger("slow").unwrap());
    }
    assert_eq!(outcomes[0], Triggered::Queued);
    assert!(outcomes[1..].iter().all(|t| *t == Triggered::Coalesced));
    until("both runs finished", || {
        let r = kit.runs("slow");
        r.len() == 2 && r.iter().all(|r| r.finished_at.is_some())
    })
    .await;
    sched.idle().await;
    let mut r = kit.runs("slow");
    r.reverse();
    assert!(
        r[0].finished_at.as_deref().unwrap() <= r[1].started_at.as_str(),
        "runs overlapped: {r:?}"
    );
    assert_eq!(contents(&kit.a), contents(&kit.b));
    assert_eq!(kit.b.crm.lock().unwrap().creates, 40, "no duplicates");
    sched.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_asked_for_during_a_run_starts_as_soon_as_it_ends() {
    // The clock stands still after the first run is due: the follow-up
    // must not wait for another coalescing window (the triggers that
    // asked for it already waited for the run in progress).
    let kit = Kit::new(tinycrm::seed(40), Default::default(), 5).await;
    kit.apply(&pipeline("slow", "", "")).await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(10);
    let t0 = Utc::now();
    let clock = ManualClock::new(t0);
    let app = app(&kit, Arc::new(clock.clone()));
    let sched = app.scheduler.clone();
    let task = tokio::spawn(sched.clone().run());

    assert_eq!(sched.trigger("slow").unwrap(), Triggered::Queued);
    let due = t0 + chrono::Duration::seconds(1);
    clock.advance(chrono::Duration::seconds(1));
    sched.settled(due).await;
    until("the run started", || sched.view("slow").running).await;
    assert_eq!(sched.trigger("slow").unwrap(), Triggered::Queued);
    until("the follow-up ran with the clock standing still", || {
        let r = kit.runs("slow");
        r.len() == 2 && r.iter().all(|r| r.finished_at.is_some())
    })
    .await;
    sched.idle().await;
    assert_eq!(contents(&kit.a), contents(&kit.b));
    sched.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_after_the_one_it_follows_and_loops_are_refused() {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    kit.apply(&pipeline("customers", "", "")).await;
    kit.apply(&pipeline(
        "invoices",
        "",
        "[schedule]\nafter = [\"customers\"]",
    ))
    .await;

    // Refused when saved: an unknown pipeline, and a loop.
    let unknown = Pipeline::from_toml(
        &pipeline("orphan", "", "[schedule]\nafter = [\"nope\"]"),
        "t",
    )
    .unwrap();
    let err = kit.engine.apply(&unknown).await.unwrap_err().to_string();
    assert!(
        err.contains("schedule.after") && err.contains("no pipeline named `nope`"),
        "{err}"
    );
    let looped = Pipeline::from_toml(
        &pipeline("customers", "", "[schedule]\nafter = [\"invoices\"]"),
        "t",
    )
    .unwrap();
    let err = kit.engine.apply(&looped).await.unwrap_err().to_string();
    assert!(
        err.contains("loop") && err.contains("customers → invoices → customers"),
        "{err}"
    );
    assert!(kit.db.pipeline("orphan").unwrap().is_none());
    assert!(
        kit.db
            .pipeline("customers")
            .unwrap()
            .unwrap()
            .pipeline
            .schedule
            .after
            .is_empty(),
        "the refused definition was saved"
    );

    let app = app(&kit, Arc::new(SystemClock));
    let sched = app.scheduler.clone();
    let task = tokio::spawn(sched.clone().run());
    sched.trigger("customers").unwrap();
    until("the follower ran", || {
        kit.runs("invoices")
            .first()
            .is_some_and(|r| r.finished_at.is_some())
    })
    .await;
    sched.idle().await;
    let (first, follower) = (&kit.runs("customers")[0], &kit.runs("invoices")[0]);
    assert_eq!(first.status, "succeeded");
    assert!(
        first.finished_at.as_deref().unwrap() <= follower.started_at.as_str(),
        "the follower started before the run it follows ended"
    );
    assert_eq!(kit.runs("invoices").len(), 1);
    sched.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_keeps_failing_is_paused_with_the_reason() {
    let kit = Kit::new(tinycrm::seed(5), Default::default(), 50).await;
    kit.apply(&pipeline(
        "doomed",
        "",
        "[schedule]\nevery = \"30s\"\npause_after_failures = 3",
    ))
    .await;
    // Every write fails; one attempt each, so a run fails fast.
    kit.b.crm.lock().unwrap().fail_writes = usize::MAX;
    let mut p = kit.db.pipeline("doomed").unwrap().unwrap().pipeline;
    p.retry.max_attempts = Some(1);
    kit.engine.apply(&p).await.unwrap();
    let t0 = Utc::now();
    let clock = ManualClock::new(t0);
    let app = app(&kit, Arc::new(clock.clone()));
    let sched = app.scheduler.clone();
    let task = tokio::spawn(sched.clone().run());
    for i in 0..4 {
        let at = t0 + chrono::Duration::seconds(30 * i);
        sched.settled(at).await;
        sched.idle().await;
        clock.advance(chrono::Duration::seconds(30));
    }
    sched.settled(t0 + chrono::Duration::seconds(120)).await;
    sched.idle().await;
    let row = kit.db.pipeline("doomed").unwrap().unwrap();
    assert!(row.paused, "not paused after 3 failures");
    let reason = row.paused_reason.unwrap();
    assert!(reason.contains("3 failed runs in a row"), "{reason}");
    assert_eq!(kit.runs("doomed").len(), 3, "ran on after being paused");
    // Each failed run says why in its own log, not only in its error field.
    let last = &kit.runs("doomed")[0];
    let log = kit.db.run_log(last.id).unwrap();
    assert!(
        log.iter()
            .any(|(_, level, m)| level == "error" && Some(m) == last.error.as_ref()),
        "{log:?}"
    );
    assert!(
        sched.trigger("doomed").is_err(),
        "a paused pipeline is not triggered"
    );
    // Resumed by a person, it runs again.
    kit.db.set_paused("doomed", false, None).unwrap();
    assert!(
        kit.db
            .pipeline("doomed")
            .unwrap()
            .unwrap()
            .paused_reason
            .is_none()
    );
    sched.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_starts_a_run_and_a_bad_signature_is_refused() {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    kit.apply(&pipeline("hooked", "", "")).await;
    let app = app(&kit, Arc::new(SystemClock));
    let secret = webhook::rotate_secret(kit.registry.db(), &app.sealer, "hooked").unwrap();
    let (url, stop, handle) = serve(app.clone(), ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let body = br#"{"event":"deal.updated","id":42}"#.to_vec();

    for signature in [
        None,
        Some(format!("t={},v1=00", Utc::now().timestamp())),
        Some(webhook::sign_now("whsec_wrong", &body)),
        Some(webhook::sign_now(&secret, b"another body")),
    ] {
        let mut req = http.post(format!("{url}/hooks/hooked")).body(body.clone());
        if let Some(s) = &signature {
            req = req.header(webhook::SIGNATURE_HEADER, s);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{signature:?}");
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains("X-Nexo-Signature"));
    }
    app.scheduler.idle().await;
    assert!(
        kit.runs("hooked").is_empty(),
        "a bad signature ran something"
    );
    assert!(kit.b.contacts().is_empty());

    // Unknown pipelines answer like pipelines without a hook.
    let resp = http
        .post(format!("{url}/hooks/nope"))
        .header(webhook::SIGNATURE_HEADER, webhook::sign_now(&secret, &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A burst of good ones (five events, each signed once): queued,
    // coalesced into one run.
    let mut coalesced = 0;
    for i in 0..5 {
        let body = format!(r#"{{"event":"deal.updated","id":42,"n":{i}}}"#).into_bytes();
        let resp = http
            .post(format!("{url}/hooks/hooked"))
            .header(webhook::SIGNATURE_HEADER, webhook::sign_now(&secret, &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let v: Value = resp.json().await.unwrap();
        coalesced += usize::from(v["coalesced"] == json!(true));
    }
    assert!(
        coalesced >= 3,
        "a burst should mostly coalesce ({coalesced} of 5)"
    );
    until("the triggered run finished", || {
        kit.runs("hooked").iter().any(|r| r.status == "succeeded")
    })
    .await;
    app.scheduler.idle().await;
    assert!(kit.runs("hooked").len() <= 2, "{:?}", kit.runs("hooked"));
    assert_eq!(contents(&kit.a), contents(&kit.b));
    kit.db
        .insert_token(
            "scraper",
            "nexo_test_token_w",
            nexo::store::service::Role::Admin,
        )
        .unwrap();
    let metrics = http
        .get(format!("{url}/metrics"))
        .bearer_auth("nexo_test_token_w")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("nexo_webhooks_total{pipeline=\"hooked\",result=\"bad_signature\"} 4"),
        "{metrics}"
    );
    let _ = stop.send(());
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_a_token_and_shows_and_acts_on_everything() {
    let kit = Kit::new(tinycrm::seed(6), Default::default(), 50).await;
    kit.apply(&pipeline(
        "api-sync",
        "",
        "[schedule]\ncron = \"0 * * * *\"",
    ))
    .await;
    // One record the destination rejects: a dead letter to replay.
    kit.b.crm.lock().unwrap().reject_writes = 1;
    kit.run("api-sync").await;
    let app = app(&kit, Arc::new(SystemClock));
    kit.db
        .insert_token(
            "console",
            "nexo_test_token_1",
            nexo::store::service::Role::Admin,
        )
        .unwrap();
    let (url, stop, handle) = serve(app.clone(), ServeConfig::default()).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{url}{path}"))
            .bearer_auth("nexo_test_token_1")
            .send()
    };

    // No token, a wrong one: 401 with a way forward; the document is
    // public (the metrics are not: see tests/hygiene.rs).
    let resp = http
        .get(format!("{url}/api/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{url}/api/overview"))
        .bearer_auth("nexo_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("nexo token create"));
    let doc: Value = reqwest::get(format!("{url}/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/overview"].is_object());

    let session: Value = get("/api/session").await.unwrap().json().await.unwrap();
    assert_eq!(session["token_name"], "console");
    let overview: Value = get("/api/overview").await.unwrap().json().await.unwrap();
    let p = &overview["pipelines"][0];
    assert_eq!(p["name"], "api-sync");
    assert_eq!(p["schedule"]["kind"], "cron");
    assert_eq!(p["last_run"]["status"], "succeeded");
    assert_eq!(p["records_moved"], 5);
    assert!(p["next_run"].as_str().unwrap().ends_with(":00:00Z"), "{p}");
    let conns = overview["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    let text = overview.to_string();
    assert!(
        !text.contains(nexo_tests::synckit::TOKEN),
        "a secret leaked: {text}"
    );

    let detail: Value = get("/api/connections/crm-a")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["secrets"], json!(["api_token"]));
    assert!(!detail.to_string().contains(nexo_tests::synckit::TOKEN));

    // The dead letter, replayed through the API.
    let dlq: Value = get("/api/dlq").await.unwrap().json().await.unwrap();
    let id = dlq[0]["id"].as_i64().unwrap();
    let one: Value = get(&format!("/api/dlq/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(one["record"].is_object(), "{one}");
    let resp = http
        .post(format!("{url}/api/dlq/{id}/replay"))
        .bearer_auth("nexo_test_token_1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(contents(&kit.a), contents(&kit.b));
    let open: Value = get("/api/dlq").await.unwrap().json().await.unwrap();
    assert_eq!(open, json!([]));
    // Statuses are checked values: each lists its own, a typo is a 400
    // that names them.
    let replayed: Value = get("/api/dlq?status=replayed")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed[0]["id"], id, "{replayed}");
    assert_eq!(replayed[0]["status"], "replayed");
    let resolved: Value = get("/api/dlq?status=resolved")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resolved, json!([]));
    for path in ["/api/dlq?status=fixed", "/api/conflicts?status=settled"] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("resolved") && text.contains("all"),
            "{path}: {text}"
        );
    }
    let auto = get("/api/conflicts?status=auto-resolved").await.unwrap();
    assert_eq!(auto.status(), 200);
    // So are a run's: a typo is not an empty history.
    let succeeded: Value = get("/api/runs?status=succeeded")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        succeeded
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["pipeline"] == "api-sync"),
        "{succeeded}"
    );
    let resp = get("/api/runs?status=succeded").await.unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("succeeded") && text.contains("interrupted"),
        "{text}"
    );

    // Run detail with log and per-record outcomes.
    let run_id = kit.runs("api-sync").last().unwrap().id;
    let run: Value = get(&format!("/api/runs/{run_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["records"].as_array().unwrap().len(), 6);
    assert!(
        run["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("plugins:"))
    );

    // 360° lookup by a value of the record.
    let a = kit.a.contacts()[0].clone();
    let email = a["email"].as_str().unwrap();
    let found: Value = get(&format!("/api/identity?q={email}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = found[0]["records"].as_array().unwrap();
    let conns: Vec<&str> = records
        .iter()
        .map(|r| r["connection"].as_str().unwrap())
        .collect();
    assert!(
        conns.contains(&"crm-a") && conns.contains(&"crm-b"),
        "{found}"
    );

    // Errors by class; plugins with signatures and capabilities.
    let errors: Value = get("/api/errors").await.unwrap().json().await.unwrap();
    assert!(errors["top"][0]["count"].as_u64().unwrap() >= 1, "{errors}");
    let plugins: Value = get("/api/plugins").await.unwrap().json().await.unwrap();
    let crm = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "acme/crm")
        .unwrap();
    assert_eq!(crm["versions"][0]["signed_by"]["name"], "Acme");
    assert!(
        !crm["versions"][0]["capabilities"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Bad input: a definition that does not parse, a mismatched name.
    let resp = http
        .put(format!("{url}/api/pipelines/api-sync"))
        .bearer_auth("nexo_test_token_1")
        .body("name = ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .put(format!("{url}/api/pipelines/other"))
        .bearer_auth("nexo_test_token_1")
        .body(pipeline("api-sync", "", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("path says `other`"));

    // A new entity for a pipeline that has run: refused (its cursor and
    // links would carry over), accepted with `reset=true`, cursor reset.
    let renamed =
        pipeline("api-sync", "", "").replace("entity = \"contact\"", "entity = \"person\"");
    let resp = http
        .put(format!("{url}/api/pipelines/api-sync"))
        .bearer_auth("nexo_test_token_1")
        .body(renamed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("entity `contact` → `person`") && text.contains("reset=true"),
        "{text}"
    );
    assert!(
        kit.db
            .pipeline("api-sync")
            .unwrap()
            .unwrap()
            .state
            .is_some()
    );
    let resp = http
        .put(format!("{url}/api/pipelines/api-sync?reset=true"))
        .bearer_auth("nexo_test_token_1")
        .body(renamed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let row = kit.db.pipeline("api-sync").unwrap().unwrap();
    assert_eq!((row.pipeline.entity.as_str(), row.state), ("person", None));

    // Pause and resume.
    let paused: Value = http
        .post(format!("{url}/api/pipelines/api-sync/pause"))
        .bearer_auth("nexo_test_token_1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"], true);
    let resp = http
        .post(format!("{url}/api/pipelines/api-sync/run"))
        .bearer_auth("nexo_test_token_1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409, "a paused pipeline does not run");
    let _ = stop.send(());
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_while_serving_applies_to_the_next_run_not_the_one_in_flight() {
    let kit = Kit::new(tinycrm::seed(30), Default::default(), 5).await;
    kit.apply(&pipeline("live", "", "")).await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(15);
    let app = app(&kit, Arc::new(SystemClock));
    let (_url, stop, handle) = serve(app.clone(), ServeConfig::default()).await;

    app.scheduler.trigger("live").unwrap();
    until("the run wrote something", || !kit.b.contacts().is_empty()).await;
    // The admin upgrades the connector now, with the host serving.
    kit.upgrade_crm("1.1.0").await;
    until("the first run finished", || {
        kit.runs("live").iter().any(|r| r.finished_at.is_some())
    })
    .await;
    app.scheduler.idle().await;
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    kit.a.edit(
        kit.a.contacts()[0]["id"].as_str().unwrap(),
        "city",
        "Upgraded",
    );
    app.scheduler.trigger("live").unwrap();
    until("the second run finished", || {
        let r = kit.runs("live");
        r.len() == 2 && r.iter().all(|r| r.finished_at.is_some())
    })
    .await;
    let r = kit.runs("live");
    let versions = |run: &RunRow| {
        kit.db
            .run_log(run.id)
            .unwrap()
            .into_iter()
            .map(|(_, _, m)| m)
            .find(|m| m.starts_with("plugins:"))
            .unwrap()
    };
    let (second, first) = (&r[0], &r[1]);
    assert_eq!(first.status, "succeeded");
    assert!(
        versions(first).contains("acme/crm@1.0.0"),
        "{}",
        versions(first)
    );
    assert!(
        versions(second).contains("acme/crm@1.1.0"),
        "{}",
        versions(second)
    );
    assert_eq!(contents(&kit.a), contents(&kit.b));
    let _ = stop.send(());
    handle.await.unwrap();
}

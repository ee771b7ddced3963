//! Alerts end to end: a real SMTP server (aiosmtpd) and a webhook receiver
//! that verifies signatures, both on 127.0.0.1, and the daemon serving a
//! pipeline whose destination keeps failing — one e-mail and one signed
//! webhook for the incident however many runs fail, and one "resolved"
//! notice of each when it recovers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::Utc;
use nexo::sandbox::secrets::SecretValue;
use nexo::serve::ServeConfig;
use nexo::serve::alerts::{self, ChannelConfig, Condition, QuietHours, Rule, SmtpSecurity};
use nexo::serve::clock::SystemClock;
use nexo::store::alerts::DeliveryStatus;
use nexo::sync::store::PipelineStore;
use nexo_tests::alerts::{SmtpServer, webhook_receiver};
use nexo_tests::browser::{Browser, Screenshots, click, login, wait, wait_text};
use nexo_tests::cli::until;
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;
use serde_json::Value;

const HOOK_SECRET: &str = "whsec_alerts_e2e_3f9c1d";

/// Who sets the channels and rules up (the audit trail names them).
static ACTOR: std::sync::LazyLock<nexo::store::audit::Actor> =
    std::sync::LazyLock::new(|| nexo::store::audit::Actor::Cli("ops".into()));

/// Wait until no notice is pending (sent, or failed and said why).
async fn notices_settled(db: &nexo::store::Database) {
    until("every alert notice was delivered", || {
        db.alert_incidents(false, 100).unwrap().iter().all(|i| {
            i.deliveries
                .iter()
                .all(|d| d.status != DeliveryStatus::Pending)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pipeline_sends_one_email_and_one_signed_webhook_then_one_resolved_notice_each() {
    let smtp = SmtpServer::start();
    let (hooks, hook_url, stop_hooks) = webhook_receiver(HOOK_SECRET).await;
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    kit.apply(&pipeline(
        "orders",
        "",
        "[schedule]\npause_after_failures = 0",
    ))
    .await;
    // Every write to the destination fails, one attempt each: runs fail.
    kit.b.crm.lock().unwrap().fail_writes = usize::MAX;
    let mut p = kit.db.pipeline("orders").unwrap().unwrap().pipeline;
    p.retry.max_attempts = Some(1);
    kit.engine.apply(&p).await.unwrap();

    let app = app(&kit, Arc::new(SystemClock));
    let db = kit.registry.db();
    alerts::add_channel(
        db,
        &ACTOR,
        &app.sealer,
        "ops-hook",
        &ChannelConfig::Webhook { url: hook_url },
        Some(&SecretValue::new(HOOK_SECRET)),
    )
    .unwrap();
    alerts::add_channel(
        db,
        &ACTOR,
        &app.sealer,
        "ops-mail",
        &ChannelConfig::Email {
            host: "127.0.0.1".into(),
            port: smtp.port,
            security: SmtpSecurity::Plain,
            username: None,
            from: "nexo@example.test".into(),
            to: vec!["ops@example.test".into()],
        },
        None,
    )
    .unwrap();
    alerts::add_rule(
        db,
        &ACTOR,
        &Rule {
            name: "orders-failing".into(),
            condition: Condition::RunFailed { pipeline: None },
            channels: vec!["ops-hook".into(), "ops-mail".into()],
            quiet_hours: None,
        },
    )
    .unwrap();
    // The evaluator looks after each run ends (and once an hour besides).
    let config = ServeConfig {
        alerts_every: std::time::Duration::from_secs(3600),
        ..ServeConfig::default()
    };
    let (_url, stop, handle) = serve(app.clone(), config).await;

    // Three failed runs.
    for n in 1..=3 {
        app.scheduler.trigger("orders").unwrap();
        until(&format!("failed run {n}"), || {
            kit.runs("orders")
                .iter()
                .filter(|r| r.status == "failed")
                .count()
                == n
        })
        .await;
        app.scheduler.idle().await;
    }
    // The look after the third run may still be going: look once more,
    // then wait for every notice to be delivered.
    alerts::evaluator::look(&app, Utc::now()).await.unwrap();
    notices_settled(db).await;
    assert_eq!(
        smtp.subjects(),
        vec!["[Nexo] orders-failing: pipeline:orders"],
        "one e-mail for the incident, not one per run"
    );
    {
        let seen = hooks.lock().unwrap();
        assert_eq!(seen.refused, 0);
        assert_eq!(seen.accepted.len(), 1, "{:?}", seen.accepted);
        assert_eq!(seen.accepted[0]["event"], "incident.opened");
        assert_eq!(seen.accepted[0]["incident"]["subject"], "pipeline:orders");
    }
    let mail = &smtp.messages()[0];
    assert!(mail.contains("pipeline orders failed"), "{mail}");
    assert!(mail.contains("ops@example.test"), "{mail}");
    let open = db.alert_incidents(true, 10).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");

    // It recovers: one run succeeds, and the incident is resolved.
    kit.b.crm.lock().unwrap().fail_writes = 0;
    app.scheduler.trigger("orders").unwrap();
    until("a run succeeded", || {
        kit.runs("orders").iter().any(|r| r.status == "succeeded")
    })
    .await;
    app.scheduler.idle().await;
    alerts::evaluator::look(&app, Utc::now()).await.unwrap();
    notices_settled(db).await;
    assert_eq!(
        smtp.subjects(),
        vec![
            "[Nexo] orders-failing: pipeline:orders",
            "[Nexo] resolved: orders-failing: pipeline:orders"
        ]
    );
    {
        let seen = hooks.lock().unwrap();
        let events: Vec<&str> = seen
            .accepted
            .iter()
            .map(|v| v["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, vec!["incident.opened", "incident.resolved"]);
        assert_eq!(
            seen.accepted[0]["incident"]["id"],
            seen.accepted[1]["incident"]["id"]
        );
        assert!(seen.accepted[1]["incident"]["resolved_at"].is_string());
    }
    assert!(db.alert_incidents(true, 10).unwrap().is_empty());
    // A later look sends nothing more.
    alerts::evaluator::look(&app, Utc::now()).await.unwrap();
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(hooks.lock().unwrap().accepted.len(), 2);

    let _ = stop.send(());
    handle.await.unwrap();
    let _ = stop_hooks.send(());
}

/// The console's Alerts page: channels with their Test button (which
/// reaches the receiver), rules, and an open and a resolved incident —
/// never a secret in the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_channels_rules_and_incidents_and_its_test_button_sends() {
    const API_TOKEN: &str = "nexo_alerts_console_8d2e";
    let browser = Browser::start("console-alerts").await;
    let (hooks, hook_url, stop_hooks) = webhook_receiver(HOOK_SECRET).await;
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 50).await;
    kit.apply(&pipeline("orders", "", "")).await;
    // Paused by the host, as after failures in a row: the evaluator opens
    // the incident when the daemon starts.
    kit.db
        .set_paused(
            "orders",
            true,
            Some(
                "paused by the host after 3 failed runs in a row; last error: TinyCRM answered 503",
            ),
        )
        .unwrap();
    let app = app(&kit, Arc::new(SystemClock));
    let db = kit.registry.db();
    db.insert_token("operator", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    alerts::add_channel(
        db,
        &ACTOR,
        &app.sealer,
        "ops-hook",
        &ChannelConfig::Webhook { url: hook_url },
        Some(&SecretValue::new(HOOK_SECRET)),
    )
    .unwrap();
    // A minute's quiet window half a day away: shown, never holding.
    let quiet = (Utc::now() + chrono::Duration::hours(13)).time();
    alerts::add_rule(
        db,
        &ACTOR,
        &Rule {
            name: "orders-failing".into(),
            condition: Condition::PipelinePaused { pipeline: None },
            channels: vec!["ops-hook".into()],
            quiet_hours: Some(QuietHours {
                from: quiet,
                to: quiet + chrono::Duration::minutes(1),
                utc_offset_minutes: 60,
            }),
        },
    )
    .unwrap();
    let chans = vec!["ops-hook".to_string()];
    let old = db
        .open_alert_incident(
            "orders-failing",
            "pipeline:invoices",
            "pipeline invoices failed (run 3): 503",
            &chans,
            "2026-12-04T09:00:00.000Z",
        )
        .unwrap()
        .unwrap();
    db.resolve_alert_incident(old, "2026-12-04T10:00:00.000Z")
        .unwrap();
    let (url, stop, daemon) = serve(app, ServeConfig::default()).await;
    let mut shots = Screenshots::new(
        "console-alerts",
        &[("API token", API_TOKEN), ("webhook secret", HOOK_SECRET)],
    );
    let c = browser.open().await;
    c.goto(&format!("{url}/#/alerts")).await.unwrap();
    wait(&c, "#login-view:not([hidden]) #token").await;
    login(&c, API_TOKEN).await;
    wait(&c, r#"a[data-nav="alerts"][aria-current="page"]"#).await;
    let open = wait_text(&c, "tr.row-failed[data-incident]", "opened sent").await;
    assert!(
        open.contains("pipeline:orders") && open.contains("TinyCRM answered 503"),
        "{open}"
    );
    assert_eq!(db.alert_incidents(true, 10).unwrap().len(), 1);
    wait_text(&c, "tr[data-incident]:not(.row-failed)", "resolved").await;
    let channel = wait_text(&c, r#"tr[data-channel="ops-hook"]"#, "sealed").await;
    assert!(channel.contains("/hook"), "{channel}");
    let rule = wait_text(&c, r#"tr[data-rule="orders-failing"]"#, "pipeline-paused").await;
    assert!(
        rule.contains(&quiet.format("%H:%M").to_string()) && rule.contains("+01:00"),
        "{rule}"
    );
    shots.step(&c, "alerts").await;
    click(&c, "#test-ops-hook").await;
    wait_text(&c, "#notice", "Test message sent").await;
    // The notices of the incidents came before, through the evaluator.
    let events: Vec<String> = hooks
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["event"].as_str().unwrap(),
                v["incident"]["subject"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "incident.opened pipeline:invoices",
            "incident.resolved pipeline:invoices",
            "incident.opened pipeline:orders",
            "test -",
        ]
    );
    shots.step(&c, "alerts-tested").await;

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
    let _ = stop_hooks.send(());
}

/// Without the daemon's timer, looking at chosen times: a notice the
/// receiver refuses is retried with backoff, then marked failed with the
/// error to see; a rule's notice in its quiet hours is held and sent when
/// they end, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_notices_are_retried_then_failed_and_quiet_hours_hold_notices_until_they_end() {
    use nexo::serve::alerts::evaluator::{MAX_ATTEMPTS, look};
    let (good, good_url, stop_good) = webhook_receiver(HOOK_SECRET).await;
    // This receiver expects another secret: it refuses every delivery.
    let (bad, bad_url, stop_bad) = webhook_receiver("whsec_not_the_channels").await;
    let kit = Kit::new(tinycrm::seed(1), Default::default(), 50).await;
    kit.apply(&pipeline("orders", "", "")).await;
    kit.db
        .set_paused(
            "orders",
            true,
            Some("paused by the host after 3 failed runs in a row"),
        )
        .unwrap();
    let app = app(&kit, Arc::new(SystemClock));
    let db = kit.registry.db();
    for (name, url) in [("good", good_url), ("bad", bad_url)] {
        alerts::add_channel(
            db,
            &ACTOR,
            &app.sealer,
            name,
            &ChannelConfig::Webhook { url },
            Some(&SecretValue::new(HOOK_SECRET)),
        )
        .unwrap();
    }
    let at = |s: &str| s.parse::<chrono::DateTime<Utc>>().unwrap();
    let hhmm = |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
    for (name, channel, quiet_hours) in [
        ("to-bad", "bad", None),
        (
            "at-night",
            "good",
            Some(QuietHours {
                from: hhmm("22:00"),
                to: hhmm("07:00"),
                utc_offset_minutes: 0,
            }),
        ),
    ] {
        alerts::add_rule(
            db,
            &ACTOR,
            &Rule {
                name: name.into(),
                condition: Condition::PipelinePaused { pipeline: None },
                channels: vec![channel.into()],
                quiet_hours,
            },
        )
        .unwrap();
    }

    // 23:00: both incidents open; the refused notice waits for its
    // retry, the night rule's is held.
    let first = look(&app, at("2026-12-06T23:00:00Z")).await.unwrap();
    assert_eq!(
        (first.opened, first.sent, first.failed, first.held),
        (2, 0, 1, 1),
        "{first:?}"
    );
    let early = look(&app, at("2026-12-06T23:00:10Z")).await.unwrap();
    assert_eq!(
        (early.opened, early.sent, early.failed),
        (0, 0, 0),
        "retried before its backoff: {early:?}"
    );
    // Each later look past the backoff tries again, until it gives up.
    for hour in 0..6 {
        look(
            &app,
            at("2026-12-07T00:00:00Z") + chrono::Duration::hours(hour),
        )
        .await
        .unwrap();
    }
    let bad_delivery = db
        .alert_incidents(true, 10)
        .unwrap()
        .into_iter()
        .find(|i| i.rule == "to-bad")
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(bad_delivery.status, DeliveryStatus::Failed);
    assert_eq!(bad_delivery.attempts, MAX_ATTEMPTS);
    assert!(
        bad_delivery.error.as_deref().unwrap().contains("401"),
        "{bad_delivery:?}"
    );
    assert_eq!(bad.lock().unwrap().refused, MAX_ATTEMPTS as usize);
    assert!(
        good.lock().unwrap().accepted.is_empty(),
        "sent in quiet hours"
    );

    // 07:00, the window's end: the held notice goes out.
    let morning = look(&app, at("2026-12-07T07:00:00Z")).await.unwrap();
    assert_eq!(morning.sent, 1, "{morning:?}");
    let events: Vec<Value> = good.lock().unwrap().accepted.clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "incident.opened");
    assert_eq!(events[0]["incident"]["rule"], "at-night");
    assert_eq!(
        bad.lock().unwrap().refused,
        MAX_ATTEMPTS as usize,
        "a failed notice was tried again"
    );

    let _ = stop_good.send(());
    let _ = stop_bad.send(());
}

/// Two hosts sharing a PostgreSQL both evaluate after every failed run, at
/// once: the incident is opened once and each notice sent once — one
/// e-mail, one webhook — and the recovery's once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_postgresql_send_one_notice_per_incident() {
    use nexo::serve::alerts::evaluator::look;
    use nexo::sync::RunOptions;
    let smtp = SmtpServer::start();
    let (hooks, hook_url, stop_hooks) = webhook_receiver(HOOK_SECRET).await;
    let kit = Kit::on_postgres(tinycrm::seed(3), Default::default(), 50).await;
    kit.apply(&pipeline("orders", "", "")).await;
    kit.b.crm.lock().unwrap().fail_writes = usize::MAX;
    let mut p = kit.db.pipeline("orders").unwrap().unwrap().pipeline;
    p.retry.max_attempts = Some(1);
    kit.engine.apply(&p).await.unwrap();
    let a = nexo_tests::daemon::shared_app(&kit, "host-a", Default::default());
    let b = nexo_tests::daemon::shared_app(&kit, "host-b", Default::default());
    let db = kit.registry.db();
    alerts::add_channel(
        db,
        &ACTOR,
        &a.sealer,
        "ops-hook",
        &ChannelConfig::Webhook { url: hook_url },
        Some(&SecretValue::new(HOOK_SECRET)),
    )
    .unwrap();
    alerts::add_channel(
        db,
        &ACTOR,
        &a.sealer,
        "ops-mail",
        &ChannelConfig::Email {
            host: "127.0.0.1".into(),
            port: smtp.port,
            security: SmtpSecurity::Plain,
            username: None,
            from: "nexo@example.test".into(),
            to: vec!["ops@example.test".into()],
        },
        None,
    )
    .unwrap();
    alerts::add_rule(
        db,
        &ACTOR,
        &Rule {
            name: "orders-failing".into(),
            condition: Condition::RunFailed { pipeline: None },
            channels: vec!["ops-hook".into(), "ops-mail".into()],
            quiet_hours: None,
        },
    )
    .unwrap();
    let both_look = async || {
        let (x, y) = tokio::join!(look(&a, Utc::now()), look(&b, Utc::now()));
        (x.unwrap(), y.unwrap())
    };
    for _ in 0..3 {
        assert!(
            kit.engine
                .run("orders", RunOptions::default())
                .await
                .is_err()
        );
        both_look().await;
    }
    assert_eq!(smtp.subjects(), ["[Nexo] orders-failing: pipeline:orders"]);
    assert_eq!(hooks.lock().unwrap().accepted.len(), 1);
    kit.b.crm.lock().unwrap().fail_writes = 0;
    kit.engine
        .run("orders", RunOptions::default())
        .await
        .unwrap();
    let (x, y) = both_look().await;
    assert_eq!(x.resolved + y.resolved, 1, "{x:?} {y:?}");
    both_look().await;
    assert_eq!(
        smtp.subjects(),
        [
            "[Nexo] orders-failing: pipeline:orders",
            "[Nexo] resolved: orders-failing: pipeline:orders"
        ]
    );
    let events: Vec<String> = hooks
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|v| v["event"].to_string())
        .collect();
    assert_eq!(events, [r#""incident.opened""#, r#""incident.resolved""#]);
    let _ = stop_hooks.send(());
}

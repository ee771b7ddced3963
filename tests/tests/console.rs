//! The web console in a real headless Chromium, driven over WebDriver as an
//! operator uses it: sign in, read the dashboard, open a failed run, replay a
//! dead letter, look a customer up across systems, see which hosts run.
//! Each step leaves a screenshot in `target/test-artifacts/console/` for a
//! person to look at.
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo xtask setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fantoccini::Locator;
use nexo::serve::ServeConfig;
use nexo::serve::clock::SystemClock;
use nexo::sync::RunOptions;
use nexo::sync::store::{QueueStore, RunFilter, RunStore};
use nexo_tests::browser::{Browser, Screenshots, click, login, wait, wait_text};
use nexo_tests::daemon::{app, serve, shared_app};
use nexo_tests::synckit::{Kit, TOKEN};
use nexo_tests::tinycrm;

/// The admin API token the operator signs in with.
const API_TOKEN: &str = "nexo_console_e2e_5b71c0d2";

/// A pipeline from crm-a's contacts into crm-b's, as an operator writes one.
fn pipeline(name: &str, description: &str, settings: &str, retry: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"{description}\"\nentity = \"contact\"\n{settings}\n\
         [source]\nconnection = \"crm-a\"\nstream = \"contacts\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n{retry}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_inspects_a_failure_replays_a_dead_letter_and_finds_a_customer() {
    let browser = Browser::start("console").await;
    let kit = Kit::new(tinycrm::seed(5), Default::default(), 50).await;
    // Intervals rather than cron: measured from the runs below, so the
    // scheduler has nothing due while the test drives the console.
    kit.apply(&pipeline(
        "contacts-to-crm-b",
        "Contacts from the head office CRM into the branch CRM",
        "[schedule]\nevery = \"1h\"",
        "",
    ))
    .await;
    kit.apply(&pipeline(
        "contacts-full-resync",
        "Nightly full resync of contacts into the branch CRM",
        "mode = \"full-refresh\"\n[schedule]\nevery = \"1d\"",
        "max_attempts = 1",
    ))
    .await;

    // A genuinely failed run: the branch CRM answers 500 to every write.
    kit.b.crm.lock().unwrap().fail_writes = usize::MAX;
    let failed = kit
        .engine
        .run("contacts-full-resync", RunOptions::default())
        .await;
    assert!(failed.is_err(), "the resync should fail: {failed:?}");
    kit.b.crm.lock().unwrap().fail_writes = 0;
    let failed_run = kit
        .db
        .runs(&RunFilter {
            pipeline: Some("contacts-full-resync".into()),
            status: Some(nexo::sync::store::RunStatus::Failed),
            limit: 1,
        })
        .unwrap()
        .pop()
        .expect("a failed run");
    let failed_error = failed_run.error.clone().expect("a failed run says why");

    // A succeeded run with one record refused by the destination.
    kit.b.crm.lock().unwrap().reject_writes = 1;
    kit.run("contacts-to-crm-b").await;
    let letter = kit
        .db
        .dead_letters(
            Some("contacts-to-crm-b"),
            Some(nexo::sync::store::DeadLetterStatus::Open),
        )
        .unwrap()
        .pop()
        .expect("a dead letter");
    let customer = kit.a.contact(&letter.letter.source_id).unwrap();
    let email = customer["email"].as_str().unwrap().to_string();
    let in_b = |email: &str| kit.b.contacts().iter().any(|c| c["email"] == email);
    assert!(
        !in_b(&email),
        "the dead-lettered record is already in crm-b"
    );

    kit.db
        .insert_token("operator", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let mut shots = Screenshots::new(
        "console",
        &[("TinyCRM token", TOKEN), ("API token", API_TOKEN)],
    );
    let c = browser.open().await;

    // Sign in: a wrong token is refused on the form, the right one enters.
    c.goto(&format!("{url}/")).await.unwrap();
    wait(&c, "#login-view:not([hidden]) #token").await;
    shots.step(&c, "login").await;
    login(&c, "nexo_not_a_real_token").await;
    let error = wait_text(&c, "#login-error:not([hidden])", "not accepted").await;
    assert!(!error.contains("nexo_not_a_real_token"), "{error}");
    assert!(
        c.find(Locator::Css("#app"))
            .await
            .unwrap()
            .attr("hidden")
            .await
            .unwrap()
            .is_some(),
        "the console opened with a wrong token"
    );
    shots.step(&c, "login-rejected").await;
    login(&c, API_TOKEN).await;
    wait_text(&c, "#session-name", "token: operator").await;

    // Dashboard: both pipelines, the resync flagged by its failed last run.
    // (It re-renders every 5 s: wait_text finds the row afresh each time.)
    let resync = r#"tr[data-pipeline="contacts-full-resync"]"#;
    wait(&c, &format!("{resync}.row-failed")).await;
    wait_text(&c, resync, "failed").await;
    wait_text(&c, r#"tr[data-pipeline="contacts-to-crm-b"]"#, "succeeded").await;
    shots.step(&c, "dashboard").await;

    // Runs: open the failed run from the list.
    click(&c, r#"a[data-nav="runs"]"#).await;
    let row = format!(r#"tr[data-run="{}"]"#, failed_run.id);
    wait_text(&c, &row, "failed").await;
    shots.step(&c, "runs").await;
    click(&c, &format!("{row} a.run-link")).await;
    let status = wait(&c, "#run-status").await.text().await.unwrap();
    assert_eq!(status, "failed");
    // The error is in the run's header and, as its last line, in its log.
    let shown = wait(&c, ".callout-error").await.text().await.unwrap();
    assert!(
        shown.contains(&failed_error),
        "shown: {shown}\nerror: {failed_error}"
    );
    wait_text(&c, "#run-log", &failed_error).await;
    shots.step(&c, "failed-run").await;

    // Dead letters: replay the refused record; it must reach crm-b for real.
    click(&c, r#"a[data-nav="dlq"]"#).await;
    let replay = format!(r#"[data-replay="{}"]"#, letter.id);
    wait(&c, &replay).await;
    shots.step(&c, "dead-letters").await;
    click(&c, &replay).await;
    wait_text(
        &c,
        "#notice:not([hidden])",
        &format!("Dead letter #{} replayed", letter.id),
    )
    .await;
    shots.step(&c, "dead-letter-replayed").await;
    // The console only says so once the API answered, and a replay has
    // written by the time it answers.
    assert!(in_b(&email), "the replayed record is not in crm-b");
    let settled = kit.db.dead_letter(letter.id).unwrap().unwrap();
    assert_eq!(
        settled.status,
        nexo::sync::store::DeadLetterStatus::Replayed
    );

    // Lookup: the replayed customer, linked in both systems.
    click(&c, r#"a[data-nav="lookup"]"#).await;
    wait(&c, "#lookup-q").await.send_keys(&email).await.unwrap();
    click(&c, "#lookup-go").await;
    let card = wait(&c, ".entity").await;
    assert_eq!(c.find_all(Locator::Css(".entity")).await.unwrap().len(), 1);
    let mut connections = Vec::new();
    for cell in card
        .find_all(Locator::Css(
            "table.entity-records > tbody > tr > td:first-child",
        ))
        .await
        .unwrap()
    {
        connections.push(cell.text().await.unwrap());
    }
    connections.sort();
    assert_eq!(connections, ["crm-a", "crm-b"], "records of {email}");
    assert!(card.text().await.unwrap().contains(&email));
    shots.step(&c, "lookup").await;

    // Hosts: on SQLite the installation is one host, and the page says so.
    click(&c, r#"a[data-nav="hosts"]"#).await;
    wait_text(&c, "#hosts-single", "one host on SQLite").await;
    shots.step(&c, "hosts").await;

    // Audit: the replay made in this console, under the token's name.
    click(&c, r#"a[data-nav="audit"]"#).await;
    let trail = wait_text(&c, "table.audit", "dlq.replay").await;
    assert!(
        trail.contains("token:operator")
            && trail.contains(&format!("dlq/{}", letter.id))
            && trail.contains("\"status\": \"replayed\""),
        "{trail}"
    );
    assert!(
        wait_text(&c, "#session-name", "token:")
            .await
            .contains("(admin)"),
        "the session shows its role"
    );
    shots.step(&c, "audit").await;

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_hosts_sharing_a_postgresql_and_what_each_holds() {
    let browser = Browser::start("console-hosts").await;
    let kit = Kit::on_postgres(tinycrm::seed(1), Default::default(), 50).await;
    kit.apply(&pipeline("held-here", "", "", "")).await;
    kit.apply(&pipeline("held-there", "", "", "")).await;
    kit.db
        .insert_token("operator", API_TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    // Another host holds one pipeline; a third stopped.
    kit.db
        .register_host("host-b", "0.0.1", Some("10.0.0.2:7300"), 2)
        .unwrap();
    kit.db.register_host("host-c", "0.0.1", None, 4).unwrap();
    kit.db.host_stopped("host-c").unwrap();
    let claim = nexo::store::cluster::Claim::Manual;
    for (pipeline, host) in [("held-there", "host-b"), ("held-here", "host-a")] {
        assert!(
            kit.db
                .claim_pipeline(pipeline, host, 60_000, &claim)
                .unwrap()
                .is_some()
        );
    }
    let app = shared_app(&kit, "host-a", Default::default());
    let (url, stop, daemon) = serve(app, ServeConfig::default()).await;
    let mut shots = Screenshots::new("console-hosts", &[("API token", API_TOKEN)]);
    let c = browser.open().await;
    c.goto(&format!("{url}/#/hosts")).await.unwrap();
    wait(&c, "#login-view:not([hidden]) #token").await;
    login(&c, API_TOKEN).await;

    let this = r#"tr[data-host="host-a"]"#;
    wait(&c, &format!("{this}.row-this-host")).await;
    let row = wait_text(&c, this, "this host").await;
    assert!(row.contains("held-here") && row.contains("alive"), "{row}");
    assert!(row.contains(url.trim_start_matches("http://")), "{row}");
    let other = wait_text(&c, r#"tr[data-host="host-b"]"#, "held-there").await;
    assert!(
        other.contains("10.0.0.2:7300") && !other.contains("this host"),
        "{other}"
    );
    wait_text(&c, r#"tr[data-host="host-c"]"#, "stopped").await;
    // The pipeline a host holds links to its runs.
    click(&c, &format!("{this} .holding a")).await;
    wait(&c, r#"a[data-nav="runs"][aria-current="page"]"#).await;
    c.back().await.unwrap();
    wait(&c, this).await;
    shots.step(&c, "hosts").await;

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
}

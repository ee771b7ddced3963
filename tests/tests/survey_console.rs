//! The survey through the daemon: `POST /api/survey` on a real TinyCRM
//! holding a customer twice answers the same report as `nexo survey
//! --json` (and errors that name the thing), and the console's Survey
//! page, in a real headless Chromium, shows the duplicate and the records
//! a pipeline's gate would refuse. Screenshots in
//! `target/test-artifacts/survey/`.
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo xtask setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nexo::serve::ServeConfig;
use nexo::serve::clock::SystemClock;
use nexo::store::service::Role;
use nexo_tests::browser::{Browser, Screenshots, click, login, wait, wait_text};
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{Kit, TOKEN, pipeline};
use nexo_tests::tinycrm;
use serde_json::{Value, json};

const OPERATOR: &str = "nexo_survey_operator_71c3";

/// crm-a with a customer typed in again (e-mail in capitals, company as
/// "Limited") and a pipeline into crm-b whose mapper turns one record's
/// e-mail into a number; the ids of the copy and of that record.
async fn kit() -> (Kit, String, String) {
    let kit = Kit::new(tinycrm::seed(6), Default::default(), 4).await;
    let again = kit.a.insert(json!({
        "first_name": "Ada2", "last_name": "Lovelace", "email": "ADA2@Example.COM",
        "company": "Engines 2 Limited", "country": "gb"
    }));
    let dirty = kit
        .a
        .insert(json!({"first_name": "Bad", "last_name": "Type", "email": "bad@type.test"}));
    kit.apply(&pipeline(
        "a-to-b",
        "",
        &format!(
            "[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = {{ patch = {{ {dirty} = {{ email = 42 }} }} }}"
        ),
    ))
    .await;
    kit.db
        .insert_token("operator", OPERATOR, Role::Operator)
        .unwrap();
    (kit, again, dirty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_surveys_a_connection_read_only_and_names_what_it_cannot() {
    let (kit, again, dirty) = kit().await;
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let client = reqwest::Client::new();
    let post = async |body: Value| -> (u16, Value) {
        let resp = client
            .post(format!("{url}/api/survey"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    };

    let (status, report) = post(json!({"connection": "crm-a", "for_pipeline": "a-to-b"})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["connection"], "crm-a");
    let s = &report["streams"][0];
    assert_eq!(s["stream"], "contacts");
    assert_eq!(s["records"], 8);
    let dups = s["duplicates"].as_array().unwrap();
    let mut pair = vec!["c0002".to_string(), again.clone()];
    pair.sort();
    assert!(
        dups.iter()
            .any(|g| g["by"] == "email" && g["ids"] == json!(pair)),
        "{dups:?}"
    );
    assert_eq!(s["gate"]["failed"], 1, "{s}");
    assert_eq!(s["gate"]["failures"][0]["source_id"], json!(dirty));
    assert_eq!(s["gate"]["failures"][0]["field"], "email");
    assert!(kit.b.contacts().is_empty(), "the survey wrote to crm-b");

    for (body, code, needle) in [
        (
            json!({"connection": "crm-z"}),
            404,
            "no connection named `crm-z`",
        ),
        (
            json!({"connection": "crm-a", "streams": ["contcts"]}),
            400,
            "has no stream `contcts`",
        ),
        (
            json!({"connection": "crm-b", "for_pipeline": "a-to-b"}),
            400,
            "reads from connection `crm-a`, not `crm-b`",
        ),
        (
            json!({"connection": "crm-a", "for_pipeline": "nope"}),
            404,
            "no pipeline named `nope`",
        ),
        (
            json!({"connection": "crm-a", "similar": 2.0}),
            400,
            "similar must be between",
        ),
        (json!({"connexion": "crm-a"}), 400, "survey body"),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, code, "{body} → {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{body} → {answer}"
        );
    }
    let _ = stop.send(());
    daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survey_page_shows_the_duplicate_inside_a_system_and_what_the_gate_refuses() {
    let browser = Browser::start("survey").await;
    let (kit, again, dirty) = kit().await;
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let mut shots = Screenshots::new(
        "survey",
        &[("TinyCRM token", TOKEN), ("API token", OPERATOR)],
    );
    let c = browser.open().await;
    c.goto(&format!("{url}/")).await.unwrap();
    login(&c, OPERATOR).await;
    wait_text(&c, "#session-name", "token: operator").await;

    click(&c, r#"a[data-nav="survey"]"#).await;
    wait(&c, "#survey-connection").await;
    shots.step(&c, "survey-form").await;
    wait(&c, "#survey-connection")
        .await
        .select_by_value("crm-a")
        .await
        .unwrap();
    // Only pipelines reading from the chosen connection are offered.
    wait(&c, r#"#survey-pipeline option[value="a-to-b"]"#).await;
    wait(&c, "#survey-pipeline")
        .await
        .select_by_value("a-to-b")
        .await
        .unwrap();
    click(&c, "#survey-run").await;

    let stream = r#"article.survey-stream[data-stream="contacts"]"#;
    wait_text(&c, stream, "8 records").await;
    let email = wait_text(
        &c,
        &format!(r#"{stream} tr[data-duplicate="email"]"#),
        &again,
    )
    .await;
    assert!(
        email.contains("c0002") && email.contains("ada2@example.com"),
        "{email}"
    );
    wait_text(&c, &format!(r#"{stream} tr[data-field="email"]"#), "100%").await;
    let gate = wait_text(&c, "#survey-gate-contacts", "1 of 8 records would fail").await;
    assert!(gate.contains("7 pass"), "{gate}");
    let refused = wait_text(&c, &format!(r#"tr[data-refused="{dirty}"]"#), "email").await;
    assert!(refused.contains("gate"), "{refused}");
    shots.step(&c, "survey-report").await;

    // A connection the pipeline does not read from: the page says why.
    c.goto(&format!("{url}/#/survey?connection=crm-b&pipeline=a-to-b"))
        .await
        .unwrap();
    wait_text(&c, "#survey-error", "reads from connection `crm-a`").await;
    shots.step(&c, "survey-error").await;
    assert!(kit.b.contacts().is_empty(), "the survey wrote to crm-b");

    c.close().await.unwrap();
    drop(browser);
    let _ = stop.send(());
    daemon.await.unwrap();
}

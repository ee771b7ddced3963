//! `nexo survey` on a real TinyCRM holding the same customer twice: the
//! report counts the records, says how full each field is and in which
//! format, and names the duplicates inside the system — the same e-mail in
//! another case, the same company under another legal form, a misspelt
//! company — read-only, nothing written anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;
use serde_json::{Value, json};

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_names_the_duplicates_inside_a_system() {
    let kit = Kit::new(tinycrm::seed(6), Default::default(), 4).await;
    let d = kit.dir.path();
    // Typed in again by someone else: e-mail in capitals, company as
    // "Limited"; and a misspelt company of another customer.
    let again = kit.a.insert(json!({
        "first_name": "Ada2", "last_name": "Lovelace", "email": "ADA2@Example.COM",
        "company": "Engines 2 Limited", "country": "gb"
    }));
    let typo = kit.a.insert(json!({
        "first_name": "Grace", "last_name": "Hopper", "email": "grace@navy.example",
        "company": "Enginez 4 Ltd", "country": "us"
    }));
    let requests = kit.a.crm.lock().unwrap().requests.len();

    let out = ok(nexo(d, &["survey", "crm-a", "contacts", "--json"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    let s = &report["streams"][0];
    assert_eq!(s["stream"], "contacts");
    assert_eq!(s["records"], 8);
    let field = |f: &str| {
        s["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["field"] == f)
            .unwrap_or_else(|| panic!("no field {f} in {s}"))
            .clone()
    };
    assert_eq!(field("email")["fill_rate"], 1.0);
    assert_eq!(field("email")["formats"], json!([["email", 8]]));
    // Every third seeded contact has no company.
    assert_eq!(field("company")["filled"], 6);
    let groups: Vec<(String, Vec<String>)> = s["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["by"].as_str().unwrap().to_string(),
                serde_json::from_value(g["ids"].clone()).unwrap(),
            )
        })
        .collect();
    let has = |by: &str, ids: &[&str]| {
        let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        ids.sort();
        groups.contains(&(by.to_string(), ids))
    };
    assert!(has("email", &["c0002", &again]), "{groups:?}");
    assert!(has("name", &["c0002", &again]), "{groups:?}");
    assert!(has("similar-name", &["c0004", &typo]), "{groups:?}");
    // "Engines 1" and "Engines 5" are alike in letters, not the same.
    assert!(
        !groups
            .iter()
            .any(|(by, ids)| by == "similar-name" && ids.contains(&"c0001".to_string())),
        "{groups:?}"
    );

    // Read-only: only GETs reached the system.
    let crm = kit.a.crm.lock().unwrap();
    assert!(crm.requests.len() > requests, "the survey read nothing");
    assert!(
        crm.requests[requests..]
            .iter()
            .all(|r| r.starts_with("GET ")),
        "{:?}",
        &crm.requests[requests..]
    );
    drop(crm);

    let text = ok(nexo(d, &["survey", "crm-a"]));
    assert!(text.contains("crm-a/contacts: 8 records"), "{text}");
    assert!(text.contains("likely duplicates"), "{text}");
    let err = fails(nexo(d, &["survey", "crm-a", "contcts"]));
    assert!(
        err.contains("has no stream `contcts`") && err.contains("contacts"),
        "{err}"
    );
}

/// `--for PIPELINE`: the source stream's records go through the pipeline's
/// mappers and the destination's quality gate as a run would — a record the
/// mapper refuses and one the gate refuses are named with why — and
/// nothing is written to either system or the pipeline's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_for_a_pipeline_names_the_records_its_gate_would_refuse() {
    let kit = Kit::new(tinycrm::seed(5), Default::default(), 2).await;
    let d = kit.dir.path();
    let dirty = kit
        .a
        .insert(json!({"first_name": "Bad", "last_name": "Type", "email": "bad@type.test"}));
    let refused = kit
        .a
        .insert(json!({"first_name": "No", "last_name": "At", "email": "no-at-sign"}));
    kit.apply(&pipeline(
        "a-to-b",
        "",
        &format!(
            "[[mappers]]\nplugin = \"acme/test-mapper\"\nconfig = {{ patch = {{ {dirty} = {{ email = 42 }} }}, fail = {{ {refused} = \"no usable e-mail\" }} }}"
        ),
    ))
    .await;
    let before = (
        kit.a.crm.lock().unwrap().requests.len(),
        kit.b.crm.lock().unwrap().requests.len(),
    );

    let out = ok(nexo(d, &["survey", "crm-a", "--for", "a-to-b", "--json"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["for_pipeline"], "a-to-b", "{report}");
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(
        streams.len(),
        1,
        "only the pipeline's source stream: {report}"
    );
    let gate = &streams[0]["gate"];
    assert_eq!(gate["destination"], "crm-b/contacts", "{gate}");
    assert_eq!(
        (&gate["checked"], &gate["passed"], &gate["failed"]),
        (&json!(7), &json!(5), &json!(2)),
        "{gate}"
    );
    let failures = gate["failures"].as_array().unwrap();
    let of = |id: &str| {
        failures
            .iter()
            .find(|f| f["source_id"] == id)
            .unwrap_or_else(|| panic!("{id} not among the failures: {gate}"))
            .clone()
    };
    assert_eq!(of(&dirty)["step"], "gate", "{gate}");
    assert_eq!(of(&dirty)["field"], "email", "{gate}");
    assert_eq!(of(&refused)["step"], "mapper", "{gate}");
    assert!(
        of(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("no usable e-mail"),
        "{gate}"
    );

    let text = ok(nexo(d, &["survey", "crm-a", "--for", "a-to-b"]));
    assert!(
        text.contains("for pipeline a-to-b (into crm-b/contacts): 2 of 7 records would fail"),
        "{text}"
    );
    assert!(text.contains(&dirty) && text.contains(&refused), "{text}");

    // Nothing written: the source saw only GETs, the destination none of
    // its records changed, and the pipeline has no run.
    let a = kit.a.crm.lock().unwrap();
    assert!(
        a.requests[before.0..].iter().all(|r| r.starts_with("GET ")),
        "{:?}",
        &a.requests[before.0..]
    );
    drop(a);
    let b = kit.b.crm.lock().unwrap();
    assert!(
        b.requests[before.1..].iter().all(|r| r.starts_with("GET ")),
        "{:?}",
        &b.requests[before.1..]
    );
    drop(b);
    assert!(kit.b.contacts().is_empty());
    assert!(kit.runs("a-to-b").is_empty());

    // The pipeline must read from the connection surveyed.
    let err = fails(nexo(d, &["survey", "crm-b", "--for", "a-to-b"]));
    assert!(
        err.contains("pipeline `a-to-b` reads from connection `crm-a`, not `crm-b`"),
        "{err}"
    );
    let err = fails(nexo(d, &["survey", "crm-a", "--for", "b-to-a"]));
    assert!(err.contains("no pipeline named `b-to-a`"), "{err}");
    let err = fails(nexo(d, &["survey", "crm-z"]));
    assert!(
        err.contains("no connection named `crm-z`") && err.contains("crm-a, crm-b"),
        "{err}"
    );
}

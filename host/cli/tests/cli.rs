//! End to end through the `nexo` binary, as a vendor would use it: a plugin
//! built only with nexo-sdk is inspected and called (check, discover, read,
//! write) against a real TinyCRM server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use nexo_tests::{programs, tinycrm};
use serde_json::Value;

const TOKEN: &str = "tiny-token-5f2c9a";

struct Env {
    data: tempfile::TempDir,
    config: std::path::PathBuf,
    grant: String,
}

impl Env {
    fn new(crm: &tinycrm::Server, page_size: u32) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("config.json");
        let body = serde_json::json!({"base_url": crm.url(), "page_size": page_size});
        std::fs::write(&config, body.to_string()).unwrap();
        Env {
            data,
            config,
            grant: crm.url(),
        }
    }

    fn nexo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nexo"))
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .env("TINYCRM_TOKEN", TOKEN)
            .env("NEXO_LOG", "warn")
            .output()
            .unwrap()
    }

    fn call(&self, op: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "plugin",
            "call",
            programs::EXAMPLE_CRM,
            op,
            "--config",
            self.config.to_str().unwrap(),
            "--grant-private-http",
            &self.grant,
            "--secret",
            "api_token=env:TINYCRM_TOKEN",
        ];
        args.extend_from_slice(extra);
        self.nexo(&args)
    }
}

fn ok_json(out: Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nexo failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_world_versions_streams_and_capabilities() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let env = Env::new(&crm, 10);
    let out = env.nexo(&["plugin", "inspect", programs::EXAMPLE_CRM]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "local/example-crm@0.1.0",
        "world        nexo:connector/connector",
        "WIT version  1.1.0",
        "SDK          nexo-sdk 1.1.0",
        "streams      contacts",
        "api_token - TinyCRM API token",
        "\"base_url\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let doc = ok_json(env.nexo(&["plugin", "inspect", "--json", programs::CONTACT_MAPPER]));
    assert_eq!(doc["world"], "mapper");
    assert_eq!(doc["spec"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_discover_and_read_all_pages_through_the_cli() {
    let crm = tinycrm::start(tinycrm::seed(25), TOKEN).await;
    let env = Env::new(&crm, 10);

    assert_eq!(ok_json(env.call("check", &[]))["check"], "ok");

    let streams = ok_json(env.call("discover", &[]));
    assert_eq!(streams[0]["name"], "contacts");
    assert_eq!(streams[0]["cursor_field"], "updated_at");
    assert!(streams[0]["json_schema"]["properties"]["email"].is_object());

    let read = ok_json(env.call("read", &["--stream", "contacts", "--all-pages"]));
    assert_eq!(read["records"], 25);
    assert_eq!(read["pages"].as_array().unwrap().len(), 3);
    let mut ids: Vec<String> = read["pages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        25,
        "every contact exactly once, ties on updated_at included"
    );

    // A page limit reached is an error that says how to go on, and the
    // document written so far is still whole (before: exit 0, no word).
    let cut = env.call(
        "read",
        &["--stream", "contacts", "--all-pages", "--max-pages", "2"],
    );
    assert!(!cut.status.success());
    let err = String::from_utf8_lossy(&cut.stderr);
    assert!(
        err.contains("--max-pages 2") && err.contains("--state"),
        "{err}"
    );
    let partial: serde_json::Value = serde_json::from_slice(&cut.stdout).unwrap();
    assert_eq!(partial["records"], 20);
    assert_eq!(partial["pages"].as_array().unwrap().len(), 2);

    // Incremental: from the final state nothing is new; a change shows up.
    let state = read["state"].as_str().unwrap().to_string();
    let again = ok_json(env.call("read", &["--stream", "contacts", "--state", &state]));
    assert_eq!(again["records"], 0);
    {
        let mut crm = crm.crm.lock().unwrap();
        let c = crm.contacts.get_mut("c0003").unwrap();
        c["email"] = "new@example.com".into();
        c["updated_at"] = "2026-02-01T00:00:00Z".into();
    }
    let changed = ok_json(env.call("read", &["--stream", "contacts", "--state", &state]));
    assert_eq!(changed["records"], 1);
    assert_eq!(
        changed["pages"][0]["records"][0]["payload"]["email"],
        "new@example.com"
    );

    // The token reached the CRM; it is never printed.
    let crm = crm.crm.lock().unwrap();
    assert!(
        crm.auth_headers
            .iter()
            .all(|h| h == &format!("Bearer {TOKEN}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_reports_each_record_and_rejects_only_the_bad_one() {
    let crm = tinycrm::start(tinycrm::seed(2), TOKEN).await;
    let env = Env::new(&crm, 10);
    let input = env.data.path().join("batch.json");
    // An empty id asks the connector to create the record.
    let batch = serde_json::json!([
        {"id": "c0001", "payload": {"first_name": "Ada", "last_name": "King", "email": "ada@king.test", "updated_at": "x"}},
        {"id": "", "payload": {"first_name": "Grace", "last_name": "Hopper", "email": "grace@navy.test", "updated_at": "x"}},
        {"id": "", "payload": {"first_name": "Bad", "last_name": "Mail", "email": "not-an-email", "updated_at": "x"}},
    ]);
    std::fs::write(&input, batch.to_string()).unwrap();
    let results = ok_json(env.call(
        "write",
        &["--stream", "contacts", "--input", input.to_str().unwrap()],
    ));
    let outcomes: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["updated", "created", "failed"]);
    assert!(
        results[2]["detail"]
            .as_str()
            .unwrap()
            .contains("email is invalid")
    );
    assert_eq!(crm.crm.lock().unwrap().contacts.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_plugin_and_never_show_the_secret() {
    let crm = tinycrm::start(tinycrm::seed(1), "a-different-token").await;
    let env = Env::new(&crm, 10);
    let out = env.call("check", &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "plugin local/example-crm@0.1.0 failed in check: authentication failed: HTTP 401"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN) && !String::from_utf8_lossy(&out.stdout).contains(TOKEN));

    // Without the grant the plugin is refused by the host, and says so.
    let out = env.nexo(&[
        "plugin",
        "call",
        programs::EXAMPLE_CRM,
        "check",
        "--config",
        env.config.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("access denied") && stderr.contains("not granted"),
        "{stderr}"
    );

    // A bad config is refused before any request, naming the field.
    std::fs::write(&env.config, r#"{"base_url": 42}"#).unwrap();
    let out = env.call("check", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid config: field `base_url`"),
        "{stderr}"
    );
    // Secrets are never accepted on the command line.
    let out = env.nexo(&[
        "plugin",
        "call",
        programs::EXAMPLE_CRM,
        "check",
        "--secret",
        "api_token=hunter2",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be env:VAR or file:PATH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_maps_records_from_a_file() {
    let crm = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let env = Env::new(&crm, 10);
    let input = env.data.path().join("contacts.json");
    let records: Vec<Value> = tinycrm::seed(4)
        .into_values()
        .map(|c| serde_json::json!({"id": c["id"], "stream": "contacts", "payload": c}))
        .collect();
    std::fs::write(&input, Value::Array(records).to_string()).unwrap();
    let cfg = env.data.path().join("mapper.json");
    std::fs::write(&cfg, r#"{"only_stage": "customer", "system": "tinycrm"}"#).unwrap();
    let out = ok_json(env.nexo(&[
        "plugin",
        "call",
        programs::CONTACT_MAPPER,
        "map",
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]));
    // One outcome per input: the customers mapped, the others skipped.
    let outcomes = out.as_array().unwrap();
    assert_eq!(outcomes.len(), 4, "{out}");
    let out: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["outcome"] == "mapped")
        .map(|o| &o["records"][0])
        .collect();
    assert_eq!(out.len(), 2, "only the two customers: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o["outcome"] == "mapped" || o["outcome"] == "skipped")
    );
    assert_eq!(out[0]["stream"], "contacts");
    assert_eq!(out[0]["payload"]["roles"], serde_json::json!(["customer"]));
    assert_eq!(out[0]["payload"]["external_refs"][0]["system"], "tinycrm");
    assert_eq!(out[0]["payload"]["address"]["country"], "GB");
}

//! `nexo map preview` through the binary: a local component and an
//! installed mapper, text and JSON, records mapped, left out and failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nexo_tests::cli::{fails, ok};
use nexo_tests::programs;
use serde_json::{Value, json};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, v: &Value) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn nexo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nexo"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env("NEXO_LOG", "warn")
            .output()
            .unwrap()
    }
}

fn manifest(plugin: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(plugin)
        .join("nexo-plugin.toml")
}

fn deal(id: &str, stage: &str, currency: &str) -> Value {
    json!({"id": id, "stream": "deals", "payload": {
        "id": id,
        "properties": {"dealname": format!("Deal {id}"), "amount": "99.50", "dealstage": stage,
                       "closedate": "2024-05-02T12:00:00Z", "deal_currency_code": currency},
        "associations": {"companies": [{"id": "c1", "properties": {"name": "Initech"}}], "line_items": []}
    }})
}

#[test]
fn preview_of_a_local_component_shows_input_next_to_output() {
    let env = Env::new();
    let input = env.file(
        "deals.json",
        &json!([
            deal("1", "closedwon", "USD"),
            deal("2", "closedlost", "USD")
        ]),
    );
    let config = env.file("config.json", &json!({"default_tax_rate": "10"}));
    let args = [
        "map",
        "preview",
        "--component",
        programs::DEAL_TO_INVOICE,
        "--config",
        &config,
        "--input",
        &input,
    ];
    let text = ok(env.nexo(&args));
    for needle in [
        "mapper local/deal-to-invoice@0.1.0",
        "record 1 (deals → invoices)",
        "\"dealstage\": \"closedwon\"",
        "│   \"total\": \"109.45\"",
        "record 2 (left out)",
        "(left out by the mapper)",
        "2 records: 1 mapped, 1 left out, 0 failed",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v: Value = serde_json::from_str(&ok(env.nexo(&json_args))).unwrap();
    assert_eq!(v["batch_error"], Value::Null);
    assert_eq!(v["records"][0]["status"], "mapped");
    assert_eq!(v["records"][0]["output"]["stream"], "invoices");
    assert_eq!(v["records"][0]["output"]["payload"]["total"], "109.45");
    assert_eq!(v["records"][1]["status"], "left_out");
}

#[test]
fn preview_of_an_installed_mapper_names_the_failing_records() {
    let env = Env::new();
    let bundle = env.dir.path().join("d2i.nexo");
    let bundle = bundle.to_str().unwrap();
    ok(env.nexo(&[
        "plugin",
        "pack",
        "--manifest",
        manifest("deal-to-invoice").to_str().unwrap(),
        "--component",
        programs::DEAL_TO_INVOICE,
        "--unsigned",
        "--out",
        bundle,
    ]));
    ok(env.nexo(&[
        "plugin",
        "install",
        bundle,
        "--allow-unsigned",
        "--grant",
        "all",
    ]));
    let input = env.file(
        "deals.json",
        &json!([deal("1", "closedwon", "EUR"), deal("2", "closedwon", "XXX")]),
    );
    let out = env.nexo(&[
        "map",
        "preview",
        "--plugin",
        "nexo/deal-to-invoice@0.1.0",
        "--input",
        &input,
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = fails(out);
    // Contract 1.1: the mapper refuses the one deal, not the batch.
    assert!(err.contains("1 of 2 records fail"), "{err}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["plugin"], "nexo/deal-to-invoice@0.1.0");
    assert_eq!(v["batch_error"], Value::Null, "{v}");
    assert!(
        v["records"][1]["error"]
            .as_str()
            .unwrap()
            .contains("deal 2: properties.deal_currency_code"),
        "{v}"
    );
    assert_eq!(v["records"][0]["status"], "mapped");
    assert_eq!(v["records"][1]["status"], "failed");
    assert!(
        v["records"][1]["error"]
            .as_str()
            .unwrap()
            .contains("\"XXX\""),
        "{v}"
    );

    let err = fails(env.nexo(&["map", "preview", "--plugin", "nexo/nope", "--input", &input]));
    assert!(err.contains("nexo/nope"), "{err}");
    let err = fails(env.nexo(&["map", "preview", "--input", &input]));
    assert!(
        err.contains("--plugin") && err.contains("--component"),
        "{err}"
    );
}

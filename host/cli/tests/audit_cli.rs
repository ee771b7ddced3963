//! The audit trail as an admin at the host's command line leaves it: every
//! change made with `nexo` — plugins, trust, connections, pipelines,
//! tokens — is recorded exactly once, by the person (`cli:USER`), with how
//! it was and is; no secret value reaches the trail, its export or the
//! database file; and the trail cannot be rewritten.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::{programs, tinycrm};
use serde_json::Value;

/// A value the admin sets as a connection's secret.
const NEW_TOKEN: &str = "crm-token-rotated-5b9e21";

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .env("NEXO_ACTOR", "ana")
        .env("NEW_CRM_TOKEN", NEW_TOKEN)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_at_the_command_line_is_recorded_once_without_secrets() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    let d = kit.dir.path();
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let mut secrets: Vec<String> = vec![NEW_TOKEN.into(), nexo_tests::synckit::TOKEN.into()];

    // Plugins and trust: a vendor's key, a plugin installed and removed,
    // the kit's connector upgraded and rolled back.
    ok(nexo(
        d,
        &[
            "plugin",
            "keygen",
            "--name",
            "Examples",
            "--out",
            &p("v.key"),
        ],
    ));
    ok(nexo(d, &["trust", "add", &p("v.key.pub")]));
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example-crm/nexo-plugin.toml");
    ok(nexo(
        d,
        &[
            "plugin",
            "pack",
            "--manifest",
            manifest.to_str().unwrap(),
            "--component",
            programs::EXAMPLE_CRM,
            "--key",
            &p("v.key"),
            "--out",
            &p("crm.nexo"),
        ],
    ));
    ok(nexo(
        d,
        &["plugin", "install", &p("crm.nexo"), "--grant", "all"],
    ));
    ok(nexo(d, &["plugin", "remove", "nexo-examples/tinycrm"]));
    std::fs::write(p("crm-1.1.0.nexo"), kit.crm_bundle("1.1.0").await).unwrap();
    ok(nexo(
        d,
        &[
            "plugin",
            "upgrade",
            "acme/crm",
            &p("crm-1.1.0.nexo"),
            "--grant",
            "all",
        ],
    ));
    ok(nexo(d, &["plugin", "rollback", "acme/crm"]));
    let key_id = ok(nexo(d, &["trust", "list"]))
        .lines()
        .find(|l| l.contains("Examples"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    ok(nexo(d, &["trust", "remove", &key_id]));

    // Connections: one added and removed, one given a new secret.
    std::fs::write(p("c.json"), format!(r#"{{"base_url": "{}"}}"#, kit.a.url())).unwrap();
    ok(nexo(
        d,
        &[
            "connection",
            "add",
            "crm-c",
            "--plugin",
            "acme/crm",
            "--config",
            &p("c.json"),
            "--secret",
            "api_token=env:NEW_CRM_TOKEN",
            "--grant-private-http",
            &kit.a.url(),
        ],
    ));
    ok(nexo(
        d,
        &[
            "connection",
            "update",
            "crm-a",
            "--secret",
            "api_token=env:NEW_CRM_TOKEN",
        ],
    ));
    ok(nexo(d, &["connection", "remove", "crm-c"]));

    // A pipeline through its life.
    std::fs::write(p("a-to-b.toml"), pipeline("a-to-b", "", "")).unwrap();
    ok(nexo(d, &["pipeline", "apply", &p("a-to-b.toml")]));
    ok(nexo(d, &["pipeline", "pause", "a-to-b"]));
    ok(nexo(d, &["pipeline", "resume", "a-to-b"]));
    ok(nexo(d, &["pipeline", "reset", "a-to-b"]));
    secrets.push(
        ok(nexo(d, &["pipeline", "webhook", "a-to-b"]))
            .trim()
            .to_string(),
    );
    ok(nexo(d, &["pipeline", "remove", "a-to-b"]));

    // Alerts: a channel with its signing secret, a rule on it; both removed.
    ok(nexo(
        d,
        &[
            "alert",
            "channel",
            "add",
            "ops-hook",
            "--webhook",
            "http://127.0.0.1:9/alerts",
            "--secret",
            "env:NEW_CRM_TOKEN",
        ],
    ));
    ok(nexo(
        d,
        &[
            "alert",
            "rule",
            "add",
            "failing",
            "--when",
            "run-failed",
            "--channel",
            "ops-hook",
        ],
    ));
    ok(nexo(d, &["alert", "rule", "remove", "failing"]));
    ok(nexo(d, &["alert", "channel", "remove", "ops-hook"]));

    // Tokens.
    secrets.push(
        ok(nexo(
            d,
            &["token", "create", "--name", "ops", "--role", "operator"],
        ))
        .trim()
        .to_string(),
    );
    ok(nexo(d, &["token", "revoke", "ops"]));

    // Refused changes change nothing and record nothing.
    fails(nexo(d, &["pipeline", "pause", "no-such-pipeline"]));
    fails(nexo(d, &["token", "revoke", "ops"]));
    let err = fails(nexo(
        d,
        &["token", "create", "--name", "x", "--role", "root"],
    ));
    assert!(err.contains("`root` is not a role"), "{err}");

    let trail: Vec<Value> =
        serde_json::from_str(&ok(nexo(d, &["audit", "--json", "--limit", "0"]))).unwrap();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in &trail {
        *count
            .entry(e["action"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert_eq!(e["actor"], "cli:ana", "{e}");
    }
    let expected = [
        "trust.add",
        "plugin.install",
        "plugin.remove",
        "plugin.upgrade",
        "plugin.rollback",
        "trust.remove",
        "connection.add",
        "connection.update",
        "connection.remove",
        "pipeline.apply",
        "pipeline.pause",
        "pipeline.resume",
        "pipeline.reset",
        "pipeline.webhook-secret",
        "pipeline.remove",
        "token.create",
        "token.revoke",
        "alert.channel.add",
        "alert.rule.add",
        "alert.rule.remove",
        "alert.channel.remove",
    ];
    let expected: BTreeMap<String, usize> = expected.iter().map(|a| (a.to_string(), 1)).collect();
    assert_eq!(count, expected, "{trail:#?}");

    // Oldest first in the export, with before and after.
    let export = ok(nexo(d, &["audit", "--export", "-"]));
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), trail.len());
    assert_eq!(lines[0]["action"], "trust.add");
    let upgrade = lines
        .iter()
        .find(|e| e["action"] == "plugin.upgrade")
        .unwrap();
    assert_eq!(upgrade["before"]["version"], "1.0.0", "{upgrade}");
    assert_eq!(upgrade["after"]["version"], "1.1.0", "{upgrade}");
    let update = lines
        .iter()
        .find(|e| e["action"] == "connection.update")
        .unwrap();
    assert_eq!(update["target"], "connection/crm-a");
    assert_eq!(
        update["after"]["secrets_replaced"],
        serde_json::json!(["api_token"])
    );
    let pause = lines
        .iter()
        .find(|e| e["action"] == "pipeline.pause")
        .unwrap();
    assert_eq!(
        (&pause["before"]["paused"], &pause["after"]["paused"]),
        (&Value::Bool(false), &Value::Bool(true))
    );
    let filtered = ok(nexo(d, &["audit", "--target", "pipeline/", "--json"]));
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&filtered).unwrap().len(),
        6,
        "{filtered}"
    );

    // No secret value anywhere in the trail or the database file.
    let text = ok(nexo(d, &["audit"]));
    let file = std::fs::read(d.join("nexo.db")).unwrap();
    for secret in &secrets {
        assert!(secret.len() > 8, "{secret:?}");
        for (what, hay) in [
            ("text", text.as_bytes()),
            ("export", export.as_bytes()),
            ("nexo.db", &file),
        ] {
            assert!(
                !hay.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret is in the audit {what}"
            );
        }
    }

    // The trail cannot be rewritten, even with the database in hand.
    let db = nexo::store::Database::open(&d.join("nexo.db")).unwrap();
    let e = db
        .lock()
        .unwrap()
        .execute("DELETE FROM audit", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

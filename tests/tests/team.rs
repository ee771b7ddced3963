//! Running Nexo as a team through the admin API: every endpoint of the
//! OpenAPI document refuses a token whose role is below the one the
//! document states (so an endpoint added without a role fails here), and
//! every change made through the API is in the audit trail once, under the
//! token that made it, with no secret value in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use nexo::serve::ServeConfig;
use nexo::serve::clock::SystemClock;
use nexo::store::service::Role;
use nexo_tests::daemon::{app, serve};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::tinycrm;
use serde_json::{Value, json};

const DOCUMENT: &str = include_str!("../../host/daemon/src/openapi.json");
/// The router's source: every route it serves must be in the document.
const ROUTER: [&str; 2] = [
    include_str!("../../host/daemon/src/api.rs"),
    include_str!("../../host/daemon/src/lib.rs"),
];

fn token(role: Role) -> String {
    format!("nexo_team_{role}_4f1c0a")
}

/// The routes of the router's source: `.route("PATH", …)`.
fn routes() -> Vec<String> {
    let mut out = Vec::new();
    for source in ROUTER {
        for piece in source.split(".route(").skip(1) {
            let path = piece.trim_start().trim_start_matches('"');
            out.push(path.split('"').next().unwrap().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_a_role_below_its_own() {
    let kit = Kit::new(tinycrm::seed(2), Default::default(), 10).await;
    for role in Role::ALL {
        kit.db
            .insert_token(&role.to_string(), &token(role), role)
            .unwrap();
    }
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for route in routes() {
        assert!(
            paths.contains_key(&route),
            "the router serves {route}, which the API document does not list (so it has no role)"
        );
    }
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let role = op["x-nexo-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} states no x-nexo-role"));
            if role == "public" {
                assert_eq!(
                    op["security"],
                    json!([]),
                    "{method} {path} is public but the document asks for a token"
                );
                continue;
            }
            let needed: Role = role
                .parse()
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            // Parameters name nothing that exists: an allowed call stops
            // at a 4xx of its own and changes nothing.
            let concrete = path
                .replace("{name}", "no-such-thing")
                .replace("{id}", "999999");
            let call = |bearer: Option<String>| {
                let mut req = client.request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{url}{concrete}"),
                );
                if let Some(t) = bearer {
                    req = req.bearer_auth(t);
                }
                req.send()
            };
            let status = call(None).await.unwrap().status().as_u16();
            assert_eq!(status, 401, "{method} {path} without a token");
            for role in Role::ALL {
                let resp = call(Some(token(role))).await.unwrap();
                let status = resp.status().as_u16();
                if role < needed {
                    let body: Value = resp.json().await.unwrap();
                    assert_eq!(status, 403, "{method} {path} as {role}: {body}");
                    let error = body["error"].as_str().unwrap();
                    assert!(
                        error.contains(&format!("is a {role}"))
                            && error.contains(&format!("needs {needed}")),
                        "{method} {path} as {role}: {error}"
                    );
                } else {
                    assert!(
                        status != 401 && status != 403,
                        "{method} {path} as {role} (needs {needed}): {status}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 90, "only {checked} calls checked");
    // The console learns the role at sign-in.
    let session: Value = client
        .get(format!("{url}/api/session"))
        .bearer_auth(token(Role::Operator))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["role"], "operator", "{session}");
    let _ = stop.send(());
    daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_through_the_api_is_recorded_once_by_its_token() {
    const SECRET: &str = "crm-token-from-the-api-7d20c4";
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    kit.db
        .insert_token("ana", &token(Role::Admin), Role::Admin)
        .unwrap();
    kit.db
        .insert_token("olu", &token(Role::Operator), Role::Operator)
        .unwrap();
    let (url, stop, daemon) = serve(app(&kit, Arc::new(SystemClock)), ServeConfig::default()).await;
    let client = reqwest::Client::new();
    let call = async |role: Role, method: &str, path: &str, body: Option<Value>| -> Value {
        let mut req = client
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .bearer_auth(token(role));
        if let Some(b) = body {
            req = match b {
                Value::String(text) => req.body(text),
                b => req.json(&b),
            };
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };

    // The admin: a connection added, given a new secret, removed; a
    // pipeline applied (held conflicts) and, at the end, removed.
    call(
        Role::Admin,
        "POST",
        "/api/connections",
        Some(json!({
            "name": "crm-c", "plugin": "acme/crm", "environment": "sandbox",
            "config": {"base_url": kit.a.url()}, "secrets": {"api_token": SECRET},
            "grants": {"http": [], "private_http": [kit.a.url()]}
        })),
    )
    .await;
    call(
        Role::Admin,
        "PATCH",
        "/api/connections/crm-c",
        Some(json!({"secrets": {"api_token": format!("{SECRET}-2")}})),
    )
    .await;
    call(Role::Admin, "DELETE", "/api/connections/crm-c", None).await;
    call(
        Role::Admin,
        "PUT",
        "/api/pipelines/a-to-b",
        Some(Value::String(pipeline(
            "a-to-b",
            "",
            "[conflicts]\npolicy = \"hold\"",
        ))),
    )
    .await;

    // The operator: pause, resume; a dead letter discarded and one
    // replayed; a conflict resolved.
    call(Role::Operator, "POST", "/api/pipelines/a-to-b/pause", None).await;
    call(Role::Operator, "POST", "/api/pipelines/a-to-b/resume", None).await;
    kit.run("a-to-b").await;
    // Two records refused once each by the destination: dead letters.
    let mut letters = Vec::new();
    for n in 0..2 {
        kit.b.crm.lock().unwrap().reject_writes = 1;
        kit.a.insert(
            json!({"first_name": "Late", "last_name": format!("N{n}"), "email": format!("late{n}@example.com")}),
        );
        kit.run("a-to-b").await;
        let open = call(Role::Operator, "GET", "/api/dlq", None).await;
        let newest = open
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .max()
            .unwrap();
        letters.push(newest);
    }
    let (letter, letter2) = (letters[0], letters[1]);
    call(
        Role::Operator,
        "POST",
        &format!("/api/dlq/{letter}/discard"),
        None,
    )
    .await;
    call(
        Role::Operator,
        "POST",
        &format!("/api/dlq/{letter2}/replay"),
        None,
    )
    .await;
    let a0 = kit.a.contacts()[0].clone();
    let b0 = kit
        .b
        .contacts()
        .into_iter()
        .find(|c| c["email"] == a0["email"])
        .unwrap();
    kit.b.edit(b0["id"].as_str().unwrap(), "city", "Milan");
    kit.a.edit(a0["id"].as_str().unwrap(), "city", "Paris");
    kit.run("a-to-b").await;
    let conflicts = call(Role::Operator, "GET", "/api/conflicts", None).await;
    let conflict = conflicts[0]["id"].as_i64().unwrap();
    call(
        Role::Operator,
        "POST",
        &format!("/api/conflicts/{conflict}/resolve"),
        Some(json!({"keep": "destination"})),
    )
    .await;
    call(Role::Admin, "DELETE", "/api/pipelines/a-to-b", None).await;

    // Reads and refused calls record nothing.
    call(Role::Operator, "GET", "/api/pipelines", None).await;
    let refused = client
        .delete(format!("{url}/api/connections/crm-a"))
        .bearer_auth(token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let trail = call(Role::Operator, "GET", "/api/audit?limit=1000", None).await;
    let entries = trail["entries"].as_array().unwrap();
    let got: Vec<(String, String, String)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        (
            "token:ana",
            "connection.add",
            "connection/crm-c".to_string(),
        ),
        ("token:ana", "connection.update", "connection/crm-c".into()),
        ("token:ana", "connection.remove", "connection/crm-c".into()),
        ("token:ana", "pipeline.apply", "pipeline/a-to-b".into()),
        ("token:olu", "pipeline.pause", "pipeline/a-to-b".into()),
        ("token:olu", "pipeline.resume", "pipeline/a-to-b".into()),
        ("token:olu", "dlq.discard", format!("dlq/{letter}")),
        ("token:olu", "dlq.replay", format!("dlq/{letter2}")),
        (
            "token:olu",
            "conflict.resolve",
            format!("conflict/{conflict}"),
        ),
        ("token:ana", "pipeline.remove", "pipeline/a-to-b".into()),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c))
    .collect();
    assert_eq!(got, want);
    let by_action: BTreeMap<&str, &Value> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e))
        .collect();
    let update = by_action["connection.update"];
    assert_eq!(update["after"]["secrets_replaced"], json!(["api_token"]));
    assert_eq!(update["before"]["secrets"], json!(["api_token"]));
    assert_eq!(by_action["dlq.replay"]["after"]["status"], "replayed");
    assert_eq!(
        by_action["conflict.resolve"]["after"]["kept"],
        "destination"
    );
    assert!(
        by_action["pipeline.remove"]["before"]["definition"]["name"] == "a-to-b"
            && by_action["pipeline.remove"]["after"].is_null()
    );

    // The export holds the same, oldest first; no secret anywhere.
    let export = client
        .get(format!("{url}/api/audit/export?actor=token:olu"))
        .bearer_auth(token(Role::Operator))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["action"], "pipeline.pause");
    let all = serde_json::to_string(&trail).unwrap();
    let file = std::fs::read(kit.dir.path().join("nexo.db")).unwrap();
    for hay in [all.as_bytes(), export.as_bytes(), &file] {
        assert!(
            !hay.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "a secret value is in the audit trail or the database"
        );
    }
    let _ = stop.send(());
    daemon.await.unwrap();
}

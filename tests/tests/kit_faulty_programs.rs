//! The conformance kit's seeded-fault programs, called directly against a
//! real TinyCRM: each fault of `kit-faulty-connector` (chosen by its config)
//! and of `kit-faulty-mapper` is real at the plugin level, and the control
//! (`"fault": "none"`) shows none of them — so when the kit flags a fault, it
//! is the plugin's, and when it passes the control, the control is correct.
//! `kit-wide-connector` is the same connector with an origin in its spec it
//! never uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use nexo::plugin::{MapOutcome, Operation, Record};
use nexo::sandbox::http::HttpError;
use nexo::state::SandboxEvent;
use nexo::{ConnectorPlugin, GuestError, MapperPlugin};
use nexo_tests::connkit::{self, guest_error, id_of, write_upsert};
use nexo_tests::programs;
use nexo_tests::tinycrm::{self, Server};
use serde_json::{Value, json};

const TOKEN: &str = "kit-faulty-token-5e1";
const STREAM: &str = "contacts";

/// A TinyCRM with `n` contacts and the connector `component` opened on it,
/// with the token `token` (TinyCRM accepts only [`TOKEN`]).
async fn crm(component: &str, n: usize, token: &str) -> (Server, ConnectorPlugin) {
    let server = tinycrm::start(tinycrm::seed(n), TOKEN).await;
    let plugin = connkit::open(
        component,
        "test/kit-faulty-connector",
        &server.url(),
        &[("api_token", token)],
    )
    .await;
    (server, plugin)
}

/// The config of a connection to `server` with `fault`, 3 contacts a page.
fn config(server: &Server, fault: &str) -> String {
    json!({"base_url": server.url(), "page_size": 3, "fault": fault}).to_string()
}

fn ids(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_reads_incrementally_and_writes_in_the_protocol() {
    let (crm, c) = crm(programs::KIT_FAULTY_CONNECTOR, 7, TOKEN).await;
    let config = config(&crm, "none");
    c.check(&config).await.into_result().unwrap();
    let streams = c.discover(&config).await.into_result().unwrap();
    let shape: Vec<_> = streams
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.primary_key.clone(),
                s.cursor_field.as_deref(),
                s.can_read,
                s.can_write,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [(
            STREAM,
            vec!["id".to_string()],
            Some("updated_at"),
            true,
            true
        )]
    );
    let schema: Value = serde_json::from_str(&c.spec().config_schema).unwrap();
    assert_eq!(schema["required"], json!(["base_url"]));
    assert_eq!(schema["properties"]["page_size"]["default"], 50);
    let fault = &schema["properties"]["fault"];
    assert_eq!(fault["default"], "none");
    assert_eq!(
        fault["enum"],
        json!([
            "none",
            "duplicate-on-lost-answer",
            "ignores-state",
            "non-granted-origin",
            "auth-as-internal",
            "loses-ties"
        ])
    );

    // Seven contacts over three pages, each once; then nothing new.
    let (first, state) = connkit::read_all(&c, &config, STREAM, None).await;
    assert_eq!(first.len(), 7, "{first:?}");
    assert_eq!(ids(&first).len(), 7, "each contact once");
    let (again, state) = connkit::read_all(&c, &config, STREAM, state).await;
    assert!(again.is_empty(), "nothing changed: {again:?}");
    crm.edit("c0002", "city", "Paris");
    crm.delete("c0005");
    let (changes, _) = connkit::read_all(&c, &config, STREAM, state).await;
    let changes: Vec<(&str, Operation)> = changes
        .iter()
        .map(|r| (r.id.as_str(), r.operation))
        .collect();
    assert_eq!(
        changes,
        [("c0002", Operation::Upsert), ("c0005", Operation::Delete)]
    );

    // Create, replay of the same create (a lost answer), update, delete.
    let ada = json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com"});
    let created = write_upsert(&c, &config, STREAM, "", "key-1", &ada).await;
    let id = id_of(&created[0]);
    assert_eq!(created, [format!("created {id}")]);
    let replayed = write_upsert(&c, &config, STREAM, "", "key-1", &ada).await;
    assert_eq!(replayed, [format!("unchanged {id}")]);
    assert_eq!(crm.crm.lock().unwrap().creates, 1, "the key made it one");
    // A replay whose record changed since brings the contact up to date.
    let moved = json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com", "city": "Bath"});
    let replayed = write_upsert(&c, &config, STREAM, "", "key-1", &moved).await;
    assert_eq!(replayed, [format!("updated {id}")]);
    assert_eq!(crm.contact(&id).unwrap()["city"], "Bath");
    let moved = json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com", "city": "York"});
    let updated = write_upsert(&c, &config, STREAM, &id, "key-2", &moved).await;
    assert_eq!(updated, [format!("updated {id}")]);
    assert_eq!(crm.contact(&id).unwrap()["city"], "York");
    assert_eq!(crm.crm.lock().unwrap().creates, 1);
    let deleted = connkit::write(&c, &config, STREAM, &[connkit::delete(STREAM, &id, "k3")]).await;
    assert_eq!(deleted, [format!("deleted {id}")]);
    assert!(crm.contact(&id).is_none());

    // A refused record fails alone; a 5xx ends the call as transient.
    let bad = json!({"first_name": "No", "last_name": "Mail", "email": "not an address"});
    let refused = write_upsert(&c, &config, STREAM, "", "key-4", &bad).await;
    assert!(refused[0].starts_with("failed: rejected"), "{refused:?}");
    crm.crm.lock().unwrap().fail_writes = 1;
    let batch = [connkit::upsert(STREAM, "c0001", "key-5", &ada)];
    let err = c
        .write(&config, STREAM, &batch)
        .await
        .into_result()
        .unwrap_err();
    assert!(
        matches!(guest_error(&err), Some(GuestError::Transient(_))),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_on_lost_answer_creates_a_second_contact_on_a_retry() {
    let ada = json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com"});
    let mut created = BTreeMap::new();
    for fault in ["none", "duplicate-on-lost-answer"] {
        let (crm, c) = crm(programs::KIT_FAULTY_CONNECTOR, 0, TOKEN).await;
        let config = config(&crm, fault);
        // The host retries a create whose answer it lost with the same key.
        write_upsert(&c, &config, STREAM, "", "key-1", &ada).await;
        let retried = write_upsert(&c, &config, STREAM, "", "key-1", &ada).await;
        let creates = crm.crm.lock().unwrap().creates;
        created.insert(
            fault,
            (creates, retried[0].split(' ').next().unwrap().to_string()),
        );
        let keys = crm
            .crm
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.contains("key=key-1"))
            .count();
        assert_eq!(keys, if fault == "none" { 2 } else { 0 }, "{fault}");
    }
    assert_eq!(created["none"], (1, "unchanged".to_string()));
    assert_eq!(
        created["duplicate-on-lost-answer"],
        (2, "created".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignores_state_reads_everything_again_from_the_final_state() {
    let mut reread = BTreeMap::new();
    for fault in ["none", "ignores-state"] {
        let (crm, c) = crm(programs::KIT_FAULTY_CONNECTOR, 7, TOKEN).await;
        let config = config(&crm, fault);
        let (first, state) = connkit::read_all(&c, &config, STREAM, None).await;
        assert_eq!(ids(&first).len(), 7, "{fault}: the first pass ends");
        let (again, _) = connkit::read_all(&c, &config, STREAM, state).await;
        reread.insert(fault, again.len());
    }
    assert_eq!(reread["none"], 0);
    assert_eq!(reread["ignores-state"], 7, "every contact again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loses_ties_drops_a_record_sharing_its_timestamp_across_a_page_boundary() {
    let mut read = BTreeMap::new();
    for fault in ["none", "loses-ties"] {
        // `seed` gives c0002k and c0002k+1 the same `updated_at`.
        let (crm, c) = crm(programs::KIT_FAULTY_CONNECTOR, 12, TOKEN).await;
        let config = json!({"base_url": crm.url(), "page_size": 5, "fault": fault}).to_string();
        let (records, state) = connkit::read_all(&c, &config, STREAM, None).await;
        assert_eq!(ids(&records).len(), records.len(), "{fault}: each once");
        let (again, _) = connkit::read_all(&c, &config, STREAM, state).await;
        assert!(again.is_empty(), "{fault}: the read ends: {again:?}");
        read.insert(fault, ids(&records));
    }
    assert_eq!(read["none"].len(), 12);
    // Page 1: c0001-c0005, ending on a whole pair. Page 2 asks for rows at
    // or after c0005's second, drops the two it has seen and keeps
    // c0006-c0008, ending between c0008 and c0009 (the same second). Page 3
    // drops every row at that second: c0009 too.
    let lost: Vec<&String> = read["none"].difference(&read["loses-ties"]).collect();
    assert_eq!(lost, ["c0009"]);
    assert!(read["loses-ties"].is_subset(&read["none"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_granted_origin_calls_telemetry_in_every_read_and_is_refused() {
    for fault in ["none", "non-granted-origin"] {
        let (crm, c) = crm(programs::KIT_FAULTY_CONNECTOR, 4, TOKEN).await;
        let config = config(&crm, fault);
        let mut state = None;
        for _ in 0..2 {
            let out = c.read(&config, STREAM, state.as_deref()).await;
            let refused: Vec<&String> = out
                .events
                .iter()
                .filter_map(|e| match e {
                    SandboxEvent::HttpRefused(HttpError::OriginNotAllowed(m)) => Some(m),
                    _ => None,
                })
                .collect();
            if fault == "none" {
                assert!(out.events.is_empty(), "{:?}", out.events);
            } else {
                assert!(
                    matches!(refused.as_slice(), [m] if m.contains("telemetry.example.com")),
                    "{:?}",
                    out.events
                );
            }
            // The refusal is ignored: the read itself goes on.
            state = out.result.unwrap().state;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_as_internal_reports_a_refused_token_as_internal() {
    for fault in ["none", "auth-as-internal"] {
        let (crm, c) = crm(programs::KIT_FAULTY_CONNECTOR, 2, "not-the-token").await;
        let config = config(&crm, fault);
        let ada = json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com"});
        let errors = [
            c.check(&config).await.into_result().unwrap_err(),
            c.read(&config, STREAM, None)
                .await
                .into_result()
                .unwrap_err(),
            c.write(&config, STREAM, &[connkit::upsert(STREAM, "", "k", &ada)])
                .await
                .into_result()
                .unwrap_err(),
        ];
        for e in &errors {
            let classified = match guest_error(e) {
                Some(GuestError::Auth(_)) => "auth",
                Some(GuestError::Internal(m)) if m.contains("401") => "internal",
                _ => panic!("{fault}: {e}"),
            };
            let expected = if fault == "none" { "auth" } else { "internal" };
            assert_eq!(classified, expected, "{fault}: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wide_connector_asks_for_an_origin_it_never_uses() {
    let (crm, faulty) = crm(programs::KIT_FAULTY_CONNECTOR, 0, TOKEN).await;
    let wide = connkit::open(
        programs::KIT_WIDE_CONNECTOR,
        "test/kit-wide-connector",
        &crm.url(),
        &[("api_token", TOKEN)],
    )
    .await;
    let origins = |c: &ConnectorPlugin| c.spec().capabilities.http_origins.clone();
    assert_eq!(origins(&faulty), ["http://*:*", "https://*:*"]);
    assert_eq!(
        origins(&wide),
        ["http://*:*", "https://*:*", "https://analytics.example.com"]
    );
    // Otherwise the same connector: it reads and writes TinyCRM, and calls
    // no other origin.
    crm.insert(json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com"}));
    let config = config(&crm, "none");
    let out = wide.read(&config, STREAM, None).await;
    assert!(out.events.is_empty(), "{:?}", out.events);
    assert_eq!(out.result.unwrap().records.len(), 1);
    let requests = crm.crm.lock().unwrap().requests.clone();
    assert!(
        requests.iter().all(|r| r.starts_with("GET /api/contacts")),
        "{requests:?}"
    );
}

fn mapper() -> MapperPlugin {
    connkit::open_mapper(programs::KIT_FAULTY_MAPPER, "test/kit-faulty-mapper")
}

fn batch() -> Vec<Record> {
    let record = |id: &str, payload: Value| Record {
        stream: STREAM.into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(format!("cursor-{id}")),
    };
    vec![
        record("c1", json!({"email": "a@example.com"})),
        record("c2", json!({"email": "b@example.com", "skip": true})),
        record("c3", json!({"email": "c@example.com", "fail": true})),
        connkit::delete(STREAM, "c4", "cursor-c4"),
    ]
}

/// One line per outcome: `mapped ID PAYLOAD…`, `failed: …`.
fn lines(outcomes: Vec<MapOutcome>) -> Vec<String> {
    outcomes
        .into_iter()
        .map(|o| match o {
            MapOutcome::Mapped(records) => {
                let each: Vec<String> = records
                    .iter()
                    .map(|r| format!("{} {:?} {}", r.id, r.operation, r.payload))
                    .collect();
                format!("mapped [{}]", each.join(", "))
            }
            MapOutcome::Failed(e) => format!("failed: {e}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapper_is_deterministic_unless_its_fault_says_otherwise() {
    let m = mapper();
    let map = |config: &'static str, m: MapperPlugin| async move {
        lines(m.map(config, &batch()).await.into_result().unwrap())
    };
    let control = r#"{"fault": "none"}"#;
    let first = map(control, m.clone()).await;
    assert_eq!(
        first[..2],
        [
            r#"mapped [c1 Upsert {"email":"a@example.com","mapped":true}]"#,
            "mapped []",
        ]
    );
    assert!(
        first[2].starts_with("failed: rejected: record c3"),
        "{first:?}"
    );
    assert_eq!(first[3], "mapped [c4 Delete {}]");
    assert_eq!(
        map(control, m.clone()).await,
        first,
        "same input, same output"
    );
    assert_eq!(
        map(control, mapper()).await,
        first,
        "in a fresh instance too"
    );

    let faulty = r#"{"fault": "non-deterministic"}"#;
    let one = map(faulty, m.clone()).await;
    assert!(one[0].contains(r#""stamp":"#), "{one:?}");
    assert_ne!(map(faulty, m).await[0], one[0], "two calls differ");
    assert_ne!(
        map(faulty, mapper()).await[0],
        one[0],
        "a fresh instance differs too"
    );
    assert_eq!(one[1..], first[1..], "only the mapped record carries it");
}

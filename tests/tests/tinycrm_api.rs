//! The example connector against a real TinyCRM, as the sync engine will
//! drive it: idempotent creates that survive lost answers, injected
//! failures classified as transient, deletes read back as tombstones, and
//! server-stamped changes read incrementally without gaps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use nexo::plugin::{Operation, Page, Record, WriteOutcome, WriteResult};
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{ConnectorPlugin, Grants, GuestError, Limits, PluginError, PluginRef, Sandbox};
use nexo_tests::{load, programs, tinycrm};
use serde_json::{Value, json};

const TOKEN: &str = "tinycrm-api-test-token";

/// The example connector, granted the server's loopback origin and its token.
async fn connector(crm: &tinycrm::Server) -> ConnectorPlugin {
    let sandbox = Sandbox {
        plugin: PluginRef {
            id: "test/tinycrm".into(),
            version: "0.1.0".into(),
        },
        limits: Limits::default(),
        grants: Grants {
            http: vec![HttpGrant::private(&crm.url()).unwrap()],
            kv_bytes: 0,
        },
        secrets: BTreeMap::from([("api_token".to_string(), SecretValue::new(TOKEN))]),
        credentials: Default::default(),
        kv: None,
    };
    ConnectorPlugin::open(&load(programs::EXAMPLE_CRM), sandbox)
        .await
        .unwrap()
}

fn config(crm: &tinycrm::Server, extra: Value) -> String {
    let mut config = json!({"base_url": crm.url(), "page_size": 100});
    if let (Some(c), Value::Object(extra)) = (config.as_object_mut(), extra) {
        c.extend(extra);
    }
    config.to_string()
}

/// A write-batch record: `id` "" means "create", the cursor is the
/// idempotency key.
fn upsert(id: &str, key: &str, payload: Value) -> Record {
    Record {
        stream: "contacts".into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(key.into()),
    }
}

fn delete(id: &str) -> Record {
    Record {
        stream: "contacts".into(),
        id: id.into(),
        operation: Operation::Delete,
        payload: "{}".into(),
        cursor: Some(format!("key-delete-{id}")),
    }
}

fn person(email: &str, city: &str) -> Value {
    json!({"first_name": "Grace", "last_name": "Hopper", "email": email, "city": city})
}

async fn write(
    c: &ConnectorPlugin,
    config: &str,
    batch: &[Record],
) -> Result<Vec<WriteResult>, PluginError> {
    c.write(config, "contacts", batch).await.into_result()
}

fn created(results: &[WriteResult]) -> Vec<String> {
    results
        .iter()
        .map(|r| match &r.outcome {
            WriteOutcome::Created(id) => {
                assert_eq!(&r.id, id, "the result names the destination id");
                id.clone()
            }
            other => panic!("expected created, got {other:?}"),
        })
        .collect()
}

/// A create the destination already held (found by its idempotency key):
/// `unchanged(id)`, or `updated(id)` when the replay brought it up to date —
/// the host counts it `matched`, never `created`.
fn found(results: &[WriteResult]) -> Vec<String> {
    results
        .iter()
        .map(|r| match &r.outcome {
            WriteOutcome::Unchanged(id) | WriteOutcome::Updated(id) => {
                assert_eq!(&r.id, id, "the result names the destination id");
                id.clone()
            }
            other => panic!("expected a found record (unchanged or updated), got {other:?}"),
        })
        .collect()
}

fn transient(r: Result<Vec<WriteResult>, PluginError>) -> String {
    match r {
        Err(PluginError::Guest {
            error: GuestError::Transient(m),
            ..
        }) => m,
        other => panic!("expected a transient error, got {other:?}"),
    }
}

/// Every page from `state` on, and the final state.
async fn read_all(
    c: &ConnectorPlugin,
    config: &str,
    state: Option<String>,
) -> (Vec<Record>, String) {
    let mut state = state;
    let mut records = Vec::new();
    loop {
        let page: Page = c
            .read(config, "contacts", state.as_deref())
            .await
            .into_result()
            .unwrap();
        records.extend(page.records);
        state = page.state;
        if !page.has_more {
            return (records, state.unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_creates_one_contact() {
    let crm = tinycrm::start(tinycrm::seed(2), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({}));
    let batch = [upsert(
        "",
        "key-grace",
        person("grace@navy.test", "Arlington"),
    )];

    let first = created(&write(&c, &cfg, &batch).await.unwrap());
    let again = found(&write(&c, &cfg, &batch).await.unwrap());
    assert_eq!(first, again, "a replayed key answers with the same contact");
    assert_eq!(crm.crm.lock().unwrap().creates, 1);
    assert_eq!(crm.contacts().len(), 3);
    assert!(
        crm.crm
            .lock()
            .unwrap()
            .requests
            .contains(&"POST /api/contacts key=key-grace".to_string()),
        "the key travels as the Idempotency-Key header"
    );

    // The record changed before the retry: the replay still creates
    // nothing, and the latest content lands.
    let changed = [upsert(
        "",
        "key-grace",
        person("grace@navy.test", "New York"),
    )];
    assert_eq!(found(&write(&c, &cfg, &changed).await.unwrap()), first);
    assert_eq!(crm.crm.lock().unwrap().creates, 1);
    assert_eq!(crm.contact(&first[0]).unwrap()["city"], "New York");

    // Another key is another contact.
    let other = [upsert(
        "",
        "key-other",
        person("grace@navy.test", "Arlington"),
    )];
    assert_ne!(created(&write(&c, &cfg, &other).await.unwrap()), first);
    assert_eq!(crm.crm.lock().unwrap().creates, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_fails_the_batch_as_transient_and_writes_nothing() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({}));
    crm.crm.lock().unwrap().fail_writes = 1;
    let batch = [
        upsert("c0001", "key-1", person("ada@example.com", "Paris")),
        upsert("", "key-2", person("grace@navy.test", "Arlington")),
    ];
    let msg = transient(write(&c, &cfg, &batch).await);
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert_eq!(
        crm.contact("c0001").unwrap()["city"],
        "London",
        "not applied"
    );

    // The host retries the whole batch with the same keys.
    let results = write(&c, &cfg, &batch).await.unwrap();
    assert!(matches!(&results[0].outcome, WriteOutcome::Updated(id) if id == "c0001"));
    assert!(matches!(&results[1].outcome, WriteOutcome::Created(_)));
    assert_eq!(crm.crm.lock().unwrap().creates, 1);
    assert_eq!(crm.contact("c0001").unwrap()["city"], "Paris");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_retried_without_a_duplicate() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"timeout_ms": 300}));
    {
        let mut state = crm.crm.lock().unwrap();
        state.apply_then_stall = 1;
        state.stall = Duration::from_secs(1);
    }
    let batch = [upsert(
        "",
        "key-lost",
        person("grace@navy.test", "Arlington"),
    )];
    let msg = transient(write(&c, &cfg, &batch).await);
    assert!(msg.contains("timed out"), "{msg}");
    assert_eq!(crm.crm.lock().unwrap().creates, 1, "the create happened");
    let made = crm
        .contacts()
        .into_iter()
        .find(|c| c["email"] == "grace@navy.test")
        .unwrap();

    let retried = found(&write(&c, &cfg, &batch).await.unwrap());
    assert_eq!(retried, [made["id"].as_str().unwrap()]);
    assert_eq!(crm.crm.lock().unwrap().creates, 1, "no duplicate");
    assert_eq!(crm.contacts().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_deletes_and_refusals_get_one_outcome_each_in_order() {
    let crm = tinycrm::start(tinycrm::seed(3), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({}));
    crm.delete("c0003");
    let mut sneaky = person("ada@example.com", "Paris");
    sneaky["id"] = json!("c0002");
    sneaky["updated_at"] = json!("1999-01-01T00:00:00Z");
    let batch = [
        upsert("c0001", "k1", sneaky),
        upsert("", "k2", person("not-an-email", "Nowhere")),
        upsert("c0003", "k3", person("gone@example.com", "Paris")),
        delete("c0002"),
        delete("c0002"),
        delete("c9999"),
    ];
    let results = write(&c, &cfg, &batch).await.unwrap();
    let shown: Vec<String> = results
        .iter()
        .map(|r| match &r.outcome {
            WriteOutcome::Created(id) => format!("created {id}"),
            WriteOutcome::Updated(id) => format!("updated {id}"),
            WriteOutcome::Unchanged(id) => format!("unchanged {id}"),
            WriteOutcome::Deleted(id) => format!("deleted {id}"),
            WriteOutcome::Failed(e) => format!("{}: {}", r.id, e),
        })
        .collect();
    assert_eq!(shown[0], "updated c0001");
    assert!(
        shown[1].starts_with(": rejected: new contact (key k2): HTTP 422")
            && shown[1].contains("email is invalid"),
        "{}",
        shown[1]
    );
    assert_eq!(
        shown[2],
        "c0003: rejected: contact c0003 no longer exists in TinyCRM"
    );
    assert_eq!(
        shown[3..],
        ["deleted c0002", "deleted c0002", "deleted c9999"],
        "already gone counts as deleted"
    );

    // The server owns `id` and `updated_at`: the body's were ignored.
    let ada = crm.contact("c0001").unwrap();
    assert_eq!(ada["id"], "c0001");
    assert!(ada["updated_at"].as_str().unwrap() > "2026-06-01", "{ada}");
    assert_eq!(crm.contacts().len(), 1);
    assert_eq!(crm.crm.lock().unwrap().creates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_stamped_by_the_server_and_read_incrementally_with_deletes() {
    let crm = tinycrm::start(tinycrm::seed(5), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"page_size": 2}));
    let (all, state) = read_all(&c, &cfg, None).await;
    assert_eq!(all.len(), 5);
    let (nothing, state) = read_all(&c, &cfg, Some(state)).await;
    assert!(nothing.is_empty());

    let edited = crm.edit("c0003", "city", "Paris");
    let deleted = crm.delete("c0001");
    let inserted = crm.insert(person("new@example.com", "Oslo"));
    let written = write(
        &c,
        &cfg,
        &[upsert("c0002", "k", person("ada2@example.com", "Rome"))],
    )
    .await
    .unwrap();
    assert!(matches!(&written[0].outcome, WriteOutcome::Updated(_)));
    let stamp = |id: &str| {
        crm.contact(id).unwrap()["updated_at"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let stamps = [
        edited.clone(),
        deleted.clone(),
        stamp(&inserted),
        stamp("c0002"),
    ];
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]) && stamps[0].as_str() > "2026-05-31",
        "one clock, strictly increasing: {stamps:?}"
    );

    let (changes, state) = read_all(&c, &cfg, Some(state)).await;
    let seen: Vec<(String, Operation, Option<String>)> = changes
        .iter()
        .map(|r| (r.id.clone(), r.operation, r.cursor.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("c0003".to_string(), Operation::Upsert, Some(edited)),
            ("c0001".to_string(), Operation::Delete, Some(deleted)),
            (inserted.clone(), Operation::Upsert, Some(stamps[2].clone())),
            (
                "c0002".to_string(),
                Operation::Upsert,
                Some(stamps[3].clone())
            ),
        ]
    );
    let paris: Value = serde_json::from_str(&changes[0].payload).unwrap();
    assert_eq!(paris["city"], "Paris");

    // Only the edited record comes back after one more edit.
    let again = crm.edit("c0005", "lifecycle_stage", "customer");
    let (one, _) = read_all(&c, &cfg, Some(state)).await;
    assert_eq!(one.len(), 1);
    assert_eq!(
        (one[0].id.as_str(), one[0].cursor.as_ref()),
        ("c0005", Some(&again))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_changed_mid_read_is_neither_lost_nor_hides_others() {
    let crm = tinycrm::start(tinycrm::seed(6), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"page_size": 2}));
    let first = c.read(&cfg, "contacts", None).await.into_result().unwrap();
    assert!(first.has_more);
    // A record of the first page changes: it moves to the end of the
    // stream. With offset paging the rows after it would shift and one
    // would never be read.
    crm.edit(&first.records[0].id, "city", "Paris");
    let (rest, _) = read_all(&c, &cfg, first.state).await;
    let mut ids: Vec<&str> = first
        .records
        .iter()
        .chain(&rest)
        .map(|r| r.id.as_str())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "c0001", "c0001", "c0002", "c0003", "c0004", "c0005", "c0006"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_latency_slows_every_write() {
    let crm = tinycrm::start(tinycrm::seed(2), TOKEN).await;
    let c = connector(&crm).await;
    crm.crm.lock().unwrap().write_latency = Duration::from_millis(150);
    let out = c
        .write(
            &config(&crm, json!({})),
            "contacts",
            &[delete("c0001"), delete("c0002")],
        )
        .await;
    out.result.unwrap();
    assert!(
        out.elapsed >= Duration::from_millis(300),
        "{:?}",
        out.elapsed
    );
    assert!(crm.contacts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_timeout_is_a_config_error() {
    let crm = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let c = connector(&crm).await;
    let err = c
        .check(&config(&crm, json!({"timeout_ms": 0})))
        .await
        .into_result()
        .unwrap_err();
    assert!(err.to_string().contains("field `timeout_ms`"), "{err}");
    c.check(&config(&crm, json!({"timeout_ms": 2000})))
        .await
        .into_result()
        .unwrap();
}

/// The batch requests the server saw, as their input counts.
fn batch_requests(crm: &tinycrm::Server) -> Vec<String> {
    crm.crm
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("POST /api/contacts"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_writes_creates_updates_and_deletes_in_one_request() {
    let crm = tinycrm::start(tinycrm::seed(3), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true}));
    let batch = [
        upsert("", "key-a", person("a@navy.test", "Arlington")),
        upsert("c0001", "k1", person("ada@example.com", "Paris")),
        delete("c0002"),
        upsert("", "key-b", person("b@navy.test", "Boston")),
        delete("c9999"),
    ];
    let results = write(&c, &cfg, &batch).await.unwrap();
    assert_eq!(batch_requests(&crm), ["POST /api/contacts/batch inputs=5"]);
    let made: Vec<String> = [&results[0], &results[3]]
        .iter()
        .map(|r| match &r.outcome {
            WriteOutcome::Created(id) if *id == r.id => id.clone(),
            other => panic!("expected created, got {other:?}"),
        })
        .collect();
    assert!(matches!(&results[1].outcome, WriteOutcome::Updated(id) if id == "c0001"));
    assert!(matches!(&results[2].outcome, WriteOutcome::Deleted(id) if id == "c0002"));
    assert!(
        matches!(&results[4].outcome, WriteOutcome::Deleted(id) if id == "c9999"),
        "already gone counts as deleted"
    );
    assert_eq!(crm.contact(&made[0]).unwrap()["city"], "Arlington");
    assert_eq!(crm.contact(&made[1]).unwrap()["city"], "Boston");
    assert_eq!(crm.contact("c0001").unwrap()["city"], "Paris");
    assert!(crm.contact("c0002").is_none());
    assert_eq!(crm.crm.lock().unwrap().creates, 2);

    // Read back: the writes come out of the change stream in write order,
    // the delete as a tombstone.
    let (all, _) = read_all(&c, &config(&crm, json!({"page_size": 2})), None).await;
    let tail: Vec<(&str, Operation)> = all[all.len() - 4..]
        .iter()
        .map(|r| (r.id.as_str(), r.operation))
        .collect();
    assert_eq!(
        tail,
        [
            (made[0].as_str(), Operation::Upsert),
            ("c0001", Operation::Upsert),
            ("c0002", Operation::Delete),
            (made[1].as_str(), Operation::Upsert),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_batches_go_in_chunks_of_at_most_a_thousand() {
    let crm = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true}));
    let batch: Vec<Record> = (0..2345)
        .map(|i| {
            upsert(
                "",
                &format!("key-{i}"),
                person(&format!("p{i}@example.com"), "Oslo"),
            )
        })
        .collect();
    let ids = created(&write(&c, &cfg, &batch).await.unwrap());
    assert_eq!(
        batch_requests(&crm),
        [
            "POST /api/contacts/batch inputs=1000",
            "POST /api/contacts/batch inputs=1000",
            "POST /api/contacts/batch inputs=345",
        ]
    );
    assert_eq!(ids.len(), 2345);
    assert_eq!(crm.contacts().len(), 2345);
    assert_eq!(
        crm.contact(&ids[2000]).unwrap()["email"],
        "p2000@example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_bulk_batch_creates_nothing_new() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true}));
    let batch = [
        upsert("", "key-x", person("x@navy.test", "Arlington")),
        upsert("", "key-y", person("y@navy.test", "Boston")),
    ];
    let first = created(&write(&c, &cfg, &batch).await.unwrap());
    let stamp = |id: &str| crm.contact(id).unwrap()["updated_at"].clone();
    let stamped = stamp(&first[0]);

    let again = found(&write(&c, &cfg, &batch).await.unwrap());
    assert_eq!(first, again, "a replayed key answers with the same contact");
    assert_eq!(crm.crm.lock().unwrap().creates, 2);
    assert_eq!(crm.contacts().len(), 3);
    assert_eq!(
        stamp(&first[0]),
        stamped,
        "an unchanged replay writes nothing"
    );
    assert_eq!(batch_requests(&crm).len(), 2);

    // One record changed before the retry: still no creation, and its
    // latest content lands with one more request.
    let changed = [
        upsert("", "key-x", person("x@navy.test", "New York")),
        upsert("", "key-y", person("y@navy.test", "Boston")),
    ];
    assert_eq!(found(&write(&c, &cfg, &changed).await.unwrap()), first);
    assert_eq!(crm.crm.lock().unwrap().creates, 2);
    assert_eq!(crm.contact(&first[0]).unwrap()["city"], "New York");
    assert_eq!(
        batch_requests(&crm)[2..],
        [
            "POST /api/contacts/batch inputs=2",
            "POST /api/contacts/batch inputs=1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_item_fails_only_its_own_record_in_bulk() {
    let crm = tinycrm::start(tinycrm::seed(2), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true}));
    crm.delete("c0002");
    let batch = [
        upsert("", "k1", person("ok@example.com", "Rome")),
        upsert("", "k2", person("not-an-email", "Nowhere")),
        upsert("c0001", "k3", person("also-not-an-email", "Nowhere")),
        upsert("c0002", "k4", person("gone@example.com", "Paris")),
        Record {
            payload: "[1, 2]".into(),
            ..upsert("", "k5", json!({}))
        },
        delete(""),
        upsert("c0001", "k6", person("ada@example.com", "Lima")),
    ];
    let results = write(&c, &cfg, &batch).await.unwrap();
    let shown: Vec<String> = results
        .iter()
        .map(|r| match &r.outcome {
            WriteOutcome::Created(_) => "created".to_string(),
            WriteOutcome::Updated(id) => format!("updated {id}"),
            WriteOutcome::Failed(e) => format!("{}: {}", r.id, e),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(shown[0], "created");
    assert_eq!(
        shown[1],
        ": rejected: new contact (key k2): HTTP 422: email is invalid"
    );
    assert_eq!(
        shown[2],
        "c0001: rejected: contact c0001: HTTP 422: email is invalid"
    );
    assert_eq!(
        shown[3],
        "c0002: rejected: contact c0002 no longer exists in TinyCRM"
    );
    assert!(
        shown[4].starts_with(": rejected: record contacts/: the payload is not a JSON object"),
        "{}",
        shown[4]
    );
    assert!(
        shown[5].starts_with(": rejected: a delete needs"),
        "{}",
        shown[5]
    );
    assert_eq!(shown[6], "updated c0001");
    assert_eq!(
        batch_requests(&crm),
        ["POST /api/contacts/batch inputs=5"],
        "records refused by the connector are not sent"
    );
    assert_eq!(crm.contact("c0001").unwrap()["city"], "Lima");
    assert_eq!(crm.crm.lock().unwrap().creates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_fails_a_bulk_batch_as_transient_and_writes_nothing() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true}));
    crm.crm.lock().unwrap().fail_writes = 1;
    let batch = [
        upsert("c0001", "key-1", person("ada@example.com", "Paris")),
        upsert("", "key-2", person("grace@navy.test", "Arlington")),
        delete("c0001"),
    ];
    let msg = transient(write(&c, &cfg, &batch).await);
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert_eq!(crm.contact("c0001").unwrap()["city"], "London");
    assert_eq!(crm.contacts().len(), 1, "nothing was applied");

    // The host retries the whole batch with the same keys.
    let results = write(&c, &cfg, &batch).await.unwrap();
    assert!(matches!(&results[0].outcome, WriteOutcome::Updated(id) if id == "c0001"));
    assert!(matches!(&results[1].outcome, WriteOutcome::Created(_)));
    assert!(matches!(&results[2].outcome, WriteOutcome::Deleted(id) if id == "c0001"));
    assert_eq!(crm.crm.lock().unwrap().creates, 1);
    assert!(crm.contact("c0001").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_batch_whose_answer_was_lost_is_retried_without_duplicates() {
    let crm = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true, "timeout_ms": 300}));
    {
        let mut state = crm.crm.lock().unwrap();
        state.apply_then_stall = 1;
        state.stall = Duration::from_secs(1);
    }
    let batch = [
        upsert("", "key-1", person("one@example.com", "Oslo")),
        upsert("", "key-2", person("two@example.com", "Oslo")),
    ];
    let msg = transient(write(&c, &cfg, &batch).await);
    assert!(msg.contains("timed out"), "{msg}");
    assert_eq!(crm.crm.lock().unwrap().creates, 2, "the batch was applied");
    let retried = found(&write(&c, &cfg, &batch).await.unwrap());
    assert_eq!(crm.crm.lock().unwrap().creates, 2, "no duplicates");
    let mut ids: Vec<String> = crm
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(retried, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_the_whole_bulk_request_ends_the_call() {
    let crm = tinycrm::start(tinycrm::seed(1), TOKEN).await;
    let c = connector(&crm).await;
    let cfg = config(&crm, json!({"bulk": true, "timeout_ms": 2000}));
    crm.crm.lock().unwrap().reject_writes = 1;
    let batch = [upsert("c0001", "k", person("ada@example.com", "Paris"))];
    match write(&c, &cfg, &batch).await {
        Err(PluginError::Guest {
            error: GuestError::Rejected(m),
            ..
        }) => assert!(m.contains("batch of 1 contacts: HTTP 422"), "{m}"),
        other => panic!("expected the call to be rejected, got {other:?}"),
    }
    assert_eq!(crm.contact("c0001").unwrap()["city"], "London");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_go_up_to_five_thousand_contacts() {
    let crm = tinycrm::start(tinycrm::seed(5003), TOKEN).await;
    let c = connector(&crm).await;
    let first = c
        .read(&config(&crm, json!({"page_size": 5000})), "contacts", None)
        .await
        .into_result()
        .unwrap();
    assert_eq!(first.records.len(), 5000);
    assert!(first.has_more);
    let err = c
        .check(&config(&crm, json!({"page_size": 5001})))
        .await
        .into_result()
        .unwrap_err();
    assert!(err.to_string().contains("between 1 and 5000"), "{err}");
}

/// Throughput of the connector's bulk path against TinyCRM, as the sync
/// benchmark drives it (pages of 5000, write calls of 1000). A measurement,
/// not a check: `cargo test --release -p nexo-tests --test tinycrm_api --
/// --ignored --nocapture bulk_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release"]
async fn bulk_throughput() {
    const N: usize = 100_000;
    let source = tinycrm::start(tinycrm::seed(N), TOKEN).await;
    let c = connector(&source).await;
    let cfg = config(&source, json!({"page_size": 5000, "bulk": true}));
    let started = std::time::Instant::now();
    let (records, _) = read_all(&c, &cfg, None).await;
    let read = started.elapsed();
    assert_eq!(records.len(), N);

    let dest = tinycrm::start(tinycrm::seed(0), TOKEN).await;
    let d = connector(&dest).await;
    let cfg = config(&dest, json!({"bulk": true, "timeout_ms": 60000}));
    let batch: Vec<Record> = records
        .into_iter()
        .map(|r| Record {
            id: String::new(),
            cursor: Some(format!("key-{}", r.id)),
            ..r
        })
        .collect();
    let started = std::time::Instant::now();
    for chunk in batch.chunks(1000) {
        write(&d, &cfg, chunk).await.unwrap();
    }
    let written = started.elapsed();
    assert_eq!(dest.crm.lock().unwrap().creates, N);
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "read {N} in {read:?} ({:.0}/s); bulk write in {written:?} ({:.0}/s)",
        rate(read),
        rate(written)
    );
}

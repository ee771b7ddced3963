//! The identity map decides per destination: any number of pipelines may
//! share a source and an entity name, and every source record still ends
//! up in every destination it is piped to, once. Real TinyCRM servers on
//! 127.0.0.1, the example connector, the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use nexo::sync::store::{PipelineStore, RecordOutcome, RunStore};
use nexo_tests::synckit::{self, Kit, business};
use nexo_tests::tinycrm;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

/// A pipeline `from → to` over the kit's connections, entity `contact`.
fn edge(name: &str, from: &str, to: &str, entity: &str) -> String {
    format!(
        "name = \"{name}\"\nentity = \"{entity}\"\n\
         [source]\nconnection = \"{from}\"\nstream = \"contacts\"\n\
         [destination]\nconnection = \"{to}\"\nstream = \"contacts\"\n\
         [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n"
    )
}

/// Add a third (fourth, ...) empty TinyCRM with a connection `name`.
async fn another(kit: &Kit, name: &str) -> tinycrm::Server {
    let server = tinycrm::start(BTreeMap::new(), synckit::TOKEN).await;
    let config = json!({"page_size": 4, "timeout_ms": 500, "base_url": server.url()});
    kit.connections
        .add(synckit::connection(name, &server, config))
        .unwrap();
    server
}

/// The business contents of a server, sorted, and whether it holds two
/// contacts with one e-mail.
fn contents(server: &tinycrm::Server) -> (Vec<String>, bool) {
    let all = server.contacts();
    let emails: BTreeSet<String> = all
        .iter()
        .map(|c| c["email"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut v: Vec<String> = all.iter().map(|c| business(c).to_string()).collect();
    v.sort();
    (v, emails.len() != all.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pipeline_from_the_same_source_with_the_same_entity_delivers_every_record() {
    let kit = Kit::new(tinycrm::seed(23), Default::default(), 5).await;
    let c = another(&kit, "crm-c").await;
    kit.apply(&edge("to-b", "crm-a", "crm-b", "invoice")).await;
    kit.apply(&edge("to-c", "crm-a", "crm-c", "invoice")).await;
    let first = kit.run("to-b").await;
    assert_eq!(first.counts.created, 23, "{:?}", first.counts);
    // Before: "unchanged 23", nothing created in C, a succeeded run.
    let second = kit.run("to-c").await;
    assert_eq!(second.counts.created, 23, "{:?}", second.counts);
    assert_eq!(second.counts.unchanged, 0, "{:?}", second.counts);
    let unchanged: Vec<_> = kit
        .db
        .run_records(second.run_id.unwrap())
        .unwrap()
        .into_iter()
        .filter(|r| r.outcome == RecordOutcome::Unchanged)
        .collect();
    assert!(unchanged.is_empty(), "{unchanged:?}");
    assert_eq!(contents(&c).0, contents(&kit.a).0);

    // A change delivered by one pipeline is still news to the other.
    let id = kit.a.contacts()[3]["id"].as_str().unwrap().to_string();
    kit.a.edit(&id, "city", "Lyon");
    let to_c = kit.run("to-c").await;
    assert_eq!(to_c.counts.updated, 1, "{:?}", to_c.counts);
    let to_b = kit.run("to-b").await;
    assert_eq!(to_b.counts.updated, 1, "{:?}", to_b.counts);
    assert_eq!(contents(&kit.b).0, contents(&kit.a).0);
    assert_eq!(contents(&c).0, contents(&kit.a).0);

    // A reset re-reads everything and writes nothing twice.
    kit.db.reset_state("to-c").unwrap();
    let again = kit.run("to-c").await;
    assert_eq!(again.counts.written(), 0, "{:?}", again.counts);
    assert!(!contents(&c).1, "duplicates in C");
}

/// One step of a generated scenario.
#[derive(Debug, Clone)]
enum Step {
    /// Run pipeline `i` (of the generated set).
    Run(usize),
    /// Forget pipeline `i`'s cursor.
    Reset(usize),
    /// Edit contact `n` (modulo the origin's size) in the origin.
    Edit(usize, u8),
    /// A new contact in the origin.
    Insert,
}

/// A generated pipeline set: edges `(from, to, entity)` between four
/// systems (0 is the origin, the only one people edit).
type Edges = Vec<(usize, usize, &'static str)>;

fn scenario() -> impl Strategy<Value = (Edges, Vec<Step>)> {
    // Any graph, one entity name for all (two-way pairs come up as (i, j)
    // and (j, i); chains pass records on; a system reached by two routes
    // gets each record once)...
    let graph = proptest::collection::btree_set(
        (0usize..4, 0usize..4).prop_filter("no loop", |(a, b)| a != b),
        1..6,
    )
    .prop_map(|s| {
        s.into_iter()
            .map(|(a, b)| (a, b, "contact"))
            .collect::<Edges>()
    });
    // ...or a star out of the origin whose pipelines share the source with
    // the same entity name or another.
    let star = proptest::collection::btree_map(
        1usize..4,
        prop_oneof![Just("contact"), Just("lead")],
        1..4,
    )
    .prop_map(|m| m.into_iter().map(|(to, e)| (0, to, e)).collect::<Edges>());
    prop_oneof![3 => graph, 1 => star].prop_flat_map(|edges| {
        let n = edges.len();
        let step = prop_oneof![
            4 => (0..n).prop_map(Step::Run),
            1 => (0..n).prop_map(Step::Reset),
            2 => (0usize..64, any::<u8>()).prop_map(|(i, v)| Step::Edit(i, v)),
            1 => Just(Step::Insert),
        ];
        (Just(edges), proptest::collection::vec(step, 0..10))
    })
}

/// Every system reachable from the origin through the generated pipelines
/// ends with the origin's contents exactly: each record once, none left
/// out, none twice — whatever pipelines share a source or the entity, and
/// after any resets. Runs to quiescence must also stop writing (no echo
/// ping-pong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_every_destination_once_whatever_the_pipeline_set() {
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&scenario(), |(edges, steps)| {
        let outcome = tokio::task::block_in_place(|| {
            handle.block_on(async { check_scenario(&edges, &steps).await })
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.err().unwrap_or_default());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn check_scenario(edges: &[(usize, usize, &str)], steps: &[Step]) -> Result<(), String> {
    let kit = Kit::new(tinycrm::seed(9), Default::default(), 4).await;
    let c = another(&kit, "crm-c").await;
    let d = another(&kit, "crm-d").await;
    let servers = [&kit.a, &kit.b, &c, &d];
    let names = ["crm-a", "crm-b", "crm-c", "crm-d"];
    let pipelines: Vec<String> = edges
        .iter()
        .map(|&(from, to, _)| format!("p{from}{to}"))
        .collect();
    for (name, &(from, to, entity)) in pipelines.iter().zip(edges) {
        kit.apply(&edge(name, names[from], names[to], entity)).await;
    }
    let run = |name: String| {
        let kit = &kit;
        async move {
            let report = kit.run(&name).await;
            if report.counts.failed + report.counts.quarantined + report.counts.conflicts > 0 {
                return Err(format!("{name}: {:?} {:?}", report.counts, report.error));
            }
            Ok(report.counts.written())
        }
    };
    for step in steps {
        match step {
            Step::Run(i) => {
                run(pipelines[*i].clone()).await?;
            }
            Step::Reset(i) => kit
                .db
                .reset_state(&pipelines[*i])
                .map_err(|e| e.to_string())?,
            Step::Edit(n, v) => {
                let all = kit.a.contacts();
                let id = all[n % all.len()]["id"].as_str().unwrap().to_string();
                kit.a.edit(&id, "city", format!("City {v}"));
            }
            Step::Insert => {
                let n = kit.a.contacts().len() + 100;
                kit.a.insert(json!({
                    "first_name": format!("New{n}"),
                    "last_name": "Added",
                    "email": format!("new{n}@example.com"),
                }));
            }
        }
    }
    // To quiescence: rounds over every pipeline until one writes nothing.
    let mut settled = false;
    for _ in 0..6 {
        let mut written = 0;
        for name in &pipelines {
            written += run(name.clone()).await?;
        }
        if written == 0 {
            settled = true;
            break;
        }
    }
    if !settled {
        return Err(format!("{edges:?}: still writing after 6 rounds"));
    }
    let mut reachable = BTreeSet::from([0usize]);
    loop {
        let before = reachable.len();
        for &(from, to, _) in edges {
            if reachable.contains(&from) {
                reachable.insert(to);
            }
        }
        if reachable.len() == before {
            break;
        }
    }
    let (origin, _) = contents(&kit.a);
    for &i in &reachable {
        let (found, duplicates) = contents(servers[i]);
        if duplicates {
            return Err(format!("{edges:?} {steps:?}: duplicates in {}", names[i]));
        }
        if found != origin {
            return Err(format!(
                "{edges:?} {steps:?}: {} holds {} records, the origin {}; first difference: {:?}",
                names[i],
                found.len(),
                origin.len(),
                found.iter().zip(&origin).find(|(a, b)| a != b).or(None)
            ));
        }
    }
    Ok(())
}

/// Two full refreshes of one source with one entity, to two destinations,
/// at the same time: what one run read must not look unread to the other
/// (which would then delete it in its destination).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_full_refreshes_sharing_a_source_delete_nothing_still_there() {
    let kit = Kit::new(tinycrm::seed(60), Default::default(), 3).await;
    let c = another(&kit, "crm-c").await;
    let full = "mode = \"full-refresh\"\n";
    let deletes = "[deletes]\npolicy = \"propagate\"\n";
    for (name, to) in [("to-b", "crm-b"), ("to-c", "crm-c")] {
        let text =
            edge(name, "crm-a", to, "contact").replacen("[source]", &format!("{full}[source]"), 1);
        kit.apply(&format!("{text}{deletes}")).await;
    }
    for round in 0..3 {
        let (b, c_run) = tokio::join!(kit.run("to-b"), kit.run("to-c"));
        for (name, r) in [("to-b", &b), ("to-c", &c_run)] {
            assert_eq!(r.counts.deleted, 0, "round {round}, {name}: {:?}", r.counts);
        }
    }
    assert_eq!(contents(&kit.b).0, contents(&kit.a).0);
    assert_eq!(contents(&c).0, contents(&kit.a).0);
    // A record really gone is still noticed by both.
    let gone = kit.a.crm.lock().unwrap().contacts.pop_first().unwrap().1;
    let (b, c_run) = tokio::join!(kit.run("to-b"), kit.run("to-c"));
    let records = |r: &nexo::sync::RunReport| {
        kit.db
            .run_records(r.run_id.unwrap())
            .unwrap()
            .into_iter()
            .filter(|x| x.outcome != RecordOutcome::Unchanged || x.source_id == "c0001")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (b.counts.deleted, c_run.counts.deleted),
        (1, 1),
        "{:?} {:?} {:?} {:?}",
        b.counts,
        c_run.counts,
        records(&b),
        records(&c_run)
    );
    assert!(!contents(&c).0.contains(&business(&gone).to_string()));
}

/// A conflict held between the source and one destination waits for a
/// person there; the other destinations of the same record and entity
/// still get the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_held_for_one_destination_does_not_hold_the_others() {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 50).await;
    let c = another(&kit, "crm-c").await;
    let hold = "[conflicts]\npolicy = \"hold\"\n";
    kit.apply(&format!(
        "{}{hold}",
        edge("to-b", "crm-a", "crm-b", "contact")
    ))
    .await;
    kit.apply(&format!(
        "{}{hold}",
        edge("to-c", "crm-a", "crm-c", "contact")
    ))
    .await;
    kit.run("to-b").await;
    kit.run("to-c").await;
    let a_id = kit.a.contacts()[0]["id"].as_str().unwrap().to_string();
    let email = kit.a.contacts()[0]["email"].clone();
    let in_b = kit
        .b
        .contacts()
        .into_iter()
        .find(|x| x["email"] == email)
        .unwrap();
    // Someone edits the copy in B, then the source changes the same field.
    kit.b.edit(in_b["id"].as_str().unwrap(), "city", "Milan");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    kit.a.edit(&a_id, "city", "Paris");
    let b = kit.run("to-b").await;
    assert_eq!(b.counts.conflicts, 1, "{:?}", b.counts);
    // C was not touched by anyone: the change goes through.
    let to_c = kit.run("to-c").await;
    assert_eq!(
        (to_c.counts.updated, to_c.counts.conflicts),
        (1, 0),
        "{:?}",
        to_c.counts
    );
    let in_c = c
        .contacts()
        .into_iter()
        .find(|x| x["email"] == email)
        .unwrap();
    assert_eq!(in_c["city"], "Paris");
}

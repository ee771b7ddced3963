//! The `nexo` binary running pipelines: killed with SIGKILL at many points
//! of a sync and started again, the destination still ends with exactly the
//! source's records; and the admin's commands (apply, dry run, runs, run
//! show, dlq, conflict) as a person would use them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nexo::sync::store::RunStore;
use nexo_tests::cli::{self, fails, ok};
use nexo_tests::synckit::{Kit, contents, pipeline};
use nexo_tests::tinycrm;
use serde_json::json;

fn nexo_cmd(dir: &Path) -> Command {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
}

fn nexo(dir: &Path, args: &[&str]) -> Output {
    nexo_cmd(dir).args(args).output().unwrap()
}

/// A small deterministic generator (the seed is printed, so a failing
/// sequence of kill points can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// How a sync is killed over and over.
struct Kills {
    /// Records in the source at the start.
    records: usize,
    /// Records per source page.
    page_size: u32,
    /// Extra lines of the pipeline (batch size, `[commit]`).
    extra: &'static str,
    tables: &'static str,
    /// Kills land within this many milliseconds of a run's start.
    within_ms: u64,
}

/// Kill `pipeline run` with SIGKILL at 25 random points (and let it
/// finish between them), while new records and edits keep arriving; then
/// one last run: the destination holds exactly the source's records,
/// each created once.
async fn killed_at_twenty_five_points(k: Kills) {
    let kit = Kit::new(tinycrm::seed(k.records), Default::default(), k.page_size).await;
    kit.apply(&pipeline("a-to-b", k.extra, k.tables)).await;
    // Slow writes so that kills land mid-page, mid-batch and between the
    // remote write and the commit.
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(4);
    let dir = kit.dir.path();

    let seed: u64 = std::env::var("NEXO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill seed {seed} (set NEXO_KILL_SEED to replay)");
    let mut rng = Lcg(seed);
    let mut kills = 0;
    let mut finished_early = 0;
    while kills < 25 {
        let mut child = nexo_cmd(dir)
            .args(["pipeline", "run", "a-to-b"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Most kills land inside the run (after it registered), anywhere
        // from its first page to its last; every fourth lands during
        // start-up, before anything was recorded.
        let runs_before = kit.db.runs(&Default::default()).unwrap().len();
        let early = kills % 4 == 3;
        // Short waits: a run that only has the last round's changes to
        // write is quick, and a kill after it ends is wasted.
        let wait = Duration::from_millis(if early {
            rng.next(150)
        } else {
            rng.next(k.within_ms)
        });
        let mut started: Option<Instant> = early.then(Instant::now);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                finished_early += 1;
                break;
            }
            if started.is_none() && kit.db.runs(&Default::default()).unwrap().len() > runs_before {
                started = Some(Instant::now());
            }
            if started.is_some_and(|t| t.elapsed() >= wait) || Instant::now() > deadline {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if finished_early > 100 {
            break;
        }
        // New records and edits keep arriving, so there is always work for
        // the next run to be killed in.
        let round = kills + finished_early;
        for i in 0..30 {
            kit.a.insert(json!({
                "first_name": format!("Late{round}"),
                "last_name": format!("N{i}"),
                "email": format!("late{round}-{i}@example.com"),
            }));
        }
        let id = kit.a.contacts()[round % k.records]["id"]
            .as_str()
            .unwrap()
            .to_string();
        kit.a.edit(&id, "city", format!("City {round}"));
    }
    eprintln!("{kills} kills, {finished_early} runs finished between them");
    assert!(
        kills >= 20,
        "only {kills} kills landed (runs finished {finished_early} times)"
    );
    kit.b.crm.lock().unwrap().write_latency = Duration::ZERO;
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("succeeded"), "{out}");

    let expected = kit.a.contacts().len();
    assert_eq!(
        kit.b.contacts().len(),
        expected,
        "missing or duplicated records"
    );
    assert_eq!(
        kit.b.crm.lock().unwrap().creates,
        expected,
        "a create was repeated"
    );
    assert_eq!(contents(&kit.a), contents(&kit.b));
    let runs = ok(nexo(
        dir,
        &["runs", "--limit", "100", "--status", "interrupted"],
    ));
    eprintln!(
        "{} runs were interrupted",
        runs.lines().filter(|l| l.starts_with('#')).count()
    );
    assert!(
        runs.lines().count() >= 5,
        "few kills landed inside a run: {runs}"
    );
    // And once more: nothing left to do.
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b", "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["counts"]["created"], 0, "{v}");
    assert_eq!(v["counts"]["updated"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_twenty_five_points_the_sync_still_ends_exactly_once() {
    // Small pages, each committed alone.
    killed_at_twenty_five_points(Kills {
        records: 300,
        page_size: 10,
        extra: "batch_size = 5",
        tables: "[commit]\nrecords = 1",
        within_ms: 80,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_commits_at_100_per_page_survive_25_kills_exactly_once() {
    // HubSpot's and Xero's page size, ten pages to a commit: a kill
    // inside a group loses its commit, and the next run re-reads and
    // re-sends the group's records, which the idempotency keys absorb.
    killed_at_twenty_five_points(Kills {
        records: 3000,
        page_size: 100,
        extra: "batch_size = 50",
        tables: "[commit]\nrecords = 1000\nwait_ms = 5000",
        within_ms: 400,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_applies_dry_runs_runs_and_works_the_queues() {
    let kit = Kit::new(tinycrm::seed(4), Default::default(), 10).await;
    let dir = kit.dir.path();
    let file = dir.join("a-to-b.toml");

    // A bad file: a specific message, nothing saved.
    std::fs::write(
        &file,
        pipeline("a-to-b", "", "[conflicts]\npolicy = \"sometimes\""),
    )
    .unwrap();
    let err = fails(nexo(dir, &["pipeline", "apply", file.to_str().unwrap()]));
    assert!(
        err.contains("conflicts.policy") && err.contains("sometimes"),
        "{err}"
    );
    assert!(ok(nexo(dir, &["pipeline", "list"])).contains("no pipelines"));

    std::fs::write(
        &file,
        pipeline("a-to-b", "", "[conflicts]\npolicy = \"hold\""),
    )
    .unwrap();
    let out = ok(nexo(dir, &["pipeline", "apply", file.to_str().unwrap()]));
    assert!(out.contains("created pipeline a-to-b"), "{out}");

    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b", "--dry-run"]));
    assert!(
        out.contains("nothing was written") && out.matches("create ").count() == 4,
        "{out}"
    );
    assert!(kit.b.contacts().is_empty());

    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("created 4"), "{out}");
    let list = ok(nexo(dir, &["pipeline", "list"]));
    assert!(
        list.contains("a-to-b  crm-a/contacts → crm-b/contacts  manual  last run #1 succeeded"),
        "{list}"
    );

    // A rejected record lands in the dead-letter queue.
    let bad = kit
        .a
        .insert(json!({"first_name": "No", "last_name": "At", "email": "nope"}));
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(
        out.contains("failed 1") && out.contains("nexo dlq list"),
        "{out}"
    );
    let list = ok(nexo(dir, &["dlq", "list"]));
    assert!(list.contains(&bad) && list.contains("rejected"), "{list}");
    let id = list.split_whitespace().next().unwrap().to_string();
    let show = ok(nexo(dir, &["dlq", "show", &id]));
    assert!(show.contains("\"email\": \"nope\""), "{show}");
    let err = fails(nexo(dir, &["dlq", "replay", &id]));
    assert!(err.contains("failed again"), "{err}");
    ok(nexo(dir, &["dlq", "discard", &id]));
    assert!(ok(nexo(dir, &["dlq", "list"])).contains("no dead letters"));

    // A held conflict, resolved from the command line.
    let a0 = kit.a.contacts()[0].clone();
    let b0 = kit
        .b
        .contacts()
        .into_iter()
        .find(|c| c["email"] == a0["email"])
        .unwrap();
    kit.b.edit(b0["id"].as_str().unwrap(), "city", "Milan");
    kit.a.edit(a0["id"].as_str().unwrap(), "city", "Paris");
    let out = ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(out.contains("conflicts 1"), "{out}");
    let list = ok(nexo(dir, &["conflict", "list"]));
    assert!(list.contains("city"), "{list}");
    let id = list.split_whitespace().next().unwrap().to_string();
    let show = ok(nexo(dir, &["conflict", "show", &id]));
    assert!(
        show.contains("\"Paris\"") && show.contains("\"Milan\""),
        "{show}"
    );
    ok(nexo(dir, &["conflict", "resolve", &id, "--keep", "source"]));
    assert_eq!(
        kit.b.contact(b0["id"].as_str().unwrap()).unwrap()["city"],
        "Paris"
    );

    // The queue work is in the audit trail once each: the discard and the
    // resolution, not the replay that failed and changed nothing.
    let trail: Vec<serde_json::Value> =
        serde_json::from_str(&ok(nexo(dir, &["audit", "--json"]))).unwrap();
    let actions: Vec<&str> = trail
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["pipeline.apply", "dlq.discard", "conflict.resolve"],
        "{trail:#?}"
    );
    assert_eq!(trail[0]["target"], format!("conflict/{id}"));
    assert_eq!(trail[0]["before"]["status"], "open");
    assert_eq!(trail[0]["after"]["status"], "resolved");
    assert_eq!(trail[0]["after"]["kept"], "source");
    assert_eq!(trail[1]["after"]["status"], "discarded");

    // The same contact in both systems.
    let out = ok(nexo(
        dir,
        &["identity", "crm-a", "contacts", a0["id"].as_str().unwrap()],
    ));
    assert!(
        out.contains(&format!("crm-a/contacts/{}", a0["id"].as_str().unwrap())),
        "{out}"
    );
    assert!(
        out.contains(&format!("crm-b/contacts/{}", b0["id"].as_str().unwrap())),
        "{out}"
    );
    let err = fails(nexo(dir, &["identity", "crm-a", "contacts", "nope"]));
    assert!(err.contains("no record crm-a/contacts/nope"), "{err}");

    // History and one run's detail.
    let runs = ok(nexo(dir, &["runs", "--pipeline", "a-to-b"]));
    assert!(
        runs.lines().filter(|l| l.starts_with('#')).count() >= 4,
        "{runs}"
    );
    let first = runs.lines().last().unwrap();
    let run_id = first
        .trim_start_matches('#')
        .split_whitespace()
        .next()
        .unwrap();
    let show = ok(nexo(dir, &["run", "show", run_id]));
    assert!(
        show.contains("created") && show.contains("records:"),
        "{show}"
    );
    let err = fails(nexo(dir, &["run", "show", "99999"]));
    assert!(err.contains("no run #99999"), "{err}");

    // Paused pipelines do not run.
    ok(nexo(dir, &["pipeline", "pause", "a-to-b"]));
    let err = fails(nexo(dir, &["pipeline", "run", "a-to-b"]));
    assert!(err.contains("paused"), "{err}");
    ok(nexo(dir, &["pipeline", "resume", "a-to-b"]));
    ok(nexo(dir, &["pipeline", "run", "a-to-b"]));
}

//! Runs that would never end, and records that would stop a pipeline for
//! good, driven through the `nexo` binary as an operator meets them: a
//! source that always has more stops at the pipeline's limit with its pages
//! kept; `nexo run stop` and a pause end a running run at a page boundary;
//! `serve` does not pick up a paused pipeline's cut-short run; a state over
//! the cap fails the run by name; poison records are quarantined one by one
//! while the rest of their page is delivered; and 10 000 copies of one id in
//! a page make one create.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use nexo::sync::store::{PipelineStore, QueueStore, RunRow, RunStore};
use nexo_tests::cli::{self, fails, listening_url, ok, until};
use nexo_tests::programs;
use nexo_tests::synckit::Kit;
use serde_json::Value;

fn nexo_cmd(dir: &Path) -> Command {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
}

fn nexo(dir: &Path, args: &[&str]) -> Output {
    nexo_cmd(dir).args(args).output().unwrap()
}

/// A kit whose connection `runs` reaches the hostile-runs connector; the
/// destination is TinyCRM `crm-b`, empty.
async fn kit() -> Kit {
    let kit = Kit::new(Default::default(), Default::default(), 10).await;
    kit.add_connector("acme/hostile-runs", programs::HOSTILE_RUNS, "runs")
        .await;
    kit
}

/// A pipeline from hostile-runs' `stream` into `crm-b/contacts`, with
/// `tables` (TOML) after the rest, applied through the CLI.
fn apply(kit: &Kit, name: &str, stream: &str, tables: &str) {
    let text = format!(
        "name = \"{name}\"\nentity = \"contact\"\n\
         [source]\nconnection = \"runs\"\nstream = \"{stream}\"\n\
         [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n{tables}\n"
    );
    let file = kit.dir.path().join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    ok(nexo(
        kit.dir.path(),
        &["pipeline", "apply", file.to_str().unwrap()],
    ));
}

fn run_json(kit: &Kit, id: i64) -> Value {
    let out = ok(nexo(
        kit.dir.path(),
        &["run", "show", &id.to_string(), "--json"],
    ));
    serde_json::from_str(out.trim()).unwrap()
}

fn saved_state(kit: &Kit, name: &str) -> Option<String> {
    kit.db.pipeline(name).unwrap().unwrap().state
}

/// Last names of the destination's contacts, sorted.
fn last_names(kit: &Kit) -> Vec<String> {
    let mut v: Vec<String> = kit
        .b
        .contacts()
        .iter()
        .map(|c| c["last_name"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// A `nexo` process in the background, killed on drop if still running
/// (a test that fails must not leave a runaway behind).
struct Background(Option<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `nexo pipeline run NAME` in the background.
fn spawn_run(kit: &Kit, name: &str) -> Background {
    Background(Some(
        nexo_cmd(kit.dir.path())
            .args(["pipeline", "run", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Wait for the process to exit (bounded: a run that never ends fails the
/// test instead of hanging it).
async fn exit_of(mut bg: Background, what: &str) -> Output {
    until(what, || {
        bg.0.as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_some())
    })
    .await;
    bg.0.take().unwrap().wait_with_output().unwrap()
}

/// Wait until the pipeline's newest run has committed at least `pages`.
async fn committed(kit: &Kit, name: &str, pages: i64) -> RunRow {
    until(&format!("{name} to commit {pages} pages"), || {
        kit.runs(name).first().is_some_and(|r| r.pages >= pages)
    })
    .await;
    kit.runs(name).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_always_has_more_stops_at_the_page_limit_with_its_pages_kept() {
    let kit = kit().await;
    apply(&kit, "endless", "endless", "[limits]\nmax_pages = 5");
    let err = fails(nexo(kit.dir.path(), &["pipeline", "run", "endless"]));
    assert!(
        err.contains("page limit of 5") && err.contains("[limits].max_pages"),
        "{err}"
    );
    // (A run's pages include the destination's change tracking: the
    // source's pages are its reads, one record each.)
    let run = kit.runs("endless").remove(0);
    assert_eq!(
        (run.status.as_str(), run.counts.read),
        ("failed", 5),
        "{run:?}"
    );
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("page limit of 5")),
        "{run:?}"
    );
    // The five pages are kept: their records and their cursor.
    assert_eq!(saved_state(&kit, "endless").as_deref(), Some("5"));
    assert_eq!(
        last_names(&kit),
        ["Page 1", "Page 2", "Page 3", "Page 4", "Page 5"]
    );

    // A record limit stops it the same way, by name.
    apply(&kit, "endless", "endless", "[limits]\nmax_records = 3");
    let err = fails(nexo(kit.dir.path(), &["pipeline", "run", "endless"]));
    assert!(
        err.contains("record limit of 3") && err.contains("[limits].max_records"),
        "{err}"
    );
    assert_eq!(saved_state(&kit, "endless").as_deref(), Some("8"));

    // A limit of zero is refused when the pipeline is applied.
    let file = kit.dir.path().join("zero.toml");
    let refused = |limit: &str| {
        std::fs::write(
            &file,
            format!(
                "name = \"zero\"\nentity = \"contact\"\n[source]\nconnection = \"runs\"\nstream = \"endless\"\n\
                 [destination]\nconnection = \"crm-b\"\nstream = \"contacts\"\n[limits]\n{limit}\n"
            ),
        )
        .unwrap();
        fails(nexo(
            kit.dir.path(),
            &["pipeline", "apply", file.to_str().unwrap()],
        ))
    };
    let err = refused("max_pages = 0");
    assert!(err.contains("limits.max_pages"), "{err}");
    let err = refused("max_pagez = 9");
    assert!(err.contains("max_pagez"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexo_run_stop_ends_a_running_run_and_the_next_run_resumes_from_its_cursor() {
    let kit = kit().await;
    // Default limits: nothing stops this run but the operator.
    apply(&kit, "endless", "endless", "");
    let child = spawn_run(&kit, "endless");
    let run = committed(&kit, "endless", 4).await;
    let out = ok(nexo(kit.dir.path(), &["run", "stop", &run.id.to_string()]));
    assert!(out.contains(&format!("#{}", run.id)), "{out}");
    let out = exit_of(child, "the stopped run to end").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped"), "{stderr}");

    let run = kit.runs("endless").remove(0);
    assert_eq!(run.status, "cancelled", "{run:?}");
    // One record per source page.
    let pages = run.counts.read as i64;
    assert!(pages >= 3, "{run:?}");
    let shown = run_json(&kit, run.id);
    assert_eq!(shown["status"], "cancelled", "{shown}");
    // Every committed page is kept, with the cursor after the last one.
    assert_eq!(saved_state(&kit, "endless"), Some(pages.to_string()));
    assert_eq!(kit.b.contacts().len() as i64, pages);

    // Stopping a run that is not running says so.
    let err = fails(nexo(kit.dir.path(), &["run", "stop", &run.id.to_string()]));
    assert!(
        err.contains("not running") && err.contains("cancelled"),
        "{err}"
    );

    // The next run goes on from the committed cursor.
    apply(&kit, "endless", "endless", "[limits]\nmax_pages = 2");
    fails(nexo(kit.dir.path(), &["pipeline", "run", "endless"]));
    assert_eq!(saved_state(&kit, "endless"), Some((pages + 2).to_string()));
    let names = last_names(&kit);
    assert_eq!(names.len() as i64, pages + 2);
    for n in [pages + 1, pages + 2] {
        assert!(names.contains(&format!("Page {n}")), "{names:?}");
    }
}

/// `nexo serve` on a free port: the process and its base URL.
fn serve(kit: &Kit) -> (Background, String) {
    let mut daemon = Background(Some(
        nexo_cmd(kit.dir.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("NEXO_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    // The first line says where it listens.
    let url = listening_url(daemon.0.as_mut().unwrap());
    (daemon, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_stops_a_run_under_serve() {
    const TOKEN: &str = "nexo_runaway_token";
    let kit = kit().await;
    kit.db
        .insert_token("admin", TOKEN, nexo::store::service::Role::Admin)
        .unwrap();
    apply(&kit, "endless", "endless", "");
    let (daemon, url) = serve(&kit);
    let http = reqwest::Client::new();
    let started = http
        .post(format!("{url}/api/pipelines/endless/run"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let run = committed(&kit, "endless", 3).await;
    let stop = |id: i64| {
        http.post(format!("{url}/api/runs/{id}/stop"))
            .bearer_auth(TOKEN)
            .send()
    };
    let asked = stop(run.id).await.unwrap();
    assert_eq!(asked.status(), 202);
    let body: Value = asked.json().await.unwrap();
    assert_eq!(body["id"], run.id, "{body}");
    until("the run to end cancelled", || {
        kit.db.run(run.id).unwrap().unwrap().status == "cancelled"
    })
    .await;
    // Not running any more: a conflict, said in words; no such run: 404.
    let again = stop(run.id).await.unwrap();
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not running"),
        "{body}"
    );
    assert_eq!(stop(run.id + 100).await.unwrap().status(), 404);
    let shown: Value = http
        .get(format!("{url}/api/runs/{}", run.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["run"]["status"], "cancelled", "{shown}");
    drop(daemon);
    // The cursor is where the run stopped.
    let read = kit.db.run(run.id).unwrap().unwrap().counts.read;
    assert_eq!(saved_state(&kit, "endless"), Some(read.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_pipeline_ends_its_running_run_at_a_page_boundary() {
    let kit = kit().await;
    apply(&kit, "endless", "endless", "");
    let child = spawn_run(&kit, "endless");
    let run = committed(&kit, "endless", 2).await;
    ok(nexo(kit.dir.path(), &["pipeline", "pause", "endless"]));
    exit_of(child, "the paused pipeline's run to end").await;
    let ended = kit.db.run(run.id).unwrap().unwrap();
    assert_eq!(ended.status, "cancelled", "{ended:?}");
    assert!(
        ended.error.as_deref().is_some_and(|e| e.contains("paused")),
        "{ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_does_not_resume_the_cut_short_run_of_a_paused_pipeline() {
    let kit = kit().await;
    apply(&kit, "endless", "endless", "");
    apply(&kit, "control", "endless", "");
    // Runs cut short by a crash (left `running`): one of a pipeline then
    // paused, one of a control pipeline that is not.
    let cut = kit.db.begin_run("endless").unwrap();
    kit.db.begin_run("control").unwrap();
    ok(nexo(kit.dir.path(), &["pipeline", "pause", "endless"]));
    let (daemon, _) = serve(&kit);
    // serve resumes the control pipeline's run …
    until("serve to resume the control pipeline", || {
        kit.runs("control").len() == 2
    })
    .await;
    drop(daemon);
    // … and not the paused one's (both were found by the same scan).
    let runs = kit.runs("endless");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].id, cut, "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_growing_past_the_cap_fails_the_run_by_name_with_its_pages_kept() {
    let kit = kit().await;
    apply(&kit, "big", "big-state", "");
    let child = spawn_run(&kit, "big");
    let out = exit_of(child, "the run with a growing state to end").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state") && err.contains("1048576") && err.contains("max_state_bytes"),
        "{err}"
    );
    // The first page's state (512 KiB) is kept; the second's (1 MiB and
    // 2 bytes) is refused with its page.
    let run = kit.runs("big").remove(0);
    assert_eq!(
        (run.status.as_str(), run.counts.read),
        ("failed", 1),
        "{run:?}"
    );
    let state = saved_state(&kit, "big").unwrap();
    assert!(state.starts_with("1:") && state.len() <= 1 << 20);
    assert_eq!(last_names(&kit), ["Page 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_quarantined_one_by_one_and_the_rest_is_delivered() {
    let kit = kit().await;
    apply(&kit, "poison", "poison", "");
    let out = ok(nexo(
        kit.dir.path(),
        &["pipeline", "run", "poison", "--json"],
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["counts"]["created"], 3, "{v}");
    assert_eq!(v["counts"]["quarantined"], 2, "{v}");
    assert_eq!(last_names(&kit), ["One", "Three", "Two"]);

    let letters = kit
        .db
        .dead_letters(
            Some("poison"),
            Some(nexo::sync::store::DeadLetterStatus::Open),
        )
        .unwrap();
    let mut bad: Vec<(&str, &str, &str)> = letters
        .iter()
        .map(|d| {
            (
                d.letter.source_id.as_str(),
                d.letter.class.as_str(),
                d.letter.error.as_str(),
            )
        })
        .collect();
    bad.sort();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!((bad[0].0, bad[0].1), ("deep", "payload"), "{bad:?}");
    assert!(bad[0].2.contains("nested deeper than 64"), "{bad:?}");
    assert_eq!((bad[1].0, bad[1].1), ("huge", "payload"), "{bad:?}");
    assert!(bad[1].2.contains("number out of range"), "{bad:?}");
    let list = ok(nexo(
        kit.dir.path(),
        &["dlq", "list", "--pipeline", "poison"],
    ));
    assert!(list.contains("deep") && list.contains("huge"), "{list}");
    // A malformed record cannot be replayed as it is.
    let err = fails(nexo(
        kit.dir.path(),
        &["dlq", "replay", &letters[0].id.to_string()],
    ));
    assert!(err.contains("fix it in the source"), "{err}");

    // The next run succeeds too: the good records are in sync.
    let out = ok(nexo(
        kit.dir.path(),
        &["pipeline", "run", "poison", "--json"],
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["counts"]["unchanged"], 3, "{v}");
    assert_eq!(v["counts"]["quarantined"], 2, "{v}");
    assert_eq!(kit.b.contacts().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_copies_of_one_id_in_a_page_make_one_create_and_no_update_after() {
    let kit = kit().await;
    apply(&kit, "dupes", "dupes", "");
    let out = ok(nexo(
        kit.dir.path(),
        &["pipeline", "run", "dupes", "--json"],
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["counts"]["read"], 10_000, "{v}");
    assert_eq!(v["counts"]["created"], 1, "{v}");
    assert_eq!(v["counts"]["superseded"], 9_999, "{v}");
    // The last copy wins.
    assert_eq!(last_names(&kit), ["N9999"]);
    let run = kit.runs("dupes").remove(0);
    assert_eq!(run_json(&kit, run.id)["counts"]["superseded"], 9_999);
    let shown = ok(nexo(kit.dir.path(), &["run", "show", &run.id.to_string()]));
    assert!(shown.contains("superseded 9999"), "{shown}");

    let out = ok(nexo(
        kit.dir.path(),
        &["pipeline", "run", "dupes", "--json"],
    ));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["counts"]["created"], 0, "{v}");
    assert_eq!(v["counts"]["updated"], 0, "{v}");
    assert_eq!(v["counts"]["unchanged"], 1, "{v}");
    assert_eq!(kit.b.contacts().len(), 1);
}

//! Runs on both backends: stops, ends, interruptions and their durations,
//! the lease fence, pruning, and the history read back.

use super::*;

on_both!(
    a_stop_is_asked_of_running_runs_only_and_a_pause_stops_too,
    superseded_records_are_counted_with_the_run,
    a_killed_run_found_with_its_lock_free_ends_at_its_last_progress,
    a_run_left_running_is_marked_interrupted_by_the_next,
    old_runs_are_pruned_with_their_records,
    a_run_that_lost_its_lease_commits_nothing,
    runs_are_listed_newest_first_by_pipeline_and_status,
);

fn a_stop_is_asked_of_running_runs_only_and_a_pause_stops_too(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    assert_eq!(db.cancel_reason(run).unwrap(), None);
    db.set_paused("p", true, None).unwrap();
    assert_eq!(db.cancel_reason(run).unwrap(), Some(CancelReason::Paused));
    assert!(db.request_stop(run).unwrap());
    assert_eq!(
        db.cancel_reason(run).unwrap(),
        Some(CancelReason::Requested)
    );
    db.finish_run(run, RunStatus::Cancelled, Some("stopped"))
        .unwrap();
    assert!(!db.request_stop(run).unwrap());
    assert!(!db.request_stop(run + 1).unwrap());
    assert_eq!(db.run(run).unwrap().unwrap().status, "cancelled");
}

fn superseded_records_are_counted_with_the_run(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let page = PageCommit {
        state: Some("1".into()),
        counts: Counts {
            read: 10,
            superseded: 9,
            ..Counts::default()
        },
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    let row = db.run(run).unwrap().unwrap();
    assert_eq!((row.counts.read, row.counts.superseded), (10, 9));
}

fn a_killed_run_found_with_its_lock_free_ends_at_its_last_progress(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    exec(
        &db,
        &format!("UPDATE runs SET started_at = '2026-01-01T10:00:00.000Z' WHERE run_id = {run}"),
    );
    let page = PageCommit {
        log: vec![(LogLevel::Info, "a page".into())],
        state: Some("c1".into()),
        ..PageCommit::default()
    };
    db.commit_page("p", run, &page).unwrap();
    exec(
        &db,
        &format!(
            "UPDATE runs SET last_progress_at = '2026-01-01T10:00:42.000Z' WHERE run_id = {run}"
        ),
    );
    assert!(db.interrupt_run(run).unwrap());
    let row = db.run(run).unwrap().unwrap();
    assert_eq!(row.status, "interrupted");
    assert_eq!(row.duration_ms, Some(42_000));
    assert_eq!(row.finished_at.as_deref(), Some("2026-01-01T10:00:42.000Z"));
    assert!(!db.interrupt_run(run).unwrap(), "only a running run");
}

fn a_run_left_running_is_marked_interrupted_by_the_next(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let first = db.begin_run("p").unwrap();
    let second = db.begin_run("p").unwrap();
    assert_eq!(db.run(first).unwrap().unwrap().status, "interrupted");
    assert_eq!(db.run(second).unwrap().unwrap().status, "running");
    assert!(db.previous_run_start("p", second).unwrap().is_some());
}

fn old_runs_are_pruned_with_their_records(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let old = db.begin_run("p").unwrap();
    db.commit_page(
        "p",
        old,
        &PageCommit {
            results: vec![RecordResult {
                source_id: "a1".into(),
                destination_id: None,
                outcome: RecordOutcome::Unchanged,
                detail: None,
            }],
            ..PageCommit::default()
        },
    )
    .unwrap();
    db.finish_run(old, RunStatus::Succeeded, None).unwrap();
    exec(
        &db,
        &format!("UPDATE runs SET finished_at = '2020-01-01T00:00:00Z' WHERE run_id = {old}"),
    );
    let recent = db.begin_run("p").unwrap();
    db.finish_run(recent, RunStatus::Succeeded, None).unwrap();
    assert_eq!(db.prune_runs(30).unwrap(), 1);
    assert!(db.run(old).unwrap().is_none());
    assert!(db.run_records(old).unwrap().is_empty(), "records cascade");
    assert!(db.run(recent).unwrap().is_some());
}

/// The fence: a run that no longer holds itself — ended as
/// interrupted because another process took its pipeline over, or
/// past its lease — commits nothing, and says why; a run finished by
/// someone else keeps the status they gave it.
fn a_run_that_lost_its_lease_commits_nothing(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    let page = |state: &str| PageCommit {
        state: Some(state.into()),
        links: vec![link("a", "a1", None, 1)],
        ..PageCommit::default()
    };
    let taken = db.begin_run("p").unwrap();
    db.commit_page("p", taken, &page("1")).unwrap();
    assert!(db.interrupt_run(taken).unwrap());
    let err = db.commit_page("p", taken, &page("2")).unwrap_err();
    assert!(
        matches!(err, nexo_db::StoreError::LeaseLost { run } if run == taken),
        "{err}"
    );
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("1")
    );
    db.finish_run(taken, RunStatus::Failed, Some("late"))
        .unwrap();
    assert_eq!(
        db.run(taken).unwrap().unwrap().status,
        RunStatus::Interrupted
    );

    let leased = db.begin_run("p").unwrap();
    exec(
        &db,
        &format!("UPDATE runs SET lease_until_ms = 1000 WHERE run_id = {leased}"),
    );
    let err = db.commit_page("p", leased, &page("3")).unwrap_err();
    assert!(
        matches!(err, nexo_db::StoreError::LeaseLost { .. }),
        "{err}"
    );
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("1")
    );
    exec(
        &db,
        &format!(
            "UPDATE runs SET lease_until_ms = {} WHERE run_id = {leased}",
            i64::MAX
        ),
    );
    db.commit_page("p", leased, &page("3")).unwrap();
    assert_eq!(
        db.pipeline("p").unwrap().unwrap().state.as_deref(),
        Some("3")
    );
}

fn runs_are_listed_newest_first_by_pipeline_and_status(db: Database) {
    db.save_pipeline(&pipeline("p")).unwrap();
    db.save_pipeline(&pipeline("q")).unwrap();
    let p1 = db.begin_run("p").unwrap();
    db.finish_run(p1, RunStatus::Failed, Some("boom")).unwrap();
    let q1 = db.begin_run("q").unwrap();
    let p2 = db.begin_run("p").unwrap();
    db.finish_run(p2, RunStatus::Succeeded, None).unwrap();
    let ids = |filter: RunFilter| -> Vec<RunId> {
        db.runs(&filter).unwrap().iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(RunFilter::default()), [p2, q1, p1]);
    assert_eq!(
        ids(RunFilter {
            pipeline: Some("p".into()),
            ..RunFilter::default()
        }),
        [p2, p1]
    );
    assert_eq!(
        ids(RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        }),
        [q1]
    );
    assert_eq!(
        ids(RunFilter {
            limit: 1,
            ..RunFilter::default()
        }),
        [p2]
    );
    let failed = db.run(p1).unwrap().unwrap();
    assert_eq!(failed.error.as_deref(), Some("boom"));
    assert!(failed.finished_at.is_some());
    assert!(failed.duration_ms.is_some_and(|d| d >= 0));
    assert_eq!(
        db.previous_run_start("p", p2).unwrap(),
        Some(failed.started_at)
    );
    assert_eq!(db.previous_run_start("p", p1).unwrap(), None);
    assert!(db.run(p2 + 100).unwrap().is_none());
    // Only what ended long ago goes: nothing here.
    assert_eq!(db.prune_runs(1).unwrap(), 0);
}

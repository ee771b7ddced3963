//! Several hosts on one PostgreSQL at once: what SQLite got from its single
//! writer, the PostgreSQL store gets from row locks, `ON CONFLICT` and an
//! advisory lock. These run on PostgreSQL alone.

use super::*;

/// A migrated PostgreSQL database and its URL, for a second host.
fn postgres_database_and_url() -> (Database, String) {
    let url = nexo_db::postgres::testing::database().unwrap();
    (Database::migrate_postgres(&url).unwrap().0, url)
}

/// `(connection, record id) → entity id` of every link.
fn entities(db: &Database) -> std::collections::HashMap<(String, String), i64> {
    db.postgres()
        .unwrap()
        .with(async |c| {
            let rows = c
                .query(
                    "SELECT connection, record_id, entity_id FROM entity_links",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect())
        })
        .unwrap()
}

/// Another host's commit in progress: it linked `a/s/a1` and has not
/// committed. Ours waits for it, then joins the entity it made — or, had
/// it rolled back, makes its own. Either way one link, no error.
#[test]
fn a_commit_waits_for_another_hosts_link_of_the_same_record_then_joins_it() {
    for other_commits in [true, false] {
        let (db, url) = postgres_database_and_url();
        let other = Database::connect(&url).unwrap();
        db.save_pipeline(&pipeline("p")).unwrap();
        let run = db.begin_run("p").unwrap();
        let (linked, go) = (
            std::sync::mpsc::channel::<()>(),
            std::sync::mpsc::channel::<()>(),
        );
        let (linked_tx, linked_rx) = linked;
        let (go_tx, go_rx) = go;
        let holder = std::thread::spawn(move || {
            other
                .postgres()
                .unwrap()
                .with(async |c| {
                    let tx = c.transaction().await?;
                    tx.execute(
                        "INSERT INTO entity_links (connection, stream, record_id, entity_id, entity)
                         VALUES ('a', 's', 'a1', nextval('entity_ids'), 'contact')",
                        &[],
                    )
                    .await?;
                    linked_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    if other_commits {
                        tx.commit().await?;
                    } else {
                        tx.rollback().await?;
                    }
                    Ok(())
                })
                .unwrap();
        });
        linked_rx.recv().unwrap();
        let page = PageCommit {
            links: vec![link("a", "a1", None, 1), link("b", "b1", None, 1)],
            ..PageCommit::default()
        };
        let ours = {
            let db = db.clone();
            std::thread::spawn(move || db.commit_page("p", run, &page))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!ours.is_finished(), "the commit waits for the other's row");
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        ours.join().unwrap().unwrap();
        let e = entities(&db);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[&("a".into(), "a1".into())], e[&("b".into(), "b1".into())]);
        let a1 = &db.links("contact", "a", "s", &["a1"], None).unwrap()[0];
        // The other took the first id; ours, the second, is used only
        // when the other rolled back.
        assert_eq!(a1.entity_id, if other_commits { 1 } else { 2 });
    }
}

/// Two hosts commit, at once and many times, pages of two pipelines with
/// the same source and entity type that link the same new source records
/// (groups in opposite orders) to records of their own destinations, and new
/// records of their own: every commit succeeds, each source record has
/// one link and one entity shared by both destinations' records, and no
/// two new entities share an id.
#[test]
fn hosts_committing_the_same_new_records_at_once_share_one_entity() {
    const ROUNDS: usize = 30;
    const SHARED: usize = 20;
    let (db, url) = postgres_database_and_url();
    let hosts = [db.clone(), Database::connect(&url).unwrap()];
    for name in ["to-b", "to-c"] {
        hosts[0].save_pipeline(&pipeline(name)).unwrap();
    }
    let barrier = std::sync::Barrier::new(2);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = [("to-b", "b"), ("to-c", "c")]
            .into_iter()
            .zip(&hosts)
            .map(|((name, dest), host)| {
                let barrier = &barrier;
                s.spawn(move || {
                    let run = host.begin_run(name).unwrap();
                    let mut failures = Vec::new();
                    for round in 0..ROUNDS {
                        let mut groups = Vec::new();
                        for k in 0..SHARED {
                            let id = format!("a-{round}-{k}");
                            // The source record first, as the engine
                            // orders a new group.
                            groups.push([
                                link("a", &id, None, k),
                                LinkUpdate {
                                    peer: std::sync::Arc::new(Endpoint {
                                        connection: "a".into(),
                                        stream: "s".into(),
                                    }),
                                    ..link(dest, &format!("{dest}-{round}-{k}"), None, k)
                                },
                            ]);
                        }
                        if dest == "c" {
                            groups.reverse();
                        }
                        let mut links: Vec<LinkUpdate> = groups.into_iter().flatten().collect();
                        links.push(link("a", &format!("own-{dest}-{round}"), None, SHARED));
                        barrier.wait();
                        if let Err(e) = host.commit_page(
                            name,
                            run,
                            &PageCommit {
                                links,
                                ..PageCommit::default()
                            },
                        ) {
                            failures.push(format!("{name} round {round}: {e}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{failures:?}");
    let e = entities(&db);
    assert_eq!(e.len(), ROUNDS * (SHARED * 3 + 2), "one link per record");
    for round in 0..ROUNDS {
        for k in 0..SHARED {
            let of = |c: &str, id: String| e[&(c.to_string(), id)];
            let a = of("a", format!("a-{round}-{k}"));
            assert_eq!(a, of("b", format!("b-{round}-{k}")), "round {round}");
            assert_eq!(a, of("c", format!("c-{round}-{k}")), "round {round}");
        }
    }
    let distinct: std::collections::HashSet<i64> = e.values().copied().collect();
    assert_eq!(
        distinct.len(),
        ROUNDS * (SHARED + 2),
        "one entity per shared record and per own record, none shared by mistake"
    );
}

/// A commit PostgreSQL ends as a deadlock (it waits for another host's
/// link while that host waits for its run's row) is made again, whole,
/// and succeeds once the other is through.
#[test]
fn a_deadlocked_commit_is_made_again() {
    let (db, url) = postgres_database_and_url();
    let other = Database::connect(&url).unwrap();
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let (linked_tx, linked_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        other
            .postgres()
            .unwrap()
            .with(async |c| {
                let tx = c.transaction().await?;
                // Ours finds the deadlock (its default second), not this.
                tx.batch_execute(
                    "SET LOCAL deadlock_timeout = '20s';
                     INSERT INTO entity_links (connection, stream, record_id, entity_id, entity)
                     VALUES ('a', 's', 'a1', nextval('entity_ids'), 'contact')",
                )
                .await?;
                linked_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                tx.execute("SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE", &[&run])
                    .await?;
                tx.commit().await?;
                Ok(())
            })
            .unwrap();
    });
    linked_rx.recv().unwrap();
    let page = PageCommit {
        state: Some("c1".into()),
        links: vec![link("a", "a1", None, 1), link("b", "b1", None, 1)],
        log: vec![(LogLevel::Info, "page 1".into())],
        ..PageCommit::default()
    };
    let ours = {
        let db = db.clone();
        std::thread::spawn(move || db.commit_page("p", run, &page))
    };
    // Ours holds the run's row and waits for a1.
    std::thread::sleep(std::time::Duration::from_millis(300));
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    ours.join().unwrap().unwrap();
    let e = entities(&db);
    assert_eq!(e[&("a".into(), "a1".into())], e[&("b".into(), "b1".into())]);
    assert_eq!(db.run_log(run).unwrap().len(), 1, "the page went in once");
    assert_eq!(db.run(run).unwrap().unwrap().pages, 1);
}

/// Hosts starting one pipeline's run at once take turns, as SQLite's one
/// writer makes them: each start ends the run before it, so one run is
/// left running, whatever the timing.
#[test]
fn hosts_starting_a_pipeline_at_once_leave_one_run_running() {
    let (db, url) = postgres_database_and_url();
    db.save_pipeline(&pipeline("p")).unwrap();
    let hosts: Vec<Database> = (0..4).map(|_| Database::connect(&url).unwrap()).collect();
    for round in 0..15 {
        let barrier = std::sync::Barrier::new(hosts.len());
        std::thread::scope(|s| {
            for host in &hosts {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    host.begin_run("p").unwrap();
                });
            }
        });
        let running = db
            .runs(&RunFilter {
                status: Some(RunStatus::Running),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(running.len(), 1, "round {round}: {running:?}");
    }
}

/// A takeover and a commit serialise on the run's row: a commit that
/// meets another host ending its run (not yet committed) waits for it,
/// then finds the run no longer its own and writes nothing.
#[test]
fn a_commit_waits_for_a_takeover_in_progress_then_writes_nothing() {
    let (db, url) = postgres_database_and_url();
    let other = Database::connect(&url).unwrap();
    db.save_pipeline(&pipeline("p")).unwrap();
    let run = db.begin_run("p").unwrap();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let taker = std::thread::spawn(move || {
        other
            .postgres()
            .unwrap()
            .with(async |c| {
                let tx = c.transaction().await?;
                tx.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE run_id = $1",
                    &[&run],
                )
                .await?;
                ended_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                tx.commit().await?;
                Ok(())
            })
            .unwrap();
    });
    ended_rx.recv().unwrap();
    let page = PageCommit {
        state: Some("late".into()),
        links: vec![link("a", "a1", None, 1)],
        ..PageCommit::default()
    };
    let ours = {
        let db = db.clone();
        std::thread::spawn(move || db.commit_page("p", run, &page))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!ours.is_finished(), "the commit waits for the takeover");
    go_tx.send(()).unwrap();
    taker.join().unwrap();
    let err = ours.join().unwrap().unwrap_err();
    assert!(
        matches!(err, nexo_db::StoreError::LeaseLost { run: r } if r == run),
        "{err}"
    );
    assert_eq!(db.pipeline("p").unwrap().unwrap().state, None);
    assert!(
        db.links("contact", "a", "s", &["a1"], None)
            .unwrap()
            .is_empty()
    );
}

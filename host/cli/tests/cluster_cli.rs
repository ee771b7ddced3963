//! Several `nexo serve` hosts on one PostgreSQL, as an operator runs them:
//! each its own process and data directory, the same database and secret
//! key. Hosts are killed with SIGKILL while their runs are in flight and
//! started again; what must hold is what a business relies on — every
//! record in every destination exactly once, a pipeline never run twice at
//! once, a schedule firing once across the hosts, a run whose host died
//! taken over from its last committed page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nexo::store::Database;
use nexo::sync::store::{RunFilter, RunRow, RunStatus, RunStore};
use nexo_tests::cli::listening_url;
use nexo_tests::synckit::{Kit, connection, contents};
use nexo_tests::tinycrm;
use serde_json::json;

/// Records in the source.
const RECORDS: usize = 120;
/// Records per source page.
const PAGE: u32 = 10;

/// A `nexo serve` process on the kit's PostgreSQL; killed on drop.
struct Host {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Host {
    fn start(kit: &Kit, logs: &Path, n: usize) -> Host {
        Host::start_on(kit, logs, n, &kit.database_url().unwrap())
    }

    /// A host reaching the database at `url` (through a proxy, say).
    fn start_on(kit: &Kit, logs: &Path, n: usize, url: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(logs.join(format!("host-{n}.log"))).unwrap();
        let mut child = nexo_tests::cli::command(env!("CARGO_BIN_EXE_nexo"), dir.path(), "info")
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--max-concurrent-runs",
                "4",
                "--lease-secs",
                "3",
            ])
            .env("NEXO_DATABASE_URL", url)
            .env("NEXO_SECRET_KEY", kit.secret_key())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = listening_url(&mut child);
        Host {
            child,
            url,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every run of `pipeline`, oldest first.
fn runs_of(db: &Database, pipeline: &str) -> Vec<RunRow> {
    let mut runs = db
        .runs(&RunFilter {
            pipeline: Some(pipeline.into()),
            status: None,
            limit: 10_000,
        })
        .unwrap();
    runs.reverse();
    runs
}

/// The process id in a host id (`name-PID-suffix`).
fn pid_of(host: &str) -> Option<u32> {
    host.rsplit('-').nth(1)?.parse().ok()
}

/// Now, written as the run history writes its times (UTC, milliseconds).
fn db_time() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A small xorshift, seeded, so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn post_hook(url: &str, pipeline: &str, secret: &str) -> u16 {
    let body = b"{}".to_vec();
    reqwest::Client::new()
        .post(format!("{url}/hooks/{pipeline}"))
        .header(
            nexo::serve::webhook::SIGNATURE_HEADER,
            nexo::serve::webhook::sign_now(secret, &body),
        )
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_killed_ten_times_deliver_every_record_exactly_once() {
    let seed = std::env::var("NEXO_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_u64);
    eprintln!("NEXO_CLUSTER_SEED={seed}");
    let mut dice = Dice(seed);
    let kit = Kit::on_postgres(tinycrm::seed(RECORDS), BTreeMap::new(), PAGE).await;
    // Kept when the test fails (the hosts' logs say why); removed at the end.
    let keep_logs = tempfile::tempdir().unwrap().keep();

    // Twenty pipelines from the one source, each to a destination of its
    // own: ten on a cron schedule (every 4 s), ten run by webhooks sent to
    // any host. They share the source's records and the entity, as the
    // pipelines of one business do.
    let mut destinations = Vec::new();
    let sealer =
        nexo::store::sealed::Sealer::from_env_or_file(&kit.dir.path().join("secret.key")).unwrap();
    let mut secrets = BTreeMap::new();
    for i in 0..20 {
        let server = tinycrm::start(BTreeMap::new(), nexo_tests::synckit::TOKEN).await;
        server.crm.lock().unwrap().write_latency = Duration::from_millis(8);
        let name = format!("dest-{i:02}");
        let config = json!({"page_size": PAGE, "timeout_ms": 2000, "base_url": server.url()});
        kit.connections
            .add(connection(&name, &server, config))
            .unwrap();
        let pipeline = format!("p{i:02}");
        let schedule = if i < 10 {
            "[schedule]\ncron = \"*/4 * * * * *\""
        } else {
            ""
        };
        kit.apply(&format!(
            "name = \"{pipeline}\"\nentity = \"contact\"\nbatch_size = 5\n\
             [source]\nconnection = \"crm-a\"\nstream = \"contacts\"\n\
             [destination]\nconnection = \"{name}\"\nstream = \"contacts\"\n\
             [retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n{schedule}\n"
        ))
        .await;
        if i >= 10 {
            let secret = nexo::serve::webhook::rotate_secret(&kit.db, &sealer, &pipeline).unwrap();
            secrets.insert(pipeline.clone(), secret);
        }
        destinations.push((pipeline, server));
    }

    let started = Instant::now();
    let mut started_hosts = 3;
    let mut hosts: Vec<Host> = (0..3).map(|n| Host::start(&kit, &keep_logs, n)).collect();
    for (pipeline, secret) in &secrets {
        let to = &hosts[dice.below(3)].url;
        assert_eq!(post_hook(to, pipeline, secret).await, 202, "{pipeline}");
    }

    // Ten times: wait for a host with a run in flight (pages committed),
    // SIGKILL it, start a new one; between kills, people keep editing the
    // source and webhooks keep arriving at any host.
    let mut killed_runs = Vec::new();
    // Each edit with the database clock's time just before and just after
    // it (the same system clock), so a run taken over can be allowed to
    // read again the records edited while it and the cut run were going.
    let mut edits: Vec<(String, String, String)> = Vec::new();
    for round in 0..10 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let victim = loop {
            assert!(Instant::now() < deadline, "round {round}: no run in flight");
            let running = kit
                .db
                .runs(&RunFilter {
                    pipeline: None,
                    status: Some(RunStatus::Running),
                    limit: 100,
                })
                .unwrap();
            let holders: Vec<(i64, u32)> = kit
                .db
                .leases()
                .unwrap()
                .into_iter()
                .filter(|l| l.held)
                .filter_map(|l| {
                    let (run, _) = l.run?;
                    let row = running.iter().find(|r| r.id == run && r.pages >= 1)?;
                    Some((row.id, pid_of(l.host.as_deref()?)?))
                })
                .collect();
            let alive: Vec<&(i64, u32)> = holders
                .iter()
                .filter(|(_, pid)| hosts.iter().any(|h| h.pid() == *pid))
                .collect();
            if !alive.is_empty() {
                break *alive[dice.below(alive.len())];
            }
            // Nothing in flight: new work arrives.
            for _ in 0..5 {
                let contacts = kit.a.contacts();
                let id = contacts[dice.below(contacts.len())]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let before = db_time();
                kit.a
                    .edit(&id, "city", format!("city {round}-{}", dice.below(1000)));
                edits.push((id, before, db_time()));
            }
            for (pipeline, secret) in &secrets {
                let to = &hosts[dice.below(hosts.len())].url;
                post_hook(to, pipeline, secret).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let (run, pid) = victim;
        let at = hosts.iter().position(|h| h.pid() == pid).unwrap();
        hosts[at].kill();
        killed_runs.push(run);
        eprintln!("round {round}: killed host pid {pid} with run {run} in flight");
        hosts[at] = Host::start(&kit, &keep_logs, started_hosts);
        started_hosts += 1;
    }

    // The last edits, then every pipeline once more; wait until every
    // destination holds the source and nothing runs.
    for (pipeline, secret) in &secrets {
        let to = &hosts[dice.below(hosts.len())].url;
        post_hook(to, pipeline, secret).await;
    }
    let source = contents(&kit.a);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let settled = destinations.iter().all(|(_, d)| contents(d) == source);
        let running = kit
            .db
            .runs(&RunFilter {
                pipeline: None,
                status: Some(RunStatus::Running),
                limit: 10,
            })
            .unwrap();
        if settled && running.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let behind: Vec<&String> = destinations
                .iter()
                .filter(|(_, d)| contents(d) != source)
                .map(|(p, _)| p)
                .collect();
            let mut why = String::new();
            for p in &behind {
                let row = nexo::sync::PipelineStore::pipeline(&kit.db, p)
                    .unwrap()
                    .unwrap();
                why.push_str(&format!(
                    "\n{p}: paused {} {:?}",
                    row.paused, row.paused_reason
                ));
                for r in runs_of(&kit.db, p) {
                    why.push_str(&format!(
                        "\n  run {} {} read {} created {} error {:?}",
                        r.id, r.status, r.counts.read, r.counts.created, r.error
                    ));
                }
            }
            panic!(
                "not settled after 120 s: {behind:?} behind, {} runs running; logs in {}{why}",
                running.len(),
                keep_logs.display()
            );
        }
        // Webhook pipelines run when asked: ask again.
        for (pipeline, secret) in &secrets {
            let to = &hosts[dice.below(hosts.len())].url;
            post_hook(to, pipeline, secret).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A quiet while on the schedules alone: each cron pipeline fires
    // about three times more, once each across the three hosts.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let window = started.elapsed();
    for h in &mut hosts {
        nexo_tests::cli::terminate(&mut h.child, Duration::from_secs(30));
    }

    // Every record exactly once in every destination: the same business
    // contents, and no record created twice (a create whose answer was
    // lost with its host is answered by its idempotency key, not made
    // again).
    for (pipeline, d) in &destinations {
        assert_eq!(contents(d), source, "{pipeline}: lost or changed records");
        assert_eq!(
            d.crm.lock().unwrap().creates,
            RECORDS,
            "{pipeline}: a record was created twice"
        );
    }
    let mut interrupted = 0;
    for (pipeline, _) in &destinations {
        let runs = runs_of(&kit.db, pipeline);
        // Never twice at once: each run starts after the one before ended.
        for pair in runs.windows(2) {
            let ended = pair[0].finished_at.clone().unwrap_or_default();
            assert!(
                pair[1].started_at >= ended,
                "{pipeline}: run {} started at {} before run {} ended at {ended}",
                pair[1].id,
                pair[1].started_at,
                pair[0].id
            );
        }
        for pair in runs.windows(2) {
            let (cut, next) = (&pair[0], &pair[1]);
            if cut.status != RunStatus::Interrupted {
                continue;
            }
            interrupted += 1;
            // Taken over from the last committed page: what the cut run
            // committed is not read again (at most the page in flight),
            // except records edited since the cut run started — those are
            // new changes, read again by design.
            let until = next.finished_at.clone().unwrap_or_else(db_time);
            let edited: std::collections::BTreeSet<&str> = edits
                .iter()
                .filter(|(_, before, after)| *after >= cut.started_at && *before <= until)
                .map(|(id, _, _)| id.as_str())
                .collect();
            assert!(
                cut.counts.read + next.counts.read
                    <= RECORDS as u64 + u64::from(PAGE) + edited.len() as u64,
                "{pipeline}: run {} read {} after run {} had committed {} reads \
                 ({} records edited meanwhile): it started over",
                next.id,
                next.counts.read,
                cut.id,
                cut.counts.read,
                edited.len()
            );
        }
        // A schedule fires once across the hosts: at most one run per
        // fire (every 4 s) in the window, runs that resumed a cut one aside.
        if pipeline.as_str() < "p10" {
            let fresh = runs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i == 0 || runs[i - 1].status != RunStatus::Interrupted)
                .count() as u64;
            let fires = window.as_secs() / 4 + 2;
            assert!(
                fresh <= fires,
                "{pipeline}: {fresh} scheduled runs in {window:?} (at most {fires} fires)"
            );
            assert!(
                fresh >= 2,
                "{pipeline}: the schedule fired {fresh} times in {window:?}: {runs:?}"
            );
        }
        assert!(
            runs.last()
                .is_some_and(|r| r.status == RunStatus::Succeeded),
            "{pipeline}: last run {:?}",
            runs.last()
        );
    }
    for run in &killed_runs {
        let row = kit.db.run(*run).unwrap().unwrap();
        assert_eq!(
            row.status,
            RunStatus::Interrupted,
            "run {run}, killed with its host, was not ended as interrupted"
        );
    }
    assert!(interrupted >= 10, "only {interrupted} runs were cut");
    let hosts_seen = kit.db.hosts().unwrap();
    assert_eq!(hosts_seen.len(), started_hosts, "{hosts_seen:?}");
    let _ = std::fs::remove_dir_all(&keep_logs);
}

/// A TCP proxy on 127.0.0.1 in front of PostgreSQL that can be cut: while
/// cut it forwards nothing either way and new connections wait, as across
/// a network partition (no reset, just silence).
struct Partition {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    async fn start(to: u16) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    let mut open = watch.clone();
                    let _ = open.wait_for(|cut| !*cut).await;
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(forward(cr, sw, watch.clone()));
                    tokio::spawn(forward(sr, cw, watch));
                });
            }
        });
        Partition { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// Copy `from` to `to`, holding every chunk while the link is cut.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A host cut off from the database mid-run: another host takes the run
/// over once the lease has run out; the cut host claims nothing while cut,
/// and when the link comes back, nothing it had in flight is committed
/// (its transaction was ended by the server, or its commit meets the
/// fence), so the destination still holds every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_from_the_database_commits_nothing_after_its_lease_passed() {
    let kit = Kit::on_postgres(tinycrm::seed(RECORDS), BTreeMap::new(), PAGE).await;
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(60);
    kit.apply(&nexo_tests::synckit::pipeline("slow", "batch_size = 5", ""))
        .await;
    let sealer =
        nexo::store::sealed::Sealer::from_env_or_file(&kit.dir.path().join("secret.key")).unwrap();
    let secret = nexo::serve::webhook::rotate_secret(&kit.db, &sealer, "slow").unwrap();
    let logs = tempfile::tempdir().unwrap().keep();
    let url = kit.database_url().unwrap();
    let pg_port: u16 = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap();
    let partition = Partition::start(pg_port).await;
    let through_proxy = url.replace(&format!(":{pg_port}/"), &format!(":{}/", partition.port));

    let mut cut_host = Host::start_on(&kit, &logs, 0, &through_proxy);
    assert_eq!(post_hook(&cut_host.url, "slow", &secret).await, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        assert!(Instant::now() < deadline, "the run did not get going");
        if let Some(r) = runs_of(&kit.db, "slow").last()
            && r.pages >= 2
        {
            break r.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cut_host_id = kit
        .db
        .leases()
        .unwrap()
        .into_iter()
        .find(|l| l.pipeline == "slow")
        .and_then(|l| l.host)
        .unwrap();

    partition.set_cut(true);
    let cut_at = Instant::now();
    let pages_when_cut = kit.db.run(run.id).unwrap().unwrap().pages;
    // Another host: it waits out the lease, then takes the run over.
    let other = Host::start(&kit, &logs, 1);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run was not taken over; logs in {}",
            logs.display()
        );
        let runs = runs_of(&kit.db, "slow");
        if runs.len() >= 2
            && runs
                .last()
                .is_some_and(|r| r.status == RunStatus::Succeeded)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken_after = cut_at.elapsed();
    let cut_run = kit.db.run(run.id).unwrap().unwrap();
    assert_eq!(cut_run.status, RunStatus::Interrupted, "{cut_run:?}");
    // While cut, the host held nothing and started nothing.
    let leases = kit.db.leases().unwrap();
    assert!(
        leases
            .iter()
            .all(|l| l.host.as_deref() != Some(cut_host_id.as_str()) || !l.held),
        "the cut host still holds a lease: {leases:?}"
    );
    assert!(
        runs_of(&kit.db, "slow")
            .iter()
            .all(|r| r.id <= run.id || r.started_at > cut_run.started_at),
    );

    // The link comes back: whatever the cut host had in flight meets the
    // fence (or was ended by the server); it commits nothing more.
    partition.set_cut(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = kit.db.run(run.id).unwrap().unwrap();
    assert_eq!(after.status, RunStatus::Interrupted, "{after:?}");
    assert!(
        after.pages <= pages_when_cut + 1,
        "the cut host committed {} pages after the cut (had {pages_when_cut})",
        after.pages
    );
    assert_eq!(
        after.pages, cut_run.pages,
        "the cut host committed after the takeover"
    );
    assert_eq!(
        contents(&kit.a),
        contents(&kit.b),
        "lost or changed records"
    );
    assert_eq!(
        kit.b.crm.lock().unwrap().creates,
        RECORDS,
        "a record was created twice"
    );
    eprintln!("taken over {taken_after:?} after the cut");
    cut_host.kill();
    drop(other);
    let _ = std::fs::remove_dir_all(&logs);
}

/// What an admin types first: a PostgreSQL without nexo's schema is
/// refused with what to run, `nexo db migrate` migrates it (and says so
/// once), a typo'd scheme is named, and the password never shows.
#[test]
fn the_database_is_chosen_migrated_and_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = nexo_db::postgres::testing::database().unwrap();
    let with_password = url.replace("://nexo@", "://nexo:hunter2@");
    let nexo = |args: &[&str], database: &str| {
        nexo_tests::cli::command(env!("CARGO_BIN_EXE_nexo"), dir.path(), "warn")
            .args(["--database", database])
            .args(args)
            .output()
            .unwrap()
    };
    let err = nexo_tests::cli::fails(nexo(&["runs"], &with_password));
    assert!(err.contains("nexo db migrate"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let out = nexo_tests::cli::ok(nexo(&["db", "migrate"], &with_password));
    assert!(out.contains("sync: migrated to version"), "{out}");
    let again = nexo_tests::cli::ok(nexo(&["db", "migrate"], &with_password));
    assert!(again.contains("at this nexo's schema already"), "{again}");
    assert!(!again.contains("hunter2"), "{again}");
    let listed = nexo_tests::cli::ok(nexo(&["runs"], &url));
    assert!(!listed.contains("error"), "{listed}");
    let err = nexo_tests::cli::fails(nexo(&["runs"], "mysql://db/nexo"));
    assert!(err.contains("`mysql` is not supported"), "{err}");
    assert!(
        !dir.path().join("nexo.db").exists(),
        "a SQLite file was made beside the chosen database"
    );
}

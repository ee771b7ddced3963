//! Keeping an installation safe with the `nexo` binary: a backup taken
//! while a run is writing, restored into a fresh directory, goes on
//! without writing anything twice; a damaged backup or a wrong key is
//! refused before anything is replaced; and after the sealing key is
//! rotated every connection still works while the old key opens nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use nexo_tests::cli::{self, fails, ok, until};
use nexo_tests::synckit::{Kit, contents, pipeline};
use nexo_tests::tinycrm;

const RECORDS: usize = 60;

fn nexo(dir: &Path, args: &[&str]) -> Output {
    cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_mid_run_restores_and_the_next_run_writes_nothing_twice() {
    let kit = Kit::new(tinycrm::seed(RECORDS), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "batch_size = 5", "")).await;
    let d = kit.dir.path();
    // Slow writes: the backup lands while the run is between its pages.
    kit.b.crm.lock().unwrap().write_latency = Duration::from_millis(40);
    let mut run = cli::command(env!("CARGO_BIN_EXE_nexo"), d, "warn")
        .args(["pipeline", "run", "a-to-b"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A committed page: its links and its cursor, in one transaction.
    until("the run committed a page", || {
        let c = kit.db.lock().unwrap();
        c.query_row(
            "SELECT COUNT(*) FROM entity_links WHERE connection = 'crm-b'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            > 0
    })
    .await;
    let backup = tempfile::tempdir().unwrap();
    let to = backup.path().join("b1");
    let out = ok(nexo(d, &["backup", to.to_str().unwrap(), "--with-key"]));
    assert!(
        out.contains("backed up the database and 2 bundle(s)"),
        "{out}"
    );
    let mid_run = kit.b.contacts().len();
    assert!(run.wait().unwrap().success());
    assert!(
        mid_run < RECORDS,
        "the run had finished before the backup ({mid_run} written): the test proves nothing"
    );
    assert_eq!(contents(&kit.b), contents(&kit.a));
    let creates = kit.b.crm.lock().unwrap().creates;
    assert_eq!(creates, RECORDS);

    // Into an installation that exists: refused without --force.
    let err = fails(nexo(d, &["restore", to.to_str().unwrap()]));
    assert!(err.contains("holds an installation"), "{err}");

    // A damaged backup: refused, naming the file, nothing written.
    let damaged = backup.path().join("damaged");
    std::fs::create_dir_all(damaged.join("bundles")).unwrap();
    for entry in walk(&to) {
        let rel = entry.strip_prefix(&to).unwrap();
        std::fs::copy(&entry, damaged.join(rel)).unwrap();
    }
    let bundle = std::fs::read_dir(damaged.join("bundles"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let err = fails(nexo(fresh.path(), &["restore", damaged.to_str().unwrap()]));
    assert!(
        err.contains("bundles/") && err.contains("changed or damaged"),
        "{err}"
    );
    assert!(!fresh.path().join("nexo.db").exists());

    // The backup, restored into a fresh directory: the next run resumes
    // where the backup's run had committed, and what the original run
    // wrote after the backup is recognised, not created again.
    let out = ok(nexo(fresh.path(), &["restore", to.to_str().unwrap()]));
    assert!(out.contains("restored the backup"), "{out}");
    let out = ok(nexo(fresh.path(), &["pipeline", "run", "a-to-b"]));
    // It reads on from the backup's cursor: fewer than every record, and
    // those the first run wrote after the backup are matched, not created.
    let read: usize = out
        .split("read ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no read count in {out}"));
    assert!(read < RECORDS && out.contains("created 0"), "{out}");
    assert_eq!(kit.b.crm.lock().unwrap().creates, creates, "{out}");
    assert_eq!(contents(&kit.b), contents(&kit.a));
    let trail = ok(nexo(fresh.path(), &["audit", "--action", "restore"]));
    assert!(trail.contains("restore"), "{trail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rotating_the_key_connections_work_and_the_old_key_opens_nothing() {
    let kit = Kit::new(tinycrm::seed(2), Default::default(), 10).await;
    let d = kit.dir.path();
    let old_key = std::fs::read_to_string(d.join("secret.key")).unwrap();
    kit.apply(&pipeline("a-to-b", "", "")).await;
    ok(nexo(d, &["pipeline", "webhook", "a-to-b"]));
    let out = ok(nexo(d, &["secrets", "rotate-key"]));
    // Two connections' tokens and the webhook secret.
    assert!(out.contains("sealed 3 secret(s) again"), "{out}");
    let new_key = std::fs::read_to_string(d.join("secret.key")).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());
    assert!(!d.join("secret.key.new").exists());
    for c in ["crm-a", "crm-b"] {
        assert!(ok(nexo(d, &["connection", "test", c])).contains("OK"));
    }
    // The old key, given to nexo, opens nothing.
    let out = cli::command(env!("CARGO_BIN_EXE_nexo"), d, "warn")
        .env("NEXO_SECRET_KEY", old_key.trim())
        .args(["connection", "test", "crm-a"])
        .output()
        .unwrap();
    let err = fails(out);
    assert!(
        err.contains("cannot be opened with this secret key"),
        "{err}"
    );
    // A backup without the key does not restore under another key.
    let backup = tempfile::tempdir().unwrap();
    let to = backup.path().join("b");
    ok(nexo(d, &["backup", to.to_str().unwrap()]));
    let fresh = tempfile::tempdir().unwrap();
    let err = fails(nexo(fresh.path(), &["restore", to.to_str().unwrap()]));
    assert!(err.contains("does not include its sealing key"), "{err}");
    std::fs::write(fresh.path().join("secret.key"), old_key.trim()).unwrap();
    let err = fails(nexo(fresh.path(), &["restore", to.to_str().unwrap()]));
    assert!(
        err.contains("does not open with the current key") && err.contains("was not restored"),
        "{err}"
    );
    assert!(!fresh.path().join("nexo.db").exists());
    std::fs::write(fresh.path().join("secret.key"), new_key.trim()).unwrap();
    ok(nexo(fresh.path(), &["restore", to.to_str().unwrap()]));
    assert!(ok(nexo(fresh.path(), &["connection", "test", "crm-a"])).contains("OK"));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

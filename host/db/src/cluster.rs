//! Several hosts on one PostgreSQL: who they are, which pipeline each one
//! holds and until when, the runs asked for by any of them, and the plugin
//! bundles every host loads. Nothing here is a cluster of our own: each
//! decision is one PostgreSQL transaction over a row lock, and time is the
//! database's clock, so hosts whose clocks drift still agree.
//!
//! A host **claims** a pipeline — a scheduled fire, a run someone asked
//! for, or the resumption of a run whose host died — by taking its row in
//! `pipeline_leases` (`FOR UPDATE SKIP LOCKED`), checking in that
//! transaction that the lease is free and the claim still stands, and
//! writing itself in with a lease. It renews the lease while it runs and
//! releases it at the end. A host that dies stops renewing; once the lease
//! has run out, another host's claim ends the dead host's run
//! (`interrupted`) in the same transaction and starts a run that resumes
//! from the last committed page. Page commits check the run's own lease
//! (the fence, in the sync store), so a host cut off from the database
//! cannot commit after its run was taken over.
//!
//! On SQLite (one host) every method here says it is PostgreSQL's only.

use super::{Database, StoreError};

/// The PostgreSQL tables of the `cluster` component.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE plugin_bundles (
        sha256 TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL,
        added_at TEXT NOT NULL DEFAULT nexo_now_s()
    );
    CREATE TABLE hosts (
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        address TEXT,
        max_concurrent_runs BIGINT NOT NULL,
        started_at TEXT NOT NULL DEFAULT nexo_now_ms(),
        seen_ms BIGINT NOT NULL,
        stopped_at TEXT
    );
    CREATE TABLE pipeline_leases (
        pipeline TEXT PRIMARY KEY REFERENCES pipelines(name) ON DELETE CASCADE,
        host TEXT,
        lease_until_ms BIGINT,
        run_id BIGINT,
        last_started TEXT,
        requested_ms BIGINT
    );
";

/// The `cluster` component's second migration: the webhook deliveries any
/// host accepted, so a delivery sent to two hosts runs once.
pub(crate) const MIGRATION_WEBHOOKS: &str = "
    CREATE TABLE webhook_deliveries (
        signature TEXT PRIMARY KEY,
        at_unix BIGINT NOT NULL
    );
    CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at_unix);
";

/// A host as it registered, and when it was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// Its id (`NEXO_HOST_ID`, or name and a random suffix).
    pub id: String,
    /// The `nexo` version it runs.
    pub version: String,
    /// Where its API listens, as it said.
    pub address: Option<String>,
    /// Its own cap on runs at once.
    pub max_concurrent_runs: i64,
    /// When it started.
    pub started_at: String,
    /// Milliseconds since it was last seen (by the database's clock).
    pub seen_ago_ms: i64,
    /// When it stopped cleanly (none while it runs, or if it died).
    pub stopped_at: Option<String>,
    /// Pipelines whose lease it holds now.
    pub holding: Vec<String>,
}

/// A pipeline's lease row with what a claim must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The pipeline.
    pub pipeline: String,
    /// The host holding it, while its lease runs.
    pub host: Option<String>,
    /// Whether a host holds it now (named, lease not run out).
    pub held: bool,
    /// The run of the last claim, and its status.
    pub run: Option<(i64, String)>,
    /// When its schedule last fired (the firing host's clock, RFC 3339).
    pub last_started: Option<String>,
    /// Whether a run was asked for and is due (its coalescing window has
    /// passed).
    pub requested_due: bool,
    /// A run asked for and not yet due: in how many milliseconds it is
    /// (the scheduler wakes for it).
    pub requested_in_ms: Option<i64>,
}

/// What a claim is for; the claim stands only if what the claimer saw
/// still holds when it takes the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The schedule fires: the pipeline's `last_started` must still be
    /// `seen` (another host that fired first changed it), and becomes
    /// `now`.
    Schedule {
        /// `last_started` as the claimer read it.
        seen: Option<String>,
        /// The fire time to record.
        now: String,
    },
    /// A run asked for (webhook, API, a pipeline it follows): one must
    /// still be pending; it is taken.
    Asked,
    /// The last claim's run ended without finishing (its host died or was
    /// cut off): it is ended `interrupted` if it still shows running, and
    /// the claimer resumes from the last committed page.
    Resume,
    /// A person runs it now (`nexo pipeline run`): only that the lease is
    /// free.
    Manual,
}

/// A claim that was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The run of the previous holder that this claim ended.
    pub interrupted: Option<i64>,
}

/// What asking for a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A run is now pending.
    Queued,
    /// One was pending already: this request joins it.
    Coalesced,
}

/// Why the previous holder's run was ended by the claim that took it over.
const TAKEN_OVER: &str = "its host stopped renewing its lease (the host died, or lost the database); another host took the pipeline over and resumed from the last committed page";

impl Database {
    fn cluster(&self) -> Result<&super::postgres::Postgres, StoreError> {
        self.postgres()
            .ok_or(StoreError::PostgresOnly("sharing work between hosts"))
    }

    /// Record a starting host (or the same id starting again).
    pub fn register_host(
        &self,
        id: &str,
        version: &str,
        address: Option<&str>,
        max_concurrent_runs: usize,
    ) -> Result<(), StoreError> {
        let max = max_concurrent_runs as i64;
        self.cluster()?.with(async |c| {
            c.execute(
                "INSERT INTO hosts (id, version, address, max_concurrent_runs, seen_ms)
                 VALUES ($1, $2, $3, $4, nexo_epoch_ms())
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                     address = excluded.address,
                     max_concurrent_runs = excluded.max_concurrent_runs,
                     started_at = nexo_now_ms(), seen_ms = excluded.seen_ms,
                     stopped_at = NULL",
                &[&id, &version, &address, &max],
            )
            .await?;
            Ok(())
        })
    }

    /// The host is alive (its heartbeat).
    pub fn host_seen(&self, id: &str) -> Result<(), StoreError> {
        self.cluster()?.with(async |c| {
            c.execute(
                "UPDATE hosts SET seen_ms = nexo_epoch_ms() WHERE id = $1",
                &[&id],
            )
            .await?;
            Ok(())
        })
    }

    /// The host stopped cleanly: its leases are released.
    pub fn host_stopped(&self, id: &str) -> Result<(), StoreError> {
        self.cluster()?.transaction(async |tx| {
            tx.execute(
                "UPDATE hosts SET stopped_at = nexo_now_ms() WHERE id = $1",
                &[&id],
            )
            .await?;
            tx.execute(
                "UPDATE pipeline_leases SET host = NULL, lease_until_ms = NULL WHERE host = $1",
                &[&id],
            )
            .await?;
            Ok(())
        })
    }

    /// Every host that registered, newest first, with the pipelines each
    /// holds now.
    pub fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        self.cluster()?.with(async |c| {
            let rows = c
                .query(
                    "SELECT h.id, h.version, h.address, h.max_concurrent_runs, h.started_at,
                            nexo_epoch_ms() - h.seen_ms, h.stopped_at,
                            COALESCE((SELECT array_agg(l.pipeline ORDER BY l.pipeline)
                                        FROM pipeline_leases l
                                       WHERE l.host = h.id
                                         AND l.lease_until_ms > nexo_epoch_ms()), '{}')
                       FROM hosts h ORDER BY h.started_at DESC, h.id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(HostRow {
                        id: r.try_get(0)?,
                        version: r.try_get(1)?,
                        address: r.try_get(2)?,
                        max_concurrent_runs: r.try_get(3)?,
                        started_at: r.try_get(4)?,
                        seen_ago_ms: r.try_get(5)?,
                        stopped_at: r.try_get(6)?,
                        holding: r.try_get(7)?,
                    })
                })
                .collect()
        })
    }

    /// Every pipeline's lease row (a pipeline never claimed has none).
    pub fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        self.cluster()?.with(async |c| {
            let rows = c
                .query(
                    "SELECT l.pipeline, l.host,
                            COALESCE(l.host IS NOT NULL AND l.lease_until_ms > nexo_epoch_ms(), false),
                            l.run_id, r.status, l.last_started,
                            COALESCE(l.requested_ms <= nexo_epoch_ms(), false),
                            CASE WHEN l.requested_ms > nexo_epoch_ms()
                                 THEN l.requested_ms - nexo_epoch_ms() END
                       FROM pipeline_leases l LEFT JOIN runs r ON r.run_id = l.run_id
                      ORDER BY l.pipeline",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let run: Option<i64> = r.try_get(3)?;
                    let status: Option<String> = r.try_get(4)?;
                    Ok(LeaseRow {
                        pipeline: r.try_get(0)?,
                        host: r.try_get(1)?,
                        held: r.try_get(2)?,
                        run: run.zip(status),
                        last_started: r.try_get(5)?,
                        requested_due: r.try_get(6)?,
                        requested_in_ms: r.try_get(7)?,
                    })
                })
                .collect()
        })
    }

    /// Claim `pipeline` for `host` for `lease_ms`, if the lease is free and
    /// `claim` still stands; `None` when another host has it or got there
    /// first.
    pub fn claim_pipeline(
        &self,
        pipeline: &str,
        host: &str,
        lease_ms: i64,
        claim: &Claim,
    ) -> Result<Option<Granted>, StoreError> {
        self.cluster()?.transaction(async |tx| {
            tx.execute(
                "INSERT INTO pipeline_leases (pipeline) SELECT name FROM pipelines WHERE name = $1
                 ON CONFLICT (pipeline) DO NOTHING",
                &[&pipeline],
            )
            .await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT host IS NOT NULL AND lease_until_ms > nexo_epoch_ms(), run_id,
                            last_started, COALESCE(requested_ms <= nexo_epoch_ms(), false)
                       FROM pipeline_leases WHERE pipeline = $1
                     FOR UPDATE SKIP LOCKED",
                    &[&pipeline],
                )
                .await?
            else {
                // No such pipeline, or another host is claiming it now.
                return Ok(None);
            };
            let held: bool = row.try_get(0)?;
            let run: Option<i64> = row.try_get(1)?;
            let last_started: Option<String> = row.try_get(2)?;
            let requested: bool = row.try_get(3)?;
            if held {
                return Ok(None);
            }
            let stands = match claim {
                Claim::Schedule { seen, .. } => &last_started == seen,
                Claim::Asked => requested,
                Claim::Resume | Claim::Manual => true,
            };
            if !stands {
                return Ok(None);
            }
            // The previous holder's run, if it still shows running, ends
            // here: its row lock also waits for a commit of it in flight,
            // and its fence refuses any commit after this.
            let mut interrupted = None;
            if let Some(run) = run {
                let ended = tx
                    .execute(
                        "UPDATE runs SET status = 'interrupted', error = $2,
                             finished_at = COALESCE(last_progress_at, started_at),
                             duration_ms = (extract(epoch FROM nexo_time(COALESCE(last_progress_at, started_at))
                                            - nexo_time(started_at)) * 1000)::bigint
                         WHERE run_id = $1 AND status = 'running'",
                        &[&run, &TAKEN_OVER],
                    )
                    .await?;
                if ended > 0 {
                    interrupted = Some(run);
                }
            }
            let fire: Option<&str> = match claim {
                Claim::Schedule { now, .. } => Some(now.as_str()),
                Claim::Asked | Claim::Resume | Claim::Manual => None,
            };
            // Whatever the claim is for, the run it starts answers the
            // requests due by now (a later one waits for its window).
            tx.execute(
                "UPDATE pipeline_leases
                    SET host = $2, lease_until_ms = nexo_epoch_ms() + $3, run_id = NULL,
                        last_started = COALESCE($4, last_started),
                        requested_ms = CASE WHEN requested_ms <= nexo_epoch_ms() THEN NULL
                                            ELSE requested_ms END
                  WHERE pipeline = $1",
                &[&pipeline, &host, &lease_ms, &fire],
            )
            .await?;
            Ok(Some(Granted { interrupted }))
        })
    }

    /// Tie run `run` to `host`'s claim on `pipeline`: the run carries the
    /// same lease, which its commits check. False when the claim was lost.
    pub fn attach_run(
        &self,
        pipeline: &str,
        host: &str,
        run: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.cluster()?.transaction(async |tx| {
            let held = tx
                .execute(
                    "UPDATE pipeline_leases SET run_id = $3, lease_until_ms = nexo_epoch_ms() + $4
                      WHERE pipeline = $1 AND host = $2 AND lease_until_ms > nexo_epoch_ms()",
                    &[&pipeline, &host, &run, &lease_ms],
                )
                .await?;
            if held == 0 {
                return Ok(false);
            }
            tx.execute(
                "UPDATE runs SET host = $2, lease_until_ms = nexo_epoch_ms() + $3
                  WHERE run_id = $1 AND status = 'running'",
                &[&run, &host, &lease_ms],
            )
            .await?;
            Ok(true)
        })
    }

    /// Extend `host`'s lease on `pipeline` (and its run's) by `lease_ms`
    /// from now; false when it no longer holds it (it ran out and another
    /// host claimed it, or the run was ended).
    pub fn renew_lease(
        &self,
        pipeline: &str,
        host: &str,
        run: Option<i64>,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.cluster()?.transaction(async |tx| {
            let held = tx
                .execute(
                    "UPDATE pipeline_leases SET lease_until_ms = nexo_epoch_ms() + $3
                      WHERE pipeline = $1 AND host = $2 AND lease_until_ms > nexo_epoch_ms()",
                    &[&pipeline, &host, &lease_ms],
                )
                .await?;
            if held == 0 {
                return Ok(false);
            }
            if let Some(run) = run {
                let running = tx
                    .execute(
                        "UPDATE runs SET lease_until_ms = nexo_epoch_ms() + $2
                          WHERE run_id = $1 AND status = 'running'",
                        &[&run, &lease_ms],
                    )
                    .await?;
                return Ok(running > 0);
            }
            Ok(true)
        })
    }

    /// Give `pipeline` back (the run ended).
    pub fn release_lease(&self, pipeline: &str, host: &str) -> Result<(), StoreError> {
        self.cluster()?.with(async |c| {
            c.execute(
                "UPDATE pipeline_leases SET host = NULL, lease_until_ms = NULL
                  WHERE pipeline = $1 AND host = $2",
                &[&pipeline, &host],
            )
            .await?;
            Ok(())
        })
    }

    /// Ask for a run of `pipeline` in `delay_ms` (any host takes it);
    /// requests while one is pending coalesce into it.
    pub fn request_run(&self, pipeline: &str, delay_ms: i64) -> Result<Asked, StoreError> {
        self.cluster()?.transaction(async |tx| {
            tx.execute(
                "INSERT INTO pipeline_leases (pipeline) SELECT name FROM pipelines WHERE name = $1
                 ON CONFLICT (pipeline) DO NOTHING",
                &[&pipeline],
            )
            .await?;
            let queued = tx
                .execute(
                    "UPDATE pipeline_leases SET requested_ms = nexo_epoch_ms() + $2
                      WHERE pipeline = $1 AND requested_ms IS NULL",
                    &[&pipeline, &delay_ms],
                )
                .await?;
            Ok(if queued > 0 {
                Asked::Queued
            } else {
                Asked::Coalesced
            })
        })
    }

    /// Runs still `running` whose lease has run out (their host died or
    /// was cut off), ended `interrupted`; their ids.
    pub fn interrupt_expired_runs(&self) -> Result<Vec<i64>, StoreError> {
        self.cluster()?.with(async |c| {
            let rows = c
                .query(
                    "UPDATE runs SET status = 'interrupted', error = $1,
                         finished_at = COALESCE(last_progress_at, started_at),
                         duration_ms = (extract(epoch FROM nexo_time(COALESCE(last_progress_at, started_at))
                                        - nexo_time(started_at)) * 1000)::bigint
                      WHERE status = 'running' AND lease_until_ms < nexo_epoch_ms()
                  RETURNING run_id",
                    &[&TAKEN_OVER],
                )
                .await?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
    }

    /// Record a webhook delivery (its signature, hex, and its signed time);
    /// true the first time any host records it, false for a replay.
    /// Deliveries signed before `forget_before_unix` are forgotten: the
    /// caller refuses them as stale anyway.
    pub fn first_webhook_delivery(
        &self,
        signature: &str,
        at_unix: i64,
        forget_before_unix: i64,
    ) -> Result<bool, StoreError> {
        self.cluster()?.with(async |c| {
            // Rows another host is pruning are left to it: two prunes never
            // wait on (or deadlock over) each other's rows.
            c.execute(
                "DELETE FROM webhook_deliveries WHERE signature IN (
                     SELECT signature FROM webhook_deliveries WHERE at_unix < $1
                        FOR UPDATE SKIP LOCKED)",
                &[&forget_before_unix],
            )
            .await?;
            // The primary key decides: of two hosts inserting the same
            // signature at once, the second waits for the first and
            // inserts nothing.
            let inserted = c
                .execute(
                    "INSERT INTO webhook_deliveries (signature, at_unix) VALUES ($1, $2)
                     ON CONFLICT (signature) DO NOTHING",
                    &[&signature, &at_unix],
                )
                .await?;
            Ok(inserted == 1)
        })
    }

    /// Keep a bundle where every host can load it (content-addressed: the
    /// same bytes are stored once).
    pub fn put_bundle(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.cluster()?.with(async |c| {
            c.execute(
                "INSERT INTO plugin_bundles (sha256, bytes) VALUES ($1, $2)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256, &bytes],
            )
            .await?;
            Ok(())
        })
    }

    /// A stored bundle's bytes.
    pub fn bundle(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.cluster()?.with(async |c| {
            Ok(c.query_opt(
                "SELECT bytes FROM plugin_bundles WHERE sha256 = $1",
                &[&sha256],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::testing;

    fn cluster_db() -> Database {
        let url = testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        db.postgres()
            .unwrap()
            .with(async |c| {
                c.batch_execute(
                    "INSERT INTO pipelines (name, definition) VALUES ('p', '{}'), ('q', '{}')",
                )
                .await?;
                Ok(())
            })
            .unwrap();
        db
    }

    fn new_run(db: &Database, pipeline: &str) -> i64 {
        db.postgres()
            .unwrap()
            .with(async |c| {
                let r = c
                    .query_one(
                        "INSERT INTO runs (pipeline, status) VALUES ($1, 'running') RETURNING run_id",
                        &[&pipeline],
                    )
                    .await?;
                Ok(r.try_get(0)?)
            })
            .unwrap()
    }

    fn status(db: &Database, run: i64) -> String {
        db.postgres()
            .unwrap()
            .with(async |c| {
                Ok(
                    c.query_one("SELECT status FROM runs WHERE run_id = $1", &[&run])
                        .await?
                        .try_get(0)?,
                )
            })
            .unwrap()
    }

    #[test]
    fn a_scheduled_fire_is_claimed_by_one_of_many_hosts() {
        let db = cluster_db();
        // The lease row exists (a pipeline claimed before), so nothing but
        // the claim's own row lock orders the hosts.
        db.claim_pipeline("p", "earlier", 30_000, &Claim::Manual)
            .unwrap()
            .unwrap();
        db.release_lease("p", "earlier").unwrap();
        // Eight connections open, so the claims meet in the database.
        std::thread::scope(|s| {
            for _ in 0..8 {
                let db = db.clone();
                s.spawn(move || {
                    db.postgres()
                        .unwrap()
                        .with(async |c| Ok(c.batch_execute("SELECT pg_sleep(0.1)").await?))
                        .unwrap()
                });
            }
        });
        let start = std::sync::Barrier::new(8);
        let won: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let db = db.clone();
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        let fire = Claim::Schedule {
                            seen: None,
                            now: "2026-12-05T10:00:00Z".into(),
                        };
                        db.claim_pipeline("p", &format!("h{i}"), 30_000, &fire)
                            .unwrap()
                            .is_some()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let winner = format!("h{}", won.iter().position(|w| *w).unwrap());
        // Released, the same fire (a host that read `seen` before the
        // first claim) is not claimed again; the next one is.
        db.release_lease("p", &winner).unwrap();
        let stale = Claim::Schedule {
            seen: None,
            now: "2026-12-05T10:00:01Z".into(),
        };
        assert!(
            db.claim_pipeline("p", "late", 30_000, &stale)
                .unwrap()
                .is_none()
        );
        let next = Claim::Schedule {
            seen: Some("2026-12-05T10:00:00Z".into()),
            now: "2026-12-05T11:00:00Z".into(),
        };
        assert!(
            db.claim_pipeline("p", "late", 30_000, &next)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_dead_hosts_run_is_taken_over_once_its_lease_runs_out() {
        let db = cluster_db();
        assert!(
            db.claim_pipeline("p", "a", 300, &Claim::Manual)
                .unwrap()
                .is_some()
        );
        let run = new_run(&db, "p");
        assert!(db.attach_run("p", "a", run, 300).unwrap());
        // Held: nobody else gets it, whatever for.
        for claim in [Claim::Manual, Claim::Resume] {
            assert!(
                db.claim_pipeline("p", "b", 30_000, &claim)
                    .unwrap()
                    .is_none()
            );
        }
        assert!(db.renew_lease("p", "a", Some(run), 300).unwrap());
        assert_eq!(db.leases().unwrap()[0].host.as_deref(), Some("a"));
        // Host a dies: no more renewals.
        std::thread::sleep(std::time::Duration::from_millis(400));
        let row = &db.leases().unwrap()[0];
        assert!(!row.held);
        assert_eq!(row.run, Some((run, "running".to_string())));
        let granted = db.claim_pipeline("p", "b", 30_000, &Claim::Resume).unwrap();
        assert_eq!(
            granted,
            Some(Granted {
                interrupted: Some(run)
            })
        );
        assert_eq!(status(&db, run), "interrupted");
        // Host a comes back: its lease is gone, and so is its run.
        assert!(!db.renew_lease("p", "a", Some(run), 300).unwrap());
        assert!(!db.attach_run("p", "a", run, 300).unwrap());
        let hosts_leases = db.leases().unwrap();
        assert_eq!(hosts_leases[0].host.as_deref(), Some("b"));
    }

    #[test]
    fn asked_runs_coalesce_and_are_taken_once() {
        let db = cluster_db();
        assert_eq!(db.request_run("q", 0).unwrap(), Asked::Queued);
        assert_eq!(db.request_run("q", 0).unwrap(), Asked::Coalesced);
        assert!(
            db.leases()
                .unwrap()
                .iter()
                .any(|l| l.pipeline == "q" && l.requested_due)
        );
        assert!(
            db.claim_pipeline("q", "a", 30_000, &Claim::Asked)
                .unwrap()
                .is_some()
        );
        db.release_lease("q", "a").unwrap();
        assert!(
            db.claim_pipeline("q", "b", 30_000, &Claim::Asked)
                .unwrap()
                .is_none()
        );
        // A request made while a run holds the pipeline waits for it.
        assert!(
            db.claim_pipeline("q", "a", 30_000, &Claim::Manual)
                .unwrap()
                .is_some()
        );
        assert_eq!(db.request_run("q", 0).unwrap(), Asked::Queued);
        assert!(
            db.claim_pipeline("q", "b", 30_000, &Claim::Asked)
                .unwrap()
                .is_none()
        );
        db.release_lease("q", "a").unwrap();
        assert!(
            db.claim_pipeline("q", "b", 30_000, &Claim::Asked)
                .unwrap()
                .is_some()
        );
        // An unknown pipeline is never claimed or asked for.
        assert!(
            db.claim_pipeline("nope", "a", 30_000, &Claim::Manual)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn hosts_are_listed_with_what_they_hold_and_bundles_are_shared() {
        let db = cluster_db();
        db.register_host("a", "0.1.0", Some("127.0.0.1:1"), 4)
            .unwrap();
        db.register_host("b", "0.1.0", None, 2).unwrap();
        db.claim_pipeline("p", "a", 30_000, &Claim::Manual).unwrap();
        db.host_stopped("b").unwrap();
        let hosts = db.hosts().unwrap();
        let a = hosts.iter().find(|h| h.id == "a").unwrap();
        assert_eq!(a.holding, vec!["p".to_string()]);
        assert!(a.stopped_at.is_none() && a.seen_ago_ms < 10_000);
        let b = hosts.iter().find(|h| h.id == "b").unwrap();
        assert!(b.stopped_at.is_some() && b.holding.is_empty());
        db.host_stopped("a").unwrap();
        assert!(db.leases().unwrap().iter().all(|l| !l.held));

        db.put_bundle("abc", b"bytes").unwrap();
        db.put_bundle("abc", b"bytes").unwrap();
        assert_eq!(db.bundle("abc").unwrap().as_deref(), Some(&b"bytes"[..]));
        assert_eq!(db.bundle("def").unwrap(), None);
    }

    #[test]
    fn a_webhook_delivery_is_recorded_once_across_hosts_and_old_ones_are_forgotten() {
        let url = testing::database().unwrap();
        let (db, _) = Database::migrate_postgres(&url).unwrap();
        // Another host: its own pool on the same database.
        let other_host = Database::connect(&url).unwrap();
        assert!(db.first_webhook_delivery("aa", 1_000, 700).unwrap());
        assert!(!other_host.first_webhook_delivery("aa", 1_000, 700).unwrap());
        assert!(!db.first_webhook_delivery("aa", 1_000, 700).unwrap());
        assert!(other_host.first_webhook_delivery("bb", 1_100, 800).unwrap());
        // Later, "aa" is past the window: pruned, while "bb" is kept.
        assert!(db.first_webhook_delivery("cc", 1_400, 1_050).unwrap());
        let kept: Vec<String> = db
            .postgres()
            .unwrap()
            .with(async |c| {
                let rows = c
                    .query(
                        "SELECT signature FROM webhook_deliveries ORDER BY signature",
                        &[],
                    )
                    .await?;
                rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
            })
            .unwrap();
        assert_eq!(kept, ["bb", "cc"]);
    }

    #[test]
    fn on_sqlite_sharing_work_says_it_needs_postgres() {
        let db = Database::in_memory().unwrap();
        let err = db.hosts().unwrap_err().to_string();
        assert!(err.contains("needs PostgreSQL"), "{err}");
    }
}

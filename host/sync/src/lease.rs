//! A run's hold on its pipeline when several hosts share PostgreSQL: the
//! lease the host claimed (or claims now, for a run a person starts),
//! tied to the run row so its commits are fenced, renewed while the run
//! lives, and given back when it ends. A renewal that finds the lease gone
//! — the host was cut off from the database past its lease and another
//! host took the pipeline over — stops the run at its next page boundary;
//! the fence has already refused any commit after the takeover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nexo_db::Database;
use nexo_db::cluster::Claim;

use super::SyncError;
use super::retry::StopSignal;
use super::store::RunId;

/// Who this host is among the hosts sharing the database, and how long its
/// leases last without a renewal.
#[derive(Debug, Clone)]
pub struct HostLease {
    /// This host's id.
    pub host: String,
    /// How long a lease lasts unrenewed: a dead host's runs are taken over
    /// this long after its last renewal. Renewed every third of it.
    pub lease: Duration,
}

impl HostLease {
    fn millis(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A held pipeline; released when dropped.
pub(super) struct Hold {
    db: Database,
    lease: HostLease,
    pipeline: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Set when a renewal found the lease gone.
    lost: Arc<AtomicBool>,
}

impl Hold {
    /// Claim `pipeline` now for a run a person started (the scheduler's
    /// runs come claimed): `Busy` when another host holds it.
    pub fn claim(db: &Database, lease: &HostLease, pipeline: &str) -> Result<Self, SyncError> {
        match db.claim_pipeline(pipeline, &lease.host, lease.millis(), &Claim::Manual)? {
            Some(_) => Ok(Self::claimed(db, lease, pipeline)),
            None => Err(SyncError::Busy(pipeline.to_string())),
        }
    }

    /// The hold of a pipeline this host claimed already.
    pub fn claimed(db: &Database, lease: &HostLease, pipeline: &str) -> Self {
        Hold {
            db: db.clone(),
            lease: lease.clone(),
            pipeline: pipeline.to_string(),
            renewer: None,
            lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Tie `run` to the lease and keep renewing both until the hold is
    /// dropped; `stop` is set if the lease is lost. `Busy` when the lease
    /// ran out before the run could be tied to it.
    pub fn attach(&mut self, run: RunId, stop: StopSignal) -> Result<(), SyncError> {
        if !self
            .db
            .attach_run(&self.pipeline, &self.lease.host, run, self.lease.millis())?
        {
            return Err(SyncError::Busy(self.pipeline.clone()));
        }
        let (db, lease, pipeline, lost) = (
            self.db.clone(),
            self.lease.clone(),
            self.pipeline.clone(),
            self.lost.clone(),
        );
        self.renewer = Some(tokio::spawn(async move {
            let every = lease.lease / 3;
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let (db2, lease2, pipeline2) = (db.clone(), lease.clone(), pipeline.clone());
                let outcome = tokio::task::spawn_blocking(move || {
                    db2.renew_lease(&pipeline2, &lease2.host, Some(run), lease2.millis())
                })
                .await;
                match outcome {
                    Ok(Ok(true)) => renewed = Instant::now(),
                    Ok(Ok(false)) => {
                        tracing::warn!(pipeline = %pipeline, run, host = %lease.host, "lease lost: another host took the pipeline over; stopping this run");
                        lost.store(true, Ordering::SeqCst);
                        stop.stop();
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(pipeline = %pipeline, run, error = %e, "cannot renew the lease; retrying");
                        if renewed.elapsed() >= lease.lease {
                            tracing::warn!(pipeline = %pipeline, run, "lease ran out unrenewed; stopping this run (its commits are refused from now on)");
                            lost.store(true, Ordering::SeqCst);
                            stop.stop();
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(pipeline = %pipeline, run, error = %e, "the lease renewal task failed");
                    }
                }
            }
        }));
        Ok(())
    }

    /// Whether the lease was lost while the run went on.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Err(e) = self.db.release_lease(&self.pipeline, &self.lease.host) {
            // It runs out by itself: another host waits one lease at most.
            tracing::warn!(pipeline = %self.pipeline, error = %e, "cannot release the lease; it runs out by itself");
        }
    }
}

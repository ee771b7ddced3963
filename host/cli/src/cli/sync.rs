//! The sync commands' arguments (`nexo pipeline …`, `nexo runs`, `nexo run
//! show`, `nexo dlq …`, `nexo conflict …`) and what they share: the engine
//! over a data directory and the one-line counts. Each command's work is in
//! `pipeline.rs`, `runs.rs` and `queues.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};

use crate::connections::Connections;
use crate::registry::Registry;
use crate::store::sealed::Sealer;
use crate::sync::Engine;
use crate::sync::store::{ConflictStatus, Counts, DeadLetterStatus, SyncStore};

#[derive(Debug, Subcommand)]
pub(crate) enum PipelineCommand {
    /// Create or replace a pipeline from a TOML file (validated first;
    /// nothing is saved if anything is wrong).
    Apply {
        /// The pipeline file.
        file: PathBuf,
        /// Accept a change of the pipeline's entity or of its source or
        /// destination connection or stream, and reset its cursor in the
        /// same step (as `nexo pipeline reset`): without it such a change
        /// of a pipeline that has run is refused.
        #[arg(long)]
        reset: bool,
    },
    /// Create (or update) the production twin of a pipeline that has
    /// succeeded in the sandbox: the same definition with its sandbox
    /// connections swapped for production ones, its own cursor and links.
    /// The twin is dry-run against production first and shown; it is
    /// applied only when confirmed (at the prompt, or with --yes).
    Promote {
        /// The sandbox pipeline.
        name: String,
        /// SANDBOX=PRODUCTION connection pairs, comma-separated (or the
        /// option repeated); every connection of the pipeline needs one.
        #[arg(long, required = true, value_name = "SANDBOX=PRODUCTION")]
        connections: Vec<String>,
        /// The twin's name (default: NAME-production).
        #[arg(long = "as", value_name = "TWIN_NAME")]
        as_name: Option<String>,
        /// Apply without asking (needed when there is no terminal to ask on).
        #[arg(long)]
        yes: bool,
    },
    /// List pipelines.
    List,
    /// Show a pipeline's definition and state.
    Show {
        /// The pipeline.
        name: String,
    },
    /// Run a pipeline now.
    Run {
        /// The pipeline.
        name: String,
        /// Read and map for real but write nothing anywhere; print what
        /// would be created, updated (with a field diff) or deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Match the source's records with those the destination already
    /// holds (the pipeline's `[match]` rules): sure matches are linked, so
    /// the run updates them instead of creating them again; uncertain ones
    /// wait in the review queue (`nexo review list`); the rest are created
    /// by the run. Records linked or queued before are left as they are.
    Match {
        /// The pipeline.
        name: String,
        /// Say what would be linked, queued and created; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a pipeline (runs are refused until resumed).
    Pause {
        /// The pipeline.
        name: String,
    },
    /// Resume a paused pipeline.
    Resume {
        /// The pipeline.
        name: String,
    },
    /// Forget the pipeline's cursor: the next run reads everything again
    /// (records already in sync are recognised and not written).
    Reset {
        /// The pipeline.
        name: String,
    },
    /// Remove a pipeline (its run history and identity links stay).
    Remove {
        /// The pipeline.
        name: String,
    },
    /// Create or rotate the pipeline's webhook secret (printed once): a
    /// POST to /hooks/NAME signed with it starts an incremental run.
    Webhook {
        /// The pipeline.
        name: String,
        /// Expect HubSpot's v3 signature instead, under the HubSpot app's
        /// client secret read from stdin (so it stays out of the process
        /// list and the shell history); point the app's webhook target URL
        /// at /hooks/NAME.
        #[arg(long)]
        hubspot: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunCommand {
    /// Show a run: counts, errors, log and each record's outcome.
    Show {
        /// Run id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a running run at its next page boundary (in whichever process
    /// runs it): it ends `cancelled`, its committed pages kept, and the
    /// next run resumes after them.
    Stop {
        /// Run id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters (open ones unless --status says otherwise).
    List {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Which ones: resolved = a later run delivered the record.
        #[arg(long, value_enum, default_value = "open")]
        status: DlqStatus,
    },
    /// Show one dead letter with its record.
    Show {
        /// Its id.
        id: i64,
    },
    /// Write it again (after fixing the cause).
    Replay {
        /// Its id.
        id: i64,
    },
    /// Drop it for good.
    Discard {
        /// Its id.
        id: i64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Keep {
    Source,
    Destination,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConflictCommand {
    /// List conflicts (open ones unless --status says otherwise).
    List {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Which ones: open = held for a person, resolved = settled by a
        /// person, auto-resolved = settled by the pipeline's policy.
        #[arg(long, value_enum, default_value = "open")]
        status: ConflictListStatus,
    },
    /// Show both versions of a conflict.
    Show {
        /// Its id.
        id: i64,
    },
    /// Settle a held conflict by keeping one side.
    Resolve {
        /// Its id.
        id: i64,
        /// Which version wins.
        #[arg(long, value_enum)]
        keep: Keep,
    },
}

pub fn engine(dir: &Path, registry: &Registry) -> Result<Engine> {
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key"))?;
    let connections = Connections::new(registry.clone(), sealer);
    let store: Arc<dyn SyncStore> = Arc::new(registry.db().clone());
    let mut engine = Engine::new(
        store,
        connections,
        registry.clone(),
        Some(dir.join("locks")),
    );
    if registry.db().postgres().is_some() {
        engine = engine.shared(crate::sync::HostLease {
            host: super::host_id(),
            lease: std::time::Duration::from_secs(30),
        });
    }
    engine.reap_interrupted()?;
    Ok(engine)
}

/// The engine of `nexo serve`: on a shared PostgreSQL, as host `host`
/// with leases of `lease`.
pub fn serve_engine(
    dir: &Path,
    registry: &Registry,
    host: &str,
    lease: std::time::Duration,
) -> Result<Engine> {
    let mut engine = engine(dir, registry)?;
    if engine.host_lease().is_some() {
        engine = engine.shared(crate::sync::HostLease {
            host: host.to_string(),
            lease,
        });
    }
    Ok(engine)
}

/// End the runs whose process died before the history is shown (see
/// [`crate::sync::reap_interrupted`]).
pub(crate) fn reap(dir: &Path, db: &crate::store::Database) -> Result<()> {
    if db.postgres().is_some() {
        db.interrupt_expired_runs()?;
        return Ok(());
    }
    crate::sync::reap_interrupted(db, &dir.join("locks"))?;
    Ok(())
}

pub(crate) fn unreachable_command(what: &str) -> Result<()> {
    bail!("internal: {what}")
}

/// `nexo dlq list --status`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DlqStatus {
    Open,
    Replayed,
    Discarded,
    Resolved,
    All,
}

impl DlqStatus {
    pub(crate) fn filter(self) -> Option<DeadLetterStatus> {
        match self {
            DlqStatus::Open => Some(DeadLetterStatus::Open),
            DlqStatus::Replayed => Some(DeadLetterStatus::Replayed),
            DlqStatus::Discarded => Some(DeadLetterStatus::Discarded),
            DlqStatus::Resolved => Some(DeadLetterStatus::Resolved),
            DlqStatus::All => None,
        }
    }
}

/// `nexo conflict list --status`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ConflictListStatus {
    Open,
    Resolved,
    AutoResolved,
    All,
}

impl ConflictListStatus {
    pub(crate) fn filter(self) -> Option<ConflictStatus> {
        match self {
            ConflictListStatus::Open => Some(ConflictStatus::Open),
            ConflictListStatus::Resolved => Some(ConflictStatus::Resolved),
            ConflictListStatus::AutoResolved => Some(ConflictStatus::AutoResolved),
            ConflictListStatus::All => None,
        }
    }
}

pub fn counts_line(c: &Counts) -> String {
    // `matched` only when it happened: most creates create.
    let matched = if c.matched > 0 {
        format!(", matched {}", c.matched)
    } else {
        String::new()
    };
    let mut line = format!(
        "read {}, created {}{matched}, updated {}, unchanged {}, deleted {}, failed {}, quarantined {}, conflicts {}",
        c.read, c.created, c.updated, c.unchanged, c.deleted, c.failed, c.quarantined, c.conflicts
    );
    // Only when it happened: most runs never see an id twice in a page.
    if c.superseded > 0 {
        line.push_str(&format!(", superseded {}", c.superseded));
    }
    // Only when a mapper left records out on purpose.
    if c.skipped > 0 {
        line.push_str(&format!(", skipped {}", c.skipped));
    }
    // Only when records wait for a review of their match.
    if c.held > 0 {
        line.push_str(&format!(", held for review {}", c.held));
    }
    line
}

pub(crate) use super::pipeline::pipeline;
pub(crate) use super::queues::{conflict, dlq};
pub(crate) use super::runs::{identity, run_show, runs};

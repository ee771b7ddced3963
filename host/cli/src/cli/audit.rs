//! `nexo audit`: the trail of who changed what (read, filtered, exported as
//! JSON lines), and [`record`], through which every command that changes
//! something writes its one entry.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::store::Database;
use crate::store::audit::{Actor, AuditEntry, AuditFilter, Change};

/// Record `change`, made at this command line, in the audit trail. The
/// change is already made: a trail that cannot be written is an error the
/// person sees (and the message says the change itself stands).
pub(crate) fn record(db: &Database, change: Change) -> Result<()> {
    let what = format!("{} {}", change.action, change.target);
    db.record_change(&Actor::cli_user(), &change)
        .with_context(|| {
            format!("{what} was done, but it could not be written to the audit trail")
        })?;
    Ok(())
}

/// `nexo audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only this action, e.g. `pipeline.apply`, `token.revoke`.
    #[arg(long)]
    action: Option<String>,
    /// Only this target (`pipeline/NAME`), or every target under a prefix
    /// ending in `/` (`connection/`).
    #[arg(long)]
    target: Option<String>,
    /// Only this actor: `token:NAME` or `cli:USER`.
    #[arg(long)]
    actor: Option<String>,
    /// At most this many, newest first (0: all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON (an array, newest first).
    #[arg(long, conflicts_with = "export")]
    json: bool,
    /// Write every matching entry, oldest first, as JSON lines to this
    /// file (`-`: standard output); the limit does not apply.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
}

pub(crate) fn audit(dir: &Path, args: AuditArgs) -> Result<()> {
    let db = super::open_db(dir)?;
    let mut filter = AuditFilter {
        action: args.action,
        target: args.target,
        actor: args.actor,
        after_id: None,
        limit: args.limit,
    };
    if let Some(file) = args.export {
        filter.limit = 0;
        let mut entries = db.audit_entries(&filter)?;
        entries.reverse();
        let mut out: Box<dyn Write> = if file.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(&file)
                    .with_context(|| format!("creating {}", file.display()))?,
            ))
        };
        for e in &entries {
            writeln!(out, "{}", e.to_json())?;
        }
        out.flush()?;
        if file.as_os_str() != "-" {
            eprintln!("{} entries written to {}", entries.len(), file.display());
        }
        return Ok(());
    }
    let entries = db.audit_entries(&filter)?;
    if args.json {
        let all: Vec<_> = entries.iter().map(AuditEntry::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no changes recorded{}",
            if filter_set(&filter) {
                " that match"
            } else {
                ""
            }
        );
    }
    for e in &entries {
        println!(
            "#{:<5} {}  {:<22} {:<26} {}",
            e.id, e.at, e.action, e.target, e.actor
        );
        if let Some(before) = &e.before {
            println!("         before {before}");
        }
        if let Some(after) = &e.after {
            println!("         after  {after}");
        }
    }
    Ok(())
}

fn filter_set(f: &AuditFilter) -> bool {
    f.action.is_some() || f.target.is_some() || f.actor.is_some()
}

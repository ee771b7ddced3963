//! Going live from the command line: `nexo pipeline match NAME` (link what
//! the destination already holds, queue what is uncertain) and `nexo
//! review …`, the queue a person works through — each queued record side
//! by side with its candidates, field by field, then accepted (one of the
//! candidates) or rejected (created by the next run).

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::safe_text::{SafeText, safe_json};
use crate::store::audit::{Action, Change};
use crate::sync::Engine;
use crate::sync::going_live::MatchReport;
use crate::sync::review::Verdict;
use crate::sync::store::{Review, ReviewFilter, ReviewStatus, SyncStore};

/// `nexo review …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ReviewCommand {
    /// List the matches waiting for a person (open ones unless --status
    /// says otherwise).
    List {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Which ones.
        #[arg(long, value_enum, default_value = "open")]
        status: ReviewListStatus,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a queued record beside its candidates, field by field.
    Show {
        /// The review.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept a candidate: the two records are linked, and the next run
    /// updates the destination's record instead of creating one.
    Accept {
        /// The review.
        id: i64,
        /// Another of its candidates than the best one (its destination id).
        #[arg(long, value_name = "DESTINATION_ID")]
        pick: Option<String>,
    },
    /// None of the candidates: the next run creates the record.
    Reject {
        /// The review.
        id: i64,
    },
}

/// `--status` of `nexo review list`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ReviewListStatus {
    /// Waiting for a person.
    Open,
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
    /// Withdrawn: deleted in the source while waiting.
    Withdrawn,
    /// All of them.
    All,
}

impl ReviewListStatus {
    fn filter(self) -> Option<ReviewStatus> {
        match self {
            ReviewListStatus::Open => Some(ReviewStatus::Open),
            ReviewListStatus::Accepted => Some(ReviewStatus::Accepted),
            ReviewListStatus::Rejected => Some(ReviewStatus::Rejected),
            ReviewListStatus::Withdrawn => Some(ReviewStatus::Withdrawn),
            ReviewListStatus::All => None,
        }
    }
}

/// `nexo pipeline match NAME`.
pub(crate) async fn match_pipeline(
    engine: &Engine,
    name: &str,
    dry: bool,
    json: bool,
) -> Result<()> {
    let (report, run) = engine.match_pipeline(name, dry).await?;
    if !dry {
        super::audit::record(
            engine.connections().registry().db(),
            Change::new(Action::PipelineMatch, format!("pipeline/{name}"))
                .after(json!({"run": run, "counts": report.counts})),
        )?;
    }
    if json {
        println!(
            "{}",
            safe_json(
                json!({"pipeline": name, "dry_run": dry, "run": run, "report": report}).to_string()
            )
        );
        return Ok(());
    }
    let head = if dry {
        format!("matching {name} (dry run: nothing was written)")
    } else {
        format!("matched {name} (run #{})", run.unwrap_or_default())
    };
    println!("{head}");
    print_report(&report, dry);
    Ok(())
}

/// A matching report, as the dry run and `pipeline match` print it.
pub(crate) fn print_report(report: &MatchReport, dry: bool) {
    let (link, queue, create) = if dry {
        ("would link", "would queue", "would create")
    } else {
        ("linked", "queued for review", "to create")
    };
    let c = &report.counts;
    println!(
        "  {link} {}, {queue} {}, {create} {}, linked or queued before {}",
        c.linked, c.queued, c.unmatched, c.already
    );
    for l in &report.linked {
        println!(
            "  link    {} → {}  (by {})",
            SafeText::line(&l.source_id),
            SafeText::line(&l.destination_id),
            SafeText::line(&l.key)
        );
    }
    for q in &report.queued {
        let candidates: Vec<String> = q
            .candidates
            .iter()
            .map(|c| format!("{} ({} {:.2})", c.id, c.key, c.score))
            .collect();
        println!(
            "  review  {} ?  {}: {}",
            SafeText::line(&q.source_id),
            SafeText::line(&candidates.join(", ")),
            SafeText::line(&q.why)
        );
    }
    for id in &report.unmatched {
        println!("  create  {}", SafeText::line(id));
    }
    if c.queued > 0 && !dry {
        println!(
            "  decide the queued ones with `nexo review list`; they wait, neither created nor dropped"
        );
    }
}

/// Where a pipeline with `[match]` stands: matched or not, and the
/// records waiting for a person (`nexo pipeline show`).
pub(crate) fn print_match_state(store: &dyn SyncStore, name: &str) -> Result<()> {
    match store.match_pass(name)? {
        Some((at, c)) => println!(
            "# matched: {at} — linked {}, queued {}, to create {}, linked or queued before {}",
            c.linked, c.queued, c.unmatched, c.already
        ),
        None => println!(
            "# matched: not yet (the first run matches first; `nexo pipeline match {name} --dry-run` shows what it would do)"
        ),
    }
    let open = store.reviews(&ReviewFilter {
        pipeline: Some(name.to_string()),
        status: Some(ReviewStatus::Open),
    })?;
    println!(
        "# waiting for review: {}{}",
        open.len(),
        if open.is_empty() {
            String::new()
        } else {
            format!(" (`nexo review list --pipeline {name}`)")
        }
    );
    Ok(())
}

/// `nexo review …`.
pub(crate) fn review(engine: &Engine, cmd: ReviewCommand) -> Result<()> {
    let store = engine.store();
    match cmd {
        ReviewCommand::List {
            pipeline,
            status,
            json,
        } => {
            let list = store.reviews(&ReviewFilter {
                pipeline,
                status: status.filter(),
            })?;
            if json {
                println!("{}", safe_json(serde_json::to_string(&list)?));
                return Ok(());
            }
            if list.is_empty() {
                println!("no reviews");
            }
            for r in list {
                let best = r
                    .candidates
                    .first()
                    .map(|c| format!("{} ({} {:.2})", c.id, c.key, c.score))
                    .unwrap_or_default();
                println!(
                    "{}  {}  record {} ? {}  [{} candidates] {}  ({})",
                    r.id,
                    r.pipeline,
                    SafeText::line(&r.source_id),
                    SafeText::line(&best),
                    r.candidates.len(),
                    SafeText::line(&r.why),
                    r.status
                );
            }
        }
        ReviewCommand::Show { id, json } => {
            let r = store
                .review(id)?
                .with_context(|| format!("no review {id}; see `nexo review list`"))?;
            if json {
                println!("{}", safe_json(serde_json::to_string(&r)?));
                return Ok(());
            }
            show(&r);
        }
        ReviewCommand::Accept { id, pick } => {
            let r = engine.decide_review(id, Verdict::Accept(pick), &actor())?;
            audit(engine, Action::ReviewAccept, &r)?;
            println!(
                "review {id}: record {} linked to {}; the next run of {} updates it",
                SafeText::line(&r.source_id),
                SafeText::line(r.chosen.as_deref().unwrap_or("")),
                r.pipeline
            );
        }
        ReviewCommand::Reject { id } => {
            let r = engine.decide_review(id, Verdict::Reject, &actor())?;
            audit(engine, Action::ReviewReject, &r)?;
            println!(
                "review {id}: record {} is none of the candidates; the next run of {} creates it",
                SafeText::line(&r.source_id),
                r.pipeline
            );
        }
    }
    Ok(())
}

fn actor() -> String {
    crate::store::audit::Actor::cli_user().to_string()
}

fn audit(engine: &Engine, action: Action, r: &Review) -> Result<()> {
    super::audit::record(
        engine.connections().registry().db(),
        Change::new(action, format!("review/{}", r.id))
            .before(json!({"pipeline": r.pipeline, "status": ReviewStatus::Open}))
            .after(json!({
                "pipeline": r.pipeline,
                "source_id": r.source_id,
                "chosen": r.chosen,
            })),
    )
}

/// The queued record beside each candidate, field by field: `=` where a
/// candidate agrees with the record, `≠` where it differs.
fn show(r: &Review) {
    println!(
        "review {} ({}) in {}: record {} — {}",
        r.id,
        r.status,
        r.pipeline,
        SafeText::line(&r.source_id),
        SafeText::line(&r.why)
    );
    if let Some(by) = &r.decided_by {
        println!(
            "  decided by {} at {}{}",
            SafeText::line(by),
            r.decided_at.as_deref().unwrap_or(""),
            r.chosen
                .as_deref()
                .map(|c| format!(": {}", SafeText::line(c)))
                .unwrap_or_default()
        );
    }
    let mut fields: Vec<String> = Vec::new();
    let mut collect = |v: &Value| {
        if let Value::Object(m) = v {
            for k in m.keys() {
                if !fields.contains(k) {
                    fields.push(k.clone());
                }
            }
        }
    };
    collect(&r.mapped);
    for c in &r.candidates {
        collect(&c.record);
    }
    fields.sort();
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "—".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut header = format!("  {:<16} {:<28}", "field", "this record");
    for (i, c) in r.candidates.iter().enumerate() {
        header.push_str(&format!(
            " {:<30}",
            format!("#{} {} ({} {:.2})", i + 1, c.id, c.key, c.score)
        ));
    }
    println!("{}", SafeText::line(&header));
    for f in &fields {
        let mine = r.mapped.get(f);
        let mut line = format!("  {:<16} {:<28}", f, clip(&text(mine)));
        for c in &r.candidates {
            let theirs = c.record.get(f);
            let mark = if mine == theirs { "=" } else { "≠" };
            line.push_str(&format!(" {mark} {:<28}", clip(&text(theirs))));
        }
        println!("{}", SafeText::line(&line));
    }
    if r.status == ReviewStatus::Open {
        println!(
            "  accept with `nexo review accept {}` (or `--pick DESTINATION_ID`), or `nexo review reject {}` to create it",
            r.id, r.id
        );
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 28 {
        let mut out: String = s.chars().take(27).collect();
        out.push('…');
        out
    } else {
        s.to_string()
    }
}

//! `nexo pipeline …`: applying, listing, pausing and running pipelines,
//! with a progress bar, and the dry run that prints the diff.
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::safe_text::{SafeText, safe_json};
use crate::store::audit::{Action, Change};
use crate::sync::store::{ConflictStatus, Counts, RunFilter, SyncStore};
use crate::sync::{ApplyOptions, Engine, Pipeline, RunOptions, RunReport};

use super::call::read_text;
use super::sync::*;

pub(crate) async fn pipeline(engine: &Engine, cmd: PipelineCommand) -> Result<()> {
    let store = engine.store();
    let db = engine.connections().registry().db();
    // Each change below is recorded once, after it is made, with how the
    // pipeline was and is.
    let audited = |action: Action, name: &str, before: Option<serde_json::Value>| -> Result<()> {
        let after = if action == Action::PipelineRemove {
            None
        } else {
            crate::serve::audit::pipeline(store.as_ref(), name)?
        };
        super::audit::record(
            db,
            crate::serve::audit::with(
                Change::new(action, format!("pipeline/{name}")),
                before,
                after,
            ),
        )
    };
    match cmd {
        PipelineCommand::Apply { file, reset } => {
            let text = read_text(&file)?;
            // `apply` checks it (connections first, so a misspelled one is
            // named as such).
            let pipeline = Pipeline::parse_toml(&text, &file.display().to_string())?;
            apply_definition(engine, &pipeline, reset).await?;
        }
        PipelineCommand::Promote {
            name,
            connections,
            as_name,
            yes,
        } => super::promote::promote(engine, &name, &connections, as_name, yes).await?,
        PipelineCommand::List => {
            let rows = store.pipelines()?;
            if rows.is_empty() {
                println!("no pipelines; create one with `nexo pipeline apply FILE`");
            }
            for row in rows {
                let p = &row.pipeline;
                let last = store
                    .runs(&RunFilter {
                        pipeline: Some(p.name.clone()),
                        status: None,
                        limit: 1,
                    })?
                    .into_iter()
                    .next()
                    .map(|r| format!("last run #{} {}", r.id, r.status))
                    .unwrap_or_else(|| "never run".into());
                let schedule = p
                    .schedule()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| format!("invalid schedule: {e}"));
                let paused = match (&row.paused, &row.paused_reason) {
                    (true, Some(reason)) => format!("  [paused: {}]", SafeText::line(reason)),
                    (true, None) => "  [paused]".to_string(),
                    (false, _) => String::new(),
                };
                println!(
                    "{}  {}/{} → {}/{}  {}  {}{}",
                    p.name,
                    p.source.connection,
                    p.source.stream,
                    p.destination.connection,
                    p.destination.stream,
                    schedule,
                    last,
                    paused
                );
            }
        }
        PipelineCommand::Show { name } => {
            let row = store
                .pipeline(&name)?
                .with_context(|| format!("no pipeline named `{name}`"))?;
            println!(
                "{}",
                safe_json(serde_json::to_string_pretty(&row.pipeline)?)
            );
            match &row.paused_reason {
                Some(reason) => println!("# paused: true ({})", SafeText::line(reason)),
                None => println!("# paused: {}", row.paused),
            }
            println!(
                "# cursor: {}",
                SafeText::line(
                    row.state
                        .as_deref()
                        .unwrap_or("(none: the next run reads everything)")
                )
            );
            if row.pipeline.matching.is_some() {
                super::review::print_match_state(store.as_ref(), &name)?;
            }
        }
        PipelineCommand::Run {
            name,
            dry_run,
            json,
        } => run(engine, &name, dry_run, json).await?,
        PipelineCommand::Match {
            name,
            dry_run,
            json,
        } => super::review::match_pipeline(engine, &name, dry_run, json).await?,
        PipelineCommand::Pause { name } => {
            let before = crate::serve::audit::pipeline(store.as_ref(), &name)?;
            if !store.set_paused(&name, true, None)? {
                bail!("no pipeline named `{name}`");
            }
            audited(Action::PipelinePause, &name, before)?;
            println!("paused {name}");
        }
        PipelineCommand::Resume { name } => {
            let before = crate::serve::audit::pipeline(store.as_ref(), &name)?;
            if !store.set_paused(&name, false, None)? {
                bail!("no pipeline named `{name}`");
            }
            audited(Action::PipelineResume, &name, before)?;
            println!("resumed {name}");
        }
        PipelineCommand::Reset { name } => {
            store
                .pipeline(&name)?
                .with_context(|| format!("no pipeline named `{name}`"))?;
            store.reset_state(&name)?;
            super::audit::record(
                db,
                Change::new(Action::PipelineReset, format!("pipeline/{name}"))
                    .after(serde_json::json!({"cursor": null})),
            )?;
            println!("reset {name}: the next run reads everything");
        }
        PipelineCommand::Remove { name } => {
            let before = crate::serve::audit::pipeline(store.as_ref(), &name)?;
            if !store.delete_pipeline(&name)? {
                bail!("no pipeline named `{name}`");
            }
            audited(Action::PipelineRemove, &name, before)?;
            println!("removed pipeline {name}");
        }
        PipelineCommand::Webhook { .. } => {
            unreachable_command("pipeline webhook is handled with the host's key")?
        }
    }
    Ok(())
}

/// Save a pipeline definition (checked first; nothing is saved on any
/// error) and say what happened: the one change point of `nexo pipeline
/// apply` and `nexo pipeline promote`.
pub(crate) async fn apply_definition(
    engine: &Engine,
    pipeline: &Pipeline,
    reset: bool,
) -> Result<()> {
    let store = engine.store();
    let before = crate::serve::audit::pipeline(store.as_ref(), &pipeline.name)?;
    let existed = before.is_some();
    engine.apply_with(pipeline, ApplyOptions { reset }).await?;
    // One change point for `apply` and `promote`, so one audit entry.
    super::audit::record(
        engine.connections().registry().db(),
        crate::serve::audit::with(
            Change::new(Action::PipelineApply, format!("pipeline/{}", pipeline.name)),
            before,
            crate::serve::audit::pipeline(store.as_ref(), &pipeline.name)?,
        ),
    )?;
    println!(
        "{} pipeline {}: {}/{} → {}/{}",
        if existed { "updated" } else { "created" },
        pipeline.name,
        pipeline.source.connection,
        pipeline.source.stream,
        pipeline.destination.connection,
        pipeline.destination.stream
    );
    if reset && existed {
        println!("reset {}: the next run reads everything", pipeline.name);
    }
    Ok(())
}

async fn run(engine: &Engine, name: &str, dry_run: bool, json: bool) -> Result<()> {
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let started = Instant::now();
    let progress = bar.clone().map(|bar| {
        let f: crate::sync::Progress = Arc::new(move |c: &Counts| {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} records ({:.0}/s): {}",
                c.read,
                c.read as f64 / secs,
                counts_line(c)
            ));
        });
        f
    });
    // Ctrl-C or SIGTERM: finish and commit the page in hand, then stop;
    // the next run resumes there.
    let stop = crate::sync::StopSignal::default();
    let on_signal = stop.clone();
    let watcher = tokio::spawn(async move {
        crate::serve::terminated().await;
        on_signal.stop();
    });
    let result = engine
        .run(
            name,
            RunOptions {
                dry_run,
                progress,
                stop: Some(stop),
                claimed: false,
            },
        )
        .await;
    watcher.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if json {
        println!(
            "{}",
            safe_json(
                serde_json::json!({
                    "run": report.run_id,
                    "status": report.status.as_str(),
                    "dry_run": dry_run,
                    "counts": report.counts,
                    "pages": report.pages,
                    "ms": report.elapsed.as_millis() as u64,
                    "peak_rss_kb": peak_rss_kb(),
                    "plan": report.plan,
                    "matching": report.matching,
                })
                .to_string()
            )
        );
        return Ok(());
    }
    if dry_run {
        println!("dry run of {name}: nothing was written");
        if let Some(m) = &report.matching {
            super::review::print_report(m, true);
        }
        print_plan(&report);
    } else if let Some(id) = report.run_id {
        println!("run #{id} of {name}: {}", report.status.as_str());
        if let Some(m) = &report.matching {
            super::review::print_report(m, false);
        }
    }
    let secs = report.elapsed.as_secs_f64().max(0.001);
    println!(
        "  {} in {:.2}s ({:.0} records/s)",
        counts_line(&report.counts),
        secs,
        report.counts.read as f64 / secs
    );
    if report.counts.failed + report.counts.quarantined > 0 {
        println!("  see `nexo dlq list --pipeline {name}`");
    }
    if report.counts.conflicts > 0 {
        conflicts_summary(engine.store().as_ref(), name, &report)?;
    }
    Ok(())
}

/// How a run's conflicts ended: held for a person, or settled by the
/// pipeline's policy, with the command that lists each kind.
fn conflicts_summary(store: &dyn SyncStore, name: &str, report: &RunReport) -> Result<()> {
    let Some(run) = report.run_id else {
        println!("  see `nexo conflict list --pipeline {name}`");
        return Ok(());
    };
    let of_run = |status| -> Result<usize> {
        Ok(store
            .conflicts(Some(name), Some(status))?
            .iter()
            .filter(|c| c.run_id == run)
            .count())
    };
    let auto = of_run(ConflictStatus::AutoResolved)?;
    let held = of_run(ConflictStatus::Open)?;
    if held > 0 {
        println!(
            "  {held} conflicts held for a person: see `nexo conflict list --pipeline {name}`"
        );
    }
    if auto > 0 {
        println!(
            "  {auto} conflicts auto-resolved by the pipeline's policy: see `nexo conflict list --pipeline {name} --status auto-resolved`"
        );
    }
    Ok(())
}

/// This process's peak resident memory (Linux), for operators and the
/// benchmark.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A dry run's planned changes, one line each, with their field diffs.
pub(crate) fn print_plan(report: &RunReport) {
    for change in &report.plan {
        let target = change
            .destination_id
            .as_deref()
            .map(|d| format!(" → {}", SafeText::line(d)))
            .unwrap_or_default();
        println!(
            "  {} {}{}",
            change.action,
            SafeText::line(&change.source_id),
            target
        );
        for d in &change.diff {
            println!(
                "      {}: {} → {}",
                SafeText::line(&d.field),
                SafeText::line(&d.before.to_string()),
                SafeText::line(&d.after.to_string())
            );
        }
    }
}

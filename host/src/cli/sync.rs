//! `nexo pipeline …`, `nexo runs`, `nexo run show`, `nexo dlq …` and
//! `nexo conflict …`: defining pipelines, running them (with a progress bar
//! and a dry run that prints the diff), and working the queues.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::connections::Connections;
use crate::registry::Registry;
use crate::safe_text::{SafeText, safe_json};
use crate::store::sealed::Sealer;
use crate::sync::store::{ConflictStatus, Counts, DeadLetterStatus, RunFilter, SyncStore};
use crate::sync::{ApplyOptions, Engine, Pipeline, RunOptions, RunReport, Side};

use super::call::read_text;

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
    let engine = Engine::new(
        store,
        connections,
        registry.clone(),
        Some(dir.join("locks")),
    );
    engine.reap_interrupted()?;
    Ok(engine)
}

/// End the runs whose process died before the history is shown (see
/// [`crate::sync::reap_interrupted`]).
pub(crate) fn reap(dir: &Path, store: &dyn SyncStore) -> Result<()> {
    crate::sync::reap_interrupted(store, &dir.join("locks"))?;
    Ok(())
}

fn unreachable_command(what: &str) -> Result<()> {
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
    fn filter(self) -> Option<DeadLetterStatus> {
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
    fn filter(self) -> Option<ConflictStatus> {
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
    line
}

pub(crate) async fn pipeline(engine: &Engine, cmd: PipelineCommand) -> Result<()> {
    let store = engine.store();
    match cmd {
        PipelineCommand::Apply { file, reset } => {
            let text = read_text(&file)?;
            // `apply` checks it (connections first, so a misspelled one is
            // named as such).
            let pipeline = Pipeline::parse_toml(&text, &file.display().to_string())?;
            let existed = store.pipeline(&pipeline.name)?.is_some();
            engine.apply_with(&pipeline, ApplyOptions { reset }).await?;
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
        }
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
        }
        PipelineCommand::Run {
            name,
            dry_run,
            json,
        } => run(engine, &name, dry_run, json).await?,
        PipelineCommand::Pause { name } => {
            if !store.set_paused(&name, true, None)? {
                bail!("no pipeline named `{name}`");
            }
            println!("paused {name}");
        }
        PipelineCommand::Resume { name } => {
            if !store.set_paused(&name, false, None)? {
                bail!("no pipeline named `{name}`");
            }
            println!("resumed {name}");
        }
        PipelineCommand::Reset { name } => {
            store
                .pipeline(&name)?
                .with_context(|| format!("no pipeline named `{name}`"))?;
            store.reset_state(&name)?;
            println!("reset {name}: the next run reads everything");
        }
        PipelineCommand::Remove { name } => {
            if !store.delete_pipeline(&name)? {
                bail!("no pipeline named `{name}`");
            }
            println!("removed pipeline {name}");
        }
        PipelineCommand::Webhook { .. } => {
            unreachable_command("pipeline webhook is handled with the host's key")?
        }
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
                })
                .to_string()
            )
        );
        return Ok(());
    }
    if dry_run {
        println!("dry run of {name}: nothing was written");
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
    } else if let Some(id) = report.run_id {
        println!("run #{id} of {name}: {}", report.status.as_str());
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

pub(crate) fn runs(
    store: &dyn SyncStore,
    pipeline: Option<String>,
    status: Option<String>,
    limit: usize,
) -> Result<()> {
    let rows = store.runs(&RunFilter {
        pipeline,
        status,
        limit,
    })?;
    if rows.is_empty() {
        println!("no runs");
    }
    for r in rows {
        println!(
            "#{}  {}  {}  {}  {}ms  {}{}",
            r.id,
            r.pipeline,
            r.status,
            r.started_at,
            r.duration_ms.unwrap_or(0),
            counts_line(&r.counts),
            r.error
                .map(|e| format!("\n      error: {}", SafeText::line(&e)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) fn run_show(store: &dyn SyncStore, cmd: RunCommand) -> Result<()> {
    let (id, json) = match cmd {
        RunCommand::Show { id, json } => (id, json),
        RunCommand::Stop { id } => {
            let run = crate::sync::request_stop(store, id)?;
            println!(
                "run #{id} of {} stops after its current page is committed; see `nexo run show {id}`",
                run.pipeline
            );
            return Ok(());
        }
    };
    let run = store
        .run(id)?
        .with_context(|| format!("no run #{id}; see `nexo runs`"))?;
    let records = store.run_records(id)?;
    let log = store.run_log(id)?;
    if json {
        let records: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "source_id": r.source_id,
                    "destination_id": r.destination_id,
                    "outcome": r.outcome.as_str(),
                    "detail": r.detail,
                })
            })
            .collect();
        println!(
            "{}",
            safe_json(serde_json::json!({
                "id": run.id, "pipeline": run.pipeline, "status": run.status,
                "started_at": run.started_at, "finished_at": run.finished_at,
                "duration_ms": run.duration_ms, "pages": run.pages, "counts": run.counts,
                "error": run.error, "records": records,
                "log": log.iter().map(|(at, level, m)| serde_json::json!({"at": at, "level": level, "message": m})).collect::<Vec<_>>(),
            }).to_string())
        );
        return Ok(());
    }
    println!("run #{} of {}: {}", run.id, run.pipeline, run.status);
    println!(
        "  started {}  finished {}  {} ms  {} pages",
        run.started_at,
        run.finished_at.as_deref().unwrap_or("-"),
        run.duration_ms.unwrap_or(0),
        run.pages
    );
    println!("  {}", counts_line(&run.counts));
    if let Some(e) = &run.error {
        println!("  error: {}", SafeText::line(e));
    }
    if !log.is_empty() {
        println!("log:");
        for (at, level, message) in &log {
            println!("  {at} {level:5} {}", SafeText::line(message));
        }
    }
    if !records.is_empty() {
        println!("records:");
        for r in &records {
            println!(
                "  {:11} {}{}{}",
                r.outcome.as_str(),
                SafeText::line(&r.source_id),
                r.destination_id
                    .as_deref()
                    .map(|d| format!(" → {}", SafeText::line(d)))
                    .unwrap_or_default(),
                r.detail
                    .as_deref()
                    .map(|d| format!("  ({})", SafeText::line(d)))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub(crate) fn identity(
    store: &dyn SyncStore,
    connection: &str,
    stream: &str,
    id: &str,
    json: bool,
) -> Result<()> {
    let links = store.record_links(connection, stream, id)?;
    if links.is_empty() {
        bail!(
            "no record {connection}/{stream}/{id} in the identity map (it is linked once a pipeline has read or written it)"
        );
    }
    // One record can stand for several entities (a won deal is a customer
    // and an invoice): each with its records in every system.
    let mut entities = Vec::with_capacity(links.len());
    for link in &links {
        entities.push((link.entity_id, store.entity(link.entity_id)?));
    }
    if json {
        let list: Vec<_> = entities
            .iter()
            .map(|(entity, all)| {
                let records: Vec<_> = all
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "connection": l.connection, "stream": l.stream, "id": l.record_id,
                            "deleted": l.deleted, "version": l.version,
                            "known": l.known.as_deref().and_then(|k| serde_json::from_str::<serde_json::Value>(k).ok()),
                        })
                    })
                    .collect();
                serde_json::json!({"entity": entity, "records": records})
            })
            .collect();
        println!("{}", safe_json(serde_json::Value::Array(list).to_string()));
        return Ok(());
    }
    for (entity, all) in &entities {
        println!("entity {entity}");
        for l in all {
            println!(
                "  {}/{}/{}{}{}",
                l.connection,
                l.stream,
                SafeText::line(&l.record_id),
                l.version
                    .as_deref()
                    .map(|v| format!("  (modified {})", SafeText::line(v)))
                    .unwrap_or_default(),
                if l.deleted { "  [deleted]" } else { "" }
            );
        }
    }
    Ok(())
}

pub(crate) async fn dlq(engine: &Engine, cmd: DlqCommand) -> Result<()> {
    let store = engine.store();
    match cmd {
        DlqCommand::List { pipeline, status } => {
            let letters = store.dead_letters(pipeline.as_deref(), status.filter())?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for l in letters {
                println!(
                    "{}  {}  {}  record {}  [{}{}] {}  ({})",
                    l.id,
                    l.pipeline,
                    l.letter.kind.as_str(),
                    SafeText::line(&l.letter.source_id),
                    l.letter.class,
                    l.letter
                        .field
                        .as_deref()
                        .map(|f| format!(", field {}", SafeText::line(f)))
                        .unwrap_or_default(),
                    SafeText::line(&l.letter.error),
                    l.status
                );
            }
        }
        DlqCommand::Show { id } => {
            let l = store
                .dead_letter(id)?
                .with_context(|| format!("no dead letter {id}; see `nexo dlq list`"))?;
            println!("dead letter {} ({})", l.id, l.status);
            println!("  pipeline  {} (run #{})", l.pipeline, l.run_id);
            println!("  kind      {}", l.letter.kind.as_str());
            println!("  record    {}", SafeText::line(&l.letter.source_id));
            println!("  class     {}", l.letter.class);
            if let Some(f) = &l.letter.field {
                println!("  field     {}", SafeText::line(f));
            }
            println!("  error     {}", SafeText::line(&l.letter.error));
            println!("  attempts  {}", l.letter.attempts);
            println!("  since     {}", l.created_at);
            let record: serde_json::Value =
                serde_json::from_str(&l.letter.record).unwrap_or(serde_json::Value::Null);
            println!(
                "  write     {}",
                safe_json(serde_json::to_string_pretty(&record)?).replace('\n', "\n            ")
            );
        }
        DlqCommand::Replay { id } => {
            let run = engine.replay(id).await?;
            println!("dead letter {id} replayed (run #{run})");
        }
        DlqCommand::Discard { id } => {
            engine.discard(id)?;
            println!("dead letter {id} discarded");
        }
    }
    Ok(())
}

pub(crate) async fn conflict(engine: &Engine, cmd: ConflictCommand) -> Result<()> {
    let store = engine.store();
    match cmd {
        ConflictCommand::List { pipeline, status } => {
            let list = store.conflicts(pipeline.as_deref(), status.filter())?;
            if list.is_empty() {
                println!("no conflicts");
            }
            for c in list {
                println!(
                    "{}  {}  record {} ↔ {}  fields {}  ({}{})",
                    c.id,
                    c.pipeline,
                    SafeText::line(&c.conflict.source_id),
                    SafeText::line(&c.conflict.destination_id),
                    SafeText::line(&c.conflict.fields.join(", ")),
                    c.status,
                    c.conflict
                        .resolution
                        .as_deref()
                        .map(|r| format!(": {}", SafeText::line(r)))
                        .unwrap_or_default()
                );
            }
        }
        ConflictCommand::Show { id } => {
            let c = store
                .conflict(id)?
                .with_context(|| format!("no conflict {id}; see `nexo conflict list`"))?;
            let source: serde_json::Value =
                serde_json::from_str(&c.conflict.source_record).unwrap_or_default();
            let dest: serde_json::Value =
                serde_json::from_str(&c.conflict.destination_payload).unwrap_or_default();
            println!("conflict {} ({}) in {}", c.id, c.status, c.pipeline);
            println!(
                "  fields       {}",
                SafeText::line(&c.conflict.fields.join(", "))
            );
            for f in &c.conflict.fields {
                println!(
                    "    {}: source {}  destination {}",
                    SafeText::line(f),
                    safe_json(source["payload"][f].to_string()),
                    safe_json(dest[f].to_string())
                );
            }
            println!(
                "  resolve with `nexo conflict resolve {id} --keep source` or `--keep destination`"
            );
        }
        ConflictCommand::Resolve { id, keep } => {
            let side = match keep {
                Keep::Source => Side::Source,
                Keep::Destination => Side::Destination,
            };
            engine.resolve(id, side).await?;
            println!("conflict {id} resolved");
        }
    }
    Ok(())
}

//! `nexo plugin dev`: a vendor's inner loop. Optionally rebuild, reload the
//! component whenever it (or the config, input or suite file) changes,
//! re-run one operation or the whole kit,
//! and show each round's records, plugin log and error — then keep
//! watching: a failing build or a trapping plugin never ends the loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, ValueEnum};
use serde_json::{Value, json};
use tracing::instrument::WithSubscriber;

use crate::plugin::{MapOutcome, WriteOutcome};
use crate::safe_text::{SafeText, safe_json};
use crate::state::SandboxEvent;
use crate::{ConnectorPlugin, MapperPlugin, Runtime};

use super::SandboxArgs;
use super::call::{load_config, load_records, record_json, sandbox_for};
use super::output::safe_error;
use super::plugin_ref;

mod watch;

use nexo_kit::logs::Captured;
use watch::{Changes, build, scan, stamp};

/// How often the component and the watched folders are looked at.
const POLL: Duration = Duration::from_millis(300);

/// Log lines shown per round; the rest are counted.
const LOG_LINES: usize = 200;

/// The operations `plugin dev` can re-run.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum DevOp {
    Check,
    Discover,
    Read,
    Write,
    Map,
}

/// `nexo plugin dev`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["op", "suite"])))]
pub(crate) struct DevArgs {
    /// The component (`.wasm`) to watch.
    pub(crate) file: PathBuf,
    /// Command that builds the component, run through `sh -c` in the
    /// current directory before the first round and whenever a file under
    /// a --watch folder changes, e.g. "cargo build --target wasm32-wasip2
    /// --profile plugin".
    #[arg(long, value_name = "COMMAND")]
    build: Option<String>,
    /// Folder whose files trigger --build when they change (repeatable;
    /// default: `src`, if there is one).
    #[arg(long = "watch", value_name = "DIR", requires = "build")]
    watch: Vec<PathBuf>,
    /// The operation to re-run each round.
    #[arg(long, value_enum)]
    op: Option<DevOp>,
    /// Run the whole conformance kit each round instead (text report), with
    /// this suite file (default: `nexo-test.toml` in the current directory
    /// or beside the component, if there is one).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    suite: Option<Option<PathBuf>>,
    /// Config JSON file, read again each round (a change starts one).
    /// Default: `{}`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stream, for read and write.
    #[arg(long)]
    stream: Option<String>,
    /// State to read from (JSON text as returned by a previous page).
    #[arg(long)]
    state: Option<String>,
    /// Records JSON file for write and map (as `plugin call --input`),
    /// read again each round (a change starts one).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Records shown per round (one line each).
    #[arg(long, default_value_t = 20)]
    show: usize,
    /// Do one round and exit with its status.
    #[arg(long)]
    once: bool,
    /// Grants, secrets and limits.
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub(crate) async fn dev(runtime: &Runtime, data_dir: &Path, args: DevArgs) -> Result<()> {
    for (flag, path) in [("--config", &args.config), ("--input", &args.input)] {
        if path.as_deref() == Some(Path::new("-")) {
            bail!("{flag} -: plugin dev reads it again each round; give a file");
        }
    }
    let watched = watched_dirs(&args);
    let (dispatch, capture) = nexo_kit::logs::capture();
    let mut sources = Changes::new(scan(&watched, &args.file));
    let mut inputs = Changes::new(stamp(&round_files(&args)));
    let mut build_due = args.build.is_some();
    let mut run_due = true;
    let mut round = 0u32;
    loop {
        if build_due || run_due {
            round += 1;
            let ok = one_round(
                runtime, data_dir, &args, round, build_due, &capture, &dispatch,
            )
            .await;
            if args.once {
                return if ok {
                    Ok(())
                } else {
                    bail!("round {round} failed (see above)")
                };
            }
            // What the round itself changed (a build writes the component)
            // is not a reason for another round.
            sources.reset(scan(&watched, &args.file));
            inputs.reset(stamp(&round_files(&args)));
            (build_due, run_due) = (false, false);
            let names: Vec<String> = round_files(&args)
                .iter()
                .chain(&watched)
                .map(|p| p.display().to_string())
                .collect();
            println!("watching {} (Ctrl-C to stop)", names.join(", "));
        }
        tokio::time::sleep(POLL).await;
        if args.build.is_some() && sources.settled(scan(&watched, &args.file)) {
            build_due = true;
        }
        if inputs.settled(stamp(&round_files(&args))) {
            run_due = true;
        }
    }
}

/// The files a round reads, each change of which starts a new round: the
/// component, the config, the input records and the suite file.
fn round_files(args: &DevArgs) -> Vec<PathBuf> {
    let suite = match &args.suite {
        Some(Some(file)) => Some(file.clone()),
        Some(None) => super::test::default_suite(&args.file),
        None => None,
    };
    [
        Some(args.file.clone()),
        args.config.clone(),
        args.input.clone(),
        suite,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The folders whose changes trigger a build: `--watch`, else `src` when
/// there is one; none without `--build`.
fn watched_dirs(args: &DevArgs) -> Vec<PathBuf> {
    if args.build.is_none() {
        return Vec::new();
    }
    if !args.watch.is_empty() {
        return args.watch.clone();
    }
    let src = PathBuf::from("src");
    if src.is_dir() { vec![src] } else { Vec::new() }
}

/// One round: the build (when due), then the operation or the suite, with
/// the plugin's log lines; printed as one block. Whether it all went well.
async fn one_round(
    runtime: &Runtime,
    data_dir: &Path,
    args: &DevArgs,
    round: u32,
    build_due: bool,
    capture: &Captured,
    dispatch: &tracing::Dispatch,
) -> bool {
    let time = chrono::Utc::now().format("%H:%M:%S");
    let mut build_note = String::new();
    if let (true, Some(command)) = (build_due, &args.build) {
        let built = build(command).await;
        build_note = format!(" · build took {} ms", built.took.as_millis());
        if let Err(output) = built.result {
            println!("── round {round} · {time}{build_note} · build FAILED ──");
            println!("$ {}", SafeText::line(command));
            for line in output {
                println!("  {}", SafeText::line(&line));
            }
            return false;
        }
    }
    capture.take();
    // The header first (the suite takes a while), so the component is
    // loaded before the rest of the round.
    let loaded = tracing::dispatcher::with_default(dispatch, || runtime.load_file(&args.file));
    let short = match &loaded {
        Ok(p) => p.sha256().get(..12).unwrap_or(p.sha256()).to_string(),
        Err(_) => "?".to_string(),
    };
    println!("── round {round} · {time} · component {short}{build_note} ──");
    let mut out = Vec::new();
    let result = match loaded {
        Ok(plugin) => {
            run(plugin, data_dir, args, &mut out)
                .with_subscriber(dispatch.clone())
                .await
        }
        Err(e) => Err(e.into()),
    };
    for line in &out {
        println!("{line}");
    }
    let logs: Vec<String> = capture.take().into_iter().map(|l| l.text).collect();
    if !logs.is_empty() {
        println!("log:");
        for line in logs.iter().take(LOG_LINES) {
            println!("  {line}");
        }
        if logs.len() > LOG_LINES {
            println!("  … {} more line(s)", logs.len() - LOG_LINES);
        }
    }
    match result {
        Ok(true) => true,
        Ok(false) => false,
        Err(e) => {
            println!("error: {}", safe_error(&e));
            false
        }
    }
}

/// Runs the round's work on the loaded component, writing what it shows
/// to `out`; whether it passed (a suite with failed checks did not).
async fn run(
    plugin: crate::LoadedPlugin,
    data_dir: &Path,
    args: &DevArgs,
    out: &mut Vec<String>,
) -> Result<bool> {
    let config = load_config(args.config.as_deref())?;
    let who = plugin_ref(&plugin, &args.file, args.sandbox.id.clone());
    if let Some(suite) = &args.suite {
        return run_suite(plugin, who, config, suite.as_deref(), args, out).await;
    }
    let sandbox = sandbox_for(&args.sandbox, who, plugin.sha256(), data_dir)?;
    let op = args.op.context("--op or --suite is required")?;
    if op == DevOp::Map {
        let mapper = MapperPlugin::open(&plugin, sandbox)?;
        return map(&mapper, &config, args, out).await.map(|()| true);
    }
    let overrides = crate::sandbox::overrides::Overrides::parse(
        args.sandbox.origin_overrides.iter().map(|(f, t)| (f, t)),
    )?;
    let connector = ConnectorPlugin::open(&plugin, sandbox)
        .await?
        .with_origin_overrides(overrides)?;
    connector_op(&connector, op, &config, args, out)
        .await
        .map(|()| true)
}

async fn run_suite(
    component: crate::LoadedPlugin,
    plugin: crate::PluginRef,
    config: String,
    suite: Option<&Path>,
    args: &DevArgs,
    out: &mut Vec<String>,
) -> Result<bool> {
    let suite_file = suite
        .map(Path::to_path_buf)
        .or_else(|| super::test::default_suite(&args.file));
    let suite = match &suite_file {
        Some(p) => nexo_kit::Suite::load(p)?,
        None => nexo_kit::Suite::default(),
    };
    let target = nexo_kit::Target {
        plugin,
        component,
        limits: super::call::limits_of(&args.sandbox)?,
        grants: super::call::http_grants(&args.sandbox)?,
        overrides: args.sandbox.origin_overrides.clone(),
        secrets: super::call::secrets_of(&args.sandbox)?,
        config,
        kv_bytes: args.sandbox.grant_kv,
    };
    let report = nexo_kit::run(&target, &suite, &nexo_kit::Mode::Live).await?;
    let text = safe_json(report.render(nexo_kit::Format::Text));
    out.extend(text.lines().map(str::to_string));
    // The kit captures the suite's log itself (its sandbox.secrets check
    // reads it); the round shows it like any other.
    if !report.log.is_empty() {
        out.push("log:".into());
        out.extend(report.log.iter().take(LOG_LINES).map(|l| format!("  {l}")));
        if report.log.len() > LOG_LINES {
            out.push(format!("  … {} more line(s)", report.log.len() - LOG_LINES));
        }
    }
    Ok(report.passed())
}

async fn connector_op(
    c: &ConnectorPlugin,
    op: DevOp,
    config: &str,
    args: &DevArgs,
    out: &mut Vec<String>,
) -> Result<()> {
    let stream = || {
        args.stream
            .as_deref()
            .context("--stream is required for this operation")
    };
    match op {
        DevOp::Check => {
            let o = c.check(config).await;
            events(&o.events, out);
            o.result?;
            out.push(format!("check: ok ({} ms)", o.elapsed.as_millis()));
        }
        DevOp::Discover => {
            let o = c.discover(config).await;
            events(&o.events, out);
            for s in o.result? {
                out.push(format!(
                    "stream {}: key {:?}, cursor {}, {}{}",
                    s.name,
                    s.primary_key,
                    s.cursor_field.as_deref().unwrap_or("none"),
                    if s.can_read {
                        "readable"
                    } else {
                        "not readable"
                    },
                    if s.can_write { ", writable" } else { "" },
                ));
            }
        }
        DevOp::Read => {
            let o = c.read(config, stream()?, args.state.as_deref()).await;
            events(&o.events, out);
            let page = o.result?;
            let n = page.records.len();
            out.push(format!(
                "{n} record(s) in {} ms, has_more: {}",
                o.elapsed.as_millis(),
                page.has_more
            ));
            for r in page.records.iter().take(args.show) {
                out.push(compact(&record_json(r)));
            }
            if n > args.show {
                out.push(format!("… {} more (--show)", n - args.show));
            }
            out.push(format!("state: {}", compact(&json!(page.state))));
        }
        DevOp::Write => {
            let stream = stream()?;
            let input = args
                .input
                .as_deref()
                .context("--input is required for write")?;
            let batch = load_records(input, stream)?;
            let o = c.write(config, stream, &batch).await;
            events(&o.events, out);
            let results = o.result?;
            for r in results.iter().take(args.show) {
                let what = match &r.outcome {
                    WriteOutcome::Created(id) => format!("created {id}"),
                    WriteOutcome::Updated(id) => format!("updated {id}"),
                    WriteOutcome::Unchanged(id) => format!("unchanged {id}"),
                    WriteOutcome::Deleted(id) => format!("deleted {id}"),
                    WriteOutcome::Failed(e) => format!("failed ({}): {e}", e.class()),
                };
                out.push(SafeText::line(&format!("{} → {what}", r.id)).to_string());
            }
            if results.len() > args.show {
                out.push(format!("… {} more (--show)", results.len() - args.show));
            }
        }
        DevOp::Map => bail!("map is a mapper operation; {} is a connector", c.plugin()),
    }
    Ok(())
}

async fn map(
    mapper: &MapperPlugin,
    config: &str,
    args: &DevArgs,
    out: &mut Vec<String>,
) -> Result<()> {
    let input = args
        .input
        .as_deref()
        .context("--input is required for map")?;
    let batch = load_records(input, args.stream.as_deref().unwrap_or("records"))?;
    let o = mapper.map(config, &batch).await;
    events(&o.events, out);
    let outcomes = o.result?;
    for (input, outcome) in batch.iter().zip(&outcomes).take(args.show) {
        let line = match outcome {
            MapOutcome::Mapped(records) if records.is_empty() => format!("{} → skipped", input.id),
            MapOutcome::Mapped(records) => {
                let records: Vec<Value> = records.iter().map(record_json).collect();
                format!("{} → {}", input.id, compact(&Value::Array(records)))
            }
            MapOutcome::Failed(e) => format!("{} → failed ({}): {e}", input.id, e.class()),
        };
        out.push(safe_json(line));
    }
    if batch.len() > args.show {
        out.push(format!("… {} more (--show)", batch.len() - args.show));
    }
    Ok(())
}

/// A JSON value on one line, plugin words made safe to print.
fn compact(value: &Value) -> String {
    safe_json(value.to_string())
}

/// What the sandbox refused or dropped during a call.
fn events(events: &[SandboxEvent], out: &mut Vec<String>) {
    for e in events {
        let text = match e {
            SandboxEvent::HttpRefused(e) => format!("HTTP refused: {e}"),
            SandboxEvent::KvRefused(e) => format!("key-value refused: {e}"),
            SandboxEvent::KvNotGranted => "key-value used without a grant".to_string(),
            SandboxEvent::LogLinesDropped(n) => format!("{n} log line(s) dropped (rate limit)"),
        };
        out.push(format!("sandbox: {}", SafeText::line(&text)));
    }
}

//! `nexo map preview`: a mapper's output on sample records, each input next
//! to what it became, so an admin can check a mapping before a pipeline runs
//! it. The mapper runs in the same sandbox as in a pipeline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};

use crate::plugin::{MapOutcome, Record};
use crate::safe_text::{SafeText, safe_json};
use crate::{Limits, MapperPlugin, PluginRef, Runtime, Sandbox};

use super::call::{load_config, load_records, record_json};
use super::{plugin_ref, registry};

/// Mapper commands.
#[derive(Debug, Subcommand)]
pub(crate) enum MapCommand {
    /// Show a mapper's output on sample records: per record, the input next
    /// to its output, or why it was left out or failed.
    Preview(PreviewArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mapper").required(true).args(["plugin", "component"])))]
pub(crate) struct PreviewArgs {
    /// An installed mapper, `ID` (its active version) or `ID@VERSION`.
    #[arg(long, value_name = "ID[@VERSION]")]
    plugin: Option<String>,
    /// A local mapper component (`.wasm`).
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
    /// The mapper's config JSON file (`-` for stdin). Default: `{}`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sample records: a JSON array of {"id", "payload", "stream"?,
    /// "operation"?, "cursor"?}, as for `nexo plugin call … map`.
    #[arg(long)]
    input: PathBuf,
    /// Stream of sample records that name none.
    #[arg(long, default_value = "records")]
    stream: String,
    /// Print JSON instead of side-by-side text.
    #[arg(long)]
    json: bool,
}

/// What became of one input record.
#[derive(Debug)]
enum Fate {
    /// Mapped to this record.
    Mapped(Record),
    /// Not in the mapper's output.
    LeftOut,
    /// The mapper failed on it (alone).
    Failed(String),
}

pub(crate) async fn run(dir: &Path, runtime: &Runtime, cmd: MapCommand) -> Result<()> {
    let MapCommand::Preview(args) = cmd;
    let mapper = open(dir, runtime, &args)?;
    let config = load_config(args.config.as_deref())?;
    let batch = load_records(&args.input, &args.stream)?;
    let (fates, batch_error) = preview(&mapper, &config, &batch).await?;

    let failed = fates
        .iter()
        .filter(|f| matches!(f, Fate::Failed(_)))
        .count();
    if args.json {
        println!(
            "{}",
            safe_json(serde_json::to_string_pretty(&as_json(
                &mapper,
                &batch,
                &fates,
                &batch_error
            ))?)
        );
    } else {
        print_text(&mapper, &batch, &fates, batch_error.as_deref());
    }
    if let Some(e) = batch_error {
        bail!(
            "the mapper fails this batch ({failed} of {} records fail on their own): {e}",
            batch.len()
        );
    }
    Ok(())
}

fn open(dir: &Path, runtime: &Runtime, args: &PreviewArgs) -> Result<MapperPlugin> {
    let sandbox = |plugin: PluginRef| Sandbox {
        plugin,
        limits: Limits::default(),
        grants: Default::default(),
        secrets: Default::default(),
        credentials: Default::default(),
        kv: None,
    };
    if let Some(file) = &args.component {
        let loaded = runtime.load_file(file)?;
        let who = plugin_ref(&loaded, file, None);
        return Ok(MapperPlugin::open(&loaded, sandbox(who))?);
    }
    let spec = args.plugin.as_deref().unwrap_or_default();
    let registry = registry(dir, runtime)?;
    let (row, loaded) = match spec.split_once('@') {
        Some((id, version)) => {
            let version = semver::Version::parse(version)
                .with_context(|| format!("`{version}` in --plugin {spec} is not a version"))?;
            registry.load_version(id, &version)?
        }
        None => registry.load_active(spec)?,
    };
    let who = PluginRef {
        id: row.plugin_id.clone(),
        version: row.version.to_string(),
    };
    Ok(MapperPlugin::open(&loaded, sandbox(who))?)
}

/// Map the batch as a pipeline would (one call). When the mapper fails the
/// whole batch (a 1.0 mapper can fail no other way), each record is mapped
/// on its own to show which ones fail and what the others become.
async fn preview(
    mapper: &MapperPlugin,
    config: &str,
    batch: &[Record],
) -> Result<(Vec<Fate>, Option<String>)> {
    match mapper.map(config, batch).await.into_result() {
        Ok(out) => Ok((pair(batch, out)?, None)),
        Err(batch_error) => {
            let mut fates = Vec::with_capacity(batch.len());
            for r in batch {
                let one = std::slice::from_ref(r);
                fates.push(match mapper.map(config, one).await.into_result() {
                    Ok(out) => pair(one, out)?.pop().unwrap_or(Fate::LeftOut),
                    Err(e) => Fate::Failed(e.to_string()),
                });
            }
            Ok((fates, Some(batch_error.to_string())))
        }
    }
}

/// What became of each input, as the sync engine takes it: one record
/// mapped, none (left out), or refused — by the mapper, or for making more
/// than one record of one input.
fn pair(batch: &[Record], out: Vec<MapOutcome>) -> Result<Vec<Fate>> {
    if out.len() != batch.len() {
        bail!(
            "the mapper answered {} outcomes for {} records",
            out.len(),
            batch.len()
        );
    }
    Ok(out
        .into_iter()
        .map(|outcome| match outcome {
            MapOutcome::Failed(e) => Fate::Failed(e.to_string()),
            MapOutcome::Mapped(mut records) => match records.len() {
                0 => Fate::LeftOut,
                1 => records.pop().map_or(Fate::LeftOut, Fate::Mapped),
                n => Fate::Failed(format!(
                    "the mapper made {n} records of it; a pipeline writes one destination record per source record"
                )),
            },
        })
        .collect())
}

fn as_json(
    mapper: &MapperPlugin,
    batch: &[Record],
    fates: &[Fate],
    batch_error: &Option<String>,
) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .zip(fates)
        .map(|(input, fate)| {
            let (status, output, error) = match fate {
                Fate::Mapped(r) => ("mapped", record_json(r), Value::Null),
                Fate::LeftOut => ("left_out", Value::Null, Value::Null),
                Fate::Failed(e) => ("failed", Value::Null, json!(e)),
            };
            json!({"id": input.id, "status": status, "input": record_json(input),
                   "output": output, "error": error})
        })
        .collect();
    json!({
        "plugin": mapper.plugin().to_string(),
        "batch_error": batch_error,
        "records": records,
    })
}

fn print_text(mapper: &MapperPlugin, batch: &[Record], fates: &[Fate], batch_error: Option<&str>) {
    println!("mapper {}", mapper.plugin());
    let (mut mapped, mut left_out, mut failed) = (0, 0, 0);
    for (input, fate) in batch.iter().zip(fates) {
        let left = pretty(input);
        let (head, right) = match fate {
            Fate::Mapped(r) => {
                mapped += 1;
                (
                    format!(
                        "{} → {}",
                        SafeText::line(&input.stream),
                        SafeText::line(&r.stream)
                    ),
                    pretty(r),
                )
            }
            Fate::LeftOut => {
                left_out += 1;
                (
                    "left out".to_string(),
                    vec!["(left out by the mapper)".into()],
                )
            }
            Fate::Failed(e) => {
                failed += 1;
                (
                    "FAILED".to_string(),
                    vec![format!("error: {}", SafeText::line(&e.to_string()))],
                )
            }
        };
        println!("\nrecord {} ({head})", SafeText::line(&input.id));
        let width = left.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        for i in 0..left.len().max(right.len()) {
            let l = left.get(i).map(String::as_str).unwrap_or("");
            let r = right.get(i).map(String::as_str).unwrap_or("");
            println!("  {l:<width$} │ {r}");
        }
    }
    println!(
        "\n{} records: {mapped} mapped, {left_out} left out, {failed} failed",
        batch.len()
    );
    if let Some(e) = batch_error {
        println!("the whole batch fails: {}", SafeText::line(e));
    }
}

/// A record's payload (or, for a delete, the operation) as indented lines.
fn pretty(r: &Record) -> Vec<String> {
    let v = record_json(r);
    let shown = match v.get("operation").and_then(Value::as_str) {
        Some("delete") => json!({"operation": "delete"}),
        _ => v.get("payload").cloned().unwrap_or(Value::Null),
    };
    safe_json(serde_json::to_string_pretty(&shown).unwrap_or_default())
        .lines()
        .map(str::to_string)
        .collect()
}

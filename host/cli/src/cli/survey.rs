//! `nexo survey CONNECTION [STREAM…]`: read a system once, read-only, and
//! say what is there before anything is synced — record counts, each
//! field's fill rate and formats, and the records that are likely the
//! same one twice inside the system (`nexo_sync::matching::survey`).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::plugin::Operation;
use crate::safe_text::SafeText;
use crate::sync::matching::survey::{StreamSurvey, survey};

/// `nexo survey`.
#[derive(Debug, Args)]
pub(crate) struct SurveyArgs {
    /// The connection to read (see `nexo connection list`).
    connection: String,
    /// Its streams to read (default: every stream it has).
    streams: Vec<String>,
    /// How alike two names must be (Jaro-Winkler, 0–1) to be reported as
    /// likely the same record.
    #[arg(long, default_value_t = 0.92)]
    similar: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(
    connections: &crate::connections::Connections,
    args: SurveyArgs,
) -> Result<()> {
    if !(0.5..=1.0).contains(&args.similar) {
        bail!("--similar must be between 0.5 and 1.0 (0.92 by default)");
    }
    let (row, connector) = connections
        .open(&args.connection, crate::Limits::default())
        .await?;
    let all = connector.spec().streams.clone();
    let streams = if args.streams.is_empty() {
        all.clone()
    } else {
        for s in &args.streams {
            if !all.contains(s) {
                bail!(
                    "connection {} ({}) has no stream `{s}`; its streams: {}",
                    row.name,
                    row.plugin_id,
                    all.join(", ")
                );
            }
        }
        args.streams.clone()
    };
    let config = row.config.clone();
    let mut surveys = Vec::new();
    for stream in &streams {
        let mut records: Vec<(String, Value)> = Vec::new();
        let mut state: Option<String> = None;
        let mut pages = 0u64;
        loop {
            let checked = connector
                .read_checked(&config, stream, state.as_deref())
                .await
                .into_result()
                .with_context(|| format!("reading page {} of {stream}", pages + 1))?;
            pages += 1;
            for r in checked.page.records {
                if r.operation == Operation::Delete {
                    continue;
                }
                let payload = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
                records.push((r.id, payload));
            }
            state = checked.page.state;
            if !checked.page.has_more {
                break;
            }
        }
        surveys.push(survey(stream, &records, args.similar));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "connection": row.name,
                "streams": surveys,
            }))?
        );
        return Ok(());
    }
    for s in &surveys {
        print_survey(&row.name, s);
    }
    Ok(())
}

fn print_survey(connection: &str, s: &StreamSurvey) {
    println!("{connection}/{}: {} records", s.stream, s.records);
    for f in &s.fields {
        let formats: Vec<String> = f
            .formats
            .iter()
            .map(|(fmt, n)| {
                format!(
                    "{} {n}",
                    serde_json::to_value(fmt)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            })
            .collect();
        println!(
            "  {:<28} {:>5.1}% filled  {}",
            SafeText::line(&f.field),
            f.fill_rate * 100.0,
            formats.join(", ")
        );
    }
    if s.duplicates.is_empty() {
        println!("  no likely duplicates");
    } else {
        println!("  likely duplicates ({} groups):", s.duplicates.len());
        for g in &s.duplicates {
            println!(
                "    same {:<13} {:<32} records {}",
                g.by,
                SafeText::line(&g.value),
                g.ids
                    .iter()
                    .map(|i| SafeText::line(i).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

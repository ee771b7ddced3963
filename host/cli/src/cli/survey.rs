//! `nexo survey CONNECTION [STREAM…] [--for PIPELINE]`: read a system once,
//! read-only, and say what is there before anything is synced — record
//! counts, each field's fill rate and formats, the records that are likely
//! the same one twice inside the system, and (with a pipeline) the records
//! its mappers and quality gate would refuse. The reading and checking is
//! `nexo_sync::survey_read`, shared with `POST /api/survey`; this prints.

use anyhow::Result;
use clap::Args;

use crate::safe_text::SafeText;
use crate::sync::Engine;
use crate::sync::gate_check::GateReport;
use crate::sync::survey_read::{
    ConnectionSurvey, DEFAULT_SIMILAR, ForPipeline, StreamReport, SurveyOptions, survey_connection,
};

/// `nexo survey`.
#[derive(Debug, Args)]
pub(crate) struct SurveyArgs {
    /// The connection to read (see `nexo connection list`).
    connection: String,
    /// Its streams to read (default: every stream it has; with `--for`,
    /// the pipeline's source stream).
    streams: Vec<String>,
    /// How alike two names must be (Jaro-Winkler, 0.5–1) to be reported
    /// as likely the same record.
    #[arg(long, default_value_t = DEFAULT_SIMILAR)]
    similar: f64,
    /// Also check the records by this pipeline's mappers and its
    /// destination's quality gate, as a run would (the pipeline must read
    /// from CONNECTION); nothing is written.
    #[arg(long = "for", value_name = "PIPELINE")]
    for_pipeline: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(engine: &Engine, args: SurveyArgs) -> Result<()> {
    let opts = SurveyOptions {
        similar: args.similar,
        for_pipeline: args
            .for_pipeline
            .map(|pipeline| ForPipeline { engine, pipeline }),
    };
    let report =
        survey_connection(engine.connections(), &args.connection, &args.streams, opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_report(&report);
    Ok(())
}

fn print_report(report: &ConnectionSurvey) {
    for s in &report.streams {
        print_stream(&report.connection, s);
    }
}

fn print_stream(connection: &str, report: &StreamReport) {
    let s = &report.survey;
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
                ids(&g.ids)
            );
        }
    }
    if !report.unreadable.is_empty() {
        println!(
            "  {} records are not usable JSON objects (a run would quarantine them): {}",
            report.unreadable.len(),
            ids(&report.unreadable)
        );
    }
    if let Some(gate) = &report.gate {
        print_gate(gate);
    }
}

fn print_gate(gate: &GateReport) {
    println!(
        "  for pipeline {} (into {}): {} of {} records would fail, {} pass, {} left out by its mappers",
        SafeText::line(&gate.pipeline),
        SafeText::line(&gate.destination),
        gate.failed,
        gate.checked,
        gate.passed,
        gate.left_out
    );
    for f in &gate.failures {
        println!(
            "    {:<16} {:<6} {}",
            SafeText::line(&f.source_id),
            f.step,
            SafeText::line(&f.message)
        );
    }
    let more = gate.failed.saturating_sub(gate.failures.len() as u64);
    if more > 0 {
        println!("    … and {more} more");
    }
}

fn ids(ids: &[String]) -> String {
    ids.iter()
        .map(|i| SafeText::line(i).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

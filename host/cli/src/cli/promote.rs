//! `nexo pipeline promote`: from sandbox to production. The checks and the
//! twin are `nexo_sync::promote`; here the twin is checked as `apply`
//! would, dry-run against production and shown, then — confirmed at the
//! prompt or by `--yes` — applied through the same function as `nexo
//! pipeline apply`. Without a terminal to ask on and without `--yes`,
//! nothing is applied.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};

use crate::safe_text::SafeText;
use crate::sync::promote::{parse_mapping, twin_name};
use crate::sync::{ApplyOptions, Engine};

use super::pipeline::{apply_definition, print_plan};
use super::sync::counts_line;

pub(crate) async fn promote(
    engine: &Engine,
    name: &str,
    connections: &[String],
    as_name: Option<String>,
    yes: bool,
) -> Result<()> {
    let mapping = parse_mapping(connections)?;
    let twin_name = as_name.unwrap_or_else(|| twin_name(name));
    let promotion = engine.promotion(name, &mapping, &twin_name)?;
    let twin = &promotion.twin;
    let pairs: Vec<String> = mapping.iter().map(|(s, p)| format!("{s} → {p}")).collect();
    if promotion.existing.is_some() {
        let changes = promotion.changes();
        println!(
            "{twin_name} is already the production twin of {name}; this updates it ({}):",
            if changes.is_empty() {
                "no change to its definition".to_string()
            } else {
                format!("{} changes", changes.len())
            }
        );
        for c in changes {
            println!("  {}", SafeText::line(&c));
        }
    } else {
        println!(
            "production twin of {name}: {twin_name} ({}), with its own cursor and links",
            pairs.join(", ")
        );
    }
    // The checks of `apply`, before anything is read from production.
    engine
        .check_definition(twin, ApplyOptions::default())
        .await?;
    let report = engine.dry_run_unsaved(twin, None).await?;
    println!(
        "dry run of {twin_name} against production: nothing was written\n  would: {}",
        counts_line(&report.counts)
    );
    print_plan(&report);
    if let Some(error) = &report.error {
        bail!(
            "the dry run of {twin_name} did not finish ({}); nothing was applied",
            SafeText::line(error)
        );
    }
    if !yes && !confirmed()? {
        bail!(
            "{twin_name} was not applied: {}",
            if std::io::stdin().is_terminal() {
                "not confirmed"
            } else {
                "no terminal to confirm on; pass --yes to apply it"
            }
        );
    }
    apply_definition(engine, twin, false).await?;
    println!("promoted {name} to {twin_name}; its first run: `nexo pipeline run {twin_name}`");
    Ok(())
}

/// "Apply? [y/N]" on a terminal; `false` without one.
fn confirmed() -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    print!("Apply? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

//! `nexo plugin test`: the conformance kit (`nexo-kit`) run on a component
//! with the same config, secrets and grants flags as `plugin call`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nexo_kit::{Format, Mode, Suite, Target};

use crate::Runtime;

use super::args::{ReportFormat, TestArgs};
use super::call::{http_grants, limits_of, load_config, secrets_of};
use super::plugin_ref;

/// The suite file a run uses: `--suite`, else `nexo-test.toml` in the
/// current directory or beside the component, else none.
fn suite_path(args: &TestArgs) -> Option<PathBuf> {
    if let Some(p) = &args.suite {
        return Some(p.clone());
    }
    default_suite(&args.file)
}

/// `nexo-test.toml` in the current directory or beside `component`, if
/// there is one (`plugin dev --suite` without a file uses it too).
pub(crate) fn default_suite(component: &Path) -> Option<PathBuf> {
    let beside = component.parent().map(|d| d.join("nexo-test.toml"));
    [Some(PathBuf::from("nexo-test.toml")), beside]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

pub(crate) async fn test(runtime: &Runtime, args: TestArgs) -> Result<()> {
    let component = runtime.load_file(&args.file)?;
    let suite = match suite_path(&args) {
        Some(p) => Suite::load(&p)?,
        None => Suite::default(),
    };
    let target = Target {
        plugin: plugin_ref(&component, &args.file, args.sandbox.id.clone()),
        component,
        limits: limits_of(&args.sandbox)?,
        grants: http_grants(&args.sandbox)?,
        overrides: args.sandbox.origin_overrides.clone(),
        secrets: secrets_of(&args.sandbox)?,
        config: load_config(args.config.as_deref())?,
    };
    if args.sandbox.grant_kv > 0 {
        bail!("--grant-kv: the kit runs plugins without key-value storage; leave it out");
    }
    let mode = match (&args.record, &args.replay) {
        (Some(dir), _) => Mode::Record(dir.clone()),
        (_, Some(dir)) => Mode::Replay(dir.clone()),
        _ => Mode::Live,
    };
    let report = nexo_kit::run(&target, &suite, &mode).await?;
    let format = match args.format {
        ReportFormat::Text => Format::Text,
        ReportFormat::Json => Format::Json,
        ReportFormat::Junit => Format::Junit,
    };
    let text = crate::safe_text::safe_json(report.render(format));
    print!("{text}");
    if let Some(path) = &args.report {
        write_report(path, &text)?;
    }
    let failed = report.failures().count();
    if failed > 0 {
        bail!(
            "{failed} check(s) failed: {}",
            report
                .failures()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn write_report(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

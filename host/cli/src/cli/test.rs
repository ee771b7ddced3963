//! `nexo plugin test`: the conformance kit (`nexo-kit`) run on a component
//! or a bundle, with the same config, secrets and grants flags as `plugin
//! call`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nexo_kit::{Format, Mode, Suite, Target};

use crate::bundle::Bundle;
use crate::{Limits, LoadedPlugin, PluginRef, Runtime};

use super::SandboxArgs;
use super::args::{ReportFormat, TestArgs};
use super::call::{http_grants, limits_of, load_config, parse_secret, secrets_of};
use super::plugin_ref;
use crate::sandbox::secrets::SecretValue;
use std::collections::BTreeMap;

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

/// The component `file` holds — a `.wasm`, or a bundle as `plugin pack`
/// writes it (then with the id, version and memory its manifest gives) —
/// and who it is.
fn load(runtime: &Runtime, args: &TestArgs) -> Result<(LoadedPlugin, PluginRef, Limits)> {
    let mut limits = limits_of(&args.sandbox)?;
    let what = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {what}"))?;
    if !bytes.starts_with(b"\0asm") {
        let bundle = Bundle::parse(&bytes, &what)?;
        let m = &bundle.manifest;
        let who = PluginRef {
            id: m.id.clone(),
            version: m.version.to_string(),
        };
        if args.sandbox.memory_mib.is_none() {
            limits.memory_bytes = limits
                .memory_for(m.capabilities.memory_asked())
                .with_context(|| {
                    format!("{what}: its manifest asks for more memory than this host allows")
                })?;
        }
        let plugin = runtime.load(&bundle.component, &who.to_string())?;
        return Ok((plugin, who, limits));
    }
    let plugin = runtime.load(&bytes, &what)?;
    let who = plugin_ref(&plugin, &args.file, args.sandbox.id.clone());
    Ok((plugin, who, limits))
}

pub(crate) async fn test(runtime: &Runtime, args: TestArgs) -> Result<()> {
    let (component, plugin, limits) = load(runtime, &args)?;
    let suite = match suite_path(&args) {
        Some(p) => Suite::load(&p)?,
        None => Suite::default(),
    };
    let target = Target {
        plugin,
        component,
        limits,
        grants: http_grants(&args.sandbox)?,
        overrides: args.sandbox.origin_overrides.clone(),
        secrets: if args.replay.is_some() {
            replay_secrets(&args.sandbox)
        } else {
            secrets_of(&args.sandbox)?
        },
        config: load_config(args.config.as_deref())?,
        kv_bytes: args.sandbox.grant_kv,
    };
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

/// The secrets of a replay: those whose source can be read. A recording
/// holds no secret value, so CI replays without the account's secrets; the
/// kit gives each one left out a stand-in.
fn replay_secrets(args: &SandboxArgs) -> BTreeMap<String, SecretValue> {
    args.secrets
        .iter()
        .filter_map(|spec| match parse_secret(spec) {
            Ok(pair) => Some(pair),
            Err(e) => {
                eprintln!("note: {e:#}; the replay uses a stand-in");
                None
            }
        })
        .collect()
}

fn write_report(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

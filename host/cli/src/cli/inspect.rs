//! `nexo plugin inspect`: what a component is and what it asks for, in plain
//! language, before anything runs with a grant.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use crate::inspect::WorldKind;
use crate::limits::human_bytes;
use crate::safe_text::{SafeText, safe_json};
use crate::{ConnectorPlugin, Grants, Limits, Runtime, Sandbox};

use super::call::spec_json;
use super::plugin_ref;

pub(crate) async fn inspect(runtime: &Runtime, file: &Path, as_json: bool) -> Result<()> {
    let plugin = runtime.load_file(file)?;
    let info = plugin.info();
    let who = plugin_ref(&plugin, file, None);
    let spec = match info.world {
        WorldKind::Connector => {
            let sandbox = Sandbox {
                plugin: who.clone(),
                limits: Limits::default(),
                grants: Grants::default(),
                secrets: BTreeMap::new(),
                credentials: Default::default(),
                kv: None,
            };
            Some(
                ConnectorPlugin::open(&plugin, sandbox)
                    .await?
                    .spec()
                    .clone(),
            )
        }
        WorldKind::Mapper => None,
    };
    let doc = json!({
        "file": file.display().to_string(),
        "sha256": plugin.sha256(),
        "plugin": who.to_string(),
        "world": info.world.to_string(),
        "wit_version": info.wit_version(),
        "sdk_version": info.embedded("sdk"),
        "imports": info.imports,
        "exports": info.exports,
        "spec": spec.as_ref().map(spec_json),
    });
    if as_json {
        println!("{}", safe_json(serde_json::to_string_pretty(&doc)?));
        return Ok(());
    }
    println!("{}  ({})", who, file.display());
    println!("  world        nexo:connector/{}", info.world);
    println!("  WIT version  {}", info.wit_version().unwrap_or("unknown"));
    println!(
        "  SDK          {}",
        info.embedded("sdk")
            .map(|v| format!("nexo-sdk {v}"))
            .unwrap_or("unknown (not built with nexo-sdk)".into())
    );
    println!("  sha256       {}", plugin.sha256());
    let (host, wasi): (Vec<&String>, Vec<&String>) = info
        .imports
        .iter()
        .partition(|i| i.starts_with("nexo:connector/"));
    let host: Vec<&str> = host
        .iter()
        .filter_map(|i| i.strip_prefix("nexo:connector/")?.split('@').next())
        .filter(|i| *i != "types")
        .collect();
    println!(
        "  host imports {}",
        if host.is_empty() {
            "none".to_string()
        } else {
            host.join(", ")
        }
    );
    if let Some(w) = wasi.first().and_then(|i| i.split_once('@')) {
        println!(
            "  WASI         {} (linked; grants no files, sockets, environment or arguments)",
            w.1
        );
    }
    if let Some(spec) = &spec {
        println!(
            "  streams      {}",
            SafeText::line(&spec.streams.join(", "))
        );
        let caps = &spec.capabilities;
        println!("  wants to talk to:");
        if caps.http_origins.is_empty() {
            println!("    nothing (no network)");
        }
        for o in &caps.http_origins {
            println!("    {}", SafeText::line(o));
        }
        println!("  uses secrets:");
        if caps.secrets.is_empty() {
            println!("    none");
        }
        for s in &caps.secrets {
            println!(
                "    {} - {} (sent only to {})",
                SafeText::line(&s.name),
                SafeText::line(&s.description),
                SafeText::line(&s.origins.join(", "))
            );
        }
        println!(
            "  storage      {}",
            if caps.kv_bytes == 0 {
                "none".to_string()
            } else {
                format!("{} key-value", human_bytes(caps.kv_bytes))
            }
        );
        let schema: Value = serde_json::from_str(&spec.config_schema)
            .unwrap_or(Value::String(spec.config_schema.clone()));
        println!(
            "  config schema:\n{}",
            indent(&safe_json(serde_json::to_string_pretty(&schema)?), 4)
        );
    } else {
        println!("  capabilities none: a mapper gets no network and no storage");
    }
    Ok(())
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

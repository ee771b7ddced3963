//! `nexo plugin call`: one operation of a component under the sandbox, with
//! grants, secrets and limits from the command line; JSON on stdout.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::plugin::{MapOutcome, Operation, Record, Spec, StreamInfo, WriteOutcome};
use crate::safe_text::{SafeText, safe_json};

use crate::sandbox::policy::HttpGrant;
use crate::sandbox::secrets::SecretValue;
use crate::{ConnectorPlugin, Grants, Limits, MapperPlugin, PluginRef, Runtime, Sandbox};

use super::{CallArgs, Op, SandboxArgs, plugin_ref};

pub(crate) fn spec_json(spec: &Spec) -> Value {
    json!({
        "sdk_version": spec.sdk_version,
        "streams": spec.streams,
        "config_schema": serde_json::from_str::<Value>(&spec.config_schema).unwrap_or(Value::Null),
        "capabilities": {
            "http_origins": spec.capabilities.http_origins,
            "secrets": spec.capabilities.secrets.iter().map(|s| json!({
                "name": s.name, "description": s.description, "origins": s.origins,
            })).collect::<Vec<_>>(),
            "kv_bytes": spec.capabilities.kv_bytes,
        },
    })
}

fn stream_json(s: &StreamInfo) -> Value {
    json!({
        "name": s.name,
        "json_schema": serde_json::from_str::<Value>(&s.json_schema).unwrap_or(Value::Null),
        "primary_key": s.primary_key,
        "cursor_field": s.cursor_field,
        "can_read": s.can_read,
        "can_write": s.can_write,
    })
}

pub(crate) fn record_json(r: &Record) -> Value {
    json!({
        "stream": r.stream,
        "id": r.id,
        "operation": match r.operation { Operation::Upsert => "upsert", Operation::Delete => "delete" },
        "payload": serde_json::from_str::<Value>(&r.payload).unwrap_or(Value::Null),
        "cursor": r.cursor,
    })
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) fn load_config(path: Option<&Path>) -> Result<String> {
    let Some(path) = path else {
        return Ok("{}".into());
    };
    let text = read_text(path)?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("config {} is not valid JSON", path.display()))?;
    if !value.is_object() {
        bail!("config {} must be a JSON object", path.display());
    }
    Ok(value.to_string())
}

pub(crate) fn load_records(path: &Path, default_stream: &str) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Value::Array(items) = value else {
        bail!("{} must be a JSON array of records", path.display())
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| item.get(name);
            let id = match field("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => bail!("{} record {i}: `id` (string) is required", path.display()),
            };
            let payload = match field("payload") {
                Some(p @ Value::Object(_)) => p.to_string(),
                None => "{}".to_string(),
                Some(_) => bail!(
                    "{} record {i}: `payload` must be a JSON object",
                    path.display()
                ),
            };
            let operation = match field("operation").and_then(Value::as_str) {
                None | Some("upsert") => Operation::Upsert,
                Some("delete") => Operation::Delete,
                Some(other) => bail!(
                    "{} record {i}: operation `{other}` is not upsert or delete",
                    path.display()
                ),
            };
            Ok(Record {
                stream: field("stream")
                    .and_then(Value::as_str)
                    .unwrap_or(default_stream)
                    .to_string(),
                id,
                operation,
                payload,
                cursor: field("cursor").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

pub(crate) fn parse_secret(spec: &str) -> Result<(String, SecretValue)> {
    let Some((name, source)) = spec.split_once('=') else {
        bail!("--secret {spec}: expected NAME=env:VAR or NAME=file:PATH");
    };
    let value = if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var)
            .with_context(|| format!("--secret {name}: environment variable {var} is not set"))?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .with_context(|| format!("--secret {name}: cannot read {path}"))?
            .trim_end_matches(['\n', '\r'])
            .to_string()
    } else {
        bail!(
            "--secret {name}: the source must be env:VAR or file:PATH, so the value never appears on the command line"
        );
    };
    Ok((name.to_string(), SecretValue::new(value)))
}

/// The limits `args` set (a limits file, then the flags over it).
pub(crate) fn limits_of(args: &SandboxArgs) -> Result<Limits> {
    let mut limits = match &args.limits {
        Some(p) => serde_json::from_str(&read_text(p)?)
            .with_context(|| format!("limits file {}", p.display()))?,
        None => Limits::default(),
    };
    if let Some(m) = args.memory_mib {
        limits.memory_bytes = m << 20;
    }
    if let Some(t) = args.timeout_ms {
        limits.call_timeout_ms = t;
    }
    Ok(limits)
}

/// The HTTP grants `args` give; an overridden origin is granted by its
/// override, as on a connection.
pub(crate) fn http_grants(args: &SandboxArgs) -> Result<Vec<HttpGrant>> {
    let mut http = Vec::new();
    for o in &args.grant_http {
        http.push(HttpGrant::public(o).with_context(|| format!("--grant-http {o}"))?);
    }
    for o in &args.grant_private_http {
        http.push(HttpGrant::private(o).with_context(|| format!("--grant-private-http {o}"))?);
    }
    for (from, _) in &args.origin_overrides {
        http.push(HttpGrant::public(from).with_context(|| format!("--origin-override {from}"))?);
    }
    Ok(http)
}

/// The secrets `args` name, read from their sources.
pub(crate) fn secrets_of(args: &SandboxArgs) -> Result<BTreeMap<String, SecretValue>> {
    args.secrets.iter().map(|s| parse_secret(s)).collect()
}

/// The sandbox `args` describe for the component `who` (key-value data,
/// when granted, kept per id and component digest in `data_dir`).
pub(crate) fn sandbox_for(
    args: &SandboxArgs,
    who: PluginRef,
    component_sha256: &str,
    data_dir: &Path,
) -> Result<Sandbox> {
    let kv = if args.grant_kv > 0 {
        let db = crate::store::Database::open(&data_dir.join("nexo.db"))
            .context("opening the database")?;
        let store = db.kv_store();
        // `--id` is only a name the caller picks: the namespace also holds
        // the component's digest, so one local component cannot read
        // another's data by claiming its id.
        Some((store, format!("{}/cli/{component_sha256}", who.id)))
    } else {
        None
    };
    Ok(Sandbox {
        plugin: who,
        limits: limits_of(args)?,
        grants: Grants {
            http: http_grants(args)?,
            kv_bytes: args.grant_kv,
        },
        secrets: secrets_of(args)?,
        credentials: Default::default(),
        kv,
    })
}

pub(crate) async fn call(runtime: &Runtime, data_dir: &Path, args: CallArgs) -> Result<()> {
    let plugin = runtime.load_file(&args.file)?;
    let who = plugin_ref(&plugin, &args.file, args.sandbox.id.clone());
    let sandbox = sandbox_for(&args.sandbox, who, plugin.sha256(), data_dir)?;
    let config = load_config(args.config.as_deref())?;
    let stream = || {
        args.stream
            .clone()
            .context("--stream is required for this operation")
    };

    if args.op == Op::Map {
        let mapper = MapperPlugin::open(&plugin, sandbox)?;
        let input = args
            .input
            .as_deref()
            .context("--input is required for map")?;
        let batch = load_records(input, args.stream.as_deref().unwrap_or("records"))?;
        let out = mapper.map(&config, &batch).await.into_result()?;
        // One entry per input, in order: what the mapper made of it.
        let outcomes: Vec<Value> = batch
            .iter()
            .zip(&out)
            .map(|(input, outcome)| match outcome {
                MapOutcome::Mapped(records) if records.is_empty() => {
                    json!({"id": input.id, "outcome": "skipped"})
                }
                MapOutcome::Mapped(records) => json!({
                    "id": input.id,
                    "outcome": "mapped",
                    "records": records.iter().map(record_json).collect::<Vec<_>>(),
                }),
                MapOutcome::Failed(e) => json!({
                    "id": input.id,
                    "outcome": "failed",
                    "error": {"class": e.class(), "message": e.to_string()},
                }),
            })
            .collect();
        println!("{}", safe_json(serde_json::to_string_pretty(&outcomes)?));
        return Ok(());
    }
    let overrides = crate::sandbox::overrides::Overrides::parse(
        args.sandbox
            .origin_overrides
            .iter()
            .map(|(from, to)| (from, to)),
    )?;
    let connector = ConnectorPlugin::open(&plugin, sandbox)
        .await?
        .with_origin_overrides(overrides)?;
    let output = match args.op {
        Op::Spec => spec_json(connector.spec()),
        Op::Check => {
            connector.check(&config).await.into_result()?;
            json!({"check": "ok", "plugin": connector.plugin().to_string()})
        }
        Op::Discover => {
            let streams = connector.discover(&config).await.into_result()?;
            Value::Array(streams.iter().map(stream_json).collect())
        }
        Op::Read => {
            let stream = stream()?;
            return read_pages(&connector, &config, &stream, &args).await;
        }
        Op::Write => {
            let stream = stream()?;
            let input = args
                .input
                .as_deref()
                .context("--input is required for write")?;
            let batch = load_records(input, &stream)?;
            let results = connector
                .write(&config, &stream, &batch)
                .await
                .into_result()?;
            Value::Array(
                results
                    .iter()
                    .map(|r| {
                        let (outcome, detail) = match &r.outcome {
                            WriteOutcome::Created(id) => ("created", json!(id)),
                            WriteOutcome::Updated(id) => ("updated", json!(id)),
                            WriteOutcome::Unchanged(id) => ("unchanged", json!(id)),
                            WriteOutcome::Deleted(id) => ("deleted", json!(id)),
                            WriteOutcome::Failed(e) => ("failed", json!(e.to_string())),
                        };
                        json!({"id": r.id, "outcome": outcome, "detail": detail})
                    })
                    .collect(),
            )
        }
        Op::Map => bail!(
            "map is a mapper operation; {} is a connector",
            connector.plugin()
        ),
    };
    println!("{}", safe_json(serde_json::to_string_pretty(&output)?));
    Ok(())
}

/// `read`: one page, or with `--all-pages` every page up to `--max-pages`,
/// written as each arrives — the document `{"stream", "pages": [{records,
/// state, has_more}…], "records", "state"}` is streamed, so memory is one
/// page's whatever the stream's size. Reaching `--max-pages` with more to
/// read still ends the document, then fails saying how to go on.
async fn read_pages(
    connector: &ConnectorPlugin,
    config: &str,
    stream: &str,
    args: &CallArgs,
) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write!(
        out,
        "{{\n  \"stream\": {},\n  \"pages\": [",
        serde_json::to_string(stream)?
    )?;
    let mut state = args.state.clone();
    let mut pages = 0u32;
    let mut total = 0usize;
    let mut more = false;
    loop {
        let page = connector
            .read(config, stream, state.as_deref())
            .await
            .into_result()?;
        total += page.records.len();
        let json = json!({
            "records": page.records.iter().map(record_json).collect::<Vec<_>>(),
            "state": page.state,
            "has_more": page.has_more,
        });
        if pages > 0 {
            out.write_all(b",")?;
        }
        write!(out, "\n    {}", safe_json(serde_json::to_string(&json)?))?;
        out.flush()?;
        pages += 1;
        state = page.state;
        if !(args.all_pages && page.has_more) {
            break;
        }
        if pages >= args.max_pages {
            more = true;
            break;
        }
    }
    writeln!(
        out,
        "\n  ],\n  \"records\": {total},\n  \"state\": {}\n}}",
        safe_json(serde_json::to_string(&state)?)
    )?;
    out.flush()?;
    if more {
        bail!(
            "stopped at --max-pages {} with more of {stream} to read ({total} records so far); go on with --state {} or raise --max-pages",
            args.max_pages,
            shell_quote(state.as_deref().unwrap_or(""))
        );
    }
    Ok(())
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", SafeText::line(&text.replace('\'', "'\\''")))
}

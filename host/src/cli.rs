//! `nexo` subcommands. For now the vendor's loop: inspect a component and
//! call one operation of it under the sandbox, with the grants given on the
//! command line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use nexo::inspect::WorldKind;
use nexo::limits::human_bytes;
use nexo::plugin::{Operation, Record, Spec, StreamInfo, WriteOutcome};
use nexo::sandbox::kv::KvStore;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{
    ConnectorPlugin, Grants, Limits, LoadedPlugin, MapperPlugin, PluginRef, Runtime, RuntimeConfig,
    Sandbox,
};

/// Nexo: connect CRM, ERP and accounting systems through sandboxed plugins.
#[derive(Debug, Parser)]
#[command(name = "nexo", version, about)]
struct Cli {
    /// Data directory (compile cache, database). Default: $NEXO_DATA_DIR,
    /// else $XDG_DATA_HOME/nexo, else ~/.local/share/nexo.
    #[arg(long, global = true, env = "NEXO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Show what a component is: world, WIT and SDK versions, streams,
    /// requested capabilities, config schema.
    Inspect {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one operation of a component under the sandbox.
    Call(Box<CallArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Op {
    Spec,
    Check,
    Discover,
    Read,
    Write,
    Map,
}

#[derive(Debug, Args)]
struct CallArgs {
    /// The component (`.wasm`).
    file: PathBuf,
    /// The operation.
    #[arg(value_enum)]
    op: Op,
    /// Config JSON file (`-` for stdin). Default: `{}`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stream, for read and write.
    #[arg(long)]
    stream: Option<String>,
    /// State to resume a read from (JSON text as returned by a previous page).
    #[arg(long)]
    state: Option<String>,
    /// Read every page, not just the first.
    #[arg(long)]
    all_pages: bool,
    /// Stop after this many pages with --all-pages.
    #[arg(long, default_value_t = 1000)]
    max_pages: u32,
    /// Records JSON file for write and map: an array of
    /// {"id", "payload", "stream"?, "operation"?, "cursor"?}.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Allow HTTP to this origin (public addresses only). Repeatable.
    #[arg(long = "grant-http", value_name = "ORIGIN")]
    grant_http: Vec<String>,
    /// Allow HTTP to this exact origin, including loopback/private
    /// addresses (on-premises systems, local test servers). Repeatable.
    #[arg(long = "grant-private-http", value_name = "ORIGIN")]
    grant_private_http: Vec<String>,
    /// Key-value bytes granted.
    #[arg(long, default_value_t = 0)]
    grant_kv: u64,
    /// A secret as NAME=env:VAR or NAME=file:PATH (never the value itself on
    /// the command line). Repeatable.
    #[arg(long = "secret", value_name = "NAME=SOURCE")]
    secrets: Vec<String>,
    /// Limits as a JSON file (fields of the `Limits` struct); flags below
    /// override it.
    #[arg(long)]
    limits: Option<PathBuf>,
    /// Memory limit in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Time limit per call in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Plugin id for messages and storage (default: local/<crate name>).
    #[arg(long)]
    id: Option<String>,
}

/// Run the CLI; errors are printed with their causes and give exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXO_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn data_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return Ok(d);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("nexo"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/nexo")),
        None => bail!("no data directory: set NEXO_DATA_DIR or pass --data-dir"),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let dir = data_dir(cli.data_dir)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeConfig::default()
    })?;
    match cli.command {
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            inspect(&runtime, &file, json).await
        }
        Command::Plugin(PluginCommand::Call(args)) => call(&runtime, &dir, *args).await,
    }
}

fn plugin_ref(plugin: &LoadedPlugin, file: &Path, id: Option<String>) -> PluginRef {
    let name = plugin
        .info()
        .embedded("plugin")
        .map(str::to_string)
        .or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().replace('_', "-"))
        })
        .unwrap_or_else(|| "plugin".into());
    PluginRef {
        id: id.unwrap_or_else(|| format!("local/{name}")),
        version: plugin
            .info()
            .embedded("version")
            .unwrap_or("0.0.0")
            .to_string(),
    }
}

async fn inspect(runtime: &Runtime, file: &Path, as_json: bool) -> Result<()> {
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
        println!("{}", serde_json::to_string_pretty(&doc)?);
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
        println!("  streams      {}", spec.streams.join(", "));
        let caps = &spec.capabilities;
        println!("  wants to talk to:");
        if caps.http_origins.is_empty() {
            println!("    nothing (no network)");
        }
        for o in &caps.http_origins {
            println!("    {o}");
        }
        println!("  uses secrets:");
        if caps.secrets.is_empty() {
            println!("    none");
        }
        for s in &caps.secrets {
            println!(
                "    {} - {} (sent only to {})",
                s.name,
                s.description,
                s.origins.join(", ")
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
            indent(&serde_json::to_string_pretty(&schema)?, 4)
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

fn spec_json(spec: &Spec) -> Value {
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

fn record_json(r: &Record) -> Value {
    json!({
        "stream": r.stream,
        "id": r.id,
        "operation": match r.operation { Operation::Upsert => "upsert", Operation::Delete => "delete" },
        "payload": serde_json::from_str::<Value>(&r.payload).unwrap_or(Value::Null),
        "cursor": r.cursor,
    })
}

fn read_text(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn load_config(path: Option<&Path>) -> Result<String> {
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

fn load_records(path: &Path, default_stream: &str) -> Result<Vec<Record>> {
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

fn parse_secret(spec: &str) -> Result<(String, SecretValue)> {
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

fn sandbox_for(args: &CallArgs, who: PluginRef, data_dir: &Path) -> Result<Sandbox> {
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
    let mut http = Vec::new();
    for o in &args.grant_http {
        http.push(HttpGrant::public(o).with_context(|| format!("--grant-http {o}"))?);
    }
    for o in &args.grant_private_http {
        http.push(HttpGrant::private(o).with_context(|| format!("--grant-private-http {o}"))?);
    }
    let secrets = args
        .secrets
        .iter()
        .map(|s| parse_secret(s))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let kv = if args.grant_kv > 0 {
        let store =
            KvStore::open(&data_dir.join("nexo.db")).context("opening the key-value store")?;
        Some((store, format!("{}/cli", who.id)))
    } else {
        None
    };
    Ok(Sandbox {
        plugin: who,
        limits,
        grants: Grants {
            http,
            kv_bytes: args.grant_kv,
        },
        secrets,
        kv,
    })
}

async fn call(runtime: &Runtime, data_dir: &Path, args: CallArgs) -> Result<()> {
    let plugin = runtime.load_file(&args.file)?;
    let who = plugin_ref(&plugin, &args.file, args.id.clone());
    let sandbox = sandbox_for(&args, who, data_dir)?;
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
        println!(
            "{}",
            serde_json::to_string_pretty(&out.iter().map(record_json).collect::<Vec<_>>())?
        );
        return Ok(());
    }
    let connector = ConnectorPlugin::open(&plugin, sandbox).await?;
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
            let mut state = args.state.clone();
            let mut pages = Vec::new();
            let mut total = 0usize;
            loop {
                let page = connector
                    .read(&config, &stream, state.as_deref())
                    .await
                    .into_result()?;
                total += page.records.len();
                pages.push(json!({
                    "records": page.records.iter().map(record_json).collect::<Vec<_>>(),
                    "state": page.state,
                    "has_more": page.has_more,
                }));
                state = page.state.clone();
                if !(args.all_pages && page.has_more) || pages.len() as u32 >= args.max_pages {
                    break;
                }
            }
            json!({"stream": stream, "pages": pages, "records": total, "state": state})
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
                            WriteOutcome::Failed(e) => (
                                "failed",
                                json!(nexo::GuestError::from(e.clone()).to_string()),
                            ),
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
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

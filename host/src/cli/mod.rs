//! `nexo` subcommands. For now the vendor's loop: inspect a component and
//! call one operation of it under the sandbox, with the grants given on the
//! command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use nexo::safe_text::SafeText;
use nexo::sandbox::redact;
use nexo::{LoadedPlugin, PluginRef, Runtime, RuntimeConfig};

mod bundle;
mod call;
mod connection;
mod demo;
mod inspect;
mod install;
mod map;
mod sandbox;
mod serve;
mod sync;

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
    /// Work with plugin components and bundles.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage the vendor keys trusted to sign plugins.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Manage connections: an installed plugin + config + secrets + grants.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Define, run, pause and inspect pipelines.
    #[command(subcommand)]
    Pipeline(sync::PipelineCommand),
    /// List runs, newest first.
    Runs {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only this status (running, succeeded, failed, interrupted).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Set how many days of run history to keep (default 30).
        #[arg(long, value_name = "DAYS")]
        set_retention: Option<u32>,
    },
    /// Show one run.
    #[command(subcommand)]
    Run(sync::RunCommand),
    /// The dead-letter queue: records that could not be delivered.
    #[command(subcommand)]
    Dlq(sync::DlqCommand),
    /// Conflicts held for a person.
    #[command(subcommand)]
    Conflict(sync::ConflictCommand),
    /// Run the host as a daemon: schedules, webhooks, the admin API and
    /// the web console. SIGTERM lets runs commit their page and exits.
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:7373")]
        addr: std::net::SocketAddr,
        /// Runs in progress at once, over all pipelines (the rest wait).
        #[arg(long, default_value_t = 4)]
        max_concurrent_runs: usize,
        /// Serve /metrics without the admin token (by default a scraper
        /// sends `Authorization: Bearer <token>`). The metrics name
        /// pipelines, plugins and versions, never secrets.
        #[arg(long)]
        metrics_public: bool,
    },
    /// The product in one command: sandbox CRM and accounting services, the
    /// signed plugins installed, connections and pipelines (won deals →
    /// Xero customers and invoices, payments → the deal), their first runs,
    /// records linked across systems, then the console.
    Demo(demo::DemoArgs),
    /// Start the HubSpot-like and Xero-like sandbox services on 127.0.0.1
    /// (the test environment sandbox connections point at).
    Sandbox(sandbox::SandboxArgs),
    /// Tokens for the admin API and the console.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// Try mappers on sample records before a pipeline runs them.
    #[command(subcommand)]
    Map(map::MapCommand),
    /// The same record in every system: look up a record by connection,
    /// stream and id, and list every record linked to it.
    Identity {
        /// Connection.
        connection: String,
        /// Stream.
        stream: String,
        /// The record's id in that system.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Trust a vendor's public key (a file holding its `nexo-ed25519:` line).
    Add {
        /// The public key file.
        file: PathBuf,
    },
    /// List trusted keys.
    List,
    /// Stop trusting a key.
    Remove {
        /// The key id (as shown by `nexo trust list`).
        key_id: String,
    },
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
    /// Create a vendor signing key pair: KEY (secret, mode 0600) and KEY.pub.
    Keygen {
        /// Who the key belongs to, e.g. "Acme Inc".
        #[arg(long)]
        name: String,
        /// Where to write the secret key; the public key goes next to it
        /// with `.pub` appended.
        #[arg(long)]
        out: PathBuf,
    },
    /// Pack a component and its manifest (nexo-plugin.toml) into a signed
    /// bundle; refuses a manifest that does not match the component.
    Pack {
        /// The vendor's manifest.
        #[arg(long)]
        manifest: PathBuf,
        /// The component (`.wasm`).
        #[arg(long)]
        component: PathBuf,
        /// The secret key to sign with.
        #[arg(long, required_unless_present = "unsigned")]
        key: Option<PathBuf>,
        /// Produce an unsigned bundle (local development only).
        #[arg(long, conflicts_with = "key")]
        unsigned: bool,
        /// The bundle to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a bundle: verify it, show what it asks for, install only
    /// with an explicit grant (an answer at the prompt, or --grant).
    Install {
        /// The bundle.
        bundle: PathBuf,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Upgrade an installed plugin to a newer bundle; new capabilities need
    /// a new grant. Runs in flight finish on the old version.
    Upgrade {
        /// The plugin id, e.g. acme/crm.
        id: String,
        /// The bundle of the new version.
        bundle: PathBuf,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Make an older installed version active again, with its own grants.
    Rollback {
        /// The plugin id.
        id: String,
        /// The version (default: the newest below the active one).
        version: Option<semver::Version>,
    },
    /// List installed plugins, their versions, the active one and its grants.
    List,
    /// Remove a plugin (every version). Refused while connections use it.
    Remove {
        /// The plugin id.
        id: String,
        /// Also remove the connections that use it.
        #[arg(long)]
        force: bool,
    },
    /// Check a bundle's integrity and signature against the trusted keys.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// Accept an unsigned bundle (local development only).
        #[arg(long)]
        allow_unsigned: bool,
    },
}

/// How capabilities are granted without a prompt.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// Grant a capability: `all` (everything listed), `http:ORIGIN`,
    /// `secret:NAME`, `kv:BYTES`. Repeatable. Without it, nexo asks.
    #[arg(long = "grant", value_name = "CAPABILITY")]
    pub(crate) grant: Vec<String>,
    /// Accept an unsigned bundle (local development only).
    #[arg(long)]
    pub(crate) allow_unsigned: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Op {
    Spec,
    Check,
    Discover,
    Read,
    Write,
    Map,
}

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The component (`.wasm`).
    pub(crate) file: PathBuf,
    /// The operation.
    #[arg(value_enum)]
    pub(crate) op: Op,
    /// Config JSON file (`-` for stdin). Default: `{}`.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Stream, for read and write.
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// State to resume a read from (JSON text as returned by a previous page).
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Read every page, not just the first.
    #[arg(long)]
    pub(crate) all_pages: bool,
    /// Stop after this many pages with --all-pages.
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_pages: u32,
    /// Records JSON file for write and map: an array of
    /// {"id", "payload", "stream"?, "operation"?, "cursor"?}.
    #[arg(long)]
    pub(crate) input: Option<PathBuf>,
    /// Allow HTTP to this origin (public addresses only). Repeatable.
    #[arg(long = "grant-http", value_name = "ORIGIN")]
    pub(crate) grant_http: Vec<String>,
    /// Allow HTTP to this exact origin, including loopback/private
    /// addresses (on-premises systems, local test servers). Repeatable.
    #[arg(long = "grant-private-http", value_name = "ORIGIN")]
    pub(crate) grant_private_http: Vec<String>,
    /// Key-value bytes granted.
    #[arg(long, default_value_t = 0)]
    pub(crate) grant_kv: u64,
    /// A secret as NAME=env:VAR or NAME=file:PATH (never the value itself on
    /// the command line). Repeatable.
    #[arg(long = "secret", value_name = "NAME=SOURCE")]
    pub(crate) secrets: Vec<String>,
    /// Limits as a JSON file (fields of the `Limits` struct); flags below
    /// override it.
    #[arg(long)]
    pub(crate) limits: Option<PathBuf>,
    /// Memory limit in MiB.
    #[arg(long)]
    pub(crate) memory_mib: Option<u64>,
    /// Time limit per call in milliseconds.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Plugin id for messages and storage (default: local/<crate name>).
    /// Key-value data is kept per id *and* component SHA-256: another
    /// component (or a rebuild) with the same id starts empty.
    #[arg(long)]
    pub(crate) id: Option<String>,
}

/// Run the CLI; errors are printed with their causes and give exit code 1.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    // The demo tells its own story on stdout; its logs are warnings only
    // unless NEXO_LOG asks for more.
    let level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    init_tracing(cli.log_format, level);
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
            // Errors carry plugins' and remote systems' words: secret values
            // replaced (the last guard), control characters escaped.
            eprintln!(
                "error: {}",
                SafeText::block(&redact::scrub(&format!("{e:#}")))
            );
            ExitCode::FAILURE
        }
    }
}

/// `nexo runs | head -1`: once the reader is gone, stop quietly with the
/// status a shell reports for SIGPIPE (141) instead of a panic message.
///
/// Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE` and
/// `println!` panics with "failed printing to stdout: Broken pipe". Turning
/// SIGPIPE back on would need `unsafe` and would also let a peer that
/// closes a socket kill `nexo serve`; this hook only catches that one
/// panic, and passes every other panic to the default hook.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        let printing = message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr");
        if printing && (message.contains("Broken pipe") || message.contains("os error 32")) {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXO_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},cranelift=warn,wasmtime=warn"))
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLinePerEvent(redact::ScrubbingStderr))
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The text log's writer: whatever a field holds (a remote system's error
/// message, a plugin's words), an event stays one line, so no line of the
/// log can be forged. `tracing-subscriber` writes each event with one
/// `write_all` ending in a newline; newlines and carriage returns before
/// that end are written escaped. (Escape sequences are already escaped by
/// `tracing-subscriber` itself; JSON lines escape both.)
struct OneLinePerEvent<W>(W);

impl<W: Write> Write for OneLinePerEvent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
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
    // Private to this user (0700, database and key 0600): it holds
    // connections, sealed secrets and the key that opens them.
    nexo::store::private::secure_data_dir(&dir).with_context(|| {
        format!(
            "cannot create the data directory {} or make it private to this user (mode 0700); check its owner, or pick another with --data-dir",
            dir.display()
        )
    })?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeConfig::default()
    })?;
    match cli.command {
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            inspect::inspect(&runtime, &file, json).await
        }
        Command::Plugin(PluginCommand::Call(args)) => call::call(&runtime, &dir, *args).await,
        Command::Plugin(PluginCommand::Keygen { name, out }) => bundle::keygen(&name, &out),
        Command::Plugin(PluginCommand::Pack {
            manifest,
            component,
            key,
            unsigned: _,
            out,
        }) => bundle::pack(&runtime, &manifest, &component, key.as_deref(), &out).await,
        Command::Plugin(PluginCommand::Verify {
            bundle,
            allow_unsigned,
        }) => bundle::verify(&open_db(&dir)?, &runtime, &bundle, allow_unsigned).await,
        Command::Plugin(PluginCommand::Install { bundle, grant }) => {
            install::install(&registry(&dir, &runtime)?, &bundle, None, &grant).await
        }
        Command::Plugin(PluginCommand::Upgrade { id, bundle, grant }) => {
            install::install(&registry(&dir, &runtime)?, &bundle, Some(&id), &grant).await
        }
        Command::Plugin(PluginCommand::Rollback { id, version }) => {
            install::rollback(&registry(&dir, &runtime)?, &id, version.as_ref())
        }
        Command::Plugin(PluginCommand::List) => install::list(&open_db(&dir)?),
        Command::Plugin(PluginCommand::Remove { id, force }) => {
            install::remove(&registry(&dir, &runtime)?, &id, force)
        }
        Command::Connection(cmd) => connection::run(&dir, &registry(&dir, &runtime)?, cmd).await,
        Command::Pipeline(sync::PipelineCommand::Webhook { name }) => serve::webhook(&dir, &name),
        Command::Pipeline(cmd) => {
            sync::pipeline(&sync::engine(&dir, &registry(&dir, &runtime)?)?, cmd).await
        }
        Command::Serve {
            addr,
            max_concurrent_runs,
            metrics_public,
        } => {
            if max_concurrent_runs == 0 {
                bail!("--max-concurrent-runs must be at least 1");
            }
            serve::serve(
                &dir,
                registry(&dir, &runtime)?,
                addr,
                max_concurrent_runs,
                metrics_public,
            )
            .await
        }
        Command::Token(cmd) => serve::token(&dir, cmd),
        Command::Sandbox(args) => sandbox::sandbox(args).await,
        Command::Demo(args) => demo::demo(&dir, registry(&dir, &runtime)?, args).await,
        Command::Map(cmd) => map::run(&dir, &runtime, cmd).await,
        Command::Runs {
            pipeline,
            status,
            limit,
            set_retention,
        } => {
            let db = open_db(&dir)?;
            sync::reap(&dir, &db)?;
            if let Some(days) = set_retention {
                nexo::sync::SettingStore::set_setting(
                    &db,
                    "run_retention_days",
                    &days.to_string(),
                )?;
                println!("run history is kept for {days} days");
            }
            sync::runs(&db, pipeline, status, limit)
        }
        Command::Run(cmd) => {
            let db = open_db(&dir)?;
            sync::reap(&dir, &db)?;
            sync::run_show(&db, cmd)
        }
        Command::Identity {
            connection,
            stream,
            id,
            json,
        } => sync::identity(&open_db(&dir)?, &connection, &stream, &id, json),
        Command::Dlq(cmd) => sync::dlq(&sync::engine(&dir, &registry(&dir, &runtime)?)?, cmd).await,
        Command::Conflict(cmd) => {
            sync::conflict(&sync::engine(&dir, &registry(&dir, &runtime)?)?, cmd).await
        }
        Command::Trust(TrustCommand::Add { file }) => bundle::trust_add(&open_db(&dir)?, &file),
        Command::Trust(TrustCommand::List) => bundle::trust_list(&open_db(&dir)?),
        Command::Trust(TrustCommand::Remove { key_id }) => {
            bundle::trust_remove(&open_db(&dir)?, &key_id)
        }
    }
}

fn open_db(dir: &Path) -> Result<nexo::store::Database> {
    let path = dir.join("nexo.db");
    nexo::store::Database::open(&path)
        .with_context(|| format!("opening the database {}", path.display()))
}

fn registry(dir: &Path, runtime: &Runtime) -> Result<nexo::registry::Registry> {
    Ok(nexo::registry::Registry::new(
        open_db(dir)?,
        runtime.clone(),
        dir.join("bundles"),
    ))
}

pub(crate) fn plugin_ref(plugin: &LoadedPlugin, file: &Path, id: Option<String>) -> PluginRef {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_event_stays_on_one_line() {
        let mut out = OneLinePerEvent(Vec::new());
        let event = b"2026-12-05T01:00:00Z  WARN nexo: failed error=HTTP 401: no\n2026-12-05T00:00:00Z  INFO nexo: forged\r\n";
        assert_eq!(out.write(event).unwrap(), event.len());
        out.write_all(b"next event\n").unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "2026-12-05T01:00:00Z  WARN nexo: failed error=HTTP 401: no\\n2026-12-05T00:00:00Z  INFO nexo: forged\\r\nnext event\n"
        );
    }
}

//! `nexo` subcommands. For now the vendor's loop: inspect a component and
//! call one operation of it under the sandbox, with the grants given on the
//! command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::{LoadedPlugin, PluginRef, Runtime, RuntimeConfig};

mod alert;
mod args;
mod audit;
mod authorize;
mod backup;
mod bundle;
mod call;
mod connection;
mod db;
mod dev;
mod docs;
mod export;
mod inspect;
mod install;
mod map;
mod new;
mod output;
mod pipeline;
mod promote;
mod queues;
mod review;
mod runs;
pub mod serve;
mod survey;
pub mod sync;
mod test;

pub use args::LogFormat;
pub(crate) use args::{CallArgs, GrantArgs, Op, SandboxArgs};
/// Run the CLI; errors are printed with their causes and give exit code 1.
use args::{Cli, Command, PluginCommand, StreamCommand, TrustCommand};
use output::quiet_on_broken_pipe;
pub use output::{init_tracing, safe_error};

pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_tracing(cli.log_format, "info");
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
            eprintln!("error: {}", safe_error(&e));
            ExitCode::FAILURE
        }
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

/// The data directory (`explicit`, else `$XDG_DATA_HOME/nexo` or
/// `~/.local/share/nexo`), created private to this user, and a runtime
/// caching compiled plugins in it: what every command that touches an
/// installation starts with (the demo binary too).
pub fn open_host(explicit: Option<PathBuf>) -> Result<(PathBuf, Runtime)> {
    let dir = data_dir(explicit)?;
    // Private to this user (0700, database and key 0600): it holds
    // connections, sealed secrets and the key that opens them.
    crate::store::private::secure_data_dir(&dir).with_context(|| {
        format!(
            "cannot create the data directory {} or make it private to this user (mode 0700); check its owner, or pick another with --data-dir",
            dir.display()
        )
    })?;
    // `NEXO_CACHE_DIR` lets several installations (or test runs) share
    // compiled plugins: an interpreter-sized component takes seconds to
    // compile, and the artefact depends only on its bytes and the engine.
    let cache = std::env::var_os("NEXO_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| dir.join("cache"), PathBuf::from);
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache),
        ..RuntimeConfig::default()
    })?;
    Ok((dir, runtime))
}

/// `NEXO_PLUGIN_MEMORY_CAP` (`512MiB`, `1 GiB`, `268435456`): the most
/// memory a plugin's manifest may ask for, set once for the process.
fn set_memory_cap_from_env() -> Result<()> {
    let Some(text) = std::env::var_os("NEXO_PLUGIN_MEMORY_CAP").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let text = text.to_string_lossy();
    let bytes = parse_bytes(&text).with_context(|| {
        format!("NEXO_PLUGIN_MEMORY_CAP={text}: expected a size such as 512MiB, 1GiB or a number of bytes")
    })?;
    crate::limits::set_memory_cap(bytes);
    Ok(())
}

/// `512MiB`, `512 MiB`, `1GiB`, `64KiB`, `1048576`.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

async fn run(cli: Cli) -> Result<()> {
    // Needs no data directory: it writes a project and nothing else.
    if let Command::New(args) = &cli.command {
        return new::new(args);
    }
    set_memory_cap_from_env()?;
    let (dir, runtime) = open_host(cli.data_dir)?;
    let location = match &cli.database {
        Some(text) => crate::store::Location::parse(text)
            .map_err(|e| anyhow::anyhow!("--database / NEXO_DATABASE_URL: {e}"))?,
        None => crate::store::Location::Sqlite(dir.join("nexo.db")),
    };
    if DATABASE.set(location.clone()).is_err() {
        bail!("internal: the database was chosen twice");
    }
    match cli.command {
        Command::Db(cmd) => db::run(&location, cmd),
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            inspect::inspect(&runtime, &file, json).await
        }
        Command::Plugin(PluginCommand::Call(args)) => call::call(&runtime, &dir, *args).await,
        Command::Plugin(PluginCommand::Test(args)) => test::test(&runtime, *args).await,
        Command::Plugin(PluginCommand::Dev(args)) => dev::dev(&runtime, &dir, *args).await,
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
        Command::Stream(StreamCommand::Export(args)) => {
            let sealer = crate::store::sealed::Sealer::from_env_or_file(&dir.join("secret.key"))?;
            let connections =
                crate::connections::Connections::new(registry(&dir, &runtime)?, sealer);
            export::export(&connections, args).await
        }
        Command::Survey(args) => {
            survey::run(&sync::engine(&dir, &registry(&dir, &runtime)?)?, args).await
        }
        Command::Pipeline(sync::PipelineCommand::Webhook { name, hubspot }) => {
            serve::webhook(&dir, &name, hubspot)
        }
        Command::Pipeline(cmd) => {
            sync::pipeline(&sync::engine(&dir, &registry(&dir, &runtime)?)?, cmd).await
        }
        Command::Serve {
            addr,
            max_concurrent_runs,
            metrics_public,
            lease_secs,
        } => {
            if lease_secs < 3 {
                bail!("--lease-secs must be at least 3 (a lease is renewed every third of it)");
            }
            if max_concurrent_runs == 0 {
                bail!("--max-concurrent-runs must be at least 1");
            }
            serve::serve(
                &dir,
                registry(&dir, &runtime)?,
                addr,
                max_concurrent_runs,
                metrics_public,
                std::time::Duration::from_secs(lease_secs),
            )
            .await
        }
        Command::Token(cmd) => serve::token(&dir, cmd),
        Command::Audit(args) => audit::audit(&dir, args),
        Command::Backup(args) => backup::backup(&dir, args),
        Command::Restore(args) => backup::restore(&dir, args),
        Command::Secrets(backup::SecretsCommand::RotateKey) => backup::rotate_key(&dir),
        Command::Alert(cmd) => alert::run(&dir, cmd).await,
        Command::Map(cmd) => map::run(&dir, &runtime, cmd).await,
        Command::Docs(args) => docs::docs(&dir, &runtime, args).await,
        Command::Runs {
            pipeline,
            status,
            limit,
            set_retention,
        } => {
            let db = open_db(&dir)?;
            sync::reap(&dir, &db)?;
            if let Some(days) = set_retention {
                crate::sync::SettingStore::set_setting(
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
        Command::Review(cmd) => {
            review::review(&sync::engine(&dir, &registry(&dir, &runtime)?)?, cmd)
        }
        Command::Conflict(cmd) => {
            sync::conflict(&sync::engine(&dir, &registry(&dir, &runtime)?)?, cmd).await
        }
        // Handled above, before a data directory is opened.
        Command::New(_) => Ok(()),
        Command::Trust(TrustCommand::Add { file }) => bundle::trust_add(&open_db(&dir)?, &file),
        Command::Trust(TrustCommand::List) => bundle::trust_list(&open_db(&dir)?),
        Command::Trust(TrustCommand::Remove { key_id }) => {
            bundle::trust_remove(&open_db(&dir)?, &key_id)
        }
    }
}

/// The database this process was told to use (`--database`,
/// `NEXO_DATABASE_URL`); unset, each data directory's `nexo.db`.
static DATABASE: std::sync::OnceLock<crate::store::Location> = std::sync::OnceLock::new();

/// The database `--database` (or `NEXO_DATABASE_URL`) named, if any.
pub(crate) fn database_location() -> Option<&'static crate::store::Location> {
    DATABASE.get()
}

/// The installation's database: the one `--database` named, else the
/// SQLite file in `dir`. A PostgreSQL pool is opened once per process and
/// shared by every caller.
pub fn open_db(dir: &Path) -> Result<crate::store::Database> {
    static SHARED: std::sync::OnceLock<crate::store::Database> = std::sync::OnceLock::new();
    match DATABASE.get() {
        Some(location @ crate::store::Location::Postgres(url)) => {
            if let Some(db) = SHARED.get() {
                return Ok(db.clone());
            }
            let db = crate::store::Database::connect(url)
                .with_context(|| format!("opening the database {location}"))?;
            Ok(SHARED.get_or_init(|| db).clone())
        }
        Some(crate::store::Location::Sqlite(path)) => crate::store::Database::open(path)
            .with_context(|| format!("opening the database {}", path.display())),
        None => {
            let path = dir.join("nexo.db");
            crate::store::Database::open(&path)
                .with_context(|| format!("opening the database {}", path.display()))
        }
    }
}

/// This host's id among the hosts sharing a database: `NEXO_HOST_ID`, else
/// the machine's name, the process id and a random suffix (a restarted
/// host is a new one; its old runs are taken over by lease).
pub fn host_id() -> String {
    if let Some(id) = std::env::var_os("NEXO_HOST_ID").filter(|v| !v.is_empty()) {
        return id.to_string_lossy().into_owned();
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "host".into());
    let mut suffix = [0u8; 3];
    let _ = getrandom::fill(&mut suffix);
    format!("{name}-{}-{}", std::process::id(), hex::encode(suffix))
}

pub fn registry(dir: &Path, runtime: &Runtime) -> Result<crate::registry::Registry> {
    Ok(crate::registry::Registry::new(
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

//! The `nexo` command line's arguments: every command and option as clap
//! reads them (their doc comments are the `--help` text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{connection, map, serve, sync};
use crate::sync::store::RunStatus;

/// Nexo: connect CRM, ERP and accounting systems through sandboxed plugins.
#[derive(Debug, Parser)]
#[command(name = "nexo", version, about)]
pub(super) struct Cli {
    /// Data directory (compile cache, database). Default: $NEXO_DATA_DIR,
    /// else $XDG_DATA_HOME/nexo, else ~/.local/share/nexo.
    #[arg(long, global = true, env = "NEXO_DATA_DIR")]
    pub(super) data_dir: Option<PathBuf>,
    /// The database: postgres://USER:PASSWORD@HOST:PORT/DATABASE for
    /// several hosts sharing one PostgreSQL (migrate it first with `nexo
    /// db migrate`), or sqlite:PATH. Default: nexo.db in the data
    /// directory. The data directory still holds this host's compile
    /// cache and, unless NEXO_SECRET_KEY is set, the secret key — which
    /// every host sharing a database must have the same of.
    #[arg(long, global = true, env = "NEXO_DATABASE_URL", hide_env_values = true)]
    pub(super) database: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(super) log_format: LogFormat,
    #[command(subcommand)]
    pub(super) command: Command,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Start a plugin project: code with one stream, manifest, README,
    /// conformance kit suite and CI, ready to build, pack and install.
    New(super::new::NewArgs),
    /// Work with plugin components and bundles.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage the vendor keys trusted to sign plugins.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Manage connections: an installed plugin + config + secrets + grants.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Read a system once, read-only, and report what it holds: records,
    /// fields' fill rates and formats, likely duplicates inside it.
    Survey(super::survey::SurveyArgs),
    /// Take a copy of a stream's records.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Define, run, pause and inspect pipelines.
    #[command(subcommand)]
    Pipeline(sync::PipelineCommand),
    /// List runs, newest first.
    Runs {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only this status (running, succeeded, failed, interrupted,
        /// cancelled).
        #[arg(long, value_parser = RunStatus::from_filter)]
        status: Option<RunStatus>,
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
    /// Matches waiting for a person before going live: a source record
    /// beside the destination records it may be (`nexo pipeline match`).
    #[command(subcommand)]
    Review(super::review::ReviewCommand),
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
        /// With a shared PostgreSQL: how long this host's hold on a
        /// pipeline lasts unrenewed, in seconds. A host that dies has its
        /// runs taken over this long after; renewed every third of it.
        #[arg(long, env = "NEXO_LEASE_SECS", default_value_t = 30)]
        lease_secs: u64,
    },
    /// The database: migrate a shared PostgreSQL, move an installation to it.
    #[command(subcommand)]
    Db(super::db::DbCommand),
    /// Tokens for the admin API and the console, each with a role.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// The audit trail: who changed what, when, before and after.
    Audit(super::audit::AuditArgs),
    /// Back up the database (consistently, while `nexo serve` runs) and the
    /// plugin bundles into a new directory.
    Backup(super::backup::BackupArgs),
    /// Bring an installation back from a backup, after checking every file
    /// against its digest and that the sealing key opens its secrets.
    Restore(super::backup::RestoreArgs),
    /// The key that seals stored secrets.
    #[command(subcommand)]
    Secrets(super::backup::SecretsCommand),
    /// Alerts: channels (signed webhooks, e-mail), rules and incidents.
    #[command(subcommand)]
    Alert(super::alert::AlertCommand),
    /// Try mappers on sample records before a pipeline runs them.
    #[command(subcommand)]
    Map(map::MapCommand),
    /// Write the living map of what is connected — systems, connections,
    /// pipelines with their rules, and the health of each — from the live
    /// configuration, as Markdown (nexo-map.md) and a self-contained HTML
    /// page with a diagram (nexo-map.html). Secret values never appear.
    Docs(super::docs::DocsArgs),
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
pub(super) enum TrustCommand {
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
pub(super) enum PluginCommand {
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
    /// Run the conformance kit on a component: spec, check, reads resumed
    /// from every state, idempotent writes, injected faults, the sandbox;
    /// each check named, as text, JSON or JUnit XML. Exits non-zero when a
    /// check fails.
    Test(Box<TestArgs>),
    /// The vendor's inner loop: watch the component (and rebuild it with
    /// --build when sources change), re-run one operation or the kit each
    /// time, show the records, the plugin's log and any error, and keep
    /// watching until Ctrl-C (--once: one round, its status).
    Dev(Box<super::dev::DevArgs>),
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
    /// Grants, secrets and limits.
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
}

/// What the sandbox of `plugin call`, `plugin test` and `plugin dev`
/// allows: the admin's grants, secrets and limits, as flags.
#[derive(Debug, Args, Clone)]
pub(crate) struct SandboxArgs {
    /// Allow HTTP to this origin (public addresses only). Repeatable.
    #[arg(long = "grant-http", value_name = "ORIGIN")]
    pub(crate) grant_http: Vec<String>,
    /// Allow HTTP to this exact origin, including loopback/private
    /// addresses (on-premises systems, local test servers). Repeatable.
    #[arg(long = "grant-private-http", value_name = "ORIGIN")]
    pub(crate) grant_private_http: Vec<String>,
    /// Send the plugin's requests to the origin FROM (one it declares,
    /// e.g. `https://api.hubapi.com`) to TO instead (e.g. a sandbox on
    /// `http://127.0.0.1:PORT`), as a sandbox connection's override does;
    /// FROM needs no --grant-http. Repeatable.
    #[arg(long = "origin-override", value_name = "FROM=TO", value_parser = super::connection::parse_override)]
    pub(crate) origin_overrides: Vec<(String, String)>,
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

/// Output formats of `plugin test`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum ReportFormat {
    /// One line per check.
    Text,
    /// One JSON document.
    Json,
    /// JUnit XML, for CI servers.
    Junit,
}

/// `nexo plugin test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The component (`.wasm`), or a bundle (`nexo plugin pack`'s output:
    /// its manifest's id, version and memory apply).
    pub(crate) file: PathBuf,
    /// Config JSON file (`-` for stdin). Default: `{}`.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// The suite file: sample records for the write checks, the mapper's
    /// input (default: `nexo-test.toml` next to the component or in the
    /// current directory, if there is one).
    #[arg(long)]
    pub(crate) suite: Option<PathBuf>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,
    /// Also write the report to this file (in --format).
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Save every HTTP exchange (secret values redacted) to this folder,
    /// for --replay.
    #[arg(long, value_name = "DIR", conflicts_with = "replay")]
    pub(crate) record: Option<PathBuf>,
    /// Answer from a folder written by --record, with no system running
    /// (a vendor's CI needs no account).
    #[arg(long, value_name = "DIR")]
    pub(crate) replay: Option<PathBuf>,
    /// Grants, secrets and limits.
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
}

/// `nexo stream …`.
#[derive(Debug, Subcommand)]
pub(super) enum StreamCommand {
    /// Write every record of a connection's stream, as it is read, to a
    /// file or stdout (JSON lines or CSV), in constant memory; resumable
    /// with --state-file; a page limit reached is an error, never a silent
    /// end.
    Export(super::export::ExportArgs),
}

//! `nexo connection add|update|list|show|test|remove`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::connections::{
    ConnectionUpdate, Connections, NewConnection, Origins, RequestsPerMinute, request_budget,
};
use crate::registry::Registry;
use crate::sandbox::budget::burst_for;
use crate::store::audit::{Action, Change};
use crate::store::connections::{ConnectionGrants, Environment};
use crate::store::sealed::Sealer;

use super::call::{parse_secret, read_text};

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionCommand {
    /// Add a connection: config validated against the plugin's schema,
    /// secrets sealed at rest.
    Add {
        /// Unique name, e.g. `crm-sandbox`.
        name: String,
        /// The installed plugin.
        #[arg(long)]
        plugin: String,
        /// Pin this plugin version (default: follow the active version).
        #[arg(long)]
        version: Option<semver::Version>,
        /// sandbox (default) or production.
        #[arg(long, default_value = "sandbox")]
        env: Environment,
        /// Config JSON file.
        #[arg(long)]
        config: PathBuf,
        /// A secret as NAME=env:VAR or NAME=file:PATH. Repeatable.
        #[arg(long = "secret", value_name = "NAME=SOURCE")]
        secrets: Vec<String>,
        /// Origin of this system (public addresses). Repeatable.
        #[arg(long = "grant-http", value_name = "ORIGIN")]
        grant_http: Vec<String>,
        /// Exact origin of this system that may be internal. Repeatable.
        #[arg(long = "grant-private-http", value_name = "ORIGIN")]
        grant_private_http: Vec<String>,
        /// Most requests per minute to this system, shared by every run of
        /// the connection in one process; more wait their turn. Default:
        /// 600. `unlimited` lifts the limit.
        #[arg(long, value_name = "N|unlimited", value_parser = parse_requests_per_minute)]
        requests_per_minute: Option<u32>,
        /// Sandbox connections: send the plugin's requests to the origin
        /// FROM (one it declares, e.g. `https://api.xero.com`) to TO
        /// instead (e.g. `http://127.0.0.1:7402`, which may be internal).
        /// FROM needs no --grant-http. Repeatable.
        #[arg(long = "origin-override", value_name = "FROM=TO", value_parser = parse_override)]
        origin_overrides: Vec<(String, String)>,
    },
    /// Change a connection in place: only what is given changes, checked
    /// as `add` checks it; on any error nothing changes. A replaced secret
    /// is used from the next run or test on.
    Update {
        /// The connection.
        name: String,
        /// A new config JSON file (replaces the whole config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Set a secret as NAME=env:VAR or NAME=file:PATH, replacing its
        /// value. Repeatable.
        #[arg(long = "secret", value_name = "NAME=SOURCE")]
        secrets: Vec<String>,
        /// Delete a secret the plugin no longer uses (a secret it declares
        /// is required: replace it with --secret instead). Repeatable.
        #[arg(long = "remove-secret", value_name = "NAME")]
        remove_secrets: Vec<String>,
        /// Origin of this system (public addresses). Repeatable. Given with
        /// or without --grant-private-http, the connection's origins become
        /// exactly the ones given.
        #[arg(long = "grant-http", value_name = "ORIGIN")]
        grant_http: Vec<String>,
        /// Exact origin of this system that may be internal. Repeatable
        /// (replaces the origins, as --grant-http).
        #[arg(long = "grant-private-http", value_name = "ORIGIN")]
        grant_private_http: Vec<String>,
        /// Most requests per minute to this system; `unlimited` lifts the
        /// limit, `default` goes back to the default of 600.
        #[arg(long, value_name = "N|unlimited|default", value_parser = parse_new_requests_per_minute)]
        requests_per_minute: Option<RequestsPerMinute>,
        /// Set an origin override FROM=TO (sandbox connections), replacing
        /// one of the same FROM. Repeatable.
        #[arg(long = "origin-override", value_name = "FROM=TO", value_parser = parse_override)]
        origin_overrides: Vec<(String, String)>,
        /// Delete the origin override of FROM. Repeatable.
        #[arg(long = "remove-origin-override", value_name = "FROM")]
        remove_origin_overrides: Vec<String>,
    },
    /// List connections.
    List,
    /// Show a connection (secret names only, never values).
    Show {
        /// The connection.
        name: String,
    },
    /// Authorize the connection with OAuth 2.0 (plugins that declare it):
    /// prints the system's sign-in address and waits for its redirect on a
    /// loopback address, or runs the client-credentials flow. The tokens
    /// are sealed and refreshed by the host; pipelines paused because the
    /// connection needed re-authorization resume.
    Authorize(super::authorize::AuthorizeArgs),
    /// Run the plugin's check with the connection's config and secrets.
    Test {
        /// The connection.
        name: String,
    },
    /// Remove a connection and its secrets; refused while pipelines use
    /// it, naming them.
    Remove {
        /// The connection.
        name: String,
        /// Remove it even though pipelines use it, and pause them (with a
        /// reason naming the connection).
        #[arg(long)]
        force: bool,
    },
}

pub(crate) async fn run(dir: &Path, registry: &Registry, cmd: ConnectionCommand) -> Result<()> {
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key"))?;
    let connections = Connections::new(registry.clone(), sealer);
    match cmd {
        ConnectionCommand::Add {
            name,
            plugin,
            version,
            env,
            config,
            secrets,
            grant_http,
            grant_private_http,
            requests_per_minute,
            origin_overrides,
        } => {
            let text = read_text(&config)?;
            let config: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("config {} is not valid JSON", config.display()))?;
            let secrets = secrets
                .iter()
                .map(|s| parse_secret(s))
                .collect::<Result<BTreeMap<_, _>>>()?;
            let row = connections.add(NewConnection {
                name,
                plugin_id: plugin,
                pinned_version: version,
                environment: env,
                config,
                secrets,
                grants: ConnectionGrants {
                    http: grant_http,
                    private_http: grant_private_http,
                    requests_per_minute,
                    origin_overrides: origin_overrides.into_iter().collect(),
                },
            })?;
            super::audit::record(
                registry.db(),
                audit_change(Action::ConnectionAdd, &row.name, None, &connections),
            )?;
            println!(
                "added connection {} ({}, {})",
                row.name,
                row.plugin_id,
                row.environment.as_str()
            );
        }
        ConnectionCommand::Update {
            name,
            config,
            secrets,
            remove_secrets,
            grant_http,
            grant_private_http,
            requests_per_minute,
            origin_overrides,
            remove_origin_overrides,
        } => {
            let config = config
                .map(|path| {
                    let text = read_text(&path)?;
                    serde_json::from_str::<serde_json::Value>(&text)
                        .with_context(|| format!("config {} is not valid JSON", path.display()))
                })
                .transpose()?;
            let secrets = secrets
                .iter()
                .map(|s| parse_secret(s))
                .collect::<Result<BTreeMap<_, _>>>()?;
            let origins =
                (!grant_http.is_empty() || !grant_private_http.is_empty()).then_some(Origins {
                    http: grant_http,
                    private_http: grant_private_http,
                });
            let secrets_set: Vec<String> = secrets.keys().cloned().collect();
            let before = crate::serve::audit::connection(&connections, &name);
            let (row, changes) = connections.update(
                &name,
                ConnectionUpdate {
                    config,
                    secrets,
                    remove_secrets,
                    origins,
                    requests_per_minute,
                    origin_overrides: origin_overrides.into_iter().collect(),
                    remove_origin_overrides,
                },
            )?;
            let mut change =
                audit_change(Action::ConnectionUpdate, &row.name, before, &connections);
            if !secrets_set.is_empty()
                && let Some(serde_json::Value::Object(a)) = change.after.as_mut()
            {
                a.insert("secrets_replaced".into(), serde_json::json!(secrets_set));
            }
            super::audit::record(registry.db(), change)?;
            println!("updated connection {}: {}", row.name, changes.join(", "));
        }
        ConnectionCommand::List => {
            let names = registry.db().connection_names(None)?;
            if names.is_empty() {
                println!("no connections; add one with `nexo connection add`");
            }
            for name in names {
                let c = connections.get(&name)?;
                let version = c
                    .pinned_version
                    .map(|v| format!("pinned {v}"))
                    .unwrap_or_else(|| "active version".into());
                println!(
                    "{name}  {}  [{}]  {version}",
                    c.plugin_id,
                    c.environment.as_str()
                );
            }
        }
        ConnectionCommand::Show { name } => {
            let c = connections.get(&name)?;
            let config: serde_json::Value = serde_json::from_str(&c.config)?;
            println!("{}", c.name);
            println!("  plugin       {}", c.plugin_id);
            println!(
                "  version      {}",
                c.pinned_version
                    .map(|v| format!("pinned {v}"))
                    .unwrap_or_else(|| "follows the active version".into())
            );
            println!("  environment  {}", c.environment.as_str());
            let mut origins = c.grants.http.clone();
            origins.extend(
                c.grants
                    .private_http
                    .iter()
                    .map(|o| format!("{o} (internal allowed)")),
            );
            origins.extend(
                c.grants
                    .origin_overrides
                    .keys()
                    .map(|o| format!("{o} (through its override)")),
            );
            println!(
                "  may reach    {}",
                if origins.is_empty() {
                    "nothing".to_string()
                } else {
                    origins.join(", ")
                }
            );
            for (from, to) in &c.grants.origin_overrides {
                println!("  override     {from} is sent to {to} (sandbox origin override)");
            }
            println!(
                "  requests     {}",
                match request_budget(&c.grants) {
                    Some(n) => format!(
                        "at most {n} per minute{}, shared by all runs (bursts of up to {})",
                        if c.grants.requests_per_minute.is_none() {
                            " (the default)"
                        } else {
                            ""
                        },
                        burst_for(n)
                    ),
                    None => "no limit (chosen with --requests-per-minute unlimited)".into(),
                }
            );
            println!(
                "  secrets      {} (values are sealed and never shown)",
                connections.secret_names(&name)?.join(", ")
            );
            if let Some(oauth) = connections.oauth_status(&name)? {
                println!("  oauth        {}", oauth.describe());
            }
            println!(
                "  config       {}",
                crate::safe_text::safe_json(serde_json::to_string_pretty(&config)?)
                    .replace('\n', "\n               ")
            );
        }
        ConnectionCommand::Authorize(args) => {
            super::authorize::authorize(&connections, args).await?;
        }
        ConnectionCommand::Test { name } => {
            connections.test(&name).await?;
            println!("connection {name}: OK");
        }
        ConnectionCommand::Remove { name, force } => {
            let before = crate::serve::audit::connection(&connections, &name);
            let paused = connections.remove(&name, force)?;
            let mut change = Change::new(Action::ConnectionRemove, format!("connection/{name}"));
            change.before = before;
            if !paused.is_empty() {
                change = change.after(serde_json::json!({"paused_pipelines": paused}));
            }
            super::audit::record(registry.db(), change)?;
            println!("removed connection {name}");
            if !paused.is_empty() {
                println!(
                    "paused pipelines {} (they used {name}): point them at another connection, then `nexo pipeline resume`",
                    paused.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// The audit trail's entry for a change of connection `name`: how it was
/// (given) and how it is now.
fn audit_change(
    action: Action,
    name: &str,
    before: Option<serde_json::Value>,
    connections: &Connections,
) -> Change {
    crate::serve::audit::with(
        Change::new(action, format!("connection/{name}")),
        before,
        crate::serve::audit::connection(connections, name),
    )
}

/// `--requests-per-minute`: a whole number, at least 1, or `unlimited`
/// (stored as 0, see [`crate::connections::request_budget`]).
fn parse_requests_per_minute(s: &str) -> Result<u32, String> {
    match s.trim() {
        "unlimited" => Ok(0),
        n => match n.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "must be a whole number of at least 1, or `unlimited`, not `{s}` (leave --requests-per-minute out for the default of {})",
                crate::connections::DEFAULT_REQUESTS_PER_MINUTE
            )),
        },
    }
}

/// `--requests-per-minute` of `update`: as for `add`, or `default` to go
/// back to the default.
fn parse_new_requests_per_minute(s: &str) -> Result<RequestsPerMinute, String> {
    if s.trim() == "default" {
        return Ok(RequestsPerMinute::Default);
    }
    match std::num::NonZeroU32::new(parse_requests_per_minute(s)?) {
        Some(n) => Ok(RequestsPerMinute::Limit(n)),
        None => Ok(RequestsPerMinute::Unlimited),
    }
}

/// `--origin-override FROM=TO`.
pub(crate) fn parse_override(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
            Ok((from.trim().to_string(), to.trim().to_string()))
        }
        _ => Err(format!(
            "must be FROM=TO, e.g. https://api.xero.com=http://127.0.0.1:7402, not `{s}`"
        )),
    }
}

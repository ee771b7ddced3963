//! `nexo serve`, `nexo token`, `nexo pipeline webhook`: the daemon and the
//! credentials it checks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::registry::Registry;
use crate::serve::clock::SystemClock;
use crate::serve::scheduler::SchedulerConfig;
use crate::serve::{App, ServeConfig};
use crate::store::audit::{Action, Change};
use crate::store::sealed::Sealer;
use serde_json::json;

/// API tokens.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token for the admin API and console (printed once).
    Create {
        /// A name to know it by (who or what uses it); the audit trail
        /// names the token's changes by it.
        #[arg(long)]
        name: String,
        /// What it may do: viewer (reads everything but secrets), operator
        /// (also runs, pauses, resumes, replays dead letters, resolves
        /// conflicts) or admin (also plugins, trust, connections, grants,
        /// pipelines, tokens).
        #[arg(long)]
        role: crate::store::service::Role,
    },
    /// List tokens (names and dates, never the tokens).
    List,
    /// Revoke a token.
    Revoke {
        /// Its name.
        name: String,
    },
}

pub(crate) fn token(dir: &Path, cmd: TokenCommand) -> Result<()> {
    let db = super::open_db(dir)?;
    match cmd {
        TokenCommand::Create { name, role } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).context("drawing a random token")?;
            let token = format!("nexo_{}", hex::encode(bytes));
            if !db.insert_token(&name, &token, role)? {
                bail!("a token named `{name}` exists; revoke it first or pick another name");
            }
            super::audit::record(
                &db,
                Change::new(Action::TokenCreate, format!("token/{name}"))
                    .after(json!({"name": name, "role": role.as_str()})),
            )?;
            println!("{token}");
            eprintln!(
                "token `{name}` ({role}) created: it is shown only now; use it as `Authorization: Bearer <token>` or to log in to the console"
            );
        }
        TokenCommand::List => {
            let tokens = db.tokens()?;
            if tokens.is_empty() {
                println!("no tokens; create one with `nexo token create --name NAME --role ROLE`");
            }
            for t in tokens {
                println!(
                    "{}  {}  created {}  last used {}",
                    t.name,
                    t.role,
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::Revoke { name } => {
            let before = db.tokens()?.into_iter().find(|t| t.name == name);
            if !db.revoke_token(&name)? {
                bail!("no token named `{name}`; see `nexo token list`");
            }
            let mut change = Change::new(Action::TokenRevoke, format!("token/{name}"));
            if let Some(t) = before {
                change = change.before(json!({"name": t.name, "role": t.role.as_str()}));
            }
            super::audit::record(&db, change)?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

pub(crate) fn webhook(dir: &Path, name: &str, hubspot: bool) -> Result<()> {
    let db = super::open_db(dir)?;
    if crate::sync::PipelineStore::pipeline(&db, name)?.is_none() {
        bail!("no pipeline named `{name}`; see `nexo pipeline list`");
    }
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key"))?;
    if hubspot {
        let mut client_secret = String::new();
        std::io::stdin()
            .read_line(&mut client_secret)
            .context("reading the HubSpot app's client secret from stdin")?;
        crate::serve::webhook_hubspot::set_secret(&db, &sealer, name, &client_secret)?;
        super::audit::record(
            &db,
            Change::new(Action::PipelineWebhookSecret, format!("pipeline/{name}"))
                .after(json!({"signature": "hubspot-v3"})),
        )?;
        eprintln!(
            "webhook of `{name}` now expects HubSpot's v3 signature under that client secret (any previous secret stops working): set the HubSpot app's webhook target URL to https://<this host>/hooks/{name}; a delivery signed more than {} s ago, or seen before, is refused",
            crate::serve::webhook::TOLERANCE_SECS
        );
        return Ok(());
    }
    let secret = crate::serve::webhook::rotate_secret(&db, &sealer, name)?;
    super::audit::record(
        &db,
        Change::new(Action::PipelineWebhookSecret, format!("pipeline/{name}"))
            .after(json!({"signature": "nexo"})),
    )?;
    println!("{secret}");
    eprintln!(
        "webhook secret of `{name}` set (any previous one stops working): POST /hooks/{name} with header X-Nexo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" under this secret>; a delivery more than {} s from this host's clock, or seen before, is refused",
        crate::serve::webhook::TOLERANCE_SECS
    );
    Ok(())
}

pub(crate) async fn serve(
    dir: &Path,
    registry: Registry,
    addr: SocketAddr,
    max_concurrent_runs: usize,
    metrics_public: bool,
    lease: std::time::Duration,
) -> Result<()> {
    let listener = bind(addr).await?;
    serve_on(
        dir,
        registry,
        listener,
        max_concurrent_runs,
        metrics_public,
        lease,
    )
    .await
}

/// Listen on `addr`, with an error that says what to do when it is taken.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (in use? pick another with --addr)"))
}

/// Serve on a bound listener until SIGTERM or Ctrl-C.
pub async fn serve_on(
    dir: &Path,
    registry: Registry,
    listener: tokio::net::TcpListener,
    max_concurrent_runs: usize,
    metrics_public: bool,
    lease: std::time::Duration,
) -> Result<()> {
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key"))?;
    let host = super::host_id();
    let engine = super::sync::serve_engine(dir, &registry, &host, lease)?;
    // One set of connections for runs, health checks and the API, so every
    // use of a connection shares its request budget.
    let connections = engine.connections().clone();
    let scheduler = SchedulerConfig {
        max_concurrent_runs,
        ..SchedulerConfig::default()
    };
    let app = App::new(
        engine,
        registry,
        connections,
        sealer,
        Arc::new(SystemClock),
        scheduler.clone(),
    );
    let local = listener.local_addr()?;
    if app.registry.db().tokens()?.is_empty() {
        eprintln!(
            "no API token yet: create one with `nexo token create --name admin --role admin` to log in"
        );
    }
    // Printed on stdout so scripts and tests can read where it listens.
    println!(
        "nexo serving on http://{local}/ (console), API at /api, metrics at /metrics ({})",
        if metrics_public {
            "public"
        } else {
            "with an API token"
        }
    );
    crate::serve::serve(
        app,
        listener,
        ServeConfig {
            scheduler,
            metrics_public,
            ..ServeConfig::default()
        },
        crate::serve::terminated(),
    )
    .await
    .context("serving")
}

//! `nexo alert …`: alert channels, rules and incidents, and the test
//! button. A channel's secret (webhook signing secret, SMTP password) is
//! read from stdin, a file or an environment variable — never from the
//! command line — sealed at rest, and never printed.

use std::io::Read;
use std::path::Path;

use crate::store::audit::Actor;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::sandbox::secrets::SecretValue;
use crate::serve::alerts::{self, ChannelConfig, Condition, QuietHours, Rule, SmtpSecurity};
use crate::serve::api::alerts::{channel_view, incident_view};
use crate::store::sealed::Sealer;

/// `nexo alert`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Where alerts go: signed webhooks and e-mail.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// When alerts are sent.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Incidents, newest first, with their notices' deliveries.
    Incidents {
        /// Only the open ones.
        #[arg(long)]
        open: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a test message on a channel now.
    Test {
        /// The channel.
        channel: String,
    },
}

/// `nexo alert channel`.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel: `--webhook URL`, or `--smtp HOST` with `--from` and `--to`.
    Add(Box<ChannelArgs>),
    /// List channels (never their secret).
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a channel.
    Remove {
        /// The channel.
        name: String,
    },
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Security {
    /// STARTTLS (port 587 by default).
    Starttls,
    /// TLS from the start (port 465 by default).
    Tls,
    /// No TLS: only to a server on this machine (port 25 by default).
    Plain,
}

/// `nexo alert channel add`.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// Its name, as rules name it.
    name: String,
    /// POST signed JSON to this URL.
    #[arg(long, conflicts_with = "smtp")]
    webhook: Option<String>,
    /// Send e-mail through this SMTP server.
    #[arg(long, required_unless_present = "webhook")]
    smtp: Option<String>,
    /// SMTP port (default by --security).
    #[arg(long)]
    port: Option<u16>,
    /// SMTP security.
    #[arg(long, value_enum, default_value_t = Security::Starttls)]
    security: Security,
    /// SMTP login name (its password is the --secret).
    #[arg(long)]
    username: Option<String>,
    /// Sender address.
    #[arg(long)]
    from: Option<String>,
    /// Recipient address. Repeatable.
    #[arg(long)]
    to: Vec<String>,
    /// The webhook signing secret or the SMTP password: `-` (stdin),
    /// `env:VAR` or `file:PATH` — never the value itself.
    #[arg(long, value_name = "SOURCE")]
    secret: Option<String>,
}

/// `nexo alert rule`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule.
    Add(Box<RuleArgs>),
    /// List rules.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule and its incidents.
    Remove {
        /// The rule.
        name: String,
    },
}

/// What a rule watches for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum When {
    /// The pipeline's latest run failed (resolved when one succeeds).
    RunFailed,
    /// The host paused the pipeline (resolved on resume).
    PipelinePaused,
    /// An OAuth connection needs re-authorization.
    NeedsReauthorization,
    /// More than --threshold open dead letters.
    DeadLettersAbove,
    /// Today's errors of a class above --factor × their daily mean.
    ErrorSpike,
}

/// `nexo alert rule add`.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Its name.
    name: String,
    /// The condition.
    #[arg(long, value_enum)]
    when: When,
    /// Channels told. Repeatable.
    #[arg(long = "channel", required = true)]
    channels: Vec<String>,
    /// Only this pipeline.
    #[arg(long)]
    pipeline: Option<String>,
    /// Only this connection (needs-reauthorization).
    #[arg(long)]
    connection: Option<String>,
    /// dead-letters-above: N.
    #[arg(long)]
    threshold: Option<u64>,
    /// error-spike: how many times the daily mean (default 3).
    #[arg(long)]
    factor: Option<f64>,
    /// error-spike: fewer errors today than this is never a spike (default 5).
    #[arg(long)]
    minimum: Option<u64>,
    /// error-spike: days of history (default 7).
    #[arg(long)]
    days: Option<u32>,
    /// Hold notices in this daily window, e.g. 22:00-07:00.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    quiet_hours: Option<String>,
    /// The quiet hours' offset from UTC, e.g. +01:00 or -05:00.
    #[arg(
        long,
        value_name = "±HH:MM",
        default_value = "+00:00",
        allow_hyphen_values = true
    )]
    utc_offset: String,
}

/// Run `nexo alert …` on the installation in `dir`.
pub async fn run(dir: &Path, cmd: AlertCommand) -> Result<()> {
    let db = super::open_db(dir)?;
    let sealer = || Sealer::from_env_or_file(&dir.join("secret.key"));
    match cmd {
        AlertCommand::Channel(ChannelCommand::Add(args)) => {
            let secret = args.secret.as_deref().map(read_secret).transpose()?;
            let config = channel_config(&args)?;
            alerts::add_channel(
                &db,
                &Actor::cli_user(),
                &sealer()?,
                &args.name,
                &config,
                secret.as_ref(),
            )?;
            println!(
                "added alert channel {} ({})",
                args.name,
                config.kind().as_str()
            );
            Ok(())
        }
        AlertCommand::Channel(ChannelCommand::List { json }) => {
            let views: Vec<Value> = db.alert_channels()?.iter().map(channel_view).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
                return Ok(());
            }
            for v in views {
                println!(
                    "{:<20} {:<8} {}{}",
                    v["name"].as_str().unwrap_or(""),
                    v["kind"].as_str().unwrap_or(""),
                    v["config"],
                    if v["has_secret"] == true {
                        "  (secret sealed)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        AlertCommand::Channel(ChannelCommand::Remove { name }) => {
            alerts::remove_channel(&db, &Actor::cli_user(), &name)?;
            println!("removed alert channel {name}");
            Ok(())
        }
        AlertCommand::Rule(RuleCommand::Add(args)) => {
            let rule = rule_of(*args)?;
            alerts::add_rule(&db, &Actor::cli_user(), &rule)?;
            println!("added alert rule {}", rule.name);
            Ok(())
        }
        AlertCommand::Rule(RuleCommand::List { json }) => {
            let mut rules = Vec::new();
            for row in db.alert_rules()? {
                rules.push(Rule::from_row(&row)?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
                return Ok(());
            }
            for r in rules {
                let quiet = r
                    .quiet_hours
                    .map(|q| {
                        format!(
                            "  quiet {}-{} (UTC{:+}m)",
                            q.from.format("%H:%M"),
                            q.to.format("%H:%M"),
                            q.utc_offset_minutes
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "{:<20} {}  -> {}{quiet}",
                    r.name,
                    serde_json::to_string(&r.condition)?,
                    r.channels.join(", ")
                );
            }
            Ok(())
        }
        AlertCommand::Rule(RuleCommand::Remove { name }) => {
            alerts::remove_rule(&db, &Actor::cli_user(), &name)?;
            println!("removed alert rule {name}");
            Ok(())
        }
        AlertCommand::Incidents { open, limit, json } => {
            let incidents = db.alert_incidents(open, limit.clamp(1, 1000))?;
            if json {
                let views: Vec<Value> = incidents.iter().map(incident_view).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
                return Ok(());
            }
            for i in incidents {
                let state = match &i.resolved_at {
                    Some(at) => format!("resolved {at}"),
                    None => "OPEN".to_string(),
                };
                println!(
                    "#{:<5} {:<16} {:<28} since {}  {state}",
                    i.id, i.rule, i.subject, i.opened_at
                );
                println!("       {}", i.summary);
                for d in &i.deliveries {
                    let error = d
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    println!(
                        "       {} {} on {} ({} attempts){error}",
                        d.notice.as_str(),
                        d.status.as_str(),
                        d.channel,
                        d.attempts
                    );
                }
            }
            Ok(())
        }
        AlertCommand::Test { channel } => {
            if !db.alert_channels()?.iter().any(|c| c.name == channel) {
                bail!(
                    "no alert channel named `{channel}` (list them with `nexo alert channel list`)"
                );
            }
            alerts::evaluator::test_channel(&db, &sealer()?, &channel)
                .await
                .with_context(|| format!("testing alert channel {channel}"))?;
            println!("sent a test message on {channel}");
            Ok(())
        }
    }
}

/// A secret from `-` (stdin), `env:VAR` or `file:PATH`.
fn read_secret(source: &str) -> Result<SecretValue> {
    let value = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("--secret -: cannot read stdin")?;
        s
    } else if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var)
            .with_context(|| format!("--secret: environment variable {var} is not set"))?
    } else if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path).with_context(|| format!("--secret: cannot read {path}"))?
    } else {
        bail!(
            "--secret must be `-` (stdin), env:VAR or file:PATH, so the value never appears on the command line"
        );
    };
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        bail!("--secret {source}: the secret is empty");
    }
    Ok(SecretValue::new(value))
}

fn channel_config(args: &ChannelArgs) -> Result<ChannelConfig> {
    if let Some(url) = &args.webhook {
        return Ok(ChannelConfig::Webhook { url: url.clone() });
    }
    let Some(host) = args.smtp.clone() else {
        bail!("give --webhook URL or --smtp HOST");
    };
    let (security, port) = match args.security {
        Security::Starttls => (SmtpSecurity::Starttls, 587),
        Security::Tls => (SmtpSecurity::Tls, 465),
        Security::Plain => (SmtpSecurity::Plain, 25),
    };
    let Some(from) = args.from.clone() else {
        bail!("an e-mail channel needs --from ADDRESS");
    };
    Ok(ChannelConfig::Email {
        host,
        port: args.port.unwrap_or(port),
        security,
        username: args.username.clone(),
        from,
        to: args.to.clone(),
    })
}

fn rule_of(args: RuleArgs) -> Result<Rule> {
    let condition = match args.when {
        When::RunFailed => Condition::RunFailed {
            pipeline: args.pipeline,
        },
        When::PipelinePaused => Condition::PipelinePaused {
            pipeline: args.pipeline,
        },
        When::NeedsReauthorization => Condition::NeedsReauthorization {
            connection: args.connection,
        },
        When::DeadLettersAbove => Condition::DeadLettersAbove {
            threshold: args
                .threshold
                .context("dead-letters-above needs --threshold N")?,
            pipeline: args.pipeline,
        },
        When::ErrorSpike => Condition::ErrorSpike {
            factor: args.factor.unwrap_or(3.0),
            minimum: args.minimum.unwrap_or(5),
            days: args.days.unwrap_or(7),
            pipeline: args.pipeline,
        },
    };
    let quiet_hours = args
        .quiet_hours
        .as_deref()
        .map(|q| quiet_of(q, &args.utc_offset))
        .transpose()?;
    Ok(Rule {
        name: args.name,
        condition,
        channels: args.channels,
        quiet_hours,
    })
}

fn quiet_of(window: &str, offset: &str) -> Result<QuietHours> {
    let time = |t: &str| {
        chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M")
            .with_context(|| format!("--quiet-hours: `{t}` is not HH:MM"))
    };
    let Some((from, to)) = window.split_once('-') else {
        bail!("--quiet-hours is HH:MM-HH:MM, e.g. 22:00-07:00");
    };
    let (sign, rest) = match offset.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, offset.strip_prefix('+').unwrap_or(offset)),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let minutes = match (h.parse::<i32>(), m.parse::<i32>()) {
        (Ok(h), Ok(m)) if (0..24).contains(&h) && (0..60).contains(&m) => sign * (h * 60 + m),
        _ => bail!("--utc-offset is ±HH:MM, e.g. +01:00"),
    };
    Ok(QuietHours {
        from: time(from)?,
        to: time(to)?,
        utc_offset_minutes: minutes,
    })
}

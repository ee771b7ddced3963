//! Alerts (issue 22): channels that notify people (a signed webhook, e-mail
//! over SMTP) and rules that say when — a run failed, a pipeline paused by
//! the host, a connection needing re-authorization, dead letters above N,
//! an error class spiking against its own history. One incident per rule
//! and subject, notified once when it opens and once when it is resolved,
//! held during a rule's quiet hours and sent when they end.
//!
//! This module holds what channels and rules are (typed, as the CLI and the
//! API accept them) and the one function per change ([`add_channel`],
//! [`remove_channel`], [`add_rule`], [`remove_rule`]) that the audit trail
//! hooks; [`evaluate`] decides (pure), [`send`] delivers, [`evaluator`]
//! runs both in the daemon.

pub mod evaluate;
pub mod evaluator;
pub mod send;

use nexo_db::audit::{Action, Actor, Change};
use serde::{Deserialize, Serialize};

use nexo_db::alerts::{ChannelKind, ChannelRow, RuleRow};
use nexo_db::sealed::{SealError, Sealer};
use nexo_db::{Database, StoreError};
use nexo_runtime::sandbox::secrets::SecretValue;

/// Why an alert change or delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The name is taken.
    #[error(
        "an alert {what} named `{name}` exists already; remove it first or choose another name"
    )]
    Exists {
        /// `channel` or `rule`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// No such channel or rule.
    #[error("no alert {what} named `{name}` (list them with `nexo alert {what} list`)")]
    Unknown {
        /// `channel` or `rule`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A setting is wrong; the message says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secret could not be sealed or opened.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// How an e-mail channel secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP, upgraded with STARTTLS (refused if the server cannot).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a server on this machine (127.0.0.1, ::1, localhost).
    Plain,
}

/// A channel's settings (its secret is kept apart, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    /// `POST` of the notice as JSON to `url`, signed with the channel's
    /// secret in `X-Nexo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
    /// "<t>.<body>">` — the scheme of Nexo's own inbound webhooks.
    Webhook {
        /// Where to POST (http or https).
        url: String,
    },
    /// E-mail over SMTP; the password (if the server needs a login) is the
    /// channel's secret.
    Email {
        /// SMTP server.
        host: String,
        /// Its port (587 for STARTTLS, 465 for TLS).
        port: u16,
        /// STARTTLS, TLS or plain (loopback only).
        #[serde(default)]
        security: SmtpSecurity,
        /// Login name, if the server needs one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    },
}

impl ChannelConfig {
    /// Its kind.
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelConfig::Webhook { .. } => ChannelKind::Webhook,
            ChannelConfig::Email { .. } => ChannelKind::Email,
        }
    }

    /// Refuse settings that cannot work, saying what to change; `secret`
    /// is whether one was given.
    pub fn check(&self, secret: bool) -> Result<(), AlertError> {
        let bad = |m: String| Err(AlertError::Invalid(m));
        match self {
            ChannelConfig::Webhook { url } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| AlertError::Invalid(format!("webhook url `{url}`: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return bad(format!(
                        "webhook url `{url}` must be an http(s) URL with a host"
                    ));
                }
                if !secret {
                    return bad("a webhook channel needs a signing secret (its receiver verifies X-Nexo-Signature with it): give it on stdin or from an environment variable".into());
                }
            }
            ChannelConfig::Email {
                host,
                security,
                from,
                to,
                username,
                ..
            } => {
                if host.is_empty() || from.parse::<lettre::Address>().is_err() {
                    return bad(format!(
                        "e-mail channel: needs an SMTP host and a sender address (`from` = `{from}`)"
                    ));
                }
                if to.is_empty() {
                    return bad("e-mail channel: give at least one recipient (`to`)".into());
                }
                if let Some(bad_to) = to.iter().find(|t| t.parse::<lettre::Address>().is_err()) {
                    return bad(format!(
                        "e-mail channel: `{bad_to}` is not an e-mail address"
                    ));
                }
                if *security == SmtpSecurity::Plain && !is_loopback(host) {
                    return bad(format!(
                        "e-mail channel: plain SMTP (no TLS) is allowed only to a server on this machine, not `{host}`; use security starttls or tls"
                    ));
                }
                if username.is_some() != secret {
                    return bad("e-mail channel: a username needs a password (the channel's secret), and a password needs a username".into());
                }
            }
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A daily window (local time at `utc_offset_minutes`) in which a rule's
/// notices are held, to be sent when it ends. `from` after `to` spans
/// midnight (22:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Start, `HH:MM`.
    #[serde(with = "hhmm")]
    pub from: chrono::NaiveTime,
    /// End, `HH:MM` (exclusive).
    #[serde(with = "hhmm")]
    pub to: chrono::NaiveTime,
    /// The offset of the local time from UTC, in minutes (60 = UTC+1).
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

mod hhmm {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &chrono::NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<chrono::NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        chrono::NaiveTime::parse_from_str(&text, "%H:%M")
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a time as HH:MM")))
    }
}

/// What a rule watches for. A rule without `pipeline` / `connection`
/// watches every one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Condition {
    /// The pipeline's latest finished run failed; resolved when a later
    /// run succeeds.
    RunFailed {
        /// Only this pipeline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<String>,
    },
    /// The host paused the pipeline (failures in a row, or a connection
    /// needing re-authorization) — not a person; resolved on resume.
    PipelinePaused {
        /// Only this pipeline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<String>,
    },
    /// An OAuth connection's refresh token was refused for good.
    NeedsReauthorization {
        /// Only this connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<String>,
    },
    /// More than `threshold` open dead letters in a pipeline.
    DeadLettersAbove {
        /// N.
        threshold: u64,
        /// Only this pipeline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<String>,
    },
    /// Today's errors of one class in a pipeline above `factor` × their
    /// daily mean over the `days` before, and at least `minimum`.
    ErrorSpike {
        /// How many times the usual.
        #[serde(default = "default_factor")]
        factor: f64,
        /// Fewer than this today is never a spike.
        #[serde(default = "default_minimum")]
        minimum: u64,
        /// Days of history the mean is taken over.
        #[serde(default = "default_days")]
        days: u32,
        /// Only this pipeline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<String>,
    },
}

fn default_factor() -> f64 {
    3.0
}
fn default_minimum() -> u64 {
    5
}
fn default_days() -> u32 {
    7
}

/// A rule: a condition, the channels told, and its quiet hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// When it holds.
    pub condition: Condition,
    /// Channels told, by name.
    pub channels: Vec<String>,
    /// When notices wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

impl Rule {
    /// Read a stored rule.
    pub fn from_row(row: &RuleRow) -> Result<Self, AlertError> {
        let condition = serde_json::from_str(&row.condition).map_err(|e| {
            AlertError::Store(StoreError::Corrupt(format!(
                "alert rule `{}`: {e}",
                row.name
            )))
        })?;
        let quiet_hours = row
            .quiet_hours
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| {
                AlertError::Store(StoreError::Corrupt(format!(
                    "alert rule `{}`: {e}",
                    row.name
                )))
            })?;
        Ok(Rule {
            name: row.name.clone(),
            condition,
            channels: row.channels.clone(),
            quiet_hours,
        })
    }
}

/// The sealing slot of a channel's secret.
pub(crate) fn slot(channel: &str) -> String {
    format!("alert-channel:{channel}")
}

fn check_name(what: &str, name: &str) -> Result<(), AlertError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AlertError::Invalid(format!(
            "alert {what} name `{}`: use 1–64 letters, digits, `-`, `_` or `.`",
            nexo_runtime::safe_text::SafeText::line(name)
        )))
    }
}

/// Add a channel, its secret sealed (the one place channels are added).
pub fn add_channel(
    db: &Database,
    who: &Actor,
    sealer: &Sealer,
    name: &str,
    config: &ChannelConfig,
    secret: Option<&SecretValue>,
) -> Result<(), AlertError> {
    check_name("channel", name)?;
    config.check(secret.is_some())?;
    let json = serde_json::to_string(config).map_err(|e| AlertError::Invalid(e.to_string()))?;
    let sealed = secret.map(|s| sealer.seal(&slot(name), s)).transpose()?;
    let pair = sealed.as_ref().map(|(n, s)| (n.as_slice(), s.as_slice()));
    if !db.add_alert_channel(name, config.kind(), &json, pair)? {
        return Err(AlertError::Exists {
            what: "channel",
            name: name.into(),
        });
    }
    crate::audit::record(
        db,
        who,
        Change::new(Action::AlertChannelAdd, format!("alert-channel/{name}"))
            .after(serde_json::json!({"config": config, "has_secret": secret.is_some()})),
    );
    Ok(())
}

/// Remove a channel (the one place channels are removed).
pub fn remove_channel(db: &Database, who: &Actor, name: &str) -> Result<(), AlertError> {
    let before = db
        .alert_channels()?
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| serde_json::json!({"kind": c.kind.as_str(), "config": serde_json::from_str::<serde_json::Value>(&c.config).ok()}));
    if !db.remove_alert_channel(name)? {
        return Err(AlertError::Unknown {
            what: "channel",
            name: name.into(),
        });
    }
    crate::audit::record(
        db,
        who,
        crate::audit::with(
            Change::new(Action::AlertChannelRemove, format!("alert-channel/{name}")),
            before,
            None,
        ),
    );
    Ok(())
}

/// Add a rule whose channels exist (the one place rules are added).
pub fn add_rule(db: &Database, who: &Actor, rule: &Rule) -> Result<(), AlertError> {
    check_name("rule", &rule.name)?;
    if rule.channels.is_empty() {
        return Err(AlertError::Invalid(
            "a rule needs at least one channel".into(),
        ));
    }
    let known: Vec<String> = db.alert_channels()?.into_iter().map(|c| c.name).collect();
    if let Some(missing) = rule.channels.iter().find(|c| !known.contains(c)) {
        return Err(AlertError::Unknown {
            what: "channel",
            name: missing.clone(),
        });
    }
    if let Condition::ErrorSpike { factor, days, .. } = rule.condition
        && (!(factor >= 1.0 && factor.is_finite()) || days == 0 || days > 90)
    {
        return Err(AlertError::Invalid(
            "error-spike: factor must be at least 1 and days 1–90".into(),
        ));
    }
    let row = RuleRow {
        name: rule.name.clone(),
        condition: serde_json::to_string(&rule.condition)
            .map_err(|e| AlertError::Invalid(e.to_string()))?,
        channels: rule.channels.clone(),
        quiet_hours: rule
            .quiet_hours
            .map(|q| serde_json::to_string(&q))
            .transpose()
            .map_err(|e| AlertError::Invalid(e.to_string()))?,
    };
    if !db.add_alert_rule(&row)? {
        return Err(AlertError::Exists {
            what: "rule",
            name: rule.name.clone(),
        });
    }
    crate::audit::record(
        db,
        who,
        Change::new(Action::AlertRuleAdd, format!("alert-rule/{}", rule.name))
            .after(serde_json::json!(rule)),
    );
    Ok(())
}

/// Remove a rule and its incidents (the one place rules are removed).
pub fn remove_rule(db: &Database, who: &Actor, name: &str) -> Result<(), AlertError> {
    if !db.remove_alert_rule(name)? {
        return Err(AlertError::Unknown {
            what: "rule",
            name: name.into(),
        });
    }
    crate::audit::record(
        db,
        who,
        Change::new(Action::AlertRuleRemove, format!("alert-rule/{name}")),
    );
    Ok(())
}

/// A channel as stored, its settings parsed.
pub fn channel_config(row: &ChannelRow) -> Result<ChannelConfig, AlertError> {
    serde_json::from_str(&row.config).map_err(|e| {
        AlertError::Store(StoreError::Corrupt(format!(
            "alert channel `{}`: {e}",
            row.name
        )))
    })
}

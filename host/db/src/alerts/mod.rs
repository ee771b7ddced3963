//! Alerts' rows (issue 22): notification channels (their secret sealed),
//! rules, incidents and the deliveries of each incident's notices. An
//! incident is open at most once per (rule, subject) — a partial unique
//! index — so however many runs fail, and however many hosts sharing a
//! PostgreSQL see it, one incident is opened and one notice per channel is
//! queued; a delivery is claimed before it is sent, so one host sends it.
//! The rules' conditions and the channels' settings are JSON the daemon
//! reads (`nexo_daemon::alerts`); this module keeps them as text.

use rusqlite::{OptionalExtension, params};

use crate::oauth::Sealed;
use crate::{Database, StoreError};

/// The component's first migration.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE alert_channels (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),
        config TEXT NOT NULL,
        secret_nonce BLOB,
        secret BLOB,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE alert_rules (
        name TEXT PRIMARY KEY,
        condition TEXT NOT NULL,
        channels TEXT NOT NULL,
        quiet_hours TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE alert_incidents (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL REFERENCES alert_rules(name) ON DELETE CASCADE,
        subject TEXT NOT NULL,
        summary TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE UNIQUE INDEX alert_incidents_open ON alert_incidents (rule, subject)
        WHERE resolved_at IS NULL;
    CREATE TABLE alert_deliveries (
        incident INTEGER NOT NULL REFERENCES alert_incidents(id) ON DELETE CASCADE,
        channel TEXT NOT NULL,
        notice TEXT NOT NULL CHECK (notice IN ('opened', 'resolved')),
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        claimed_until_ms INTEGER,
        error TEXT,
        sent_at TEXT,
        PRIMARY KEY (incident, channel, notice)
    );
";

/// Where a channel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A signed HTTP POST of JSON.
    Webhook,
    /// E-mail over SMTP.
    Email,
}

impl ChannelKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
        }
    }

    /// Read the stored form.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "webhook" => Ok(ChannelKind::Webhook),
            "email" => Ok(ChannelKind::Email),
            other => Err(StoreError::Corrupt(format!("alert channel kind `{other}`"))),
        }
    }
}

/// Which notice of an incident a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The incident began.
    Opened,
    /// It is over.
    Resolved,
}

impl Notice {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Opened => "opened",
            Notice::Resolved => "resolved",
        }
    }

    /// Read the stored form.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "opened" => Ok(Notice::Opened),
            "resolved" => Ok(Notice::Resolved),
            other => Err(StoreError::Corrupt(format!("alert notice `{other}`"))),
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not sent yet: waiting for its attempt (or the end of quiet hours).
    Pending,
    /// Sent.
    Sent,
    /// Given up after its attempts; the error says why.
    Failed,
}

impl DeliveryStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Read the stored form.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "sent" => Ok(DeliveryStatus::Sent),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(StoreError::Corrupt(format!(
                "alert delivery status `{other}`"
            ))),
        }
    }
}

/// A channel as stored, without its secret (see
/// [`Database::alert_channel_secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    /// Its name, as rules name it.
    pub name: String,
    /// Webhook or e-mail.
    pub kind: ChannelKind,
    /// Its settings as JSON, never with the secret.
    pub config: String,
    /// Whether a sealed secret is kept for it.
    pub has_secret: bool,
    /// When it was added.
    pub created_at: String,
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    /// Its name.
    pub name: String,
    /// The condition as JSON (`{"kind": "run-failed", …}`).
    pub condition: String,
    /// The channels notified, by name.
    pub channels: Vec<String>,
    /// The quiet window as JSON, if any.
    pub quiet_hours: Option<String>,
}

/// One notice's delivery on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel.
    pub channel: String,
    /// Opened or resolved.
    pub notice: Notice,
    /// Pending, sent or failed.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i64,
    /// The last attempt's error (never a secret: the daemon writes it).
    pub error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<String>,
}

/// An incident: a rule's condition holding for one subject, from when it
/// was first seen until it was seen to be over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// The rule.
    pub rule: String,
    /// What it is about: `pipeline:NAME`, `connection:NAME`,
    /// `pipeline:NAME/CLASS`.
    pub subject: String,
    /// What was seen, for people.
    pub summary: String,
    /// First seen (RFC 3339, UTC).
    pub opened_at: String,
    /// Last seen holding.
    pub last_seen_at: String,
    /// Seen to be over.
    pub resolved_at: Option<String>,
    /// Its notices' deliveries.
    pub deliveries: Vec<Delivery>,
}

/// A delivery claimed for sending by [`Database::claim_alert_deliveries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The incident (its deliveries not filled in).
    pub incident: Incident,
    /// The channel.
    pub channel: String,
    /// Which notice.
    pub notice: Notice,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Sent at this time (RFC 3339).
    Sent(String),
    /// Failed; try again at `next_ms` (ms since the epoch).
    Retry {
        /// Why.
        error: String,
        /// When to try again.
        next_ms: i64,
    },
    /// Failed for good.
    Failed(String),
    /// Not attempted: held (quiet hours) until `until_ms`.
    Held {
        /// When the hold ends.
        until_ms: i64,
    },
}

type SealedColumns = (Option<Vec<u8>>, Option<Vec<u8>>);

pub(crate) fn channels_json(channels: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(channels).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn channels_of(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("rule channels: {e}")))
}

impl Database {
    /// Add a channel; false when the name is taken. `secret` is sealed
    /// (nonce, ciphertext) for the slot `alert-channel:NAME`.
    pub fn add_alert_channel(
        &self,
        name: &str,
        kind: ChannelKind,
        config: &str,
        secret: Option<(&[u8], &[u8])>,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::add_alert_channel(pg, name, kind, config, secret);
        }
        let (nonce, sealed) = secret.unzip();
        Ok(self.lock()?.execute(
            "INSERT INTO alert_channels (name, kind, config, secret_nonce, secret)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
            params![name, kind.as_str(), config, nonce, sealed],
        )? == 1)
    }

    /// Every channel, by name.
    pub fn alert_channels(&self) -> Result<Vec<ChannelRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::alert_channels(pg);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(
            "SELECT name, kind, config, secret IS NOT NULL, created_at FROM alert_channels ORDER BY name",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(name, kind, config, has_secret, created_at)| {
                Ok(ChannelRow {
                    name,
                    kind: ChannelKind::parse(&kind)?,
                    config,
                    has_secret,
                    created_at,
                })
            })
            .collect()
    }

    /// A channel's sealed secret (nonce, ciphertext), if it has one.
    pub fn alert_channel_secret(&self, name: &str) -> Result<Option<Sealed>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::alert_channel_secret(pg, name);
        }
        let row: Option<SealedColumns> = self
            .lock()?
            .query_row(
                "SELECT secret_nonce, secret FROM alert_channels WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row
            .and_then(|(n, s)| n.zip(s))
            .map(|(nonce, sealed)| Sealed { nonce, sealed }))
    }

    /// Remove a channel; false when there was none by that name. Rules
    /// naming it keep the name, and their deliveries to it fail saying so.
    pub fn remove_alert_channel(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::remove_alert_channel(pg, name);
        }
        Ok(self
            .lock()?
            .execute("DELETE FROM alert_channels WHERE name = ?1", [name])?
            == 1)
    }

    /// Add a rule; false when the name is taken.
    pub fn add_alert_rule(&self, rule: &RuleRow) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::add_alert_rule(pg, rule);
        }
        Ok(self.lock()?.execute(
            "INSERT INTO alert_rules (name, condition, channels, quiet_hours)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
            params![
                rule.name,
                rule.condition,
                channels_json(&rule.channels)?,
                rule.quiet_hours
            ],
        )? == 1)
    }

    /// Every rule, by name.
    pub fn alert_rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::alert_rules(pg);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(
            "SELECT name, condition, channels, quiet_hours FROM alert_rules ORDER BY name",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(name, condition, channels, quiet_hours)| {
                Ok(RuleRow {
                    name,
                    condition,
                    channels: channels_of(&channels)?,
                    quiet_hours,
                })
            })
            .collect()
    }

    /// Remove a rule and its incidents; false when there was none.
    pub fn remove_alert_rule(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::remove_alert_rule(pg, name);
        }
        Ok(self
            .lock()?
            .execute("DELETE FROM alert_rules WHERE name = ?1", [name])?
            == 1)
    }
}

mod incidents;

#[cfg(test)]
mod tests;

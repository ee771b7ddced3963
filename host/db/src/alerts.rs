//! Alerts' rows (issue 22): notification channels (their secret sealed),
//! rules, incidents and the deliveries of each incident's notices. An
//! incident is open at most once per (rule, subject) — a partial unique
//! index — so however many runs fail, and however many hosts sharing a
//! PostgreSQL see it, one incident is opened and one notice per channel is
//! queued; a delivery is claimed before it is sent, so one host sends it.
//! The rules' conditions and the channels' settings are JSON the daemon
//! reads (`nexo_daemon::alerts`); this module keeps them as text.

use rusqlite::{OptionalExtension, Transaction, params};

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

const INCIDENT_COLUMNS: &str = "id, rule, subject, summary, opened_at, last_seen_at, resolved_at";

fn read_incident(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        rule: r.get(1)?,
        subject: r.get(2)?,
        summary: r.get(3)?,
        opened_at: r.get(4)?,
        last_seen_at: r.get(5)?,
        resolved_at: r.get(6)?,
        deliveries: Vec::new(),
    })
}

pub(crate) fn channels_json(channels: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(channels).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn channels_of(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("rule channels: {e}")))
}

fn queue(
    tx: &Transaction<'_>,
    id: i64,
    channels: &[String],
    notice: Notice,
) -> Result<(), StoreError> {
    for channel in channels {
        tx.execute(
            "INSERT INTO alert_deliveries (incident, channel, notice, status)
             VALUES (?1, ?2, ?3, 'pending') ON CONFLICT DO NOTHING",
            params![id, channel, notice.as_str()],
        )?;
    }
    Ok(())
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

    /// Open an incident of `rule` about `subject` at `now`, queueing its
    /// "opened" notice on `channels` — unless one is open already, which
    /// is only marked seen. One statement decides (the partial unique
    /// index), so of two hosts seeing the same failure one opens it.
    /// Returns the new incident's id.
    pub fn open_alert_incident(
        &self,
        rule: &str,
        subject: &str,
        summary: &str,
        channels: &[String],
        now: &str,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::open_alert_incident(
                pg, rule, subject, summary, channels, now,
            );
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: Option<i64> = tx
            .query_row(
                "INSERT INTO alert_incidents (rule, subject, summary, opened_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (rule, subject) WHERE resolved_at IS NULL DO NOTHING
                 RETURNING id",
                params![rule, subject, summary, now],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => queue(&tx, id, channels, Notice::Opened)?,
            None => {
                tx.execute(
                    "UPDATE alert_incidents SET last_seen_at = ?3
                      WHERE rule = ?1 AND subject = ?2 AND resolved_at IS NULL",
                    params![rule, subject, now],
                )?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// Resolve an open incident at `now`, queueing its "resolved" notice
    /// on the channels its "opened" notice went to; false when it was not
    /// open (another host resolved it).
    pub fn resolve_alert_incident(&self, id: i64, now: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::resolve_alert_incident(pg, id, now);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE alert_incidents SET resolved_at = ?2 WHERE id = ?1 AND resolved_at IS NULL",
            params![id, now],
        )?;
        if n == 1 {
            tx.execute(
                "INSERT INTO alert_deliveries (incident, channel, notice, status)
                 SELECT incident, channel, 'resolved', 'pending' FROM alert_deliveries
                  WHERE incident = ?1 AND notice = 'opened'
                 ON CONFLICT DO NOTHING",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Incidents, newest first: the open ones only, or the last `limit`
    /// of all; each with its deliveries.
    pub fn alert_incidents(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::alert_incidents(pg, open_only, limit);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM alert_incidents
              WHERE (?1 = 0 OR resolved_at IS NULL) ORDER BY id DESC LIMIT ?2"
        ))?;
        let mut incidents = st
            .query_map(params![open_only, limit as i64], read_incident)?
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = conn.prepare(
            "SELECT channel, notice, status, attempts, error, sent_at FROM alert_deliveries
              WHERE incident = ?1 ORDER BY notice, channel",
        )?;
        for incident in &mut incidents {
            let rows = st
                .query_map([incident.id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (channel, notice, status, attempts, error, sent_at) in rows {
                incident.deliveries.push(Delivery {
                    channel,
                    notice: Notice::parse(&notice)?,
                    status: DeliveryStatus::parse(&status)?,
                    attempts,
                    error,
                    sent_at,
                });
            }
        }
        Ok(incidents)
    }

    /// Claim up to `limit` pending deliveries due at `now_ms` for
    /// `lease_ms`: a claimed delivery is not handed to another host until
    /// the claim runs out, so a notice is sent once.
    pub fn claim_alert_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::claim_alert_deliveries(pg, now_ms, lease_ms, limit);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let due = {
            let mut st = tx.prepare(&format!(
                "SELECT d.channel, d.notice, d.attempts, {}
                   FROM alert_deliveries d JOIN alert_incidents i ON i.id = d.incident
                  WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1
                    AND (d.claimed_until_ms IS NULL OR d.claimed_until_ms < ?1)
                  ORDER BY d.incident, d.notice, d.channel LIMIT ?2",
                INCIDENT_COLUMNS
                    .split(", ")
                    .map(|c| format!("i.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
            st.query_map(params![now_ms, limit as i64], |r| {
                let incident = Incident {
                    id: r.get(3)?,
                    rule: r.get(4)?,
                    subject: r.get(5)?,
                    summary: r.get(6)?,
                    opened_at: r.get(7)?,
                    last_seen_at: r.get(8)?,
                    resolved_at: r.get(9)?,
                    deliveries: Vec::new(),
                };
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    incident,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut claimed = Vec::new();
        for (channel, notice, attempts, incident) in due {
            tx.execute(
                "UPDATE alert_deliveries SET claimed_until_ms = ?4
                  WHERE incident = ?1 AND channel = ?2 AND notice = ?3",
                params![incident.id, channel, notice, now_ms + lease_ms],
            )?;
            claimed.push(DueDelivery {
                incident,
                channel,
                notice: Notice::parse(&notice)?,
                attempts,
            });
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// Record how a claimed delivery's attempt ended, and release it.
    pub fn finish_alert_delivery(
        &self,
        incident: i64,
        channel: &str,
        notice: Notice,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::alerts::finish_alert_delivery(
                pg, incident, channel, notice, attempt,
            );
        }
        let conn = self.lock()?;
        match attempt {
            Attempt::Sent(at) => conn.execute(
                "UPDATE alert_deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?4,
                     error = NULL, claimed_until_ms = NULL
                  WHERE incident = ?1 AND channel = ?2 AND notice = ?3",
                params![incident, channel, notice.as_str(), at],
            )?,
            Attempt::Retry { error, next_ms } => conn.execute(
                "UPDATE alert_deliveries SET attempts = attempts + 1, error = ?4,
                     next_attempt_ms = ?5, claimed_until_ms = NULL
                  WHERE incident = ?1 AND channel = ?2 AND notice = ?3",
                params![incident, channel, notice.as_str(), error, next_ms],
            )?,
            Attempt::Failed(error) => conn.execute(
                "UPDATE alert_deliveries SET status = 'failed', attempts = attempts + 1, error = ?4,
                     claimed_until_ms = NULL
                  WHERE incident = ?1 AND channel = ?2 AND notice = ?3",
                params![incident, channel, notice.as_str(), error],
            )?,
            Attempt::Held { until_ms } => conn.execute(
                "UPDATE alert_deliveries SET next_attempt_ms = ?4, claimed_until_ms = NULL
                  WHERE incident = ?1 AND channel = ?2 AND notice = ?3",
                params![incident, channel, notice.as_str(), until_ms],
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::test_sql::text;

    on_both!(
        channels_and_rules_are_added_once_listed_and_removed,
        an_incident_is_opened_once_per_subject_and_its_notices_queued_once,
        a_claimed_delivery_is_not_handed_out_again_until_it_is_finished,
        hosts_seeing_one_failure_at_once_open_one_incident_and_claim_each_notice_once,
    );

    fn rule(name: &str, channels: &[&str]) -> RuleRow {
        RuleRow {
            name: name.into(),
            condition: r#"{"kind":"run-failed"}"#.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            quiet_hours: None,
        }
    }

    fn channels_and_rules_are_added_once_listed_and_removed(db: Database) {
        assert!(
            db.add_alert_channel(
                "ops",
                ChannelKind::Webhook,
                r#"{"url":"http://x"}"#,
                Some((&[1; 12], &[2, 3]))
            )
            .unwrap()
        );
        assert!(
            !db.add_alert_channel("ops", ChannelKind::Email, "{}", None)
                .unwrap(),
            "name taken"
        );
        assert!(
            db.add_alert_channel("mail", ChannelKind::Email, "{}", None)
                .unwrap()
        );
        let list = db.alert_channels().unwrap();
        assert_eq!(
            list.iter()
                .map(|c| (c.name.as_str(), c.kind, c.has_secret))
                .collect::<Vec<_>>(),
            vec![
                ("mail", ChannelKind::Email, false),
                ("ops", ChannelKind::Webhook, true)
            ]
        );
        assert_eq!(
            db.alert_channel_secret("ops").unwrap(),
            Some(Sealed {
                nonce: vec![1; 12],
                sealed: vec![2, 3]
            })
        );
        assert_eq!(db.alert_channel_secret("mail").unwrap(), None);
        assert!(
            db.add_alert_rule(&rule("failed", &["ops", "mail"]))
                .unwrap()
        );
        assert!(!db.add_alert_rule(&rule("failed", &[])).unwrap());
        assert_eq!(
            db.alert_rules().unwrap(),
            vec![rule("failed", &["ops", "mail"])]
        );
        assert!(db.remove_alert_channel("mail").unwrap());
        assert!(!db.remove_alert_channel("mail").unwrap());
        assert!(db.remove_alert_rule("failed").unwrap());
        assert!(db.alert_rules().unwrap().is_empty());
    }

    fn an_incident_is_opened_once_per_subject_and_its_notices_queued_once(db: Database) {
        db.add_alert_rule(&rule("failed", &["ops", "mail"]))
            .unwrap();
        let chans = vec!["ops".to_string(), "mail".to_string()];
        let first = db
            .open_alert_incident(
                "failed",
                "pipeline:p",
                "run 1 failed",
                &chans,
                "2026-12-05T10:00:00.000Z",
            )
            .unwrap();
        let id = first.unwrap();
        // Seen again by later runs (or another host): no second incident.
        for at in ["2026-12-05T10:01:00.000Z", "2026-12-05T10:02:00.000Z"] {
            assert_eq!(
                db.open_alert_incident("failed", "pipeline:p", "again", &chans, at)
                    .unwrap(),
                None
            );
        }
        // Another subject is another incident.
        let other = db
            .open_alert_incident(
                "failed",
                "pipeline:q",
                "q failed",
                &chans,
                "2026-12-05T10:02:00.000Z",
            )
            .unwrap()
            .unwrap();
        let open = db.alert_incidents(true, 10).unwrap();
        assert_eq!(open.len(), 2);
        let p = open.iter().find(|i| i.id == id).unwrap();
        assert_eq!(p.last_seen_at, "2026-12-05T10:02:00.000Z");
        assert_eq!(p.summary, "run 1 failed");
        assert_eq!(p.deliveries.len(), 2);
        assert!(
            p.deliveries
                .iter()
                .all(|d| d.notice == Notice::Opened && d.status == DeliveryStatus::Pending)
        );
        assert!(
            db.resolve_alert_incident(id, "2026-12-05T11:00:00.000Z")
                .unwrap()
        );
        assert!(
            !db.resolve_alert_incident(id, "2026-12-05T11:00:01.000Z")
                .unwrap(),
            "resolved twice"
        );
        let all = db.alert_incidents(false, 10).unwrap();
        let p = all.iter().find(|i| i.id == id).unwrap();
        assert_eq!(p.resolved_at.as_deref(), Some("2026-12-05T11:00:00.000Z"));
        assert_eq!(
            p.deliveries
                .iter()
                .filter(|d| d.notice == Notice::Resolved)
                .count(),
            2
        );
        assert_eq!(
            db.alert_incidents(true, 10)
                .unwrap()
                .iter()
                .map(|i| i.id)
                .collect::<Vec<_>>(),
            vec![other]
        );
        // A new failure after the recovery is a new incident.
        let again = db
            .open_alert_incident(
                "failed",
                "pipeline:p",
                "failed again",
                &chans,
                "2026-12-05T12:00:00.000Z",
            )
            .unwrap();
        assert!(again.is_some_and(|n| n != id));
        assert_eq!(
            text(&db, "SELECT CAST(COUNT(*) AS TEXT) FROM alert_incidents").as_deref(),
            Some("3")
        );
    }

    fn a_claimed_delivery_is_not_handed_out_again_until_it_is_finished(db: Database) {
        db.add_alert_rule(&rule("failed", &["ops"])).unwrap();
        let id = db
            .open_alert_incident(
                "failed",
                "pipeline:p",
                "s",
                &["ops".to_string()],
                "2026-12-05T10:00:00.000Z",
            )
            .unwrap()
            .unwrap();
        let due = db.claim_alert_deliveries(1_000, 60_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].incident.id, due[0].notice, due[0].channel.as_str()),
            (id, Notice::Opened, "ops")
        );
        assert!(
            db.claim_alert_deliveries(2_000, 60_000, 10)
                .unwrap()
                .is_empty(),
            "claimed twice"
        );
        // A failed attempt waits for its retry time.
        db.finish_alert_delivery(
            id,
            "ops",
            Notice::Opened,
            &Attempt::Retry {
                error: "connection refused".into(),
                next_ms: 5_000,
            },
        )
        .unwrap();
        assert!(
            db.claim_alert_deliveries(4_000, 60_000, 10)
                .unwrap()
                .is_empty()
        );
        let due = db.claim_alert_deliveries(5_000, 60_000, 10).unwrap();
        assert_eq!(due[0].attempts, 1);
        // A claim that runs out (its host died) is handed out again.
        assert_eq!(
            db.claim_alert_deliveries(70_000, 60_000, 10).unwrap().len(),
            1
        );
        db.finish_alert_delivery(
            id,
            "ops",
            Notice::Opened,
            &Attempt::Sent("2026-12-05T10:00:05.000Z".into()),
        )
        .unwrap();
        assert!(
            db.claim_alert_deliveries(200_000, 60_000, 10)
                .unwrap()
                .is_empty(),
            "sent twice"
        );
        let d = &db.alert_incidents(false, 1).unwrap()[0].deliveries[0];
        assert_eq!(
            (d.status, d.attempts, d.error.as_deref()),
            (DeliveryStatus::Sent, 2, None)
        );
        // Held ones wait; failed ones stay failed and say why.
        db.resolve_alert_incident(id, "2026-12-05T11:00:00.000Z")
            .unwrap();
        db.claim_alert_deliveries(300_000, 60_000, 10).unwrap();
        db.finish_alert_delivery(
            id,
            "ops",
            Notice::Resolved,
            &Attempt::Held { until_ms: 900_000 },
        )
        .unwrap();
        assert!(
            db.claim_alert_deliveries(800_000, 60_000, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            db.claim_alert_deliveries(900_000, 60_000, 10)
                .unwrap()
                .len(),
            1
        );
        db.finish_alert_delivery(
            id,
            "ops",
            Notice::Resolved,
            &Attempt::Failed("535 authentication failed".into()),
        )
        .unwrap();
        assert!(
            db.claim_alert_deliveries(2_000_000, 60_000, 10)
                .unwrap()
                .is_empty()
        );
        let incident = &db.alert_incidents(false, 1).unwrap()[0];
        let r = incident
            .deliveries
            .iter()
            .find(|d| d.notice == Notice::Resolved)
            .unwrap();
        assert_eq!(
            (r.status, r.error.as_deref()),
            (DeliveryStatus::Failed, Some("535 authentication failed"))
        );
    }

    /// Eight hosts (threads, each with the same database) see the same
    /// failure at once: one incident is opened, one notice per channel
    /// queued, and each notice is claimed by one of them.
    fn hosts_seeing_one_failure_at_once_open_one_incident_and_claim_each_notice_once(db: Database) {
        db.add_alert_rule(&rule("failed", &["ops", "mail"]))
            .unwrap();
        let chans = vec!["ops".to_string(), "mail".to_string()];
        // Each host has its connection before they start together.
        let _ = db.alert_rules().unwrap();
        let start = std::sync::Barrier::new(8);
        let (opened, claimed) = std::thread::scope(|s| {
            let hosts: Vec<_> = (0..8)
                .map(|_| {
                    let db = db.clone();
                    let chans = chans.clone();
                    let start = &start;
                    s.spawn(move || {
                        let _ = db.alert_channels().unwrap();
                        start.wait();
                        let opened = db
                            .open_alert_incident(
                                "failed",
                                "pipeline:p",
                                "s",
                                &chans,
                                "2026-12-05T10:00:00.000Z",
                            )
                            .unwrap();
                        let claimed = db.claim_alert_deliveries(1_000, 60_000, 10).unwrap();
                        (opened, claimed.len())
                    })
                })
                .collect();
            let results: Vec<_> = hosts.into_iter().map(|h| h.join().unwrap()).collect();
            (
                results.iter().filter(|(o, _)| o.is_some()).count(),
                results.iter().map(|(_, c)| c).sum::<usize>(),
            )
        });
        assert_eq!(opened, 1, "incidents opened");
        assert_eq!(claimed, 2, "notices claimed (one per channel)");
        assert_eq!(db.alert_incidents(false, 10).unwrap().len(), 1);
    }
}

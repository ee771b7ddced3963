//! Incidents and their notices' deliveries (SQLite; PostgreSQL's in
//! `postgres::alerts`): opened once per rule and subject, resolved once,
//! each notice claimed before it is sent.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Attempt, Delivery, DeliveryStatus, DueDelivery, Incident, Notice};
use crate::{Database, StoreError};

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

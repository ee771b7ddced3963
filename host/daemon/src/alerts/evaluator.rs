//! The daemon's alert task: after each run ends, and every `every` besides,
//! gather the facts (pipelines' last runs and pauses, open dead letters,
//! OAuth connections, error counts), let [`super::evaluate::decide`] say
//! what holds, open and resolve incidents in the store, then send the
//! notices due — claimed first, so hosts sharing a database send each
//! once; held in quiet hours; retried with backoff, then marked failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::watch;

use super::evaluate::{
    ConnectionFacts, ErrorCount, Facts, LastRun, OpenIncident, Pause, PipelineFacts, decide,
    quiet_until,
};
use super::send::{Event, SendError, send};
use super::{AlertError, Condition, Rule, channel_config, slot};
use crate::App;
use nexo_db::Database;
use nexo_db::alerts::Attempt;
use nexo_db::oauth::OAuthStatus;
use nexo_db::sealed::Sealer;
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_sync::store::{DeadLetterStatus, RunFilter, RunStatus};

/// Attempts of one notice before it is marked failed.
pub const MAX_ATTEMPTS: i64 = 5;
/// How long a host holds a claimed delivery before another may take it.
const CLAIM_MS: i64 = 120_000;
/// Notices sent per look at most.
const BATCH: usize = 50;

/// What one look did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Look {
    /// Incidents opened.
    pub opened: usize,
    /// Incidents resolved.
    pub resolved: usize,
    /// Notices sent.
    pub sent: usize,
    /// Notices that failed (to be retried, or given up).
    pub failed: usize,
    /// Notices held by quiet hours.
    pub held: usize,
}

/// Look after each run ends (`runs_ended` changes) and every `every`,
/// until the task is aborted.
pub async fn run(app: Arc<App>, every: Duration, mut runs_ended: watch::Receiver<u64>) {
    loop {
        if let Err(e) = look(&app, Utc::now()).await {
            tracing::warn!(error = %e, "alerts: cannot evaluate the rules; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = runs_ended.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(every).await;
                }
            }
        }
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One look at `now`: evaluate every rule, then send what is due.
pub async fn look(app: &App, now: DateTime<Utc>) -> Result<Look, AlertError> {
    let db = app.registry.db();
    let mut rules = Vec::new();
    for row in db.alert_rules()? {
        match Rule::from_row(&row) {
            Ok(rule) => rules.push(rule),
            Err(e) => {
                tracing::warn!(rule = %row.name, error = %e, "alerts: skipping a rule that does not read")
            }
        }
    }
    let mut done = Look::default();
    if !rules.is_empty() {
        let facts = gather(app, &rules, now)?;
        let open: Vec<OpenIncident> = db
            .alert_incidents(true, 100_000)?
            .into_iter()
            .map(|i| OpenIncident {
                id: i.id,
                rule: i.rule,
                subject: i.subject,
            })
            .collect();
        let decisions = decide(&rules, &facts, &open);
        let at = stamp(now);
        for f in decisions.open.iter().chain(&decisions.still) {
            let Some(rule) = rules.iter().find(|r| r.name == f.rule) else {
                continue;
            };
            if db
                .open_alert_incident(&f.rule, &f.subject, &f.summary, &rule.channels, &at)?
                .is_some()
            {
                tracing::warn!(rule = %f.rule, subject = %f.subject, "alert incident opened: {}", f.summary);
                done.opened += 1;
            }
        }
        for id in decisions.resolve {
            if db.resolve_alert_incident(id, &at)? {
                tracing::info!(incident = id, "alert incident resolved");
                done.resolved += 1;
            }
        }
    }
    deliver(app, &rules, now, &mut done).await?;
    Ok(done)
}

/// The facts the rules need.
fn gather(app: &App, rules: &[Rule], now: DateTime<Utc>) -> Result<Facts, AlertError> {
    let store = app.engine.store();
    let db = app.registry.db();
    let mut open_dead: BTreeMap<String, u64> = BTreeMap::new();
    if rules
        .iter()
        .any(|r| matches!(r.condition, Condition::DeadLettersAbove { .. }))
    {
        for d in store.dead_letters(None, Some(DeadLetterStatus::Open))? {
            *open_dead.entry(d.pipeline).or_default() += 1;
        }
    }
    let mut facts = Facts {
        today: Some(now.date_naive()),
        ..Facts::default()
    };
    for row in store.pipelines()? {
        let name = row.pipeline.name.clone();
        let runs = store.runs(&RunFilter {
            pipeline: Some(name.clone()),
            status: None,
            limit: 20,
        })?;
        let last_run = runs
            .iter()
            .find_map(|r| match r.status {
                RunStatus::Succeeded => Some(LastRun::Succeeded),
                RunStatus::Failed => Some(LastRun::Failed {
                    run: r.id,
                    error: r.error.clone().unwrap_or_default(),
                }),
                _ => None,
            })
            .unwrap_or(LastRun::None);
        let pause = match (row.paused, row.paused_reason) {
            (false, _) => Pause::Running,
            (true, None) => Pause::ByPerson,
            (true, Some(why)) => Pause::ByHost(why),
        };
        let open_dead_letters = open_dead.get(&name).copied().unwrap_or(0);
        facts.pipelines.push(PipelineFacts {
            name,
            last_run,
            pause,
            open_dead_letters,
        });
    }
    if rules
        .iter()
        .any(|r| matches!(r.condition, Condition::NeedsReauthorization { .. }))
    {
        for name in db.connection_names(None)? {
            let needs_reauthorization = db
                .oauth(&name)?
                .filter(|o| o.status == OAuthStatus::NeedsReauthorization)
                .map(|o| {
                    o.reason
                        .unwrap_or_else(|| "the system refused its refresh token".into())
                });
            facts.connections.push(ConnectionFacts {
                name,
                needs_reauthorization,
            });
        }
    }
    let days = rules
        .iter()
        .filter_map(|r| match r.condition {
            Condition::ErrorSpike { days, .. } => Some(days),
            _ => None,
        })
        .max();
    if let Some(days) = days {
        for e in db.error_days(days + 1)? {
            if let Ok(day) = e.day.parse() {
                facts.errors.push(ErrorCount {
                    pipeline: e.pipeline,
                    class: e.class,
                    day,
                    count: e.count,
                });
            }
        }
    }
    Ok(facts)
}

/// A channel's secret, opened.
fn secret_of(
    db: &Database,
    sealer: &Sealer,
    channel: &str,
) -> Result<Option<SecretValue>, AlertError> {
    let Some(sealed) = db.alert_channel_secret(channel)? else {
        return Ok(None);
    };
    Ok(Some(sealer.open(
        &slot(channel),
        &sealed.nonce,
        &sealed.sealed,
    )?))
}

/// Send `event` on the channel named `channel` now.
pub async fn send_on(
    db: &Database,
    sealer: &Sealer,
    channel: &str,
    event: &Event,
) -> Result<(), SendError> {
    let rows = db.alert_channels().map_err(|e| SendError(e.to_string()))?;
    let Some(row) = rows.into_iter().find(|c| c.name == channel) else {
        return Err(SendError(format!(
            "the alert channel `{channel}` was removed"
        )));
    };
    let config = channel_config(&row).map_err(|e| SendError(e.to_string()))?;
    let secret = secret_of(db, sealer, channel).map_err(|e| SendError(e.to_string()))?;
    send(&config, secret.as_ref(), event).await
}

/// The test button (`nexo alert test`, `POST …/test`): a test notice on
/// `channel` now.
pub async fn test_channel(db: &Database, sealer: &Sealer, channel: &str) -> Result<(), SendError> {
    send_on(
        db,
        sealer,
        channel,
        &Event::Test {
            channel: channel.to_string(),
        },
    )
    .await
}

/// The wait before attempt `attempts + 1`: 15 s, 30 s, 60 s, 120 s.
fn backoff_ms(attempts: i64) -> i64 {
    15_000 << attempts.clamp(0, 4)
}

async fn deliver(
    app: &App,
    rules: &[Rule],
    now: DateTime<Utc>,
    done: &mut Look,
) -> Result<(), AlertError> {
    let db = app.registry.db();
    let now_ms = now.timestamp_millis();
    for due in db.claim_alert_deliveries(now_ms, CLAIM_MS, BATCH)? {
        let (id, channel, notice) = (due.incident.id, due.channel.clone(), due.notice);
        let quiet = rules
            .iter()
            .find(|r| r.name == due.incident.rule)
            .and_then(|r| r.quiet_hours.as_ref())
            .and_then(|q| quiet_until(q, now));
        let attempt = if let Some(until) = quiet {
            tracing::info!(incident = id, %channel, until = %until, "alert notice held for quiet hours");
            done.held += 1;
            Attempt::Held {
                until_ms: until.timestamp_millis(),
            }
        } else {
            match send_on(db, &app.sealer, &channel, &Event::of(notice, due.incident)).await {
                Ok(()) => {
                    tracing::info!(incident = id, %channel, notice = notice.as_str(), "alert notice sent");
                    done.sent += 1;
                    Attempt::Sent(stamp(Utc::now()))
                }
                Err(SendError(error)) => {
                    done.failed += 1;
                    let attempts = due.attempts + 1;
                    if attempts >= MAX_ATTEMPTS {
                        tracing::error!(incident = id, %channel, attempts, %error, "alert notice failed; giving up");
                        Attempt::Failed(error)
                    } else {
                        tracing::warn!(incident = id, %channel, attempts, %error, "alert notice failed; will retry");
                        Attempt::Retry {
                            error,
                            next_ms: now_ms + backoff_ms(due.attempts),
                        }
                    }
                }
            }
        };
        db.finish_alert_delivery(id, &channel, notice, &attempt)?;
    }
    Ok(())
}

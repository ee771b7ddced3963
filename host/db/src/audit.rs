//! The audit trail: who changed what, when, and how it was before and
//! after. One row per change, appended and never altered — the database
//! itself refuses an UPDATE or DELETE of a row (triggers on both
//! backends), so not even a bug in nexo can rewrite history. Values are
//! JSON built by the callers from what they changed, with secrets left out
//! by construction (secret *names*, never values); a last guard scrubs any
//! secret value the process knows of before the row is written.

use rusqlite::params;
use serde_json::Value;

use crate::{Database, StoreError};

/// The audit component's first migration (SQLite).
pub(crate) const MIGRATION: &str = "
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_by_target ON audit(target, id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person or program through the admin API or the console, known by
    /// the name of the token it signed in with.
    Token(String),
    /// A person at the host's command line, acting on the local database
    /// (always as admin), known by the operating system's user name.
    Cli(String),
}

impl Actor {
    /// The person at this command line: `$NEXO_ACTOR`, else the operating
    /// system's user (`$USER`, `$LOGNAME`), else `unknown`.
    pub fn cli_user() -> Actor {
        let user = ["NEXO_ACTOR", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| "unknown".into());
        Actor::Cli(user)
    }
}

impl std::fmt::Display for Actor {
    /// `token:NAME` or `cli:USER`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Token(name) => write!(f, "token:{name}"),
            Actor::Cli(user) => write!(f, "cli:{user}"),
        }
    }
}

/// What was changed. Each is recorded once per change, by the command or
/// API handler that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A plugin installed.
    PluginInstall,
    /// A plugin upgraded to a newer version.
    PluginUpgrade,
    /// A plugin's older version made active again.
    PluginRollback,
    /// A plugin removed.
    PluginRemove,
    /// A vendor's key trusted.
    TrustAdd,
    /// A vendor's key no longer trusted.
    TrustRemove,
    /// A connection added.
    ConnectionAdd,
    /// A connection's settings, secrets (by name) or grants changed.
    ConnectionUpdate,
    /// A connection removed.
    ConnectionRemove,
    /// A connection (re-)authorized with its system (OAuth).
    ConnectionAuthorize,
    /// A pipeline defined or redefined.
    PipelineApply,
    /// A pipeline paused by a person.
    PipelinePause,
    /// A pipeline resumed.
    PipelineResume,
    /// A pipeline's read state forgotten.
    PipelineReset,
    /// A pipeline removed.
    PipelineRemove,
    /// A pipeline's webhook secret replaced.
    PipelineWebhookSecret,
    /// A running run asked to stop.
    RunStop,
    /// A dead letter replayed.
    DeadLetterReplay,
    /// A dead letter discarded.
    DeadLetterDiscard,
    /// A conflict resolved by a person.
    ConflictResolve,
    /// A pipeline matched with what its destination holds (links made,
    /// reviews queued).
    PipelineMatch,
    /// A queued match accepted: source and destination record linked.
    ReviewAccept,
    /// A queued match rejected: the record is created.
    ReviewReject,
    /// An API token created.
    TokenCreate,
    /// An API token revoked.
    TokenRevoke,
    /// An alert channel added.
    AlertChannelAdd,
    /// An alert channel removed.
    AlertChannelRemove,
    /// An alert rule added.
    AlertRuleAdd,
    /// An alert rule removed.
    AlertRuleRemove,
    /// Every secret sealed again under a new key.
    SecretsRotateKey,
    /// The database brought back from a backup.
    Restore,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 31] = [
        Action::PluginInstall,
        Action::PluginUpgrade,
        Action::PluginRollback,
        Action::PluginRemove,
        Action::TrustAdd,
        Action::TrustRemove,
        Action::ConnectionAdd,
        Action::ConnectionUpdate,
        Action::ConnectionRemove,
        Action::ConnectionAuthorize,
        Action::PipelineApply,
        Action::PipelinePause,
        Action::PipelineResume,
        Action::PipelineReset,
        Action::PipelineRemove,
        Action::PipelineWebhookSecret,
        Action::RunStop,
        Action::DeadLetterReplay,
        Action::DeadLetterDiscard,
        Action::ConflictResolve,
        Action::PipelineMatch,
        Action::ReviewAccept,
        Action::ReviewReject,
        Action::TokenCreate,
        Action::TokenRevoke,
        Action::AlertChannelAdd,
        Action::AlertChannelRemove,
        Action::AlertRuleAdd,
        Action::AlertRuleRemove,
        Action::SecretsRotateKey,
        Action::Restore,
    ];

    /// Its name in the trail, `noun.verb`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PluginInstall => "plugin.install",
            Action::PluginUpgrade => "plugin.upgrade",
            Action::PluginRollback => "plugin.rollback",
            Action::PluginRemove => "plugin.remove",
            Action::TrustAdd => "trust.add",
            Action::TrustRemove => "trust.remove",
            Action::ConnectionAdd => "connection.add",
            Action::ConnectionUpdate => "connection.update",
            Action::ConnectionRemove => "connection.remove",
            Action::ConnectionAuthorize => "connection.authorize",
            Action::PipelineApply => "pipeline.apply",
            Action::PipelinePause => "pipeline.pause",
            Action::PipelineResume => "pipeline.resume",
            Action::PipelineReset => "pipeline.reset",
            Action::PipelineRemove => "pipeline.remove",
            Action::PipelineWebhookSecret => "pipeline.webhook-secret",
            Action::RunStop => "run.stop",
            Action::DeadLetterReplay => "dlq.replay",
            Action::DeadLetterDiscard => "dlq.discard",
            Action::ConflictResolve => "conflict.resolve",
            Action::PipelineMatch => "pipeline.match",
            Action::ReviewAccept => "review.accept",
            Action::ReviewReject => "review.reject",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::AlertChannelAdd => "alert.channel.add",
            Action::AlertChannelRemove => "alert.channel.remove",
            Action::AlertRuleAdd => "alert.rule.add",
            Action::AlertRuleRemove => "alert.rule.remove",
            Action::SecretsRotateKey => "secrets.rotate-key",
            Action::Restore => "restore",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What was done.
    pub action: Action,
    /// To what: `pipeline/NAME`, `connection/NAME`, `dlq/ID`…
    pub target: String,
    /// How it was before (none: it did not exist, or nothing to show).
    pub before: Option<Value>,
    /// How it is after (none: it is gone, or nothing to show).
    pub after: Option<Value>,
}

impl Change {
    /// A change of `target` with nothing to show before or after.
    pub fn new(action: Action, target: impl Into<String>) -> Change {
        Change {
            action,
            target: target.into(),
            before: None,
            after: None,
        }
    }

    /// With how it was before.
    pub fn before(mut self, v: Value) -> Change {
        self.before = Some(v);
        self
    }

    /// With how it is after.
    pub fn after(mut self, v: Value) -> Change {
        self.after = Some(v);
        self
    }
}

/// One recorded change, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Its place in the trail (grows with time).
    pub id: i64,
    /// When (UTC, milliseconds).
    pub at: String,
    /// Who: `token:NAME` or `cli:USER`.
    pub actor: String,
    /// What, `noun.verb` ([`Action::as_str`]).
    pub action: String,
    /// To what.
    pub target: String,
    /// Before, as recorded.
    pub before: Option<Value>,
    /// After, as recorded.
    pub after: Option<Value>,
}

impl AuditEntry {
    /// The entry as one JSON object (a line of the export).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
        })
    }
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this action (`pipeline.apply`).
    pub action: Option<String>,
    /// Only this target, or targets under it (`pipeline/p1`, `pipeline/`).
    pub target: Option<String>,
    /// Only this actor (`token:ops`).
    pub actor: Option<String>,
    /// Only entries after this id (to follow the trail).
    pub after_id: Option<i64>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

/// A value as stored: JSON text, with any secret value this process knows
/// of scrubbed — a guard behind the callers, who leave secrets out.
fn stored(v: &Option<Value>) -> Option<String> {
    v.as_ref()
        .map(|v| nexo_runtime::sandbox::redact::scrub_string(v.to_string()))
}

/// A stored value read back (text that is not JSON is kept as a string).
pub(crate) fn parsed(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

/// `LIKE` pattern of a target prefix, with the wildcards in it escaped.
pub(crate) fn target_pattern(target: &str) -> String {
    let mut p = String::new();
    for c in target.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    if target.ends_with('/') {
        p.push('%');
    }
    p
}

impl Database {
    /// Append `change`, made by `actor`, to the audit trail; its id.
    pub fn record_change(&self, actor: &Actor, change: &Change) -> Result<i64, StoreError> {
        let actor = actor.to_string();
        let (before, after) = (stored(&change.before), stored(&change.after));
        if let Some(pg) = self.postgres() {
            return crate::postgres::audit::record(
                pg,
                &actor,
                change.action.as_str(),
                &change.target,
                before.as_deref(),
                after.as_deref(),
            );
        }
        let conn = self.lock()?;
        conn.execute(
            "INSERT INTO audit (actor, action, target, before, after) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![actor, change.action.as_str(), change.target, before, after],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Entries of the trail matching `filter`, newest first.
    pub fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::audit::entries(pg, filter);
        }
        let conn = self.lock()?;
        let limit = if filter.limit == 0 {
            -1
        } else {
            filter.limit as i64
        };
        let mut st = conn.prepare(
            "SELECT id, at, actor, action, target, before, after FROM audit
             WHERE (?1 IS NULL OR action = ?1)
               AND (?2 IS NULL OR target LIKE ?2 ESCAPE '\\')
               AND (?3 IS NULL OR actor = ?3)
               AND (?4 IS NULL OR id > ?4)
             ORDER BY id DESC LIMIT ?5",
        )?;
        let rows = st.query_map(
            params![
                filter.action,
                filter.target.as_deref().map(target_pattern),
                filter.actor,
                filter.after_id,
                limit
            ],
            |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    before: parsed(r.get(5)?),
                    after: parsed(r.get(6)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    on_both!(records_reads_and_filters);
    fn records_reads_and_filters(db: Database) {
        let ops = Actor::Token("ops".into());
        let ana = Actor::Cli("ana".into());
        let first = db
            .record_change(
                &ana,
                &Change::new(Action::PipelineApply, "pipeline/p_1")
                    .after(json!({"entity": "contact"})),
            )
            .unwrap();
        let second = db
            .record_change(
                &ops,
                &Change::new(Action::PipelinePause, "pipeline/p1")
                    .before(json!({"paused": false}))
                    .after(json!({"paused": true})),
            )
            .unwrap();
        db.record_change(&ops, &Change::new(Action::TokenRevoke, "token/old"))
            .unwrap();
        assert!(second > first);

        let all = db.audit_entries(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].action, "token.revoke", "newest first");
        assert_eq!(all[2].actor, "cli:ana");
        assert_eq!(all[2].after, Some(json!({"entity": "contact"})));
        assert_eq!(all[1].before, Some(json!({"paused": false})));

        let by = |f: AuditFilter| -> Vec<i64> {
            db.audit_entries(&f).unwrap().iter().map(|e| e.id).collect()
        };
        let pipeline_p1 = by(AuditFilter {
            target: Some("pipeline/p1".into()),
            ..AuditFilter::default()
        });
        // `_` is not a wildcard: pipeline/p_1 is another target.
        assert_eq!(pipeline_p1, vec![second]);
        let pipelines = by(AuditFilter {
            target: Some("pipeline/".into()),
            ..AuditFilter::default()
        });
        assert_eq!(pipelines, vec![second, first]);
        let from_ops = by(AuditFilter {
            actor: Some("token:ops".into()),
            limit: 1,
            ..AuditFilter::default()
        });
        assert_eq!(from_ops.len(), 1);
        let after_first = by(AuditFilter {
            after_id: Some(first),
            ..AuditFilter::default()
        });
        assert_eq!(after_first.len(), 2);
    }

    on_both!(refuses_rewriting_history);
    fn refuses_rewriting_history(db: Database) {
        db.record_change(
            &Actor::Cli("ana".into()),
            &Change::new(Action::TokenCreate, "token/t"),
        )
        .unwrap();
        let (update, delete) = (
            "UPDATE audit SET actor = 'someone else'",
            "DELETE FROM audit",
        );
        if let Some(pg) = db.postgres() {
            for sql in [update, delete] {
                let e = pg
                    .with(async |c| Ok(c.batch_execute(sql).await?))
                    .unwrap_err();
                assert!(e.to_string().contains("append-only"), "{sql}: {e}");
            }
        } else {
            let conn = db.lock().unwrap();
            for sql in [update, delete] {
                let e = conn.execute_batch(sql).unwrap_err();
                assert!(e.to_string().contains("append-only"), "{sql}: {e}");
            }
        }
        let all = db.audit_entries(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].actor, "cli:ana");
    }
}

//! Moving an installation from its SQLite file to PostgreSQL (`nexo db
//! copy`): every table of the schema, row for row, in one PostgreSQL
//! transaction, so the target ends up with all of it or nothing.
//!
//! The source must be at this build's schema (a file an older nexo wrote
//! is opened — and so migrated — by this nexo first); the target must be
//! migrated (`nexo db migrate`) and empty. Values are converted by the
//! PostgreSQL column's type (`information_schema.columns`): BIGINT from
//! SQLite's integers, BYTEA from its blobs, TEXT from its text, so a
//! column the two schemas disagree on is refused by name instead of
//! copied wrongly. Afterwards the identity columns (`runs.run_id`, `audit.id`, `match_reviews.id`,
//! `dead_letters.id`, `conflicts.id`) and the `entity_ids` sequence are
//! set past the copied maxima, so rows the hosts add never collide.
//!
//! Secrets stay sealed: their bytes are copied as they are, so the hosts
//! on the new database must use the same sealing key as the old one
//! (`NEXO_SECRET_KEY`, or the `secret.key` file of the old data
//! directory), or they cannot open connections' secrets and tokens.

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use crate::postgres::Transaction;
use crate::{Database, StoreError};

/// Every table of the schema, in an order where a row's foreign keys point
/// at tables copied before it. `schema_versions` is not data: the target
/// has its own (PostgreSQL's histories differ from SQLite's).
pub const TABLES: &[&str] = &[
    // kv
    "plugin_kv",
    // trust
    "trusted_keys",
    // registry
    "plugins",
    "plugin_versions",
    // connections
    "connections",
    "connection_secrets",
    "connection_oauth",
    // sync
    "pipelines",
    "entity_links",
    "link_sync",
    "runs",
    "run_records",
    "run_log",
    "dead_letters",
    "conflicts",
    "settings",
    "match_reviews",
    "match_passes",
    // daemon
    "api_tokens",
    "webhook_secrets",
    "connection_health",
    // audit
    "audit",
    // alerts
    "alert_channels",
    "alert_rules",
    "alert_incidents",
    "alert_deliveries",
];

/// PostgreSQL's tables of several hosts (`crate::cluster`), which a SQLite
/// installation has no rows for: the hosts and their leases are those of
/// the hosts that will run, and the bundles are put there from the data
/// directory by `nexo db copy`, not from the database file.
pub const CLUSTER_ONLY: &[&str] = &[
    "hosts",
    "pipeline_leases",
    "plugin_bundles",
    "webhook_deliveries",
];

/// Parameters of one INSERT at most (PostgreSQL's limit is 65 535).
const MAX_PARAMS: usize = 30_000;
/// Rows of one INSERT at most.
const MAX_ROWS: usize = 1_000;

/// What [`copy`] copied: rows per table, in the order copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`, every table of [`TABLES`].
    pub tables: Vec<(&'static str, u64)>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for CopyReport {
    /// One `table: rows` line per table.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, rows) in &self.tables {
            writeln!(f, "{table}: {rows}")?;
        }
        Ok(())
    }
}

fn refused(why: String) -> StoreError {
    StoreError::CopyRefused(why)
}

/// Copy every row of the SQLite database `from` into the PostgreSQL
/// database `to`, which must be migrated to this build's schema and hold
/// no rows; all in one PostgreSQL transaction (on any error nothing is
/// left in `to`). `from` is read in one SQLite read transaction; stop the
/// hosts using it first, or rows they write meanwhile are not copied.
///
/// Refused: `from` not SQLite or `to` not PostgreSQL; `from` at another
/// schema version than this build's newest (open it with this nexo first,
/// which migrates it); a table in `from` this build does not know; any
/// row already in `to`; a column whose value does not fit the
/// PostgreSQL column's type.
///
/// Sealed values (connections' secrets, OAuth tokens, webhook secrets)
/// are copied as sealed bytes: the hosts on `to` need the same sealing
/// key (`NEXO_SECRET_KEY` or the old data directory's `secret.key`).
pub fn copy(from: &Database, to: &Database) -> Result<CopyReport, StoreError> {
    if from.postgres().is_some() {
        return Err(refused(
            "the source must be a SQLite database (sqlite:PATH)".into(),
        ));
    }
    let Some(pg) = to.postgres() else {
        return Err(refused(
            "the target must be a PostgreSQL database (postgres://…)".into(),
        ));
    };
    check_source_versions(from)?;
    let mut sqlite = from.lock()?;
    let source = sqlite.transaction()?;
    check_source_tables(&source)?;
    let report = pg.transaction(async |tx| {
        for table in TABLES {
            let has_rows = tx
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .await?
                .try_get::<_, bool>(0)?;
            if has_rows {
                return Err(refused(format!(
                    "the target database already holds rows in `{table}`: copy needs an empty database that `nexo db migrate` has migrated"
                )));
            }
        }
        let mut report = CopyReport::default();
        for table in TABLES {
            let rows = copy_table(&source, tx, table).await?;
            tracing::info!(table, rows, "table copied");
            report.tables.push((table, rows));
        }
        set_sequences(tx).await?;
        Ok(report)
    })?;
    // Nothing was written to the source: end its read transaction.
    source.rollback()?;
    Ok(report)
}

fn check_source_versions(from: &Database) -> Result<(), StoreError> {
    let found = from.schema_versions()?;
    for c in crate::schema::COMPONENTS {
        let newest = c.migrations.len() as i64;
        let at = found.get(c.name).copied().unwrap_or(0);
        if at != newest {
            return Err(refused(format!(
                "the source database's `{}` schema is at version {at}, this nexo's is {newest}: open it with this nexo first (any command that opens it migrates it), then copy",
                c.name
            )));
        }
    }
    Ok(())
}

/// Every table of the source that holds data, as SQLite lists it.
fn source_tables(conn: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare(
        "SELECT name FROM sqlite_master
          WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
            AND name <> 'schema_versions'
          ORDER BY name",
    )?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn check_source_tables(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    for table in source_tables(conn)? {
        if !TABLES.contains(&table.as_str()) {
            return Err(refused(format!(
                "the source database has a table `{table}` this nexo does not know how to copy; was it written by a newer nexo?"
            )));
        }
    }
    Ok(())
}

/// PostgreSQL's columns of `table`: name and type, in table order.
async fn target_columns(
    tx: &Transaction<'_>,
    table: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = $1
              ORDER BY ordinal_position",
            &[&table],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

fn source_columns(conn: &rusqlite::Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let rows = st.query_map([table], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A value for one PostgreSQL column.
#[derive(Debug)]
enum Cell {
    Int(Option<i64>),
    Bytes(Option<Vec<u8>>),
    Text(Option<String>),
}

impl Cell {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Int(v) => v,
            Cell::Bytes(v) => v,
            Cell::Text(v) => v,
        }
    }
}

/// SQLite's value as the PostgreSQL column's type wants it.
fn convert(value: Value, pg_type: &str, table: &str, column: &str) -> Result<Cell, StoreError> {
    let wrong = |what: &str| {
        refused(format!(
            "`{table}.{column}` holds {what} in the source, which does not fit PostgreSQL's {pg_type}"
        ))
    };
    Ok(match (pg_type, value) {
        ("bigint", Value::Null) => Cell::Int(None),
        ("bigint", Value::Integer(i)) => Cell::Int(Some(i)),
        ("bigint", Value::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
            Cell::Int(Some(f as i64))
        }
        ("bigint", Value::Text(t)) => Cell::Int(Some(
            t.trim()
                .parse()
                .map_err(|_| wrong(&format!("the text {t:?}")))?,
        )),
        ("bytea", Value::Null) => Cell::Bytes(None),
        ("bytea", Value::Blob(b)) => Cell::Bytes(Some(b)),
        ("bytea", Value::Text(t)) => Cell::Bytes(Some(t.into_bytes())),
        ("text", Value::Null) => Cell::Text(None),
        ("text", Value::Text(t)) => Cell::Text(Some(t)),
        ("text", Value::Integer(i)) => Cell::Text(Some(i.to_string())),
        ("text", Value::Real(f)) => Cell::Text(Some(f.to_string())),
        ("text", Value::Blob(b)) => Cell::Text(Some(
            String::from_utf8(b).map_err(|_| wrong("a blob that is not UTF-8"))?,
        )),
        ("bigint" | "bytea", other) => return Err(wrong(&format!("{:?}", other.data_type()))),
        (_, _) => {
            return Err(refused(format!(
                "`{table}.{column}` is of type {pg_type} on PostgreSQL, which copy does not know"
            )));
        }
    })
}

/// Copy one table in multi-row INSERTs; the rows copied.
async fn copy_table(
    source: &rusqlite::Connection,
    tx: &Transaction<'_>,
    table: &str,
) -> Result<u64, StoreError> {
    let columns = target_columns(tx, table).await?;
    if columns.is_empty() {
        return Err(refused(format!(
            "the target database has no table `{table}`: migrate it with `nexo db migrate` first"
        )));
    }
    let in_source = source_columns(source, table)?;
    for (name, _) in &columns {
        if !in_source.contains(name) {
            return Err(refused(format!(
                "`{table}.{name}` exists on PostgreSQL but not in the source: open the source with this nexo first"
            )));
        }
    }
    for name in &in_source {
        if !columns.iter().any(|(c, _)| c == name) {
            return Err(refused(format!(
                "`{table}.{name}` exists in the source but not on PostgreSQL: its data would be lost"
            )));
        }
    }
    let names = columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let per_batch = (MAX_PARAMS / columns.len()).clamp(1, MAX_ROWS);
    let mut st = source.prepare(&format!("SELECT {names} FROM \"{table}\""))?;
    let mut rows = st.query([])?;
    let mut batch: Vec<Cell> = Vec::with_capacity(per_batch * columns.len());
    let mut copied = 0u64;
    loop {
        let row = rows.next()?;
        if let Some(row) = row {
            for (i, (name, pg_type)) in columns.iter().enumerate() {
                batch.push(convert(row.get::<_, Value>(i)?, pg_type, table, name)?);
            }
        }
        let full = batch.len() == per_batch * columns.len();
        if (full || row.is_none()) && !batch.is_empty() {
            let n = batch.len() / columns.len();
            let sql = insert_sql(table, &names, columns.len(), n);
            let statement = tx.prepare_cached(&sql).await?;
            let params: Vec<&(dyn ToSql + Sync)> = batch.iter().map(Cell::param).collect();
            tx.execute(&statement, &params).await?;
            copied += n as u64;
            batch.clear();
        }
        if row.is_none() {
            return Ok(copied);
        }
    }
}

fn insert_sql(table: &str, names: &str, width: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({names}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Move the identity columns and the entity id sequence past what was
/// copied: the next value is the copied maximum + 1 (1 on an empty table).
async fn set_sequences(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('runs', 'run_id'),
                       COALESCE((SELECT MAX(run_id) FROM runs), 0) + 1, false);
         SELECT setval(pg_get_serial_sequence('dead_letters', 'id'),
                       COALESCE((SELECT MAX(id) FROM dead_letters), 0) + 1, false);
         SELECT setval(pg_get_serial_sequence('conflicts', 'id'),
                       COALESCE((SELECT MAX(id) FROM conflicts), 0) + 1, false);
         SELECT setval(pg_get_serial_sequence('match_reviews', 'id'),
                       COALESCE((SELECT MAX(id) FROM match_reviews), 0) + 1, false);
         SELECT setval(pg_get_serial_sequence('audit', 'id'),
                       COALESCE((SELECT MAX(id) FROM audit), 0) + 1, false);
         SELECT setval(pg_get_serial_sequence('alert_incidents', 'id'),
                       COALESCE((SELECT MAX(id) FROM alert_incidents), 0) + 1, false);
         SELECT setval('entity_ids', GREATEST(
                       COALESCE((SELECT MAX(entity_id) FROM entity_links), 0),
                       COALESCE((SELECT MAX(entity_id) FROM conflicts), 0)) + 1, false);",
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::connections::{ConnectionGrants, ConnectionRow, Environment, SealedSecret};
    use crate::oauth::{OAuthRow, OAuthStatus, Sealed};
    use crate::registry::{CapabilityGrant, VersionRow};
    use crate::test_sql::{exec, texts};

    /// Links enough to span several INSERTs.
    const LINKS: i64 = 2_500;

    fn empty_target() -> (Database, String) {
        let url = crate::postgres::testing::database().unwrap();
        (Database::migrate_postgres(&url).unwrap().0, url)
    }

    /// A SQLite database with rows in every table: the public APIs where
    /// this crate has them, raw SQL for the sync engine's tables.
    fn filled() -> Database {
        let db = Database::in_memory().unwrap();
        let kv = db.kv_store();
        let ns = kv.namespace("acme/crm/crm", 1 << 20);
        ns.set("cursor", &[0, 255, 1]).unwrap();
        ns.set("é/empty", &[]).unwrap();
        db.trust_key(
            &nexo_bundle::keys::SecretKey::generate("acme")
                .unwrap()
                .public(),
        )
        .unwrap();
        for v in ["1.0.0", "1.1.0"] {
            db.insert_version(&VersionRow {
                plugin_id: "acme/crm".into(),
                version: semver::Version::parse(v).unwrap(),
                kind: "connector".into(),
                wit_version: "1.0.0".into(),
                manifest: r#"{"id":"acme/crm","note":"it's"}"#.into(),
                bundle_sha256: "b".repeat(64),
                component_sha256: "c".repeat(64),
                signer_key_id: (v == "1.1.0").then(|| "k1".to_string()),
                grants: CapabilityGrant::default(),
                installed_at: String::new(),
            })
            .unwrap();
        }
        for (name, pinned) in [
            ("crm", None),
            ("books", Some(semver::Version::new(1, 0, 0))),
        ] {
            db.insert_connection(
                &ConnectionRow {
                    name: name.into(),
                    plugin_id: "acme/crm".into(),
                    pinned_version: pinned,
                    environment: Environment::Sandbox,
                    config: r#"{"base":"https://crm.example"}"#.into(),
                    grants: ConnectionGrants {
                        http: vec!["https://crm.example".into()],
                        requests_per_minute: Some(60),
                        ..Default::default()
                    },
                },
                &[SealedSecret {
                    name: "token".into(),
                    nonce: vec![1; 12],
                    sealed: vec![0, 7, 255],
                }],
            )
            .unwrap();
        }
        db.save_oauth(
            &OAuthRow {
                connection: "books".into(),
                flow: "authorization-code".into(),
                client_id: "client".into(),
                client_secret: None,
                access_token: Sealed {
                    nonce: vec![2; 12],
                    sealed: vec![3, 4],
                },
                refresh_token: Some(Sealed {
                    nonce: vec![5; 12],
                    sealed: vec![6],
                }),
                issued_at_ms: 1_700_000_000_000,
                expires_at_ms: i64::MAX,
                generation: 0,
                status: OAuthStatus::Authorized,
                reason: None,
                tenant: Some("t1".into()),
            },
            None,
        )
        .unwrap();
        exec(
            &db,
            &format!(
                r#"INSERT INTO pipelines (name, definition, paused, state, destination_state, paused_reason)
                     VALUES ('p', '{{"source":{{"connection":"crm"}}}}', 1, '{{"cursor":"x''y"}}', NULL, 'maintenance'),
                            ('q', '{{}}', 0, NULL, '{{}}', NULL);
                   INSERT INTO entity_links (connection, stream, record_id, entity_id, entity, known,
                            synced_hash, version, deleted, seen_run, synced_connection, synced_stream)
                     SELECT 'crm', 'contacts', 'r' || i, i * 3, 'customer',
                            CASE WHEN i % 2 = 0 THEN '{{"a":1}}' END, 'h' || i, NULL, i % 2, 9,
                            CASE WHEN i % 3 = 0 THEN 'books' END, NULL
                       FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LINKS})
                             SELECT i FROM n);
                   INSERT INTO link_sync VALUES ('crm', 'contacts', 'r1', 'customer', 'books', 'invoices', 'h');
                   INSERT INTO runs (run_id, pipeline, status, started_at, finished_at, duration_ms, pages,
                            read, error, host, lease_until_ms)
                     VALUES (5, 'p', 'succeeded', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.500Z', 1500, 2, 10, NULL, NULL, NULL),
                            (9, 'p', 'running', '2026-01-02T00:00:00.000Z', NULL, NULL, 0, 0, 'ünïcode', 'host-a', 1767312000000);
                   INSERT INTO run_records VALUES (5, 1, 'r1', 'd1', 'created', NULL), (5, 2, 'r2', NULL, 'failed', 'bad');
                   INSERT INTO run_log (run_id, seq, level, message) VALUES (5, 1, 'info', 'started'), (9, 1, 'warn', 'slow');
                   INSERT INTO dead_letters (id, pipeline, run_id, kind, source_id, record, error, class, field, attempts)
                     VALUES (4, 'p', 5, 'write', 'r2', '{{}}', 'bad', 'rejected', 'email', 3),
                            (12, 'p', 9, 'write', 'r3', '{{}}', 'worse', 'rejected', NULL, 1);
                   INSERT INTO conflicts (id, pipeline, run_id, entity_id, source_id, destination_id, source_record,
                            destination_payload, fields, status, resolution)
                     VALUES (3, 'p', 5, {big}, 'r1', 'd1', '{{}}', '{{}}', '["email"]', 'open', NULL);
                   INSERT INTO settings VALUES ('instance', 'abc');
                   INSERT INTO match_reviews (id, pipeline, source_id, source_record, mapped, candidates,
                            why, status, chosen, decided_by, decided_at, delivered_run)
                     VALUES (6, 'p', 'r4', '{{"id":"r4"}}', '{{}}', '[]', 'two share a name', 'open', NULL, NULL, NULL, NULL),
                            (8, 'p', 'r5', '{{"id":"r5"}}', '{{}}', '[]', 'similar', 'accepted', 'd5', 'cli:ana', '2026-01-02T00:00:00.000Z', 9);
                   INSERT INTO match_passes (pipeline, at, linked, queued, unmatched, already)
                     VALUES ('p', '2026-01-01T00:00:00.000Z', 3, 2, 1, 0);"#,
                big = LINKS * 3 + 100,
            ),
        );
        db.insert_token("ci", "nexo_token_1", crate::service::Role::Operator)
            .unwrap();
        db.check_token("nexo_token_1").unwrap();
        db.set_webhook_secret("p", &[8; 12], &[9, 9]).unwrap();
        db.set_health("crm", Some("401")).unwrap();
        db.set_health("books", None).unwrap();
        for n in 0..3 {
            db.record_change(
                &crate::audit::Actor::Cli("ana".into()),
                &crate::audit::Change::new(
                    crate::audit::Action::PipelinePause,
                    format!("pipeline/p{n}"),
                ),
            )
            .unwrap();
        }
        db.add_alert_channel(
            "ops",
            crate::alerts::ChannelKind::Webhook,
            r#"{"url":"http://127.0.0.1:9/h"}"#,
            Some((&[7; 12], &[1, 2])),
        )
        .unwrap();
        db.add_alert_rule(&crate::alerts::RuleRow {
            name: "failed".into(),
            condition: r#"{"kind":"run-failed"}"#.into(),
            channels: vec!["ops".into()],
            quiet_hours: Some(r#"{"from":"22:00","to":"07:00","utc_offset_minutes":60}"#.into()),
        })
        .unwrap();
        exec(
            &db,
            "INSERT INTO alert_incidents (id, rule, subject, summary, opened_at, last_seen_at)
                 VALUES (7, 'failed', 'pipeline:p', 'run 9 failed', '2026-01-02T00:00:00.000Z', '2026-01-02T00:00:00.000Z');
             INSERT INTO alert_deliveries (incident, channel, notice, status, attempts, claimed_until_ms)
                 VALUES (7, 'ops', 'opened', 'pending', 1, 1767312000000);",
        );
        db
    }

    /// Every row of `table`, each value as text (blobs in hex), sorted.
    fn rows_of(
        db: &Database,
        table: &str,
        columns: &[(String, String)],
    ) -> Vec<Vec<Option<String>>> {
        let mut rows = if db.postgres().is_some() {
            let select = columns
                .iter()
                .map(|(c, t)| match t.as_str() {
                    "bytea" => format!("encode({c}, 'hex')"),
                    _ => format!("CAST({c} AS TEXT)"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            texts(db, &format!("SELECT {select} FROM {table}"))
        } else {
            let names = columns
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let conn = db.lock().unwrap();
            let mut st = conn
                .prepare(&format!("SELECT {names} FROM {table}"))
                .unwrap();
            st.query_map([], |r| {
                (0..columns.len())
                    .map(|i| {
                        Ok(match r.get::<_, Value>(i)? {
                            Value::Null => None,
                            Value::Integer(n) => Some(n.to_string()),
                            Value::Real(f) => Some(f.to_string()),
                            Value::Text(t) => Some(t),
                            Value::Blob(b) => Some(hex::encode(b)),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        rows.sort();
        rows
    }

    fn columns_of(pg: &Database, table: &str) -> Vec<(String, String)> {
        pg.postgres()
            .unwrap()
            .transaction(async |tx| target_columns(tx, table).await)
            .unwrap()
    }

    #[test]
    fn every_table_is_copied_row_for_row_and_new_ids_come_after_the_copied_ones() {
        let from = filled();
        let (to, url) = empty_target();
        let report = copy(&from, &to).unwrap();
        assert_eq!(
            report.tables.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            TABLES
        );
        for table in TABLES {
            let columns = columns_of(&to, table);
            let source = rows_of(&from, table, &columns);
            assert!(!source.is_empty(), "the test leaves `{table}` empty");
            assert_eq!(rows_of(&to, table, &columns), source, "{table}");
            let counted = report.tables.iter().find(|(t, _)| t == table).unwrap().1;
            assert_eq!(counted, source.len() as u64, "{table}");
        }
        assert_eq!(
            report
                .tables
                .iter()
                .find(|(t, _)| *t == "entity_links")
                .unwrap()
                .1,
            LINKS as u64
        );
        // The stores read the same on the copy; hosts can connect to it.
        let to = Database::connect(&url).unwrap();
        assert_eq!(to.oauth("books").unwrap(), from.oauth("books").unwrap());
        assert_eq!(
            to.connection("crm").unwrap(),
            from.connection("crm").unwrap()
        );
        assert_eq!(to.tokens().unwrap(), from.tokens().unwrap());
        let trail = crate::audit::AuditFilter::default();
        assert_eq!(
            to.audit_entries(&trail).unwrap(),
            from.audit_entries(&trail).unwrap()
        );
        let next = to
            .record_change(
                &crate::audit::Actor::Token("ops".into()),
                &crate::audit::Change::new(crate::audit::Action::PipelineResume, "pipeline/p0"),
            )
            .unwrap();
        assert_eq!(next, 4, "the trail goes on past the copied entries");
        assert_eq!(
            to.check_token("nexo_token_1").unwrap().map(|t| t.name),
            Some("ci".to_string())
        );
        assert_eq!(
            to.kv_store()
                .namespace("acme/crm/crm", 1 << 20)
                .get("cursor")
                .unwrap(),
            Some(vec![0, 255, 1])
        );
        // New rows take ids past the copied ones.
        let (run, dead, conflict, entity, incident) = to
            .postgres()
            .unwrap()
            .with(async |c| {
                let one = async |sql: &str| -> Result<i64, StoreError> {
                    Ok(c.query_one(sql, &[]).await?.try_get(0)?)
                };
                Ok((
                    one("INSERT INTO runs (pipeline, status) VALUES ('p', 'running') RETURNING run_id").await?,
                    one("INSERT INTO dead_letters (pipeline, run_id, kind, source_id, record, error, class, attempts)
                         VALUES ('p', 9, 'write', 'r9', '{}', 'e', 'rejected', 1) RETURNING id").await?,
                    one("INSERT INTO conflicts (pipeline, run_id, entity_id, source_id, destination_id, source_record,
                             destination_payload, fields, status)
                         VALUES ('p', 9, 1, 's', 'd', '{}', '{}', '[]', 'open') RETURNING id").await?,
                    one("SELECT nextval('entity_ids')").await?,
                    one("INSERT INTO alert_incidents (rule, subject, summary, opened_at, last_seen_at)
                         VALUES ('failed', 'pipeline:q', 's', 't', 't') RETURNING id").await?,
                ))
            })
            .unwrap();
        assert_eq!((run, dead, conflict, incident), (10, 13, 4, 8));
        assert_eq!(
            entity,
            LINKS * 3 + 101,
            "past the links' and conflicts' entity ids"
        );
    }

    #[test]
    fn a_target_holding_rows_is_refused_by_table() {
        let from = filled();
        let (to, _) = empty_target();
        exec(&to, "INSERT INTO settings VALUES ('x', 'y')");
        let err = copy(&from, &to).unwrap_err().to_string();
        assert!(err.contains("`settings`"), "{err}");
        assert!(err.contains("empty database"), "{err}");
        assert_eq!(
            texts(&to, "SELECT key FROM plugin_kv"),
            Vec::<Vec<Option<String>>>::new()
        );
    }

    #[test]
    fn a_source_at_another_schema_version_is_refused() {
        let from = filled();
        exec(
            &from,
            "UPDATE schema_versions SET version = version - 1 WHERE component = 'sync'",
        );
        let (to, _) = empty_target();
        let err = copy(&from, &to).unwrap_err().to_string();
        assert!(err.contains("`sync` schema"), "{err}");
        assert!(err.contains("open it with this nexo first"), "{err}");
        // And the wrong way round.
        let err = copy(&to, &from).unwrap_err().to_string();
        assert!(err.contains("must be a SQLite database"), "{err}");
    }

    /// Copy knows every table both schemas have: a table added to either
    /// without being added to [`TABLES`] fails here.
    #[test]
    fn copy_knows_every_table_of_both_schemas() {
        let mut known: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        known.sort();
        let sqlite = Database::in_memory().unwrap();
        assert_eq!(source_tables(&sqlite.lock().unwrap()).unwrap(), known);
        let (pg, _) = empty_target();
        let on_pg: Vec<String> = texts(
            &pg,
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = current_schema() AND table_name <> 'schema_versions'
              ORDER BY table_name",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
        let mut with_cluster = known.clone();
        with_cluster.extend(CLUSTER_ONLY.iter().map(|t| t.to_string()));
        with_cluster.sort();
        assert_eq!(on_pg, with_cluster);
        // At run time too: a table copy does not know is refused by name.
        let from = filled();
        exec(&from, "CREATE TABLE extra (x TEXT)");
        let err = copy(&from, &pg).unwrap_err().to_string();
        assert!(err.contains("`extra`"), "{err}");
    }

    /// A value that does not fit stops the copy, and what was copied
    /// before it is not left behind: one transaction.
    #[test]
    fn a_value_that_does_not_fit_refuses_the_whole_copy() {
        let from = filled();
        exec(&from, "UPDATE runs SET pages = 'many' WHERE run_id = 5");
        let (to, _) = empty_target();
        let err = copy(&from, &to).unwrap_err().to_string();
        assert!(err.contains("`runs.pages`"), "{err}");
        assert!(err.contains("\"many\""), "{err}");
        for table in ["plugin_kv", "connections", "entity_links"] {
            assert_eq!(
                texts(&to, &format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}")),
                vec![vec![Some("0".to_string())]],
                "{table}"
            );
        }
    }
}

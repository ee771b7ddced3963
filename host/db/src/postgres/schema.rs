//! The schema on PostgreSQL: the same components as on SQLite (plugins'
//! key-value data, trust, the registry, connections, sync, the daemon),
//! each with its own numbered history in `schema_versions`. PostgreSQL's
//! histories begin at the shape SQLite's had reached when this backend was
//! added (one migration each); from here on a component's change is a
//! migration in both lists. Times are kept as UTC RFC 3339 text, as on
//! SQLite, so rows compare, sort and copy between the two unchanged.
//!
//! Several hosts may start at once against one database: [`migrate`] runs
//! under a transaction-scoped advisory lock, so one of them migrates and
//! the others then find it done.

use std::collections::BTreeMap;

use super::{GenericClient, Postgres};
use crate::StoreError;

/// The advisory lock key the migrations are serialised on ("nexo" + 1).
const MIGRATION_LOCK: i64 = 0x6e65_786f_0001;

/// Functions the tables' defaults and the stores' statements use for the
/// time, written as SQLite's `strftime` writes it (milliseconds, or
/// seconds), so text times from either database compare.
const CLOCK: &str = r#"
    CREATE OR REPLACE FUNCTION nexo_now_ms() RETURNS text LANGUAGE sql STABLE AS
      $$ SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
    CREATE OR REPLACE FUNCTION nexo_now_s() RETURNS text LANGUAGE sql STABLE AS
      $$ SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;
    CREATE OR REPLACE FUNCTION nexo_epoch_ms() RETURNS bigint LANGUAGE sql VOLATILE AS
      $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
    CREATE OR REPLACE FUNCTION nexo_time(t text) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
      $$ SELECT (t::timestamp) AT TIME ZONE 'UTC' $$;
"#;

const KV: &str = "CREATE TABLE plugin_kv (
         namespace TEXT NOT NULL,
         key TEXT NOT NULL,
         value BYTEA NOT NULL,
         PRIMARY KEY (namespace, key)
     );";

const TRUSTED_KEYS: &str = "CREATE TABLE trusted_keys (
         key_id TEXT PRIMARY KEY,
         public_key BYTEA NOT NULL,
         name TEXT NOT NULL,
         added_at TEXT NOT NULL DEFAULT nexo_now_s()
     );";

const PLUGINS: &str = "CREATE TABLE plugins (
         plugin_id TEXT PRIMARY KEY,
         active_version TEXT NOT NULL
     );
     CREATE TABLE plugin_versions (
         plugin_id TEXT NOT NULL,
         version TEXT NOT NULL,
         kind TEXT NOT NULL,
         wit_version TEXT NOT NULL,
         manifest TEXT NOT NULL,
         bundle_sha256 TEXT NOT NULL,
         component_sha256 TEXT NOT NULL,
         signer_key_id TEXT,
         grants TEXT NOT NULL,
         installed_at TEXT NOT NULL DEFAULT nexo_now_s(),
         PRIMARY KEY (plugin_id, version)
     );";

const CONNECTIONS: &str = "CREATE TABLE connections (
         name TEXT PRIMARY KEY,
         plugin_id TEXT NOT NULL REFERENCES plugins(plugin_id),
         pinned_version TEXT,
         environment TEXT NOT NULL CHECK (environment IN ('sandbox', 'production')),
         config TEXT NOT NULL,
         grants TEXT NOT NULL,
         created_at TEXT NOT NULL DEFAULT nexo_now_s()
     );
     CREATE TABLE connection_secrets (
         connection TEXT NOT NULL REFERENCES connections(name) ON DELETE CASCADE,
         name TEXT NOT NULL,
         nonce BYTEA NOT NULL,
         sealed BYTEA NOT NULL,
         PRIMARY KEY (connection, name)
     );
     CREATE TABLE connection_oauth (
         connection TEXT PRIMARY KEY REFERENCES connections(name) ON DELETE CASCADE,
         flow TEXT NOT NULL CHECK (flow IN ('authorization-code', 'client-credentials')),
         client_id TEXT NOT NULL,
         client_secret_nonce BYTEA,
         client_secret BYTEA,
         access_nonce BYTEA NOT NULL,
         access_token BYTEA NOT NULL,
         refresh_nonce BYTEA,
         refresh_token BYTEA,
         issued_at_ms BIGINT NOT NULL,
         expires_at_ms BIGINT NOT NULL,
         generation BIGINT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('authorized', 'needs-reauthorization')),
         reason TEXT,
         tenant TEXT,
         refreshing_until_ms BIGINT,
         paused_pipelines TEXT,
         authorized_at TEXT NOT NULL,
         refreshed_at TEXT
     );";

/// Sync's tables as SQLite's six migrations left them. Entity ids come
/// from a sequence: hosts committing at once must not both take MAX + 1.
const SYNC: &str = "
    CREATE TABLE pipelines (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        paused BIGINT NOT NULL DEFAULT 0,
        state TEXT,
        destination_state TEXT,
        updated_at TEXT NOT NULL DEFAULT nexo_now_ms()
    );
    CREATE SEQUENCE entity_ids AS BIGINT;
    CREATE TABLE entity_links (
        connection TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        entity_id BIGINT NOT NULL,
        entity TEXT NOT NULL,
        known TEXT,
        synced_hash TEXT,
        version TEXT,
        deleted BIGINT NOT NULL DEFAULT 0,
        seen_run BIGINT,
        updated_at TEXT NOT NULL DEFAULT nexo_now_ms(),
        synced_connection TEXT,
        synced_stream TEXT,
        PRIMARY KEY (connection, stream, record_id, entity)
    );
    CREATE INDEX entity_links_by_entity ON entity_links(entity_id, connection, stream);
    CREATE TABLE link_sync (
        connection TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        entity TEXT NOT NULL,
        peer_connection TEXT NOT NULL,
        peer_stream TEXT NOT NULL,
        synced_hash TEXT NOT NULL,
        PRIMARY KEY (connection, stream, record_id, entity, peer_connection, peer_stream)
    );
    CREATE TABLE runs (
        run_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL DEFAULT nexo_now_ms(),
        finished_at TEXT,
        duration_ms BIGINT,
        pages BIGINT NOT NULL DEFAULT 0,
        read BIGINT NOT NULL DEFAULT 0,
        created BIGINT NOT NULL DEFAULT 0,
        updated BIGINT NOT NULL DEFAULT 0,
        unchanged BIGINT NOT NULL DEFAULT 0,
        deleted BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        quarantined BIGINT NOT NULL DEFAULT 0,
        conflicts BIGINT NOT NULL DEFAULT 0,
        error TEXT,
        superseded BIGINT NOT NULL DEFAULT 0,
        stop_requested BIGINT NOT NULL DEFAULT 0,
        last_progress_at TEXT,
        matched BIGINT NOT NULL DEFAULT 0,
        skipped BIGINT NOT NULL DEFAULT 0,
        host TEXT,
        lease_until_ms BIGINT
    );
    CREATE INDEX runs_by_pipeline ON runs(pipeline, run_id);
    CREATE TABLE run_records (
        run_id BIGINT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        source_id TEXT NOT NULL,
        destination_id TEXT,
        outcome TEXT NOT NULL,
        detail TEXT,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE run_log (
        run_id BIGINT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        at TEXT NOT NULL DEFAULT nexo_now_ms(),
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE dead_letters (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        pipeline TEXT NOT NULL,
        run_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        source_id TEXT NOT NULL,
        record TEXT NOT NULL,
        error TEXT NOT NULL,
        class TEXT NOT NULL,
        field TEXT,
        attempts BIGINT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        created_at TEXT NOT NULL DEFAULT nexo_now_ms()
    );
    CREATE INDEX dead_letters_by_pipeline ON dead_letters(pipeline, status);
    CREATE INDEX dead_letters_by_source ON dead_letters(pipeline, source_id, status);
    CREATE TABLE conflicts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        pipeline TEXT NOT NULL,
        run_id BIGINT NOT NULL,
        entity_id BIGINT NOT NULL,
        source_id TEXT NOT NULL,
        destination_id TEXT NOT NULL,
        source_record TEXT NOT NULL,
        destination_payload TEXT NOT NULL,
        fields TEXT NOT NULL,
        status TEXT NOT NULL,
        resolution TEXT,
        created_at TEXT NOT NULL DEFAULT nexo_now_ms()
    );
    CREATE INDEX conflicts_by_entity ON conflicts(entity_id, status);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
";

/// Sync's second migration here (the eighth on SQLite): see
/// `crate::sync_schema::MATCHING`.
const MATCHING: &str = "
    ALTER TABLE runs ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE match_reviews (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        pipeline TEXT NOT NULL,
        source_id TEXT NOT NULL,
        source_record TEXT NOT NULL,
        mapped TEXT NOT NULL,
        candidates TEXT NOT NULL,
        why TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        chosen TEXT,
        decided_by TEXT,
        decided_at TEXT,
        delivered_run BIGINT,
        created_at TEXT NOT NULL DEFAULT nexo_now_ms()
    );
    CREATE UNIQUE INDEX match_reviews_waiting ON match_reviews(pipeline, source_id)
        WHERE delivered_run IS NULL;
    CREATE TABLE match_passes (
        pipeline TEXT PRIMARY KEY,
        at TEXT NOT NULL DEFAULT nexo_now_ms(),
        linked BIGINT NOT NULL,
        queued BIGINT NOT NULL,
        unmatched BIGINT NOT NULL,
        already BIGINT NOT NULL
    );
";

const DAEMON: &str = "
    ALTER TABLE pipelines ADD COLUMN paused_reason TEXT;
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL DEFAULT nexo_now_s(),
        last_used_at TEXT
    );
    CREATE TABLE webhook_secrets (
        pipeline TEXT PRIMARY KEY REFERENCES pipelines(name) ON DELETE CASCADE,
        nonce BYTEA NOT NULL,
        sealed BYTEA NOT NULL
    );
    CREATE TABLE connection_health (
        connection TEXT PRIMARY KEY REFERENCES connections(name) ON DELETE CASCADE,
        ok BIGINT NOT NULL,
        error TEXT,
        checked_at TEXT NOT NULL DEFAULT nexo_now_s()
    );
";

/// Every component on PostgreSQL, in the order a new database is built.
pub const COMPONENTS: &[crate::schema::Component] = &[
    crate::schema::Component {
        name: "kv",
        migrations: &[KV],
    },
    crate::schema::Component {
        name: "trust",
        migrations: &[TRUSTED_KEYS],
    },
    crate::schema::Component {
        name: "registry",
        migrations: &[PLUGINS],
    },
    crate::schema::Component {
        name: "connections",
        migrations: &[CONNECTIONS],
    },
    crate::schema::Component {
        name: "sync",
        // then matching before the first sync (review queue, passes)
        migrations: &[SYNC, MATCHING],
    },
    crate::schema::Component {
        name: "daemon",
        // then a role on every API token
        migrations: &[DAEMON, crate::service::ROLES],
    },
    crate::schema::Component {
        name: "audit",
        migrations: &[super::audit::MIGRATION],
    },
    crate::schema::Component {
        name: "alerts",
        // channels, rules, incidents and their notices' deliveries
        migrations: &[super::alerts::MIGRATION],
    },
    crate::schema::Component {
        name: "cluster",
        // hosts, pipeline leases and run requests, plugin bundles; then
        // the webhook deliveries accepted by any host
        migrations: &[
            crate::cluster::MIGRATION,
            crate::cluster::MIGRATION_WEBHOOKS,
        ],
    },
];

/// Each component's version (empty: a database nexo never migrated).
pub async fn versions(c: &impl GenericClient) -> Result<BTreeMap<String, i64>, StoreError> {
    let exists = c
        .query_opt("SELECT to_regclass('schema_versions')::text", &[])
        .await?
        .and_then(|r| r.get::<_, Option<String>>(0));
    if exists.is_none() {
        return Ok(BTreeMap::new());
    }
    let rows = c
        .query("SELECT component, version FROM schema_versions", &[])
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every component is at this build's newest version.
    Current,
    /// Some component is older (or missing): `nexo db migrate` brings it up.
    Behind,
}

/// Compare the database's versions with this build's: a component newer
/// than this build knows, or one it does not know, is refused by name.
pub fn check(found: &BTreeMap<String, i64>, target: &str) -> Result<State, StoreError> {
    let mut state = State::Current;
    for (name, version) in found {
        match COMPONENTS.iter().find(|c| c.name == name) {
            Some(c) if *version <= c.migrations.len() as i64 => {}
            Some(c) => {
                return Err(StoreError::TooNew {
                    path: target.to_string(),
                    found: *version,
                    known: c.migrations.len() as i64,
                });
            }
            None => {
                return Err(StoreError::Corrupt(format!(
                    "the database has a schema component `{name}` this nexo does not know; it was written by a newer nexo: upgrade nexo"
                )));
            }
        }
    }
    for c in COMPONENTS {
        if found.get(c.name).copied().unwrap_or(0) < c.migrations.len() as i64 {
            state = State::Behind;
        }
    }
    Ok(state)
}

/// Bring every component to its newest version in one transaction, under
/// the migration lock; the versions applied, per component (empty when
/// there was nothing to do).
pub fn migrate(pg: &Postgres) -> Result<Vec<(String, i64)>, StoreError> {
    let target = pg.target().to_string();
    pg.transaction(async |tx| {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (
                 component TEXT PRIMARY KEY,
                 version BIGINT NOT NULL
             )",
        )
        .await?;
        let found = versions(tx).await?;
        if check(&found, &target)? == State::Current {
            return Ok(Vec::new());
        }
        tx.batch_execute(CLOCK).await?;
        let mut applied = Vec::new();
        for c in COMPONENTS {
            let at = found.get(c.name).copied().unwrap_or(0);
            for (i, sql) in c.migrations.iter().enumerate().skip(at as usize) {
                tx.batch_execute(sql).await?;
                let version = i as i64 + 1;
                tx.execute(
                    "INSERT INTO schema_versions (component, version) VALUES ($1, $2)
                     ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    &[&c.name, &version],
                )
                .await?;
                tracing::info!(component = c.name, version, "database migrated");
                applied.push((c.name.to_string(), version));
            }
        }
        Ok(applied)
    })
}

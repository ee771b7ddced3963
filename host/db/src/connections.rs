//! Rows of connections and their sealed secrets.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Database, StoreError};

/// Sandbox (test systems) or production; each keeps its own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Test systems.
    Sandbox,
    /// Real systems.
    Production,
}

impl Environment {
    /// `sandbox` / `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sandbox" => Ok(Environment::Sandbox),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "environment `{other}` is not sandbox or production"
            )),
        }
    }
}

/// HTTP grants of one connection (the origins of *this* system) and the
/// pace its requests may go at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionGrants {
    /// Origins granted, public addresses only.
    pub http: Vec<String>,
    /// Exact origins granted including internal addresses.
    pub private_http: Vec<String>,
    /// Most requests per minute to this system, shared by every run of the
    /// connection in one process; more wait their turn. `None`: the default
    /// budget (the registry's `DEFAULT_REQUESTS_PER_MINUTE`);
    /// `Some(0)`: no limit, chosen explicitly. (Stored in the grants JSON;
    /// absent in rows saved before it existed, which get the default.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Origin overrides of a sandbox connection, `FROM` → `TO`: requests
    /// the plugin makes to `FROM` (one of the plugin's exact origins) are
    /// checked as `FROM` and sent to `TO` (e.g. `https://api.xero.com` →
    /// `http://127.0.0.1:7402`), which may be internal. Refused on
    /// production connections. (Absent in rows saved before it existed.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub origin_overrides: BTreeMap<String, String>,
}

/// A stored connection (secrets are kept apart, sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    /// Unique name.
    pub name: String,
    /// Installed plugin.
    pub plugin_id: String,
    /// A pinned version, or `None` to follow the plugin's active version.
    pub pinned_version: Option<semver::Version>,
    /// Environment.
    pub environment: Environment,
    /// Config JSON (validated against the plugin's schema when saved).
    pub config: String,
    /// HTTP grants.
    pub grants: ConnectionGrants,
}

/// A sealed secret of a connection.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    /// Secret name.
    pub name: String,
    /// Nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext.
    pub sealed: Vec<u8>,
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A connection from its stored columns (name, plugin, pinned version,
/// environment, config, grants).
pub(crate) fn connection_row(
    (name, plugin_id, pinned, env, config, grants): (
        String,
        String,
        Option<String>,
        String,
        String,
        String,
    ),
) -> Result<ConnectionRow, StoreError> {
    Ok(ConnectionRow {
        pinned_version: pinned
            .map(|v| semver::Version::parse(&v))
            .transpose()
            .map_err(corrupt)?,
        environment: env.parse().map_err(corrupt)?,
        grants: serde_json::from_str(&grants).map_err(corrupt)?,
        name,
        plugin_id,
        config,
    })
}

impl Database {
    /// Save a new connection and its sealed secrets, in one transaction.
    pub fn insert_connection(
        &self,
        row: &ConnectionRow,
        secrets: &[SealedSecret],
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::insert_connection(pg, row, secrets);
        }
        let grants = serde_json::to_string(&row.grants).map_err(corrupt)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO connections (name, plugin_id, pinned_version, environment, config, grants)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.name,
                row.plugin_id,
                row.pinned_version.as_ref().map(|v| v.to_string()),
                row.environment.as_str(),
                row.config,
                grants
            ],
        )?;
        for s in secrets {
            tx.execute(
                "INSERT INTO connection_secrets (connection, name, nonce, sealed) VALUES (?1, ?2, ?3, ?4)",
                params![row.name, s.name, s.nonce, s.sealed],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A connection by name.
    pub fn connection(&self, name: &str) -> Result<Option<ConnectionRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::connection(pg, name);
        }
        let raw = self
            .lock()?
            .query_row(
                "SELECT name, plugin_id, pinned_version, environment, config, grants FROM connections WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        raw.map(connection_row).transpose()
    }

    /// Names of all connections (optionally of one plugin), sorted.
    pub fn connection_names(&self, plugin_id: Option<&str>) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::connection_names(pg, plugin_id);
        }
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT name FROM connections WHERE ?1 IS NULL OR plugin_id = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![plugin_id], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The sealed secrets of a connection.
    pub fn connection_secrets(&self, name: &str) -> Result<Vec<SealedSecret>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::connection_secrets(pg, name);
        }
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT name, nonce, sealed FROM connection_secrets WHERE connection = ?1 ORDER BY name")?;
        let rows = stmt.query_map(params![name], |r| {
            Ok(SealedSecret {
                name: r.get(0)?,
                nonce: r.get(1)?,
                sealed: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Delete a connection and its secrets. Returns false when unknown.
    pub fn delete_connection(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::delete_connection(pg, name);
        }
        Ok(self
            .lock()?
            .execute("DELETE FROM connections WHERE name = ?1", params![name])?
            == 1)
    }

    /// Delete a plugin with all its versions, in one transaction.
    pub fn delete_plugin(&self, plugin_id: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::delete_plugin(pg, plugin_id);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM plugin_versions WHERE plugin_id = ?1",
            params![plugin_id],
        )?;
        tx.execute(
            "DELETE FROM plugins WHERE plugin_id = ?1",
            params![plugin_id],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// What a connection update replaces; `None` (or empty) keeps what is
/// stored.
#[derive(Debug, Clone, Default)]
pub struct ConnectionChange {
    /// The new config JSON (already validated).
    pub config: Option<String>,
    /// The new grants (origins and request budget).
    pub grants: Option<ConnectionGrants>,
    /// Secrets to set, replacing any of the same name.
    pub set_secrets: Vec<SealedSecret>,
    /// Names of secrets to delete.
    pub remove_secrets: Vec<String>,
}

/// What removing a connection did, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Removed; these pipelines used it and were paused.
    Removed {
        /// Pipelines paused, by name.
        paused: Vec<String>,
    },
    /// Not removed: these pipelines use it (and no force was given).
    InUse(Vec<String>),
    /// There is no connection by that name.
    Unknown,
}

/// Pipelines whose source or destination is `connection`, sorted.
pub(crate) fn pipelines_using(
    conn: &rusqlite::Connection,
    connection: &str,
) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT name FROM pipelines
          WHERE json_extract(definition, '$.source.connection') = ?1
             OR json_extract(definition, '$.destination.connection') = ?1
          ORDER BY name",
    )?;
    let rows = st.query_map(params![connection], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

// Connection maintenance: update in place, and removal guarded by the
// pipelines that use the connection (`nexo connection update|remove`).
impl Database {
    /// Pipelines whose source or destination is `connection`, sorted.
    pub fn pipelines_using_connection(&self, connection: &str) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::pipelines_using_connection(pg, connection);
        }
        let conn = self.lock()?;
        pipelines_using(&conn, connection)
    }

    /// Pipelines with the plugin `id` among their mappers, sorted.
    pub fn pipelines_using_mapper(&self, id: &str) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::pipelines_using_mapper(pg, id);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare_cached(
            "SELECT name FROM pipelines
              WHERE EXISTS (SELECT 1 FROM json_each(definition, '$.mappers')
                             WHERE json_extract(value, '$.plugin') = ?1)
              ORDER BY name",
        )?;
        let rows = st.query_map(params![id], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Apply `change` to the connection `name` in one transaction. Returns
    /// false (and changes nothing) when there is no such connection.
    pub fn update_connection(
        &self,
        name: &str,
        change: &ConnectionChange,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::update_connection(pg, name, change);
        }
        let grants = change
            .grants
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = tx.execute(
            "UPDATE connections SET config = COALESCE(?2, config), grants = COALESCE(?3, grants)
              WHERE name = ?1",
            params![name, change.config, grants],
        )?;
        if found == 0 {
            return Ok(false);
        }
        for secret in &change.remove_secrets {
            tx.execute(
                "DELETE FROM connection_secrets WHERE connection = ?1 AND name = ?2",
                params![name, secret],
            )?;
        }
        for s in &change.set_secrets {
            tx.execute(
                "INSERT INTO connection_secrets (connection, name, nonce, sealed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connection, name) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed",
                params![name, s.name, s.nonce, s.sealed],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Remove the connection `name` and its secrets, unless pipelines use
    /// it; with `pause_reason`, remove it anyway and pause those pipelines
    /// with that reason. The check and the removal are one transaction, so
    /// a pipeline saved meanwhile is either named or paused.
    pub fn remove_connection(
        &self,
        name: &str,
        pause_reason: Option<&str>,
    ) -> Result<Removal, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::connections::remove_connection(pg, name, pause_reason);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE name = ?1)",
            params![name],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(Removal::Unknown);
        }
        let users = pipelines_using(&tx, name)?;
        if !users.is_empty() {
            let Some(reason) = pause_reason else {
                return Ok(Removal::InUse(users));
            };
            for pipeline in &users {
                tx.execute(
                    "UPDATE pipelines SET paused = 1, paused_reason = ?2 WHERE name = ?1",
                    params![pipeline, reason],
                )?;
            }
        }
        tx.execute(
            "DELETE FROM connection_secrets WHERE connection = ?1",
            params![name],
        )?;
        tx.execute(
            "DELETE FROM connection_oauth WHERE connection = ?1",
            params![name],
        )?;
        tx.execute("DELETE FROM connections WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(Removal::Removed { paused: users })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grants_saved_before_request_budgets_still_read_and_none_is_not_written() {
        let old: ConnectionGrants =
            serde_json::from_str(r#"{"http": ["https://a.example"], "private_http": []}"#).unwrap();
        assert_eq!(old.requests_per_minute, None);
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"http":["https://a.example"],"private_http":[]}"#
        );
        let limited = ConnectionGrants {
            requests_per_minute: Some(120),
            ..old
        };
        let json = serde_json::to_string(&limited).unwrap();
        assert_eq!(
            serde_json::from_str::<ConnectionGrants>(&json).unwrap(),
            limited
        );
        let overridden = ConnectionGrants {
            origin_overrides: BTreeMap::from([(
                "https://api.xero.com:443".to_string(),
                "http://127.0.0.1:7402".to_string(),
            )]),
            ..limited
        };
        let json = serde_json::to_string(&overridden).unwrap();
        assert!(
            json.contains(
                r#""origin_overrides":{"https://api.xero.com:443":"http://127.0.0.1:7402"}"#
            ),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<ConnectionGrants>(&json).unwrap(),
            overridden
        );
    }

    use crate::test_sql::{exec, texts};

    on_both!(
        an_update_changes_only_what_it_names,
        removal_names_the_pipelines_using_it_and_force_pauses_them,
        connections_are_listed_read_and_deleted_with_their_secrets,
        pipelines_using_a_mapper_are_found_by_the_plugin,
    );

    fn with_connection(db: Database) -> Database {
        exec(
            &db,
            "INSERT INTO plugins (plugin_id, active_version) VALUES ('acme/crm', '1.0.0')",
        );
        let row = ConnectionRow {
            name: "crm".into(),
            plugin_id: "acme/crm".into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config: r#"{"a":1}"#.into(),
            grants: ConnectionGrants {
                http: vec!["https://crm.example".into()],
                private_http: vec![],
                requests_per_minute: Some(90),
                ..Default::default()
            },
        };
        let secret = |name: &str, byte: u8| SealedSecret {
            name: name.into(),
            nonce: vec![byte],
            sealed: vec![byte],
        };
        db.insert_connection(&row, &[secret("token", 1), secret("stale", 2)])
            .unwrap();
        db
    }

    fn pipeline(db: &Database, name: &str, source: &str, destination: &str) {
        let definition = format!(
            r#"{{"name":"{name}","source":{{"connection":"{source}","stream":"s"}},"destination":{{"connection":"{destination}","stream":"s"}}}}"#
        );
        exec(
            db,
            &format!("INSERT INTO pipelines (name, definition) VALUES ('{name}', '{definition}')"),
        );
    }

    fn an_update_changes_only_what_it_names(db: Database) {
        let db = with_connection(db);
        let change = ConnectionChange {
            set_secrets: vec![SealedSecret {
                name: "token".into(),
                nonce: vec![9],
                sealed: vec![9],
            }],
            remove_secrets: vec!["stale".into()],
            ..ConnectionChange::default()
        };
        assert!(db.update_connection("crm", &change).unwrap());
        let row = db.connection("crm").unwrap().unwrap();
        assert_eq!(row.config, r#"{"a":1}"#);
        assert_eq!(row.grants.requests_per_minute, Some(90));
        let secrets = db.connection_secrets("crm").unwrap();
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            (secrets[0].name.as_str(), secrets[0].sealed.as_slice()),
            ("token", &[9u8][..])
        );
        let config_only = ConnectionChange {
            config: Some(r#"{"a":2}"#.into()),
            ..ConnectionChange::default()
        };
        assert!(db.update_connection("crm", &config_only).unwrap());
        let row = db.connection("crm").unwrap().unwrap();
        assert_eq!(row.config, r#"{"a":2}"#);
        assert_eq!(row.grants.http, vec!["https://crm.example".to_string()]);
        assert!(!db.update_connection("nope", &config_only).unwrap());
    }

    fn removal_names_the_pipelines_using_it_and_force_pauses_them(db: Database) {
        let db = with_connection(db);
        pipeline(&db, "out", "crm", "erp");
        pipeline(&db, "in", "erp", "crm");
        pipeline(&db, "other", "erp", "books");
        assert_eq!(
            db.remove_connection("crm", None).unwrap(),
            Removal::InUse(vec!["in".into(), "out".into()])
        );
        assert!(db.connection("crm").unwrap().is_some());
        assert_eq!(
            db.remove_connection("nope", None).unwrap(),
            Removal::Unknown
        );
        assert_eq!(
            db.remove_connection("crm", Some("crm was removed"))
                .unwrap(),
            Removal::Removed {
                paused: vec!["in".into(), "out".into()]
            }
        );
        assert!(db.connection("crm").unwrap().is_none());
        assert!(db.connection_secrets("crm").unwrap().is_empty());
        let paused = texts(
            &db,
            "SELECT name, CAST(paused AS TEXT), paused_reason FROM pipelines ORDER BY name",
        );
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            paused,
            vec![
                vec![s("in"), s("1"), s("crm was removed")],
                vec![s("other"), s("0"), None],
                vec![s("out"), s("1"), s("crm was removed")],
            ]
        );
    }

    fn connections_are_listed_read_and_deleted_with_their_secrets(db: Database) {
        let db = with_connection(db);
        exec(
            &db,
            "INSERT INTO plugins (plugin_id, active_version) VALUES ('acme/erp', '2.0.0')",
        );
        let erp = ConnectionRow {
            name: "erp".into(),
            plugin_id: "acme/erp".into(),
            pinned_version: Some(semver::Version::new(2, 0, 0)),
            environment: Environment::Production,
            config: "{}".into(),
            grants: ConnectionGrants::default(),
        };
        db.insert_connection(&erp, &[]).unwrap();
        assert_eq!(db.connection("erp").unwrap(), Some(erp));
        assert_eq!(db.connection("nope").unwrap(), None);
        assert_eq!(db.connection_names(None).unwrap(), vec!["crm", "erp"]);
        assert_eq!(db.connection_names(Some("acme/erp")).unwrap(), vec!["erp"]);
        let names: Vec<String> = db
            .connection_secrets("crm")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["stale", "token"]);
        // A plugin with connections cannot go; without, it goes whole.
        assert!(db.delete_plugin("acme/erp").is_err());
        assert!(db.delete_connection("erp").unwrap());
        assert!(!db.delete_connection("erp").unwrap());
        db.delete_plugin("acme/erp").unwrap();
        assert_eq!(
            texts(&db, "SELECT plugin_id FROM plugins"),
            vec![vec![Some("acme/crm".to_string())]]
        );
        assert!(db.delete_connection("crm").unwrap());
        assert!(db.connection_secrets("crm").unwrap().is_empty());
    }

    fn pipelines_using_a_mapper_are_found_by_the_plugin(db: Database) {
        exec(
            &db,
            r#"INSERT INTO pipelines (name, definition) VALUES
                 ('b', '{"mappers": [{"plugin": "acme/map"}, {"plugin": "acme/other"}]}'),
                 ('a', '{"mappers": [{"plugin": "acme/map"}]}'),
                 ('c', '{"mappers": []}'),
                 ('d', '{"source": {"connection": "crm"}}')"#,
        );
        assert_eq!(
            db.pipelines_using_mapper("acme/map").unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(db.pipelines_using_mapper("acme/other").unwrap(), vec!["b"]);
        assert!(db.pipelines_using_mapper("acme/none").unwrap().is_empty());
        assert_eq!(db.pipelines_using_connection("crm").unwrap(), vec!["d"]);
    }
}

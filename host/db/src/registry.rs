//! Rows of the plugin registry: installed versions and which one is active.

use rusqlite::{OptionalExtension, params};

use super::{Database, StoreError};

pub use nexo_bundle::manifest::CapabilityGrant;

/// One installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// `vendor/name`.
    pub plugin_id: String,
    /// Semantic version.
    pub version: semver::Version,
    /// `connector` or `mapper`.
    pub kind: String,
    /// WIT version it was built against.
    pub wit_version: String,
    /// The manifest JSON.
    pub manifest: String,
    /// Digest of the bundle file in the content-addressed store.
    pub bundle_sha256: String,
    /// Digest of the component.
    pub component_sha256: String,
    /// Signing key, `None` for an unsigned development install.
    pub signer_key_id: Option<String>,
    /// What was granted.
    pub grants: CapabilityGrant,
    /// When.
    pub installed_at: String,
}

fn row_to_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<(VersionRow, String, String)> {
    let version: String = r.get(1)?;
    let grants: String = r.get(8)?;
    Ok((
        VersionRow {
            plugin_id: r.get(0)?,
            version: semver::Version::new(0, 0, 0),
            kind: r.get(2)?,
            wit_version: r.get(3)?,
            manifest: r.get(4)?,
            bundle_sha256: r.get(5)?,
            component_sha256: r.get(6)?,
            signer_key_id: r.get(7)?,
            grants: CapabilityGrant::default(),
            installed_at: r.get(9)?,
        },
        version,
        grants,
    ))
}

pub(crate) fn finish(parts: (VersionRow, String, String)) -> Result<VersionRow, StoreError> {
    let (mut row, version, grants) = parts;
    row.version = semver::Version::parse(&version).map_err(|e| {
        StoreError::Corrupt(format!("version `{version}` of {}: {e}", row.plugin_id))
    })?;
    row.grants = serde_json::from_str(&grants)
        .map_err(|e| StoreError::Corrupt(format!("grants of {}@{version}: {e}", row.plugin_id)))?;
    Ok(row)
}

pub(crate) const COLUMNS: &str = "plugin_id, version, kind, wit_version, manifest, bundle_sha256, component_sha256, signer_key_id, grants, installed_at";

impl Database {
    /// Record a new version and make it active, in one transaction.
    pub fn insert_version(&self, row: &VersionRow) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::registry::insert_version(pg, row);
        }
        let grants =
            serde_json::to_string(&row.grants).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute(
            &format!("INSERT INTO plugin_versions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))"),
            params![
                row.plugin_id,
                row.version.to_string(),
                row.kind,
                row.wit_version,
                row.manifest,
                row.bundle_sha256,
                row.component_sha256,
                row.signer_key_id,
                grants
            ],
        )?;
        tx.execute(
            "INSERT INTO plugins (plugin_id, active_version) VALUES (?1, ?2)
             ON CONFLICT (plugin_id) DO UPDATE SET active_version = excluded.active_version",
            params![row.plugin_id, row.version.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Make an installed version the active one.
    pub fn set_active_version(
        &self,
        plugin_id: &str,
        version: &semver::Version,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::registry::set_active_version(pg, plugin_id, version);
        }
        self.lock()?.execute(
            "UPDATE plugins SET active_version = ?2 WHERE plugin_id = ?1",
            params![plugin_id, version.to_string()],
        )?;
        Ok(())
    }

    /// The active version of a plugin.
    pub fn active_version(&self, plugin_id: &str) -> Result<Option<VersionRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::registry::active_version(pg, plugin_id);
        }
        let parts = self
            .lock()?
            .query_row(
                &format!(
                    "SELECT {} FROM plugin_versions v JOIN plugins p
                     ON p.plugin_id = v.plugin_id AND p.active_version = v.version
                     WHERE v.plugin_id = ?1",
                    COLUMNS
                        .split(", ")
                        .map(|c| format!("v.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                params![plugin_id],
                row_to_version,
            )
            .optional()?;
        parts.map(finish).transpose()
    }

    /// Every installed version of a plugin, oldest version first.
    pub fn plugin_versions(&self, plugin_id: &str) -> Result<Vec<VersionRow>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::registry::plugin_versions(pg, plugin_id);
        }
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM plugin_versions WHERE plugin_id = ?1"
        ))?;
        let rows = stmt.query_map(params![plugin_id], row_to_version)?;
        let mut out = rows
            .map(|r| r.map_err(StoreError::from).and_then(finish))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(out)
    }

    /// Ids of all installed plugins, sorted.
    pub fn plugin_ids(&self) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::registry::plugin_ids(pg);
        }
        let conn = self.lock()?;
        let mut stmt = conn.prepare("SELECT plugin_id FROM plugins ORDER BY plugin_id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    on_both!(versions_are_recorded_activated_and_listed_oldest_first);

    fn version(id: &str, v: &str) -> VersionRow {
        VersionRow {
            plugin_id: id.into(),
            version: semver::Version::parse(v).unwrap(),
            kind: "connector".into(),
            wit_version: "1.0.0".into(),
            manifest: "{}".into(),
            bundle_sha256: "b".into(),
            component_sha256: "c".into(),
            signer_key_id: Some("k1".into()),
            grants: CapabilityGrant::default(),
            installed_at: String::new(),
        }
    }

    fn versions_are_recorded_activated_and_listed_oldest_first(db: Database) {
        assert_eq!(db.active_version("acme/crm").unwrap(), None);
        for v in ["1.10.0", "1.2.0", "1.9.0"] {
            db.insert_version(&version("acme/crm", v)).unwrap();
        }
        db.insert_version(&version("acme/books", "0.1.0")).unwrap();
        assert!(db.insert_version(&version("acme/crm", "1.2.0")).is_err());
        let active = db.active_version("acme/crm").unwrap().unwrap();
        assert_eq!(active.version.to_string(), "1.9.0");
        assert_eq!(active.installed_at.len(), "2026-01-01T00:00:00Z".len());
        assert_eq!(active.signer_key_id.as_deref(), Some("k1"));
        db.set_active_version("acme/crm", &semver::Version::new(1, 2, 0))
            .unwrap();
        assert_eq!(
            db.active_version("acme/crm").unwrap().unwrap().version,
            semver::Version::new(1, 2, 0)
        );
        let listed: Vec<String> = db
            .plugin_versions("acme/crm")
            .unwrap()
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        assert_eq!(listed, vec!["1.2.0", "1.9.0", "1.10.0"]);
        assert_eq!(db.plugin_ids().unwrap(), vec!["acme/books", "acme/crm"]);
    }
}

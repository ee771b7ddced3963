//! The plugin registry's rows on PostgreSQL: the statements of
//! [`crate::registry`], same rows and order.

use super::{Postgres, Row};
use crate::StoreError;
use crate::registry::{COLUMNS, VersionRow, finish};

fn version_row(r: &Row) -> Result<VersionRow, StoreError> {
    let parts = (
        VersionRow {
            plugin_id: r.try_get(0)?,
            version: semver::Version::new(0, 0, 0),
            kind: r.try_get(2)?,
            wit_version: r.try_get(3)?,
            manifest: r.try_get(4)?,
            bundle_sha256: r.try_get(5)?,
            component_sha256: r.try_get(6)?,
            signer_key_id: r.try_get(7)?,
            grants: Default::default(),
            installed_at: r.try_get(9)?,
        },
        r.try_get::<_, String>(1)?,
        r.try_get::<_, String>(8)?,
    );
    finish(parts)
}

/// [`crate::Database::insert_version`].
pub(crate) fn insert_version(pg: &Postgres, row: &VersionRow) -> Result<(), StoreError> {
    let grants =
        serde_json::to_string(&row.grants).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let version = row.version.to_string();
    pg.transaction(async |tx| {
        tx.execute(
            &format!(
                "INSERT INTO plugin_versions ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nexo_now_s())"
            ),
            &[
                &row.plugin_id,
                &version,
                &row.kind,
                &row.wit_version,
                &row.manifest,
                &row.bundle_sha256,
                &row.component_sha256,
                &row.signer_key_id,
                &grants,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO plugins (plugin_id, active_version) VALUES ($1, $2)
             ON CONFLICT (plugin_id) DO UPDATE SET active_version = excluded.active_version",
            &[&row.plugin_id, &version],
        )
        .await?;
        Ok(())
    })
}

/// [`crate::Database::set_active_version`].
pub(crate) fn set_active_version(
    pg: &Postgres,
    plugin_id: &str,
    version: &semver::Version,
) -> Result<(), StoreError> {
    pg.with(async |c| {
        c.execute(
            "UPDATE plugins SET active_version = $2 WHERE plugin_id = $1",
            &[&plugin_id, &version.to_string()],
        )
        .await?;
        Ok(())
    })
}

/// [`crate::Database::active_version`].
pub(crate) fn active_version(
    pg: &Postgres,
    plugin_id: &str,
) -> Result<Option<VersionRow>, StoreError> {
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("v.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!(
                "SELECT {columns} FROM plugin_versions v JOIN plugins p
                   ON p.plugin_id = v.plugin_id AND p.active_version = v.version
                 WHERE v.plugin_id = $1"
            ),
            &[&plugin_id],
        )
        .await?)
    })?;
    row.as_ref().map(version_row).transpose()
}

/// [`crate::Database::plugin_versions`].
pub(crate) fn plugin_versions(
    pg: &Postgres,
    plugin_id: &str,
) -> Result<Vec<VersionRow>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!("SELECT {COLUMNS} FROM plugin_versions WHERE plugin_id = $1"),
            &[&plugin_id],
        )
        .await?)
    })?;
    let mut out = rows
        .iter()
        .map(version_row)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// [`crate::Database::plugin_ids`].
pub(crate) fn plugin_ids(pg: &Postgres) -> Result<Vec<String>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT plugin_id FROM plugins ORDER BY plugin_id COLLATE \"C\"",
            &[],
        )
        .await?)
    })?;
    rows.iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect::<Result<_, StoreError>>()
}

//! The identity map's reads: links by record id (the page path's hot
//! lookup), by entity, a record's links of every entity type, search, and
//! the candidates of a full refresh's sweep. The page path's lookups go
//! through the database's reader, so they go on while a group of pages
//! commits (what they need of an uncommitted group, the committer makes
//! them wait for).

use rusqlite::{params, params_from_iter};

use super::{LINK_COLUMNS, LINK_COLUMNS_ALONE, link_row, peer_args, placeholders};
use crate::pipeline::Endpoint;
use crate::store::{Link, LinkStore};
use nexo_db::{Database, StoreError};

impl LinkStore for Database {
    fn links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        ids: &[&str],
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::links::links(pg, entity, connection, stream, ids, peer);
        }
        let conn = self.read()?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM entity_links l
                 WHERE l.connection = ?3 AND l.stream = ?4 AND l.record_id IN ({}) AND l.entity = ?",
                placeholders(chunk.len())
            );
            let mut st = conn.prepare_cached(&sql)?;
            // Borrowed: a lookup per page binds thousands of ids.
            let args = peer_args(peer)
                .into_iter()
                .chain([Some(connection), Some(stream)])
                .chain(chunk.iter().map(|id| Some(*id)))
                .chain([Some(entity)]);
            out.extend(
                st.query_map(params_from_iter(args), link_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(out)
    }

    fn links_of_entities(
        &self,
        entities: &[i64],
        connection: &str,
        stream: &str,
        peer: Option<&Endpoint>,
    ) -> Result<Vec<Link>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::links::links_of_entities(
                pg, entities, connection, stream, peer,
            );
        }
        let conn = self.read()?;
        let mut out = Vec::with_capacity(entities.len());
        for chunk in entities.chunks(500) {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM entity_links l
                 WHERE l.connection = ?3 AND l.stream = ?4 AND l.entity_id IN ({})",
                placeholders(chunk.len())
            );
            let mut st = conn.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = peer_args(peer)
                .into_iter()
                .map(|v| v.map(str::to_string).into())
                .collect();
            args.extend([connection.to_string().into(), stream.to_string().into()]);
            args.extend(chunk.iter().map(|e| rusqlite::types::Value::Integer(*e)));
            out.extend(
                st.query_map(params_from_iter(args), link_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(out)
    }

    fn search_entities(&self, q: &str, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::links::search_entities(pg, q, limit);
        }
        let q = q.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.lock()?;
        // Exact ids first, then content matches; LIKE's wildcards in the
        // query are taken literally.
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let mut st = conn.prepare(
            "SELECT entity_id, entity, MIN(rank) FROM (
                 SELECT entity_id, entity, 0 AS rank FROM entity_links WHERE record_id = ?1
                 UNION ALL
                 SELECT entity_id, entity, 1 AS rank FROM entity_links
                  WHERE known LIKE ?2 ESCAPE '\\'
             ) GROUP BY entity_id ORDER BY MIN(rank), entity_id DESC LIMIT ?3",
        )?;
        Ok(st
            .query_map(params![q, pattern, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?)
    }

    fn entity(&self, entity_id: i64) -> Result<Vec<Link>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::links::entity(pg, entity_id);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {LINK_COLUMNS_ALONE} FROM entity_links l
             WHERE l.entity_id = ?1 ORDER BY l.connection, l.stream"
        ))?;
        Ok(st
            .query_map([entity_id], link_row)?
            .collect::<Result<_, _>>()?)
    }

    fn record_links(
        &self,
        connection: &str,
        stream: &str,
        id: &str,
    ) -> Result<Vec<Link>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::links::record_links(pg, connection, stream, id);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {LINK_COLUMNS_ALONE} FROM entity_links l
             WHERE l.connection = ?1 AND l.stream = ?2 AND l.record_id = ?3
             ORDER BY l.entity, l.entity_id"
        ))?;
        Ok(st
            .query_map(params![connection, stream, id], link_row)?
            .collect::<Result<_, _>>()?)
    }

    fn unswept_links(
        &self,
        entity: &str,
        connection: &str,
        stream: &str,
        peer: &Endpoint,
    ) -> Result<Vec<Link>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::links::unswept_links(pg, entity, connection, stream, peer);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT * FROM (
                 SELECT {LINK_COLUMNS} FROM entity_links l
                  WHERE l.connection = ?3 AND l.stream = ?4 AND l.entity = ?5
             ) WHERE deleted = 0 OR COALESCE(synced, '') <> ?6
             ORDER BY record_id"
        ))?;
        Ok(st
            .query_map(
                params![
                    peer.connection,
                    peer.stream,
                    connection,
                    stream,
                    entity,
                    crate::store::DELETED_IN_STEP
                ],
                link_row,
            )?
            .collect::<Result<_, _>>()?)
    }
}

//! The identity map's reads on PostgreSQL: links by record id (the page
//! path's hot lookup, one statement per page whatever its size: the ids go
//! as one array), by entity, a record's links of every entity type, search,
//! and the candidates of a full refresh's sweep. Reads see what is
//! committed, as SQLite's reader does; text sorts by its bytes (`COLLATE
//! "C"`), as SQLite sorts it, whatever the database's locale.

use super::{LINK_COLUMNS, LINK_COLUMNS_ALONE, link_rows, peer_args};
use crate::pipeline::Endpoint;
use crate::store::Link;
use nexo_db::StoreError;
use nexo_db::postgres::Postgres;

pub(crate) fn links(
    pg: &Postgres,
    entity: &str,
    connection: &str,
    stream: &str,
    ids: &[&str],
    peer: Option<&Endpoint>,
) -> Result<Vec<Link>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (pc, ps) = peer_args(peer);
    let rows = pg.with(async |c| {
        let st = c
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM entity_links l
                 WHERE l.connection = $3 AND l.stream = $4 AND l.record_id = ANY($5::text[])
                   AND l.entity = $6"
            ))
            .await?;
        Ok(
            c.query(&st, &[&pc, &ps, &connection, &stream, &ids, &entity])
                .await?,
        )
    })?;
    link_rows(&rows)
}

pub(crate) fn links_of_entities(
    pg: &Postgres,
    entities: &[i64],
    connection: &str,
    stream: &str,
    peer: Option<&Endpoint>,
) -> Result<Vec<Link>, StoreError> {
    if entities.is_empty() {
        return Ok(Vec::new());
    }
    let (pc, ps) = peer_args(peer);
    let rows = pg.with(async |c| {
        let st = c
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM entity_links l
                 WHERE l.connection = $3 AND l.stream = $4 AND l.entity_id = ANY($5::bigint[])"
            ))
            .await?;
        Ok(c.query(&st, &[&pc, &ps, &connection, &stream, &entities])
            .await?)
    })?;
    link_rows(&rows)
}

/// Exact ids first, then content matches, newest entity first. ILIKE is
/// SQLite's LIKE: case-insensitive; the query's wildcards are taken
/// literally.
pub(crate) fn search_entities(
    pg: &Postgres,
    q: &str,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    let pattern = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    pg.with(async |c| {
        // An entity's best rank, with the entity type of that match (as
        // SQLite's bare column beside MIN gives).
        let rows = c
            .query(
                "SELECT entity_id, entity FROM (
                     SELECT DISTINCT ON (entity_id) entity_id, entity, rank FROM (
                         SELECT entity_id, entity, 0 AS rank FROM entity_links WHERE record_id = $1
                         UNION ALL
                         SELECT entity_id, entity, 1 AS rank FROM entity_links
                          WHERE known ILIKE $2 ESCAPE '\\'
                     ) AS found ORDER BY entity_id, rank
                 ) AS best ORDER BY rank, entity_id DESC LIMIT $3",
                &[&q, &pattern, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    })
}

pub(crate) fn entity(pg: &Postgres, entity_id: i64) -> Result<Vec<Link>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT {LINK_COLUMNS_ALONE} FROM entity_links l
                 WHERE l.entity_id = $1 ORDER BY l.connection COLLATE \"C\", l.stream COLLATE \"C\""
            ),
            &[&entity_id],
        )
        .await?)
    })?;
    link_rows(&rows)
}

pub(crate) fn record_links(
    pg: &Postgres,
    connection: &str,
    stream: &str,
    id: &str,
) -> Result<Vec<Link>, StoreError> {
    let rows = pg.with(async |c| {
        let st = c
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS_ALONE} FROM entity_links l
                 WHERE l.connection = $1 AND l.stream = $2 AND l.record_id = $3
                 ORDER BY l.entity COLLATE \"C\", l.entity_id"
            ))
            .await?;
        Ok(c.query(&st, &[&connection, &stream, &id]).await?)
    })?;
    link_rows(&rows)
}

pub(crate) fn unswept_links(
    pg: &Postgres,
    entity: &str,
    connection: &str,
    stream: &str,
    peer: &Endpoint,
) -> Result<Vec<Link>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT * FROM (
                     SELECT {LINK_COLUMNS} FROM entity_links l
                      WHERE l.connection = $3 AND l.stream = $4 AND l.entity = $5
                 ) AS candidates WHERE deleted = 0 OR COALESCE(synced, '') <> $6
                 ORDER BY record_id COLLATE \"C\""
            ),
            &[
                &peer.connection,
                &peer.stream,
                &connection,
                &stream,
                &entity,
                &crate::store::DELETED_IN_STEP,
            ],
        )
        .await?)
    })?;
    link_rows(&rows)
}

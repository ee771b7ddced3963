//! The page commit's writes to the identity map on PostgreSQL, in
//! segments that keep SQLite's per-link merge rules (see `commit.rs`):
//! the new entities' first records, then the rest of the new groups, then
//! the known links and their per-peer sync state, each one statement over
//! `UNNEST`ed arrays.

use std::collections::{HashMap, HashSet};

use super::commit::Outcome;
use super::corrupt;
use crate::store::{LinkUpdate, RunId};
use nexo_db::StoreError;
use nexo_db::postgres::Transaction;

/// A link's key in `entity_links`.
type Key = (String, String, String, String);

fn key_of(l: &LinkUpdate) -> (&str, &str, &str, &str) {
    (&l.connection, &l.stream, &l.record_id, &l.entity)
}

fn owned(l: &LinkUpdate) -> Key {
    (
        l.connection.clone(),
        l.stream.clone(),
        l.record_id.clone(),
        l.entity.clone(),
    )
}

fn keys(rows: &[tokio_postgres::Row]) -> Result<HashSet<Key>, tokio_postgres::Error> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect()
}

/// The page's identity-map changes, segment by segment (see the module's
/// doc): the same rows SQLite's link-by-link loop leaves.
pub(super) async fn apply_links(
    tx: &Transaction<'_>,
    run: RunId,
    now: &str,
    links: &[LinkUpdate],
) -> Outcome<()> {
    if links.is_empty() {
        return Ok(());
    }
    // The page's new entities' ids, in one round trip, handed out to the
    // groups in the order their first records come (as SQLite's MAX + 1
    // counts up). A group that joins an existing entity leaves its id
    // unused.
    let new_groups: HashSet<usize> = links
        .iter()
        .filter(|l| l.entity_id.is_none())
        .map(|l| l.group)
        .collect();
    let mut fresh: Vec<i64> = if new_groups.is_empty() {
        Vec::new()
    } else {
        let st = tx
            .prepare_cached("SELECT nextval('entity_ids') FROM generate_series(1, $1::bigint)")
            .await?;
        let count = new_groups.len() as i64;
        tx.query(&st, &[&count])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?
    };
    fresh.sort_unstable();
    let mut fresh = fresh.into_iter();
    let mut groups: HashMap<usize, i64> = HashMap::new();
    let mut start = 0;
    while start < links.len() {
        let mut seen = HashSet::new();
        let end = links[start..]
            .iter()
            .position(|l| !seen.insert(key_of(l)))
            .map_or(links.len(), |i| start + i);
        apply_segment(tx, run, now, &links[start..end], &mut groups, &mut fresh).await?;
        start = end;
    }
    Ok(())
}

/// Links none of which names the same record as another.
async fn apply_segment(
    tx: &Transaction<'_>,
    run: RunId,
    now: &str,
    links: &[LinkUpdate],
    groups: &mut HashMap<usize, i64>,
    fresh: &mut impl Iterator<Item = i64>,
) -> Outcome<()> {
    let mut heads: Vec<(&LinkUpdate, i64)> = Vec::new();
    let mut rest: Vec<&LinkUpdate> = Vec::new();
    let mut known: Vec<(&LinkUpdate, i64)> = Vec::new();
    for l in links {
        match l.entity_id {
            Some(e) => known.push((l, e)),
            None if groups.contains_key(&l.group) => rest.push(l),
            None => {
                let id = fresh
                    .next()
                    .ok_or_else(|| corrupt("fewer new entity ids than new groups"))?;
                groups.insert(l.group, id);
                heads.push((l, id));
            }
        }
    }
    // The first record of each new group. One linked since this page
    // looked it up (by a concurrent run of another pipeline with the same
    // source and entity): the group joins that entity (two entities for
    // one record would orphan a destination).
    let inserted = insert_new(tx, run, now, &mut heads).await?;
    let linked: Vec<&LinkUpdate> = heads
        .iter()
        .map(|(l, _)| *l)
        .filter(|l| !inserted.contains(&owned(l)))
        .collect();
    if !linked.is_empty() {
        let existing = entities_of(tx, &linked).await?;
        for l in linked {
            let e = *existing.get(&owned(l)).ok_or_else(|| {
                corrupt(format!(
                    "the link of record `{}` of {}/{} vanished while a page committed",
                    l.record_id, l.connection, l.stream
                ))
            })?;
            groups.insert(l.group, e);
            known.push((l, e));
        }
    }
    // The other records of new groups. One linked already is a
    // destination record answering for a second source record (two
    // deals, one company's party): entities are not merged, it is
    // updated as it is.
    let mut rest: Vec<(&LinkUpdate, i64)> = rest
        .into_iter()
        .map(|l| {
            Ok((
                l,
                *groups
                    .get(&l.group)
                    .ok_or_else(|| corrupt("a group without its entity"))?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let inserted = insert_new(tx, run, now, &mut rest).await?;
    known.extend(
        rest.into_iter()
            .filter(|(l, _)| !inserted.contains(&owned(l))),
    );
    update_known(tx, run, now, &mut known).await
}

/// Insert links of new entities (with their sync state with their peer),
/// leaving those already there; the keys inserted.
async fn insert_new(
    tx: &Transaction<'_>,
    run: RunId,
    now: &str,
    rows: &mut [(&LinkUpdate, i64)],
) -> Outcome<HashSet<Key>> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    // Every commit takes the rows' locks in the same (key) order, so two
    // commits of overlapping pages wait rather than deadlock.
    rows.sort_unstable_by(|a, b| key_of(a.0).cmp(&key_of(b.0)));
    let col =
        |f: fn(&LinkUpdate) -> &str| -> Vec<&str> { rows.iter().map(|(l, _)| f(l)).collect() };
    let opt = |f: fn(&LinkUpdate) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(|(l, _)| f(l)).collect()
    };
    let entity_ids: Vec<i64> = rows.iter().map(|(_, e)| *e).collect();
    let deleted: Vec<i64> = rows.iter().map(|(l, _)| i64::from(l.deleted)).collect();
    let st = tx
        .prepare_cached(
            "INSERT INTO entity_links
                 (connection, stream, record_id, entity_id, known, version, deleted, seen_run,
                  updated_at, entity, synced_hash, synced_connection, synced_stream)
             SELECT c, s, r, e, k, v, d, $1, $2, en, h,
                    CASE WHEN h IS NULL THEN NULL ELSE pc END,
                    CASE WHEN h IS NULL THEN NULL ELSE ps END
               FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                           $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[],
                           $13::text[])
                    WITH ORDINALITY AS u(c, s, r, e, k, v, d, en, h, pc, ps, n)
              ORDER BY n
             ON CONFLICT (connection, stream, record_id, entity) DO NOTHING
             RETURNING connection, stream, record_id, entity",
        )
        .await?;
    let inserted = tx
        .query(
            &st,
            &[
                &run,
                &now,
                &col(|l| &l.connection),
                &col(|l| &l.stream),
                &col(|l| &l.record_id),
                &entity_ids,
                &opt(|l| l.known.as_deref()),
                &opt(|l| l.version.as_deref()),
                &deleted,
                &col(|l| &l.entity),
                &opt(|l| l.synced_hash.as_deref()),
                &col(|l| &l.peer.connection),
                &col(|l| &l.peer.stream),
            ],
        )
        .await?;
    Ok(keys(&inserted)?)
}

/// The entity ids of these links' records as committed now.
async fn entities_of(tx: &Transaction<'_>, links: &[&LinkUpdate]) -> Outcome<HashMap<Key, i64>> {
    let col = |f: fn(&LinkUpdate) -> &str| -> Vec<&str> { links.iter().map(|l| f(l)).collect() };
    let st = tx
        .prepare_cached(
            "SELECT l.connection, l.stream, l.record_id, l.entity, l.entity_id
               FROM entity_links l
               JOIN UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(c, s, r, en)
                 ON l.connection = u.c AND l.stream = u.s AND l.record_id = u.r AND l.entity = u.en",
        )
        .await?;
    let rows = tx
        .query(
            &st,
            &[
                &col(|l| &l.connection),
                &col(|l| &l.stream),
                &col(|l| &l.record_id),
                &col(|l| &l.entity),
            ],
        )
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        out.insert(
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?),
            r.try_get(4)?,
        );
    }
    Ok(out)
}

/// Update links already there (created when missing), then their sync
/// state with their peer: the row's own slot when free or that peer's,
/// otherwise a row beside it in `link_sync`.
async fn update_known(
    tx: &Transaction<'_>,
    run: RunId,
    now: &str,
    rows: &mut [(&LinkUpdate, i64)],
) -> Outcome<()> {
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_unstable_by(|a, b| key_of(a.0).cmp(&key_of(b.0)));
    let col =
        |f: fn(&LinkUpdate) -> &str| -> Vec<&str> { rows.iter().map(|(l, _)| f(l)).collect() };
    let opt = |f: fn(&LinkUpdate) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(|(l, _)| f(l)).collect()
    };
    let entity_ids: Vec<i64> = rows.iter().map(|(_, e)| *e).collect();
    let deleted: Vec<i64> = rows.iter().map(|(l, _)| i64::from(l.deleted)).collect();
    let upsert = tx
        .prepare_cached(
            "INSERT INTO entity_links
                 (connection, stream, record_id, entity_id, known, version, deleted, seen_run,
                  updated_at, entity)
             SELECT c, s, r, e, k, v, d, $1, $2, en
               FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                           $8::text[], $9::bigint[], $10::text[])
                    WITH ORDINALITY AS u(c, s, r, e, k, v, d, en, n)
              ORDER BY n
             ON CONFLICT (connection, stream, record_id, entity) DO UPDATE SET
                 known = COALESCE(excluded.known, entity_links.known),
                 version = COALESCE(excluded.version, entity_links.version),
                 deleted = excluded.deleted,
                 seen_run = excluded.seen_run,
                 updated_at = excluded.updated_at",
        )
        .await?;
    tx.execute(
        &upsert,
        &[
            &run,
            &now,
            &col(|l| &l.connection),
            &col(|l| &l.stream),
            &col(|l| &l.record_id),
            &entity_ids,
            &opt(|l| l.known.as_deref()),
            &opt(|l| l.version.as_deref()),
            &deleted,
            &col(|l| &l.entity),
        ],
    )
    .await?;
    let synced: Vec<&LinkUpdate> = rows
        .iter()
        .map(|(l, _)| *l)
        .filter(|l| l.synced_hash.is_some())
        .collect();
    if synced.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&LinkUpdate) -> &str| -> Vec<&str> { synced.iter().map(|l| f(l)).collect() };
    let args = (
        col(|l| &l.connection),
        col(|l| &l.stream),
        col(|l| &l.record_id),
        col(|l| &l.entity),
        col(|l| l.synced_hash.as_deref().unwrap_or_default()),
        col(|l| &l.peer.connection),
        col(|l| &l.peer.stream),
    );
    let slot = tx
        .prepare_cached(
            "UPDATE entity_links l
                SET synced_hash = u.h, synced_connection = u.pc, synced_stream = u.ps
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[]) AS u(c, s, r, en, h, pc, ps)
              WHERE l.connection = u.c AND l.stream = u.s AND l.record_id = u.r
                AND l.entity = u.en
                AND (l.synced_connection IS NULL
                     OR (l.synced_connection = u.pc AND l.synced_stream = u.ps))
             RETURNING l.connection, l.stream, l.record_id, l.entity",
        )
        .await?;
    let in_slot = keys(
        &tx.query(
            &slot,
            &[
                &args.0, &args.1, &args.2, &args.3, &args.4, &args.5, &args.6,
            ],
        )
        .await?,
    )?;
    let aside: Vec<&LinkUpdate> = synced
        .into_iter()
        .filter(|l| !in_slot.contains(&owned(l)))
        .collect();
    if aside.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&LinkUpdate) -> &str| -> Vec<&str> { aside.iter().map(|l| f(l)).collect() };
    let st = tx
        .prepare_cached(
            "INSERT INTO link_sync
                 (connection, stream, record_id, entity, peer_connection, peer_stream, synced_hash)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[])
             ON CONFLICT (connection, stream, record_id, entity, peer_connection, peer_stream)
             DO UPDATE SET synced_hash = excluded.synced_hash",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &col(|l| &l.connection),
            &col(|l| &l.stream),
            &col(|l| &l.record_id),
            &col(|l| &l.entity),
            &col(|l| &l.peer.connection),
            &col(|l| &l.peer.stream),
            &col(|l| l.synced_hash.as_deref().unwrap_or_default()),
        ],
    )
    .await?;
    Ok(())
}

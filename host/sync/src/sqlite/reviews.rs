//! The review queue on SQLite: written by the page commit (a matching
//! pass's reviews, a person's decision, a run's delivery), read here.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, params};

use super::{corrupt, placeholders};
use crate::store::reviews::{REVIEW_COLUMNS, ReviewColumns};
use crate::store::{
    MatchCounts, PageCommit, Review, ReviewFilter, ReviewStatus, ReviewStore, RunId,
};
use nexo_db::{Database, StoreError};
use nexo_runtime::sandbox::redact::Redactor;

fn review_row(r: &Row<'_>) -> rusqlite::Result<ReviewColumns> {
    Ok(ReviewColumns {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        source_id: r.get(2)?,
        source_record: r.get(3)?,
        mapped: r.get(4)?,
        candidates: r.get(5)?,
        why: r.get(6)?,
        status: r.get(7)?,
        chosen: r.get(8)?,
        decided_by: r.get(9)?,
        decided_at: r.get(10)?,
        delivered_run: r.get(11)?,
        created_at: r.get(12)?,
    })
}

fn parsed(rows: Vec<ReviewColumns>) -> Result<Vec<Review>, StoreError> {
    rows.into_iter()
        .map(|r| r.parse().map_err(corrupt))
        .collect()
}

/// A page's review effects, inside its commit's transaction.
pub(super) fn apply(
    tx: &rusqlite::Transaction<'_>,
    pipeline: &str,
    run: RunId,
    page: &PageCommit,
    now: &str,
    redactor: &Redactor,
) -> Result<(), StoreError> {
    if !page.new_reviews.is_empty() {
        let mut insert = tx.prepare_cached(
            "INSERT INTO match_reviews (pipeline, source_id, source_record, mapped, candidates, why)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for review in &page.new_reviews {
            let [record, mapped, candidates] = review.json_columns().map_err(corrupt)?;
            insert.execute(params![
                pipeline,
                review.record.id,
                redactor.scrub(&record),
                redactor.scrub(&mapped),
                redactor.scrub(&candidates),
                review.why
            ])?;
        }
    }
    for (id, record) in &page.hold_reviews {
        let record = serde_json::to_string(record).map_err(corrupt)?;
        tx.execute(
            "UPDATE match_reviews SET source_record = ?2 WHERE id = ?1 AND delivered_run IS NULL",
            params![id, redactor.scrub(&record)],
        )?;
    }
    for d in &page.decide_reviews {
        let changed = tx.execute(
            "UPDATE match_reviews SET status = ?2, chosen = ?3, decided_by = ?4, decided_at = ?5
             WHERE id = ?1 AND status = 'open'",
            params![d.id, d.status.as_str(), d.chosen, d.by, now],
        )?;
        if changed == 0 {
            return Err(StoreError::Stale(format!(
                "review {} is no longer open (decided meanwhile)",
                d.id
            )));
        }
    }
    for id in &page.withdraw_reviews {
        tx.execute(
            "UPDATE match_reviews SET status = 'withdrawn', delivered_run = ?2
             WHERE id = ?1 AND status = 'open'",
            params![id, run],
        )?;
    }
    for id in &page.deliver_reviews {
        tx.execute(
            "UPDATE match_reviews SET delivered_run = ?2 WHERE id = ?1 AND status <> 'open'",
            params![id, run],
        )?;
    }
    if let Some(c) = &page.match_pass {
        tx.execute(
            "INSERT INTO match_passes (pipeline, at, linked, queued, unmatched, already)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (pipeline) DO UPDATE SET at = excluded.at, linked = excluded.linked,
                 queued = excluded.queued, unmatched = excluded.unmatched, already = excluded.already",
            params![
                pipeline,
                now,
                c.linked as i64,
                c.queued as i64,
                c.unmatched as i64,
                c.already as i64
            ],
        )?;
    }
    Ok(())
}

impl ReviewStore for Database {
    fn waiting_reviews(
        &self,
        pipeline: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, (i64, ReviewStatus)>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::reviews::waiting_reviews(pg, pipeline, ids);
        }
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let conn = self.lock()?;
        for chunk in ids.chunks(500) {
            let mut st = conn.prepare_cached(&format!(
                "SELECT source_id, id, status FROM match_reviews
                 WHERE pipeline = ?1 AND delivered_run IS NULL AND source_id IN ({})",
                placeholders(chunk.len())
            ))?;
            let args = std::iter::once(&pipeline as &dyn rusqlite::ToSql)
                .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (source, id, status) = row?;
                let status = ReviewStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("review {id}: unknown status `{status}`")))?;
                out.insert(source, (id, status));
            }
        }
        Ok(out)
    }

    fn decided_reviews(&self, pipeline: &str) -> Result<Vec<Review>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::reviews::decided_reviews(pg, pipeline);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {REVIEW_COLUMNS} FROM match_reviews
             WHERE pipeline = ?1 AND status <> 'open' AND delivered_run IS NULL ORDER BY id"
        ))?;
        let rows = st
            .query_map([pipeline], review_row)?
            .collect::<Result<Vec<_>, _>>()?;
        parsed(rows)
    }

    fn reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::reviews::reviews(pg, filter);
        }
        let conn = self.lock()?;
        let mut st = conn.prepare(&format!(
            "SELECT {REVIEW_COLUMNS} FROM match_reviews
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY id DESC"
        ))?;
        let status = filter.status.map(ReviewStatus::as_str);
        let rows = st
            .query_map(params![filter.pipeline, status], review_row)?
            .collect::<Result<Vec<_>, _>>()?;
        parsed(rows)
    }

    fn review(&self, id: i64) -> Result<Option<Review>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::reviews::review(pg, id);
        }
        let conn = self.lock()?;
        let row = conn
            .query_row(
                &format!("SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE id = ?1"),
                [id],
                review_row,
            )
            .optional()?;
        row.map(|r| r.parse().map_err(corrupt)).transpose()
    }

    fn match_pass(&self, pipeline: &str) -> Result<Option<(String, MatchCounts)>, StoreError> {
        if let Some(pg) = self.postgres() {
            return crate::postgres::reviews::match_pass(pg, pipeline);
        }
        let conn = self.lock()?;
        let n = |r: &Row<'_>, i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
        Ok(conn
            .query_row(
                "SELECT at, linked, queued, unmatched, already FROM match_passes WHERE pipeline = ?1",
                [pipeline],
                |r| {
                    Ok((
                        r.get(0)?,
                        MatchCounts {
                            linked: n(r, 1)?,
                            queued: n(r, 2)?,
                            unmatched: n(r, 3)?,
                            already: n(r, 4)?,
                        },
                    ))
                },
            )
            .optional()?)
    }
}

//! The review queue on PostgreSQL: written by the page commit (a matching
//! pass's reviews, a person's decision, a run's delivery), read here.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::commit::Outcome;
use super::corrupt;
use crate::store::reviews::{REVIEW_COLUMNS, ReviewColumns};
use crate::store::{MatchCounts, PageCommit, Review, ReviewFilter, ReviewStatus, RunId};
use nexo_db::StoreError;
use nexo_db::postgres::{Postgres, Transaction};
use nexo_runtime::sandbox::redact::Redactor;

fn review_row(r: &Row) -> Result<Review, StoreError> {
    ReviewColumns {
        id: r.try_get(0)?,
        pipeline: r.try_get(1)?,
        source_id: r.try_get(2)?,
        source_record: r.try_get(3)?,
        mapped: r.try_get(4)?,
        candidates: r.try_get(5)?,
        why: r.try_get(6)?,
        status: r.try_get(7)?,
        chosen: r.try_get(8)?,
        decided_by: r.try_get(9)?,
        decided_at: r.try_get(10)?,
        delivered_run: r.try_get(11)?,
        created_at: r.try_get(12)?,
    }
    .parse()
    .map_err(corrupt)
}

/// A page's review effects, inside its commit's transaction.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    pipeline: &str,
    run: RunId,
    page: &PageCommit,
    now: &str,
    redactor: &Redactor,
) -> Outcome<()> {
    if !page.new_reviews.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO match_reviews (pipeline, source_id, source_record, mapped, candidates, why)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        for review in &page.new_reviews {
            let [record, mapped, candidates] = review.json_columns().map_err(corrupt)?;
            tx.execute(
                &st,
                &[
                    &pipeline,
                    &review.record.id,
                    &&*redactor.scrub(&record),
                    &&*redactor.scrub(&mapped),
                    &&*redactor.scrub(&candidates),
                    &review.why,
                ],
            )
            .await?;
        }
    }
    for (id, record) in &page.hold_reviews {
        let record = serde_json::to_string(record).map_err(corrupt)?;
        tx.execute(
            "UPDATE match_reviews SET source_record = $2 WHERE id = $1 AND delivered_run IS NULL",
            &[id, &&*redactor.scrub(&record)],
        )
        .await?;
    }
    for d in &page.decide_reviews {
        let changed = tx
            .execute(
                "UPDATE match_reviews SET status = $2, chosen = $3, decided_by = $4, decided_at = $5
                 WHERE id = $1 AND status = 'open'",
                &[&d.id, &d.status.as_str(), &d.chosen, &d.by, &now],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::Stale(format!(
                "review {} is no longer open (decided meanwhile)",
                d.id
            ))
            .into());
        }
    }
    for id in &page.withdraw_reviews {
        tx.execute(
            "UPDATE match_reviews SET status = 'withdrawn', delivered_run = $2
             WHERE id = $1 AND status = 'open'",
            &[id, &run],
        )
        .await?;
    }
    for id in &page.deliver_reviews {
        tx.execute(
            "UPDATE match_reviews SET delivered_run = $2 WHERE id = $1 AND status <> 'open'",
            &[id, &run],
        )
        .await?;
    }
    if let Some(c) = &page.match_pass {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO match_passes (pipeline, at, linked, queued, unmatched, already)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (pipeline) DO UPDATE SET at = excluded.at, linked = excluded.linked,
                 queued = excluded.queued, unmatched = excluded.unmatched, already = excluded.already",
            &[
                &pipeline,
                &now,
                &n(c.linked),
                &n(c.queued),
                &n(c.unmatched),
                &n(c.already),
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) fn waiting_reviews(
    pg: &Postgres,
    pipeline: &str,
    ids: &[&str],
) -> Result<HashMap<String, (i64, ReviewStatus)>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = pg.with(async |c| {
        Ok(c.query(
            "SELECT source_id, id, status FROM match_reviews
              WHERE pipeline = $1 AND delivered_run IS NULL AND source_id = ANY($2::text[])",
            &[&pipeline, &ids],
        )
        .await?)
    })?;
    let mut out = HashMap::new();
    for r in &rows {
        let (source, id, status): (String, i64, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let status = ReviewStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("review {id}: unknown status `{status}`")))?;
        out.insert(source, (id, status));
    }
    Ok(out)
}

pub(crate) fn decided_reviews(pg: &Postgres, pipeline: &str) -> Result<Vec<Review>, StoreError> {
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT {REVIEW_COLUMNS} FROM match_reviews
                  WHERE pipeline = $1 AND status <> 'open' AND delivered_run IS NULL ORDER BY id"
            ),
            &[&pipeline],
        )
        .await?)
    })?;
    rows.iter().map(review_row).collect()
}

pub(crate) fn reviews(pg: &Postgres, filter: &ReviewFilter) -> Result<Vec<Review>, StoreError> {
    let status = filter.status.map(ReviewStatus::as_str);
    let rows = pg.with(async |c| {
        Ok(c.query(
            &format!(
                "SELECT {REVIEW_COLUMNS} FROM match_reviews
                  WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR status = $2)
                  ORDER BY id DESC"
            ),
            &[&filter.pipeline, &status],
        )
        .await?)
    })?;
    rows.iter().map(review_row).collect()
}

pub(crate) fn review(pg: &Postgres, id: i64) -> Result<Option<Review>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            &format!("SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE id = $1"),
            &[&id],
        )
        .await?)
    })?;
    row.as_ref().map(review_row).transpose()
}

pub(crate) fn match_pass(
    pg: &Postgres,
    pipeline: &str,
) -> Result<Option<(String, MatchCounts)>, StoreError> {
    let row = pg.with(async |c| {
        Ok(c.query_opt(
            "SELECT at, linked, queued, unmatched, already FROM match_passes WHERE pipeline = $1",
            &[&pipeline],
        )
        .await?)
    })?;
    let Some(r) = row else { return Ok(None) };
    let n = |i: usize| r.try_get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(Some((
        r.try_get(0)?,
        MatchCounts {
            linked: n(1)?,
            queued: n(2)?,
            unmatched: n(3)?,
            already: n(4)?,
        },
    )))
}

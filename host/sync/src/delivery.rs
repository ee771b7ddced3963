//! Delivering a page's writes to the destination: batches of the
//! pipeline's size, two in flight, transient failures (of a batch or of
//! single records) retried with backoff for the pipeline's retry window
//! (see `retry`), each record's outcome returned in order.

use super::SyncError;
use std::time::Duration;

use super::page::PageContext;
use super::retry::{Next, Outage};
use nexo_runtime::GuestError;
use nexo_runtime::plugin::{Record, WriteOutcome};

/// What the delivery of one write came to.
#[derive(Debug, Clone)]
pub enum Delivered {
    /// Done; the destination's outcome.
    Done(WriteOutcome),
    /// Failed for good (or retries ran out).
    Failed {
        /// The error.
        error: GuestError,
        /// Attempts made.
        attempts: u32,
    },
}

/// Deliver writes in batches, retrying transient failures with backoff.
pub(super) async fn write_all(
    ctx: PageContext<'_>,
    records: &[Record],
) -> Result<Vec<Delivered>, SyncError> {
    use futures_util::{StreamExt, TryStreamExt};
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let p = &ctx.p.pipeline;
    let chunks: Vec<(usize, usize)> = (0..records.len())
        .step_by(p.batch_size)
        .map(|start| (start, (start + p.batch_size).min(records.len())))
        .collect();
    // Two batches in flight: while the destination applies one, the
    // connector prepares the next (each call has its own instance).
    let done: Vec<Vec<(usize, Delivered)>> = futures_util::stream::iter(chunks)
        .map(|(start, end)| write_chunk(ctx, records, start, end))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut out: Vec<Option<Delivered>> = vec![None; records.len()];
    for (i, delivered) in done.into_iter().flatten() {
        out[i] = Some(delivered);
    }
    out.into_iter()
        .map(|o| {
            o.ok_or_else(|| SyncError::Malformed {
                pipeline: p.name.clone(),
                message: "a write got no result".into(),
            })
        })
        .collect()
}

/// Write batches of one page in flight at once.
const WRITES_IN_FLIGHT: usize = 2;

/// Deliver `records[start..end]` as one batch, retrying transient failures
/// (of the whole batch, or of single records) with backoff for the retry
/// window. A batch still failing at the window's end fails the run; a
/// record still failing goes to the dead-letter queue.
async fn write_chunk(
    ctx: PageContext<'_>,
    records: &[Record],
    start: usize,
    end: usize,
) -> Result<Vec<(usize, Delivered)>, SyncError> {
    let p = &ctx.p.pipeline;
    let connection = p.destination.connection.as_str();
    let waiter = ctx.waiter;
    let mut out = Vec::with_capacity(end - start);
    let mut pending: Vec<usize> = (start..end).collect();
    let mut outage: Option<Outage> = None;
    while !pending.is_empty() {
        // The whole chunk goes as a slice of `records`; only a retry of
        // some of its records needs copies.
        let subset: Vec<Record>;
        let batch: &[Record] = if pending.len() == end - start {
            &records[start..end]
        } else {
            subset = pending.iter().map(|i| records[*i].clone()).collect();
            &subset
        };
        let results = match ctx.p.dest.write(batch).await {
            Ok(r) => r,
            Err(e) => {
                let outage = outage.get_or_insert_with(Outage::begin);
                waiter.after_failure(outage, e, "write", connection).await?;
                continue;
            }
        };
        let mut again = Vec::new();
        let mut wait = Duration::ZERO;
        let mut last_error = String::new();
        for (i, r) in pending.iter().zip(results) {
            match r.outcome {
                WriteOutcome::Failed(e) => {
                    let error = e;
                    let outage = outage.get_or_insert_with(Outage::begin);
                    match outage.next(&error, &p.retry) {
                        Next::Wait(w) => {
                            wait = wait.max(w);
                            last_error = error.to_string();
                            again.push(*i);
                        }
                        Next::Fail | Next::GiveUp(_) => out.push((
                            *i,
                            Delivered::Failed {
                                error,
                                attempts: outage.attempts,
                            },
                        )),
                    }
                }
                outcome => out.push((*i, Delivered::Done(outcome))),
            }
        }
        if let Some(outage) = outage.as_mut().filter(|_| !again.is_empty()) {
            let what = format!("{} of {} records: {last_error}", again.len(), pending.len());
            waiter
                .wait(wait, "write", connection, outage.attempts, &what)
                .await?;
            outage.attempts += 1;
        }
        pending = again;
    }
    Ok(out)
}

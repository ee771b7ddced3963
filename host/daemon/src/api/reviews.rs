//! `/api/reviews…` and `POST /api/pipelines/{name}/match`: the review queue
//! of going live, worked through over the API as `nexo review` works it
//! from the command line — the same engine calls
//! ([`nexo_sync::Engine::decide_review`], [`nexo_sync::Engine::match_pipeline`]),
//! and the same audit actions, with the token as the actor.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::queues::status_filter;
use super::{ApiError, ApiResult, Caller};
use crate::{App, audit};
use nexo_db::audit::{Action, Change};
use nexo_sync::review::Verdict;
use nexo_sync::store::{Review, ReviewFilter, ReviewStatus};

const STATUSES: [ReviewStatus; 4] = ReviewStatus::ALL;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReviewsQuery {
    pipeline: Option<String>,
    status: Option<String>,
}

fn to_json<T: serde::Serialize>(value: &T) -> ApiResult {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /api/reviews`: open reviews unless `status` says, newest first.
pub(super) async fn reviews(
    State(app): State<Arc<App>>,
    Query(q): Query<ReviewsQuery>,
) -> ApiResult {
    let status = status_filter(
        q.status.as_deref(),
        ReviewStatus::Open,
        &STATUSES,
        ReviewStatus::as_str,
    )?;
    let list = app.engine.store().reviews(&ReviewFilter {
        pipeline: q.pipeline.filter(|p| !p.is_empty()),
        status,
    })?;
    to_json(&list)
}

fn find(app: &App, id: i64) -> Result<Review, ApiError> {
    app.engine.store().review(id)?.ok_or_else(|| {
        ApiError::not_found(format!("no review {id}; see GET /api/reviews?status=all"))
    })
}

/// `GET /api/reviews/{id}`.
pub(super) async fn review(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    to_json(&find(&app, id)?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcceptBody {
    /// Another candidate than the best one.
    #[serde(default)]
    pick: Option<String>,
}

/// `POST /api/reviews/{id}/accept`: the best candidate, or `pick`.
pub(super) async fn accept(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Result<Option<Json<AcceptBody>>, JsonRejection>,
) -> ApiResult {
    let body = body
        .map_err(|e| ApiError::bad(format!("accept body: {e}")))?
        .map(|b| b.0)
        .unwrap_or_default();
    decide(&app, &caller, id, Verdict::Accept(body.pick))
}

/// `POST /api/reviews/{id}/reject`: none of the candidates.
pub(super) async fn reject(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult {
    decide(&app, &caller, id, Verdict::Reject)
}

/// Decide as the caller and record it in the trail, as `nexo review
/// accept|reject` records it (same action, target and after).
fn decide(app: &App, caller: &Caller, id: i64, verdict: Verdict) -> ApiResult {
    let before = find(app, id)?;
    let action = match verdict {
        Verdict::Accept(_) => Action::ReviewAccept,
        Verdict::Reject => Action::ReviewReject,
    };
    let actor = caller.actor();
    let decided = app.engine.decide_review(id, verdict, &actor.to_string())?;
    audit::record(
        app.registry.db(),
        &actor,
        audit::with(
            Change::new(action, format!("review/{id}")),
            Some(json!({"pipeline": before.pipeline, "status": before.status})),
            Some(json!({
                "pipeline": decided.pipeline,
                "source_id": decided.source_id,
                "chosen": decided.chosen,
            })),
        ),
    );
    to_json(&decided)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchBody {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/pipelines/{name}/match`: the matching pass now (or, dry,
/// what it would do). Audited unless dry.
pub(super) async fn match_pipeline(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Option<Json<MatchBody>>, JsonRejection>,
) -> ApiResult {
    let body = body
        .map_err(|e| ApiError::bad(format!("match body: {e}")))?
        .map(|b| b.0)
        .unwrap_or_default();
    let (report, run) = app.engine.match_pipeline(&name, body.dry_run).await?;
    if !body.dry_run {
        audit::record(
            app.registry.db(),
            &caller.actor(),
            Change::new(Action::PipelineMatch, format!("pipeline/{name}"))
                .after(json!({"run": run, "counts": report.counts})),
        );
    }
    let report = to_json(&report)?.0;
    Ok(Json(
        json!({"pipeline": name, "dry_run": body.dry_run, "run": run, "report": report}),
    ))
}

/// The status of a review decision that could not be made.
pub(super) fn review_error_status(e: &nexo_sync::review::ReviewError) -> StatusCode {
    use nexo_sync::review::ReviewError as E;
    match e {
        E::Unknown(_) => StatusCode::NOT_FOUND,
        E::Decided { .. } | E::Linked { .. } => StatusCode::CONFLICT,
        E::NotCandidate { .. } | E::NoCandidate(_) => StatusCode::BAD_REQUEST,
        E::Vanished(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexo_sync::review::ReviewError;

    #[test]
    fn each_review_error_has_the_status_a_client_can_act_on() {
        let cases = [
            (ReviewError::Unknown(4), 404),
            (
                ReviewError::Decided {
                    id: 4,
                    status: ReviewStatus::Rejected,
                    by: "token:ops".into(),
                },
                409,
            ),
            (
                ReviewError::Linked {
                    id: 4,
                    connection: "xero".into(),
                    candidate: "c1".into(),
                    entity: 9,
                },
                409,
            ),
            (
                ReviewError::NotCandidate {
                    id: 4,
                    pick: "z".into(),
                    candidates: "c1, c2".into(),
                },
                400,
            ),
            (ReviewError::NoCandidate(4), 400),
        ];
        for (e, want) in cases {
            assert_eq!(review_error_status(&e).as_u16(), want, "{e}");
            let api = ApiError::from(nexo_sync::SyncError::from(e));
            assert_eq!(api.0.as_u16(), want, "{}", api.1);
        }
    }
}

//! `POST /api/survey`: read a connection once, read-only, and report what
//! it holds — the same report, through the same
//! [`nexo_sync::survey_read`], as `nexo survey --json`. Not audited: it
//! changes nothing (but it makes the host read an external system, so it
//! needs an operator).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiResult};
use crate::App;
use nexo_sync::survey_read::{
    DEFAULT_SIMILAR, ForPipeline, SurveyError, SurveyOptions, survey_connection,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SurveyBody {
    connection: String,
    #[serde(default)]
    streams: Vec<String>,
    #[serde(default)]
    similar: Option<f64>,
    #[serde(default)]
    for_pipeline: Option<String>,
}

impl From<SurveyError> for ApiError {
    fn from(e: SurveyError) -> Self {
        match e {
            SurveyError::Sync(e) => e.into(),
            SurveyError::Connection(e) => (*e).into(),
            e @ SurveyError::UnknownConnection { .. } => {
                ApiError(StatusCode::NOT_FOUND, e.to_string())
            }
            e @ (SurveyError::UnknownStream { .. }
            | SurveyError::Similar(_)
            | SurveyError::NotSource(_)) => ApiError::bad(e.to_string()),
            e @ (SurveyError::Read { .. } | SurveyError::Stuck { .. }) => {
                ApiError(StatusCode::BAD_GATEWAY, e.to_string())
            }
        }
    }
}

pub(super) async fn survey(
    State(app): State<Arc<App>>,
    body: Result<Json<SurveyBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| ApiError::bad(format!("survey body: {e}")))?;
    let opts = SurveyOptions {
        similar: body.similar.unwrap_or(DEFAULT_SIMILAR),
        for_pipeline: body.for_pipeline.map(|pipeline| ForPipeline {
            engine: &app.engine,
            pipeline,
        }),
    };
    let report = survey_connection(&app.connections, &body.connection, &body.streams, opts).await?;
    let json = serde_json::to_value(&report)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json))
}

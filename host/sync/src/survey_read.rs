//! Reading a connection once for `nexo survey` (and `POST /api/survey`):
//! every page of each chosen stream, read-only — no cursor kept, no
//! identity link, nothing written anywhere — then surveyed by
//! [`matching::survey`](crate::matching::survey). With a pipeline, the
//! source stream's records also go through the pipeline's mappers and the
//! destination's quality gate ([`Engine::gate_report`]), as a run would
//! check them. One place, so the CLI and the daemon report the same thing.

use serde::Serialize;
use serde_json::Value;

use super::SyncError;
use super::engine::Engine;
use super::gate_check::GateReport;
use super::matching::survey::{StreamSurvey, survey};
use nexo_registry::connections::{ConnectionError, Connections};
use nexo_runtime::PluginError;
use nexo_runtime::limits::Limits;
use nexo_runtime::plugin::{Operation, Record};

/// The similarity the survey uses unless told otherwise.
pub const DEFAULT_SIMILAR: f64 = 0.92;

/// How to survey.
#[derive(Debug, Clone)]
pub struct SurveyOptions<'a> {
    /// How alike two names must be (Jaro-Winkler, 0.5–1) to be reported
    /// as likely the same record.
    pub similar: f64,
    /// Also say which records of the pipeline's source stream its mappers
    /// and the destination's quality gate would refuse.
    pub for_pipeline: Option<ForPipeline<'a>>,
}

impl Default for SurveyOptions<'_> {
    fn default() -> Self {
        SurveyOptions {
            similar: DEFAULT_SIMILAR,
            for_pipeline: None,
        }
    }
}

/// The pipeline whose mappers and gate the records are checked by, and
/// the engine that opens them.
#[derive(Debug, Clone)]
pub struct ForPipeline<'a> {
    /// The engine (its registry loads the mappers).
    pub engine: &'a Engine,
    /// The pipeline's name.
    pub pipeline: String,
}

/// What one connection holds.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionSurvey {
    /// The connection.
    pub connection: String,
    /// Its plugin.
    pub plugin: String,
    /// The pipeline whose gate was applied, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_pipeline: Option<String>,
    /// One report per stream read, in the order asked.
    pub streams: Vec<StreamReport>,
}

/// What one stream holds.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Counts, fields, formats and likely duplicates.
    #[serde(flatten)]
    pub survey: StreamSurvey,
    /// Records the system sent that are not usable JSON objects (a run
    /// would quarantine them), by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// What the pipeline's mappers and gate would refuse (only for the
    /// pipeline's source stream, with `for_pipeline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateReport>,
}

/// A survey that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    /// No connection of that name.
    #[error("no connection named `{name}`; the connections: {}", list(.known))]
    UnknownConnection {
        /// The name asked for.
        name: String,
        /// The connections there are.
        known: Vec<String>,
    },
    /// The connection has no such stream.
    #[error("connection {connection} ({plugin}) has no stream `{stream}`; its streams: {}", list(.known))]
    UnknownStream {
        /// The connection.
        connection: String,
        /// Its plugin.
        plugin: String,
        /// The stream asked for.
        stream: String,
        /// Its streams.
        known: Vec<String>,
    },
    /// `similar` out of range.
    #[error("similar must be between 0.5 and 1.0 ({DEFAULT_SIMILAR} by default), not {0}")]
    Similar(f64),
    /// The pipeline does not read from the connection (or not the streams
    /// asked for).
    #[error("{0}")]
    NotSource(String),
    /// The connection could not be opened.
    #[error(transparent)]
    Connection(Box<ConnectionError>),
    /// A read failed.
    #[error("reading page {page} of {connection}/{stream}: {source}")]
    Read {
        /// The connection.
        connection: String,
        /// The stream.
        stream: String,
        /// The page (1 first).
        page: u64,
        /// Why (boxed: plugin errors are large).
        source: Box<PluginError>,
    },
    /// The connector kept saying there is more without moving on.
    #[error(
        "{connection}/{stream}: page {page} says there is more but gives the same position as the page before; the connector would loop, so the survey stops (report it to the plugin's vendor)"
    )]
    Stuck {
        /// The connection.
        connection: String,
        /// The stream.
        stream: String,
        /// The page.
        page: u64,
    },
    /// Opening the pipeline, its mappers or its gate failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Read `streams` of `connection` (all of them when empty; with a
/// pipeline, its source stream when empty) once, read-only, and survey
/// each.
pub async fn survey_connection(
    connections: &Connections,
    connection: &str,
    streams: &[String],
    opts: SurveyOptions<'_>,
) -> Result<ConnectionSurvey, SurveyError> {
    if !(0.5..=1.0).contains(&opts.similar) {
        return Err(SurveyError::Similar(opts.similar));
    }
    let (row, connector) = match connections.open(connection, Limits::default()).await {
        Ok(open) => open,
        Err(ConnectionError::Unknown(name)) => {
            let known = connections
                .registry()
                .db()
                .connection_names(None)
                .map_err(SyncError::from)?;
            return Err(SurveyError::UnknownConnection { name, known });
        }
        Err(e) => return Err(SurveyError::Connection(Box::new(e))),
    };
    let all = connector.spec().streams.clone();
    for s in streams {
        if !all.contains(s) {
            return Err(SurveyError::UnknownStream {
                connection: row.name.clone(),
                plugin: row.plugin_id.clone(),
                stream: s.clone(),
                known: all.clone(),
            });
        }
    }
    // With a pipeline: it must read from this connection, and its source
    // stream is the one checked.
    let gated = match &opts.for_pipeline {
        Some(f) => {
            let p = f.engine.pipeline_row(&f.pipeline)?.pipeline;
            if p.source.connection != row.name {
                return Err(SurveyError::NotSource(format!(
                    "pipeline `{}` reads from connection `{}`, not `{}`: survey `{}` for it, or name a pipeline that reads from `{}`",
                    p.name, p.source.connection, row.name, p.source.connection, row.name
                )));
            }
            if !streams.is_empty() && !streams.contains(&p.source.stream) {
                return Err(SurveyError::NotSource(format!(
                    "pipeline `{}` reads stream `{}` of `{}`, which is not among the streams asked for ({}); add it or name no streams",
                    p.name,
                    p.source.stream,
                    row.name,
                    streams.join(", ")
                )));
            }
            Some((f.engine, p))
        }
        None => None,
    };
    let streams: Vec<String> = match (&gated, streams.is_empty()) {
        (_, false) => streams.to_vec(),
        (Some((_, p)), true) => vec![p.source.stream.clone()],
        (None, true) => all,
    };
    let mut reports = Vec::new();
    for stream in &streams {
        let (records, unreadable) = read_all(&connector, &row.config, &row.name, stream).await?;
        let payloads: Vec<(String, Value)> = records
            .iter()
            .map(|r| {
                let payload = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
                (r.id.clone(), payload)
            })
            .collect();
        let gate = match &gated {
            Some((engine, p)) if p.source.stream == *stream => {
                Some(engine.gate_report(&p.name, records).await?)
            }
            _ => None,
        };
        reports.push(StreamReport {
            survey: survey(stream, &payloads, opts.similar),
            unreadable,
            gate,
        });
    }
    Ok(ConnectionSurvey {
        connection: row.name,
        plugin: row.plugin_id,
        for_pipeline: gated.map(|(_, p)| p.name),
        streams: reports,
    })
}

/// Every upsert of `stream`, page after page from the start, and the ids
/// of the records whose payloads were unusable. Deletes are left out: the
/// survey is about what the system holds.
async fn read_all(
    connector: &nexo_runtime::plugin::ConnectorPlugin,
    config: &str,
    connection: &str,
    stream: &str,
) -> Result<(Vec<Record>, Vec<String>), SurveyError> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    let mut state: Option<String> = None;
    let mut page = 0u64;
    loop {
        page += 1;
        let checked = connector
            .read_checked(config, stream, state.as_deref())
            .await
            .into_result()
            .map_err(|source| SurveyError::Read {
                connection: connection.to_string(),
                stream: stream.to_string(),
                page,
                source: Box::new(source),
            })?;
        records.extend(
            checked
                .page
                .records
                .into_iter()
                .filter(|r| r.operation != Operation::Delete),
        );
        unreadable.extend(checked.rejected.into_iter().map(|r| r.record.id));
        if !checked.page.has_more {
            break;
        }
        if checked.page.state == state {
            return Err(SurveyError::Stuck {
                connection: connection.to_string(),
                stream: stream.to_string(),
                page,
            });
        }
        state = checked.page.state;
    }
    Ok((records, unreadable))
}

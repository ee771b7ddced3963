//! Which records a pipeline would refuse, told before it first runs (`nexo
//! survey --for PIPELINE`): the records go through the pipeline's mappers
//! and the destination stream's quality gate exactly as a run's page does
//! (`decide.rs`) — same prepared pipeline, same
//! mapper chain, same gate — but nothing is written, linked or queued.

use serde::Serialize;
use serde_json::Value;

use super::SyncError;
use super::content::Content;
use super::engine::Engine;
use nexo_runtime::plugin::{Operation, Record};

/// How many refused records a report names (the count covers them all).
pub const FIRST_FAILURES: usize = 20;

/// Records mapped per call, as a run's page would be.
const CHUNK: usize = 200;

/// What a pipeline's mappers and quality gate would make of a stream's
/// records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    /// The pipeline.
    pub pipeline: String,
    /// Where it writes: `connection/stream`.
    pub destination: String,
    /// Records checked.
    pub checked: u64,
    /// Records that would be written.
    pub passed: u64,
    /// Records that would be quarantined: refused by a mapper or by the
    /// gate.
    pub failed: u64,
    /// Records the mappers leave out on purpose (not written, not failed).
    pub left_out: u64,
    /// The first [`FIRST_FAILURES`] refused records, in reading order.
    pub failures: Vec<GateRefusal>,
}

/// One record the pipeline would refuse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateRefusal {
    /// Its id in the source system.
    pub source_id: String,
    /// `mapper` or `gate`.
    pub step: &'static str,
    /// The offending field, when the gate names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why, as the dead letter would say it.
    pub message: String,
}

impl GateReport {
    fn refuse(&mut self, refusal: GateRefusal) {
        self.failed += 1;
        if self.failures.len() < FIRST_FAILURES {
            self.failures.push(refusal);
        }
    }
}

impl Engine {
    /// Map `records` (read from `pipeline`'s source stream) by the
    /// pipeline's mappers and check each result by the destination
    /// stream's quality gate, as a run would; write nothing. Opens the
    /// pipeline's connections and mappers (the destination is only asked
    /// for its streams).
    pub async fn gate_report(
        &self,
        pipeline: &str,
        records: Vec<Record>,
    ) -> Result<GateReport, SyncError> {
        let row = self.pipeline_row(pipeline)?;
        let p = &row.pipeline;
        let prepared = self.prepare(p).await?;
        let mut report = GateReport {
            pipeline: p.name.clone(),
            destination: format!("{}/{}", p.destination.connection, p.destination.stream),
            checked: 0,
            passed: 0,
            failed: 0,
            left_out: 0,
            failures: Vec::new(),
        };
        let mut records = records;
        records.retain(|r| r.operation == Operation::Upsert);
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(CHUNK));
            let chunk = std::mem::replace(&mut records, rest);
            let ids: Vec<String> = chunk.iter().map(|r| r.id.clone()).collect();
            let mut mapped = prepared.mapping.map(&p.name, chunk).await?;
            for id in ids {
                report.checked += 1;
                if let Some(failure) = mapped.failed.get(&id) {
                    report.refuse(GateRefusal {
                        source_id: id,
                        step: "mapper",
                        field: None,
                        message: failure.message(),
                    });
                    continue;
                }
                let Some(out) = mapped.records.remove(&id) else {
                    report.left_out += 1;
                    continue;
                };
                let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&out.payload) else {
                    report.refuse(GateRefusal {
                        source_id: id,
                        step: "mapper",
                        field: None,
                        message: "the mapper's output is not a JSON object".into(),
                    });
                    continue;
                };
                let mut content = Content::from_map(m, &prepared.dest_system);
                match prepared.gate.check_content(&mut content) {
                    Ok(()) => report.passed += 1,
                    Err(failure) => report.refuse(GateRefusal {
                        source_id: id,
                        step: "gate",
                        field: failure.field.clone(),
                        message: failure.to_string(),
                    }),
                }
            }
        }
        Ok(report)
    }
}

//! Running a page's records through the pipeline's mappers: in two halves
//! on two threads for large pages (a mapper is pure and each call gets its
//! own instance), one outcome per record — mapped, left out, or refused
//! alone (quarantined by the page, the rest goes on).

use std::collections::HashMap;

use super::SyncError;
use nexo_runtime::plugin::{MapOutcome, MapperPlugin, Operation, Record};
use nexo_runtime::{GuestError, PluginRef};

/// Records below which a page is mapped in one call. Splitting costs one
/// more call (an instance kept from the run's earlier calls, for a 1.1
/// mapper), while an interpreted mapper spends ≈ 50 µs a record: a
/// 100-record page in two halves took a Python mapper's pipeline from
/// ≈ 13 000 to ≈ 16 500 records/s and left a Rust mapper's unchanged
/// (docs/BENCHMARKS.md).
const PARALLEL_MAP_MIN: usize = 50;

/// What the pipeline's mappers made of a page's upserts, by source id: the
/// record to write, or why a mapper refused it. A source record in neither
/// was left out on purpose.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    /// The mapped record of each source record that has one.
    pub records: HashMap<String, Record>,
    /// Source records a mapper refused, each alone: which mapper and why.
    pub failed: HashMap<String, MapFailure>,
}

/// Why a mapper refused one record.
#[derive(Debug, Clone)]
pub(crate) struct MapFailure {
    /// The mapper.
    pub mapper: PluginRef,
    /// What it said.
    pub error: GuestError,
    /// The record as the source sent it (what a replay maps again).
    pub source: Record,
}

impl MapFailure {
    /// The dead letter's message: who refused the record and why.
    pub fn message(&self) -> String {
        format!("mapper {} refused the record: {}", self.mapper, self.error)
    }
}

impl Mapped {
    /// `records` as they are: a pipeline without mappers.
    pub fn passing(records: Vec<Record>) -> Mapped {
        Mapped {
            records: records.into_iter().map(|r| (r.id.clone(), r)).collect(),
            failed: HashMap::new(),
        }
    }

    fn extend(&mut self, other: Mapped) {
        self.records.extend(other.records);
        self.failed.extend(other.failed);
    }
}

/// Map a page's records in two halves at once, on two worker threads: a
/// mapper is pure and each call gets its own instance.
pub(super) async fn map_parallel(
    mappers: &[(MapperPlugin, String)],
    name: &str,
    mut records: Vec<Record>,
) -> Result<Mapped, SyncError> {
    if records.len() < PARALLEL_MAP_MIN {
        return map_records(mappers, name, &records).await;
    }
    let second = records.split_off(records.len() / 2);
    let (m, n) = (mappers.to_vec(), name.to_string());
    let other = tokio::spawn(async move { map_records(&m, &n, &second).await });
    let mut mapped = map_records(mappers, name, &records).await?;
    let rest = other.await.map_err(|e| SyncError::Malformed {
        pipeline: name.to_string(),
        message: format!("the mapping task failed: {e}"),
    })??;
    mapped.extend(rest);
    Ok(mapped)
}

/// Run records' upserts through the mappers in order, each mapper given
/// what the one before made. A record refused by a mapper goes no further;
/// one turned into more than one record is refused too (a pipeline writes
/// one destination record per source record).
pub(super) async fn map_records(
    mappers: &[(MapperPlugin, String)],
    name: &str,
    records: &[Record],
) -> Result<Mapped, SyncError> {
    let name = &name.to_string();
    // Deletes are not mapped: they carry no payload to transform.
    let mut batch: Vec<Record> = records
        .iter()
        .filter(|r| r.operation == Operation::Upsert)
        .cloned()
        .collect();
    let sources: HashMap<&str, &Record> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut failed = HashMap::new();
    for (mapper, config) in mappers {
        if batch.is_empty() {
            break;
        }
        let outcomes = mapper
            .map(config, &batch)
            .await
            .into_result()
            .map_err(|source| SyncError::Plugin {
                pipeline: name.clone(),
                step: "map",
                source: Box::new(source),
            })?;
        let mut next = Vec::with_capacity(batch.len());
        for (input, outcome) in batch.into_iter().zip(outcomes) {
            let refuse = |error| MapFailure {
                mapper: mapper.plugin().clone(),
                error,
                source: sources
                    .get(input.id.as_str())
                    .map_or_else(|| input.clone(), |r| (*r).clone()),
            };
            match outcome {
                MapOutcome::Failed(error) => {
                    let f = refuse(error);
                    failed.insert(input.id, f);
                }
                MapOutcome::Mapped(mut out) => match out.len() {
                    0 => {}
                    1 => next.extend(out.pop()),
                    n => {
                        let why = format!(
                            "it made {n} records from source record `{}`; a pipeline writes one destination record per source record",
                            input.id
                        );
                        let f = refuse(GuestError::Rejected(why));
                        failed.insert(input.id, f);
                    }
                },
            }
        }
        batch = next;
    }
    Ok(Mapped {
        records: batch.into_iter().map(|r| (r.id.clone(), r)).collect(),
        failed,
    })
}

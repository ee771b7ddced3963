//! Running a page's records through the pipeline's mappers: in two halves
//! on two threads for large pages (a mapper is pure and each call gets its
//! own instance), with the output checked to keep the source ids.

use std::collections::{HashMap, HashSet};

use super::SyncError;
use nexo_runtime::plugin::{MapperPlugin, Operation, Record};

/// Records below which a page is mapped in one call.
const PARALLEL_MAP_MIN: usize = 512;

/// Map a page's records in two halves at once, on two worker threads: a
/// mapper is pure and each call gets its own instance.
pub(super) async fn map_parallel(
    mappers: &[(MapperPlugin, String)],
    name: &str,
    mut records: Vec<Record>,
) -> Result<HashMap<String, Record>, SyncError> {
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

/// Run records' upserts through the mappers; output keyed by source id.
pub(super) async fn map_records(
    mappers: &[(MapperPlugin, String)],
    name: &str,
    records: &[Record],
) -> Result<HashMap<String, Record>, SyncError> {
    let name = &name.to_string();
    let inputs: HashSet<&str> = records
        .iter()
        .filter(|r| r.operation == Operation::Upsert)
        .map(|r| r.id.as_str())
        .collect();
    // Deletes are not mapped: they carry no payload to transform.
    let owned: Vec<Record>;
    let mut input: &[Record] = records;
    if records.iter().any(|r| r.operation == Operation::Delete) {
        owned = records
            .iter()
            .filter(|r| r.operation == Operation::Upsert)
            .cloned()
            .collect();
        input = &owned;
    }
    let mut batch: Vec<Record> = Vec::new();
    for (i, (mapper, config)) in mappers.iter().enumerate() {
        let given = if i == 0 { input } else { &batch[..] };
        if given.is_empty() {
            break;
        }
        batch = mapper
            .map(config, given)
            .await
            .into_result()
            .map_err(|source| SyncError::Plugin {
                pipeline: name.clone(),
                step: "map",
                source: Box::new(source),
            })?;
        let mut seen = HashSet::new();
        for r in &batch {
            if !inputs.contains(r.id.as_str()) {
                return Err(SyncError::Malformed {
                    pipeline: name.clone(),
                    message: format!(
                        "mapper {} returned a record with id `{}`, which is not the id of any record it was given; a mapper must keep the source id",
                        mapper.plugin(),
                        r.id
                    ),
                });
            }
            if !seen.insert(r.id.clone()) {
                return Err(SyncError::Malformed {
                    pipeline: name.clone(),
                    message: format!(
                        "mapper {} returned record `{}` twice",
                        mapper.plugin(),
                        r.id
                    ),
                });
            }
        }
    }
    Ok(batch.into_iter().map(|r| (r.id.clone(), r)).collect())
}

//! A mapper whose behaviour the sync engine's tests choose through its
//! config, so that a pipeline can be given a visible transformation, a
//! filter, or output the host must refuse, without a mapper per case.
//!
//! Config (every field optional):
//! `{"set": {"field": value, ...}, "drop": ["field", ...], "malformed": false,
//! "filter_field": null, "patch": {"record-id": {"field": value}},
//! "fail": {"record-id": "reason"}, "split": ["record-id"]}`.
//! - `set`: fields written over each upsert's payload;
//! - `patch`: fields written over the payload of one record, by id (to make
//!   one record of a batch dirty);
//! - `drop`: fields removed from each upsert's payload (after `set`);
//! - `filter_field`: when given, an upsert whose payload lacks this field or
//!   has it `null` or `false` is left out of the output;
//! - `malformed`: return, for every record, one with an empty id and the JSON
//!   string `"oops"` as payload, which is not an object;
//! - `fail`: records (by id) this mapper refuses alone, with the reason
//!   (a `failed(rejected)` outcome);
//! - `split`: records (by id) mapped to two records instead of one;
//! - `stamp_calls`: a field set on each output to the number of `map`
//!   calls this instance has served (1 in a fresh instance), to see the
//!   host reuse instances;
//! - `trap`: panic (the instance traps).
//!
//! Records keep their `stream`, `id`, `operation` and `cursor`; deletes pass
//! through unchanged.

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

/// What the mapper does to each record.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fields to set (overwriting).
    #[serde(default)]
    pub set: Map<String, Value>,
    /// Fields to remove.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Return a payload that is not a JSON object, on purpose.
    #[serde(default)]
    pub malformed: bool,
    /// Keep only upserts where this field is present and not `null`/`false`.
    #[serde(default)]
    pub filter_field: Option<String>,
    /// Per-record fields to set, by record id.
    #[serde(default)]
    pub patch: Map<String, Value>,
    /// Records refused alone, by id, with the reason.
    #[serde(default)]
    pub fail: Map<String, Value>,
    /// Records mapped to two records, by id.
    #[serde(default)]
    pub split: Vec<String>,
    /// Field to stamp with this instance's call count.
    #[serde(default)]
    pub stamp_calls: Option<String>,
    /// Trap on purpose.
    #[serde(default)]
    pub trap: bool,
}

/// `map` calls this instance has served.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The mapper.
#[derive(Debug)]
pub struct TestMapper;

impl Mapper for TestMapper {
    type Config = Config;

    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        assert!(!config.trap, "trapping on purpose");
        let stamped;
        let config = match &config.stamp_calls {
            Some(field) => {
                let mut c = config.clone();
                c.set.insert(field.clone(), Value::from(calls));
                stamped = c;
                &stamped
            }
            None => config,
        };
        Ok(batch
            .into_iter()
            .map(|record| {
                let twice = config.split.contains(&record.id);
                match map_one(config, record) {
                    Ok(Some(r)) if twice => MapOutcome::Mapped(vec![r.clone(), r]),
                    other => other.into(),
                }
            })
            .collect())
    }
}

fn map_one(config: &Config, record: Record) -> Result<Option<Record>, Error> {
    if config.malformed {
        return Ok(Some(Record {
            id: String::new(),
            payload: "\"oops\"".to_string(),
            ..record
        }));
    }
    if let Some(reason) = config.fail.get(&record.id) {
        return Err(Error::rejected(match reason {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    if record.operation == Operation::Delete {
        return Ok(Some(record));
    }
    let mut payload: Map<String, Value> = record.payload_as()?;
    if let Some(field) = &config.filter_field
        && matches!(
            payload.get(field),
            None | Some(Value::Null | Value::Bool(false))
        )
    {
        return Ok(None);
    }
    for (field, value) in &config.set {
        payload.insert(field.clone(), value.clone());
    }
    for field in &config.drop {
        payload.remove(field);
    }
    if let Some(Value::Object(fields)) = config.patch.get(&record.id) {
        for (field, value) in fields {
            payload.insert(field.clone(), value.clone());
        }
    }
    Ok(Some(Record {
        payload: Value::Object(payload).to_string(),
        ..record
    }))
}

nexo_sdk::export_mapper!(TestMapper);

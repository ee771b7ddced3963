//! A small mapper for the conformance kit (`nexo plugin test`): with
//! `"fault": "none"` it is deterministic — each upsert's payload is copied
//! with `"mapped": true` added, a payload with `"skip": true` maps to no
//! record, one with `"fail": true` fails alone with a reason, deletes pass
//! through — and with `"fault": "non-deterministic"` each output also gets
//! a `"stamp"` that differs from call to call, even in a fresh instance
//! (the wall clock's nanoseconds and a per-instance call count), which the
//! kit must catch by mapping the same batch twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The deliberate bug a step runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// No bug: the same input always maps to the same output.
    #[default]
    None,
    /// Each output carries a value that changes between calls.
    NonDeterministic,
}

/// The mapper's configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The deliberate bug (`none` for a correct mapper).
    #[serde(default)]
    pub fault: Fault,
}

/// The mapper.
#[derive(Debug)]
pub struct KitMapper;

/// `map` calls this instance has served.
static CALLS: AtomicU64 = AtomicU64::new(0);

impl Mapper for KitMapper {
    type Config = Config;

    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        let stamp = (config.fault == Fault::NonDeterministic).then(stamp);
        Ok(batch
            .into_iter()
            .map(|record| map_one(record, stamp.as_deref()).into())
            .collect())
    }
}

/// A value that differs on every call: the clock alone could repeat
/// (a coarse clock), the counter alone restarts in a fresh instance.
fn stamp() -> String {
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos}-{calls}")
}

fn map_one(mut record: Record, stamp: Option<&str>) -> Result<Option<Record>, Error> {
    if record.operation == Operation::Delete {
        return Ok(Some(record));
    }
    let mut payload: Map<String, Value> = record.payload_as()?;
    let flag = |field: &str| payload.get(field) == Some(&Value::Bool(true));
    if flag("fail") {
        return Err(Error::rejected(format!(
            "record {}: its payload asks to fail (`\"fail\": true`)",
            record.id
        )));
    }
    if flag("skip") {
        return Ok(None);
    }
    payload.insert("mapped".into(), Value::Bool(true));
    if let Some(stamp) = stamp {
        payload.insert("stamp".into(), Value::String(stamp.to_string()));
    }
    record.payload = serde_json::to_string(&payload)?;
    Ok(Some(record))
}

nexo_sdk::export_mapper!(KitMapper);

//! Nexo mapper: declarative field rules, so an admin maps fields without
//! writing code. Runs in the sandbox like any mapper (no network, no
//! storage).
//!
//! Rules run in this fixed order on each upsert record (deletes pass
//! through, only `stream` applies):
//!
//! 1. `filters` — keep the record only if every filter holds, tested on the
//!    record **as it arrives** (source field names); others are left out;
//! 2. `rename` — every `from` is taken out first, then each value written
//!    to its `to` (so `a → b` and `b → a` swap);
//! 3. `defaults` — set where the field is absent or `null`;
//! 4. `lookups` — replace a value through a table;
//! 5. `convert` — change a field's type (absent / `null` fields are skipped);
//! 6. `templates` — build text from fields: `"{first_name} {last_name}"`
//!    (`{path}` must exist, `{path?}` may be missing, `{{`/`}}` are braces);
//! 7. `drop` — remove fields; then `keep` — when given, only these fields
//!    stay (e.g. the few a status update carries back);
//! 8. `required` — fail if a field is absent or `null` in the result.
//!
//! Paths are dotted (`address.city`). A mapper can only fail a whole batch:
//! with `on_error = "fail"` (default) every failing record is named with the
//! rule and field in one `Rejected` error; with `"skip"` it is left out and
//! logged.
//!
//! ```json
//! {"filters": [{"field": "lifecycle_stage", "in": ["customer", "evangelist"]}],
//!  "rename": {"firstname": "first_name", "company.name": "company_name"},
//!  "defaults": {"country": "DE"},
//!  "lookups": {"country": {"table": {"Germany": "DE"}, "fallback": "keep"}},
//!  "convert": {"amount": {"to": "decimal_string", "decimal_separator": ","},
//!              "signed_on": {"to": "date", "formats": ["DD.MM.YYYY"]}},
//!  "templates": {"display_name": "{first_name} {last_name?}"},
//!  "drop": ["internal_notes"], "required": ["email"], "stream": "contacts"}
//! ```

use std::collections::BTreeMap;

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::Value;

pub mod convert;
pub mod dates;
pub mod path;
mod rules;
mod template;

pub use convert::{Conversion, Target};
pub use rules::{Fallback, Filter, Lookup, RuleError, Test};

/// What to do with a record a rule fails on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the batch, naming every failing record, rule and field.
    #[default]
    Fail,
    /// Leave the record out and log why.
    Skip,
}

/// The rules. Every field is optional; see the crate docs for the order.
///
/// Its JSON Schema ships as `config.schema.json` (named in
/// `nexo-plugin.toml`). The properties whose values name OUTPUT fields
/// carry `"x-nexo-target"` (`"keys"`, `"values"` or `"items"`), so
/// `pipeline apply` checks them against the destination stream when this
/// is a pipeline's last mapper.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// 1. Keep records for which every filter holds.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// 2. Source path → destination path.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "values"))]
    pub rename: BTreeMap<String, String>,
    /// 3. Path → value set when the field is absent or `null`.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "keys"))]
    pub defaults: BTreeMap<String, Value>,
    /// 4. Path → value table.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "keys"))]
    pub lookups: BTreeMap<String, Lookup>,
    /// 5. Path → conversion.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "keys"))]
    pub convert: BTreeMap<String, Conversion>,
    /// 6. Path → template text.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "keys"))]
    pub templates: BTreeMap<String, String>,
    /// 7. Paths to remove.
    #[serde(default)]
    pub drop: Vec<String>,
    /// 7. Paths to keep, all others removed (after `drop`); none: keep all.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "items"))]
    pub keep: Vec<String>,
    /// 8. Paths that must hold a value in the result.
    #[serde(default)]
    #[schemars(extend("x-nexo-target" = "items"))]
    pub required: Vec<String>,
    /// Stream of the output records; default: the input record's stream.
    #[serde(default)]
    pub stream: Option<String>,
    /// `fail` (default) or `skip`.
    #[serde(default)]
    pub on_error: OnError,
}

/// The config's JSON Schema, as text.
pub fn config_schema() -> String {
    schema_of::<Config>()
}

/// The result of mapping a batch.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Output records, in input order.
    pub records: Vec<Record>,
    /// Ids of records the filters left out.
    pub filtered: Vec<String>,
    /// Records a rule failed on (with `on_error = "skip"`).
    pub failed: Vec<RuleError>,
}

/// One record through the rules: the output record, `None` when the
/// filters leave it out, or the rule that failed. A delete passes through.
fn map_one(config: &Config, record: &Record) -> Result<Option<Record>, RuleError> {
    let mut r = record.clone();
    if let Some(stream) = &config.stream {
        r.stream = stream.clone();
    }
    if record.operation == Operation::Delete {
        return Ok(Some(r));
    }
    Ok(rules::apply(config, record)?.map(|payload| {
        r.payload = payload.to_string();
        r
    }))
}

/// Map a batch (the mapper without the Wasm glue).
pub fn map_records(config: &Config, batch: &[Record]) -> Result<Mapped, Error> {
    rules::check_config(config).map_err(Error::config)?;
    let mut out = Mapped::default();
    for record in batch {
        match map_one(config, record) {
            Ok(Some(r)) => out.records.push(r),
            Ok(None) => out.filtered.push(record.id.clone()),
            Err(e) => out.failed.push(e),
        }
    }
    if config.on_error == OnError::Fail && !out.failed.is_empty() {
        let list: Vec<String> = out.failed.iter().map(ToString::to_string).collect();
        return Err(Error::rejected(format!(
            "{} of {} records failed a rule (fix the data or the rules, or set on_error = \"skip\"): {}",
            out.failed.len(),
            batch.len(),
            list.join("; ")
        )));
    }
    Ok(out)
}

/// The mapper.
#[derive(Debug)]
pub struct FieldMapper;

impl Mapper for FieldMapper {
    type Config = Config;

    /// Each record on its own: a record a rule fails on is refused alone
    /// (the host quarantines it with the rule's message), or with
    /// `on_error = "skip"` left out and logged.
    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        rules::check_config(config).map_err(Error::config)?;
        Ok(batch
            .iter()
            .map(|record| match map_one(config, record) {
                Ok(r) => MapOutcome::from(Ok(r)),
                Err(e) if config.on_error == OnError::Skip => {
                    #[cfg(target_arch = "wasm32")]
                    nexo_sdk::log::log(nexo_sdk::log::Level::Warn, &format!("skipped: {e}"));
                    drop(e);
                    MapOutcome::skipped()
                }
                Err(e) => MapOutcome::Failed(Error::rejected(e.to_string())),
            })
            .collect())
    }
}

nexo_sdk::export_mapper!(FieldMapper);

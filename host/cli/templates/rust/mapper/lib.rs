//! {{name}}: a Nexo mapper. It copies each `contacts` record and renames one
//! field (`name` → `full_name` unless the config says otherwise); a record
//! that is not a JSON object is refused alone, the rest of the batch goes on.

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

/// What the admin may set; `{}` keeps the defaults.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The field to rename.
    #[serde(default = "default_from")]
    pub from: String,
    /// Its new name.
    #[serde(default = "default_to")]
    pub to: String,
}

fn default_from() -> String {
    "name".into()
}

fn default_to() -> String {
    "full_name".into()
}

/// The mapper.
#[derive(Debug)]
pub struct Plugin;

impl Mapper for Plugin {
    type Config = Config;

    fn map(config: &Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        Ok(batch.iter().map(|r| map_one(config, r).into()).collect())
    }
}

/// One record: the same id, operation and cursor; the payload with the
/// field renamed. Deletes carry no payload and pass unchanged.
fn map_one(config: &Config, record: &Record) -> Result<Option<Record>, Error> {
    if record.operation == Operation::Delete {
        return Ok(Some(record.clone()));
    }
    let mut payload: Map<String, Value> = record
        .payload_as()
        .map_err(|e| Error::rejected(format!("record {}: {e}", record.id)))?;
    if let Some(value) = payload.remove(&config.from) {
        payload.insert(config.to.clone(), value);
    }
    let mut out = Record::upsert(&record.stream, &record.id, &payload)?;
    out.cursor = record.cursor.clone();
    Ok(Some(out))
}

nexo_sdk::export_mapper!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_field_is_renamed_and_the_rest_kept() {
        let config = Config { from: default_from(), to: default_to() };
        let input = Record::upsert("contacts", "1", &json!({"name": "Ada", "email": "a@b.c"})).unwrap();
        let out = map_one(&config, &input).unwrap().unwrap();
        let payload: Value = out.payload_as().unwrap();
        assert_eq!(payload, json!({"full_name": "Ada", "email": "a@b.c"}));
    }
}

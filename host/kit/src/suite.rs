//! `nexo-test.toml`: what a suite needs beyond the component — sample
//! records for the write checks and the mapper's input. Every table is
//! optional; without one the kit runs the checks that need no samples and
//! says which it skipped and why.
//!
//! ```toml
//! [streams.contacts]
//! create = { name = "Ada Lovelace", email = "ada+{{run}}@example.com" }
//! update = { name = "Ada King" }
//! invalid = { email = "not-an-e-mail" }
//! deletes = true
//! lookback = 0
//!
//! [read]
//! reference_config = { page_size = 5000 }
//!
//! [mapper]
//! stream = "contacts"
//! input = [{ id = "1", payload = { name = "Ada" } }]
//! budget_ms = 5000
//! ```
//!
//! `{{run}}` in a string becomes a value unique to the run and the sample
//! (so a suite can run against a live system again and again).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// A suite file that cannot be used, naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// It cannot be read.
    #[error("cannot read the suite file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a valid suite.
    #[error("suite file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with its place.
        message: String,
    },
}

/// A parsed `nexo-test.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Per-stream samples and expectations.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamSuite>,
    /// Bounds on reads.
    #[serde(default)]
    pub read: ReadBounds,
    /// The mapper's input.
    pub mapper: Option<MapperSuite>,
}

/// Samples for one stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSuite {
    /// A record the connector can create (the write checks run when set).
    pub create: Option<Value>,
    /// The same record changed (default: `create` again).
    pub update: Option<Value>,
    /// A record the system must refuse (`rejected`), alone.
    pub invalid: Option<Value>,
    /// What a delete does: `true` (the record is gone), `false` (the
    /// connector refuses deletes, per record), or `"archive"` (the record
    /// stays, archived, and may still be read).
    #[serde(default)]
    pub deletes: Deletes,
    /// Records an incremental read may return again after no change (a
    /// look-back window); by default those of the last page.
    pub lookback: Option<usize>,
}

/// What a connector does with a delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Deletes {
    /// Refuses it, per record (`rejected`).
    #[default]
    No,
    /// Removes the record.
    Yes,
    /// Archives the record: it stays, and may still be read.
    Archive,
}

impl Deletes {
    /// Whether a delete succeeds.
    pub fn supported(self) -> bool {
        self != Deletes::No
    }
}

impl<'de> Deserialize<'de> for Deletes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(Deletes::Yes),
            Raw::Flag(false) => Ok(Deletes::No),
            Raw::Word(w) if w == "archive" => Ok(Deletes::Archive),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "deletes = \"{w}\": expected true, false or \"archive\""
            ))),
        }
    }
}

/// Bounds on a read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadBounds {
    /// Pages one read to the end may take before the kit calls it a loop.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Saved states the resume check starts from (spread over the read).
    #[serde(default = "default_resume_points")]
    pub resume_points: usize,
    /// Config fields that make a read's pages end elsewhere (e.g.
    /// `{ page_size = 5000 }`), set over the config for one more read: a
    /// record it returns that the read from the start did not is one lost
    /// at a page boundary — often a tie on the cursor. Without it, a record
    /// every read loses the same way cannot be seen.
    pub reference_config: Option<Value>,
}

impl Default for ReadBounds {
    fn default() -> Self {
        ReadBounds {
            max_pages: default_max_pages(),
            resume_points: default_resume_points(),
            reference_config: None,
        }
    }
}

fn default_max_pages() -> u32 {
    10_000
}

fn default_resume_points() -> usize {
    8
}

/// A mapper's input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperSuite {
    /// The stream the input records come from.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Sample input records (`id`, `payload`); the budget check repeats
    /// them to a batch of 1 000.
    pub input: Vec<SampleRecord>,
    /// Time one batch of 1 000 may take, in milliseconds.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
}

fn default_stream() -> String {
    "records".into()
}

fn default_budget_ms() -> u64 {
    5_000
}

/// One sample input record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRecord {
    /// Its id in the source system.
    pub id: String,
    /// Its payload (a JSON object).
    pub payload: Value,
}

impl Suite {
    /// Reads and checks the suite file at `path`.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Suite::parse(&text).map_err(|message| SuiteError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a suite from TOML text; the error names the field.
    pub fn parse(text: &str) -> Result<Suite, String> {
        let suite: Suite = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, s) in &suite.streams {
            for (what, v) in [
                ("create", &s.create),
                ("update", &s.update),
                ("invalid", &s.invalid),
            ] {
                if let Some(v) = v
                    && !v.is_object()
                {
                    return Err(format!(
                        "streams.{name}.{what} must be a table (the record's fields)"
                    ));
                }
            }
            if s.create.is_none() && (s.update.is_some() || s.invalid.is_some()) {
                return Err(format!(
                    "streams.{name}: `update` and `invalid` need a `create` sample to start from"
                ));
            }
        }
        if let Some(m) = &suite.mapper {
            if m.input.is_empty() {
                return Err("mapper.input must hold at least one record".into());
            }
            if let Some(bad) = m.input.iter().find(|r| !r.payload.is_object()) {
                return Err(format!(
                    "mapper.input record {}: payload must be a table",
                    bad.id
                ));
            }
        }
        if let Some(c) = &suite.read.reference_config
            && !c.is_object()
        {
            return Err("read.reference_config must be a table (config fields)".into());
        }
        if suite.read.max_pages == 0 {
            return Err("read.max_pages must be at least 1".into());
        }
        Ok(suite)
    }
}

/// `value` with every `{{run}}` in its strings replaced by `unique`.
pub fn instantiate(value: &Value, unique: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{{run}}", unique)),
        Value::Array(items) => Value::Array(items.iter().map(|v| instantiate(v, unique)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), instantiate(v, unique)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_is_named() {
        let e = Suite::parse("[streams.contacts]\ncreat = { name = \"x\" }\n").unwrap_err();
        assert!(e.contains("creat"), "{e}");
        let e = Suite::parse("[streams.contacts]\ninvalid = { name = \"x\" }\n").unwrap_err();
        assert!(e.contains("need a `create`"), "{e}");
        let e = Suite::parse("[mapper]\ninput = []\n").unwrap_err();
        assert!(e.contains("at least one"), "{e}");
        let e = Suite::parse("[read]\nreference_config = 5000\n").unwrap_err();
        assert!(e.contains("read.reference_config must be a table"), "{e}");
        let s = Suite::parse("[read]\nreference_config = { page_size = 5000 }\n").unwrap();
        assert_eq!(
            s.read.reference_config,
            Some(serde_json::json!({"page_size": 5000}))
        );
    }

    #[test]
    fn deletes_are_true_false_or_archive() {
        let d = |t: &str| {
            Suite::parse(&format!(
                "[streams.c]\ncreate = {{ a = 1 }}\ndeletes = {t}\n"
            ))
        };
        assert_eq!(d("true").unwrap().streams["c"].deletes, Deletes::Yes);
        assert_eq!(d("false").unwrap().streams["c"].deletes, Deletes::No);
        assert_eq!(
            d("\"archive\"").unwrap().streams["c"].deletes,
            Deletes::Archive
        );
        let e = d("\"soft\"").unwrap_err();
        assert!(e.contains("\"archive\""), "{e}");
    }

    #[test]
    fn run_placeholders_are_filled() {
        let s =
            Suite::parse("[streams.c]\ncreate = { email = \"a+{{run}}@x.com\", n = 1 }\n").unwrap();
        let v = instantiate(s.streams["c"].create.as_ref().unwrap(), "r1-2");
        assert_eq!(v["email"], "a+r1-2@x.com");
        assert_eq!(v["n"], 1);
    }
}

//! Pipeline definitions: what flows from which connection to which, through
//! which mappers, who owns the data, how conflicts and deletes are handled.
//! Parsed from TOML (`nexo pipeline apply FILE`) and validated before
//! anything is saved, with messages that name the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod grouping;
mod match_rules;
mod retry_policy;

use super::bounds::RunLimits;
use super::schedule::{Schedule, ScheduleSpec};
pub use grouping::{CommitGrouping, DEFAULT_GROUP_RECORDS, DEFAULT_GROUP_WAIT_MS};
pub use match_rules::{DEFAULT_SIMILARITY, MatchRules, Reference};
pub use retry_policy::{DEFAULT_RETRY_WINDOW, Retry};

/// Full refresh or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Read only what changed since the last committed cursor.
    #[default]
    Incremental,
    /// Read everything every run; records no longer present count as deleted.
    FullRefresh,
}

/// Who wins when both sides changed the same record since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The source's version is written.
    #[default]
    SourceWins,
    /// The destination's version is kept.
    DestinationWins,
    /// The version with the later cursor value (modification time) wins.
    NewestWins,
    /// Nothing is written; the pair waits in the conflict queue for a person.
    Hold,
}

/// What a delete in the source does to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeletePolicy {
    /// Delete the linked destination record.
    Propagate,
    /// Keep it, but apply the pipeline's `archive` fields (e.g. a status).
    Archive,
    /// Leave the destination as it is.
    #[default]
    Ignore,
}

/// One end of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Connection name.
    pub connection: String,
    /// Stream of that connection.
    pub stream: String,
}

/// A mapper step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperStep {
    /// Installed mapper plugin id (`vendor/name`).
    pub plugin: String,
    /// Pinned version; the active one when absent.
    #[serde(default)]
    pub version: Option<semver::Version>,
    /// The mapper's config.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Which system owns the entity, and per-field exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Master {
    /// Connection that owns the entity (source or destination); the source
    /// when absent. When it is the destination, this pipeline only creates
    /// records the destination lacks and never overwrites or deletes.
    #[serde(default)]
    pub system: Option<String>,
    /// Field → owning connection. On updates the destination keeps its own
    /// value for fields it owns.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Conflict settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Conflicts {
    /// The policy.
    #[serde(default)]
    pub policy: ConflictPolicy,
}

/// Delete settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Deletes {
    /// The policy.
    #[serde(default)]
    pub policy: DeletePolicy,
    /// Fields set on the destination record by the `archive` policy.
    #[serde(default)]
    pub archive: BTreeMap<String, serde_json::Value>,
}

/// Canonical models the data-quality gate can check beyond JSON Schema.
pub const MODELS: &[&str] = &[
    "contact",
    "company",
    "product",
    "invoice",
    "payment",
    "account",
    "journal-entry",
];

/// A pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Unique name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Incremental or full refresh.
    #[serde(default)]
    pub mode: SyncMode,
    /// Entity type in the identity map (`contact`, `invoice`, …): records of
    /// one entity type are linked across systems and pipelines.
    pub entity: String,
    /// Canonical model the mapped records must satisfy (see [`MODELS`]).
    #[serde(default)]
    pub model: Option<String>,
    /// Where records come from.
    pub source: Endpoint,
    /// Mappers applied in order.
    #[serde(default)]
    pub mappers: Vec<MapperStep>,
    /// Where records go.
    pub destination: Endpoint,
    /// Ownership.
    #[serde(default)]
    pub master: Master,
    /// Conflicts.
    #[serde(default)]
    pub conflicts: Conflicts,
    /// Deletes.
    #[serde(default)]
    pub deletes: Deletes,
    /// Retries.
    #[serde(default)]
    pub retry: Retry,
    /// Records per write call (the page is split into batches of this size).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds of look-back: the next run re-reads from this long before the
    /// previous run started, so records committed late are not skipped
    /// (re-read records that did not change are recognised and not written).
    #[serde(default)]
    pub look_back_seconds: u64,
    /// Only update destination records already linked to the entity (by
    /// another pipeline, e.g. the one that created them); never create. For
    /// pipelines that carry status back, such as invoice payments to deals.
    #[serde(default)]
    pub update_only: bool,
    /// Read the destination's changes before each run, so conflicts with
    /// edits made there are seen. Needs a readable destination stream.
    #[serde(default = "yes")]
    pub track_destination: bool,
    /// When the daemon runs it on its own (none: only when asked).
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// How far one run may go (pages, records, time, state size).
    #[serde(default)]
    pub limits: RunLimits,
    /// How many pages are committed together.
    #[serde(default)]
    pub commit: CommitGrouping,
    /// Recognise the records the destination already holds before the
    /// first sync creates anything (`[match]`).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matching: Option<MatchRules>,
}

fn default_batch() -> usize {
    100
}
fn yes() -> bool {
    true
}

/// A pipeline definition that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Not valid TOML, or a field of the wrong type / unknown.
    #[error("pipeline file {file}: {message}")]
    Syntax {
        /// File (or `<input>`).
        file: String,
        /// What is wrong, with the field path and position.
        message: String,
    },
    /// Structurally fine but inconsistent.
    #[error("pipeline `{name}`: field `{field}`: {message}")]
    Invalid {
        /// Pipeline name.
        name: String,
        /// The field.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Checks against the installed plugins and connections failed; each
    /// problem starts with the field's path (`mappers[0].config.status: …`).
    #[error("pipeline `{name}`: {}", problems.join("; "))]
    Problems {
        /// Pipeline name.
        name: String,
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The new definition changes what the saved cursor and links belong to.
    #[error(
        "pipeline `{name}`: {} changed while it has a saved cursor or sync history; the old cursor and links would carry over to the new {}. Re-apply with `--reset` (API: `?reset=true`) to save it and reset its cursor, so the next run reads everything again (records already in sync are recognised and not written)",
        changes.join(", "),
        if changes.len() == 1 { "identity" } else { "identities" }
    )]
    NeedsReset {
        /// Pipeline name.
        name: String,
        /// What changed (`entity `invoice` → `bill``).
        changes: Vec<String>,
    },
}

fn invalid(p: &Pipeline, field: &str, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid {
        name: p.name.clone(),
        field: field.to_string(),
        message: message.into(),
    }
}

impl Pipeline {
    /// Parse and check a pipeline from TOML text (`file` names it in errors).
    pub fn from_toml(text: &str, file: &str) -> Result<Self, PipelineError> {
        let p = Self::parse_toml(text, file)?;
        p.check()?;
        Ok(p)
    }

    /// Parse a pipeline from TOML text without [`Pipeline::check`]: for
    /// callers that hand it to `Engine::apply`, which checks the
    /// connections first (a misspelled connection is named as such, not
    /// blamed on a field that refers to it) and then everything else.
    pub fn parse_toml(text: &str, file: &str) -> Result<Self, PipelineError> {
        let de = toml::Deserializer::parse(text).map_err(|e| PipelineError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let p: Pipeline =
            serde_path_to_error::deserialize(de).map_err(|e| PipelineError::Syntax {
                file: file.to_string(),
                message: format!("field `{}`: {}", e.path(), e.inner()),
            })?;
        Ok(p)
    }

    /// The compiled schedule (checked when the definition was accepted).
    pub fn schedule(&self) -> Result<Schedule, PipelineError> {
        self.schedule
            .compile()
            .map_err(|e| invalid(self, &format!("schedule.{}", e.field), e.message))
    }

    /// Rules that do not need the database.
    pub fn check(&self) -> Result<(), PipelineError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                self,
                "name",
                "must be 1-64 lower-case letters, digits, `-` or `_`",
            ));
        }
        if self.entity.trim().is_empty() {
            return Err(invalid(
                self,
                "entity",
                "name the entity type, e.g. `contact`",
            ));
        }
        if let Some(m) = &self.model
            && !MODELS.contains(&m.as_str())
        {
            return Err(invalid(
                self,
                "model",
                format!(
                    "`{m}` is not a canonical model; use one of {}",
                    MODELS.join(", ")
                ),
            ));
        }
        for (field, e) in [("source", &self.source), ("destination", &self.destination)] {
            if e.connection.is_empty() {
                return Err(invalid(self, &format!("{field}.connection"), "is empty"));
            }
            if e.stream.is_empty() {
                return Err(invalid(self, &format!("{field}.stream"), "is empty"));
            }
        }
        if let Some(rules) = &self.matching
            && let Err((field, message)) = rules.check(self.model.as_deref())
        {
            return Err(invalid(self, &field, message));
        }
        if self.source == self.destination {
            return Err(invalid(
                self,
                "destination",
                "is the same connection and stream as the source",
            ));
        }
        let ends = [
            self.source.connection.as_str(),
            self.destination.connection.as_str(),
        ];
        if let Some(system) = &self.master.system
            && !ends.contains(&system.as_str())
        {
            return Err(invalid(
                self,
                "master.system",
                format!(
                    "`{system}` is neither the source (`{}`) nor the destination (`{}`)",
                    ends[0], ends[1]
                ),
            ));
        }
        for (f, owner) in &self.master.fields {
            if !ends.contains(&owner.as_str()) {
                return Err(invalid(
                    self,
                    &format!("master.fields.{f}"),
                    format!(
                        "`{owner}` is neither the source (`{}`) nor the destination (`{}`)",
                        ends[0], ends[1]
                    ),
                ));
            }
        }
        match self.deletes.policy {
            DeletePolicy::Archive if self.deletes.archive.is_empty() => {
                return Err(invalid(
                    self,
                    "deletes.archive",
                    "the archive policy needs the fields to set, e.g. archive = { status = \"archived\" }",
                ));
            }
            DeletePolicy::Propagate | DeletePolicy::Ignore if !self.deletes.archive.is_empty() => {
                return Err(invalid(
                    self,
                    "deletes.archive",
                    "is only used with policy = \"archive\"",
                ));
            }
            _ => {}
        }
        self.schedule
            .compile()
            .map_err(|e| invalid(self, &format!("schedule.{}", e.field), e.message))?;
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(invalid(self, "batch_size", "must be between 1 and 10000"));
        }
        self.retry
            .check()
            .map_err(|(field, message)| invalid(self, field, message))?;
        self.limits
            .check()
            .map_err(|(field, message)| invalid(self, field, message))?;
        self.commit
            .check()
            .map_err(|(field, message)| invalid(self, field, message))?;
        for (i, m) in self.mappers.iter().enumerate() {
            if !m.config.is_object() {
                return Err(invalid(
                    self,
                    &format!("mappers[{i}].config"),
                    "must be a table",
                ));
            }
        }
        Ok(())
    }

    /// Whether the destination owns the entity as a whole.
    pub fn destination_is_master(&self) -> bool {
        self.master.system.as_deref() == Some(self.destination.connection.as_str())
    }

    /// Fields the destination owns (kept as they are on updates).
    pub fn destination_fields(&self) -> impl Iterator<Item = &str> {
        self.master
            .fields
            .iter()
            .filter(|(_, owner)| **owner == self.destination.connection)
            .map(|(f, _)| f.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "crm-to-books"
        entity = "contact"
        [source]
        connection = "crm"
        stream = "contacts"
        [destination]
        connection = "books"
        stream = "contacts"
        [master]
        system = "crm"
        fields = { phone = "books" }
        [conflicts]
        policy = "hold"
        [deletes]
        policy = "archive"
        archive = { lifecycle_stage = "archived" }
    "#;

    #[test]
    fn a_full_definition_parses_with_defaults() {
        let p = Pipeline::from_toml(GOOD, "p.toml").unwrap();
        assert_eq!(p.mode, SyncMode::Incremental);
        assert_eq!(p.conflicts.policy, ConflictPolicy::Hold);
        assert_eq!(p.deletes.policy, DeletePolicy::Archive);
        assert_eq!(p.destination_fields().collect::<Vec<_>>(), ["phone"]);
        assert!(!p.destination_is_master());
        assert_eq!(p.retry.max_attempts, None);
        assert_eq!(p.retry.window(), std::time::Duration::from_secs(600));
        assert!(p.track_destination);
        assert_eq!(p.limits, RunLimits::default());
        assert_eq!(p.limits.max_pages, 100_000);
        assert_eq!(p.limits.max_state_bytes, 1 << 20);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (GOOD.replace("\"hold\"", "\"maybe\""), "conflicts.policy"),
            (
                GOOD.replace("system = \"crm\"", "system = \"erp\""),
                "master.system",
            ),
            (
                GOOD.replace("phone = \"books\"", "phone = \"x\""),
                "master.fields.phone",
            ),
            (
                GOOD.replace("archive = { lifecycle_stage = \"archived\" }", ""),
                "deletes.archive",
            ),
            (
                GOOD.replace(
                    "entity = \"contact\"",
                    "entity = \"contact\"\nbatchsize = 3",
                ),
                "batchsize",
            ),
            (
                GOOD.replace("name = \"crm-to-books\"", "name = \"Bad Name\""),
                "name",
            ),
            (
                GOOD.replace(
                    "stream = \"contacts\"\n        [master]",
                    "stream = \"\"\n        [master]",
                ),
                "destination.stream",
            ),
        ];
        let limits = |table: &str| format!("{GOOD}\n[limits]\n{table}\n");
        let retry = |table: &str| format!("{GOOD}\n[retry]\n{table}\n");
        let commit = |table: &str| format!("{GOOD}\n[commit]\n{table}\n");
        let cases = cases.into_iter().chain([
            (limits("max_pagez = 9"), "max_pagez"),
            (limits("max_pages = 0"), "limits.max_pages"),
            (limits("max_state_bytes = -1"), "limits.max_state_bytes"),
            (commit("records = 0"), "commit.records"),
            (commit("wait_ms = 600000"), "commit.wait_ms"),
            (commit("record = 10"), "record"),
            (retry("window = \"soon\""), "retry.window"),
            (retry("window = \"0s\""), "retry.window"),
            (retry("window = \"2d\""), "retry.window"),
            (retry("max_attempts = 0"), "retry.max_attempts"),
            (retry("initial_backoff_ms = 0"), "retry.initial_backoff_ms"),
            (retry("max_delay = \"never\""), "retry.max_delay"),
            (retry("max_delay = \"0s\""), "retry.max_delay"),
            (
                retry("max_delay = \"1m\"\nmax_backoff_ms = 5000"),
                "retry.max_delay",
            ),
            (retry("max_delay = \"1m\"\nwait = 3"), "wait"),
        ]);
        for (text, field) in cases {
            let e = Pipeline::from_toml(&text, "p.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "expected `{field}` in: {e}");
        }
        let e = Pipeline::from_toml("name = ", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml"), "{e}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Retry {
            initial_backoff_ms: 100,
            max_backoff_ms: 350,
            ..Retry::default()
        };
        assert_eq!(r.backoff(1).as_millis(), 100);
        assert_eq!(r.backoff(2).as_millis(), 200);
        assert_eq!(r.backoff(3).as_millis(), 350);
    }

    #[test]
    fn the_retry_table_reads_as_durations() {
        let p = Pipeline::from_toml(
            &format!("{GOOD}\n[retry]\nwindow = \"30m\"\nmax_delay = \"2m\"\n"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.retry.window(), std::time::Duration::from_secs(1800));
        assert_eq!(p.retry.max_delay(), std::time::Duration::from_secs(120));
        assert_eq!(
            Retry::default().max_delay(),
            std::time::Duration::from_secs(60)
        );
    }
}

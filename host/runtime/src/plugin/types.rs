//! The engine's own records, pages and specs: plain Rust owned by the
//! runtime, so the sync engine, the CLI and the registry never see a type
//! generated from one version of the WIT. Each contract version converts
//! into and out of these at its edge (`bindings::v1_0::convert`); a new minor
//! adds a field here (with a default) without touching the engine's users.

use crate::error::GuestError;

/// What a record asks the destination to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Create or update the record.
    Upsert,
    /// Delete the record.
    Delete,
}

/// One record of a stream, as it travels between plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The stream it belongs to.
    pub stream: String,
    /// Its id in the system it comes from. In a `write` batch, the id in the
    /// destination, or `""` for a record the connector must create.
    pub id: String,
    /// Upsert or delete.
    pub operation: Operation,
    /// The record's fields, as a JSON object.
    pub payload: String,
    /// The cursor value a source saw it at; in a `write` batch, the write's
    /// idempotency key instead.
    pub cursor: Option<String>,
}

/// A secret a connector declares it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRequirement {
    /// Name the admin sets it under.
    pub name: String,
    /// What it is, for the admin.
    pub description: String,
    /// The origins it may be sent to.
    pub origins: Vec<String>,
}

/// What a connector declares it needs from the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Origins it calls (`scheme://host[:port]`, `*.` wildcards allowed).
    pub http_origins: Vec<String>,
    /// Secrets it uses.
    pub secrets: Vec<SecretRequirement>,
    /// Key-value bytes it needs (0: none).
    pub kv_bytes: u64,
}

/// A stream a connector offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// JSON Schema of its records' payload.
    pub json_schema: String,
    /// Fields that identify a record.
    pub primary_key: Vec<String>,
    /// The field reads resume from, if any.
    pub cursor_field: Option<String>,
    /// Whether `read` serves it.
    pub can_read: bool,
    /// Whether `write` accepts it.
    pub can_write: bool,
}

/// What a connector's `spec()` says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The SDK version it was built with (`""` without the SDK).
    pub sdk_version: String,
    /// JSON Schema of its config.
    pub config_schema: String,
    /// The streams it knows.
    pub streams: Vec<String>,
    /// What it needs from the host.
    pub capabilities: Capabilities,
}

/// One page of a `read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The records, in order.
    pub records: Vec<Record>,
    /// The state to resume from; saved with the page.
    pub state: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// What a `write` did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Created, with the new id.
    Created(String),
    /// Updated.
    Updated(String),
    /// Already as asked.
    Unchanged(String),
    /// Deleted.
    Deleted(String),
    /// Refused or failed; the batch went on.
    Failed(GuestError),
}

/// What a mapper made of one input record (one per input, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOutcome {
    /// These records (none: skipped on purpose), each keyed by the input's
    /// id whatever id the mapper gave it.
    Mapped(Vec<Record>),
    /// This record alone could not be mapped; the rest of the batch goes on.
    Failed(GuestError),
}

/// The result of writing one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The record's destination id when known (for a created record, the
    /// new id); otherwise its id as it was in the batch.
    pub id: String,
    /// What happened.
    pub outcome: WriteOutcome,
}

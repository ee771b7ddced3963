//! Records, pages and write results: the data that crosses the plugin boundary.

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// What a record asks the destination to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create, or update when it exists.
    Upsert,
    /// Remove (or archive/void).
    Delete,
}

/// One entity from one stream of one system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Stream the record belongs to.
    pub stream: String,
    /// The record's id in its own system; in a write batch, the destination
    /// id, or empty when the record must be created (see
    /// [`Record::destination_id`]).
    pub id: String,
    /// What the destination should do with it.
    pub operation: Operation,
    /// The record as a JSON object, as text.
    pub payload: String,
    /// The record's cursor value, if the stream has a cursor; in a write
    /// batch, the write's idempotency key, which the host sends in its own
    /// field (read it with [`Record::idempotency_key`]).
    pub cursor: Option<String>,
}

impl Record {
    /// An upsert of `payload` (serialised to JSON; must be an object).
    pub fn upsert(
        stream: impl Into<String>,
        id: impl Into<String>,
        payload: &impl Serialize,
    ) -> Result<Self, Error> {
        // Encoded once, straight to text: no `Value` tree in between.
        Record::upsert_json(stream, id, serde_json::to_string(payload)?)
    }

    /// An upsert of a payload already encoded as a JSON object (e.g. by
    /// [`ObjectWriter`](crate::json::ObjectWriter)); only its first
    /// character is checked here, the host checks the whole text.
    pub fn upsert_json(
        stream: impl Into<String>,
        id: impl Into<String>,
        payload: String,
    ) -> Result<Self, Error> {
        if !payload.trim_start().starts_with('{') {
            return Err(Error::internal("a record payload must be a JSON object"));
        }
        Ok(Record {
            stream: stream.into(),
            id: id.into(),
            operation: Operation::Upsert,
            payload,
            cursor: None,
        })
    }

    /// A delete of the record `id`.
    pub fn delete(stream: impl Into<String>, id: impl Into<String>) -> Self {
        Record {
            stream: stream.into(),
            id: id.into(),
            operation: Operation::Delete,
            payload: "{}".to_string(),
            cursor: None,
        }
    }

    /// The same record with a cursor value.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// In a write batch: the key to send with a create so that the
    /// destination can recognise a retry of a create it already applied
    /// (e.g. as an `Idempotency-Key` header or an external-id field). The
    /// host keeps it identical across retries and re-runs for the same
    /// entity. `None` when the host sent none.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.cursor.as_deref().filter(|k| !k.is_empty())
    }

    /// In a write batch: the record's id in the destination, or `None` when
    /// the host does not know one yet (empty `id`) and the record must be
    /// created.
    pub fn destination_id(&self) -> Option<&str> {
        (!self.id.is_empty()).then_some(self.id.as_str())
    }

    /// The payload parsed as `T`; a mismatch is a `Rejected` error naming the
    /// record, since only this record is affected.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.payload).map_err(|e| {
            Error::Rejected(format!(
                "record {}/{}: payload does not match the expected shape: {e}",
                self.stream, self.id
            ))
        })
    }
}

/// One page of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The records of this page.
    pub records: Vec<Record>,
    /// State for the next read; the host commits it with this page.
    pub state: Option<String>,
    /// Whether another page follows right away.
    pub has_more: bool,
}

impl Page {
    /// A page after which more follow.
    pub fn more(records: Vec<Record>, state: Option<String>) -> Self {
        Page {
            records,
            state,
            has_more: true,
        }
    }
    /// The last page of this read.
    pub fn last(records: Vec<Record>, state: Option<String>) -> Self {
        Page {
            records,
            state,
            has_more: false,
        }
    }
}

/// What happened to one record of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Created, with the destination id. Only for a record this write
    /// made: a create that finds its record already there (by the
    /// idempotency key after a lost answer, or by a code) answers
    /// `Updated` or `Unchanged`, which the host counts as matched.
    Created(String),
    /// Updated, with the destination id.
    Updated(String),
    /// Already up to date, with the destination id (also a create that
    /// found its record as it should be).
    Unchanged(String),
    /// Deleted or archived, with the destination id.
    Deleted(String),
    /// Failed, for this record only.
    Failed(Error),
}

/// The outcome of one record of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The record's destination id when known (for a created record, the
    /// new id); otherwise the id as it was in the batch.
    pub id: String,
    /// What happened.
    pub outcome: WriteOutcome,
}

impl WriteResult {
    /// The result of the batch's record `batch_id`: its id is the one the
    /// outcome names (for a create, the new id), or `batch_id` when the
    /// record failed.
    pub fn new(batch_id: &str, outcome: WriteOutcome) -> WriteResult {
        let id = match &outcome {
            WriteOutcome::Created(id)
            | WriteOutcome::Updated(id)
            | WriteOutcome::Unchanged(id)
            | WriteOutcome::Deleted(id) => id.clone(),
            WriteOutcome::Failed(_) => batch_id.to_string(),
        };
        WriteResult { id, outcome }
    }
}

/// Conversions to and from each world's generated record types.
macro_rules! wit_record_conversions {
    ($module:path) => {
        const _: () = {
            use $module as types;
            impl From<Record> for types::Record {
                fn from(r: Record) -> Self {
                    types::Record {
                        stream: r.stream,
                        id: r.id,
                        operation: match r.operation {
                            Operation::Upsert => types::Operation::Upsert,
                            Operation::Delete => types::Operation::Delete,
                        },
                        payload: r.payload,
                        cursor: r.cursor,
                    }
                }
            }
            impl From<types::Record> for Record {
                fn from(r: types::Record) -> Self {
                    Record {
                        stream: r.stream,
                        id: r.id,
                        operation: match r.operation {
                            types::Operation::Upsert => Operation::Upsert,
                            types::Operation::Delete => Operation::Delete,
                        },
                        payload: r.payload,
                        cursor: r.cursor,
                    }
                }
            }
        };
    };
}

wit_record_conversions!(crate::wit::connector::nexo::connector::types);

impl Record {
    /// A record of a write batch as the host sends it (contract 1.1: the
    /// idempotency key in its own field).
    #[doc(hidden)]
    pub fn from_write(
        r: crate::wit::connector::exports::nexo::connector::operations::WriteRecord,
    ) -> Self {
        use crate::wit::connector::nexo::connector::types::Operation as W;
        Record {
            stream: r.stream,
            id: r.id,
            operation: match r.operation {
                W::Upsert => Operation::Upsert,
                W::Delete => Operation::Delete,
            },
            payload: r.payload,
            cursor: (!r.idempotency_key.is_empty()).then_some(r.idempotency_key),
        }
    }
}
wit_record_conversions!(crate::wit::mapper::nexo::connector::types);

mod connector_types {
    use super::*;
    use crate::wit::connector::nexo::connector::types;

    impl From<Page> for types::Page {
        fn from(p: Page) -> Self {
            types::Page {
                records: p.records.into_iter().map(Into::into).collect(),
                state: p.state,
                has_more: p.has_more,
            }
        }
    }

    impl From<WriteResult> for types::WriteResult {
        fn from(r: WriteResult) -> Self {
            types::WriteResult {
                id: r.id,
                outcome: match r.outcome {
                    WriteOutcome::Created(id) => types::WriteOutcome::Created(id),
                    WriteOutcome::Updated(id) => types::WriteOutcome::Updated(id),
                    WriteOutcome::Unchanged(id) => types::WriteOutcome::Unchanged(id),
                    WriteOutcome::Deleted(id) => types::WriteOutcome::Deleted(id),
                    WriteOutcome::Failed(e) => types::WriteOutcome::Failed(e.into()),
                },
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upsert_requires_an_object_payload() {
        assert!(Record::upsert("s", "1", &serde_json::json!([1, 2])).is_err());
        let r = Record::upsert("s", "1", &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(r.payload, r#"{"a":1}"#);
        assert_eq!(r.operation, Operation::Upsert);
    }

    #[test]
    fn a_write_result_names_the_outcomes_id_or_the_batch_id_on_failure() {
        let created = WriteResult::new("", WriteOutcome::Created("c-7".into()));
        assert_eq!(created.id, "c-7");
        let updated = WriteResult::new("c-1", WriteOutcome::Updated("c-1".into()));
        assert_eq!(updated.id, "c-1");
        let failed = WriteResult::new("c-2", WriteOutcome::Failed(Error::rejected("no")));
        assert_eq!(failed.id, "c-2");
    }

    #[test]
    fn write_batch_fields_read_as_destination_id_and_idempotency_key() {
        let create = Record::upsert("contacts", "", &serde_json::json!({})).unwrap();
        assert_eq!(create.destination_id(), None);
        assert_eq!(create.idempotency_key(), None);
        let create = create.with_cursor("9f2c");
        assert_eq!(create.idempotency_key(), Some("9f2c"));
        let update = Record::delete("contacts", "c0042").with_cursor("");
        assert_eq!(update.destination_id(), Some("c0042"));
        assert_eq!(update.idempotency_key(), None, "an empty key is no key");
    }

    #[test]
    fn payload_mismatch_is_rejected_and_names_the_record() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            email: String,
        }
        let r = Record::upsert("contacts", "42", &serde_json::json!({"name": "x"})).unwrap();
        match r.payload_as::<Needs>() {
            Err(Error::Rejected(m)) => assert!(m.contains("contacts/42") && m.contains("email")),
            other => panic!("unexpected {other:?}"),
        }
    }
}

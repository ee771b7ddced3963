//! `nexo:connector@1.0.0`'s generated types ↔ the engine's own
//! ([`crate::plugin::types`]). Values coming out of the guest are moved
//! field by field (a page's strings are never copied); a batch going in is
//! borrowed (`RecordParam<'_>` points at the engine's strings).

use super::wit_types as wit;
use crate::error::GuestError;
use crate::plugin::types::{
    Capabilities, Operation, Page, Record, SecretRequirement, Spec, StreamInfo, WriteOutcome,
    WriteResult,
};
use crate::sandbox::redact;

impl From<wit::Operation> for Operation {
    fn from(o: wit::Operation) -> Self {
        match o {
            wit::Operation::Upsert => Operation::Upsert,
            wit::Operation::Delete => Operation::Delete,
        }
    }
}

impl From<Operation> for wit::Operation {
    fn from(o: Operation) -> Self {
        match o {
            Operation::Upsert => wit::Operation::Upsert,
            Operation::Delete => wit::Operation::Delete,
        }
    }
}

impl From<wit::RecordResult> for Record {
    fn from(r: wit::RecordResult) -> Self {
        Record {
            stream: r.stream,
            id: r.id,
            operation: r.operation.into(),
            payload: r.payload,
            cursor: r.cursor,
        }
    }
}

/// A batch for the guest, borrowing the engine's records: one small struct
/// of references per record, no string copied.
pub fn record_params(batch: &[Record]) -> Vec<wit::RecordParam<'_>> {
    batch
        .iter()
        .map(|r| wit::RecordParam {
            stream: &r.stream,
            id: &r.id,
            operation: r.operation.into(),
            payload: &r.payload,
            cursor: r.cursor.as_deref(),
        })
        .collect()
}

/// Records from the guest, moved into the engine's type.
pub fn records(records: Vec<wit::RecordResult>) -> Vec<Record> {
    records.into_iter().map(Record::from).collect()
}

impl From<wit::Page> for Page {
    fn from(p: wit::Page) -> Self {
        Page {
            records: records(p.records),
            state: p.state,
            has_more: p.has_more,
        }
    }
}

impl From<wit::SecretRequirement> for SecretRequirement {
    fn from(s: wit::SecretRequirement) -> Self {
        SecretRequirement {
            name: s.name,
            description: s.description,
            origins: s.origins,
        }
    }
}

impl From<wit::Capabilities> for Capabilities {
    fn from(c: wit::Capabilities) -> Self {
        Capabilities {
            http_origins: c.http_origins,
            secrets: c.secrets.into_iter().map(Into::into).collect(),
            kv_bytes: c.kv_bytes,
        }
    }
}

impl From<wit::PluginSpec> for Spec {
    fn from(s: wit::PluginSpec) -> Self {
        Spec {
            sdk_version: s.sdk_version,
            config_schema: s.config_schema,
            streams: s.streams,
            capabilities: s.capabilities.into(),
        }
    }
}

impl From<wit::StreamInfo> for StreamInfo {
    fn from(s: wit::StreamInfo) -> Self {
        StreamInfo {
            name: s.name,
            json_schema: s.json_schema,
            primary_key: s.primary_key,
            cursor_field: s.cursor_field,
            can_read: s.can_read,
            can_write: s.can_write,
        }
    }
}

/// Streams from `discover`, moved into the engine's type.
pub(crate) fn streams(streams: Vec<wit::StreamInfo>) -> Vec<StreamInfo> {
    streams.into_iter().map(Into::into).collect()
}

impl From<wit::WriteOutcome> for WriteOutcome {
    fn from(o: wit::WriteOutcome) -> Self {
        match o {
            wit::WriteOutcome::Created(id) => WriteOutcome::Created(id),
            wit::WriteOutcome::Updated(id) => WriteOutcome::Updated(id),
            wit::WriteOutcome::Unchanged(id) => WriteOutcome::Unchanged(id),
            wit::WriteOutcome::Deleted(id) => WriteOutcome::Deleted(id),
            wit::WriteOutcome::Failed(e) => WriteOutcome::Failed(e.into()),
        }
    }
}

impl From<wit::WriteResult> for WriteResult {
    fn from(r: wit::WriteResult) -> Self {
        WriteResult {
            id: r.id,
            outcome: r.outcome.into(),
        }
    }
}

/// A `write`'s results, moved into the engine's type.
pub(crate) fn write_results(results: Vec<wit::WriteResult>) -> Vec<WriteResult> {
    results.into_iter().map(Into::into).collect()
}

impl From<wit::Error> for GuestError {
    /// The plugin's error, with secret values replaced: its text often
    /// quotes what a system answered.
    fn from(e: wit::Error) -> Self {
        use GuestError as G;
        let s = redact::scrub_string;
        match e {
            wit::Error::InvalidConfig(m) => G::InvalidConfig(s(m)),
            wit::Error::Auth(m) => G::Auth(s(m)),
            wit::Error::AccessDenied(m) => G::AccessDenied(s(m)),
            wit::Error::RateLimited(ms) => G::RateLimited { retry_after_ms: ms },
            wit::Error::Transient(m) => G::Transient(s(m)),
            wit::Error::Rejected(m) => G::Rejected(s(m)),
            wit::Error::Internal(m) => G::Internal(s(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            stream: "contacts".into(),
            id: id.into(),
            operation: Operation::Delete,
            payload: r#"{"name":"Ada"}"#.into(),
            cursor: Some("k1".into()),
        }
    }

    #[test]
    fn a_batch_goes_to_the_guest_borrowed_field_for_field() {
        let batch = vec![record("c1"), record("c2")];
        let params = record_params(&batch);
        assert_eq!(params.len(), 2);
        let p = &params[1];
        // The very same bytes, not a copy.
        assert!(std::ptr::eq(p.payload, batch[1].payload.as_str()));
        assert!(std::ptr::eq(p.id, batch[1].id.as_str()));
        assert_eq!(p.stream, "contacts");
        assert_eq!(p.cursor, Some("k1"));
        assert!(matches!(p.operation, wit::Operation::Delete));
    }

    #[test]
    fn a_page_from_the_guest_is_moved_not_copied() {
        let payload = String::from(r#"{"name":"Ada"}"#);
        let at = payload.as_ptr();
        let page = wit::Page {
            records: vec![wit::RecordResult {
                stream: "contacts".into(),
                id: "c1".into(),
                operation: wit::Operation::Upsert,
                payload,
                cursor: None,
            }],
            state: Some("s".into()),
            has_more: true,
        };
        let page = Page::from(page);
        assert_eq!(page.records[0].payload.as_ptr(), at);
        assert_eq!(page.records[0].operation, Operation::Upsert);
        assert_eq!(page.state.as_deref(), Some("s"));
        assert!(page.has_more);
    }

    #[test]
    fn a_failed_write_carries_the_classified_error() {
        let results = write_results(vec![
            wit::WriteResult {
                id: "c1".into(),
                outcome: wit::WriteOutcome::Failed(wit::Error::RateLimited(1500)),
            },
            wit::WriteResult {
                id: "c2".into(),
                outcome: wit::WriteOutcome::Created("n2".into()),
            },
        ]);
        assert_eq!(
            results[0].outcome,
            WriteOutcome::Failed(GuestError::RateLimited {
                retry_after_ms: 1500
            })
        );
        assert_eq!(results[1].outcome, WriteOutcome::Created("n2".into()));
    }
}

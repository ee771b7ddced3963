//! `nexo:connector@1.0.0`'s generated types ↔ the engine's own
//! ([`crate::plugin::types`]). Values coming out of the guest are moved
//! field by field (a page's strings are never copied); a batch going in is
//! borrowed (`RecordParam<'_>` points at the engine's strings).

use super::wit_types as wit;
use crate::plugin::types::Record;

crate::bindings::conversions!(wit, RecordResult);

/// A batch for the guest, borrowing the engine's records: one small struct
/// of references per record, no string copied. (1.0 has one record type:
/// the write's idempotency key travels in `cursor`.)
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

//! `nexo:connector@1.1.0`'s generated types ↔ the engine's own
//! ([`crate::plugin::types`]): the shared conversions, plus what 1.1 added —
//! write records with their own idempotency key, and a mapper's outcome
//! per input record.

use super::connector::exports::nexo::connector::operations as wit_operations;
use super::mapper::exports::nexo::connector::mapping as wit_mapping;
use super::wit_types as wit;
use crate::plugin::types::{MapOutcome, Record};

crate::bindings::conversions!(wit, Record);

/// A write batch for the guest, borrowing the engine's records (no string
/// copied). The engine keeps a write's idempotency key in `cursor`; 1.1
/// gives it its own field (`""` when the engine has none, which it always
/// has for a pipeline's writes).
pub fn write_record_params(batch: &[Record]) -> Vec<wit_operations::WriteRecord<'_>> {
    batch
        .iter()
        .map(|r| wit_operations::WriteRecord {
            stream: &r.stream,
            id: &r.id,
            operation: r.operation.into(),
            payload: &r.payload,
            idempotency_key: r.cursor.as_deref().unwrap_or_default(),
        })
        .collect()
}

/// A batch for the guest to map, as owned records.
pub fn owned_records(batch: &[Record]) -> Vec<wit::Record> {
    batch
        .iter()
        .map(|r| wit::Record {
            stream: r.stream.clone(),
            id: r.id.clone(),
            operation: r.operation.into(),
            payload: r.payload.clone(),
            cursor: r.cursor.clone(),
        })
        .collect()
}

/// A mapper's outcomes, moved into the engine's type.
pub fn map_outcomes(outcomes: Vec<wit_mapping::MapOutcome>) -> Vec<MapOutcome> {
    outcomes
        .into_iter()
        .map(|o| match o {
            wit_mapping::MapOutcome::Mapped(records) => MapOutcome::Mapped(self::records(records)),
            wit_mapping::MapOutcome::Failed(e) => MapOutcome::Failed(e.into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_record_carries_the_key_in_its_own_field_borrowed() {
        let batch = vec![Record {
            stream: "contacts".into(),
            id: String::new(),
            operation: Operation::Upsert,
            payload: "{}".into(),
            cursor: Some("nexo-9f2c".into()),
        }];
        let params = write_record_params(&batch);
        assert_eq!(params[0].idempotency_key, "nexo-9f2c");
        assert!(std::ptr::eq(params[0].payload, batch[0].payload.as_str()));
    }

    #[test]
    fn a_failed_outcome_keeps_its_class_and_reason() {
        let out = map_outcomes(vec![
            wit_mapping::MapOutcome::Failed(wit_mapping::Error::Rejected("no name".into())),
            wit_mapping::MapOutcome::Mapped(vec![]),
        ]);
        assert_eq!(
            out,
            vec![
                MapOutcome::Failed(GuestError::Rejected("no name".into())),
                MapOutcome::Mapped(vec![]),
            ]
        );
    }
}

//! What comes back from a plugin, checked before anyone uses it: every
//! record's payload parsed once (nesting, numbers, size) and every page and
//! write result scrubbed of the secret values the process holds.

use super::*;
use crate::error::PluginError;
use crate::sandbox::redact;

impl Core {
    /// Every record a mapper returns must pass [`check_payload`].
    pub(super) fn check_payloads(
        &self,
        call: crate::error::CallRef,
        records: &[Record],
    ) -> Result<(), PluginError> {
        for record in records {
            if let Err(fault) = check_payload(&record.payload) {
                return Err(self.invalid_payload(call, record, &fault));
            }
        }
        Ok(())
    }

    /// The plugin answered `call` with something the contract rules out.
    pub(super) fn invalid_output(
        &self,
        call: crate::error::CallRef,
        reason: String,
    ) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.sandbox.plugin.clone(),
            call,
            reason,
        }
    }

    /// The error for a record whose payload failed [`check_payload`].
    pub(super) fn invalid_payload(
        &self,
        call: crate::error::CallRef,
        record: &Record,
        fault: &PayloadFault,
    ) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.sandbox.plugin.clone(),
            call,
            reason: format!("record {}/{}: {fault}", record.stream, record.id),
        }
    }
}
/// Replace secret values in a page a connector read: ids, payloads,
/// cursors and the state. One look-up of the redaction set per page; a
/// record without a secret is not copied.
pub(super) fn scrub_page(page: &mut Page) {
    let r = redact::current();
    if r.is_empty() {
        return;
    }
    for rec in &mut page.records {
        r.scrub_in_place(&mut rec.id);
        r.scrub_in_place(&mut rec.payload);
        if let Some(c) = &mut rec.cursor {
            r.scrub_in_place(c);
        }
    }
    if let Some(s) = &mut page.state {
        r.scrub_in_place(s);
    }
}

/// Replace secret values in what a connector says about a write (ids;
/// its error texts are scrubbed as they become [`crate::GuestError`]s).
pub(super) fn scrub_write_results(results: &mut [WriteResult]) {
    use types::WriteOutcome as O;
    let r = redact::current();
    if r.is_empty() {
        return;
    }
    for res in results {
        r.scrub_in_place(&mut res.id);
        match &mut res.outcome {
            O::Created(id) | O::Updated(id) | O::Unchanged(id) | O::Deleted(id) => {
                r.scrub_in_place(id)
            }
            O::Failed(_) => {}
        }
    }
}

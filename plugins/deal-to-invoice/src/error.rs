//! Why one deal cannot be mapped, naming the deal and the field, and how a
//! batch's failures become one error in the batch form.

use nexo_sdk::Error;

/// One deal that cannot be mapped: which deal, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deal {deal}: {field}: {problem}")]
pub struct DealError {
    /// HubSpot id of the deal (the record id when the payload has none).
    pub deal: String,
    /// Path of the field in the deal payload, e.g.
    /// `associations.line_items[1].properties.price`.
    pub field: String,
    /// What is wrong and, where it helps, how to fix it.
    pub problem: String,
}

impl DealError {
    /// A failure of `field` of `deal`.
    pub fn new(deal: &str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        DealError {
            deal: deal.to_string(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The batch form's one error ([`crate::map_deals`], used natively; the
/// plugin itself refuses each deal alone): every unmappable deal of the
/// batch named in one `Rejected` error, not only the first.
pub fn batch_error(failures: &[DealError], batch_len: usize) -> Error {
    let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Error::rejected(format!(
        "{} of {} deals cannot be mapped (fix them in HubSpot or the mapper config, or set on_error = \"skip\"): {}",
        failures.len(),
        batch_len,
        list.join("; ")
    ))
}

//! Going live on systems that already hold data (issue 23): the records a
//! source holds matched against those a destination already has, so the
//! first sync links what exists instead of creating it again. This module
//! is the pure part — one normalisation for both sides, keys in order of
//! trust, blocking instead of all pairs, deterministic verdicts — with no
//! I/O, so it is tested and benchmarked on its own.

pub mod matcher;
pub mod normalize;
pub mod survey;

pub use matcher::{
    Candidate, Key, Matches, Record, Verdict, customer_keys, invoice_keys, match_records,
    product_keys,
};
pub use normalize::Normalizer;

#[cfg(test)]
mod tests;

//! `kit-faulty-connector` with a wider spec: the same connector (the same
//! source file), whose spec also asks for `https://analytics.example.com`,
//! an origin it never calls, a secret `analytics_key` it never sends and
//! key-value storage it never uses —
//! what the conformance kit must flag as asked for and not used.

#[path = "../../kit-faulty-connector/src/connector.rs"]
pub mod connector;

/// The origin asked for and never used.
const UNUSED_ORIGINS: &[&str] = &["https://analytics.example.com"];

/// The secret asked for and never sent.
const UNUSED_SECRETS: &[&str] = &["analytics_key"];

/// Key-value storage asked for and never used.
const UNUSED_KV_BYTES: Option<u64> = Some(4096);

nexo_sdk::export_connector!(connector::KitCrm);

//! `kit-faulty-connector` with a wider spec: the same connector (the same
//! source file), whose spec also asks for `https://analytics.example.com`,
//! an origin it never calls — what the conformance kit must flag as an
//! origin asked for and not used.

#[path = "../../kit-faulty-connector/src/connector.rs"]
pub mod connector;

/// The origin asked for and never used.
const UNUSED_ORIGINS: &[&str] = &["https://analytics.example.com"];

nexo_sdk::export_connector!(connector::KitCrm);

//! A small TinyCRM connector for the conformance kit (`nexo plugin test`):
//! correct with `"fault": "none"`, or with the one deliberate bug its config
//! names (see [`connector::Fault`]), so that the kit's tests can show each
//! check catches its fault and passes the control.
//!
//! One stream, `contacts`: incremental reads by `updated_at` with TinyCRM's
//! keyset page token (state: a `nexo_sdk::Cursor`), and writes in the host's
//! write protocol (create with the record's idempotency key, update,
//! delete). Errors: 401 → `auth`, 422 → that record `rejected`, 429 →
//! `rate-limited` (Retry-After), 5xx and connection failures → `transient`.

pub mod connector;

/// Origins the spec asks for on top of the ones the connector uses: none
/// here (`kit-wide-connector` names one).
const UNUSED_ORIGINS: &[&str] = &[];

/// Secrets the spec asks for on top of the one the connector sends: none
/// here (`kit-wide-connector` names one).
const UNUSED_SECRETS: &[&str] = &[];

/// Key-value bytes the spec asks for and the connector never uses: none
/// here (`kit-wide-connector` asks for some).
const UNUSED_KV_BYTES: Option<u64> = None;

nexo_sdk::export_connector!(connector::KitCrm);

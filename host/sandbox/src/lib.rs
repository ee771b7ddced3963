//! # nexo-sandbox: stand-ins for vendors' systems, and the demo
//!
//! Stateful stand-ins for vendors' APIs on 127.0.0.1, following their
//! official descriptions (HubSpot, Xero), and a launcher for a real,
//! self-hosted Tryton ERP. The HubSpot-like and Xero-like services speak
//! OAuth 2.0 as the vendors' identity servers do ([`oauth`]). They are the product's test environment —
//! sandbox connections point at them — and the tests' fixtures. The
//! `nexo-sandbox` binary starts them (`nexo-sandbox start`) and runs the
//! demo (`nexo-sandbox demo`, what `cargo xtask demo` drives).
//!
//! **Owns** the emulators and the demo. **Must not** be a dependency of
//! the product: only this crate's binary, the tests and xtask use it, so
//! the `nexo` binary holds none of its code. The library depends on no
//! `nexo` code at all (the package depends on `nexo` for its binary, which
//! drives the product through its public API as any embedding would).

pub mod hubspot;
pub mod oauth;
pub mod tryton;
pub mod xero;

//! Sandbox services: stateful stand-ins for vendors' APIs on 127.0.0.1,
//! following their official descriptions (`nexo sandbox`), and a launcher
//! for a real, self-hosted Tryton ERP. They are the product's test
//! environment — sandbox connections point at them — and the tests'
//! fixtures.

pub mod hubspot;
pub mod tryton;
pub mod xero;

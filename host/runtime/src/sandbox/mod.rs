//! The capabilities a plugin reaches through its imports. Each is plain Rust,
//! testable without Wasm; the generated bindings only adapt to them.

pub mod address;
pub mod budget;
pub mod credential;
pub mod http;
pub mod kv;
pub mod log;
pub mod outbound;
pub mod overrides;
pub mod policy;
pub mod redact;
pub mod secrets;

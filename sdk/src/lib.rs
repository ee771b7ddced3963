//! # nexo-sdk: write Nexo connector and mapper plugins in Rust
//!
//! A Nexo plugin is a WebAssembly component built for `wasm32-wasip2` against
//! the `nexo:connector` WIT package, at the version [`WIT_VERSION`] (the
//! repository's `wit/<version>/`). This crate hides the generated
//! bindings: a vendor implements [`Connector`] (or [`Mapper`]), calls one
//! export macro, and builds with `cargo build --target wasm32-wasip2`.
//!
//! Add `schemars = "1"` next to `nexo-sdk` to derive `JsonSchema` for your
//! config and payload types.
//!
//! ## Example: a read-only connector
//!
//! ```no_run
//! use nexo_sdk::prelude::*;
//! use serde::Deserialize;
//!
//! /// Configuration the admin fills in.
//! #[derive(Deserialize, JsonSchema)]
//! struct Config {
//!     /// Base URL of the CRM API, e.g. `https://crm.example.com`.
//!     base_url: String,
//! }
//!
//! struct TinyCrm;
//!
//! impl Connector for TinyCrm {
//!     type Config = Config;
//!
//!     fn spec() -> ConnectorSpec {
//!         ConnectorSpec::new(["contacts"])
//!             .http_origin("https://crm.example.com")
//!             .secret("api_token", "API token of the CRM", ["https://crm.example.com"])
//!     }
//!
//!     fn check(config: &Config) -> Result<(), Error> {
//!         Request::get(format!("{}/ping", config.base_url))
//!             .bearer_secret("api_token")
//!             .send()?
//!             .error_for_status()?;
//!         Ok(())
//!     }
//!
//!     fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
//!         Ok(vec![StreamInfo::new("contacts", schema_of::<nexo_sdk::model::Contact>())
//!             .primary_key(["id"])
//!             .cursor_field("updated_at")])
//!     }
//!
//!     fn read(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
//!         let cursor = Cursor::from_state(state)?;
//!         let rows: Vec<serde_json::Value> = Request::get(format!("{}/{stream}", config.base_url))
//!             .query("updated_after", cursor.query_value().unwrap_or(""))
//!             .bearer_secret("api_token")
//!             .send()?
//!             .error_for_status()?
//!             .json()?;
//!         let mut next = cursor.clone();
//!         let mut records = Vec::new();
//!         for row in rows {
//!             let id = row["id"].as_str().unwrap_or_default().to_string();
//!             let updated = row["updated_at"].as_str().unwrap_or_default().to_string();
//!             if cursor.is_seen(&updated, &id) {
//!                 continue;
//!             }
//!             next.observe(&updated, &id);
//!             records.push(Record::upsert(stream, id, &row)?.with_cursor(updated));
//!         }
//!         Ok(Page::last(records, next.to_state()?))
//!     }
//! }
//!
//! nexo_sdk::export_connector!(TinyCrm);
//! ```
#![deny(missing_docs)]

mod connector;
mod error;
pub mod http;
pub mod json;
pub mod kv;
pub mod log;
mod mapper;
pub mod model;
mod record;
mod schema;
pub mod state;
#[doc(hidden)]
pub mod wit;

pub use connector::{Connector, ConnectorSpec, StreamInfo};
pub use error::Error;
pub use mapper::{MapOutcome, Mapper};
pub use record::{Operation, Page, Record, WriteOutcome, WriteResult};
pub use schema::{StreamSchema, check_shipped_schema, schema_of};
pub use state::Cursor;

/// Re-exported so plugins can derive `JsonSchema` for their config.
pub use schemars;
/// Re-exported for plugins' convenience.
pub use serde_json;

/// Version of this SDK, embedded in every component it builds.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The `nexo:connector` version this SDK targets, as a literal for
/// `concat!`: the one place the SDK names it. Its bindings are generated from
/// `wit/<this version>/` (see `wit.rs`).
macro_rules! wit_version {
    () => {
        "1.1.0"
    };
}

/// Version of the `nexo:connector` WIT package this SDK targets.
pub const WIT_VERSION: &str = wit_version!();

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::http::{Request, Response};
    pub use crate::{
        Connector, ConnectorSpec, Cursor, Error, MapOutcome, Mapper, Operation, Page, Record,
        StreamInfo, StreamSchema, WriteOutcome, WriteResult, schema_of,
    };
    pub use schemars::JsonSchema;
}

/// Implementation details used by the export macros; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::connector::glue as connector;
    pub use crate::mapper::glue as mapper;

    /// Bytes of the `nexo-sdk` custom section: `sdk=X;wit=Y`.
    pub const VERSION_SECTION: &str =
        concat!("sdk=", env!("CARGO_PKG_VERSION"), ";wit=", wit_version!());

    /// `a` followed by `b` as a fixed-size array, as a link section needs.
    pub const fn join<const N: usize>(a: &str, b: &str) -> [u8; N] {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let mut out = [0u8; N];
        let mut i = 0;
        while i < a.len() && i < N {
            out[i] = a[i];
            i += 1;
        }
        let mut j = 0;
        while j < b.len() && i + j < N {
            out[i + j] = b[j];
            j += 1;
        }
        out
    }
}

/// Embeds the SDK and WIT versions, and the plugin crate's name and version,
/// as the `nexo-sdk` custom section, which `nexo plugin inspect` reads
/// without running the plugin.
#[doc(hidden)]
#[macro_export]
macro_rules! __embed_version {
    () => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            const PLUGIN: &str = concat!(
                ";plugin=",
                env!("CARGO_PKG_NAME"),
                ";version=",
                env!("CARGO_PKG_VERSION")
            );
            const LEN: usize = $crate::__private::VERSION_SECTION.len() + PLUGIN.len();
            #[unsafe(link_section = "nexo-sdk")]
            #[used]
            static NEXO_SDK_SECTION: [u8; LEN] =
                $crate::__private::join::<LEN>($crate::__private::VERSION_SECTION, PLUGIN);
        };
    };
}

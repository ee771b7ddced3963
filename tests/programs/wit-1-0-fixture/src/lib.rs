//! A connector built with plain wit-bindgen against `wit/nexo.wit`: the bytes
//! of `nexo:connector@1.0.0` as released, before the repository's
//! `wit/1.0.0/nexo.wit` gained documentation (never edit it). A test
//! (`tests/tests/contract_versions.rs`) checks that the two differ in `///`
//! documentation only. The host must keep loading and running it as the WIT
//! gains 1.x minors.
#![allow(unsafe_code, missing_docs, clippy::all)]

wit_bindgen::generate!({ world: "connector", path: "wit" });

use exports::nexo::connector::operations::Guest;
use nexo::connector::types::{
    Capabilities, Error, Operation, Page, PluginSpec, Record, StreamInfo, WriteOutcome, WriteResult,
};

struct Fixture;

impl Guest for Fixture {
    fn spec() -> PluginSpec {
        PluginSpec {
            sdk_version: "none (wit-bindgen against nexo:connector@1.0.0)".into(),
            config_schema: r#"{"type":"object"}"#.into(),
            streams: vec!["items".into()],
            capabilities: Capabilities {
                http_origins: vec![],
                secrets: vec![],
                kv_bytes: 0,
            },
        }
    }

    fn check(_config: String) -> Result<(), Error> {
        nexo::connector::log::log(nexo::connector::log::Level::Info, "1.0 fixture checked");
        Ok(())
    }

    fn discover(_config: String) -> Result<Vec<StreamInfo>, Error> {
        Ok(vec![StreamInfo {
            name: "items".into(),
            json_schema: r#"{"type":"object"}"#.into(),
            primary_key: vec!["id".into()],
            cursor_field: None,
            can_read: true,
            can_write: true,
        }])
    }

    fn read(_config: String, stream: String, _state: Option<String>) -> Result<Page, Error> {
        let records = (1..=3)
            .map(|i| Record {
                stream: stream.clone(),
                id: format!("item-{i}"),
                operation: Operation::Upsert,
                payload: format!(r#"{{"id":"item-{i}","n":{i}}}"#),
                cursor: None,
            })
            .collect();
        Ok(Page {
            records,
            state: Some(r#"{"done":true}"#.into()),
            has_more: false,
        })
    }

    fn write(
        _config: String,
        _stream: String,
        batch: Vec<Record>,
    ) -> Result<Vec<WriteResult>, Error> {
        Ok(batch
            .into_iter()
            .map(|r| WriteResult {
                outcome: WriteOutcome::Created(format!("dest-{}", r.id)),
                id: r.id,
            })
            .collect())
    }
}

// Natively (workspace builds and clippy) this crate is a plain library.
#[cfg(target_arch = "wasm32")]
export!(Fixture);

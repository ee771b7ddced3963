//! A connector whose output attacks whoever reads it: `read(_, STREAM, _)`
//! performs the attack named by STREAM.
//!
//! - `log`: logs a terminal escape (window title + clear screen) and a
//!   message that forges a well-formed host log line after a newline.
//! - `fail`: fails with an error message carrying the same escapes.
//! - `records`: returns a record whose id and payload carry them.
//! - `kv-plant`: stores a key in its key-value namespace, for another
//!   component called with the same `--id` to look for.

use nexo_sdk::prelude::*;
use serde::Deserialize;

/// Sets the terminal's title and clears the screen.
pub const TITLE_AND_CLEAR: &str = "\x1b]0;pwned\x07\x1b[2J";
/// A second, well-formed host log line after a newline.
pub const FORGED_LINE: &str = "ok\n2026-12-05T00:00:00Z  INFO nexo: forged";

/// No settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Config {}

/// The connector.
#[derive(Debug)]
pub struct HostileOutput;

const STREAMS: &[&str] = &["log", "fail", "records", "kv-plant"];

impl Connector for HostileOutput {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        ConnectorSpec::new(STREAMS.iter().copied()).kv_bytes(1024)
    }

    fn check(_config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(STREAMS.iter().map(|s| StreamInfo::new(*s, "{}")).collect())
    }

    fn read(_config: &Config, stream: &str, _state: Option<&str>) -> Result<Page, Error> {
        match stream {
            "log" => {
                nexo_sdk::info!("{TITLE_AND_CLEAR}");
                nexo_sdk::warn!("{FORGED_LINE}");
                Ok(Page::last(Vec::new(), None))
            }
            "fail" => Err(Error::internal(format!(
                "remote said: {TITLE_AND_CLEAR}{FORGED_LINE}\u{9b}31m"
            ))),
            "records" => {
                let record = Record::upsert(
                    "records",
                    format!("id{TITLE_AND_CLEAR}\u{9b}2J\u{7f}"),
                    &serde_json::json!({ "name": format!("{TITLE_AND_CLEAR}\u{9b}2J\u{7f}") }),
                )?;
                Ok(Page::last(vec![record], None))
            }
            "kv-plant" => {
                nexo_sdk::kv::set("planted-by-hostile-output", b"private")?;
                Ok(Page::last(Vec::new(), None))
            }
            other => Err(Error::unknown_stream(other, STREAMS)),
        }
    }
}

nexo_sdk::export_connector!(HostileOutput);

//! A connector that grabs authority it was not given, for the tests of the
//! runtime's per-plugin budget and of the approved grant.
//!
//! - Its `spec()` changes after a moment written in its own bytes
//!   (`NEXO-SWITCH-AT=<unix seconds>`, patched by the test before packing):
//!   before it, the secret `token` is bound to `http://localhost:*` only,
//!   as its manifest says; after it, to every origin. Packing and install
//!   see the honest spec; runs see the greedy one.
//! - `read(send)` sends the token to `config.url`.
//! - `read(hold)` asks `config.url` (a server that answers slowly) and so
//!   sits in an instance slot for as long as the server waits.

use nexo_sdk::prelude::*;
use serde::Deserialize;

/// Where to send.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Config {
    /// The URL `send` and `hold` request.
    #[serde(default)]
    pub url: Option<String>,
}

/// The connector.
#[derive(Debug)]
pub struct Greedy;

/// When the spec turns greedy: ten ASCII digits of unix seconds after the
/// marker, all zero for never. The test rewrites them in the component.
static SWITCH_AT: [u8; 25] = *b"NEXO-SWITCH-AT=0000000000";

fn switched() -> bool {
    // Read through an opaque reference, so the compiler cannot fold the
    // digits it sees at build time into the code.
    let bytes = std::hint::black_box(&SWITCH_AT);
    let at = bytes[15..]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d.wrapping_sub(b'0') % 10));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    at != 0 && now >= at
}

fn page(what: &str, detail: String) -> Result<Page, Error> {
    let record = Record::upsert("result", what, &serde_json::json!({ "detail": detail }))?;
    Ok(Page::last(vec![record], None))
}

impl Connector for Greedy {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        let token_origins: &[&str] = if switched() {
            &["http://*:*"]
        } else {
            &["http://localhost:*"]
        };
        ConnectorSpec::new(["send", "hold"])
            .http_origin("http://*:*")
            .secret(
                "token",
                "an API token for the vendor's API on localhost",
                token_origins.iter().copied(),
            )
    }

    fn check(_config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(["send", "hold"]
            .iter()
            .map(|s| StreamInfo::new(*s, "{}"))
            .collect())
    }

    fn read(config: &Config, stream: &str, _state: Option<&str>) -> Result<Page, Error> {
        let url = config
            .url
            .clone()
            .ok_or_else(|| Error::config("field `url` is required"))?;
        match stream {
            "send" => {
                let resp = Request::get(url).bearer_secret("token").send()?;
                page("send", format!("status {}", resp.status))
            }
            "hold" => {
                let resp = Request::get(url).send()?;
                page("hold", format!("status {}", resp.status))
            }
            other => Err(Error::unknown_stream(other, &["send", "hold"])),
        }
    }
}

nexo_sdk::export_connector!(Greedy);

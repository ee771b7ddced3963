//! A connector whose runs never end or whose records are poison, one way
//! per stream. `read(config, STREAM, state)` answers as STREAM says:
//!
//! - `endless`: always "more follows", with a new state (a page counter)
//!   and one new contact per page;
//! - `big-state`: like `endless`, but the state grows by 512 KiB a page
//!   (2 MiB by the fourth page);
//! - `poison`: one page of three good contacts around a record nested
//!   10 000 deep and one holding `1e999999`;
//! - `dupes`: one page of 10 000 records with the same id (the last one
//!   is the record's newest version).
//!
//! The poison and duplicate pages ignore the state they are given, so
//! every run reads them again.

use nexo_sdk::prelude::*;
use serde::Deserialize;

/// No settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Config {}

/// The connector.
#[derive(Debug)]
pub struct HostileRuns;

const STREAMS: &[&str] = &["endless", "big-state", "poison", "dupes"];

/// Nesting depth of the deep poison record.
pub const DEPTH: usize = 10_000;
/// Records in the duplicate page.
pub const DUPES: usize = 10_000;

fn contact(id: &str, first: &str, last: &str) -> Result<Record, Error> {
    Record::upsert(
        "contacts",
        id,
        &serde_json::json!({
            "first_name": first,
            "last_name": last,
            "email": format!("{}@example.com", id.to_lowercase()),
        }),
    )
}

/// A record whose payload text is exactly `payload` (no SDK check: the
/// point is to send what a careless connector would).
fn raw(id: &str, payload: String) -> Record {
    Record {
        stream: "contacts".into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload,
        cursor: None,
    }
}

/// The page counter in `state` (`N` or `N:padding`).
fn counter(state: Option<&str>) -> u64 {
    state
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Connector for HostileRuns {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        ConnectorSpec::new(STREAMS.iter().copied())
    }

    fn check(_config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(STREAMS.iter().map(|s| StreamInfo::new(*s, "{}")).collect())
    }

    fn read(_config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
        match stream {
            "endless" => {
                let n = counter(state) + 1;
                let record = contact(&format!("e-{n}"), "Endless", &format!("Page {n}"))?;
                Ok(Page::more(vec![record], Some(n.to_string())))
            }
            "big-state" => {
                let n = counter(state) + 1;
                let padding = "x".repeat(512 * 1024 * n as usize);
                let record = contact(&format!("b-{n}"), "Big", &format!("Page {n}"))?;
                Ok(Page::more(vec![record], Some(format!("{n}:{padding}"))))
            }
            "poison" => {
                let deep = format!(
                    "{{\"first_name\":\"Deep\",\"nested\":{}{}}}",
                    "[".repeat(DEPTH),
                    "]".repeat(DEPTH)
                );
                let huge = r#"{"first_name":"Huge","last_name":"Number","amount":1e999999}"#;
                let records = vec![
                    contact("good-1", "Good", "One")?,
                    raw("deep", deep),
                    contact("good-2", "Good", "Two")?,
                    raw("huge", huge.to_string()),
                    contact("good-3", "Good", "Three")?,
                ];
                Ok(Page::last(records, Some("poison".into())))
            }
            "dupes" => {
                let records = (0..DUPES)
                    .map(|i| contact("same", "Dup", &format!("N{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Page::last(records, Some("dupes".into())))
            }
            other => Err(Error::unknown_stream(other, STREAMS)),
        }
    }
}

nexo_sdk::export_connector!(HostileRuns);

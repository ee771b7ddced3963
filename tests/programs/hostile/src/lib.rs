//! A connector that misbehaves on purpose, one way per stream, to prove the
//! sandbox holds. `read(config, STREAM, _)` performs the attack named by
//! STREAM; the config (`{"url": ..., "header": ...}`) supplies targets. Each
//! attack that the sandbox stops by *answering* (denied HTTP, no file, no
//! env) returns the answer as an error so tests can check its exact kind;
//! an attack that succeeded returns a page describing what leaked.

// This crate misbehaves on purpose.
#![allow(clippy::panic, unconditional_recursion)]

use nexo_sdk::prelude::*;
use serde::Deserialize;

/// Where to aim.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Config {
    /// URL for the HTTP attacks.
    #[serde(default)]
    pub url: Option<String>,
    /// Header (name, value) to send, e.g. a secret template.
    #[serde(default)]
    pub header: Option<(String, String)>,
    /// Bytes to store for the key-value cases.
    #[serde(default)]
    pub kv_bytes: Option<usize>,
}

/// The hostile connector.
#[derive(Debug)]
pub struct Hostile;

const STREAMS: &[&str] = &[
    "loop",
    "memory-bomb",
    "recursion",
    "panic",
    "http",
    "log-flood",
    "stdout-flood",
    "read-file",
    "read-env",
    "socket",
    "kv",
    "print",
    "ok",
];

fn leaked(what: &str, detail: String) -> Result<Page, Error> {
    let record = Record::upsert("leak", what, &serde_json::json!({ "leaked": detail }))?;
    Ok(Page::last(vec![record], None))
}

#[inline(never)]
fn recurse(depth: u64, buf: &mut [u64; 16]) -> u64 {
    let mut local = *buf;
    local[(depth % 16) as usize] = depth;
    std::hint::black_box(&mut local);
    1 + recurse(depth + 1, &mut local) + local[0]
}

impl Connector for Hostile {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        ConnectorSpec::new(STREAMS.iter().copied())
            .http_origin("http://*:*")
            .secret(
                "token",
                "a secret bound to one origin only",
                ["http://127.0.0.1:1"],
            )
            .kv_bytes(1024)
    }

    fn check(_config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(STREAMS.iter().map(|s| StreamInfo::new(*s, "{}")).collect())
    }

    fn read(config: &Config, stream: &str, _state: Option<&str>) -> Result<Page, Error> {
        match stream {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[0] = hoard.len() as u8;
                    hoard.push(std::hint::black_box(block));
                }
            }
            "recursion" => {
                let mut buf = [0u64; 16];
                let n = recurse(0, &mut buf);
                leaked("recursion", n.to_string())
            }
            "panic" => {
                let v: Vec<u32> = Vec::new();
                let i = std::hint::black_box(3);
                panic!("hostile plugin indexed {} of an empty list", v.len() + i)
            }
            "http" => {
                let url = config
                    .url
                    .clone()
                    .ok_or_else(|| Error::config("field `url` is required"))?;
                let mut req = Request::get(url);
                if let Some((name, value)) = &config.header {
                    req = req.header(name, value.clone());
                }
                let resp = req.send()?;
                leaked(
                    "http",
                    format!("status {} with {} bytes", resp.status, resp.body.len()),
                )
            }
            "log-flood" => loop {
                nexo_sdk::info!("{}", "flood ".repeat(100));
            },
            "stdout-flood" => {
                use std::io::Write;
                let line = "x".repeat(1000);
                let mut out = std::io::stdout();
                loop {
                    if writeln!(out, "{line}").is_err() {
                        return Err(Error::internal("stdout closed on us"));
                    }
                }
            }
            "read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(s) => leaked("read-file", s),
                Err(e) => Err(Error::AccessDenied(format!("fs: {e}"))),
            },
            "read-env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                if vars.is_empty() && args.is_empty() && std::env::var("HOME").is_err() {
                    Err(Error::AccessDenied(
                        "env: no variables, no arguments".into(),
                    ))
                } else {
                    leaked("read-env", format!("vars {vars:?} args {args:?}"))
                }
            }
            "socket" => match std::net::TcpStream::connect("127.0.0.1:22") {
                Ok(_) => leaked("socket", "connected".into()),
                Err(e) => Err(Error::AccessDenied(format!("socket: {e}"))),
            },
            "kv" => {
                let n = config.kv_bytes.unwrap_or(10);
                kv_roundtrip(n)
            }
            "print" => {
                use std::io::Write;
                let a = writeln!(std::io::stdout(), "hello from stdout");
                let b = writeln!(std::io::stderr(), "hello from stderr");
                leaked("print", format!("{a:?} {b:?}"))
            }
            "ok" => Ok(Page::last(
                vec![Record::upsert(
                    "ok",
                    "1",
                    &serde_json::json!({"fine": true}),
                )?],
                None,
            )),
            other => Err(Error::config(format!("unknown stream `{other}`"))),
        }
    }
}

fn kv_roundtrip(n: usize) -> Result<Page, Error> {
    use nexo_sdk::kv;
    kv::set("blob", &vec![7u8; n])?;
    let back = kv::get("blob")?.unwrap_or_default();
    let keys = kv::list_keys("")?;
    leaked("kv", format!("stored {} bytes, keys {keys:?}", back.len()))
}

nexo_sdk::export_connector!(Hostile);

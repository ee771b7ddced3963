//! `nexo connection authorize NAME`: the OAuth 2.0 authorization-code flow
//! for an admin at a terminal — print the system's authorization address,
//! wait for its redirect on a loopback listener, exchange the code, let the
//! admin pick the tenant — or the client-credentials flow.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::connections::Connections;
use crate::registry::oauth::{Authorization, CallbackParams, OAuthClient, OAuthError};

use super::call::parse_secret;

/// The redirect URI `authorize` listens on unless told otherwise: register
/// it at the vendor.
pub(crate) const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:7459/callback";

/// What `authorize` was given.
#[derive(Debug, clap::Args)]
pub(crate) struct AuthorizeArgs {
    /// The connection.
    pub name: String,
    /// The OAuth client id registered at the vendor (default: the one the
    /// connection last authorized with).
    #[arg(long)]
    pub client_id: Option<String>,
    /// The client secret as env:VAR or file:PATH (default: the stored one
    /// when --client-id is not given either).
    #[arg(long, value_name = "SOURCE")]
    pub client_secret: Option<String>,
    /// The redirect URI registered at the vendor; a loopback address this
    /// command listens on.
    #[arg(long, default_value = DEFAULT_REDIRECT_URI)]
    pub redirect_uri: String,
    /// The tenant (organisation) to use, by id or name, when the
    /// authorization reaches several.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Use the client-credentials flow (no browser): for systems that issue
    /// a client per organisation (Xero custom connections).
    #[arg(long)]
    pub client_credentials: bool,
    /// Seconds to wait for the redirect.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

pub(crate) async fn authorize(connections: &Connections, args: AuthorizeArgs) -> Result<()> {
    let name = args.name.clone();
    // Fails early (an unknown connection, a plugin without OAuth) before
    // asking for anything.
    connections.get(&name)?;
    let client = match (&args.client_id, &args.client_secret) {
        (Some(id), secret) => OAuthClient {
            id: id.clone(),
            secret: secret
                .as_ref()
                .map(|s| parse_secret(&format!("client-secret={s}")).map(|(_, v)| v))
                .transpose()?,
        },
        (None, Some(_)) => {
            bail!("--client-secret needs --client-id (the client the secret belongs to)")
        }
        (None, None) => connections
            .stored_oauth_client(&name)?
            .ok_or(OAuthError::NoClient(name.clone()))?,
    };
    let auth = if args.client_credentials {
        connections
            .authorize_client_credentials(&name, client)
            .await?
    } else {
        code_flow(connections, &name, client, &args).await?
    };
    save(connections, auth, args.tenant.as_deref())?;
    // The check on the new tokens now, rather than at the first run.
    match connections.test(&name).await {
        Ok(()) => println!("connection {name}: check passed"),
        Err(e) => println!(
            "connection {name}: authorized, but its check failed: {e} (fix the config with `nexo connection update {name} --config FILE`, then `nexo connection test {name}`)"
        ),
    }
    Ok(())
}

async fn code_flow(
    connections: &Connections,
    name: &str,
    client: OAuthClient,
    args: &AuthorizeArgs,
) -> Result<Authorization> {
    let redirect = url::Url::parse(&args.redirect_uri)
        .with_context(|| format!("--redirect-uri `{}` is not a URL", args.redirect_uri))?;
    let loopback = matches!(
        redirect.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]")
    );
    if redirect.scheme() != "http" || !loopback {
        bail!(
            "--redirect-uri `{}` must be http on a loopback address (e.g. {DEFAULT_REDIRECT_URI}), where this command listens; to authorize through another address, use the console",
            args.redirect_uri
        );
    }
    let port = redirect.port_or_known_default().unwrap_or(80);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} for the redirect (is another `nexo connection authorize` running?)"))?;
    let pending = connections.begin_authorization(name, client, &args.redirect_uri)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Open this address in a browser, sign in and allow access for connection {name}:\n\n  {}\n\nWaiting up to {} s for the redirect to {} ...",
        pending.url, args.timeout, args.redirect_uri
    )?;
    out.flush()?;
    drop(out);
    let path = redirect.path().to_string();
    let callback = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        wait_for_redirect(&listener, &path),
    )
    .await
    .map_err(|_| OAuthError::TimedOut(args.timeout))??;
    let (params, stream) = callback;
    let result = connections.finish_authorization(pending, &params).await;
    let page = match &result {
        Ok(_) => answer_page(
            "Nexo: authorized",
            &format!("Connection {name} is authorized. You can close this tab."),
        ),
        Err(e) => answer_page("Nexo: not authorized", &e.to_string()),
    };
    reply(stream, &page).await;
    Ok(result?)
}

/// Accept connections until one asks for `path`; its query's parameters.
async fn wait_for_redirect(
    listener: &TcpListener,
    path: &str,
) -> Result<(CallbackParams, tokio::net::TcpStream)> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 2048];
        // The request line and headers; at most 16 KiB.
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 << 10 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf);
        let target = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_string();
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            reply(stream, &answer_page("Not found", "Not found")).await;
            continue;
        };
        if url.path() != path {
            reply(stream, &answer_page("Not found", "Not found")).await;
            continue;
        }
        let mut params = CallbackParams::default();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "code" => params.code = Some(v.into_owned()),
                "state" => params.state = Some(v.into_owned()),
                "error" => params.error = Some(v.into_owned()),
                "error_description" => params.error_description = Some(v.into_owned()),
                _ => {}
            }
        }
        return Ok((params, stream));
    }
}

async fn reply(mut stream: tokio::net::TcpStream, html: &str) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        html.len()
    );
    // The admin's browser going away does not change the outcome.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(html.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn answer_page(title: &str, message: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><p id=\"message\">{}</p></body></html>",
        esc(title),
        esc(title),
        esc(message)
    )
}

fn save(connections: &Connections, auth: Authorization, tenant: Option<&str>) -> Result<()> {
    let name = auth.connection.clone();
    let mut choice = tenant.map(str::to_string);
    if choice.is_none() && auth.tenants.len() > 1 && std::io::stdin().is_terminal() {
        println!("The authorization reaches {} tenants:", auth.tenants.len());
        for (i, t) in auth.tenants.iter().enumerate() {
            println!("  {}. {} ({})", i + 1, t.name, t.id);
        }
        print!(
            "Which one should connection {name} use? [1-{}] ",
            auth.tenants.len()
        );
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let picked = line
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| auth.tenants.get(i))
            .with_context(|| format!("`{}` is not one of 1-{}", line.trim(), auth.tenants.len()))?;
        choice = Some(picked.id.clone());
    }
    let saved = connections.save_authorization(auth, choice.as_deref())?;
    super::audit::record(
        connections.registry().db(),
        crate::store::audit::Change::new(
            crate::store::audit::Action::ConnectionAuthorize,
            format!("connection/{name}"),
        )
        .after(serde_json::json!({
            "tenant": saved.tenant.as_ref().map(|t| t.name.clone()),
            "resumed_pipelines": saved.resumed,
        })),
    )?;
    let until = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(saved.expires_at_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    match &saved.tenant {
        Some(t) => println!(
            "authorized connection {name} for {} ({}); the access token is valid until {until} and is refreshed by the host",
            t.name, t.id
        ),
        None => println!(
            "authorized connection {name}; the access token is valid until {until} and is refreshed by the host"
        ),
    }
    if !saved.resumed.is_empty() {
        println!(
            "resumed pipelines {} (paused while {name} needed re-authorization)",
            saved.resumed.join(", ")
        );
    }
    Ok(())
}

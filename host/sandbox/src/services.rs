//! `nexo-sandbox start`: the HubSpot-like and Xero-like sandbox services on
//! 127.0.0.1, seeded with generated data, for sandbox connections to point
//! at. They run until Ctrl-C (or SIGTERM).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use nexo_sandbox::hubspot::{self, HubSpotConfig, RateLimit, SeedData};
use nexo_sandbox::oauth::{OAuthServer, OAuthSettings};
use nexo_sandbox::xero::{self, XeroConfig};

/// Options of `nexo-sandbox start`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port of the HubSpot-like API (0: any free port).
    #[arg(long, default_value_t = 7401)]
    hubspot_port: u16,
    /// Port of the Xero-like API (0: any free port).
    #[arg(long, default_value_t = 7402)]
    xero_port: u16,
    /// How much data to generate: contacts in the CRM (with a quarter as
    /// many companies and half as many deals), items, contacts and invoices
    /// in the accounting system.
    #[arg(long, default_value_t = 40)]
    size: usize,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HubSpot-like requests allowed per ten seconds (HubSpot: 100); 0: no
    /// limit. Past it the API answers 429 with Retry-After.
    #[arg(long, default_value_t = 100)]
    hubspot_rate: u32,
    /// Xero-like calls allowed per minute per tenant (Xero: 60); 0: no limit.
    #[arg(long, default_value_t = 60)]
    xero_rate: u32,
    /// Lifetime in seconds of the OAuth access tokens both services issue
    /// (Xero and HubSpot: 1800); a few seconds makes clients refresh often.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    token_ttl: Option<u64>,
}

/// The largest `--size`.
const MAX_SIZE: usize = 1_000_000;

pub async fn sandbox(args: SandboxArgs) -> Result<()> {
    // A million contacts (with their companies, deals and line items) take
    // the sandbox about 2 GB; beyond, contact ids would reach the range of
    // companies' ids.
    if args.size > MAX_SIZE {
        bail!(
            "--size {} is more than the sandbox generates (at most {MAX_SIZE})",
            args.size
        );
    }
    let ttl = |mut settings: OAuthSettings| {
        if let Some(secs) = args.token_ttl {
            settings.access_ttl = Duration::from_secs(secs);
        }
        settings
    };
    let hub = hubspot::start(HubSpotConfig {
        rate_limit: (args.hubspot_rate > 0).then_some(RateLimit {
            requests: args.hubspot_rate,
            per: Duration::from_secs(10),
        }),
        seed: SeedData::of_size(args.size, args.seed),
        port: args.hubspot_port,
        oauth: ttl(OAuthSettings::hubspot()),
        ..HubSpotConfig::default()
    })
    .await
    .context("starting the HubSpot-like sandbox (port in use? pick another with --hubspot-port)")?;
    let hub_config = HubSpotConfig::default();
    let books = xero::start(XeroConfig {
        rate_limit: (args.xero_rate > 0).then_some(args.xero_rate),
        seed: args.size,
        port: args.xero_port,
        oauth: ttl(OAuthSettings::xero()),
        ..XeroConfig::default()
    })
    .await
    .context("starting the Xero-like sandbox (port in use? pick another with --xero-port)")?;
    let xero_config = XeroConfig::default();
    println!(
        "HubSpot-like CRM API   {}   (Authorization: Bearer {})",
        hub.url(),
        hub_config.token
    );
    println!(
        "Xero-like accounting   {}   (Authorization: Bearer {}, xero-tenant-id: {})",
        books.url(),
        xero_config.token,
        xero_config.tenant_id
    );
    println!(
        "HubSpot OAuth          authorize {hub}/oauth/authorize   token {hub}/oauth/v1/token   {}",
        credentials(&hub.oauth()),
        hub = hub.url(),
    );
    println!(
        "Xero OAuth             authorize {books}/identity/connect/authorize   token {books}/connect/token   connections {books}/connections   {}",
        credentials(&books.oauth()),
        books = books.url(),
    );
    println!(
        "Seeded with generator seed {} at size {}. These are sandbox credentials for sandbox connections only. Ctrl-C stops both.",
        args.seed, args.size
    );
    nexo::serve::terminated().await;
    drop(books);
    drop(hub);
    Ok(())
}

/// The client and the user of an identity server, as `start` prints them:
/// sandbox credentials, meant to be copied.
fn credentials(oauth: &OAuthServer) -> String {
    let s = oauth.settings();
    let user = s
        .users
        .first()
        .map(|u| format!("user {} / {}", u.email, u.password))
        .unwrap_or_default();
    let needs = s
        .refresh_scope
        .as_ref()
        .map(|scope| format!(" need scope {scope} and"))
        .unwrap_or_default();
    let rotate = if s.refresh_rotates {
        "rotate"
    } else {
        "stay the same"
    };
    format!(
        "(client id {}, client secret {}, {user}, access tokens live {} s, refresh tokens{needs} {rotate})",
        s.client_id,
        s.client_secret,
        s.access_ttl.as_secs(),
    )
}

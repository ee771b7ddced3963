//! `nexo-sandbox`: the vendor sandboxes and the demo, as a binary of its
//! own beside `nexo` (the product binary carries none of this code).

mod demo;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use nexo::cli::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "nexo-sandbox", version, about)]
struct Cli {
    /// Data directory of the installation the demo sets up (default:
    /// `$XDG_DATA_HOME/nexo` or `~/.local/share/nexo`).
    #[arg(long, global = true, env = "NEXO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The product in one command: sandbox CRM and accounting services, the
    /// signed plugins installed, connections and pipelines (won deals →
    /// Xero customers and invoices, payments → the deal), their first runs,
    /// records linked across systems, then the console.
    Demo(demo::DemoArgs),
    /// Start the HubSpot-like and Xero-like sandbox services on 127.0.0.1
    /// (the test environment sandbox connections point at).
    Start(services::SandboxArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story on stdout; its logs are warnings only
    // unless NEXO_LOG asks for more.
    nexo::cli::init_tracing(cli.log_format, "warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", nexo::cli::safe_error(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Start(args) => services::sandbox(args).await,
        Command::Demo(args) => {
            let (dir, runtime) = nexo::cli::open_host(cli.data_dir)?;
            let registry = nexo::cli::registry(&dir, &runtime)?;
            demo::demo(&dir, registry, args).await
        }
    }
}

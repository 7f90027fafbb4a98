//! `tongban-gateway`: runs the national gateway from a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tongban_gateway::{Gateway, GatewayConfig, GatewayListeners};
use tongban_runtime::{observability::logs, process::shutdown::Shutdown, trust::tls};

/// The Tongban national gateway: routes cross-region calls between provincial nodes
/// over mutual-TLS gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Gateway config file (TOML). See deploy/gateway.toml for every field.
    /// This path is relative to the working directory; relative paths inside the file
    /// are relative to the file's own folder.
    #[arg(
        short,
        long,
        env = "TONGBAN_GATEWAY_CONFIG",
        default_value = "gateway.toml"
    )]
    config: PathBuf,
    /// Validate the config, registry, catalog and certificates, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tls::install_crypto_provider();
    let _log = logs::init("info");
    let config = GatewayConfig::load(&args.config)?;
    let runtime = match config.worker_threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(args, config))
}

async fn run(args: Args, config: GatewayConfig) -> anyhow::Result<()> {
    let gateway = Gateway::new(config.clone()).context("gateway configuration")?;
    if args.check {
        if let Some(log) = &config.revocation_log {
            // Reads the password file and the TLS mode; connects to nothing.
            log.database
                .connect_options("tongban-gateway --check")
                .context("the revocation log's database settings")?;
        }
        println!(
            "{}: ok ({} routes)",
            args.config.display(),
            gateway.route_count()
        );
        return Ok(());
    }
    let listeners = GatewayListeners::bind(&config).await?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_os_signals();
    gateway.serve(listeners, shutdown.signal()).await?;
    Ok(())
}

//! `tongban-gateway`: runs the national gateway from a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tongban_gateway::{Gateway, GatewayConfig, GatewayListeners};
use tongban_runtime::{shutdown::Shutdown, telemetry, tls};

/// The Tongban national gateway: routes cross-region calls between provincial nodes
/// over mutual-TLS gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Gateway config file (TOML). See deploy/gateway.toml for every field.
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tls::install_crypto_provider();
    telemetry::init("info");
    let config = GatewayConfig::load(&args.config)?;
    let gateway = Gateway::new(config.clone()).context("gateway configuration")?;
    if args.check {
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

//! `tongban-node`: runs a provincial node from a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tongban_node::{Node, NodeConfig, NodeListeners};
use tongban_runtime::{observability::logs, process::shutdown::Shutdown, trust::tls};

/// A Tongban provincial node: wraps the province's platform, serves the local portal
/// API, and exchanges cross-region applications through the national gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Node config file (TOML). See deploy/node-44.toml for every field.
    /// This path is relative to the working directory; relative paths inside the file
    /// are relative to the file's own folder.
    #[arg(short, long, env = "TONGBAN_NODE_CONFIG", default_value = "node.toml")]
    config: PathBuf,
    /// Validate the config and certificates, then exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tls::install_crypto_provider();
    let _log = logs::init("info");
    let config = NodeConfig::load(&args.config)?;
    if args.check {
        config.tls.server_config().context("node certificates")?;
        tongban_node::issuer::IssuerKeys::load(&config.issuer).context("issuer keys")?;
        tongban_node::peers::PeerKeys::load(&config.peers.registry)
            .context("the peers' registry")?;
        config.calendar.load().context("the official calendar")?;
        tongban_node::access_inquiry::Inquiries::new(config.access_log.as_ref())
            .map_err(anyhow::Error::msg)
            .context("the access-log portal secret")?;
        if let tongban_node::config::StoreConfig::Postgres(store) = &config.store {
            // Reads the password file and the TLS mode; connects to nothing.
            store
                .database()
                .connect_options("tongban-node --check")
                .context("the database settings")?;
        }
        if let tongban_node::config::PlatformConfig::Http(http) = &config.platform {
            use tongban_node::platform::http::{auth::AuthPolicy, tls};
            tls::client_config(&http.tls).context("platform TLS")?;
            AuthPolicy::load(&http.auth).context("platform authentication")?;
        }
        println!("{}: ok (region {})", args.config.display(), config.region);
        return Ok(());
    }
    let node = Node::new(config.clone()).await.context("node start-up")?;
    let listeners = NodeListeners::bind(&config).await?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_os_signals();
    node.serve(listeners, shutdown.signal()).await?;
    Ok(())
}

//! `tongban platform serve`: the reference platform as a process of its own.

use std::path::Path;

use anyhow::Context;
use tongban_node::platform::reference::{self, Authenticator, ReferenceConfig};
use tongban_runtime::{observability::logs, process::shutdown::Shutdown};

/// Serves the platform of `config` until Ctrl-C or SIGTERM (or only checks it).
pub async fn run(config: &Path, check: bool, log: &str) -> anyhow::Result<()> {
    let config = ReferenceConfig::load(config)?;
    if check {
        // The files a start would read, read now; nothing is bound or written.
        if let Some(tls) = &config.tls {
            reference::server_tls(tls)?;
        }
        Authenticator::from_settings(&config.auth)?;
        println!("config ok");
        return Ok(());
    }
    let _log = logs::init(log);
    let shutdown = Shutdown::new();
    shutdown.trigger_on_os_signals();
    let running = reference::serve(config, shutdown.signal())
        .await
        .context("starting the reference platform")?;
    println!("contract:    {}", running.url());
    println!("clerk's API: {}", running.clerk_url());
    running.stopped().await;
    Ok(())
}

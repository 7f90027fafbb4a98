//! Members as child processes: starting the project's binaries on their configs and
//! waiting for their readiness probes.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tongban_node::portal_client::PortalClient;

use crate::error::{KitError, io_err};

/// Starts a member binary on `config` with `RUST_LOG=filter` and `env`, its output
/// appended to `log`.
pub(crate) fn spawn(
    binary: &Path,
    config: &Path,
    filter: &str,
    env: &[(String, String)],
    log: &Path,
) -> Result<Child, KitError> {
    spawn_command(binary, &[], config, filter, env, log)
}

/// Starts `binary` with `command` (its subcommand words) and `--config config`, with
/// `RUST_LOG=filter` and `env`, its output appended to `log`.
pub(crate) fn spawn_command(
    binary: &Path,
    command: &[&str],
    config: &Path,
    filter: &str,
    env: &[(String, String)],
    log: &Path,
) -> Result<Child, KitError> {
    if !binary.exists() {
        return Err(KitError::Other(format!(
            "{} is missing: build it first (cargo build -p tongban-gateway -p tongban-node -p tongban-cli)",
            binary.display()
        )));
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(log))?;
    let err = out.try_clone().map_err(io_err(log))?;
    Command::new(binary)
        .args(command)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", filter)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io_err(binary))
}

/// Waits until `base` answers 200 on `/readyz` (a member's readiness probe).
pub(crate) async fn wait_ready(base: &str) -> Result<(), KitError> {
    let probe = PortalClient::new(base);
    // Generous: debug builds of several members start together while the rest of the
    // suite runs beside them (30 s was once too short for a three-region federation).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if probe.get("/readyz").await.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KitError::Other(format!(
                "{base}/readyz not ready within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

//! Province platforms of a local federation: the reference platform that a node with
//! `[platform] kind = "http"` stands in front of, run in this process or as a
//! `tongban platform serve` process, which a test can stop, kill (a real SIGKILL for a
//! process) and restart on the same port and database. In this process, its contract
//! can also be made to fail ([`PlatformFault`]): answer `503`, or answer slowly.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tongban_node::{
    platform::{
        embedded::EmbeddedPlatform,
        reference::{self, ReferenceConfig},
    },
    portal_client::{PortalClient, PortalResponse},
};
use tongban_proto::rules::region::RegionPrefix;
use tongban_runtime::process::shutdown::Shutdown;

use crate::{
    config::platform::ProvincePlatform,
    error::{KitError, io_err},
    member::Run,
    process::spawn_command,
};

/// How the contract of an in-process platform misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlatformFault {
    #[default]
    None,
    /// Every contract call answers this status (a platform failing: `503`, `500`).
    Status(u16),
    /// Every contract call is answered this much later (a platform under strain).
    Delay(Duration),
}

/// The fault in force, shared with the platform's middleware.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<PlatformFault>>);

impl Faults {
    pub fn set(&self, fault: PlatformFault) {
        if let Ok(mut current) = self.0.lock() {
            *current = fault;
        }
    }

    fn get(&self) -> PlatformFault {
        self.0.lock().map(|f| *f).unwrap_or_default()
    }
}

async fn misbehave(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    match faults.get() {
        PlatformFault::None => next.run(request).await,
        PlatformFault::Status(code) => {
            let status = axum::http::StatusCode::from_u16(code)
                .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
            (status, "injected fault").into_response()
        }
        PlatformFault::Delay(wait) => {
            tokio::time::sleep(wait).await;
            next.run(request).await
        }
    }
}

/// A province platform, running or stopped.
pub struct RunningPlatform {
    pub prefix: RegionPrefix,
    pub files: ProvincePlatform,
    /// The clerk's API (plain HTTP on loopback).
    pub clerk: PortalClient,
    /// Faults of the contract (in-process platforms only).
    pub faults: Faults,
    /// `Some(tongban)`: runs as `tongban platform serve`; `None`: in this process.
    binary: Option<PathBuf>,
    log: PathBuf,
    pub(crate) run: Run,
}

impl RunningPlatform {
    /// Starts the platform of `files`; with `binary`, as a process logging to `log`.
    pub async fn start(
        prefix: RegionPrefix,
        files: ProvincePlatform,
        binary: Option<PathBuf>,
        log: PathBuf,
    ) -> Result<Self, KitError> {
        let mut platform = Self {
            prefix,
            clerk: PortalClient::new(format!("http://{}", files.clerk_listen)),
            files,
            faults: Faults::default(),
            binary,
            log,
            run: Run::Stopped,
        };
        platform.launch().await?;
        Ok(platform)
    }

    async fn launch(&mut self) -> Result<(), KitError> {
        self.run = match &self.binary {
            None => {
                let config = ReferenceConfig::load(&self.files.config_path)?;
                let shutdown = Shutdown::new();
                let faults = self.faults.clone();
                let running = reference::serve_with(config, shutdown.signal(), move |router| {
                    router.layer(axum::middleware::from_fn_with_state(faults, misbehave))
                })
                .await
                .map_err(|e| KitError::Other(format!("reference platform: {e}")))?;
                let handle = tokio::spawn(async move {
                    running.stopped().await;
                    Ok(())
                });
                Run::Task { shutdown, handle }
            }
            Some(binary) => Run::Process(spawn_command(
                binary,
                &["platform", "serve"],
                &self.files.config_path,
                "warn",
                &[],
                &self.log,
            )?),
        };
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<(), KitError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .clerk
                .get("/clerk/v1/health")
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(KitError::Other(format!(
                    "platform {} not ready within 30 s (log: {})",
                    self.prefix,
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The contract's base URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.files.listen)
    }

    /// The process id, for a platform running as a process.
    pub fn pid(&self) -> Option<u32> {
        match &self.run {
            Run::Process(child) => Some(child.id()),
            _ => None,
        }
    }

    /// Stops it gracefully.
    pub async fn stop(&mut self) {
        self.run.stop().await;
    }

    /// Kills it: SIGKILL for a process, its tasks aborted in this process.
    pub async fn kill(&mut self) {
        self.run.kill().await;
    }

    /// Starts it again (after a stop or a kill) on the same port and database.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.run.stop().await;
        self.launch().await
    }

    /// A clerk's decision on a case (`accept`, `request_materials`, `approve`,
    /// `reject`, …), through the clerk's API.
    pub async fn decide(
        &self,
        case_number: &str,
        action: &str,
        reason: &str,
    ) -> Result<PortalResponse, KitError> {
        self.clerk
            .post_json(
                &format!("/clerk/v1/cases/{case_number}/decision"),
                &serde_json::json!({ "action": action, "reason": reason }),
            )
            .await
            .map_err(|e| KitError::Other(format!("clerk API: {e}")))
    }

    /// The test's own handle on the platform's database.
    pub fn database(&self) -> Result<Arc<EmbeddedPlatform>, KitError> {
        Ok(EmbeddedPlatform::open(&self.files.database, &self.prefix)?)
    }

    /// The key the platform hashes ID numbers with.
    pub fn id_hash_key(&self) -> Result<Vec<u8>, KitError> {
        std::fs::read(&self.files.id_hash_key).map_err(io_err(&self.files.id_hash_key))
    }
}

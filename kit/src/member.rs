//! A running member of a local federation — a gateway replica or a node — and how it
//! runs (`Run`: tasks of this process or a child process), which is what stops,
//! kills and restarts act on.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tongban_node::{
    platform::embedded::EmbeddedPlatform, portal_client::PortalClient, store::Store,
};
use tongban_proto::rules::region::{RegionCode, RegionPrefix};
use tongban_runtime::process::shutdown::Shutdown;

pub use crate::operator_api::OperatorApi;

/// How a member is running.
pub(crate) enum Run {
    Task {
        shutdown: Shutdown,
        handle: JoinHandle<Result<(), String>>,
    },
    Process(Child),
    Stopped,
}

impl Run {
    // The methods work through `&mut` and leave `Stopped` behind: `Run` has a `Drop`, so
    // its variants cannot be moved out.
    pub(crate) async fn stop(&mut self) {
        match self {
            Run::Task { shutdown, handle } => {
                shutdown.trigger();
                let _ = handle.await;
            }
            Run::Process(child) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(15);
                let mut exited = false;
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        exited = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if !exited {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Run::Stopped => {}
        }
        *self = Run::Stopped;
    }

    pub(crate) async fn kill(&mut self) {
        match self {
            Run::Task { handle, .. } => {
                handle.abort();
                let _ = handle.await;
            }
            Run::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Run::Stopped => {}
        }
        *self = Run::Stopped;
    }

    /// Whether the member has ended (by itself or stopped).
    pub(crate) fn has_exited(&mut self) -> bool {
        match self {
            Run::Process(child) => child.try_wait().is_ok_and(|s| s.is_some()),
            Run::Stopped => true,
            Run::Task { handle, .. } => handle.is_finished(),
        }
    }
}

impl Drop for Run {
    /// A federation dropped without `shutdown` (a failed test) leaves nothing running.
    fn drop(&mut self) {
        match self {
            Run::Task { handle, .. } => handle.abort(),
            Run::Process(child) => {
                // Already reaped by `stop`/`kill` when those ran: then both are no-ops.
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Run::Stopped => {}
        }
    }
}

/// A gateway replica.
pub struct RunningGateway {
    pub index: usize,
    pub federation_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// The operator listener (`/reload`, the console), and a client of it as the kit's
    /// operator (role `operator`).
    pub operator_addr: SocketAddr,
    pub operator: OperatorApi,
    pub config_path: PathBuf,
    pub(crate) run: Run,
}

/// A node.
pub struct RunningNode {
    pub region: RegionCode,
    pub prefix: RegionPrefix,
    pub federation_addr: SocketAddr,
    pub portal_addr: SocketAddr,
    pub portal: PortalClient,
    /// The node's admin listener (probes, `/metrics`).
    pub admin_addr: SocketAddr,
    pub admin: PortalClient,
    /// The node's operator listener (revocations, dead letters, `/reload`), and a client
    /// of it as the kit's operator (role `operator`).
    pub operator_addr: SocketAddr,
    pub operator: OperatorApi,
    pub config_path: PathBuf,
    /// The node's store and platform, opened on the member's own database files (shared
    /// with a child process through SQLite's locking).
    pub store: Store,
    pub platform: Arc<EmbeddedPlatform>,
    pub(crate) run: Run,
}

impl RunningNode {
    /// `POST /v1/access-log` for the person `id_number` named `name`, as the province's
    /// portal makes it: with its proof that it authenticated the person, under the
    /// portal secret the node's config names.
    pub async fn access_log(
        &self,
        id_number: &str,
        name: &str,
    ) -> Result<tongban_node::portal_client::PortalResponse, crate::error::KitError> {
        let config = tongban_node::NodeConfig::load(&self.config_path)?;
        let secret_file = config
            .access_log
            .map(|a| a.portal_secret)
            .ok_or_else(|| crate::error::KitError::Other("the node has no [access_log]".into()))?;
        let secret = std::fs::read(&secret_file).map_err(|e| {
            crate::error::KitError::Other(format!("{}: {e}", secret_file.display()))
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let proof = tongban_node::access_inquiry::proof(&secret, id_number, now);
        let body = serde_json::json!({ "id_number": id_number, "name": name });
        self.portal
            .send_with(
                "POST",
                "/v1/access-log",
                bytes::Bytes::from(body.to_string()),
                &[(tongban_node::access_inquiry::PROOF_HEADER, &proof)],
            )
            .await
            .map_err(|e| crate::error::KitError::Other(e.to_string()))
    }

    /// The status token of `case_number`'s receipt, as the node gives it (for cases
    /// filed straight into the store, which gave no receipt to any client).
    pub async fn receipt_token(&self, case_number: &str) -> Result<String, crate::error::KitError> {
        let key = self.store.id_hash_key().await?;
        Ok(tongban_node::receipt_token::ReceiptTokens::new(&key).token(case_number))
    }
}

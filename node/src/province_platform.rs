//! The platform a node's config names, opened, and the background work it needs: the
//! embedded SQLite platform (seeded with synthetic residents if asked, its demo clerk
//! only when `auto_approve_after` is set) or a province's own platform over HTTP (its
//! health probe). The node holds it as the two traits the rest of the node uses; the
//! embedded handle stays reachable for its clerk, seeding and tests.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinSet;
use tongban_proto::rules::region::{RegionPrefix, RegionTable};
use tongban_runtime::{observability::traces::Traces, process::shutdown::ShutdownSignal};

use crate::{
    config::{NodeConfig, PlatformConfig},
    metrics::NodeMetrics,
    platform::{
        adapter::Platform,
        embedded::EmbeddedPlatform,
        http::{HttpPlatform, SetupError},
        register::LicenseRegistry,
    },
    sqlite::StoreError,
};

/// How often the embedded platform's feeds are read when it did not say it changed,
/// and the wait after a failed read.
const EMBEDDED_POLL: Duration = Duration::from_secs(1);

/// The platform could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PlatformOpenError {
    #[error("platform database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Http(#[from] SetupError),
    #[error(transparent)]
    KeyBinding(#[from] crate::platform::embedded::KeyBindingError),
    #[error(
        "the embedded platform {0} is in use by another node process; replicas of a node \
         need a platform they can share (a province's platform over HTTP)"
    )]
    InUse(String),
    #[error("{path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

/// The platform in use.
pub struct OpenPlatform {
    /// Cases: take-over, status, the feed of changes.
    pub cases: Arc<dyn Platform>,
    /// The register of persons and licenses.
    pub register: Arc<dyn LicenseRegistry>,
    /// The embedded platform, when it is the one in use.
    pub embedded: Option<Arc<EmbeddedPlatform>>,
    /// The HTTP adapter, when a province's platform is in use.
    pub http: Option<Arc<HttpPlatform>>,
    /// The embedded platform's demo clerk: approves every case on this step.
    auto_approve_after: Option<Duration>,
    /// Held while this node runs the embedded platform: a second node process on the
    /// same file would run a second clerk and follow the same feeds.
    _exclusive: Option<std::fs::File>,
}

impl OpenPlatform {
    /// Opens the platform `config` names. Nothing is called on a province's platform
    /// yet: a node starts while it is down, and says so in its readiness.
    pub async fn open(
        config: &NodeConfig,
        prefix: &RegionPrefix,
        id_hash_key: &Arc<[u8]>,
        traces: &Traces,
        metrics: Option<Arc<NodeMetrics>>,
    ) -> Result<Self, PlatformOpenError> {
        match &config.platform {
            PlatformConfig::Embedded {
                database,
                seed_residents,
                auto_approve_after,
            } => {
                let exclusive = claim_exclusive(database)?;
                let platform = EmbeddedPlatform::open(database, prefix)?;
                platform.bind_id_hash_key(id_hash_key.clone()).await?;
                if *seed_residents > 0 {
                    let table = RegionTable::embedded();
                    let key = id_hash_key.clone();
                    let n = platform.seed(table, prefix, *seed_residents, key).await?;
                    if n > 0 {
                        tracing::info!(residents = n, "seeded synthetic residents");
                    }
                }
                Ok(Self {
                    cases: platform.clone(),
                    register: platform.clone(),
                    embedded: Some(platform),
                    http: None,
                    auto_approve_after: *auto_approve_after,
                    _exclusive: Some(exclusive),
                })
            }
            PlatformConfig::Http(http) => {
                let platform =
                    HttpPlatform::new(http, id_hash_key.clone(), traces.clone(), metrics)?;
                tracing::info!(platform = platform.url(), "province's platform over HTTP");
                Ok(Self {
                    cases: platform.clone(),
                    register: platform.clone(),
                    embedded: None,
                    http: Some(platform),
                    auto_approve_after: None,
                    _exclusive: None,
                })
            }
        }
    }

    /// How often the feeds are read when the platform cannot say it changed, and the
    /// wait after a failed read.
    pub fn poll_interval(&self) -> Duration {
        self.http
            .as_ref()
            .map_or(EMBEDDED_POLL, |http| http.poll_interval())
    }

    /// Spawns what the platform needs while the node runs: the embedded demo clerk when
    /// asked for, the HTTP adapter's health probe.
    pub fn spawn(&self, tasks: &mut JoinSet<()>, shutdown: &ShutdownSignal) {
        if let (Some(embedded), Some(step)) = (&self.embedded, self.auto_approve_after) {
            tracing::warn!(
                step_ms = step.as_millis() as u64,
                "the embedded platform's demo clerk approves every case on a timer"
            );
            tasks.spawn(embedded.clone().run_clerk(step, shutdown.clone()));
        }
        if let Some(http) = &self.http {
            tasks.spawn(http.clone().run_probe(shutdown.clone()));
        }
    }
}

/// Locks the embedded platform at `database` for this process (a lock file beside it;
/// the OS lets go when the process ends, however it ends).
fn claim_exclusive(database: &std::path::Path) -> Result<std::fs::File, PlatformOpenError> {
    let path = database.with_extension("node-lock");
    let lock_error = |source| PlatformOpenError::Lock {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(lock_error)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(PlatformOpenError::InUse(database.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

#[cfg(test)]
mod tests {
    /// One holder at a time; the next one gets the file once the first lets go.
    #[test]
    fn one_node_process_at_a_time_runs_an_embedded_platform() {
        let dir = std::env::temp_dir().join(format!("tongban-exclusive-{}", std::process::id()));
        let database = dir.join("platform.sqlite");
        let first = super::claim_exclusive(&database).unwrap();
        let second = super::claim_exclusive(&database).unwrap_err();
        assert!(
            second
                .to_string()
                .contains("in use by another node process"),
            "{second}"
        );
        drop(first);
        super::claim_exclusive(&database).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}

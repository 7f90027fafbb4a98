//! The catalog in force: the base catalog with the ledger's changes applied, swapped
//! whole by a change (`record`) or by what other replicas recorded (`catch_up`).

use std::{
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::Mutex;
use tongban_proto::{
    rules::{
        calendar::business_now,
        catalog::{Catalog, CatalogItem, ChangeRefused},
        region::RegionPrefix,
    },
    v1::GetCatalogResponse,
};

use super::ledger::{Change, LedgerError, LedgerFile, Recorded};
use super::metrics::CatalogMetrics;
use super::shared::{SharedLedger, SharedLedgerError};
use tongban_runtime::{process::shutdown::ShutdownSignal, serving::admin::ReadinessCheck};

/// The longest base version that leaves room for the ledger's suffix (ids are at most
/// 64 characters).
const MAX_BASE_VERSION: usize = 40;

/// Why a publication or adoption was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogChangeError {
    #[error(transparent)]
    Refused(#[from] ChangeRefused),
    #[error(
        "this gateway keeps no catalog ledger (`catalog_ledger` in its config): it serves \
         its configured catalog only"
    )]
    NoLedger,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Shared(#[from] SharedLedgerError),
}

/// Where the changes are recorded.
enum Ledger {
    File(LedgerFile),
    Shared(SharedLedger),
}

/// The catalog in force and, as it was encoded once, its full answer.
pub struct Served {
    pub catalog: Arc<Catalog>,
    pub response: Arc<GetCatalogResponse>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The version that carries it.
    pub version: String,
    /// False when the catalog said so already.
    pub recorded: bool,
}

/// The catalog in force, and the ledger that changes it.
pub struct CatalogSource {
    base: Arc<Catalog>,
    served: RwLock<Arc<Served>>,
    /// Held by a change or a catch-up: they apply one at a time, in the ledger's order.
    ledger: Option<Mutex<Ledger>>,
    /// Every record applied here, in order (seq 1, 2, …): an earlier version is rebuilt
    /// from them when a node asks for it.
    records: std::sync::Mutex<Vec<Recorded>>,
    /// Whether the ledger has been read since start. A replica on a shared ledger serves
    /// no catalog before (it may lack what the others serve).
    loaded: AtomicBool,
    metrics: CatalogMetrics,
}

impl CatalogSource {
    /// The catalog at `path`, or the one built in.
    pub fn base(path: Option<&Path>) -> Result<Catalog, CatalogStartError> {
        let Some(path) = path else {
            return Ok(Catalog::embedded());
        };
        let failed = |reason: String| CatalogStartError::Catalog {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        Catalog::from_json(&text).map_err(|e| failed(e.to_string()))
    }

    /// `base`, alone: nothing can be published (tests, and a gateway without a ledger).
    pub fn fixed(base: Catalog) -> Self {
        Self::over(base, None, Vec::new(), true)
    }

    /// `base`, with the ledger the replicas share in `pool`'s database, read by
    /// [`CatalogSource::follow`].
    pub fn with_shared(
        base: Catalog,
        pool: sqlx::PgPool,
        replica: String,
    ) -> Result<Self, CatalogStartError> {
        let shared = Ledger::Shared(SharedLedger::new(pool, replica));
        Self::checked(base).map(|base| Self::over(base, Some(shared), Vec::new(), false))
    }

    /// `base` with the ledger at `path` replayed over it. A recorded change that no
    /// longer applies (a new release's catalog took the id, say) is skipped and logged.
    pub fn with_ledger(base: Catalog, path: &Path) -> Result<Self, CatalogStartError> {
        let base = Self::checked(base)?;
        let (file, recorded) = LedgerFile::open(path)?;
        Ok(Self::over(base, Some(Ledger::File(file)), recorded, true))
    }

    /// A base version the ledger's suffix fits onto.
    fn checked(base: Catalog) -> Result<Catalog, CatalogStartError> {
        match base.version.len() > MAX_BASE_VERSION {
            true => Err(CatalogStartError::VersionTooLong(base.version)),
            false => Ok(base),
        }
    }

    fn over(base: Catalog, ledger: Option<Ledger>, records: Vec<Recorded>, loaded: bool) -> Self {
        let current = replay(base.clone(), &base.version, &records);
        let metrics = CatalogMetrics::default();
        metrics.at(sequence_of(&current.version, &base.version));
        Self {
            base: Arc::new(base),
            served: RwLock::new(served(current)),
            ledger: ledger.map(Mutex::new),
            records: std::sync::Mutex::new(records),
            loaded: AtomicBool::new(loaded),
            metrics,
        }
    }

    /// Registers the catalog's metrics in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Keeps `applied` (the records after those kept) for rebuilding versions.
    fn remember(&self, applied: &[Recorded]) {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(applied);
    }

    /// Exactly `version`: the current one, the base, or an earlier ledger version
    /// rebuilt from the records.
    pub fn version(&self, version: &str) -> Option<GetCatalogResponse> {
        let served = self.served();
        if served.response.version == version {
            return Some((*served.response).clone());
        }
        let base = &self.base.version;
        let seq = sequence_of(version, base);
        if version == base.as_str() {
            return Some(self.base.to_proto());
        }
        if seq == 0 || self::version(base, seq) != version {
            return None;
        }
        let records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let upto: Vec<Recorded> = records
            .iter()
            .take_while(|r| r.seq <= seq)
            .cloned()
            .collect();
        drop(records);
        if upto.last().map(|r| r.seq) != Some(seq) {
            return None;
        }
        Some(replay((*self.base).clone(), base, &upto).to_proto())
    }

    /// The catalog in force.
    pub fn current(&self) -> Arc<Catalog> {
        self.served().catalog.clone()
    }

    /// The catalog in force with its encoded answer.
    pub fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `region` publishes `item` (or a new version of it).
    pub async fn publish(
        &self,
        region: &RegionPrefix,
        item: CatalogItem,
    ) -> Result<Changed, CatalogChangeError> {
        let change = Change::Publish {
            item: Box::new(item),
        };
        let changed = self.record(region, change).await;
        self.count("publish", &changed);
        changed
    }

    /// `region` adopts the featured item `item_id`, today (Beijing time).
    pub async fn adopt(
        &self,
        region: &RegionPrefix,
        item_id: &str,
    ) -> Result<Changed, CatalogChangeError> {
        let adopted_on = business_now().date().to_string();
        let change = Change::Adopt {
            item_id: item_id.to_owned(),
            adopted_on,
        };
        let changed = self.record(region, change).await;
        self.count("adopt", &changed);
        changed
    }

    /// Applies `change` to the catalog in force (on a shared ledger, after what the
    /// other replicas recorded); when it changes anything, records it and then serves
    /// the result.
    async fn record(
        &self,
        region: &RegionPrefix,
        change: Change,
    ) -> Result<Changed, CatalogChangeError> {
        let ledger = self.ledger.as_ref().ok_or(CatalogChangeError::NoLedger)?;
        let mut ledger = ledger.lock().await;
        let mut current = self.current();
        let mut recorded = Recorded {
            seq: sequence_of(&current.version, &self.base.version) + 1,
            region: region.as_str().to_owned(),
            recorded_ms: now_ms(),
            change,
        };
        let next = match &mut *ledger {
            Ledger::File(file) => match apply(&current, &self.base.version, &recorded)? {
                Some(next) => {
                    file.append(&recorded).await?;
                    self.remember(std::slice::from_ref(&recorded));
                    Some(next)
                }
                None => None,
            },
            Ledger::Shared(shared) => {
                let turn = shared.turn(recorded.seq - 1).await?;
                if let Some(last) = turn.before.last() {
                    let caught_up = replay((*current).clone(), &self.base.version, &turn.before);
                    recorded.seq = last.seq + 1;
                    self.remember(&turn.before);
                    self.serve(caught_up);
                    current = self.current();
                }
                match apply(&current, &self.base.version, &recorded) {
                    Ok(Some(next)) => {
                        shared.append(turn, &recorded).await?;
                        self.remember(std::slice::from_ref(&recorded));
                        Some(next)
                    }
                    Ok(None) => {
                        turn.release().await?;
                        None
                    }
                    Err(refused) => {
                        turn.release().await?;
                        return Err(refused.into());
                    }
                }
            }
        };
        let Some(next) = next else {
            return Ok(Changed {
                version: current.version.clone(),
                recorded: false,
            });
        };
        let version = next.version.clone();
        self.serve(next);
        tracing::info!(%version, region = %region, "catalog changed by a region");
        Ok(Changed {
            version,
            recorded: true,
        })
    }

    fn count(&self, change: &'static str, changed: &Result<Changed, CatalogChangeError>) {
        let outcome = match changed {
            Ok(Changed { recorded: true, .. }) => "recorded",
            Ok(Changed {
                recorded: false, ..
            }) => "unchanged",
            Err(CatalogChangeError::Refused(_) | CatalogChangeError::NoLedger) => "refused",
            Err(CatalogChangeError::Ledger(_) | CatalogChangeError::Shared(_)) => "failed",
        };
        self.metrics.changed(change, outcome);
    }

    fn serve(&self, catalog: Catalog) {
        self.metrics
            .at(sequence_of(&catalog.version, &self.base.version));
        *self
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = served(catalog);
    }

    /// Whether a fetch by a node that has `known` must wait for a catch-up: the shared
    /// ledger was not read yet, or the node has a newer version than this replica
    /// (another replica served it), which it must not be sent back from.
    pub fn behind(&self, known: &str) -> bool {
        if !self.loaded.load(Ordering::Acquire) {
            return true;
        }
        let ours = sequence_of(&self.current().version, &self.base.version);
        self.ledger.is_some()
            && known.starts_with(&self.base.version)
            && sequence_of(known, &self.base.version) > ours
    }

    /// Reads what the other replicas recorded since this one last looked (a lone
    /// gateway's file holds nothing it has not applied).
    pub async fn catch_up(&self) -> Result<(), SharedLedgerError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let ledger = ledger.lock().await;
        if let Ledger::Shared(shared) = &*ledger {
            let current = self.current();
            let known = sequence_of(&current.version, &self.base.version);
            let after = shared.read_after(known).await?;
            if !after.is_empty() {
                self.serve(replay((*current).clone(), &self.base.version, &after));
                self.remember(&after);
            }
        }
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Follows the shared ledger until `shutdown` (its schema first), every `poll`.
    pub async fn follow(self: Arc<Self>, poll: Duration, shutdown: ShutdownSignal) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut migrated = false;
        loop {
            let read = async {
                if !migrated {
                    if let Some(ledger) = &self.ledger
                        && let Ledger::Shared(shared) = &*ledger.lock().await
                    {
                        shared.migrate().await?;
                    }
                    migrated = true;
                }
                self.catch_up().await
            };
            if let Err(error) = read.await {
                tracing::warn!(%error, "catalog ledger unread; serving what was read before");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Readiness: a replica on a shared ledger is ready once it has read it.
    pub fn readiness(self: &Arc<Self>) -> ReadinessCheck {
        let source = self.clone();
        Arc::new(move || match source.loaded.load(Ordering::Acquire) {
            true => Ok(()),
            false => Err("the shared catalog ledger has not been read yet".into()),
        })
    }
}

/// `recorded`, applied in order over `catalog`; a change that no longer applies (a new
/// release's catalog took the id, say) is skipped and logged. Named after the last.
fn replay(mut catalog: Catalog, base_version: &str, recorded: &[Recorded]) -> Catalog {
    for one in recorded {
        match apply(&catalog, base_version, one) {
            Ok(Some(next)) => catalog = next,
            Ok(None) => {}
            Err(error) => tracing::warn!(
                seq = one.seq,
                region = %one.region,
                %error,
                "catalog ledger: a recorded change no longer applies to this catalog; skipped"
            ),
        }
    }
    if let Some(last) = recorded.last() {
        catalog.version = version(base_version, last.seq);
    }
    catalog
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogStartError {
    #[error("catalog {path}: {reason}")]
    Catalog { path: String, reason: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("catalog version {0:?} is too long to carry a ledger's suffix (at most 40 characters)")]
    VersionTooLong(String),
    #[error(
        "catalog_ledger: replicas that share [revocation_log] keep the catalog ledger in its \
         database; a file is for a lone gateway"
    )]
    FileBesideSharedLog,
}

/// `recorded` applied to `catalog`, named as the ledger's `seq`-th version.
fn apply(
    catalog: &Catalog,
    base_version: &str,
    recorded: &Recorded,
) -> Result<Option<Catalog>, ChangeRefused> {
    let region = RegionPrefix::parse(&recorded.region).map_err(|e| {
        ChangeRefused::Invalid(tongban_proto::rules::catalog::CatalogError::Item {
            item: String::new(),
            field: "region".into(),
            problem: e.to_string(),
        })
    })?;
    let version = version(base_version, recorded.seq);
    match &recorded.change {
        Change::Publish { item } => {
            catalog.with_publication(&region, CatalogItem::clone(item), version)
        }
        Change::Adopt {
            item_id,
            adopted_on,
        } => catalog.with_adoption(&region, item_id, adopted_on, version),
    }
}

/// The name of the catalog after the ledger's `seq`-th change.
fn version(base: &str, seq: u64) -> String {
    format!("{base}-L{seq}")
}

/// How many ledger changes `version` carries (0 for the base itself).
fn sequence_of(version: &str, base: &str) -> u64 {
    version
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix("-L"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn served(catalog: Catalog) -> Arc<Served> {
    Arc::new(Served {
        response: Arc::new(catalog.to_proto()),
        catalog: Arc::new(catalog),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;

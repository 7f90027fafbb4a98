//! The [`Platform`] side of the adapter: cases delivered to this region, their status,
//! and the status changes the platform's clerks make.

use tokio::sync::broadcast;
use tongban_proto::v1::{Application, CaseStatus};

/// A case as the platform knows it.
#[derive(Clone, Debug)]
pub struct PlatformCase {
    /// The platform's own reference.
    pub reference: String,
    pub case_number: String,
    pub one_thing_id: String,
    /// 6-digit code of the region that filed the case.
    pub origin_region: String,
    pub status: CaseStatus,
}

/// The outcome of handing a case to the platform.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub case: PlatformCase,
    /// False when the platform already had this case number: nothing new was created.
    pub created: bool,
}

/// Platform failures.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("platform storage: {0}")]
    Storage(#[from] crate::sqlite::StoreError),
    #[error("platform unavailable: {0}")]
    Unavailable(String),
    /// The case number is already taken by a different application.
    #[error("{0}")]
    Conflict(String),
}

/// What a node needs from its province's platform.
#[tonic::async_trait]
pub trait Platform: Send + Sync + 'static {
    /// Takes over a case. Idempotent by case number: a second submission of the same
    /// case creates nothing and returns the first one. `payload` is the application's
    /// encoding exactly as received, kept as the record of what was filed.
    async fn submit(
        &self,
        application: &Application,
        applicant_hash: &str,
        payload: &[u8],
    ) -> Result<Submitted, PlatformError>;

    /// A case by federation case number.
    async fn case(&self, case_number: &str) -> Result<Option<PlatformCase>, PlatformError>;

    /// Status changes made by the platform itself (reviews, decisions), as they happen.
    /// Best effort: the node also sweeps [`Platform::updated_since`], so a change missed
    /// here (a crash between the change and its announcement, a lagging receiver) is
    /// still returned to the filing region.
    fn status_changes(&self) -> broadcast::Receiver<PlatformCase>;

    /// Cases whose status changed at or after `since_ms` (Unix milliseconds).
    async fn updated_since(&self, since_ms: i64) -> Result<Vec<PlatformCase>, PlatformError>;

    /// `Err` with the reason while the platform cannot take cases (the node then
    /// reports itself not ready); an adapter that cannot tell answers `Ok`.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

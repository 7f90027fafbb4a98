//! The [`Platform`] side of the adapter: cases delivered to this region, their status,
//! and the status changes the platform's clerks make.

use std::sync::Arc;

use tokio::sync::Notify;
use tongban_proto::v1::{Application, CaseStatus, Stage};

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

/// One status change of a case handled here.
#[derive(Clone, Debug)]
pub struct CaseEvent {
    /// Where the feed resumes after this event.
    pub cursor: String,
    /// The case as this change left it.
    pub case: PlatformCase,
    /// The stage before the change; `None` for the case's first event.
    pub previous: Option<Stage>,
}

/// A page of the platform's feed of status changes.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    pub events: Vec<CaseEvent>,
    /// Where the next page starts.
    pub next_cursor: String,
    /// More events follow right away.
    pub more: bool,
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
    /// The platform answered something the contract does not allow (a bad body, a
    /// status code the node's table does not map): retrying will not help until the
    /// platform or the node's configuration is fixed.
    #[error("platform contract: {0}")]
    Contract(String),
    /// The platform reported a status code `[platform.status_codes]` does not map.
    #[error(transparent)]
    UnmappedStatus(#[from] super::contract::status::UnmappedStatus),
    /// The adapter cannot do this; `0` says where it is done instead.
    #[error("{0}")]
    Unsupported(&'static str),
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

    /// Status changes the platform made after `cursor` (`""`: from the beginning), in
    /// the order it made them, at most `limit`. The node keeps the page's `next_cursor`
    /// with its own state once it has recorded the page, so every change is returned
    /// to the filing region once more at worst, never missed.
    async fn events_after(&self, cursor: &str, limit: u32) -> Result<EventPage, PlatformError>;

    /// Woken when the platform made a change, so the node reads the feed at once; a
    /// platform that cannot tell returns `None` and is polled.
    fn changed(&self) -> Option<Arc<Notify>> {
        None
    }

    /// `Err` with the reason while the platform cannot take cases (the node then
    /// reports itself not ready); an adapter that cannot tell answers `Ok`.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

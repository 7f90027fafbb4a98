//! The adapter between a node and its province's government-service platform.
//!
//! The node stays the same whatever the platform: the embedded SQLite one
//! ([`embedded`]) by default, an HTTP adapter to a province's own API later. Two
//! traits, since a province often runs them as two systems:
//! - [`Platform`] takes over cases delivered to this region, reports their status, and
//!   announces the status changes its clerks make so the node can return them to the
//!   filing region;
//! - [`LicenseRegistry`] is the region's register of persons and of the electronic
//!   licenses (电子证照) it issued: what the node signs when another region asks.

pub mod embedded;

use std::collections::BTreeMap;

use tokio::sync::broadcast;
use tongban_proto::v1::{Application, AssuranceLevel, CaseStatus};

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

/// A person the region's register knows.
#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    /// 6-digit code of their registered (home) region.
    pub home_region: String,
    pub level: AssuranceLevel,
}

/// A license as the issuing region records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenseRecord {
    /// `<issuing region>-<serial>` (see `tongban_proto::recognition::license_issuer`).
    pub license_id: String,
    pub license_type: String,
    /// 6-digit code of the issuing region (the code in the id).
    pub issuing_region: String,
    /// The node's keyed hash of the holder's ID number.
    pub holder_hash: String,
    pub holder_name_masked: String,
    /// What the license states, by field name.
    pub fields: BTreeMap<String, String>,
    /// YYYY-MM-DD.
    pub valid_from: String,
    /// YYYY-MM-DD; `None` for no expiry.
    pub valid_until: Option<String>,
    pub issued_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// The region's register of persons and the licenses it issued.
#[tonic::async_trait]
pub trait LicenseRegistry: Send + Sync + 'static {
    /// A person by the node's keyed hash of their ID number.
    async fn person(&self, id_hash: &str) -> Result<Option<Person>, PlatformError>;

    /// A license by id.
    async fn license(&self, license_id: &str) -> Result<Option<LicenseRecord>, PlatformError>;

    /// Every license issued here to the holder with this keyed hash.
    async fn licenses_of(&self, holder_hash: &str) -> Result<Vec<LicenseRecord>, PlatformError>;

    /// Revokes a license issued here; `None` if there is no such license. Revoking
    /// twice keeps the first time.
    async fn revoke(
        &self,
        license_id: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<Option<LicenseRecord>, PlatformError>;
}

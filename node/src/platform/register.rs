//! The [`LicenseRegistry`] side of the adapter: the region's register of persons and
//! of the electronic licenses (电子证照) it issued.

use std::collections::BTreeMap;

use tongban_proto::v1::AssuranceLevel;

use super::adapter::PlatformError;

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
    /// `<issuing region>-<serial>` (see `tongban_proto::rules::credentials::license_issuer`).
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

//! The [`LicenseRegistry`] side of the adapter: the region's register of persons and
//! of the electronic licenses (电子证照) it issued.

use std::collections::BTreeMap;

use tongban_proto::v1::AssuranceLevel;

use super::adapter::PlatformError;
pub use super::contract::headers::Purpose;

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

/// Whom a register call is about: the ID number (for a platform that keys its register
/// by it, over TLS only) and the node's keyed hash of it (for one that keys by the hash,
/// like the embedded platform).
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub id_number: &'a str,
    pub id_hash: &'a str,
}

/// A revocation made at the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformRevocation {
    /// Where the feed resumes after this revocation.
    pub cursor: String,
    pub license_id: String,
    pub reason: String,
    pub revoked_ms: i64,
}

/// A page of the platform's feed of revocations.
#[derive(Clone, Debug, Default)]
pub struct RevocationPage {
    pub revocations: Vec<PlatformRevocation>,
    pub next_cursor: String,
    pub more: bool,
}

/// The region's register of persons and the licenses it issued. Every lookup states
/// its purpose of use (用证事由), which the platform may record.
#[tonic::async_trait]
pub trait LicenseRegistry: Send + Sync + 'static {
    /// A person by ID number.
    async fn person(
        &self,
        subject: Subject<'_>,
        purpose: &Purpose,
    ) -> Result<Option<Person>, PlatformError>;

    /// A license by id.
    async fn license(
        &self,
        license_id: &str,
        purpose: &Purpose,
    ) -> Result<Option<LicenseRecord>, PlatformError>;

    /// Every license issued here to the holder.
    async fn licenses_of(
        &self,
        holder: Subject<'_>,
        purpose: &Purpose,
    ) -> Result<Vec<LicenseRecord>, PlatformError>;

    /// Revokes a license issued here; `None` if there is no such license. Revoking
    /// twice keeps the first time. A registry where revocations are made at the
    /// platform itself answers [`PlatformError::Unsupported`].
    async fn revoke(
        &self,
        license_id: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<Option<LicenseRecord>, PlatformError>;

    /// Revocations made at the platform after `cursor` (`""`: from the beginning), for
    /// the node to publish to the gateway (a publication already queued is queued once).
    /// `None` from a registry that keeps no such log.
    async fn revocations_after(
        &self,
        _cursor: &str,
        _limit: u32,
    ) -> Result<Option<RevocationPage>, PlatformError> {
        Ok(None)
    }
}

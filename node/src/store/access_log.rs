//! The access log: every lookup other regions (or this one) made of a person's data
//! held here — identity assertions and licenses — with who asked, when, and for which
//! one-thing and case. The person can read their own entries through the portal.

/// What was looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Identity,
    License,
    HolderLicenses,
}

impl AccessKind {
    /// The kind named `name` (`identity`, `license`, `licenses`).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Identity, Self::License, Self::HolderLicenses]
            .into_iter()
            .find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::License => "license",
            Self::HolderLicenses => "licenses",
        }
    }
}

/// One lookup of a person's data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccessEntry {
    /// `identity`, `license` or `licenses`.
    pub kind: String,
    pub license_id: Option<String>,
    /// 6-digit code (or prefix) of the region that asked.
    pub requester_region: String,
    pub one_thing_id: String,
    pub case_number: String,
    pub at_ms: i64,
    /// The person's own request that their data be fetched, as the lookup carried it
    /// (absent on entries from before requests were carried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applicant_request: Option<AccessConsent>,
}

/// When and where the person asked for their data to be fetched.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccessConsent {
    /// `portal`, `window` or `notice` (see `tongban_proto::rules::consent`).
    pub channel: String,
    /// Unix milliseconds.
    pub requested_ms: i64,
}

impl From<tongban_proto::rules::consent::Consent> for AccessConsent {
    fn from(consent: tongban_proto::rules::consent::Consent) -> Self {
        Self {
            channel: consent.channel.to_owned(),
            requested_ms: consent.requested_ms,
        }
    }
}

/// A lookup this region answered, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccess {
    pub holder_hash: String,
    pub kind: AccessKind,
    pub license_id: Option<String>,
    pub requester_region: String,
    pub one_thing_id: String,
    pub case_number: String,
    pub consent: Option<AccessConsent>,
}

/// A lookup another party answered without asking this region (the gateway, from its
/// cache), reported here for the person's log. `report_id` is unique per lookup: a report
/// delivered twice is recorded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedAccess {
    pub report_id: String,
    pub holder_hash: String,
    pub kind: AccessKind,
    pub license_id: Option<String>,
    pub requester_region: String,
    pub one_thing_id: String,
    pub case_number: String,
    pub at_ms: i64,
    pub consent: Option<AccessConsent>,
}

/// The request a row keeps (both columns, or neither for rows from before).
pub(super) fn consent(channel: Option<String>, requested_ms: Option<i64>) -> Option<AccessConsent> {
    Some(AccessConsent {
        channel: channel?,
        requested_ms: requested_ms?,
    })
}

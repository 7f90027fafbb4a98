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
}

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
    pub(super) fn as_str(self) -> &'static str {
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

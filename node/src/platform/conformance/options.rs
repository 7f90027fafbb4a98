//! What a conformance run is told: where the platform is, how the node would reach it
//! (TLS, authentication, status-code table), and what the provincial team knows about
//! its register.

use std::time::Duration;

use crate::platform::{
    contract::status::StatusCodes,
    http::config::{PlatformAuth, PlatformTls},
};

/// A conformance run's settings. [`Options::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// The contract's base URL, `https://…` (the paths `/v1/…` are appended).
    pub url: String,
    /// TLS towards the platform, as the node's `[platform.tls]`.
    pub tls: PlatformTls,
    /// Authentication besides TLS, as the node's `[platform.auth]`.
    pub auth: PlatformAuth,
    /// The province's status codes as the node would map them.
    pub status_codes: StatusCodes,
    /// Longest wait for one answer: a call slower than this fails, one slower than
    /// half of it is reported as slow.
    pub timeout: Duration,
    /// The 6-digit region code the test cases are filed at (their origin).
    pub origin_region: String,
    /// The platform's own region code (the test cases' target); defaults to the
    /// issuing region of `expect_revoked`, else to `origin_region`.
    pub platform_region: Option<String>,
    /// A license id the team revoked before the run: it must appear in the revocation
    /// feed and read as revoked.
    pub expect_revoked: Option<String>,
    /// The ID number of a person in the platform's register: looked up to show that
    /// the register answers (personal data: masked in the report).
    pub known_person: Option<String>,
}

/// The default origin of the test cases (Beijing), a region every platform knows.
pub const DEFAULT_ORIGIN: &str = "110000";
/// The default timeout, as the node's `[platform] timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl Options {
    /// Settings for `url` with `tls`, every other one at its default: no
    /// authentication besides TLS, the reference platform's status codes, a 5 s
    /// timeout, test cases from region 110000.
    pub fn new(url: impl Into<String>, tls: PlatformTls) -> Self {
        Self {
            url: url.into(),
            tls,
            auth: PlatformAuth::None,
            status_codes: StatusCodes::reference(),
            timeout: DEFAULT_TIMEOUT,
            origin_region: DEFAULT_ORIGIN.to_owned(),
            platform_region: None,
            expect_revoked: None,
            known_person: None,
        }
    }

    /// The region the test cases are handed to.
    pub fn target_region(&self) -> String {
        if let Some(region) = &self.platform_region {
            return region.clone();
        }
        self.expect_revoked
            .as_deref()
            .and_then(|id| id.split_once('-'))
            .map(|(region, _)| region)
            .filter(|r| r.len() == 6 && r.bytes().all(|b| b.is_ascii_digit()))
            .map_or_else(|| self.origin_region.clone(), str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_region_comes_from_the_revoked_license_when_not_given() {
        let mut options = Options::new("https://p", PlatformTls::default());
        assert_eq!(options.target_region(), "110000");
        options.expect_revoked = Some("440000-000123".into());
        assert_eq!(options.target_region(), "440000");
        options.platform_region = Some("310000".into());
        assert_eq!(options.target_region(), "310000");
    }
}

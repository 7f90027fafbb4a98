//! gRPC metadata keys of the federation contract (see the header of `federation.proto`),
//! and how their values are read.
//!
//! Routing and authorization data travels in metadata so the gateway can route without
//! decoding application bodies.

use http::HeaderMap;

use crate::rules::region::RegionCode;

/// 6-digit code of the region that must handle a relayed call.
pub const TARGET_REGION: &str = "tongban-target-region";
/// The calling node's claim of the region it acts for; checked against its certificate.
pub const ORIGIN_REGION: &str = "tongban-origin-region";
/// Catalog id of the one-thing concerned.
pub const ONE_THING: &str = "tongban-one-thing";
/// Idempotency key of a state-changing call.
pub const IDEMPOTENCY_KEY: &str = "tongban-idempotency-key";
/// Region prefix from the caller's certificate, set by the gateway only.
pub const VERIFIED_ORIGIN: &str = "tongban-verified-origin";
/// Beside [`VERIFIED_ORIGIN`], set by the gateway only: the registered prefixes inside
/// the caller's region that belong to other members (a city that runs its own node),
/// comma-separated (`4403,4405`); absent when there are none. The caller owns a code
/// only if it lies in the verified origin and in none of these.
pub const VERIFIED_CARVE_OUTS: &str = "tongban-verified-carve-outs";
/// What separates the prefixes in [`VERIFIED_CARVE_OUTS`].
pub const CARVE_OUT_SEPARATOR: char = ',';
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// On deliveries and status pushes: the 2-digit province of the applicant's home region
/// (from their ID number), so the gateway can count how each home region's applicants
/// fare (无差别受理 as a number) without decoding the application. A province, never the
/// person.
pub const APPLICANT_HOME: &str = "tongban-applicant-home";
/// On status pushes: the stage pushed (`in_review`, `approved`, `rejected`, ...).
pub const CASE_STAGE: &str = "tongban-case-stage";

/// On deliveries, status pushes and revocations: the sending region's signature over
/// the call's message ([`crate::rules::message_signature`]), set by the sender and
/// relayed untouched; the receiver verifies it with the sender's registered key.
pub const SIGNATURE: &str = "tongban-signature";

/// Longest idempotency key accepted (it is stored and audited).
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The keys above as header names, made at compile time: a lookup by one skips parsing
/// and lower-casing the name, which was most of a lookup by `&str` (the gateway makes
/// about a dozen per relayed call).
pub mod names {
    use http::HeaderName;

    pub const TARGET_REGION: HeaderName = HeaderName::from_static(super::TARGET_REGION);
    pub const ORIGIN_REGION: HeaderName = HeaderName::from_static(super::ORIGIN_REGION);
    pub const ONE_THING: HeaderName = HeaderName::from_static(super::ONE_THING);
    pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(super::IDEMPOTENCY_KEY);
    pub const VERIFIED_ORIGIN: HeaderName = HeaderName::from_static(super::VERIFIED_ORIGIN);
    pub const VERIFIED_CARVE_OUTS: HeaderName = HeaderName::from_static(super::VERIFIED_CARVE_OUTS);
    pub const TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT);
    pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
    pub const APPLICANT_HOME: HeaderName = HeaderName::from_static(super::APPLICANT_HOME);
    pub const CASE_STAGE: HeaderName = HeaderName::from_static(super::CASE_STAGE);
    pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
    pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
}

/// A metadata value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("metadata `{key}`: {problem}")]
pub struct MetadataError {
    pub key: &'static str,
    pub problem: &'static str,
}

/// The region code under `name` (`key`, as errors name it), if present. Malformed values
/// are an error that never echoes the value (a caller may have put anything there).
pub fn region_code(
    headers: &HeaderMap,
    name: &http::HeaderName,
    key: &'static str,
) -> Result<Option<RegionCode>, MetadataError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|s| RegionCode::parse(s).ok())
        .map(Some)
        .ok_or(MetadataError {
            key,
            problem: "must be a 6-digit GB/T 2260 code",
        })
}

/// The idempotency key, checked: 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, MetadataError> {
    let Some(value) = headers.get(names::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .map(Some)
        .ok_or(MetadataError {
            key: IDEMPOTENCY_KEY,
            problem: "must be 1 to 128 visible ASCII characters",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn region_codes_are_read_or_refused_without_echo() {
        let h = headers(&[(TARGET_REGION, "440305"), (ORIGIN_REGION, "4403x5")]);
        assert_eq!(
            region_code(&h, &names::TARGET_REGION, TARGET_REGION)
                .unwrap()
                .map(|c| c.to_string()),
            Some("440305".into())
        );
        let err = region_code(&h, &names::ORIGIN_REGION, ORIGIN_REGION).unwrap_err();
        assert_eq!(err.key, ORIGIN_REGION);
        assert!(!err.to_string().contains("4403x5"), "{err}");
        assert_eq!(region_code(&h, &names::ONE_THING, ONE_THING), Ok(None));
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert_eq!(idempotency_key(&headers(&[])), Ok(None));
        assert_eq!(
            idempotency_key(&headers(&[(IDEMPOTENCY_KEY, "deliver:1")])),
            Ok(Some("deliver:1"))
        );
        assert!(idempotency_key(&headers(&[(IDEMPOTENCY_KEY, "")])).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            IDEMPOTENCY_KEY,
            http::HeaderValue::from_str(&"k".repeat(129)).unwrap(),
        );
        assert!(idempotency_key(&h).is_err());
    }
}

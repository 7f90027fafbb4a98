//! What every call of the contract carries, and the HMAC request signature.
//!
//! Every call: `Idempotency-Key` (the case number for a take-over; one key per logical
//! call otherwise, repeated on its retries), `Tongban-Case-Number` when the call
//! concerns a case, and W3C trace context (`traceparent`, `tracestate`). Every register
//! call also states its **purpose of use** (用证事由): `Tongban-Purpose-One-Thing` and
//! `Tongban-Purpose-Case`, which the platform may record; a register call without them
//! is refused (`400`, `urn:tongban:platform:purpose-required`).
//!
//! Authentication, as provinces do it, is one of: mutual TLS; `Authorization: Bearer`;
//! or an HMAC-SHA256 signature over the request ([`canonical_request`]) in
//! `X-Tongban-App-Key`, `X-Tongban-Timestamp` (Unix seconds), `X-Tongban-Nonce` and
//! `X-Tongban-Signature` (lower-case hex). A server refuses a timestamp more than
//! [`SIGNATURE_SKEW_SECS`] away from its clock and a nonce it saw within that window.

use ring::hmac;
use tongban_proto::rules::digest;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const CASE_NUMBER: &str = "tongban-case-number";
pub const PURPOSE_ONE_THING: &str = "tongban-purpose-one-thing";
pub const PURPOSE_CASE: &str = "tongban-purpose-case";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

pub const APP_KEY: &str = "x-tongban-app-key";
pub const TIMESTAMP: &str = "x-tongban-timestamp";
pub const NONCE: &str = "x-tongban-nonce";
pub const SIGNATURE: &str = "x-tongban-signature";

/// How far a signed request's timestamp may be from the server's clock.
pub const SIGNATURE_SKEW_SECS: i64 = 300;

/// Why a register call is made (用证事由): the one-thing and the case it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purpose {
    pub one_thing_id: String,
    pub case_number: String,
}

impl Purpose {
    pub fn new(one_thing_id: impl Into<String>, case_number: impl Into<String>) -> Self {
        Self {
            one_thing_id: one_thing_id.into(),
            case_number: case_number.into(),
        }
    }

    /// A purpose names at least the one-thing.
    pub fn is_stated(&self) -> bool {
        !self.one_thing_id.trim().is_empty()
    }
}

/// The string a request's signature covers, one item a line: method, path with query,
/// timestamp, nonce, the SHA-256 of the body (hex), the app key.
pub fn canonical_request(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    app_key: &str,
) -> String {
    format!(
        "{}\n{path_and_query}\n{timestamp}\n{nonce}\n{}\n{app_key}",
        method.to_ascii_uppercase(),
        digest::sha256_hex(body)
    )
}

/// The signature of a canonical request, lower-case hex.
pub fn sign(secret: &[u8], canonical: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    digest::hex(hmac::sign(&key, canonical.as_bytes()).as_ref())
}

/// Whether `signature` (hex) is the signature of `canonical`, compared in constant time.
pub fn verify(secret: &[u8], canonical: &str, signature: &str) -> bool {
    let Some(tag) = digest::unhex(signature) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, canonical.as_bytes(), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_every_part_of_the_request() {
        let parts = ["GET", "/v1/cases/x", "1764750000", "n1", "k"];
        let canonical = canonical_request(parts[0], parts[1], parts[2], parts[3], b"{}", parts[4]);
        let signature = sign(b"secret", &canonical);
        assert!(verify(b"secret", &canonical, &signature));
        assert!(!verify(b"other", &canonical, &signature));
        assert!(!verify(b"secret", &canonical, "zz"));
        let changed_body =
            canonical_request(parts[0], parts[1], parts[2], parts[3], b"{ }", parts[4]);
        assert!(!verify(b"secret", &changed_body, &signature));
        let changed_path =
            canonical_request(parts[0], "/v1/cases/y", parts[2], parts[3], b"{}", parts[4]);
        assert!(!verify(b"secret", &changed_path, &signature));
    }
}

//! What both sides of mutual recognition compute identically: license ids, the bytes
//! that are signed, Ed25519 signatures over them, and the salted subject hash that
//! stands for a person in what is signed.
//!
//! A signed object travels as the exact bytes that were signed (`SignedObject.body`),
//! so no party ever re-encodes before verifying: the canonical form is "these bytes",
//! and the signature covers a domain tag, a zero byte and the body, so an identity
//! assertion can never be passed off as a license or the other way round.

use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
    signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};

use crate::{
    rules::region::{RegionCode, RegionError},
    v1::SignedObject,
};

/// What a signed object is, for its domain tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedKind {
    IdentityAssertion,
    License,
}

impl SignedKind {
    /// The domain tag signed before the body.
    pub fn domain(self) -> &'static str {
        match self {
            Self::IdentityAssertion => "tongban.v1.identity-assertion",
            Self::License => "tongban.v1.license",
        }
    }
}

/// The exact bytes an issuer signs: domain tag, zero byte, body.
pub fn signing_input(kind: SignedKind, body: &[u8]) -> Vec<u8> {
    let domain = kind.domain().as_bytes();
    let mut input = Vec::with_capacity(domain.len() + 1 + body.len());
    input.extend_from_slice(domain);
    input.push(0);
    input.extend_from_slice(body);
    input
}

/// An issuer's signing key.
pub struct SigningKey {
    pub key_id: String,
    pair: Ed25519KeyPair,
}

/// A signing key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("Ed25519 key {key_id:?}: {reason}")]
pub struct KeyError {
    pub key_id: String,
    pub reason: String,
}

impl SigningKey {
    /// A key from its PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8(key_id: impl Into<String>, der: &[u8]) -> Result<Self, KeyError> {
        let key_id = key_id.into();
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| KeyError {
            key_id: key_id.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self { key_id, pair })
    }

    /// A fresh key as PKCS#8 DER (for development PKI and tests).
    pub fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|e| KeyError {
                key_id: String::new(),
                reason: e.to_string(),
            })
    }

    /// The raw 32-byte public key, as the registry publishes it.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Its Ed25519 signature over `input`, for signed inputs built elsewhere
    /// ([`crate::rules::message_signature`]).
    pub fn sign_raw(&self, input: &[u8]) -> Vec<u8> {
        self.pair.sign(input).as_ref().to_vec()
    }

    /// Signs `body` as a `kind` object.
    pub fn sign(&self, kind: SignedKind, body: Vec<u8>) -> SignedObject {
        let signature = self.pair.sign(&signing_input(kind, &body));
        SignedObject {
            body: body.into(),
            key_id: self.key_id.clone(),
            signature: bytes::Bytes::copy_from_slice(signature.as_ref()),
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Whether `signature` is `public_key`'s Ed25519 signature over a `kind` `body`.
pub fn verify(public_key: &[u8; 32], kind: SignedKind, body: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&signing_input(kind, body), signature)
        .is_ok()
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => prost_types::Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        },
        Err(_) => prost_types::Timestamp::default(),
    }
}

/// The time of a protobuf timestamp; `None` if absent or out of range.
pub fn system_time(t: &Option<prost_types::Timestamp>) -> Option<std::time::SystemTime> {
    let t = t.as_ref()?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

/// Fresh random salt for a subject hash.
pub fn new_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // The system generator failing leaves a zero salt: hashes stay correct, only
    // linkable; nothing depends on the salt's secrecy.
    let _ = SystemRandom::new().fill(&mut salt);
    salt
}

/// HMAC-SHA256 of a normalized ID number under `salt`: how signed objects name a
/// person without carrying the number.
pub fn subject_hash(salt: &[u8], id_number: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    hmac::sign(&key, id_number.trim().to_ascii_uppercase().as_bytes())
        .as_ref()
        .to_vec()
}

/// Whether `subject` (under `salt`) names `id_number`; constant time.
pub fn subject_matches(subject: &[u8], salt: &[u8], id_number: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    hmac::verify(
        &key,
        id_number.trim().to_ascii_uppercase().as_bytes(),
        subject,
    )
    .is_ok()
}

/// Why a license id is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LicenseIdError {
    #[error("license id must be the issuing region's 6-digit code, '-', then a serial")]
    Shape,
    #[error("license id serial must be 1 to 40 of 0-9, A-Z, a-z and '-'")]
    Serial,
    #[error("license id region: {0}")]
    Region(#[from] RegionError),
    /// A national id (GB/T 36904) with a malformed segment, named.
    #[error(transparent)]
    National(#[from] crate::rules::license_id::LicenseIdProblem),
}

/// The issuing region named by a license id: the national format (GB/T 36904,
/// `1.2.156.3005.2.…`, by its issuer code) or the legacy short form
/// (`440305-HR-000123`).
pub fn license_issuer(license_id: &str) -> Result<RegionCode, LicenseIdError> {
    if crate::rules::license_id::is_national(license_id) {
        return Ok(crate::rules::license_id::parse(license_id)?.issuer_region);
    }
    let (region, serial) = license_id
        .split_once('-')
        .filter(|(r, _)| r.len() == 6)
        .ok_or(LicenseIdError::Shape)?;
    if serial.is_empty()
        || serial.len() > 40
        || !serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(LicenseIdError::Serial);
    }
    Ok(RegionCode::parse(region)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_ids_route_to_their_issuers_region_and_the_short_form_stays() {
        let hunan = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U";
        let jilin = "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F";
        assert_eq!(license_issuer(hunan).unwrap().as_str(), "430000");
        assert_eq!(license_issuer(jilin).unwrap().as_str(), "220000");
        assert_eq!(
            license_issuer("440305-HR-000123").unwrap().as_str(),
            "440305"
        );
        let wrong = license_issuer(&hunan.replace(".U", ".A")).unwrap_err();
        assert!(wrong.to_string().contains("segment `check`"), "{wrong}");
    }

    fn key(id: &str) -> SigningKey {
        SigningKey::from_pkcs8(id, &SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn signatures_verify_only_for_their_key_body_and_kind() {
        let k = key("44-a");
        let signed = k.sign(SignedKind::License, b"body".to_vec());
        let pk = k.public_key();
        assert_eq!(signed.key_id, "44-a");
        assert!(verify(
            &pk,
            SignedKind::License,
            &signed.body,
            &signed.signature
        ));
        // Another kind, another body, another key: refused.
        assert!(!verify(
            &pk,
            SignedKind::IdentityAssertion,
            &signed.body,
            &signed.signature
        ));
        assert!(!verify(
            &pk,
            SignedKind::License,
            b"bodz",
            &signed.signature
        ));
        assert!(!verify(
            &key("x").public_key(),
            SignedKind::License,
            &signed.body,
            &signed.signature
        ));
        let mut tampered = signed.signature.to_vec();
        tampered[0] ^= 1;
        assert!(!verify(&pk, SignedKind::License, &signed.body, &tampered));
    }

    #[test]
    fn the_signed_bytes_are_tag_zero_body() {
        assert_eq!(
            signing_input(SignedKind::IdentityAssertion, b"xy"),
            b"tongban.v1.identity-assertion\0xy"
        );
    }

    #[test]
    fn subjects_match_only_their_id_number() {
        let salt = new_salt();
        let h = subject_hash(&salt, "11010519491231002x");
        assert!(subject_matches(&h, &salt, "11010519491231002X"));
        assert!(!subject_matches(&h, &salt, "110105194912310021"));
        assert!(!subject_matches(&h, &new_salt(), "11010519491231002X"));
        assert_eq!(h.len(), 32);
    }

    #[test]
    fn license_ids_name_their_issuer() {
        assert_eq!(
            license_issuer("440305-HR-000123").unwrap().as_str(),
            "440305"
        );
        for bad in [
            "",
            "44-HR-1",
            "440305",
            "440305-",
            "440305-HR 1",
            "44030x-1",
        ] {
            assert!(license_issuer(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            license_issuer(&format!("110000-{}", "9".repeat(41))),
            Err(LicenseIdError::Serial)
        );
    }
}

//! The token a receipt carries for reading its case's status: an HMAC of the case number
//! under a key derived from the node's secret. Case numbers are sequential, so a number
//! alone would let anyone walk every case; the token is unguessable without the secret,
//! yet needs no storage, and a filing's retry gets the same token back with its receipt.

use ring::hmac;

/// The header a status read presents the token in (never the URL: proxies log URLs).
pub const HEADER: &str = "tongban-receipt-token";

/// Derives receipt tokens from the node's keyed-hash secret (a key of its own, so a token
/// never reveals a keyed hash of an ID number).
#[derive(Clone)]
pub struct ReceiptTokens(hmac::Key);

impl ReceiptTokens {
    pub fn new(secret: &[u8]) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let key = hmac::sign(&derive, b"tongban receipt token v1");
        Self(hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()))
    }

    /// The token of `case_number` (64 hex digits).
    pub fn token(&self, case_number: &str) -> String {
        tongban_proto::rules::digest::hex(hmac::sign(&self.0, case_number.as_bytes()).as_ref())
    }

    /// Whether `presented` is `case_number`'s token (compared in constant time).
    pub fn verify(&self, case_number: &str, presented: &str) -> bool {
        let Some(tag) = unhex(presented) else {
            return false;
        };
        hmac::verify(&self.0, case_number.as_bytes(), &tag).is_ok()
    }
}

/// A 32-byte HMAC-SHA256 tag from its 64 hex digits (also the portal's proof's).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    tongban_proto::rules::digest::unhex(text).filter(|tag| tag.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_its_case_only_and_is_stable() {
        let tokens = ReceiptTokens::new(b"secret");
        let token = tokens.token("310000-20261203-00000001");
        assert_eq!(token.len(), 64);
        assert_eq!(token, tokens.token("310000-20261203-00000001"));
        assert!(tokens.verify("310000-20261203-00000001", &token));
        assert!(!tokens.verify("310000-20261203-00000002", &token));
        assert!(!ReceiptTokens::new(b"other").verify("310000-20261203-00000001", &token));
        let (longer, foreign) = (format!("{token}0"), "é".repeat(32));
        for bad in ["", "zz", &token[..63], longer.as_str(), foreign.as_str()] {
            assert!(!tokens.verify("310000-20261203-00000001", bad), "{bad:?}");
        }
    }
}

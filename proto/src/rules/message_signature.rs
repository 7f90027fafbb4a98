//! What a region signs when it speaks to another (applications, status pushes,
//! revocations), so a gateway that relays the call cannot speak for it: the canonical
//! bytes that are signed and the header that carries the signature.
//!
//! The signature rides in the `tongban-signature` metadata of the call and covers the
//! call's exact message bytes as they travel in the gRPC frame, so the gateway relays
//! them untouched and the receiver verifies what it received, never a re-encoding. The
//! signed input binds the bytes to the method, the signer, the target region, the
//! idempotency key and the moment of signing: a signed push cannot be replayed as a
//! delivery, to another region, under another key, or a day later.
//!
//! Header value: `v1 region=<prefix> key=<key id> t=<unix seconds> sig=<128 hex>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::signature::{self, UnparsedPublicKey};

use crate::rules::{
    credentials::SigningKey,
    digest::{hex, unhex},
    region::RegionPrefix,
};

/// The domain tag signed first: a message signature can never pass for an identity
/// assertion's or a license's, nor the other way round.
pub const DOMAIN: &str = "tongban.v1.federation-message";

/// What a signature is over, beside the message bytes.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    /// The method's name (`DeliverApplication`), not its path: the gateway's and the
    /// node's services name the same call differently.
    pub method: &'a str,
    /// The region the call is addressed to (empty for calls the gateway itself
    /// answers, revocations).
    pub target_region: &'a str,
    /// The call's idempotency key (empty if it has none).
    pub idempotency_key: &'a str,
    /// The exact protobuf bytes of the message, as framed on the wire.
    pub message: &'a [u8],
}

impl<'a> Signed<'a> {
    /// What a `method` call with these `headers` (its target region and idempotency
    /// key, empty where absent) and `message` bytes is signed over.
    pub fn of_call(method: &'a str, headers: &'a http::HeaderMap, message: &'a [u8]) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        Self {
            method,
            target_region: text(crate::contract::metadata::TARGET_REGION),
            idempotency_key: text(crate::contract::metadata::IDEMPOTENCY_KEY),
            message,
        }
    }
}

/// A message signature as the header carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSignature {
    /// The region that signed.
    pub region: RegionPrefix,
    /// The key it signed with, as registered for that region.
    pub key_id: String,
    /// When it signed, in whole seconds since the Unix epoch.
    pub signed_at: u64,
    pub signature: Vec<u8>,
}

/// A header that cannot be read; never echoes what was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tongban-signature: {0}")]
pub struct HeaderError(&'static str);

/// How far ahead of the receiver's clock a signature may be dated.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// How old a signature may be when it arrives, unless the receiver configures it.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Longest key id accepted (the registry's bound).
const MAX_KEY_ID: usize = 64;

impl MessageSignature {
    /// Signs `signed` for `region` with `key`, at `now`.
    pub fn sign(
        key: &SigningKey,
        region: RegionPrefix,
        signed: &Signed<'_>,
        now: SystemTime,
    ) -> Self {
        let signed_at = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out = Self {
            region,
            key_id: key.key_id.clone(),
            signed_at,
            signature: Vec::new(),
        };
        out.signature = key.sign_raw(&out.input(signed));
        out
    }

    /// Whether the signature is `public_key`'s over `signed`.
    pub fn verifies(&self, public_key: &[u8; 32], signed: &Signed<'_>) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, public_key)
            .verify(&self.input(signed), &self.signature)
            .is_ok()
    }

    /// When it was signed.
    pub fn signed_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.signed_at)
    }

    /// Whether it was signed at most `max_age` before `now`, and not more than
    /// [`CLOCK_SKEW`] after it: the sender signs each attempt anew, so an older
    /// signature is a recorded call played again.
    pub fn is_fresh(&self, now: SystemTime, max_age: Duration) -> bool {
        let signed_at = self.signed_at();
        signed_at + max_age >= now && signed_at <= now + CLOCK_SKEW
    }

    /// The exact bytes signed: the domain tag, then each field and a zero byte (none
    /// holds one: region, key id and metadata values are visible ASCII), the message
    /// last.
    fn input(&self, signed: &Signed<'_>) -> Vec<u8> {
        let signed_at = self.signed_at.to_string();
        let fields = [
            DOMAIN,
            signed.method,
            self.region.as_str(),
            &self.key_id,
            signed.target_region,
            signed.idempotency_key,
            &signed_at,
        ];
        let mut input = Vec::with_capacity(
            fields.iter().map(|f| f.len() + 1).sum::<usize>() + signed.message.len(),
        );
        for field in fields {
            input.extend_from_slice(field.as_bytes());
            input.push(0);
        }
        input.extend_from_slice(signed.message);
        input
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "v1 region={} key={} t={} sig={}",
            self.region,
            self.key_id,
            self.signed_at,
            hex(&self.signature)
        )
    }

    /// Reads a header value: the four fields in order, nothing else.
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut parts = value.split(' ');
        if parts.next() != Some("v1") {
            return Err(HeaderError("must start with the version v1"));
        }
        let mut field = |name: &str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .ok_or(HeaderError("must be `v1 region=.. key=.. t=.. sig=..`"))
        };
        let region = RegionPrefix::parse(field("region")?)
            .map_err(|_| HeaderError("region must be a 2, 4 or 6-digit GB/T 2260 prefix"))?;
        let key_id = field("key")?;
        if key_id.is_empty()
            || key_id.len() > MAX_KEY_ID
            || !key_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(HeaderError("key must be 1 to 64 visible ASCII characters"));
        }
        let signed_at = field("t")?
            .parse()
            .map_err(|_| HeaderError("t must be whole seconds since the Unix epoch"))?;
        let signature = unhex(field("sig")?)
            .filter(|s| s.len() == 64)
            .ok_or(HeaderError(
                "sig must be 128 hex digits (an Ed25519 signature)",
            ))?;
        if parts.next().is_some() {
            return Err(HeaderError("must be `v1 region=.. key=.. t=.. sig=..`"));
        }
        Ok(Self {
            region,
            key_id: key_id.to_owned(),
            signed_at,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> SigningKey {
        SigningKey::from_pkcs8(id, &SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn signed(message: &[u8]) -> Signed<'_> {
        Signed {
            method: "PushStatus",
            target_region: "310101",
            idempotency_key: "push:31-1:2",
            message,
        }
    }

    #[test]
    fn a_signature_verifies_over_exactly_what_was_signed() {
        let key = key("44-k1");
        let region = RegionPrefix::parse("44").unwrap();
        let sig = MessageSignature::sign(&key, region, &signed(b"status"), SystemTime::now());
        let read = MessageSignature::parse(&sig.to_header()).unwrap();
        assert_eq!(read, sig);
        assert!(read.verifies(&key.public_key(), &signed(b"status")));
        // Each bound field changed: refused.
        assert!(!read.verifies(&key.public_key(), &signed(b"statuz")));
        for changed in [
            Signed {
                method: "DeliverApplication",
                ..signed(b"status")
            },
            Signed {
                target_region: "110101",
                ..signed(b"status")
            },
            Signed {
                idempotency_key: "push:31-1:3",
                ..signed(b"status")
            },
        ] {
            assert!(!read.verifies(&key.public_key(), &changed));
        }
        let mut other_time = read.clone();
        other_time.signed_at += 1;
        assert!(!other_time.verifies(&key.public_key(), &signed(b"status")));
        let mut other_region = read.clone();
        other_region.region = RegionPrefix::parse("4403").unwrap();
        assert!(!other_region.verifies(&key.public_key(), &signed(b"status")));
        assert!(!read.verifies(&self::key("44-k1").public_key(), &signed(b"status")));
        let now = read.signed_at();
        assert!(read.is_fresh(now + DEFAULT_MAX_AGE, DEFAULT_MAX_AGE));
        assert!(!read.is_fresh(
            now + DEFAULT_MAX_AGE + Duration::from_secs(1),
            DEFAULT_MAX_AGE
        ));
        assert!(read.is_fresh(now - CLOCK_SKEW, DEFAULT_MAX_AGE));
        assert!(!read.is_fresh(now - CLOCK_SKEW - Duration::from_secs(1), DEFAULT_MAX_AGE));
    }

    #[test]
    fn bad_headers_are_refused_without_echo() {
        let good = MessageSignature::sign(
            &key("44-k1"),
            RegionPrefix::parse("44").unwrap(),
            &signed(b""),
            SystemTime::now(),
        )
        .to_header();
        let sig = good.rsplit_once("sig=").unwrap().1.to_owned();
        for bad in [
            String::new(),
            "v2 region=44 key=k t=1 sig=00".into(),
            format!("v1 region=4x key=k t=1 sig={sig}"),
            format!("v1 region=44 key= t=1 sig={sig}"),
            format!("v1 region=44 key=k t=-1 sig={sig}"),
            format!("v1 region=44 key=k t=1 sig={}", &sig[2..]),
            format!("v1 key=k region=44 t=1 sig={sig}"),
            format!("v1 region=44 key=k t=1 sig={sig} extra=1"),
            format!("v1 region=44 key={} t=1 sig={sig}", "k".repeat(65)),
        ] {
            let err = MessageSignature::parse(&bad).unwrap_err();
            assert!(!err.to_string().contains(&sig), "{bad}: {err}");
        }
    }
}

//! Signed checkpoints of an audit trail: every so often the trail's writer appends a
//! record that states how many records precede it and the hash of the last one, signed
//! with the process's own certificate key (the one it proves its identity with in TLS).
//!
//! The hash chain alone shows an edit, a deletion or a reordering, but not records cut
//! off the end, nor a trail rewritten whole by someone who recomputed every hash. A
//! checkpoint shows both: no one without the key can sign a head, and a head the
//! process signed (and logged, see the writer) must still be in the file. The
//! checkpoint carries the signer's certificate, so a trail verifies on its own; with the
//! federation CA at hand, `verify` also proves that certificate was the federation's.

use std::{path::Path, sync::Arc};

use rustls::{
    SignatureScheme,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    sign::Signer,
};
use serde::{Deserialize, Serialize};
use tongban_proto::rules::digest::{hex, unhex};

use crate::trust::identity::PeerIdentity;

/// What a checkpoint record holds (under the `checkpoint` key of its JSON).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// How many records precede the checkpoint (it is record `covers + 1`).
    pub covers: u64,
    /// The hash of record `covers` (empty when it covers none).
    pub head: String,
    /// When it was signed, RFC 3339 (UTC).
    pub at: String,
    /// The signer's identity (URI SAN of its certificate).
    pub signer: String,
    /// The TLS signature scheme, e.g. `ECDSA_NISTP256_SHA256`.
    pub scheme: String,
    /// The signer's certificate, DER in hex.
    pub certificate: String,
    /// The signature over [`Checkpoint::signed_bytes`], hex.
    pub signature: String,
}

/// A checkpoint record's JSON: `{"checkpoint": {...}}`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Record {
    checkpoint: Checkpoint,
}

const DOMAIN: &[u8] = b"tongban audit checkpoint v1\n";

fn signed_bytes(covers: u64, head: &str, at: &str, signer: &str) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    for part in [covers.to_string().as_str(), head, at, signer] {
        out.extend_from_slice(part.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Signs checkpoints with a process's certificate key.
pub struct CheckpointSigner {
    signer: Box<dyn Signer>,
    certificate: CertificateDer<'static>,
    identity: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Schemes a checkpoint may be signed with, in order of preference.
const SCHEMES: [SignatureScheme; 5] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

fn verification_algorithm(
    scheme: &str,
) -> Option<&'static dyn rustls::pki_types::SignatureVerificationAlgorithm> {
    use webpki::ring as algs;
    Some(match scheme {
        "ED25519" => algs::ED25519,
        "ECDSA_NISTP256_SHA256" => algs::ECDSA_P256_SHA256,
        "ECDSA_NISTP384_SHA384" => algs::ECDSA_P384_SHA384,
        "RSA_PSS_SHA256" => algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        "RSA_PKCS1_SHA256" => algs::RSA_PKCS1_2048_8192_SHA256,
        _ => return None,
    })
}

impl CheckpointSigner {
    /// The signer of a process whose certificate (leaf first) and key are in these
    /// PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let cert_pem = read(cert)?;
        let certificate = CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .ok_or_else(|| format!("{}: no CERTIFICATE block", cert.display()))?
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(|e| format!("{}: {e}", key.display()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("certificate key: {e}"))?;
        let signer = signing
            .choose_scheme(&SCHEMES)
            .ok_or("the certificate key suits no checkpoint signature scheme")?;
        let identity = PeerIdentity::from_certificate(certificate.as_ref())
            .map_err(|e| e.to_string())?
            .uri();
        Ok(Self {
            signer,
            certificate,
            identity,
        })
    }

    /// The JSON of a checkpoint covering `covers` records whose last has hash `head`.
    pub fn sign(&self, covers: u64, head: &str) -> Result<String, String> {
        let at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .ok_or("formatting the time")?;
        let signature = self
            .signer
            .sign(&signed_bytes(covers, head, &at, &self.identity))
            .map_err(|e| format!("signing a checkpoint: {e}"))?;
        let record = Record {
            checkpoint: Checkpoint {
                covers,
                head: head.to_owned(),
                at,
                signer: self.identity.clone(),
                scheme: format!("{:?}", self.signer.scheme()),
                certificate: hex(self.certificate.as_ref()),
                signature: hex(&signature),
            },
        };
        serde_json::to_string(&record).map_err(|e| e.to_string())
    }
}

/// Trust anchors (the federation CA) that checkpoint signers must chain to.
pub type Anchors = Arc<Vec<rustls::pki_types::TrustAnchor<'static>>>;

/// Reads trust anchors from a PEM bundle.
pub fn anchors(ca_pem: &Path) -> Result<Anchors, String> {
    let pem = std::fs::read(ca_pem).map_err(|e| format!("{}: {e}", ca_pem.display()))?;
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_pem.display()))?;
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| format!("{}: {e}", ca_pem.display()))?
            .to_owned();
        out.push(anchor);
    }
    if out.is_empty() {
        return Err(format!("{}: no CERTIFICATE block", ca_pem.display()));
    }
    Ok(Arc::new(out))
}

/// Whether `json` is a checkpoint record (the writer never writes another record
/// with a top-level `checkpoint` key).
pub fn parse(json: &str) -> Option<Result<Checkpoint, String>> {
    if !json.starts_with("{\"checkpoint\":") {
        return None;
    }
    Some(
        serde_json::from_str::<Record>(json)
            .map(|r| r.checkpoint)
            .map_err(|e| format!("not a well-formed checkpoint: {e}")),
    )
}

impl Checkpoint {
    /// Checks the checkpoint found as record `covers + 1` after records whose last has
    /// hash `head`: it states them, its signature holds under its certificate, and (if
    /// `anchors` are given) that certificate was issued by the federation CA and valid
    /// when it signed.
    pub fn check(&self, covers: u64, head: &str, anchors: Option<&Anchors>) -> Result<(), String> {
        if self.covers != covers || self.head != head {
            return Err(format!(
                "states {} records ending in {}, the trail has {covers} ending in {}",
                self.covers,
                short(&self.head),
                short(head)
            ));
        }
        let der = unhex(&self.certificate).ok_or("its certificate is not hex")?;
        let certificate = CertificateDer::from(der);
        let identity = PeerIdentity::from_certificate(certificate.as_ref())
            .map_err(|e| format!("its certificate: {e}"))?;
        if identity.uri() != self.signer {
            return Err(format!(
                "signed as {} with the certificate of {identity}",
                self.signer
            ));
        }
        let end_entity = webpki::EndEntityCert::try_from(&certificate)
            .map_err(|e| format!("its certificate: {e}"))?;
        let algorithm = verification_algorithm(&self.scheme)
            .ok_or_else(|| format!("unknown signature scheme {:?}", self.scheme))?;
        let signature = unhex(&self.signature).ok_or("its signature is not hex")?;
        end_entity
            .verify_signature(
                algorithm,
                &signed_bytes(self.covers, &self.head, &self.at, &self.signer),
                &signature,
            )
            .map_err(|_| "its signature does not verify".to_owned())?;
        if let Some(anchors) = anchors {
            let at = time::OffsetDateTime::parse(
                &self.at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| "its time is not RFC 3339")?;
            let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                at.unix_timestamp().max(0).unsigned_abs(),
            ));
            end_entity
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    anchors,
                    &[],
                    at,
                    webpki::KeyUsage::client_auth(),
                    None,
                    None,
                )
                .map_err(|e| format!("its signer is not the federation's: {e}"))?;
        }
        Ok(())
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

//! Development PKI: a federation CA and leaf certificates for the gateway and for nodes.
//!
//! Production federations use an external CA; this is for local federations, demos and
//! tests. Leaves carry the identity's URI SAN and DNS SAN (see [`crate::trust::identity`]) and
//! both server and client EKUs, because every party is server and client.

use std::{fs, path::Path, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::trust::{identity::PeerIdentity, operator::OperatorName};

/// Errors while generating or loading development certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A federation certificate authority that can issue leaves.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl DevCa {
    /// Creates a new CA (ECDSA P-256) valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Tongban federation (development)");
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA written earlier by [`DevCa::write`].
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf for `identity`, valid from an hour ago for `validity`.
    pub fn issue(
        &self,
        identity: &PeerIdentity,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        self.issue_named(identity, identity, validity)
    }

    /// Issues a leaf whose DNS name is `dns_of`'s and whose URI SAN names `identity`:
    /// a certificate a careless CA operator might issue, for tests that identities are
    /// checked by URI SAN and not by DNS name alone.
    pub fn issue_named(
        &self,
        dns_of: &PeerIdentity,
        identity: &PeerIdentity,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::new(vec![dns_of.dns_name()])?;
        params
            .subject_alt_names
            .push(SanType::URI(identity.uri().try_into()?));
        self.sign_leaf(params, &identity.uri(), validity)
    }

    /// Issues an operator's client certificate: URI SAN `spiffe://tongban/operator/<name>`
    /// and no DNS name, client use only (see [`crate::trust::operator`]).
    pub fn issue_operator(
        &self,
        name: &OperatorName,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .subject_alt_names
            .push(SanType::URI(name.uri().try_into()?));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, &name.uri(), validity)
    }

    /// Signs a leaf named `common_name`, valid from an hour ago for `validity`, for both
    /// server and client use unless `params` names its uses.
    fn sign_leaf(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if params.extended_key_usages.is_empty() {
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + validity;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a plain TLS leaf for host names and IP addresses (a province's platform
    /// and the node that calls it), without a federation identity: the province's own
    /// PKI, apart from the federation's.
    pub fn issue_for_hosts(
        &self,
        hosts: &[&str],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        // rcgen makes an IP address SAN of a name that parses as one.
        let params =
            CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())?;
        let name = hosts.first().copied().unwrap_or("tongban");
        self.sign_leaf(params, name, validity)
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, and `crl.pem`, its
    /// revocation list, empty.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        write_file(&dir.join("ca.pem"), &self.cert_pem, false)?;
        write_file(&dir.join("ca.key"), &self.key_pem, true)?;
        self.write_revocations(dir, &[])
    }

    /// A revocation list (PEM) naming the certificates with `serials` (as
    /// [`crate::trust::revocation::serial_of`] reads them), valid for a week; its number is
    /// the time of issue, so each list supersedes the one before.
    pub fn revocation_list(&self, serials: &[Vec<u8>]) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(now.unix_timestamp().unsigned_abs()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Writes `crl.pem` into `dir`, naming `serials`.
    pub fn write_revocations(&self, dir: &Path, serials: &[Vec<u8>]) -> Result<(), PkiError> {
        write_file(&dir.join("crl.pem"), &self.revocation_list(serials)?, false)
    }
}

/// An issuer's Ed25519 signing key (separate from its TLS key): what a node signs
/// identity assertions and licenses with, and what the registry publishes for it.
#[derive(Clone)]
pub struct IssuerKey {
    /// The key's id in the registry, e.g. `44-2026a`.
    pub key_id: String,
    /// PKCS#8, PEM.
    pub key_pem: String,
    /// The raw 32-byte public key.
    pub public_key: Vec<u8>,
}

impl IssuerKey {
    /// A fresh key named `key_id`.
    pub fn generate(key_id: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        Ok(Self {
            key_id: key_id.to_owned(),
            key_pem: key.serialize_pem(),
            public_key: key.public_key_raw().to_vec(),
        })
    }

    /// The public key as the registry writes it: lower-case hex.
    pub fn public_key_hex(&self) -> String {
        tongban_proto::rules::digest::hex(&self.public_key)
    }

    /// Writes `issuer-<key id>.key` (mode 0600) into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<std::path::PathBuf, PkiError> {
        let path = dir.join(format!("issuer-{}.key", self.key_id));
        write_file(&path, &self.key_pem, true)?;
        Ok(path)
    }
}

/// File stem under which [`write_leaf`] stores an identity's certificate: `gateway`,
/// `region-44`.
pub fn file_stem(identity: &PeerIdentity) -> String {
    match identity {
        PeerIdentity::Gateway => "gateway".to_owned(),
        PeerIdentity::Region(p) => format!("region-{p}"),
    }
}

/// Writes `<stem>.pem` and `<stem>.key` (mode 0600) into `dir`; returns their paths.
pub fn write_named_leaf(
    dir: &Path,
    stem: &str,
    cert: &IssuedCert,
) -> Result<(std::path::PathBuf, std::path::PathBuf), PkiError> {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    write_file(&cert_path, &cert.cert_pem, false)?;
    write_file(&key_path, &cert.key_pem, true)?;
    Ok((cert_path, key_path))
}

/// Writes `<stem>.pem` and `<stem>.key` (mode 0600) into `dir`; returns their paths.
pub fn write_leaf(
    dir: &Path,
    identity: &PeerIdentity,
    cert: &IssuedCert,
) -> Result<(std::path::PathBuf, std::path::PathBuf), PkiError> {
    write_named_leaf(dir, &file_stem(identity), cert)
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_leaf_names_its_identity() {
        let ca = DevCa::generate("test CA").unwrap();
        let id = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
        let leaf = ca.issue(&id, Duration::from_secs(3600)).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes());
        use rustls::pki_types::pem::PemObject;
        let der = der.unwrap();
        assert_eq!(PeerIdentity::from_certificate(&der).unwrap(), id);
        // A reloaded CA keeps issuing under the same name.
        let again = DevCa::load(ca.cert_pem(), &ca.key_pem).unwrap();
        assert!(
            again
                .issue(&PeerIdentity::Gateway, Duration::from_secs(60))
                .is_ok()
        );
    }
}

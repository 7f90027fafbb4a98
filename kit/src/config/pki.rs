//! The PKI layout of a federation's folder: `ca.pem` and `ca.key` (and an empty
//! `crl.pem` beside them), a certificate and key per identity named by
//! [`file_stem`], nodes' issuer keys, and the gateways' hash secret.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tongban_runtime::trust::{
    identity::PeerIdentity,
    operator::{OperatorName, Role, Roster},
    operator_client::OperatorCredentials,
    pki::{self, DevCa, IssuerKey, file_stem},
    tls::TlsFiles,
};

/// The operator every local federation's roster lists with the `operator` role (its
/// certificate is `operator-operator.pem` in the PKI folder).
pub const OPERATOR: &str = "operator";
/// The operator listed with the `viewer` role.
pub const VIEWER: &str = "viewer";

/// The roster of every local federation's members: [`OPERATOR`] and [`VIEWER`].
pub fn roster() -> Roster {
    let name = |n: &str| OperatorName::parse(n).unwrap_or_else(|_| unreachable!("a valid name"));
    Roster::new([
        (name(OPERATOR), Role::Operator),
        (name(VIEWER), Role::Viewer),
    ])
}

/// The credentials of operator `name` in the PKI folder `dir` (see [`Pki::issue_operator`]).
pub fn operator_credentials(dir: &Path, name: &str) -> OperatorCredentials {
    OperatorCredentials {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("operator-{name}.pem")),
        key: dir.join(format!("operator-{name}.key")),
    }
}

use crate::{
    config::files::file_relative,
    error::{KitError, io_err},
};

/// A development CA and the folder its files are written in.
pub struct Pki {
    dir: PathBuf,
    ca: DevCa,
}

impl Pki {
    /// Generates a CA named `ca_name` and writes it into `dir` (created if missing).
    pub fn create(dir: &Path, ca_name: &str) -> Result<Self, KitError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ca = DevCa::generate(ca_name)?;
        ca.write(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            ca,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `identity` and writes it with its key; returns both
    /// files.
    pub fn issue(
        &self,
        identity: &PeerIdentity,
        validity: Duration,
    ) -> Result<(PathBuf, PathBuf), KitError> {
        let leaf = self.ca.issue(identity, validity)?;
        Ok(pki::write_leaf(&self.dir, identity, &leaf)?)
    }

    /// Issues operator `name`'s client certificate and writes it with its key as
    /// `operator-<name>.pem` and `.key`.
    pub fn issue_operator(
        &self,
        name: &str,
        validity: Duration,
    ) -> Result<OperatorCredentials, KitError> {
        let parsed = OperatorName::parse(name).map_err(KitError::Other)?;
        let leaf = self.ca.issue_operator(&parsed, validity)?;
        pki::write_named_leaf(&self.dir, &format!("operator-{name}"), &leaf)?;
        Ok(operator_credentials(&self.dir, name))
    }

    /// The TLS files of `identity` as a config in `config_dir` names them, with the CRL
    /// beside the CA (`DevCa::write` puts an empty list there).
    pub fn member_tls(&self, config_dir: &Path, identity: &PeerIdentity) -> TlsFiles {
        let dir = file_relative(config_dir, &self.dir);
        TlsFiles {
            crl: Some(dir.join("crl.pem")),
            ..tls_files(&dir, identity)
        }
    }

    /// A new issuer key (Ed25519, apart from any TLS key), written here.
    pub fn issuer_key(&self, key_id: &str) -> Result<(IssuerKey, PathBuf), KitError> {
        issuer_key(&self.dir, key_id)
    }

    /// Writes 32 random bytes (mode 0600) to `name` here: the gateways' secret for keyed
    /// hashes, a node's portal secret.
    pub fn hash_secret(&self, name: &str) -> Result<PathBuf, KitError> {
        let path = self.dir.join(name);
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| KitError::Other("the system random generator failed".into()))?;
        std::fs::write(&path, secret).map_err(io_err(&path))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&path))?;
        }
        Ok(path)
    }
}

/// The CA, certificate and key files of `identity` in the PKI folder `dir` (no CRL).
pub fn tls_files(dir: &Path, identity: &PeerIdentity) -> TlsFiles {
    let stem = file_stem(identity);
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
        crl: None,
    }
}

/// Generates issuer key `key_id` and writes it into the PKI folder `dir`; returns it and
/// its file.
pub fn issuer_key(dir: &Path, key_id: &str) -> Result<(IssuerKey, PathBuf), KitError> {
    let key = IssuerKey::generate(key_id)?;
    let path = key.write(dir)?;
    Ok((key, path))
}

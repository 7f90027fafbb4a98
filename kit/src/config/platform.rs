//! A province's own platform for a node, as a province would run it: the reference
//! platform served over the published contract, in a folder of its own
//! (`platform-<prefix>/`) with the province's own PKI apart from the federation's — a
//! CA, the platform's certificate for 127.0.0.1, the node's client certificate for
//! mutual TLS — an HMAC secret, a key for the register's hashes, and the platform's
//! config; and the node's `[platform] kind = "http"` that reaches it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tongban_node::{
    config::PlatformConfig,
    platform::{
        contract::status::StatusCodes,
        http::{HttpPlatformConfig, PlatformAuth, PlatformTls},
        reference::{AuthSettings, ReferenceConfig, TlsSettings},
    },
};
use tongban_proto::rules::region::RegionPrefix;
use tongban_runtime::trust::pki::{self, DevCa};

use crate::{
    config::files::{file_relative, write_toml},
    error::{KitError, io_err},
};

/// The app key the node signs its requests with.
pub const APP_KEY: &str = "tongban-node";
/// How long the province's certificates are valid.
const VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// A province platform's files, written.
#[derive(Clone, Debug)]
pub struct ProvincePlatform {
    /// The platform's folder.
    pub dir: PathBuf,
    /// `platform.toml`, as `tongban platform serve --config` takes it.
    pub config_path: PathBuf,
    /// The platform's database (the test's handle on what the platform holds).
    pub database: PathBuf,
    /// The province CA's certificate, which signs the platform's and the node's.
    pub ca_pem: PathBuf,
    /// The key of the register's hashes of ID numbers.
    pub id_hash_key: PathBuf,
    /// The contract's and the clerk's API's addresses.
    pub listen: SocketAddr,
    pub clerk_listen: SocketAddr,
}

/// What a province platform is made of.
pub struct PlatformPlan<'a> {
    /// The federation's folder (the node's config lives there).
    pub federation_dir: &'a Path,
    pub prefix: RegionPrefix,
    pub listen: SocketAddr,
    pub clerk_listen: SocketAddr,
    pub seed_residents: u32,
    /// The platform's timed demo clerk (off: decisions through the clerk's API).
    pub auto_approve_after: Option<Duration>,
}

fn write(path: &Path, contents: &[u8]) -> Result<(), KitError> {
    std::fs::write(path, contents).map_err(io_err(path))
}

impl PlatformPlan<'_> {
    /// Writes the platform's folder and config; returns where everything is.
    pub fn write(&self) -> Result<ProvincePlatform, KitError> {
        let dir = self
            .federation_dir
            .join(format!("platform-{}", self.prefix));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let ca = DevCa::generate(&format!("Province {} platform CA", self.prefix))?;
        let ca_pem = dir.join("ca.pem");
        write(&ca_pem, ca.cert_pem().as_bytes())?;
        let server = ca.issue_for_hosts(&["127.0.0.1", "localhost"], VALIDITY)?;
        pki::write_named_leaf(&dir, "platform", &server)?;
        let client = ca.issue_for_hosts(&[&format!("node-{}.province", self.prefix)], VALIDITY)?;
        pki::write_named_leaf(&dir, "node", &client)?;
        write(&dir.join("hmac.secret"), random_hex()?.as_bytes())?;

        let config = ReferenceConfig {
            listen: self.listen,
            clerk_listen: self.clerk_listen,
            database: "platform.sqlite".into(),
            region: self.prefix,
            id_hash_key_file: "id-hash.key".into(),
            tls: Some(TlsSettings {
                cert: "platform.pem".into(),
                key: "platform.key".into(),
                client_ca: Some("ca.pem".into()),
            }),
            auth: AuthSettings::Hmac {
                app_key: APP_KEY.into(),
                secret_file: "hmac.secret".into(),
            },
            clerk_token_file: None,
            status_codes: StatusCodes::reference(),
            seed_residents: self.seed_residents,
            auto_approve_after: self.auto_approve_after,
        };
        let config_path = dir.join("platform.toml");
        write_toml(
            &config_path,
            &config,
            &format!(
                "# Reference platform of province {} (written by the Tongban kit).",
                self.prefix
            ),
        )?;
        Ok(ProvincePlatform {
            database: dir.join("platform.sqlite"),
            id_hash_key: dir.join("id-hash.key"),
            ca_pem,
            config_path,
            dir,
            listen: self.listen,
            clerk_listen: self.clerk_listen,
        })
    }
}

impl ProvincePlatform {
    /// The node's `[platform]`, its files named relative to `node_dir` (the node
    /// config's folder).
    pub fn node_platform(&self, node_dir: &Path, poll: Duration) -> PlatformConfig {
        let file = |name: &str| file_relative(node_dir, &self.dir.join(name));
        PlatformConfig::Http(HttpPlatformConfig {
            url: format!("https://{}", self.listen),
            tls: PlatformTls {
                ca: file("ca.pem"),
                cert: Some(file("node.pem")),
                key: Some(file("node.key")),
                server_name: None,
            },
            auth: PlatformAuth::Hmac {
                app_key: APP_KEY.into(),
                secret_file: file("hmac.secret"),
            },
            timeout: Duration::from_secs(5),
            retries: 2,
            retry_initial: Duration::from_millis(100),
            circuit_failures: 5,
            circuit_open_for: Duration::from_secs(2),
            poll_interval: poll,
            status_codes: StatusCodes::reference(),
        })
    }
}

/// 32 random bytes, hex.
fn random_hex() -> Result<String, KitError> {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| KitError::Other("the system random generator failed".into()))?;
    Ok(tongban_proto::rules::digest::hex(&secret))
}

//! The reference platform's configuration file (`tongban platform serve --config`):
//! typed TOML, unknown keys rejected, paths relative to the file's folder, secrets as
//! file paths, every field checked before a port is bound.
//!
//! ```toml
//! listen = "127.0.0.1:7400"          # the contract (HTTPS when [tls] is set)
//! clerk_listen = "127.0.0.1:7401"    # the clerk's API (plain HTTP, loopback)
//! database = "platform.sqlite"
//! region = "44"                      # the region the platform serves
//! id_hash_key_file = "id-hash.key"   # made (random, mode 0600) if missing
//! clerk_token_file = "clerk.token"   # optional: the clerk's API wants this bearer token
//! seed_residents = 0                 # synthetic residents on first start (demos)
//! # auto_approve_after = "5s"        # demo only: a timed clerk approves by itself
//!
//! [tls]
//! cert = "platform.pem"
//! key = "platform.key"
//! client_ca = "nodes-ca.pem"         # optional: mutual TLS, the node's certificate required
//!
//! [auth]
//! kind = "hmac"                      # or "bearer" (token_file) or "none"
//! app_key = "node-44"
//! secret_file = "hmac.secret"
//!
//! [status_codes]                     # the platform's codes, each onto a canonical state
//! "已接件" = "received"
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tongban_proto::rules::region::RegionPrefix;
use tongban_runtime::process::config::{self, ConfigError, FilePaths};

use crate::platform::contract::status::StatusCodes;

/// The reference platform's configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Where the contract is served (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where the clerk's API is served: plain HTTP on loopback; elsewhere only with
    /// `clerk_token_file` and `[tls]` (then over TLS). Default `127.0.0.1:7401`.
    #[serde(default = "default_clerk_listen")]
    pub clerk_listen: SocketAddr,
    /// The platform's SQLite database (cases, register, feeds); made if missing.
    pub database: PathBuf,
    /// The region the platform serves: a 2-, 4- or 6-digit GB/T 2260 prefix. Licenses
    /// are issued inside it.
    pub region: RegionPrefix,
    /// The key of the register's hashes of ID numbers; made with random bytes (mode
    /// 0600) if missing. Keep it with the database: another key finds nobody.
    pub id_hash_key_file: PathBuf,
    /// The server's certificate and key; without them the contract is plain HTTP
    /// (development only: personal data crosses it).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// How callers authenticate (besides a client certificate, when `tls.client_ca`).
    #[serde(default)]
    pub auth: AuthSettings,
    /// A file with the bearer token the clerk's API wants; without it the API is open
    /// to whoever reaches `clerk_listen`.
    #[serde(default)]
    pub clerk_token_file: Option<PathBuf>,
    /// The platform's status codes, each mapped onto a canonical state; every state
    /// needs a code. Default: 已接件, 已受理, 待补正, 办结, 不予受理, 已撤回, 已终止.
    #[serde(default)]
    pub status_codes: StatusCodes,
    /// Synthetic residents (with licenses) seeded on first start, for demos.
    #[serde(default)]
    pub seed_residents: u32,
    /// Demo only: a timed clerk accepts and approves every case after this long at
    /// each step ("5s"). Off by default: clerks decide through the clerk's API.
    #[serde(default, with = "humantime_serde")]
    pub auto_approve_after: Option<Duration>,
}

/// The server's TLS files (PEM).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// CA certificate(s) a client's certificate must chain to; when set, every client
    /// must present one (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// How callers of the contract authenticate, as provinces do it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSettings {
    /// No request authentication (development, or mutual TLS alone).
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// A file holding the token (surrounding white space ignored).
        token_file: PathBuf,
    },
    /// An HMAC-SHA256 signature over the request (`contract::headers`).
    Hmac {
        /// The app key the caller names in `X-Tongban-App-Key`.
        app_key: String,
        /// A file holding the shared secret.
        secret_file: PathBuf,
    },
}

fn default_clerk_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7401))
}

impl FilePaths for ReferenceConfig {
    fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.database, &mut self.id_hash_key_file];
        if let Some(tls) = &mut self.tls {
            paths.push(&mut tls.cert);
            paths.push(&mut tls.key);
            paths.extend(tls.client_ca.as_mut());
        }
        match &mut self.auth {
            AuthSettings::None => {}
            AuthSettings::Bearer { token_file } => paths.push(token_file),
            AuthSettings::Hmac { secret_file, .. } => paths.push(secret_file),
        }
        paths.extend(self.clerk_token_file.as_mut());
        paths
    }
}

impl ReferenceConfig {
    /// A platform of `region` with its files in `dir`, on free loopback ports, without
    /// TLS or authentication (tests and demos set what they need on top).
    pub fn local(dir: &Path, region: RegionPrefix) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: loopback,
            clerk_listen: loopback,
            database: dir.join("platform.sqlite"),
            region,
            id_hash_key_file: dir.join("id-hash.key"),
            tls: None,
            auth: AuthSettings::None,
            clerk_token_file: None,
            status_codes: StatusCodes::reference(),
            seed_residents: 0,
            auto_approve_after: None,
        }
    }

    /// Loads a config file (a path relative to the working directory), makes every path
    /// in it absolute (relative ones taken from the file's folder) and checks it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = config::load_resolved(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// The checks serde cannot make; errors name the field.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let unreachable = self.status_codes.unreachable();
        if !unreachable.is_empty() {
            let names: Vec<&str> = unreachable.iter().map(|s| s.as_str()).collect();
            return Err(ConfigError::field(
                origin,
                "status_codes",
                format!("no code maps onto {}", names.join(", ")),
            ));
        }
        if let AuthSettings::Hmac { app_key, .. } = &self.auth
            && (app_key.is_empty() || !app_key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError::field(
                origin,
                "auth.app_key",
                "must be non-empty visible ASCII",
            ));
        }
        // Off loopback the clerk's API carries a token and case data over the network:
        // it needs the token and TLS (it is then served with [tls], as the contract is).
        if !self.clerk_listen.ip().is_loopback()
            && (self.clerk_token_file.is_none() || self.tls.is_none())
        {
            return Err(ConfigError::field(
                origin,
                "clerk_listen",
                "is not a loopback address: set clerk_token_file and [tls], or the clerk's \
                 API and its token cross the network in the clear",
            ));
        }
        if self.listen == self.clerk_listen && self.listen.port() != 0 {
            return Err(ConfigError::field(
                origin,
                "clerk_listen",
                "must differ from listen",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReferenceConfig, ConfigError> {
        let origin = Path::new("/etc/tongban/platform.toml");
        let mut config: ReferenceConfig = config::parse(text, origin)?;
        config::resolve_paths(&mut config, Path::new("/etc/tongban"));
        config.validate(origin)?;
        Ok(config)
    }

    const MINIMAL: &str = r#"
        listen = "127.0.0.1:0"
        database = "platform.sqlite"
        region = "44"
        id_hash_key_file = "id.key"
    "#;

    #[test]
    fn a_minimal_config_takes_the_defaults_and_resolves_paths() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.database, Path::new("/etc/tongban/platform.sqlite"));
        assert!(matches!(config.auth, AuthSettings::None));
        assert_eq!(config.status_codes, StatusCodes::reference());
        assert_eq!(config.auto_approve_after, None);
        assert_eq!(config.clerk_listen.port(), 7401);
    }

    #[test]
    fn mistakes_are_named_by_field() {
        let full = format!(
            "{MINIMAL}\nauto_approve_after = \"5s\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [auth]\nkind = \"hmac\"\napp_key = \"node-44\"\nsecret_file = \"s\"\n"
        );
        let config = parse(&full).unwrap();
        assert_eq!(config.auto_approve_after, Some(Duration::from_secs(5)));
        assert!(
            matches!(&config.auth, AuthSettings::Hmac { secret_file, .. }
            if secret_file == Path::new("/etc/tongban/s"))
        );

        let cases = [
            (format!("{MINIMAL}\nsurprise = 1"), "surprise"),
            (MINIMAL.replace("\"44\"", "\"4\""), "region"),
            (
                format!("{MINIMAL}\n[auth]\nkind = \"bearer\""),
                "token_file",
            ),
            (
                format!("{MINIMAL}\n[status_codes]\n\"A\" = \"received\""),
                "status_codes",
            ),
            (
                format!("{MINIMAL}\n[status_codes]\n\"A\" = \"pending\""),
                "status_codes",
            ),
            (
                format!("{MINIMAL}\nclerk_listen = \"0.0.0.0:7401\""),
                "clerk_listen",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}

//! The gateway's config file (TOML). Every field is documented; unknown keys are
//! rejected; relative paths are relative to the config file's folder.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tongban_runtime::{
    config::{self, ConfigError},
    tls::{ClientSettings, TlsFiles},
};

/// Configuration of one gateway process.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the federation listener (gRPC over mutual TLS 1.3).
    pub listen: SocketAddr,
    /// Address of the plaintext admin listener serving `/healthz` and `/readyz` for
    /// probes, which carry no client certificate. Omit to disable.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// The gateway's certificate, key and the federation CA.
    pub tls: TlsFiles,
    /// The node registry file: region prefixes and their endpoints.
    pub registry: PathBuf,
    /// The national catalog (JSON). Omit to serve the catalog built into this release.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// Connection settings for calls to nodes.
    #[serde(default)]
    pub upstream: ClientSettings,
    /// Time a client gets to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(5)
}

impl GatewayConfig {
    /// Loads, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = config::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Makes every relative path relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.tls.ca,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.registry,
        ] {
            *p = base.join(&*p);
        }
        if let Some(c) = &mut self.catalog {
            *c = base.join(&*c);
        }
    }
}

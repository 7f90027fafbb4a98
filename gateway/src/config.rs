//! The gateway's config file (TOML). Every field is documented; unknown keys are
//! rejected; relative paths are relative to the config file's folder (the rule is
//! `tongban_runtime::config`'s, shared with the node).

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
    /// Threads that serve traffic. `1` (the default) runs the whole gateway on one
    /// thread: no cross-thread wake-ups, the least CPU per call (BENCHMARKS.md measures
    /// it); scale out with replicas behind the load balancer. More than 1 uses Tokio's
    /// work-stealing scheduler with that many workers.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_worker_threads() -> usize {
    1
}

impl GatewayConfig {
    /// Loads a config file (a path relative to the working directory) and makes every
    /// path in it absolute, relative ones taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::load_resolved(path)
    }
}

impl config::FilePaths for GatewayConfig {
    fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = self.tls.file_paths();
        paths.push(&mut self.registry);
        paths.extend(self.catalog.as_mut());
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryFile;

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let config = GatewayConfig::load(&dir.join("gateway.toml")).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert!(config.registry.ends_with("registry.toml"));
        assert!(config.registry.is_absolute() && config.tls.ca.is_absolute());
        // Loading is idempotent: the same file gives the same paths.
        let again = GatewayConfig::load(&dir.join("gateway.toml")).unwrap();
        assert_eq!(
            (again.registry, again.tls.ca, again.tls.cert, again.tls.key),
            (
                config.registry,
                config.tls.ca,
                config.tls.cert,
                config.tls.key
            )
        );
        let registry: RegistryFile = config::load(&dir.join("registry.toml")).unwrap();
        assert_eq!(registry.regions.len(), 3);
    }

    #[test]
    fn errors_name_the_field() {
        let err = config::parse::<GatewayConfig>(
            "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\nlisen = 1\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = config::parse::<GatewayConfig>(
            "listen = \"not an address\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = config::parse::<GatewayConfig>(
            "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\nhandshake_timeout = \"soon\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("handshake_timeout"), "{err}");
    }
}

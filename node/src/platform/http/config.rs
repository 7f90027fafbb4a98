//! `[platform] kind = "http"`: how a node reaches its province's platform.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tongban_runtime::process::config::ConfigError;

use serde::{Deserialize, Serialize};

use crate::platform::contract::status::StatusCodes;

/// The province's platform over the published contract.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPlatformConfig {
    /// Base URL of the contract, `https://…` (personal data crosses it: plain HTTP is
    /// refused).
    pub url: String,
    /// How the node checks the platform and proves itself to it.
    pub tls: PlatformTls,
    /// How the node authenticates to the platform besides TLS.
    #[serde(default)]
    pub auth: PlatformAuth,
    /// Longest wait for one call, connection included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after the first for a call that failed in a way worth retrying (all the
    /// contract's calls are idempotent); the wait doubles from `retry_initial`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Consecutive failed calls after which the node stops calling (fails fast) …
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// … for this long, then lets one call through to see whether it is back.
    #[serde(default = "default_circuit_open_for", with = "humantime_serde")]
    pub circuit_open_for: Duration,
    /// How often the case-event and revocation feeds are read.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The province's status codes, each mapped onto a canonical state (received,
    /// accepted, more_materials_needed, approved, rejected, withdrawn, terminated).
    /// Defaults to the reference platform's codes.
    #[serde(default)]
    pub status_codes: StatusCodes,
}

/// TLS towards the platform.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformTls {
    /// PEM file of the CA(s) that sign the platform's certificate.
    pub ca: PathBuf,
    /// The node's client certificate (PEM) for mutual TLS, with its key.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name to check in the platform's certificate, when it is not the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Authentication besides TLS, as the province requires.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlatformAuth {
    /// Mutual TLS alone (or nothing, for a platform that needs nothing more).
    #[default]
    None,
    /// `Authorization: Bearer <token>`, the token read from a file at start.
    Bearer { token_file: PathBuf },
    /// An HMAC-SHA256 signature of every request (see `contract::headers`).
    Hmac {
        app_key: String,
        secret_file: PathBuf,
    },
}

impl HttpPlatformConfig {
    /// The platform at `url` verified with `tls`, everything else the defaults.
    pub fn new(url: impl Into<String>, tls: PlatformTls) -> Self {
        Self {
            url: url.into(),
            tls,
            auth: PlatformAuth::default(),
            timeout: default_timeout(),
            retries: default_retries(),
            retry_initial: default_retry_initial(),
            circuit_failures: default_circuit_failures(),
            circuit_open_for: default_circuit_open_for(),
            poll_interval: default_poll_interval(),
            status_codes: StatusCodes::default(),
        }
    }

    /// The files it names, for resolving them against the config file's folder.
    pub fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.tls.ca];
        if let Some(cert) = &mut self.tls.cert {
            paths.push(cert);
        }
        if let Some(key) = &mut self.tls.key {
            paths.push(key);
        }
        match &mut self.auth {
            PlatformAuth::None => {}
            PlatformAuth::Bearer { token_file } => paths.push(token_file),
            PlatformAuth::Hmac { secret_file, .. } => paths.push(secret_file),
        }
        paths
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_circuit_failures() -> u32 {
    5
}
fn default_circuit_open_for() -> Duration {
    Duration::from_secs(5)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

impl HttpPlatformConfig {
    /// What the types of `[platform] kind = "http"` cannot check.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        if !self.url.starts_with("https://") {
            return Err(ConfigError::field(
                origin,
                "platform.url",
                "must be https://: personal data (ID numbers, names) crosses it, and travels \
             only over TLS",
            ));
        }
        let positive = [
            ("platform.timeout", self.timeout),
            ("platform.poll_interval", self.poll_interval),
            ("platform.retry_initial", self.retry_initial),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::field(origin, field, "must be more than 0"));
            }
        }
        if self.circuit_failures == 0 {
            return Err(ConfigError::field(
                origin,
                "platform.circuit_failures",
                "must be at least 1",
            ));
        }
        if self.status_codes.is_empty() {
            return Err(ConfigError::field(
                origin,
                "platform.status_codes",
                "maps no status code: omit it for the reference platform's codes",
            ));
        }
        Ok(())
    }
}

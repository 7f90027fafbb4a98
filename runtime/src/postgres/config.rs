//! How a process reaches its PostgreSQL: the URL, TLS to the server, the pool's size.
//!
//! The same section shape serves the node's `[store]` and the gateway's
//! `[revocation_log]`, so an operator learns it once.

use std::{path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

/// A PostgreSQL connection pool's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/database`. A password may come from `password_file`
    /// instead, so the URL can sit in a config file that is not secret.
    pub url: String,
    /// A file holding the password (its whole content, trailing newline dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: PostgresTls,
    #[serde(default)]
    pub pool: PoolConfig,
}

/// TLS to the database server, as libpq's `sslmode` names it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTls {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`; the default is
    /// libpq's, `prefer`. `verify-full` checks the server's name too: use it in
    /// production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The CA that issued the server's certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM), when the server authenticates by certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// The pool: how many connections, how long a caller waits for one.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            acquire_timeout: default_acquire_timeout(),
        }
    }
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum PostgresConfigError {
    #[error("url: {0}")]
    Url(String),
    #[error("tls.mode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    TlsMode(String),
    #[error("password_file {path}: {source}")]
    PasswordFile {
        path: String,
        source: std::io::Error,
    },
    #[error("pool.max_connections must be at least 2 (one listens for wake-ups)")]
    PoolTooSmall,
}

impl PostgresConfig {
    /// Settings for `url` with the defaults (tests and tools).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password_file: None,
            tls: PostgresTls::default(),
            pool: PoolConfig::default(),
        }
    }

    /// The connection options these settings give; `application_name` shows in
    /// `pg_stat_activity`, so a DBA sees which replica holds which connection.
    pub fn connect_options(
        &self,
        application_name: &str,
    ) -> Result<PgConnectOptions, PostgresConfigError> {
        let mut options = PgConnectOptions::from_str(&self.url)
            // sqlx's message may quote the URL, password included: name the cause only.
            .map_err(|e| PostgresConfigError::Url(redact_url_error(&e.to_string(), &self.url)))?
            .application_name(application_name);
        if let Some(path) = &self.password_file {
            let password = std::fs::read_to_string(path).map_err(|source| {
                PostgresConfigError::PasswordFile {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            options = options.password(password.trim_end_matches(['\n', '\r']));
        }
        if let Some(mode) = &self.tls.mode {
            let mode = PgSslMode::from_str(mode)
                .map_err(|_| PostgresConfigError::TlsMode(mode.clone()))?;
            options = options.ssl_mode(mode);
        }
        if let Some(ca) = &self.tls.ca {
            options = options.ssl_root_cert(ca);
        }
        if let Some(cert) = &self.tls.cert {
            options = options.ssl_client_cert(cert);
        }
        if let Some(key) = &self.tls.key {
            options = options.ssl_client_key(key);
        }
        Ok(options)
    }

    /// A pool that connects on first use: a process starts, and says it is not ready,
    /// while its database is down, rather than failing to start.
    pub fn pool(&self, application_name: &str) -> Result<PgPool, PostgresConfigError> {
        if self.pool.max_connections < 2 {
            return Err(PostgresConfigError::PoolTooSmall);
        }
        Ok(PgPoolOptions::new()
            // No ping before each use (a round trip and a wake-up of the server per
            // statement): a connection that died fails its statement, which the
            // callers' retries already cover, and the pool drops it.
            .test_before_acquire(false)
            .max_connections(self.pool.max_connections)
            .acquire_timeout(self.pool.acquire_timeout)
            .connect_lazy_with(self.connect_options(application_name)?))
    }

    /// The URL without its password, for logs and readiness reasons.
    pub fn display_url(&self) -> String {
        redact_password(&self.url)
    }
}

/// `url` with any password replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn redact_url_error(message: &str, url: &str) -> String {
    message.replace(url, &redact_password(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_password("postgres://node:s3cret@db.example:5432/tongban"),
            "postgres://node:***@db.example:5432/tongban"
        );
        assert_eq!(
            redact_password("postgres://node@127.0.0.1/tongban"),
            "postgres://node@127.0.0.1/tongban"
        );
        let config = PostgresConfig::new("postgres://a:pw@127.0.0.1:1/db");
        assert!(!config.display_url().contains("pw"));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut config = PostgresConfig::new("postgres://a@127.0.0.1/db");
        config.tls.mode = Some("sometimes".into());
        assert!(matches!(
            config.connect_options("t"),
            Err(PostgresConfigError::TlsMode(_))
        ));
        config.tls.mode = Some("verify-full".into());
        assert!(config.connect_options("t").is_ok());
        config.pool.max_connections = 1;
        assert!(matches!(
            config.pool("t"),
            Err(PostgresConfigError::PoolTooSmall)
        ));
        assert!(matches!(
            PostgresConfig::new("postgres://[bad").connect_options("t"),
            Err(PostgresConfigError::Url(_))
        ));
    }
}

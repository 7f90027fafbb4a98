//! The node's authentication to its platform, as provinces do it: mutual TLS (in
//! [`super::tls`]), a bearer token from a file, or an HMAC signature of every request
//! (`contract::headers`). Secrets are read from files and never printed: the `Debug`
//! of a policy names the kind only.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

use super::config::PlatformAuth;
use crate::platform::contract::headers;

/// The secret a policy holds could not be read.
#[derive(Debug, thiserror::Error)]
#[error("[platform.auth] {setting} = {path}: {reason}")]
pub struct AuthError {
    pub setting: &'static str,
    pub path: String,
    pub reason: String,
}

/// An authentication policy with its secret loaded.
pub enum AuthPolicy {
    None,
    Bearer { header: String },
    Hmac { app_key: String, secret: Vec<u8> },
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "AuthPolicy::None",
            Self::Bearer { .. } => "AuthPolicy::Bearer(<redacted>)",
            Self::Hmac { .. } => "AuthPolicy::Hmac(<redacted>)",
        })
    }
}

fn read_secret(setting: &'static str, path: &std::path::Path) -> Result<String, AuthError> {
    let error = |reason: String| AuthError {
        setting,
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    // ASCII white space only, as the reference platform reads the same file.
    let secret = text
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_owned();
    if secret.is_empty() {
        return Err(error("the file is empty".into()));
    }
    Ok(secret)
}

impl AuthPolicy {
    /// Loads the policy's secret from its file.
    pub fn load(config: &PlatformAuth) -> Result<Self, AuthError> {
        Ok(match config {
            PlatformAuth::None => Self::None,
            PlatformAuth::Bearer { token_file } => Self::Bearer {
                header: format!("Bearer {}", read_secret("token_file", token_file)?),
            },
            PlatformAuth::Hmac {
                app_key,
                secret_file,
            } => Self::Hmac {
                app_key: app_key.clone(),
                secret: read_secret("secret_file", secret_file)?.into_bytes(),
            },
        })
    }

    /// The headers that authenticate one request (`path_and_query` and `body` exactly
    /// as sent).
    pub fn headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        match self {
            Self::None => Vec::new(),
            Self::Bearer { header } => vec![("authorization", header.clone())],
            Self::Hmac { app_key, secret } => {
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .to_string();
                let nonce = nonce();
                let canonical = headers::canonical_request(
                    method,
                    path_and_query,
                    &timestamp,
                    &nonce,
                    body,
                    app_key,
                );
                vec![
                    (headers::APP_KEY, app_key.clone()),
                    (headers::TIMESTAMP, timestamp),
                    (headers::NONCE, nonce),
                    (headers::SIGNATURE, headers::sign(secret, &canonical)),
                ]
            }
        }
    }
}

/// 128 random bits, hex: a request's nonce, or a logical call's idempotency key.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // The system's generator does not fail on supported platforms; a zero nonce would
    // only make the platform refuse the request as a replay.
    let _ = SystemRandom::new().fill(&mut bytes);
    tongban_proto::rules::digest::hex(&bytes)
}

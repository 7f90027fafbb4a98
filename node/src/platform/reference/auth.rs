//! Server-side authentication of contract calls, as provinces do it: none (development,
//! or mutual TLS alone, checked at the handshake), a bearer token, or an HMAC request
//! signature with timestamp and nonce (`contract::headers`). A failure answers `401`
//! without saying which part was wrong, and is logged without the secret.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ring::hmac;

use super::{
    config::AuthSettings,
    error::ReferenceError,
    problem::{ApiProblem, MAX_BODY},
    state::read_secret,
};
use crate::platform::contract::headers;

/// Nonces remembered at most; see [`Nonces`].
const MAX_NONCES: usize = 200_000;
/// Longest nonce accepted.
const MAX_NONCE_LEN: usize = 128;

/// A secret compared in constant time: only an HMAC tag of it under a per-process
/// random key is kept, and a presented value is verified against that tag (ring's
/// `verify` compares in constant time, whatever the lengths).
pub struct SecretCheck {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl SecretCheck {
    pub fn new(secret: &[u8]) -> Result<Self, ReferenceError> {
        let rng = ring::rand::SystemRandom::new();
        let key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| ReferenceError::Secret {
                path: Default::default(),
                reason: "no randomness for the token check".into(),
            })?;
        let tag = hmac::sign(&key, secret);
        Ok(Self { key, tag })
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }

    /// Whether `headers` carry `Authorization: Bearer <secret>`.
    pub fn bearer_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| self.matches(token.trim().as_bytes()))
    }
}

/// The nonces of signed requests still inside the clock window, each until its
/// timestamp leaves it (a replay after that fails the timestamp check). Bounded: when
/// full of live nonces, new requests are refused rather than an old nonce forgotten,
/// which would let its request be replayed. Not moka: its size-based eviction would
/// forget live nonces exactly so.
#[derive(Default)]
struct Nonces {
    live: HashSet<String>,
    by_expiry: BTreeSet<(i64, String)>,
}

impl Nonces {
    /// Admits `nonce`: `Valid`, `Invalid` (seen within the window: a replay), or
    /// `NoRoom` (too many live nonces: the caller is told to come back, not refused).
    fn admit(&mut self, nonce: String, expires: i64, now: i64) -> Signed {
        while let Some((at, _)) = self.by_expiry.first() {
            if *at > now {
                break;
            }
            if let Some((_, old)) = self.by_expiry.pop_first() {
                self.live.remove(&old);
            }
        }
        if self.live.contains(&nonce) {
            return Signed::Invalid;
        }
        if self.live.len() >= MAX_NONCES {
            return Signed::NoRoom;
        }
        self.live.insert(nonce.clone());
        self.by_expiry.insert((expires, nonce));
        Signed::Valid
    }
}

/// How a signed request fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signed {
    Valid,
    /// A bad or replayed signature: `401`.
    Invalid,
    /// Signed correctly, but the nonce window is full: `503`, retry shortly (a busy
    /// platform, not a wrong secret, which the node would wait on for an operator).
    NoRoom,
}

/// How contract calls are authenticated (built from [`AuthSettings`]).
pub struct Authenticator(Policy);

enum Policy {
    None,
    Bearer(SecretCheck),
    Hmac {
        app_key: String,
        secret: hmac::Key,
        nonces: Mutex<Nonces>,
    },
}

impl Authenticator {
    /// From the configuration, reading the secret files.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ReferenceError> {
        Ok(Self(match settings {
            AuthSettings::None => Policy::None,
            AuthSettings::Bearer { token_file } => {
                Policy::Bearer(SecretCheck::new(&read_secret(token_file)?)?)
            }
            AuthSettings::Hmac {
                app_key,
                secret_file,
            } => Policy::Hmac {
                app_key: app_key.clone(),
                secret: hmac::Key::new(hmac::HMAC_SHA256, &read_secret(secret_file)?),
                nonces: Mutex::default(),
            },
        }))
    }

    /// Checks a signed request: app key, timestamp within the window, nonce not seen
    /// in it, signature over the canonical request.
    fn signed(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Signed {
        let Policy::Hmac {
            app_key,
            secret,
            nonces,
        } = &self.0
        else {
            return Signed::Invalid;
        };
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(key), Some(timestamp), Some(nonce), Some(signature)) = (
            text(headers::APP_KEY),
            text(headers::TIMESTAMP),
            text(headers::NONCE),
            text(headers::SIGNATURE),
        ) else {
            return Signed::Invalid;
        };
        let now = unix_now();
        let Ok(at) = timestamp.parse::<i64>() else {
            return Signed::Invalid;
        };
        if key != app_key
            || nonce.is_empty()
            || nonce.len() > MAX_NONCE_LEN
            || now.abs_diff(at) > headers::SIGNATURE_SKEW_SECS.unsigned_abs()
        {
            return Signed::Invalid;
        }
        let canonical = headers::canonical_request(method, path, timestamp, nonce, body, key);
        let Some(tag) = tongban_proto::rules::digest::unhex(signature) else {
            return Signed::Invalid;
        };
        if hmac::verify(secret, canonical.as_bytes(), &tag).is_err() {
            return Signed::Invalid;
        }
        // Only a correctly signed request spends a nonce, so nobody else can fill the
        // window.
        let expires = at + headers::SIGNATURE_SKEW_SECS + 1;
        let mut nonces = nonces.lock().unwrap_or_else(|p| p.into_inner());
        nonces.admit(format!("{key}\n{nonce}"), expires, now)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The middleware: lets an authenticated call through, answers `401` otherwise.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    match &auth.0 {
        Policy::None => next.run(request).await,
        Policy::Bearer(check) => {
            if check.bearer_matches(request.headers()) {
                next.run(request).await
            } else {
                refuse(&request)
            }
        }
        Policy::Hmac { .. } => {
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    return ApiProblem::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        crate::platform::contract::wire::problem::BAD_REQUEST,
                        "Bad request",
                        format!("body: larger than {MAX_BODY} bytes, or cut off"),
                    )
                    .into_response();
                }
            };
            let path = parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
            let request = Request::from_parts(parts, Body::from(bytes.clone()));
            match auth.signed(request.method().as_str(), &path, request.headers(), &bytes) {
                Signed::Valid => next.run(request).await,
                Signed::Invalid => refuse(&request),
                Signed::NoRoom => {
                    let mut busy =
                        ApiProblem::unavailable("too many signed requests in the clock window")
                            .into_response();
                    busy.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from_static("1"),
                    );
                    busy
                }
            }
        }
    }
}

fn refuse(request: &Request) -> Response {
    tracing::info!(
        method = %request.method(),
        path = %request.uri().path(),
        "refused an unauthenticated call"
    );
    ApiProblem::unauthenticated().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_spent_once_within_its_window() {
        let mut nonces = Nonces::default();
        assert_eq!(nonces.admit("a".into(), 100, 10), Signed::Valid);
        assert_eq!(nonces.admit("a".into(), 100, 50), Signed::Invalid);
        assert_eq!(nonces.admit("b".into(), 60, 50), Signed::Valid);
        // Past its expiry a nonce is forgotten (its timestamp fails the window then).
        assert_eq!(nonces.admit("a".into(), 300, 100), Signed::Valid);
        assert_eq!(nonces.live.len(), 1, "b expired at 60");
        // A full window asks the caller to come back; it does not call it a forgery.
        for i in 0..MAX_NONCES {
            nonces.live.insert(format!("n{i}"));
        }
        assert_eq!(nonces.admit("c".into(), 300, 100), Signed::NoRoom);
    }

    #[test]
    fn tokens_are_compared_whole() {
        let check = SecretCheck::new(b"s3cret-token").unwrap();
        assert!(check.matches(b"s3cret-token"));
        assert!(!check.matches(b"s3cret-toke"));
        assert!(!check.matches(b""));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-token".parse().unwrap(),
        );
        assert!(check.bearer_matches(&headers));
    }

    #[test]
    fn a_signed_request_is_checked_and_not_replayed() {
        let auth = Authenticator(Policy::Hmac {
            app_key: "node-44".into(),
            secret: hmac::Key::new(hmac::HMAC_SHA256, b"shared"),
            nonces: Mutex::default(),
        });
        let sign = |timestamp: i64, nonce: &str, body: &[u8]| {
            let ts = timestamp.to_string();
            let canonical = headers::canonical_request(
                "POST",
                "/v1/persons/lookup",
                &ts,
                nonce,
                body,
                "node-44",
            );
            let mut h = HeaderMap::new();
            h.insert(headers::APP_KEY, "node-44".parse().unwrap());
            h.insert(headers::TIMESTAMP, ts.parse().unwrap());
            h.insert(headers::NONCE, nonce.parse().unwrap());
            h.insert(
                headers::SIGNATURE,
                headers::sign(b"shared", &canonical).parse().unwrap(),
            );
            h
        };
        let now = unix_now();
        let h = sign(now, "n1", b"{}");
        assert_eq!(
            auth.signed("POST", "/v1/persons/lookup", &h, b"{}"),
            Signed::Valid
        );
        assert!(
            auth.signed("POST", "/v1/persons/lookup", &h, b"{}") != Signed::Valid,
            "replay"
        );
        let h = sign(now, "n2", b"{}");
        assert!(
            auth.signed("POST", "/v1/persons/lookup", &h, b"{ }") != Signed::Valid,
            "body changed"
        );
        assert!(
            auth.signed("POST", "/v1/licenses/by-holder", &h, b"{}") != Signed::Valid,
            "path changed"
        );
        let old = sign(now - headers::SIGNATURE_SKEW_SECS - 5, "n3", b"{}");
        assert!(
            auth.signed("POST", "/v1/persons/lookup", &old, b"{}") != Signed::Valid,
            "stale"
        );
        // A timestamp chosen to overflow the clock arithmetic is refused, not a panic.
        let far = sign(i64::MIN, "n4", b"{}");
        assert_eq!(
            auth.signed("POST", "/v1/persons/lookup", &far, b"{}"),
            Signed::Invalid
        );
    }
}

//! One call of the contract, sent as the node sends it (the node's TLS configuration and
//! authentication policy, the contract's headers) and recorded for the report: what was
//! sent (secrets redacted, personal data masked), what came back, how long it took.
//!
//! The client is reqwest over the node's own rustls configuration
//! (`http::tls::client_config`), so a TLS failure here is the one the node would meet,
//! explained by the same `http::tls::explain`.

use std::{
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use reqwest::Url;

use super::{
    call::{Call, Credentials, Failure, Reply},
    handshake::{self, Target},
    mask,
    report::{CheckId, Exchange, Received, Sent},
    step::Step,
};
use crate::platform::{
    contract::headers,
    http::{
        auth::{AuthError, AuthPolicy, nonce},
        config::{PlatformAuth, PlatformTls},
        tls::{self, PlatformTlsError},
    },
};

/// Why a run could not start: the kit's own settings, not the platform.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] PlatformTlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("building the HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Options(String),
}

/// How long one call took, for the timing check.
#[derive(Clone, Debug)]
pub struct Timing {
    pub check: CheckId,
    pub operation: &'static str,
    pub method: String,
    pub path: String,
    pub latency: Duration,
    pub timed_out: bool,
}

/// The kit's client: the node's TLS and authentication, every call recorded.
pub struct Probe {
    shown_url: String,
    base: Url,
    client: reqwest::Client,
    /// The same without a client certificate (when one is configured).
    bare: Option<reqwest::Client>,
    auth: AuthPolicy,
    wrong: AuthPolicy,
    tls: PlatformTls,
    /// Where to connect when the certificate's name is not the URL's host.
    resolve: Option<(String, Vec<SocketAddr>)>,
    timeout: Duration,
    timings: Mutex<Vec<Timing>>,
}

impl Probe {
    /// A client for `url`; fails on the kit's own settings (an unreadable file, a URL
    /// that is not `https`).
    pub async fn new(
        url: &str,
        tls: &PlatformTls,
        auth: &PlatformAuth,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        tongban_runtime::trust::tls::install_crypto_provider();
        let url_error = |reason: String| SetupError::Url {
            url: url.to_owned(),
            reason,
        };
        let mut base = Url::parse(url).map_err(|e| url_error(e.to_string()))?;
        if base.scheme() != "https" {
            return Err(url_error(
                "must be https: personal data crosses the contract, only over TLS".into(),
            ));
        }
        let resolve = match &tls.server_name {
            Some(name) => Some(pin_name(&mut base, name).await.map_err(url_error)?),
            None => None,
        };
        let client = client_for(tls, timeout, resolve.as_ref())?;
        let bare = match (&tls.cert, &tls.key) {
            (Some(_), Some(_)) => Some(client_for(&without_cert(tls), timeout, resolve.as_ref())?),
            _ => None,
        };
        let loaded = AuthPolicy::load(auth)?;
        let wrong = match &loaded {
            AuthPolicy::None => AuthPolicy::None,
            AuthPolicy::Bearer { .. } => AuthPolicy::Bearer {
                header: format!("Bearer conformance-wrong-{}", nonce()),
            },
            AuthPolicy::Hmac { app_key, .. } => AuthPolicy::Hmac {
                app_key: app_key.clone(),
                secret: nonce().into_bytes(),
            },
        };
        Ok(Self {
            shown_url: url.to_owned(),
            base,
            client,
            bare,
            auth: loaded,
            wrong,
            tls: tls.clone(),
            resolve,
            timeout,
            timings: Mutex::new(Vec::new()),
        })
    }

    /// The platform's URL as given.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether calls can be made without the client certificate.
    pub fn has_client_cert(&self) -> bool {
        self.bare.is_some()
    }

    /// Whether authentication headers are configured.
    pub fn has_auth_headers(&self) -> bool {
        !matches!(self.auth, AuthPolicy::None)
    }

    /// Every call made so far, with its latency.
    pub fn timings(&self) -> Vec<Timing> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Sends `call`, records it in `step` and in the timings, and returns what came back.
    pub async fn send(&self, step: &mut Step, call: Call) -> Reply {
        let target = format!("{}{}", self.base.as_str().trim_end_matches('/'), call.path);
        let (reply, sent) = match Url::parse(&target) {
            Ok(url) => self.exchange(&call, url).await,
            Err(e) => {
                let failure = Failure {
                    timed_out: false,
                    sentence: format!("{target} is not a URL: {e}"),
                };
                let reply = Reply {
                    status: None,
                    content_type: String::new(),
                    body: Vec::new(),
                    latency: Duration::ZERO,
                    failure: Some(failure),
                };
                (reply, sent_record(&call, call.path.clone(), Vec::new()))
            }
        };
        if let Ok(mut timings) = self.timings.lock() {
            timings.push(Timing {
                check: step.id(),
                operation: call.operation,
                method: call.method.to_string(),
                path: sent.path.clone(),
                latency: reply.latency,
                timed_out: reply.failure.as_ref().is_some_and(|f| f.timed_out),
            });
        }
        step.record(Exchange {
            operation: call.operation,
            sent,
            received: received_record(&reply),
        });
        reply
    }

    async fn exchange(&self, call: &Call, url: Url) -> (Reply, Sent) {
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let body = call.body.clone().unwrap_or_default();
        let mut sent_headers: Vec<(&'static str, String)> = vec![
            (headers::IDEMPOTENCY_KEY, idempotency_key(call)),
            (headers::TRACEPARENT, traceparent()),
        ];
        sent_headers.extend(call.headers.iter().cloned());
        let policy = match call.credentials {
            Credentials::Configured | Credentials::NoClientCert => Some(&self.auth),
            Credentials::NoHeaders => None,
            Credentials::WrongHeaders => Some(&self.wrong),
        };
        let auth_headers = policy
            .map(|p| p.headers(call.method.as_str(), &path_and_query, &body))
            .unwrap_or_default();
        let sent = sent_record(call, path_and_query, sent_headers.clone());
        let client = match (call.credentials, &self.bare) {
            (Credentials::NoClientCert, Some(bare)) => bare,
            _ => &self.client,
        };
        let mut request = client.request(call.method.clone(), url);
        for (name, value) in sent_headers.iter().chain(&auth_headers) {
            request = request.header(*name, value);
        }
        if call.body.is_some() {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let started = Instant::now();
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, content_type, body.to_vec()))
        }
        .await;
        let latency = started.elapsed();
        let reply = match answer {
            Ok((status, content_type, body)) => Reply {
                status: Some(status),
                content_type,
                body,
                latency,
                failure: None,
            },
            Err(error) => Reply {
                status: None,
                content_type: String::new(),
                body: Vec::new(),
                latency,
                failure: Some(self.failure(&error, call.credentials).await),
            },
        };
        let mut sent = sent;
        add_auth_note(&mut sent, call.credentials, &auth_headers);
        (reply, sent)
    }

    /// Why `error` happened, in a sentence: the TLS explanation when there is one,
    /// found by a handshake alone when the HTTP client lost it (see `handshake`).
    async fn failure(&self, error: &reqwest::Error, credentials: Credentials) -> Failure {
        if error.is_timeout() {
            return Failure {
                timed_out: true,
                sentence: format!("no answer within {} ms", self.timeout.as_millis()),
            };
        }
        let tls = match credentials {
            Credentials::NoClientCert => without_cert(&self.tls),
            _ => self.tls.clone(),
        };
        let mut sentence = tls::explain(error, &tls, &self.shown_url);
        if sentence.is_none() {
            let target = Target {
                base: &self.base,
                connect_to: self.resolve.as_ref().map(|(_, addrs)| addrs.as_slice()),
                shown_url: &self.shown_url,
            };
            sentence = handshake::explain_failure(&target, &tls, self.timeout).await;
        }
        let sentence = sentence.unwrap_or_else(|| {
            let mut chain = vec![error.to_string()];
            let mut cause = std::error::Error::source(error);
            while let Some(e) = cause {
                chain.push(e.to_string());
                cause = e.source();
            }
            chain.join(": ")
        });
        Failure {
            timed_out: false,
            sentence,
        }
    }
}

/// `tls` without the client certificate.
fn without_cert(tls: &PlatformTls) -> PlatformTls {
    PlatformTls {
        cert: None,
        key: None,
        ..tls.clone()
    }
}

/// Points `base` at `name` (the name the platform's certificate carries) while
/// connecting to the address of the URL's host.
async fn pin_name(base: &mut Url, name: &str) -> Result<(String, Vec<SocketAddr>), String> {
    let port = base.port_or_known_default().unwrap_or(443);
    let host = base.host_str().ok_or("has no host")?;
    // An IPv6 literal is bracketed in a URL, not in a socket address.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    base.set_host(Some(name))
        .map_err(|e| format!("server name {name:?}: {e}"))?;
    Ok((name.to_owned(), addrs))
}

fn client_for(
    tls: &PlatformTls,
    timeout: Duration,
    resolve: Option<&(String, Vec<SocketAddr>)>,
) -> Result<reqwest::Client, SetupError> {
    let config = tls::client_config(tls)?;
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(timeout)
        // The node reaches its platform directly; so does the kit, so that it checks
        // the path the node takes.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Some((name, addrs)) = resolve {
        builder = builder.resolve_to_addrs(name, addrs);
    }
    builder
        .build()
        .map_err(|e| SetupError::Client(e.to_string()))
}

/// The call's idempotency key: the case number for a take-over, a fresh key otherwise.
fn idempotency_key(call: &Call) -> String {
    let case_number = call
        .headers
        .iter()
        .find(|(n, _)| *n == headers::CASE_NUMBER);
    match case_number {
        Some((_, number)) if call.operation == "take_over" => number.clone(),
        _ => nonce(),
    }
}

/// A fresh W3C trace context, sampled.
fn traceparent() -> String {
    let span = nonce();
    format!("00-{}-{}-01", nonce(), &span[..16])
}

fn sent_record(call: &Call, path: String, headers: Vec<(&'static str, String)>) -> Sent {
    Sent {
        method: call.method.to_string(),
        path,
        headers: headers
            .into_iter()
            .filter(|(name, _)| *name != headers::TRACEPARENT)
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        body: call.body_note.clone(),
    }
}

/// Names the authentication a call presented, its secrets redacted.
fn add_auth_note(sent: &mut Sent, credentials: Credentials, auth: &[(&'static str, String)]) {
    for (name, value) in auth {
        let shown = match *name {
            headers::APP_KEY => value.clone(),
            "authorization" => "Bearer <redacted>".to_owned(),
            headers::SIGNATURE => "<redacted>".to_owned(),
            _ => continue,
        };
        sent.headers.insert((*name).to_owned(), shown);
    }
    let note = match credentials {
        Credentials::Configured => return,
        Credentials::NoHeaders => "none sent",
        Credentials::WrongHeaders => "deliberately wrong secret",
        Credentials::NoClientCert => "no client certificate",
    };
    sent.headers
        .insert("(credentials)".to_owned(), note.to_owned());
}

fn received_record(reply: &Reply) -> Received {
    Received {
        status: reply.status,
        content_type: reply.content_type.clone(),
        excerpt: if reply.status.is_some() {
            mask::excerpt(&reply.body)
        } else {
            String::new()
        },
        error: reply.failure.as_ref().map(|f| f.sentence.clone()),
        latency_ms: u64::try_from(reply.latency.as_millis()).unwrap_or(u64::MAX),
    }
}

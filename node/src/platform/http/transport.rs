//! One call of the contract, whole: the circuit asked first; then each attempt sent with
//! what every call carries (`Idempotency-Key`, `Tongban-Case-Number`, the purpose of use,
//! `traceparent`, the authentication headers signed anew for the attempt) within the
//! call's timeout; failed attempts worth it retried with backoff (`super::retry`); the
//! outcome settled with the circuit, the platform's health and `crate::observe::platform`.
//!
//! Errors name the platform, the operation and what went wrong, never a person: ID
//! numbers and names travel only in request and response bodies, which are never
//! logged or quoted.

use std::{sync::Arc, time::Duration};

use backon::Retryable;
use bytes::Bytes;
use reqwest::{Method, StatusCode, header::HeaderValue};
use tongban_runtime::observability::traces::Traces;

use super::{
    auth::{AuthError, AuthPolicy},
    circuit::{Change, Circuit, Verdict},
    config::{HttpPlatformConfig, PlatformTls},
    health::PlatformHealth,
    retry::{self, Failure},
    tls::{self, PlatformTlsError},
};
use crate::{
    metrics::NodeMetrics,
    observe::platform::{self as observe, Outcome, PlatformCall},
    platform::{adapter::PlatformError, contract::headers, contract::headers::Purpose},
};

/// The largest answer body read: a full feed page is well under it.
const MAX_BODY: usize = 8 << 20;

/// The adapter could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Tls(#[from] PlatformTlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("[platform] url = {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("[platform]: the HTTP client: {0}")]
    Client(String),
}

/// One call of the contract.
pub struct Call<'a> {
    /// The operation's name in metrics and logs (`take_over`, `case_events` …).
    pub operation: &'static str,
    /// Its method and path template: the span's name.
    pub route: &'static str,
    pub method: Method,
    /// The path with its query, exactly as signed and sent (`/v1/case-events?after=…`).
    pub path_and_query: String,
    /// The JSON body, exactly as signed and sent.
    pub body: Option<Vec<u8>>,
    /// The same on every attempt: the case number for a take-over, a random key else.
    pub idempotency_key: String,
    /// The case the call concerns.
    pub case_number: Option<&'a str>,
    /// The purpose of use, for a register call.
    pub purpose: Option<&'a Purpose>,
    /// The statuses the contract lets this operation answer (others are failures).
    pub expected: &'static [StatusCode],
}

/// The platform's answer to a call.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The client side of the contract, shared by every call.
pub struct Transport {
    client: reqwest::Client,
    /// The contract's base URL, without a trailing slash.
    base: String,
    /// Its path (empty at the host's root), which requests are signed with.
    base_path: String,
    tls: PlatformTls,
    auth: AuthPolicy,
    timeout: Duration,
    retries: u32,
    retry_initial: Duration,
    pub(super) circuit: Circuit,
    pub(super) health: PlatformHealth,
    traces: Traces,
    metrics: Option<Arc<NodeMetrics>>,
}

impl Transport {
    /// The transport `config` describes: its TLS files and secret read now.
    pub fn new(
        config: &HttpPlatformConfig,
        traces: Traces,
        metrics: Option<Arc<NodeMetrics>>,
    ) -> Result<Self, SetupError> {
        let base = config.url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| SetupError::Url {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        if parsed.scheme() != "https" {
            return Err(SetupError::Url {
                url: config.url.clone(),
                reason: "must be https:// (personal data crosses it)".into(),
            });
        }
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls::client_config(&config.tls)?)
            .https_only(true)
            // Straight to the platform, as the conformance kit checks it: no proxy from
            // the environment, and no redirect (which would also break a signature
            // that covers the path).
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Self {
            client,
            tls: config.tls.clone(),
            auth: AuthPolicy::load(&config.auth)?,
            timeout: config.timeout,
            retries: config.retries,
            retry_initial: config.retry_initial,
            circuit: Circuit::new(config.circuit_failures, config.circuit_open_for),
            health: PlatformHealth::new(&base),
            base,
            base_path,
            traces,
            metrics,
        })
    }

    /// The platform's base URL, as errors and readiness name it.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Makes `call`: its answer when the platform gave one the operation expects, else
    /// `Unavailable` (unreachable, too slow, busy after every retry, circuit open) or
    /// `Contract` (an answer the contract does not allow it, with the problem's detail).
    pub async fn call(&self, call: Call<'_>) -> Result<Answer, PlatformError> {
        let observed = PlatformCall::start(
            &self.traces,
            self.metrics.as_deref(),
            call.operation,
            call.route,
            call.case_number,
        );
        let permit = match self.circuit.admit() {
            Ok(permit) => permit,
            Err(open) => {
                observed.finished(Outcome::CircuitOpen, None, None);
                return Err(PlatformError::Unavailable(format!(
                    "platform circuit open: {} is not called for {:?} more after repeated \
                     failures; last error: {}",
                    self.base, open.retry_in, open.last_error
                )));
            }
        };
        // Every contract call may be repeated (see `super::retry`), so each failed
        // attempt worth it is made again, up to `retries` more times.
        let attempts = (|| self.attempt(&call, observed.traceparent()))
            .retry(retry::backoff(self.retry_initial, self.retries))
            .adjust(retry::next_wait)
            .notify(|failure: &Failure, wait| observed.retrying(&failure.sentence(), wait))
            .await;
        match attempts {
            Ok(answer) => {
                self.circuit_changed(permit.settle(Verdict::Answered, ""), "");
                if call.expected.contains(&answer.status) {
                    self.learned(None);
                    observed.finished(Outcome::Ok, Some(answer.status.as_u16()), None);
                    return Ok(answer);
                }
                // Reachable, but refusing or broken (a `401` …): the probe, which
                // authenticates too, tells readiness; the circuit is for reachability.
                let why = unexpected(&answer);
                observed.finished(Outcome::Failed, Some(answer.status.as_u16()), Some(&why));
                Err(PlatformError::Contract(format!(
                    "platform {} {}: {why}",
                    self.base, call.operation
                )))
            }
            Err(failure) => {
                let why = failure.sentence();
                let status = match &failure {
                    Failure::Busy { status, .. } => Some(status.as_u16()),
                    _ => None,
                };
                self.circuit_changed(permit.settle(Verdict::Failed, &why), &why);
                self.learned(Some(&why));
                observed.finished(Outcome::Failed, status, Some(&why));
                Err(PlatformError::Unavailable(format!(
                    "platform {} {}: {why}",
                    self.base, call.operation
                )))
            }
        }
    }

    /// What settling a call changed in the circuit, logged and counted.
    fn circuit_changed(&self, change: Change, why: &str) {
        match change {
            Change::Opened => observe::circuit_opened(self.metrics.as_deref(), &self.base, why),
            Change::Closed => observe::circuit_closed(self.metrics.as_deref(), &self.base),
            Change::None => {}
        }
    }

    /// Whether the platform is up, as a call or probe just learned (`down`: why not).
    fn learned(&self, down: Option<&str>) {
        let changed = match down {
            Some(why) => self.health.down(why),
            None => self.health.up(),
        };
        if changed {
            observe::health_changed(&self.base, down);
        }
    }

    /// One attempt at `call`.
    async fn attempt(&self, call: &Call<'_>, traceparent: &str) -> Result<Answer, Failure> {
        let body = call.body.as_deref().unwrap_or_default();
        let mut request = self
            .client
            .request(
                call.method.clone(),
                format!("{}{}", self.base, call.path_and_query),
            )
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                headers::IDEMPOTENCY_KEY,
                header_value(&call.idempotency_key),
            )
            .header(headers::TRACEPARENT, header_value(traceparent));
        if let Some(case) = call.case_number.filter(|c| !c.is_empty()) {
            request = request.header(headers::CASE_NUMBER, header_value(case));
        }
        if let Some(purpose) = call.purpose {
            request = request
                .header(
                    headers::PURPOSE_ONE_THING,
                    header_value(&purpose.one_thing_id),
                )
                .header(headers::PURPOSE_CASE, header_value(&purpose.case_number));
        }
        // Signed per attempt (the timestamp and nonce are new each time), over the path
        // the platform receives.
        let signed_path = format!("{}{}", self.base_path, call.path_and_query);
        for (name, value) in self.auth.headers(call.method.as_str(), &signed_path, body) {
            request = request.header(name, header_value(&value));
        }
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(|e| self.failure(&e))?;
        let status = response.status();
        if retry::busy(status) {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok());
            return Err(Failure::Busy {
                status,
                retry_after: retry::parse_retry_after(retry_after),
            });
        }
        let body = read_body(response).await.map_err(|e| self.failure(&e))?;
        Ok(Answer { status, body })
    }

    /// What a transport error says about the platform, in a sentence naming the wrong
    /// certificate or CA for a TLS failure.
    fn failure(&self, error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            return Failure::Timeout {
                after: self.timeout,
            };
        }
        let sentence = tls::explain(error, &self.tls, &self.base).unwrap_or_else(|| {
            let mut parts = Vec::new();
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
            while let Some(e) = cause {
                parts.push(e.to_string());
                cause = e.source();
            }
            // reqwest's own message names the URL, which names no person: the
            // contract keeps personal data out of paths.
            parts.dedup();
            parts.join(": ")
        });
        Failure::Unreachable { sentence }
    }

    /// `GET /v1/health`, once, past the circuit and without retries: `Err` with why the
    /// platform does not take cases. The health and circuit are settled as by a call.
    pub async fn probe(&self) -> Result<(), String> {
        let observed = PlatformCall::start(
            &self.traces,
            self.metrics.as_deref(),
            "health",
            "GET /v1/health",
            None,
        );
        let call = Call {
            operation: "health",
            route: "GET /v1/health",
            method: Method::GET,
            path_and_query: "/v1/health".into(),
            body: None,
            idempotency_key: super::auth::nonce(),
            case_number: None,
            purpose: None,
            expected: &[StatusCode::OK],
        };
        let (outcome, status, down) = match self.attempt(&call, observed.traceparent()).await {
            Ok(answer) if answer.status == StatusCode::OK => (Outcome::Ok, Some(200), None),
            Ok(answer) => (
                Outcome::Failed,
                Some(answer.status.as_u16()),
                Some(format!("GET /v1/health: {}", unexpected(&answer))),
            ),
            Err(failure) => {
                let status = match &failure {
                    Failure::Busy { status, .. } => Some(status.as_u16()),
                    _ => None,
                };
                let why = match failure {
                    Failure::Busy { status, .. } => {
                        format!("it reports itself unavailable ({status})")
                    }
                    other => other.sentence(),
                };
                (Outcome::Failed, status, Some(why))
            }
        };
        observed.finished(outcome, status, down.as_deref());
        self.learned(down.as_deref());
        down.map_or(Ok(()), Err)
    }
}

/// A header value; characters a header cannot carry (controls) are dropped rather than
/// failing the call, since every value here is ours (keys, case numbers, one-thing ids).
fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| {
        let cleaned: String = value.chars().filter(|c| !c.is_control()).collect();
        HeaderValue::from_bytes(cleaned.as_bytes()).unwrap_or(HeaderValue::from_static(""))
    })
}

/// The body, up to [`MAX_BODY`] bytes (a longer one is cut: it then fails to decode).
async fn read_body(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// The body of an answer the contract says is `T`.
pub fn decode<T: serde::de::DeserializeOwned>(
    operation: &str,
    answer: &Answer,
) -> Result<T, PlatformError> {
    serde_json::from_slice(&answer.body).map_err(|e| {
        PlatformError::Contract(format!(
            "{operation}: the {} answer is not the contract's body: {}",
            answer.status,
            json_problem(&e)
        ))
    })
}

/// What is wrong with a body, without quoting it: serde's messages quote the values
/// of a wrong type, which may be personal data; those that name a field only are kept.
fn json_problem(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        serde_json::error::Category::Data
            if message.starts_with("missing field") || message.starts_with("duplicate field") =>
        {
            message
        }
        serde_json::error::Category::Data => format!("a value of the wrong type at {at}"),
        _ => format!("not JSON (at {at})"),
    }
}

/// An answer the operation does not expect, described by its status and the problem's
/// `detail` (the contract keeps personal data out of it; it is bounded here).
pub fn unexpected(answer: &Answer) -> String {
    let detail = serde_json::from_slice::<crate::platform::contract::wire::Problem>(&answer.body)
        .ok()
        .map(|p| {
            if p.detail.is_empty() {
                p.title
            } else {
                p.detail
            }
        })
        .map(|d| bounded(&d))
        .filter(|d| !d.is_empty());
    match detail {
        Some(detail) => format!("answered {}: {detail}", answer.status),
        None => format!("answered {}", answer.status),
    }
}

/// At most 200 characters of a platform's text, without control characters, ID and
/// phone numbers masked: it travels into logs and to the filing region.
pub fn bounded(text: &str) -> String {
    crate::platform::contract::redact::free_text(text, 200)
}

//! One call of the contract as a check describes it ([`Call`]: the operation, the
//! request, which credentials it presents) and what came back ([`Reply`]), with the
//! judgements every check makes of an answer: the contract's body at the expected
//! status, or an RFC 9457 problem.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::mask;
use crate::platform::contract::{headers, wire::Problem};

/// Which credentials a call presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Those configured: the client certificate and the authentication headers.
    Configured,
    /// The client certificate (if any) but no authentication headers.
    NoHeaders,
    /// Authentication headers of the configured kind with a wrong secret.
    WrongHeaders,
    /// The configured headers over a connection without the client certificate.
    NoClientCert,
}

/// One call to make.
#[derive(Clone, Debug)]
pub struct Call {
    /// The contract's operation, as the OpenAPI document names it.
    pub operation: &'static str,
    pub method: Method,
    /// Path and query under the base URL, e.g. `/v1/case-events?limit=1`.
    pub path: String,
    pub body: Option<Vec<u8>>,
    /// What the body holds, for the report (personal data masked).
    pub body_note: Option<String>,
    pub headers: Vec<(&'static str, String)>,
    pub credentials: Credentials,
}

impl Call {
    pub fn get(operation: &'static str, path: impl Into<String>) -> Self {
        Self {
            operation,
            method: Method::GET,
            path: path.into(),
            body: None,
            body_note: None,
            headers: Vec::new(),
            credentials: Credentials::Configured,
        }
    }

    pub fn put(
        operation: &'static str,
        path: impl Into<String>,
        body: Vec<u8>,
        note: String,
    ) -> Self {
        Self {
            method: Method::PUT,
            body: Some(body),
            body_note: Some(note),
            ..Self::get(operation, path)
        }
    }

    pub fn post(
        operation: &'static str,
        path: impl Into<String>,
        body: Vec<u8>,
        note: String,
    ) -> Self {
        Self {
            method: Method::POST,
            ..Self::put(operation, path, body, note)
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A call about a case: `Tongban-Case-Number`; a take-over's idempotency key is its
    /// case number too.
    pub fn case(self, case_number: &str) -> Self {
        self.header(headers::CASE_NUMBER, case_number)
    }

    /// A register call's purpose of use.
    pub fn purpose(self, one_thing_id: &str, case_number: &str) -> Self {
        self.header(headers::PURPOSE_ONE_THING, one_thing_id)
            .header(headers::PURPOSE_CASE, case_number)
    }

    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }
}

/// Why a call got no answer.
#[derive(Clone, Debug)]
pub struct Failure {
    pub timed_out: bool,
    /// A sentence: the TLS explanation when there is one.
    pub sentence: String,
}

/// What came back.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: Option<u16>,
    pub content_type: String,
    pub body: Vec<u8>,
    pub latency: Duration,
    pub failure: Option<Failure>,
}

impl Reply {
    /// What came back, for a reason: `answered 500 (text/plain): …` or `no answer: …`.
    pub fn describe(&self) -> String {
        match (self.status, &self.failure) {
            (Some(status), _) => format!(
                "answered {status} ({}): {}",
                if self.content_type.is_empty() {
                    "no content type"
                } else {
                    &self.content_type
                },
                mask::truncate(&mask::excerpt(&self.body), 120)
            ),
            (None, Some(failure)) => format!("got no answer: {}", failure.sentence),
            (None, None) => "got no answer".to_owned(),
        }
    }

    /// The body as `T` when the status is `expected`; otherwise what came instead.
    pub fn expect_json<T: DeserializeOwned>(&self, expected: u16) -> Result<T, String> {
        if self.status != Some(expected) {
            return Err(format!("expected {expected}, {}", self.describe()));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "answered {expected} but the body is not the contract's {} ({}, at line {} \
                 column {})",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("body"),
                // serde's message quotes the offending value, which may be personal.
                json_error_kind(&e),
                e.line(),
                e.column()
            )
        })
    }

    /// The problem when the answer is `expected` with an RFC 9457 problem body
    /// (`application/problem+json`); otherwise what came instead.
    pub fn expect_problem(&self, expected: u16) -> Result<Problem, String> {
        if self.status != Some(expected) {
            return Err(format!(
                "expected {expected} problem+json, {}",
                self.describe()
            ));
        }
        if !self.content_type.starts_with("application/problem+json") {
            return Err(format!(
                "answered {expected} as {:?}, not application/problem+json",
                self.content_type
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            format!("answered {expected} with a problem body that does not parse: {e}")
        })
    }
}

/// What kind of JSON error, without the value serde's message would quote.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a field missing or of the wrong type",
        serde_json::error::Category::Eof => "cut short",
    }
}

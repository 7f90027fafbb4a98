//! A small client for the portal API, used by the demo, the tests and scripts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::Serialize;

const RECEIPT_TOKEN_HEADER: &str = crate::receipt_token::HEADER;
/// Receipts' tokens one client remembers.
const MAX_TOKENS: usize = 100_000;

/// Portal client errors.
#[derive(Debug, thiserror::Error)]
pub enum PortalClientError {
    #[error("request to {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("response from {url} is not JSON: {reason}")]
    Body { url: String, reason: String },
}

/// An HTTP status and its JSON body.
#[derive(Debug, Clone)]
pub struct PortalResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Talks to one node's portal. Like a portal that keeps its citizens' receipts, it
/// remembers each receipt's status token (the latest 100,000) and presents it when
/// reading that case's status.
#[derive(Clone)]
pub struct PortalClient {
    base: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl PortalClient {
    /// `base` like `http://127.0.0.1:8044`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            tokens: Arc::default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/applications`.
    pub async fn file(&self, filing: &impl Serialize) -> Result<PortalResponse, PortalClientError> {
        let body = serde_json::to_vec(filing).map_err(|e| PortalClientError::Request {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        self.send("POST", "/v1/applications", Bytes::from(body))
            .await
    }

    /// `POST /v1/applications` with an `Idempotency-Key`.
    pub async fn file_with_key(
        &self,
        filing: &impl Serialize,
        key: &str,
    ) -> Result<PortalResponse, PortalClientError> {
        let body = serde_json::to_vec(filing).map_err(|e| PortalClientError::Request {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        self.send_with(
            "POST",
            "/v1/applications",
            Bytes::from(body),
            &[("idempotency-key", key)],
        )
        .await
    }

    /// `POST /v1/applications` with extra headers (`traceparent`, `idempotency-key`).
    pub async fn file_with_headers(
        &self,
        filing: &impl Serialize,
        headers: &[(&str, &str)],
    ) -> Result<PortalResponse, PortalClientError> {
        let body = serde_json::to_vec(filing).map_err(|e| PortalClientError::Request {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        self.send_with("POST", "/v1/applications", Bytes::from(body), headers)
            .await
    }

    /// `GET /v1/applications/{case_number}` with the status token of the receipt this
    /// client was given for it (none if it filed no such case: then 404).
    pub async fn status(&self, case_number: &str) -> Result<PortalResponse, PortalClientError> {
        let token = self.token_of(case_number).unwrap_or_default();
        self.status_with_token(case_number, &token).await
    }

    /// `GET /v1/applications/{case_number}` presenting `token`.
    pub async fn status_with_token(
        &self,
        case_number: &str,
        token: &str,
    ) -> Result<PortalResponse, PortalClientError> {
        self.send_with(
            "GET",
            &format!("/v1/applications/{case_number}"),
            Bytes::new(),
            &[(RECEIPT_TOKEN_HEADER, token)],
        )
        .await
    }

    /// The status token of a receipt this client was given.
    pub fn token_of(&self, case_number: &str) -> Option<String> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(case_number)
            .cloned()
    }

    /// Remembers a receipt's status token from a filing's answer.
    fn keep_token(&self, body: &serde_json::Value) {
        if let (Some(case), Some(token)) =
            (body["case_number"].as_str(), body["status_token"].as_str())
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            // A long load through one client keeps the latest receipts, not every one.
            if tokens.len() >= MAX_TOKENS
                && let Some(old) = tokens.keys().next().cloned()
            {
                tokens.remove(&old);
            }
            tokens.insert(case.to_owned(), token.to_owned());
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<PortalResponse, PortalClientError> {
        let body = serde_json::to_vec(body).map_err(|e| PortalClientError::Request {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        self.send("POST", path, Bytes::from(body)).await
    }

    /// `GET path` (probes, operator endpoints).
    pub async fn get(&self, path: &str) -> Result<PortalResponse, PortalClientError> {
        self.send("GET", path, Bytes::new()).await
    }

    /// Any request with a raw body (tests send malformed bodies on purpose).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<PortalResponse, PortalClientError> {
        self.send_with(method, path, body, &[]).await
    }

    /// Any request with a raw body and extra headers (a `content-type` given here
    /// replaces the JSON one).
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<PortalResponse, PortalClientError> {
        let url = format!("{}{path}", self.base);
        let err = |reason: String| PortalClientError::Request {
            url: url.clone(),
            reason,
        };
        let mut request = http::Request::builder().method(method).uri(&url);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| err(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        if method == "POST" && path == "/v1/applications" {
            self.keep_token(&body);
        }
        Ok(PortalResponse { status, body })
    }
}

//! Calls to an issuing node for the decoded lookups: one unary gRPC call over the
//! route's pooled HTTP/2 connection, with the requesting region stated as the verified
//! origin (the issuer records it in its access log) and the call's deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tongban_proto::{contract::metadata, rules::region::RegionPrefix};

use crate::{
    ejection::{CallOutcome, Deadline},
    message::Message,
    registry::Route,
    unary,
};

/// Why an issuer gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("answered {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("answer unreadable: {0}")]
    Unreadable(String),
}

/// Calls `path` on the issuer behind `route` for `requester`.
pub async fn call<Q, R>(
    route: &Route,
    path: &'static str,
    request: &Q,
    requester: &RegionPrefix,
    traceparent: Option<&HeaderValue>,
    deadline: Duration,
) -> Result<R, IssuerError>
where
    Q: prost::Message,
    R: prost::Message + Default,
{
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let ms = deadline.as_millis().clamp(1, 99_999_999);
    if let Ok(timeout) = HeaderValue::from_str(&format!("{ms}m")) {
        headers.insert("grpc-timeout", timeout);
    }
    if let Ok(origin) = HeaderValue::from_str(requester.as_str()) {
        headers.insert(metadata::VERIFIED_ORIGIN, origin);
    }
    if let Some(trace) = traceparent {
        headers.insert(metadata::TRACEPARENT, trace.clone());
    }
    let body = Message::from(unary::encode(request));
    // The timer below gives the call up at `deadline`: then it counts against the
    // issuer's endpoint (if the deadline is one worth counting, see `ejection`).
    let expires = Deadline {
        from: std::time::Instant::now(),
        within: deadline,
    };
    let interrupted =
        |e: &dyn std::fmt::Display| IssuerError::Unreachable(format!("answer interrupted: {e}"));
    let exchange = async {
        let (response, report) = route
            .pool
            .call(headers, path, body, expires)
            .await
            .map_err(|e| IssuerError::Unreachable(e.to_string()))?;
        let (head, mut stream) = response.into_parts();
        // Not charged to the caller's permit: an issuer's answer is decoded and dropped
        // at once, at most MAX_MESSAGE, and issuer calls are bounded by the calls in
        // flight (one per cache miss).
        let data = match Message::read(&mut stream, &mut ()).await {
            Ok(data) => data,
            Err(e) => {
                report.ended(CallOutcome::of_read(&e));
                return Err(interrupted(&e));
            }
        };
        let trailers = match stream.trailers().await {
            Ok(trailers) => trailers,
            Err(e) => {
                report.ended(CallOutcome::of_error(&e));
                return Err(interrupted(&e));
            }
        };
        report.answered();
        let status = trailers
            .as_ref()
            .and_then(tonic::Status::from_header_map)
            .or_else(|| tonic::Status::from_header_map(&head.headers));
        match status {
            Some(s) if s.code() != tonic::Code::Ok => Err(IssuerError::Refused {
                code: s.code(),
                message: s.message().to_owned(),
            }),
            None if head.status != http::StatusCode::OK => {
                Err(IssuerError::Unreachable(format!("HTTP {}", head.status)))
            }
            _ => unary::decode::<R>(&data).map_err(|e| IssuerError::Unreadable(e.to_string())),
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| IssuerError::Unreachable(format!("no answer within {deadline:?}")))?
}

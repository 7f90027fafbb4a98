//! Calls to an issuing node for the decoded lookups: one unary gRPC call over the
//! route's pooled HTTP/2 connection, with the requesting region stated as the verified
//! origin (the issuer records it in its access log) and the call's deadline.
//!
//! The answer (up to `MAX_MESSAGE`, whatever the issuer sends) is charged to the call
//! that caused this one, through the budget it passes: each chunk as it arrives, then,
//! before anything is decoded, the bytes the decoded answer and its checks will hold
//! (`footprint::decoded_bytes`). Charged to the caller's own permit rather than a
//! reservation of the issuer call's own: the gateway's budget and the origin's fair
//! share then cover it, and it is given back when that call ends. Of concurrent misses
//! of one key, the caller whose load runs is charged (`cache`); a refusal is the
//! caller's (`IssuerError::Shed`), never counted against the issuer's endpoint.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tongban_proto::{contract::metadata, rules::region::RegionPrefix};

use super::footprint;
use crate::{
    ejection::{CallOutcome, Deadline},
    error::GatewayError,
    message::{Budget, Message, ReadError},
    registry::Route,
    unary,
};

/// Why an issuer gave no usable answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("answered {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("answer unreadable: {0}")]
    Unreadable(String),
    /// The calling region's share of the gateway's buffers could not hold the answer:
    /// the caller's own refusal (RESOURCE_EXHAUSTED), not the issuer's fault.
    #[error("{0}")]
    Shed(String),
}

impl IssuerError {
    /// Whether the error concerned the call that asked alone (see `cache`).
    pub fn is_shed(&self) -> bool {
        matches!(self, Self::Shed(_))
    }
}

fn shed(refusal: GatewayError) -> IssuerError {
    IssuerError::Shed(refusal.to_string())
}

/// Calls `path` on the issuer behind `route` for `requester` (none: on the gateway's own
/// behalf), the answer charged to `budget`.
pub async fn call<Q, R>(
    route: &Route,
    path: &'static str,
    request: &Q,
    requester: Option<&RegionPrefix>,
    traceparent: Option<&HeaderValue>,
    deadline: Duration,
    mut budget: impl Budget,
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
    if let Some(origin) = requester.and_then(|r| HeaderValue::from_str(r.as_str()).ok()) {
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
        let data = match Message::read(&mut stream, &mut budget).await {
            Ok(data) => data,
            Err(e) => {
                report.ended(CallOutcome::of_read(&e));
                return Err(match e {
                    ReadError::Refused(refusal) => shed(refusal),
                    e => interrupted(&e),
                });
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
            _ => decode_charged(data, &mut budget),
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| IssuerError::Unreachable(format!("no answer within {deadline:?}")))?
}

/// Decodes the answer `data`, `budget` charged first for what that holds: joining its
/// chunks copies it, and the decoded answer and its checks hold several times its size
/// when it has many short fields.
fn decode_charged<R: prost::Message + Default>(
    data: Message,
    budget: &mut impl Budget,
) -> Result<R, IssuerError> {
    let joined = data.contiguous();
    drop(data);
    let decoded = footprint::decoded_bytes(joined.get(5..).unwrap_or_default());
    budget.charge(joined.len() + decoded).map_err(shed)?;
    unary::decode::<R>(&Message::from(joined)).map_err(|e| IssuerError::Unreadable(e.to_string()))
}

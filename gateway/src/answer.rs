//! A call's outcome, whole: what the HTTP/2 server writes back to the caller.

use http::{HeaderMap, HeaderValue};
use tongban_proto::contract::metadata::names::GRPC_STATUS;

use crate::message::Message;

/// An answer to the caller: response head, message bytes and trailers.
pub struct Answer {
    pub head: http::response::Parts,
    pub data: Message,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    /// The call's outcome as stated (trailers, or headers if trailers-only).
    pub fn grpc_status(&self) -> Option<&HeaderValue> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(GRPC_STATUS))
            .or_else(|| self.head.headers.get(GRPC_STATUS))
    }

    /// A trailers-only answer carrying `status` (and its metadata).
    pub fn from_status(status: tonic::Status) -> Self {
        let (head, ()) = status.into_http::<()>().into_parts();
        Self {
            head,
            data: Message::default(),
            trailers: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_answer_states_its_code_in_the_head() {
        let answer = Answer::from_status(tonic::Status::not_found("no node"));
        assert_eq!(
            answer.grpc_status().and_then(|v| v.to_str().ok()),
            Some("5")
        );
        assert!(answer.data.is_empty() && answer.trailers.is_none());
    }
}

//! A call as the gateway's pipeline sees it: a typed value, free of any connection.
//!
//! The HTTP/2 server turns each stream into a [`Call`] (method from the table, the peer
//! verified at the handshake, the request metadata, the message) and writes back the
//! pipeline's `Answer`; everything in between works on these values, so every phase can
//! be run and tested without a network.

use std::{borrow::Cow, sync::Arc, time::Instant};

use http::HeaderMap;
use tongban_runtime::serving::incoming::PeerInfo;

use crate::{
    error::GatewayError,
    message::{MAX_MESSAGE, Message, ReadError},
    methods::{self, Method},
};

/// Which method a call names.
#[derive(Clone, Copy, Debug)]
pub enum MethodRef {
    Known(&'static Method),
    /// A path under the relayed service that the table does not have (kept printable
    /// for the trail).
    Unknown,
}

/// The request message: still arriving on its stream, or already whole.
pub enum Body {
    Stream(h2::RecvStream),
    Whole(Message),
}

/// One call to the gateway.
pub struct Call {
    pub method: MethodRef,
    /// The requested path, as received (for the trail of unknown methods).
    pub path: http::uri::PathAndQuery,
    /// The caller, verified at the TLS handshake.
    pub peer: Arc<PeerInfo>,
    /// The request metadata, as received.
    pub headers: HeaderMap,
    pub body: Body,
    /// When the call arrived.
    pub received: Instant,
}

impl Call {
    /// A call from an HTTP/2 request.
    pub fn from_request(parts: http::request::Parts, body: Body, peer: Arc<PeerInfo>) -> Self {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let method = match methods::lookup(path.path()) {
            Some(m) => MethodRef::Known(m),
            None => MethodRef::Unknown,
        };
        Self {
            method,
            path,
            peer,
            headers: parts.headers,
            body,
            received: Instant::now(),
        }
    }

    /// The method's table entry, or the refusal of an unknown method.
    pub fn known_method(&self) -> Result<&'static Method, GatewayError> {
        match self.method {
            MethodRef::Known(m) => Ok(m),
            MethodRef::Unknown => Err(GatewayError::UnknownMethod(self.method_name().into_owned())),
        }
    }

    /// The method's name as audited: the table's, or a printable, bounded form of what
    /// the caller asked for.
    pub fn method_name(&self) -> Cow<'static, str> {
        match self.method {
            MethodRef::Known(m) => Cow::Borrowed(m.name),
            MethodRef::Unknown => {
                let path = self.path.path();
                Cow::Owned(printable(
                    path.strip_prefix(methods::GATEWAY_SERVICE).unwrap_or(path),
                ))
            }
        }
    }

    /// The whole request message, read within `deadline` if it is still arriving. A
    /// body that never ends would hold the stream forever; the whole message has almost
    /// always arrived with the headers, and then no timer is ever registered.
    pub async fn message(
        &mut self,
        deadline: std::time::Duration,
        budget: &mut impl crate::message::Budget,
    ) -> Result<Message, GatewayError> {
        match &mut self.body {
            Body::Whole(message) => Ok(std::mem::take(message)),
            Body::Stream(stream) => tokio::time::timeout(deadline, Message::read(stream, budget))
                .await
                .map_err(|_| GatewayError::Stalled(deadline))?
                .map_err(|e| match e {
                    ReadError::TooLarge => GatewayError::TooLarge(MAX_MESSAGE),
                    ReadError::Broken(e) => GatewayError::ClientGone(e.to_string()),
                    ReadError::Refused(e) => e,
                }),
        }
    }
}

impl Call {
    /// Reads what is left of the request and drops it, within `wait`: a call refused
    /// before its message was read is answered after the caller finished sending, so
    /// the answer does not reset a stream the caller is still writing (h2 closes a
    /// connection that collects too many such resets, failing every call on it).
    pub async fn discard(&mut self, wait: std::time::Duration) {
        if let Body::Stream(stream) = &mut self.body {
            let drain = async {
                let mut total = 0;
                while let Some(Ok(chunk)) = stream.data().await {
                    let _ = stream.flow_control().release_capacity(chunk.len());
                    total += chunk.len();
                    if total > MAX_MESSAGE {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(wait, drain).await;
        }
    }
}

/// A caller-chosen name as it may appear in logs and errors: printable ASCII only (a
/// path may carry bytes that log readers take for line breaks), at most 64.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Calls built in memory, for the phases' unit tests.

    use super::*;
    use tongban_runtime::trust::identity::PeerIdentity;

    /// A call to `path` from `identity` with `metadata`, its message already whole.
    pub fn call(path: &'static str, identity: &str, metadata: &[(&'static str, &str)]) -> Call {
        let mut request = http::Request::post(path);
        for (k, v) in metadata {
            request = request.header(*k, *v);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let peer = Arc::new(PeerInfo {
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            identity: PeerIdentity::from_uri(identity).unwrap(),
        });
        Call::from_request(
            parts,
            Body::Whole(Message::from(bytes::Bytes::from_static(b"\0\0\0\0\0"))),
            peer,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{test_support::call, *};

    #[test]
    fn known_and_unknown_methods() {
        let c = call(
            "/tongban.federation.v1.Gateway/DeliverApplication",
            "spiffe://tongban/region/31",
            &[],
        );
        assert_eq!(c.known_method().unwrap().name, "DeliverApplication");
        let c = call(
            "/tongban.federation.v1.Gateway/Delete%0A%7B%22audit%22",
            "spiffe://tongban/region/31",
            &[],
        );
        let err = c.known_method().unwrap_err();
        assert!(matches!(err, GatewayError::UnknownMethod(_)), "{err}");
        assert_eq!(c.method_name(), "Delete%0A%7B%22audit%22");
    }

    #[test]
    fn unknown_method_names_are_made_printable_and_short() {
        assert_eq!(
            printable("Delete\u{85}{\"audit\":\"relayed\"}\u{2028}x"),
            "Delete{\"audit\":\"relayed\"}x"
        );
        assert_eq!(printable(&"a".repeat(500)).len(), 64);
    }

    #[tokio::test]
    async fn a_whole_message_is_taken_once() {
        let mut c = call(
            "/tongban.federation.v1.Gateway/QueryStatus",
            "spiffe://tongban/region/31",
            &[],
        );
        let m = c
            .message(std::time::Duration::from_secs(1), &mut ())
            .await
            .unwrap();
        assert!(!m.is_empty());
    }
}

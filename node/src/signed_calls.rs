//! Checks the sending region's signature on what it says to this node (deliveries and
//! status pushes), over the exact message bytes that arrived, before the service decodes
//! them: the gateway relays those bytes untouched, so a signature the region made over
//! its encoding verifies here, and one the gateway forged or a message it altered does
//! not.
//!
//! The check's outcome rides to the handler in the request's extensions
//! ([`SignatureCheck`]): the handler refuses (so the refusal is recorded, traced and
//! counted like every answer) or keeps the signature with the case as evidence.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use tongban_proto::{
    contract::metadata,
    rules::message_signature::{MessageSignature, Signed},
};
use tonic::{Status, body::Body, server::NamedService};

use crate::{
    error::NodeError,
    peers::{PeerKeys, SharedPeerKeys},
    store::SignedEvidence,
    verified_origin::VerifiedOrigin,
};

/// Largest message collected for the check: tonic's own limit on a decoded message,
/// with its 5-byte frame.
const MAX_FRAMED: usize = 4 * 1024 * 1024 + 5;

/// What a region signed, as received: kept with the case.
#[derive(Debug)]
pub struct SignedMessage {
    pub method: &'static str,
    pub signature: MessageSignature,
    /// The header as it arrived.
    pub header: String,
    /// The target region it was signed for.
    pub target_region: String,
    /// The exact message bytes signed (the frame's payload).
    pub message: Bytes,
    /// What the signer owns, from this node's copy of the registry.
    pub signer: VerifiedOrigin,
}

impl SignedMessage {
    /// The evidence to keep with `case_number`, for the call under `idempotency_key`.
    pub fn evidence(&self, case_number: &str, idempotency_key: &str) -> SignedEvidence {
        SignedEvidence {
            case_number: case_number.to_owned(),
            method: self.method.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            target_region: self.target_region.clone(),
            signer_region: self.signature.region.to_string(),
            key_id: self.signature.key_id.clone(),
            signed_at: i64::try_from(self.signature.signed_at).unwrap_or(i64::MAX),
            signature: self.header.clone(),
            message: self.message.to_vec(),
            received_ms: crate::instants::now_ms(),
        }
    }
}

/// The outcome of the signature check of a signed method's call.
#[derive(Clone, Debug)]
pub struct SignatureCheck(pub Result<Arc<SignedMessage>, String>);

impl SignatureCheck {
    /// The signed message of `request`, or its refusal.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Arc<SignedMessage>, NodeError> {
        match request.extensions().get::<SignatureCheck>() {
            Some(SignatureCheck(Ok(signed))) => Ok(signed.clone()),
            Some(SignatureCheck(Err(why))) => Err(NodeError::Unauthenticated(why.clone())),
            None => Err(NodeError::Unauthenticated(
                "the call's signature was not checked".into(),
            )),
        }
    }
}

/// The methods whose messages must be signed, by the last segment of their path.
fn signed_method(path: &str) -> Option<&'static str> {
    match path.rsplit('/').next()? {
        "DeliverApplication" => Some("DeliverApplication"),
        "PushStatus" => Some("PushStatus"),
        "SubmitEvaluation" => Some("SubmitEvaluation"),
        "RaiseDispute" => Some("RaiseDispute"),
        "SettleDispute" => Some("SettleDispute"),
        _ => None,
    }
}

/// The `Node` service with its signed calls checked.
#[derive(Clone)]
pub struct SignedCalls<S> {
    inner: S,
    peers: SharedPeerKeys,
    max_age: Duration,
}

impl<S> SignedCalls<S> {
    pub fn new(inner: S, peers: SharedPeerKeys, max_age: Duration) -> Self {
        Self {
            inner,
            peers,
            max_age,
        }
    }
}

impl<S: NamedService> NamedService for SignedCalls<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for SignedCalls<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(method) = signed_method(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        // The clone that was made ready is the one called (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let peers = self.peers.get();
        let max_age = self.max_age;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let framed = match Limited::new(body, MAX_FRAMED).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(Status::resource_exhausted(
                        "the message is larger than a node takes, or its stream broke",
                    )
                    .into_http());
                }
            };
            let check = check(method, &parts.headers, &framed, &peers, max_age);
            parts.extensions.insert(SignatureCheck(check.map(Arc::new)));
            let request = http::Request::from_parts(parts, Body::new(Full::new(framed)));
            inner.call(request).await
        })
    }
}

/// Checks the signature of a `method` call whose gRPC body is `framed`.
fn check(
    method: &'static str,
    headers: &http::HeaderMap,
    framed: &Bytes,
    peers: &PeerKeys,
    max_age: Duration,
) -> Result<SignedMessage, String> {
    let header = headers
        .get(metadata::SIGNATURE)
        .ok_or_else(|| {
            format!(
                "{method} must carry the sending region's signature ({})",
                metadata::SIGNATURE
            )
        })?
        .to_str()
        .map_err(|_| format!("{} is not visible ASCII", metadata::SIGNATURE))?;
    let signature = MessageSignature::parse(header).map_err(|e| e.to_string())?;
    let (region, key_id) = (signature.region, signature.key_id.as_str());
    let key = peers.key(&region, key_id).ok_or_else(|| {
        format!("key {key_id} of region {region} is not in this node's copy of the registry")
    })?;
    let signed_at = signature.signed_at();
    if !signature.is_fresh(SystemTime::now(), max_age) {
        return Err(format!(
            "the signature's time {} is not within {} of this node's clock",
            humantime::format_rfc3339_seconds(signed_at),
            humantime::format_duration(max_age)
        ));
    }
    if !key.valid_at(signed_at) {
        return Err(format!(
            "key {key_id} of region {region} is outside its registered window"
        ));
    }
    let message = unframe(framed)?;
    let signed = Signed::of_call(method, headers, &message);
    if !signature.verifies(&key.public_key, &signed) {
        return Err(format!(
            "the signature does not verify with key {key_id} of region {region}: the call \
             is not what that region signed"
        ));
    }
    Ok(SignedMessage {
        method,
        signer: peers.owner(region),
        header: header.to_owned(),
        target_region: signed.target_region.to_owned(),
        signature,
        message,
    })
}

/// The one uncompressed message in a unary call's gRPC body.
fn unframe(framed: &Bytes) -> Result<Bytes, String> {
    let refused = || "the body must be one uncompressed gRPC message".to_owned();
    let (&flag, rest) = framed.split_first().ok_or_else(refused)?;
    let len: [u8; 4] = rest
        .get(..4)
        .and_then(|l| l.try_into().ok())
        .ok_or_else(refused)?;
    let len = usize::try_from(u32::from_be_bytes(len)).map_err(|_| refused())?;
    if flag != 0 || framed.len() != 5 + len {
        return Err(refused());
    }
    Ok(framed.slice(5..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_uncompressed_message_is_taken() {
        let framed = Bytes::from_static(&[0, 0, 0, 0, 2, 7, 8]);
        assert_eq!(unframe(&framed).unwrap(), Bytes::from_static(&[7, 8]));
        for bad in [
            &[][..],
            &[0, 0, 0][..],
            &[1, 0, 0, 0, 2, 7, 8][..],
            &[0, 0, 0, 0, 3, 7, 8][..],
            &[0, 0, 0, 0, 1, 7, 8][..],
        ] {
            assert!(unframe(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_methods_are_named_by_their_path() {
        assert_eq!(
            signed_method("/tongban.federation.v1.Node/PushStatus"),
            Some("PushStatus")
        );
        assert_eq!(
            signed_method("/tongban.federation.v1.Node/QueryStatus"),
            None
        );
    }
}

//! Test clients that sign what they send as a region's node does (`tongban-signature`
//! on deliveries, status pushes and revocations), with that region's issuer key from
//! the federation's PKI folder: a test that calls the gateway or a node directly speaks
//! for the region as a real node would, and one that means to forge or leave out the
//! signature sets the header itself or uses a plain channel.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tongban_node::{
    config::{IssuerConfig, SigningKeyConfig},
    issuer::IssuerKeys,
};
use tongban_proto::{
    contract::metadata,
    rules::{message_signature::Signed, region::RegionPrefix},
};
use tonic::{body::Body, transport::Channel};

/// A region's signing key, as its node holds it.
#[derive(Clone)]
pub struct RegionSigner {
    region: RegionPrefix,
    keys: Arc<IssuerKeys>,
}

impl std::fmt::Debug for RegionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionSigner")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl RegionSigner {
    /// Region `prefix`'s first issuer key (`issuer-<prefix>-k1.key`) in the PKI folder
    /// `pki`; `None` if the federation has no key for it.
    pub fn of(pki: &Path, prefix: RegionPrefix) -> Option<Self> {
        let id = format!("{prefix}-k1");
        let file = pki.join(format!("issuer-{id}.key"));
        file.exists().then(|| Self::load(prefix, id, file))
    }

    /// A key nobody registered, written into `dir`, that claims to be region `prefix`'s
    /// `key_id`: a forger's.
    pub fn forged(dir: &Path, prefix: RegionPrefix, key_id: &str) -> Self {
        let key = tongban_runtime::trust::pki::IssuerKey::generate(key_id).expect("a key");
        let sub = dir.join("forged");
        std::fs::create_dir_all(&sub).expect("a folder for the forged key");
        let file = key.write(&sub).expect("the forged key written");
        Self::load(prefix, key_id.to_owned(), file)
    }

    fn load(region: RegionPrefix, id: String, file: std::path::PathBuf) -> Self {
        let keys = IssuerKeys::load(&IssuerConfig {
            keys: vec![SigningKeyConfig {
                id,
                file,
                not_before: None,
            }],
            assertion_validity: None,
        })
        .expect("the issuer key loads");
        Self {
            region,
            keys: Arc::new(keys),
        }
    }

    /// The signature header of `message` sent as `method` with `headers`.
    pub fn header(&self, method: &str, headers: &http::HeaderMap, message: &[u8]) -> String {
        let signed = Signed::of_call(method, headers, message);
        self.keys
            .sign_message(self.region, &signed)
            .expect("a key in force")
            .to_header()
    }
}

/// The methods a region signs, by the last segment of their path.
fn signed_method(path: &str) -> Option<&str> {
    let method = path.rsplit('/').next()?;
    [
        "DeliverApplication",
        "PushStatus",
        "PublishRevocation",
        "SubmitEvaluation",
        "RaiseDispute",
        "SettleDispute",
    ]
    .contains(&method)
    .then_some(method)
}

/// A channel whose signed methods' calls are signed by `signer` (unless they carry a
/// signature already).
#[derive(Clone, Debug)]
pub struct SigningChannel {
    inner: Channel,
    signer: Option<RegionSigner>,
}

impl SigningChannel {
    pub fn new(inner: Channel, signer: Option<RegionSigner>) -> Self {
        Self { inner, signer }
    }

    /// The same connection, signing as `signer`.
    pub fn signing_as(self, signer: RegionSigner) -> Self {
        Self {
            signer: Some(signer),
            ..self
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<Body>> for SigningChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = signed_method(request.uri().path()).map(str::to_owned);
        let signer = self
            .signer
            .clone()
            .filter(|_| !request.headers().contains_key(metadata::SIGNATURE));
        Box::pin(async move {
            let (Some(method), Some(signer)) = (method, signer) else {
                return inner.call(request).await.map_err(Into::into);
            };
            let (mut parts, body) = request.into_parts();
            let framed: Bytes = body.collect().await?.to_bytes();
            let header =
                signer.header(&method, &parts.headers, framed.get(5..).unwrap_or_default());
            parts.headers.insert(
                metadata::SIGNATURE,
                http::HeaderValue::from_str(&header).expect("an ASCII header"),
            );
            let request = http::Request::from_parts(parts, Body::new(Full::new(framed)));
            inner.call(request).await.map_err(Into::into)
        })
    }
}

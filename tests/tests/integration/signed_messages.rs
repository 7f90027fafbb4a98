//! What a region says to another is signed by that region and checked by the receiver
//! against its own copy of the registry: a forged status push that arrives with the
//! right TLS (the gateway's certificate, as a compromised gateway would present) but not
//! the handling region's signature is refused and changes nothing; an unsigned delivery
//! and an unsigned revocation are refused; what was signed is kept with the case and
//! verifies again later with the sender's registered key.

#![allow(clippy::unwrap_used)]

use prost::Message;
use tongban_kit::testing::{RegionSigner, SigningChannel, TestFederation};
use tongban_node::{peers::PeerKeys, platform::Platform, store::SignedEvidence};
use tongban_proto::{
    contract::metadata,
    rules::{
        message_signature::{MessageSignature, Signed},
        region::RegionPrefix,
    },
    v1::{PublishRevocationRequest, gateway_client::GatewayClient, node_client::NodeClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, Request, metadata::MetadataValue};

use super::delegated_cities::{
    application, check, delivery, federation, file_and_deliver, outcome, push, region,
    stored_status,
};

/// Node `prefix` called with the gateway's certificate, signing nothing by itself.
async fn node_as_gateway(t: &TestFederation, prefix: &str) -> NodeClient<SigningChannel> {
    let files = t.tls_files(&PeerIdentity::Gateway);
    let url = format!("https://{}", t.fed.node(prefix).unwrap().federation_addr);
    let channel = tongban_kit::testing::channel(&url, &files, &region(prefix))
        .await
        .unwrap();
    NodeClient::new(channel)
}

/// `request` as the gateway relays it for `origin`.
fn relayed<T>(mut request: Request<T>, origin: &'static str) -> Request<T> {
    request.metadata_mut().insert(
        metadata::VERIFIED_ORIGIN,
        MetadataValue::from_static(origin),
    );
    request
}

/// `request` with the signature header `signer` makes over `message`'s encoding as
/// `method` (which may differ from what is sent: a signature lifted from another call).
fn signed_as<T>(
    mut request: Request<T>,
    signer: &RegionSigner,
    method: &str,
    message: &impl Message,
) -> Request<T> {
    let headers = request.metadata().clone().into_headers();
    let header = signer.header(method, &headers, &message.encode_to_vec());
    request
        .metadata_mut()
        .insert(metadata::SIGNATURE, header.parse().unwrap());
    request
}

/// Whether `evidence` verifies with its signer's key in the federation's registry.
fn verifies(t: &TestFederation, evidence: &SignedEvidence) -> bool {
    let peers = PeerKeys::load(&t.dir.path().join("registry.toml")).unwrap();
    let signature = MessageSignature::parse(&evidence.signature).unwrap();
    let key = peers.key(&signature.region, &signature.key_id).unwrap();
    signature.verifies(
        &key.public_key,
        &Signed {
            method: &evidence.method,
            target_region: &evidence.target_region,
            idempotency_key: &evidence.idempotency_key,
            message: &evidence.message,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_status_push_is_refused_and_what_was_signed_is_kept_with_the_case() {
    let t = federation(&["310000", "440000", "110000"]).await;
    // Filed at 31 for a resident of 44: handled by 44.
    let resident = t.residents("44")[0].clone();
    let case = file_and_deliver(&t, "31", &resident).await;
    let (stage, sequence) = stored_status(&t, "31", &case).await;

    // The delivery that reached 44 through the gateway was signed by 31, and 44 keeps it.
    let at_44 = t
        .fed
        .node("44")
        .unwrap()
        .store
        .signed_messages(case.clone())
        .await
        .unwrap();
    let delivered = at_44
        .iter()
        .find(|e| e.method == "DeliverApplication")
        .expect("kept");
    assert_eq!(
        (delivered.signer_region.as_str(), delivered.key_id.as_str()),
        ("31", "31-k1")
    );
    assert!(verifies(&t, delivered), "{delivered:?}");

    let mut shanghai = node_as_gateway(&t, "31").await;
    let next = sequence + 1;
    let message = |seq| push(&case, "310000", seq, "p:forged").into_inner();
    let forger = RegionSigner::forged(t.dir.path(), RegionPrefix::parse("44").unwrap(), "44-k1");
    let rows = [
        (
            "a push as 44, unsigned",
            Some(Code::Unauthenticated),
            outcome(
                shanghai
                    .push_status(relayed(push(&case, "310000", next, "p:1"), "44"))
                    .await,
            ),
        ),
        (
            "a push as 44, signed with a key 44 never registered",
            Some(Code::Unauthenticated),
            outcome(
                shanghai
                    .push_status(signed_as(
                        relayed(push(&case, "310000", next, "p:forged"), "44"),
                        &forger,
                        "PushStatus",
                        &message(next),
                    ))
                    .await,
            ),
        ),
        (
            "a push as 44, 44's signature lifted from another status",
            Some(Code::Unauthenticated),
            outcome(
                shanghai
                    .push_status(signed_as(
                        relayed(push(&case, "310000", next + 500, "p:forged"), "44"),
                        &t.signer("44"),
                        "PushStatus",
                        &message(next),
                    ))
                    .await,
            ),
        ),
        (
            "a push as 44, 44's signature of a delivery",
            Some(Code::Unauthenticated),
            outcome(
                shanghai
                    .push_status(signed_as(
                        relayed(push(&case, "310000", next, "p:forged"), "44"),
                        &t.signer("44"),
                        "DeliverApplication",
                        &message(next),
                    ))
                    .await,
            ),
        ),
        (
            "a push as 44, signed by 11 (registered, but not the handling region)",
            Some(Code::PermissionDenied),
            outcome(
                shanghai
                    .push_status(signed_as(
                        relayed(push(&case, "310000", next, "p:forged"), "44"),
                        &t.signer("11"),
                        "PushStatus",
                        &message(next),
                    ))
                    .await,
            ),
        ),
    ];
    check(&rows);
    assert_eq!(
        stored_status(&t, "31", &case).await,
        (stage, sequence),
        "a forged push changed the case"
    );

    // Signed by 44, the same push is applied, and 31 keeps what 44 signed.
    let signed = shanghai
        .push_status(signed_as(
            relayed(push(&case, "310000", next, "p:signed"), "44"),
            &t.signer("44"),
            "PushStatus",
            push(&case, "310000", next, "p:signed").get_ref(),
        ))
        .await
        .unwrap();
    assert!(signed.into_inner().applied);
    assert_eq!(stored_status(&t, "31", &case).await.1, next);
    let at_31 = t
        .fed
        .node("31")
        .unwrap()
        .store
        .signed_messages(case.clone())
        .await
        .unwrap();
    let pushed = at_31
        .iter()
        .find(|e| e.idempotency_key == "p:signed")
        .expect("kept");
    assert_eq!(
        (pushed.method.as_str(), pushed.signer_region.as_str()),
        ("PushStatus", "44")
    );
    assert!(verifies(&t, pushed), "{pushed:?}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_deliveries_and_revocations_are_refused() {
    let t = federation(&["310000", "440000"]).await;
    let resident = t.residents("44")[0].clone();
    let app = application(&t, "310000-20261204-90000001", "310000", &resident).await;

    // Straight to 44 with the gateway's certificate, for 31: unsigned, then forged.
    let mut guangdong = node_as_gateway(&t, "44").await;
    let forger = RegionSigner::forged(t.dir.path(), RegionPrefix::parse("31").unwrap(), "31-k1");
    let forged = signed_as(
        relayed(delivery(&app, "d:1"), "31"),
        &forger,
        "DeliverApplication",
        delivery(&app, "d:1").get_ref(),
    );
    let rows = [
        (
            "a delivery for 31, unsigned",
            Some(Code::Unauthenticated),
            outcome(
                guangdong
                    .deliver_application(relayed(delivery(&app, "d:1"), "31"))
                    .await,
            ),
        ),
        (
            "a delivery for 31, signed with a key 31 never registered",
            Some(Code::Unauthenticated),
            outcome(guangdong.deliver_application(forged).await),
        ),
    ];
    check(&rows);
    let platform = &t.fed.node("44").unwrap().platform;
    assert!(
        platform.case(&app.case_number).await.unwrap().is_none(),
        "an unsigned delivery reached 44's platform"
    );

    // A revocation published to the gateway without 44's signature, then with it.
    let revocation = PublishRevocationRequest {
        license_id: "440305-HR-0000012".into(),
        reason: "test".into(),
        ..PublishRevocationRequest::default()
    };
    let files = t.tls_files(&region("44"));
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    let plain = tongban_kit::testing::channel(&url, &files, &PeerIdentity::Gateway)
        .await
        .unwrap();
    let with_key = |request: PublishRevocationRequest| {
        let mut request = Request::new(request);
        request.metadata_mut().insert(
            metadata::IDEMPOTENCY_KEY,
            MetadataValue::from_static("revoke:test"),
        );
        request
    };
    let refused = GatewayClient::new(plain.clone())
        .publish_revocation(with_key(revocation.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("signature"),
        "{}",
        refused.message()
    );
    GatewayClient::new(plain.signing_as(t.signer("44")))
        .publish_revocation(with_key(revocation))
        .await
        .unwrap();
    t.shutdown().await;
}

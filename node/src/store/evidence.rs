//! What other regions signed and sent about a case (deliveries, status pushes), kept
//! with it as evidence: the signature header as it arrived and the exact message bytes
//! it covers, so anyone holding the sender's registered key can check later what the
//! region said. One per call (method and idempotency key): a retried call, signed anew,
//! keeps the first signature taken.

/// One signed message kept.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SignedEvidence {
    pub case_number: String,
    /// `DeliverApplication`, `PushStatus` or `SubmitEvaluation`.
    pub method: String,
    pub idempotency_key: String,
    /// The region the call was addressed to (`tongban-target-region`, signed with it).
    pub target_region: String,
    pub signer_region: String,
    pub key_id: String,
    /// When the region signed, seconds since the Unix epoch.
    pub signed_at: i64,
    /// The `tongban-signature` header as it arrived.
    pub signature: String,
    /// The protobuf bytes signed.
    #[serde(serialize_with = "base64_bytes")]
    pub message: Vec<u8>,
    pub received_ms: i64,
}

fn base64_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

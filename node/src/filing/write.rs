//! The durable write of a filing: application, receipt and outbox entry in one store
//! transaction, before the receipt is returned; and the client's idempotency key, with
//! which a retried filing gets its first receipt back.

use tongban_proto::rules::digest::sha256_hex;
use tongban_runtime::observability::trace_context::TraceParent;

use super::{
    check::Checked,
    compose::Composed,
    receipt::Receipt,
    request::{FilingRequest, IntakeError, store_error},
};
use crate::{
    context::NodeContext,
    observe::filing::FilingRecord,
    store::{Filed, NewFiling, Store},
};

/// A client's idempotency key and the digest of the request it came with.
pub type ClientKey = (String, String);

/// The client's key with the digest of the request as parsed (sorted form map, fixed
/// field order), so a retry with the same key must carry the same filing.
pub fn client_key(key: Option<String>, request: &FilingRequest) -> Option<ClientKey> {
    key.map(|key| {
        let canonical = serde_json::to_vec(request).unwrap_or_default();
        (key, sha256_hex(&canonical))
    })
}

/// The first receipt of a filing retried with the same key, if it was filed before.
pub async fn earlier(
    store: &Store,
    client_key: Option<&ClientKey>,
) -> Result<Option<Receipt>, IntakeError> {
    let Some((key, sha)) = client_key else {
        return Ok(None);
    };
    let earlier = store
        .client_replay(key.clone(), sha.clone())
        .await
        .map_err(store_error)?;
    Ok(earlier.map(|e| Receipt::stored(&e.receipt, &e.application)))
}

/// A filing as written.
pub struct Written {
    pub filed: Filed,
    /// The applicant's keyed hash (what logs may name).
    pub applicant_hash: String,
    /// What was composed, as the filing's record tells it.
    pub forward: bool,
    pub verification: String,
    pub recognized: usize,
}

impl Written {
    /// The receipt as stored: a filing that raced a retry with the same key gets the
    /// first one's.
    pub fn receipt(&self) -> Receipt {
        Receipt::stored(&self.filed.receipt, &self.filed.application)
    }

    /// What the filing's record says of it.
    pub fn record<'a>(
        &'a self,
        checked: &'a Checked,
        cached: usize,
        trace: TraceParent,
    ) -> FilingRecord<'a> {
        FilingRecord {
            application: &self.filed.application,
            replayed: self.filed.replayed,
            applicant_id: checked.applicant.as_str(),
            applicant_hash: &self.applicant_hash,
            forward: self.forward,
            verification: &self.verification,
            recognized: self.recognized,
            cached,
            trace,
        }
    }
}

/// Writes the composed filing. One whose lookups could not complete is written as
/// waiting in pre-review.
pub async fn write(
    ctx: &NodeContext,
    checked: &Checked,
    composed: Composed,
    verified: bool,
    client_key: Option<ClientKey>,
    trace: TraceParent,
) -> Result<Written, IntakeError> {
    let applicant_hash = checked.applicant.keyed_hash(&ctx.id_hash_key);
    let (forward, verification, recognized) = (
        composed.forward,
        composed.receipt.verification.clone(),
        composed.receipt.materials_recognized.len(),
    );
    let receipt_json = serde_json::to_string(&composed.receipt).unwrap_or_default();
    let filed = ctx
        .store
        .file(NewFiling {
            client_key,
            application: composed.application,
            pending_verification: !verified,
            applicant_hash: applicant_hash.clone(),
            applicant_masked: checked.applicant.masked(),
            forward,
            receipt: Box::new(move |_| receipt_json),
            trace: Some(trace),
            joint: composed.joint,
        })
        .await
        .map_err(store_error)?;
    Ok(Written {
        filed,
        applicant_hash,
        forward,
        verification,
        recognized,
    })
}

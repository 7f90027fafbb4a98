//! The decoded lookups, composed: each decodes its request and runs in the same order —
//! route to the region that can answer → revocations → cache (one issuer call per key
//! for concurrent misses) → verify → verdict with the mutual-recognition catalog. Fail
//! closed: when the issuer cannot be reached and nothing unexpired is cached, the answer
//! is "cannot verify now" — or, only for license types the operator gave a grace, the
//! last recognized answer within its grace, logged and counted.
//!
//! One file per lookup (`identity`, `license`, `holder_list`, `revocation`) over what
//! they share (`lookup`); this one only dispatches and audits the verdict.

use std::time::Duration;

use tongban_proto::{contract::metadata, rules::region::RegionPrefix};

use super::{
    footprint::Charges,
    lookup::{Ctx, Recognition, cache_outcome, verdict_name},
};
use crate::{
    answer::Answer,
    audit::CallAudit,
    call::Call,
    error::GatewayError,
    message::{Budget, Message},
    methods::Lookup,
    unary,
};

/// What bounds one decoded call: its deadline, and the admission that what it buffers
/// (the issuer's answer among it) is charged to.
pub struct Bounds<'a> {
    pub deadline: Duration,
    pub budget: &'a mut (dyn Budget + Send),
}

impl Recognition {
    /// Serves one decoded call; `message` is its request, whole.
    pub async fn serve(
        &self,
        lookup: Lookup,
        call: &Call,
        caller: RegionPrefix,
        message: &Message,
        bounds: Bounds<'_>,
        audit: &mut CallAudit,
    ) -> Result<Answer, GatewayError> {
        let ctx = Ctx {
            caller,
            traceparent: call.headers.get(metadata::TRACEPARENT),
            deadline: bounds.deadline,
            charges: Charges::to(bounds.budget),
        };
        Ok(match lookup {
            Lookup::Identity => {
                let verdict = self
                    .verify_identity(unary::decode(message)?, &ctx, audit)
                    .await?;
                audit.cache = cache_outcome(verdict.source);
                audit.verdict = verdict_name(verdict.outcome);
                unary::answer(&verdict)
            }
            Lookup::License => {
                let verdict = self
                    .lookup_license(unary::decode(message)?, &ctx, audit)
                    .await?;
                audit.cache = cache_outcome(verdict.source);
                audit.verdict = verdict_name(verdict.outcome);
                unary::answer(&verdict)
            }
            Lookup::HolderLicenses => {
                let list = self
                    .list_licenses(unary::decode(message)?, &ctx, audit)
                    .await?;
                // Counted with the other lookups: a region that cannot be asked for a
                // holder's licenses is data hard to get too (the list's own outcome is
                // set exactly then).
                audit.data = Some(self.data_labels.holder_licenses.clone());
                audit.verdict = verdict_name(list.outcome).or(Some("listed"));
                unary::answer(&list)
            }
            Lookup::Revocation => {
                let request = unary::decode(message)?;
                let signed = || self.check_signature(&call.headers, caller, message);
                unary::answer(&self.revoke(request, &ctx, audit, signed).await?)
            }
        })
    }
}

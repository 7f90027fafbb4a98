//! `VerifyIdentity`: is this the resident of that ID number, by this name? Asked of the
//! applicant's home region (the region the ID number was issued in), whose signed
//! assertion is checked and cached.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tongban_proto::{
    rules::{resident_id::ResidentId, standard},
    v1::{
        AssertIdentityRequest, AssertIdentityResponse, IdentityVerdict, SignedObject,
        VerdictOutcome, VerdictReason, VerdictSource, VerifyIdentityRequest,
    },
};

use super::{
    access_reports::Looked,
    cache::Keyer,
    issuer::IssuerError,
    lookup::{
        Ctx, IdentityEntry, Recognition, ask_issuer, field, identity_refusal, issuer_failed, today,
        with_source,
    },
    verify::{self, CheckedAssertion, Refusal},
    voucher::Signer,
};
use crate::{audit::CallAudit, error::GatewayError, methods::issuer_paths, registry::Route};

impl Recognition {
    pub(super) async fn verify_identity(
        &self,
        request: VerifyIdentityRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<IdentityVerdict, GatewayError> {
        Self::requested(&request.purpose)?;
        audit.data = Some(self.data_labels.identity.clone());
        // The same rules as at the portal and the handling node (同标准办理).
        let id = standard::applicant_id(&request.id_number, self.regions, today())
            .map_err(|problem| field("id_number", problem))?;
        let name = standard::applicant_name(&request.name).map_err(|p| field("name", p))?;
        let home = id.home_region();
        audit.target = Some(home);
        let generation = self.generation();
        let route = match self.route_of(&home) {
            Ok(route) => route,
            Err(refusal) => return Ok(identity_refusal(refusal, home.as_str())),
        };
        let key = self.identity_key(&id, name);
        let cache = &self.caches.identity;
        let hit = cache.get(&key).await;
        if let Some(entry) = self.standing(cache, &key, hit, &route, generation).await {
            let purpose = request.purpose.as_ref();
            self.reports.served_from_cache(
                home,
                Looked::Identity,
                id.as_str(),
                None,
                &ctx.caller,
                purpose,
            );
            return Ok(with_source(entry.verdict.clone(), VerdictSource::Cache));
        }
        let asked_issuer = Mutex::new(None);
        let (asked_issuer_ref, id_ref, route_ref) = (&asked_issuer, &id, &route);
        let purpose = &request.purpose;
        // The load of whichever caller comes first (its call charged for the answer).
        let load = || async move {
            let asked = AssertIdentityRequest {
                id_number: id_ref.as_str().to_owned(),
                name: name.to_owned(),
                purpose: purpose.clone(),
            };
            let answer: AssertIdentityResponse =
                ask_issuer(route_ref, issuer_paths::ASSERT_IDENTITY, &asked, ctx).await?;
            let (entry, assertion) = self.judge_assertion(answer, route_ref, id_ref, generation);
            *asked_issuer_ref.lock().unwrap_or_else(|e| e.into_inner()) = assertion;
            Ok::<_, IssuerError>(Arc::new(entry))
        };
        // The miss path is boxed, so the hit path's future stays small (futures are moved
        // whole, however much of them a call uses).
        let judged = (&*route, generation);
        let loaded =
            Box::pin(self.load_standing(cache, key, load, IssuerError::is_shed, judged)).await;
        Ok(match loaded {
            Ok(entry) => IdentityVerdict {
                assertion: asked_issuer.into_inner().unwrap_or_else(|e| e.into_inner()),
                ..with_source(entry.verdict.clone(), VerdictSource::Issuer)
            },
            // Its own share could not hold the answer: refused as any call over it.
            Err(IssuerError::Shed(reason)) => return Err(GatewayError::Overloaded(reason)),
            Err(error) => {
                tracing::warn!(region = %home, %error, subject = %Keyer::log_ref(&key), "identity lookup failed");
                identity_refusal(issuer_failed(&error, &route.prefix), home.as_str())
            }
        })
    }

    /// The cache entry for a home region's answer, and its signed assertion.
    fn judge_assertion(
        &self,
        answer: AssertIdentityResponse,
        route: &Route,
        id: &ResidentId,
        generation: u64,
    ) -> (IdentityEntry, Option<SignedObject>) {
        let now = SystemTime::now();
        let negative = Instant::now() + self.settings.negative_ttl;
        let refused = |refusal: Refusal| IdentityEntry {
            verdict: identity_refusal(refusal, route.prefix.as_str()),
            fresh_until: negative,
            signer: Signer::nothing(generation),
        };
        let Some(signed) = answer.assertion else {
            let refusal = Refusal::new(
                VerdictOutcome::NotRecognized,
                VerdictReason::Malformed,
                "the home region sent no assertion",
            );
            return (refused(refusal), None);
        };
        match verify::check_assertion(&signed, &route.issuer_keys, &route.prefix, id.as_str(), now)
        {
            Err(refusal) => (refused(refusal), Some(signed)),
            Ok(checked) => {
                let mut entry = self.assertion_entry(&checked, now, negative);
                // Only a recognition rests on the key; a negative verdict rests on
                // nothing a registry change leaves standing.
                if entry.verdict.outcome == VerdictOutcome::Recognized as i32 {
                    entry.signer = Signer::key(route, &signed.key_id, generation);
                } else {
                    entry.signer = Signer::nothing(generation);
                }
                (entry, Some(signed))
            }
        }
    }

    /// The cache entry for a verified assertion: what it says about the applicant, fresh
    /// while it is good (less the margin) when it recognizes them, briefly otherwise.
    fn assertion_entry(
        &self,
        checked: &CheckedAssertion,
        now: SystemTime,
        negative: Instant,
    ) -> IdentityEntry {
        let a = &checked.assertion;
        let (outcome, reason, detail) = if !a.subject_known {
            (
                VerdictOutcome::NotFound,
                VerdictReason::NotFound,
                format!(
                    "region {} has no resident with this ID number",
                    a.issuing_region
                ),
            )
        } else if !a.name_matches {
            (
                VerdictOutcome::NotRecognized,
                VerdictReason::NameMismatch,
                format!(
                    "the name does not match the one registered in region {}",
                    a.issuing_region
                ),
            )
        } else {
            (
                VerdictOutcome::Recognized,
                VerdictReason::Verified,
                format!("identity confirmed by region {}", a.issuing_region),
            )
        };
        let fresh_until = if outcome == VerdictOutcome::Recognized {
            let left = checked
                .good_until
                .duration_since(now)
                .unwrap_or(Duration::ZERO)
                .saturating_sub(self.settings.expiry_margin);
            Instant::now() + left.min(self.settings.max_ttl)
        } else {
            negative
        };
        IdentityEntry {
            verdict: IdentityVerdict {
                outcome: outcome as i32,
                reason: reason as i32,
                detail,
                level: a.level,
                issuing_region: a.issuing_region.clone(),
                assertion: None,
                source: VerdictSource::Unspecified as i32,
            },
            fresh_until,
            // Set by the caller, which knows the key and the generation.
            signer: Signer::nothing(0),
        }
    }
}

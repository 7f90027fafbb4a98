//! `ListLicenses`: which licenses does this holder have at a region (their home region
//! unless another is named)? The list is asked of that region and cached; each license
//! on it is checked and cached as `LookupLicense` would (`license.rs`), so a later
//! lookup of one of them is a cache hit.

use std::{sync::Arc, time::Instant};

use tongban_proto::{
    rules::{region::RegionCode, resident_id::ResidentId},
    v1::{
        FetchHolderLicensesRequest, FetchHolderLicensesResponse, License, LicenseVerdict,
        ListLicensesRequest, ListLicensesResponse, LookupPurpose, VerdictOutcome, VerdictReason,
        VerdictSource,
    },
};

use super::{
    access_reports::Looked,
    footprint::Footprint,
    issuer::IssuerError,
    lookup::{Ctx, Found, HolderList, Recognition, ask_issuer, field, issuer_failed},
    verify::Refusal,
};
use crate::{audit::CallAudit, error::GatewayError, methods::issuer_paths, registry::Route};

impl Recognition {
    /// A holder's list answered from the cache: reported to `region` for their log.
    fn report_list_hit(
        &self,
        region: RegionCode,
        holder: &ResidentId,
        ctx: &Ctx<'_>,
        purpose: &Option<LookupPurpose>,
    ) {
        let (looked, requester) = (Looked::HolderLicenses, &ctx.caller);
        let (holder, purpose) = (holder.as_str(), purpose.as_ref());
        (self.reports).served_from_cache(region, looked, holder, None, requester, purpose);
    }

    pub(super) async fn list_licenses(
        &self,
        request: ListLicensesRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<ListLicensesResponse, GatewayError> {
        Self::requested(&request.purpose)?;
        let holder = self.parse_id(&request.holder_id_number, "holder_id_number")?;
        let item = self.item(&request.purpose)?;
        let region = if request.issuing_region.is_empty() {
            holder.home_region()
        } else {
            RegionCode::parse(&request.issuing_region)
                .map_err(|_| field("issuing_region", "must be a 6-digit GB/T 2260 code"))?
        };
        audit.target = Some(region);
        let refused = |refusal: Refusal| ListLicensesResponse {
            licenses: Vec::new(),
            outcome: refusal.outcome as i32,
            reason: refusal.reason as i32,
            issuing_region: region.to_string(),
            source: VerdictSource::Unspecified as i32,
        };
        let generation = self.generation();
        let route = match self.route_of(&region) {
            Ok(route) => route,
            Err(refusal) => return Ok(refused(refusal)),
        };
        let key = self.holder_key(&holder, &route.prefix);
        let lists = &self.caches.holder_lists;
        let hit = lists.get(&key).await;
        let (list, source) = match self.standing(lists, &key, hit, &route, generation).await {
            Some(list) => {
                self.report_list_hit(region, &holder, ctx, &request.purpose);
                (list, VerdictSource::Cache)
            }
            None => {
                let (holder, route, purpose) = (&holder, &*route, &request.purpose);
                // The load of whichever caller comes first (its call charged for the
                // answer).
                let load = || async move {
                    let asked = FetchHolderLicensesRequest {
                        holder_id_number: holder.as_str().to_owned(),
                        purpose: purpose.clone(),
                    };
                    let answer: FetchHolderLicensesResponse =
                        ask_issuer(route, issuer_paths::FETCH_HOLDER_LICENSES, &asked, ctx).await?;
                    let list = self.judge_list(answer, (route, generation), holder).await;
                    Ok::<_, IssuerError>(Arc::new(list))
                };
                let judged = (route, generation);
                let loaded =
                    Box::pin(self.load_standing(lists, key, load, IssuerError::is_shed, judged))
                        .await;
                match loaded {
                    Ok(list) => (list, VerdictSource::Issuer),
                    Err(IssuerError::Shed(reason)) => return Err(GatewayError::Overloaded(reason)),
                    Err(error) => {
                        tracing::warn!(region = %route.prefix, %error, "holder license list failed");
                        return Ok(refused(issuer_failed(&error, &route.prefix)));
                    }
                }
            }
        };
        // The verdicts copy each license's fields and the answer encodes them: charged
        // to this call, whichever call's load made the list.
        ctx.charges.charge(2 * list.bytes())?;
        let licenses = list
            .licenses
            .iter()
            .map(|(license_id, entry)| {
                let base = LicenseVerdict {
                    license_id: license_id.to_string(),
                    issuing_region: region.to_string(),
                    ..Default::default()
                };
                let found = Found {
                    entry: Ok(entry.clone()),
                    source,
                    signed: None,
                };
                self.license_verdict(base, found, &item, None)
            })
            .collect();
        Ok(ListLicensesResponse {
            licenses,
            outcome: VerdictOutcome::Recognized as i32,
            reason: VerdictReason::Verified as i32,
            issuing_region: region.to_string(),
            source: source as i32,
        })
    }

    /// Checks each license of a holder's list and caches each one for later lookups.
    async fn judge_list(
        &self,
        answer: FetchHolderLicensesResponse,
        judged: (&Route, u64),
        holder: &ResidentId,
    ) -> HolderList {
        let mut licenses = Vec::with_capacity(answer.licenses.len());
        let mut fresh_until = Instant::now() + self.settings.holder_list_ttl;
        for signed in answer.licenses {
            // The id the issuer claims; a tampered body fails the check below anyway.
            let claimed = prost::Message::decode(signed.body.as_ref())
                .map(|l: License| l.license_id)
                .unwrap_or_default();
            let id_key = self.license_id_key(&claimed);
            let entry =
                Arc::new(self.judge_license(Some(&signed), judged, &claimed, Some(holder), id_key));
            fresh_until = fresh_until.min(entry.fresh_until);
            // The key `LookupLicense` uses for this license and holder.
            let key = self.license_key(&claimed, holder.as_str());
            self.caches.licenses.insert(key, entry.clone()).await;
            if entry.check.is_ok() {
                self.keep_for_grace(key, &entry).await;
            }
            licenses.push((claimed.into_boxed_str(), entry));
        }
        HolderList {
            licenses,
            fresh_until,
        }
    }
}

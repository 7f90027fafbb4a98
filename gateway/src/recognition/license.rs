//! `LookupLicense`: does this license stand in for that material of the one-thing?
//! Asked of the license's issuing region (its id names it), whose signed license is
//! checked, cached (and, for the types the operator gave one, kept for a grace), and
//! judged against the mutual-recognition catalog. The holder list judges each of its
//! licenses the same way, with the functions here.

use std::{
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use tongban_proto::{
    rules::{credentials::license_issuer, resident_id::ResidentId},
    v1::{
        FetchLicenseRequest, FetchLicenseResponse, LicenseVerdict, LookupLicenseRequest,
        LookupPurpose, SignedObject, VerdictOutcome, VerdictReason, VerdictSource,
    },
};

use super::{
    access_reports::Looked,
    cache::{Key, Keyer, MAX_ENTRY_BYTES},
    footprint::Footprint,
    issuer::IssuerError,
    lookup::{
        Ctx, Found, ItemOf, LicenseEntry, Recognition, ask_issuer, field, issuer_failed,
        license_refusal, today, until_end_of,
    },
    verify::{self, Refusal},
    voucher::{Signer, Voucher},
};
use crate::{audit::CallAudit, error::GatewayError, methods::issuer_paths, registry::Route};

impl Recognition {
    pub(super) async fn lookup_license(
        &self,
        request: LookupLicenseRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<LicenseVerdict, GatewayError> {
        Self::requested(&request.purpose)?;
        let issuer_code =
            license_issuer(&request.license_id).map_err(|e| field("license_id", e.to_string()))?;
        audit.target = Some(issuer_code);
        let item = self.item(&request.purpose)?;
        let material = item
            .material(&request.material_id)
            .ok_or_else(|| field("material_id", format!("not a material of {}", item.id)))?;
        audit.data = material
            .license_type
            .as_deref()
            .and_then(|t| self.data_labels.license(t));
        let base = LicenseVerdict {
            license_id: request.license_id.clone(),
            license_type: request.license_type.clone(),
            issuing_region: issuer_code.to_string(),
            ..Default::default()
        };
        // The catalog first: a type that stands in for nothing needs no issuer. (A
        // lookup that names no type takes whatever the license is, judged after.)
        if !request.license_type.is_empty() && !material.recognizes(&request.license_type) {
            return Ok(license_refusal(
                base,
                Refusal::new(
                    VerdictOutcome::NotRecognized,
                    VerdictReason::TypeNotRecognized,
                    format!(
                        "{} is not accepted for material {} of {} in catalog {}",
                        request.license_type,
                        material.id,
                        item.id,
                        item.version()
                    ),
                ),
            ));
        }
        let generation = self.generation();
        let route = match self.route_of(&issuer_code) {
            Ok(route) => route,
            Err(refusal) => return Ok(license_refusal(base, refusal)),
        };
        let found = self
            .license_entry(
                (&route, generation),
                &request.license_id,
                &request.holder_id_number,
                &request.purpose,
                ctx,
            )
            .await?;
        if matches!(found.source, VerdictSource::Cache | VerdictSource::Grace) {
            self.reports.served_from_cache(
                issuer_code,
                Looked::License,
                &request.holder_id_number,
                Some(&request.license_id),
                &ctx.caller,
                request.purpose.as_ref(),
            );
        }
        // The verdict copies the entry's fields and the answer encodes them: charged to
        // this call, whichever call's load made the entry.
        if let Ok(entry) = &found.entry {
            ctx.charges.charge(2 * entry.bytes())?;
        }
        Ok(self.license_verdict(base, found, &item, Some(material.id.as_str())))
    }

    /// The license's cache entry (or why there is none), where it came from, and the
    /// issuer's signed answer if this call asked the issuer.
    async fn license_entry(
        &self,
        (route, generation): (&Arc<Route>, u64),
        license_id: &str,
        holder_id_number: &str,
        purpose: &Option<LookupPurpose>,
        ctx: &Ctx<'_>,
    ) -> Result<Found, GatewayError> {
        // A license's contents are read only for its holder: a lookup that names nobody
        // could read anyone's license by its id, and no access log would say whose.
        if holder_id_number.is_empty() {
            return Err(field(
                "holder_id_number",
                "required: a license is read only for its holder".to_owned(),
            ));
        }
        // Keyed by the holder's number as sent: a hit means it was checked when it
        // was loaded, so only a miss parses it.
        let key = self.license_key(license_id, holder_id_number);
        let cache = &self.caches.licenses;
        let hit = cache.get(&key).await;
        if let Some(entry) = self.standing(cache, &key, hit, route, generation).await {
            return Ok(Found {
                entry: Ok(entry),
                source: VerdictSource::Cache,
                signed: None,
            });
        }
        let holder = self.parse_id(holder_id_number, "holder_id_number")?;
        let holder_part = holder.as_str();
        let holder = Some(&holder);
        // Revocations are by license id alone; a cached entry carries this key.
        let id_key = self.license_id_key(license_id);
        let asked_issuer = Mutex::new(None);
        let asked_issuer_ref = &asked_issuer;
        // The load of whichever caller comes first (its call charged for the answer).
        let load = || async move {
            let asked = FetchLicenseRequest {
                license_id: license_id.to_owned(),
                purpose: purpose.clone(),
                holder_id_number: holder_part.to_owned(),
            };
            let answer: FetchLicenseResponse =
                ask_issuer(route, issuer_paths::FETCH_LICENSE, &asked, ctx).await?;
            let signed = answer.license.as_ref();
            let judged = (&**route, generation);
            let entry = self.judge_license(signed, judged, license_id, holder, id_key);
            *asked_issuer_ref.lock().unwrap_or_else(|e| e.into_inner()) = answer.license;
            Ok::<_, IssuerError>(Arc::new(entry))
        };
        // The miss path is boxed, so the hit path's future stays small (futures are
        // moved whole, however much of them a call uses).
        let judged = (&**route, generation);
        let loaded =
            Box::pin(self.load_standing(cache, key, load, IssuerError::is_shed, judged)).await;
        match loaded {
            Ok(entry) => {
                if entry.check.is_ok() {
                    self.keep_for_grace(key, &entry).await;
                }
                Ok(Found {
                    entry: Ok(entry),
                    source: VerdictSource::Issuer,
                    signed: asked_issuer.into_inner().unwrap_or_else(|e| e.into_inner()),
                })
            }
            // Its own share could not hold the answer: refused as any call over it.
            Err(IssuerError::Shed(reason)) => Err(GatewayError::Overloaded(reason)),
            Err(error) => Ok(self.without_issuer(key, id_key, judged, &error).await),
        }
    }

    /// What is left when the issuer cannot answer: a revocation this gateway knows of
    /// (a fact that needs no issuer); else fail closed, unless the operator allows
    /// this type a grace and a recognized copy is within it.
    async fn without_issuer(
        &self,
        key: Key,
        id_key: Key,
        (route, generation): (&Route, u64),
        error: &IssuerError,
    ) -> Found {
        if self.is_revoked(&id_key) {
            tracing::info!(region = %route.prefix, %error, license = %Keyer::log_ref(&id_key), "issuer unreachable: answering a known revocation");
            return Found {
                entry: Err(Refusal::new(
                    VerdictOutcome::Revoked,
                    VerdictReason::Revoked,
                    "the license was revoked by its issuer",
                )),
                source: VerdictSource::Unspecified,
                signed: None,
            };
        }
        // An answer for good is no outage: no grace copy stands in for it.
        let failed = issuer_failed(error, &route.prefix);
        if failed.outcome != VerdictOutcome::CannotVerifyNow {
            tracing::warn!(region = %route.prefix, %error, license = %Keyer::log_ref(&id_key), "issuer refused the lookup");
            return Found {
                entry: Err(failed),
                source: VerdictSource::Unspecified,
                signed: None,
            };
        }
        let grace = &self.caches.grace;
        let copy = grace.get(&key).await;
        if let Some(stale) = self.standing(grace, &key, copy, route, generation).await {
            self.caches.grace.stats.grace.inc();
            tracing::warn!(
                region = %route.prefix,
                %error,
                license = %Keyer::log_ref(&id_key),
                "issuer unreachable: answering from the grace copy"
            );
            return Found {
                entry: Ok(stale),
                source: VerdictSource::Grace,
                signed: None,
            };
        }
        tracing::warn!(region = %route.prefix, %error, license = %Keyer::log_ref(&id_key), "license lookup failed");
        Found {
            entry: Err(failed),
            source: VerdictSource::Unspecified,
            signed: None,
        }
    }

    /// Keeps a recognized license's verdict for its type's grace, if it has one; never
    /// past the license's own validity.
    pub(super) async fn keep_for_grace(&self, key: Key, entry: &Arc<LicenseEntry>) {
        let Ok(checked) = &entry.check else { return };
        let Some(grace) = self.settings.grace.get(&*checked.license_type) else {
            return;
        };
        // Not even copied when the grace cache would not keep it.
        if entry.bytes() > MAX_ENTRY_BYTES {
            self.caches.grace.stats.too_large.inc();
            return;
        }
        let now = Instant::now();
        let mut until = entry.fresh_until.max(now) + *grace;
        if let Some(last_day) = checked.valid_until {
            until = until.min(now + until_end_of(last_day, SystemTime::now()));
        }
        let copy = Arc::new(LicenseEntry {
            id_key: entry.id_key,
            check: entry.check.clone(),
            fresh_until: until,
            signer: entry.signer.clone(),
        });
        self.caches.grace.insert(key, copy).await;
    }

    /// The cache entry for an issuer's answer about `license_id`.
    pub(super) fn judge_license(
        &self,
        signed: Option<&SignedObject>,
        (route, generation): (&Route, u64),
        license_id: &str,
        holder: Option<&ResidentId>,
        id_key: Key,
    ) -> LicenseEntry {
        let now = SystemTime::now();
        let negative = Instant::now() + self.settings.negative_ttl;
        let Some(signed) = signed else {
            return LicenseEntry {
                id_key,
                check: Err(Refusal::new(
                    VerdictOutcome::NotFound,
                    VerdictReason::NotFound,
                    format!("region {} issued no license {license_id}", route.prefix),
                )),
                fresh_until: negative,
                signer: Signer::nothing(generation),
            };
        };
        let checked = verify::check_license(
            signed,
            &route.issuer_keys,
            &route.prefix,
            license_id,
            holder.map(ResidentId::as_str),
            today(),
            now,
        );
        let mut signer = Signer::nothing(generation);
        let (check, fresh_until) = match checked {
            Ok((_, mut checked)) => {
                checked.license_type = self.intern(&checked.license_type);
                let mut ttl = self
                    .settings
                    .max_ttl
                    .min(checked.key_until.duration_since(now).unwrap_or_default());
                if let Some(last_day) = checked.valid_until {
                    ttl = ttl.min(until_end_of(last_day, now));
                }
                signer = Signer::key(route, &signed.key_id, generation);
                (Ok(checked), Instant::now() + ttl)
            }
            // A revocation does not heal: keep it as long as anything.
            Err(r) if r.reason == VerdictReason::Revoked => {
                signer.voucher = Voucher::Revoked;
                (Err(r), Instant::now() + self.settings.max_ttl)
            }
            Err(r) => (Err(r), negative),
        };
        LicenseEntry {
            id_key,
            check,
            fresh_until,
            signer,
        }
    }

    /// The verdict on one license for the one-thing `item` (and, if given, the
    /// material it was offered for).
    pub(super) fn license_verdict(
        &self,
        base: LicenseVerdict,
        found: Found,
        item: &ItemOf,
        material: Option<&str>,
    ) -> LicenseVerdict {
        let Found {
            entry,
            source,
            signed,
        } = found;
        let entry = match entry {
            Ok(entry) => entry,
            Err(refusal) => return license_refusal(base, refusal),
        };
        let finish = |v: LicenseVerdict| LicenseVerdict {
            license: signed,
            source: source as i32,
            ..v
        };
        // Revoked since it was cached, or while it was being looked up.
        if self.is_revoked(&entry.id_key) {
            let detail = format!("license {} was revoked by its issuer", base.license_id);
            return finish(license_refusal(
                base,
                Refusal::new(VerdictOutcome::Revoked, VerdictReason::Revoked, detail),
            ));
        }
        let checked = match &entry.check {
            Ok(checked) => checked,
            Err(refusal) => return finish(license_refusal(base, refusal.clone())),
        };
        let asked_type = base.license_type.clone();
        let mut verdict = LicenseVerdict {
            license_type: checked.license_type.to_string(),
            issuing_region: checked.issuing_region.to_string(),
            ..base
        };
        if !asked_type.is_empty() && *asked_type != *checked.license_type {
            return finish(license_refusal(
                verdict,
                Refusal::new(
                    VerdictOutcome::NotRecognized,
                    VerdictReason::TypeMismatch,
                    "the license is of another type than asked",
                ),
            ));
        }
        let satisfies: Vec<String> = item
            .materials_recognizing(&checked.license_type)
            .map(|m| m.id.clone())
            .collect();
        let offered_ok = material.is_none_or(|m| satisfies.iter().any(|s| s == m));
        if satisfies.is_empty() || !offered_ok {
            let detail = format!(
                "{} stands in for no material of {} in catalog {}",
                checked.license_type,
                item.id,
                item.version()
            );
            return finish(license_refusal(
                verdict,
                Refusal::new(
                    VerdictOutcome::NotRecognized,
                    VerdictReason::TypeNotRecognized,
                    detail,
                ),
            ));
        }
        verdict.outcome = VerdictOutcome::Recognized as i32;
        verdict.reason = VerdictReason::Verified as i32;
        verdict.detail = format!(
            "license {} verified with its issuer {}",
            verdict.license_id, checked.issuing_region
        );
        verdict.satisfies_materials = satisfies;
        verdict.fields = checked
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        finish(verdict)
    }
}

//! The decoded lookups, each in the same order: decode → route to the region that can
//! answer → revocations → cache (one issuer call per key for concurrent misses) →
//! verify → verdict with the mutual-recognition catalog. Fail closed: when the issuer
//! cannot be reached and nothing unexpired is cached, the answer is "cannot verify
//! now" — or, only for license types the operator gave a grace, the last recognized
//! answer within its grace, logged and counted.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use http::HeaderValue;
use tongban_proto::{
    calendar,
    catalog::{Catalog, CatalogItem},
    metadata,
    recognition::license_issuer,
    region::{RegionCode, RegionPrefix, RegionTable},
    resident_id::ResidentId,
    v1::{
        AssertIdentityRequest, AssertIdentityResponse, FetchHolderLicensesRequest,
        FetchHolderLicensesResponse, FetchLicenseRequest, FetchLicenseResponse, IdentityVerdict,
        License, LicenseVerdict, ListLicensesRequest, ListLicensesResponse, LookupLicenseRequest,
        LookupPurpose, PublishRevocationRequest, PublishRevocationResponse, SignedObject,
        VerdictOutcome, VerdictReason, VerdictSource, VerifyIdentityRequest,
    },
};

use super::{
    cache::{CacheLimits, Caches, Expiring, Key, Keyer},
    issuer::{self, IssuerError},
    verify::{self, CheckedLicense, Refusal},
};
use crate::{
    answer::Answer,
    audit::CallAudit,
    call::Call,
    config::RecognitionSettings,
    error::GatewayError,
    message::Message,
    methods::{Lookup, issuer_paths},
    registry::{Route, SharedRegistry},
    unary,
};

/// A cached identity verdict (without the signed assertion, which only the answer that
/// asked the home region carries).
pub struct IdentityEntry {
    verdict: IdentityVerdict,
    fresh_until: Instant,
}

impl Expiring for IdentityEntry {
    fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

/// A cached license verdict: what checking the issuer's answer found (or why it was
/// refused). Small on purpose (see `cache`): no signature, no id, an interned type.
pub struct LicenseEntry {
    /// Key of the license id alone (revocations are by id).
    id_key: Key,
    check: Result<CheckedLicense, Refusal>,
    fresh_until: Instant,
}

impl Expiring for LicenseEntry {
    fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

/// A cached list of a holder's licenses at one region, by id.
pub struct HolderList {
    licenses: Vec<(Box<str>, Arc<LicenseEntry>)>,
    fresh_until: Instant,
}

impl Expiring for HolderList {
    fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

/// A license verdict being built: the entry, where it came from, and the issuer's
/// signed answer when this call asked the issuer.
struct Found {
    entry: Result<Arc<LicenseEntry>, Refusal>,
    source: VerdictSource,
    signed: Option<SignedObject>,
}

/// The recognition service; shared by every connection.
pub struct Recognition {
    registry: SharedRegistry,
    regions: &'static RegionTable,
    catalog: Arc<Catalog>,
    settings: RecognitionSettings,
    keyer: Keyer,
    caches: Caches<IdentityEntry, LicenseEntry, HolderList>,
    /// License type names, shared by every entry of the type.
    types: std::sync::Mutex<std::collections::HashSet<Arc<str>>>,
    /// Whether any revocation was ever received (until then no answer needs the
    /// revocation set).
    any_revoked: std::sync::atomic::AtomicBool,
}

/// What a lookup's answer is built from.
struct Ctx<'a> {
    caller: RegionPrefix,
    traceparent: Option<&'a HeaderValue>,
    deadline: Duration,
}

fn field(field: &'static str, problem: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field,
        problem: problem.into(),
    }
}

/// How the cache answered a lookup, as audited, traced and counted.
fn cache_outcome(source: i32) -> Option<&'static str> {
    match VerdictSource::try_from(source) {
        Ok(VerdictSource::Cache) => Some("hit"),
        Ok(VerdictSource::Issuer) => Some("miss"),
        Ok(VerdictSource::Grace) => Some("grace"),
        _ => None,
    }
}

/// A verdict's outcome, as audited and counted.
fn verdict_name(outcome: i32) -> Option<&'static str> {
    Some(match VerdictOutcome::try_from(outcome).ok()? {
        VerdictOutcome::Unspecified => return None,
        VerdictOutcome::Recognized => "recognized",
        VerdictOutcome::NotRecognized => "not_recognized",
        VerdictOutcome::Revoked => "revoked",
        VerdictOutcome::Expired => "expired",
        VerdictOutcome::NotFound => "not_found",
        VerdictOutcome::CannotVerifyNow => "cannot_verify_now",
    })
}

fn cannot_verify(detail: String) -> Refusal {
    Refusal::new(
        VerdictOutcome::CannotVerifyNow,
        VerdictReason::IssuerUnavailable,
        detail,
    )
}

/// The time left until the end of `date` in business time, from `now`.
fn until_end_of(date: time::Date, now: SystemTime) -> Duration {
    let end = date
        .next_day()
        .map(|d| d.midnight().assume_offset(calendar::BUSINESS_OFFSET));
    let Some(end) = end else {
        return Duration::MAX;
    };
    let end: SystemTime = end.into();
    end.duration_since(now).unwrap_or(Duration::ZERO)
}

impl Recognition {
    /// The service over `registry` (routes and issuer keys) and `catalog` (the
    /// mutual-recognition catalog), its counters registered in `metrics`.
    pub fn new(
        registry: SharedRegistry,
        regions: &'static RegionTable,
        catalog: Arc<Catalog>,
        settings: RecognitionSettings,
        secret: &[u8],
        metrics: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let limits = CacheLimits {
            identity_entries: settings.identity_entries,
            license_entries: settings.license_entries,
        };
        Self {
            registry,
            regions,
            catalog,
            keyer: Keyer::new(secret),
            caches: Caches::new(&limits, metrics),
            settings,
            types: Default::default(),
            any_revoked: Default::default(),
        }
    }

    /// The shared name of a license type.
    fn intern(&self, name: &Arc<str>) -> Arc<str> {
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        match types.get(name) {
            Some(t) => t.clone(),
            None => {
                types.insert(name.clone());
                name.clone()
            }
        }
    }

    /// Serves one decoded call; `message` is its request, whole.
    pub async fn serve(
        &self,
        lookup: Lookup,
        call: &Call,
        caller: RegionPrefix,
        message: &Message,
        deadline: Duration,
        audit: &mut CallAudit,
    ) -> Result<Answer, GatewayError> {
        let ctx = Ctx {
            caller,
            traceparent: call.headers.get(metadata::TRACEPARENT),
            deadline,
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
            Lookup::HolderLicenses => unary::answer(
                &self
                    .list_licenses(unary::decode(message)?, &ctx, audit)
                    .await?,
            ),
            Lookup::Revocation => {
                unary::answer(&self.revoke(unary::decode(message)?, &ctx, audit).await?)
            }
        })
    }

    fn today() -> time::Date {
        calendar::business_now().date()
    }

    fn parse_id(&self, value: &str, name: &'static str) -> Result<ResidentId, GatewayError> {
        ResidentId::parse(value, self.regions, Self::today())
            .map_err(|e| field(name, e.to_string()))
    }

    /// The route of `code`, or why the region cannot be asked.
    fn route_of(&self, code: &RegionCode) -> Result<Arc<Route>, Refusal> {
        if !self.regions.is_known_province(code) {
            return Err(Refusal::new(
                VerdictOutcome::NotFound,
                VerdictReason::NotFound,
                format!("region {code} does not exist"),
            ));
        }
        self.registry
            .current()
            .lookup(code)
            .ok_or_else(|| cannot_verify(format!("no node is registered for region {code}")))
    }

    fn item(&self, purpose: &Option<LookupPurpose>) -> Result<&CatalogItem, GatewayError> {
        let id = purpose
            .as_ref()
            .map(|p| p.one_thing_id.as_str())
            .unwrap_or_default();
        self.catalog.item(id).ok_or_else(|| {
            field(
                "purpose.one_thing_id",
                format!("not a one-thing of catalog {}", self.catalog.version),
            )
        })
    }

    // --- identity ---------------------------------------------------------------

    async fn verify_identity(
        &self,
        request: VerifyIdentityRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<IdentityVerdict, GatewayError> {
        let id = self.parse_id(&request.id_number, "id_number")?;
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(field("name", "must be 1 to 64 characters"));
        }
        let home = id.home_region();
        audit.target = Some(home);
        let route = match self.route_of(&home) {
            Ok(route) => route,
            Err(refusal) => return Ok(identity_refusal(refusal, home.as_str())),
        };
        let key = self
            .keyer
            .key("identity", &[id.as_str().as_bytes(), name.as_bytes()]);
        let cache = &self.caches.identity;
        if let Some(entry) = cache.get(&key).await {
            return Ok(with_source(entry.verdict.clone(), VerdictSource::Cache));
        }
        let asked_issuer = std::sync::Mutex::new(None);
        // The miss path is boxed, so the hit path's future stays small (futures are moved
        // whole, however much of them a call uses).
        let loaded = Box::pin(cache.get_or_load(key, async {
            let asked = AssertIdentityRequest {
                id_number: id.as_str().to_owned(),
                name: name.to_owned(),
                purpose: request.purpose.clone(),
            };
            let answer: AssertIdentityResponse = issuer::call(
                &route,
                issuer_paths::ASSERT_IDENTITY,
                &asked,
                &ctx.caller,
                ctx.traceparent,
                ctx.deadline,
            )
            .await?;
            let (entry, assertion) = self.judge_assertion(answer, &route, &id);
            *asked_issuer.lock().unwrap_or_else(|e| e.into_inner()) = assertion;
            Ok::<_, IssuerError>(Arc::new(entry))
        }))
        .await;
        Ok(match loaded {
            Ok(entry) => IdentityVerdict {
                assertion: asked_issuer.into_inner().unwrap_or_else(|e| e.into_inner()),
                ..with_source(entry.verdict.clone(), VerdictSource::Issuer)
            },
            Err(error) => {
                tracing::warn!(region = %home, %error, subject = %Keyer::log_ref(&key), "identity lookup failed");
                identity_refusal(
                    cannot_verify(format!("region {} cannot be reached now", route.prefix)),
                    home.as_str(),
                )
            }
        })
    }

    /// The cache entry for a home region's answer, and its signed assertion.
    fn judge_assertion(
        &self,
        answer: AssertIdentityResponse,
        route: &Route,
        id: &ResidentId,
    ) -> (IdentityEntry, Option<SignedObject>) {
        let now = SystemTime::now();
        let negative = Instant::now() + self.settings.negative_ttl;
        let Some(signed) = answer.assertion else {
            let refusal = Refusal::new(
                VerdictOutcome::NotRecognized,
                VerdictReason::Malformed,
                "the home region sent no assertion",
            );
            let entry = IdentityEntry {
                verdict: identity_refusal(refusal, route.prefix.as_str()),
                fresh_until: negative,
            };
            return (entry, None);
        };
        match verify::check_assertion(&signed, &route.issuer_keys, &route.prefix, id.as_str(), now)
        {
            Err(refusal) => {
                let entry = IdentityEntry {
                    verdict: identity_refusal(refusal, route.prefix.as_str()),
                    fresh_until: negative,
                };
                (entry, Some(signed))
            }
            Ok(checked) => {
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
                let entry = IdentityEntry {
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
                };
                (entry, Some(signed))
            }
        }
    }

    // --- licenses ---------------------------------------------------------------

    async fn lookup_license(
        &self,
        request: LookupLicenseRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<LicenseVerdict, GatewayError> {
        let issuer_code =
            license_issuer(&request.license_id).map_err(|e| field("license_id", e.to_string()))?;
        audit.target = Some(issuer_code);
        let item = self.item(&request.purpose)?;
        let material = item
            .material(&request.material_id)
            .ok_or_else(|| field("material_id", format!("not a material of {}", item.id)))?;
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
                        request.license_type, material.id, item.id, self.catalog.version
                    ),
                ),
            ));
        }
        let route = match self.route_of(&issuer_code) {
            Ok(route) => route,
            Err(refusal) => return Ok(license_refusal(base, refusal)),
        };
        let found = self
            .license_entry(
                &route,
                &request.license_id,
                &request.holder_id_number,
                &request.purpose,
                ctx,
            )
            .await?;
        Ok(self.license_verdict(base, found, item, Some(material.id.as_str())))
    }

    /// The license's cache entry (or why there is none), where it came from, and the
    /// issuer's signed answer if this call asked the issuer.
    async fn license_entry(
        &self,
        route: &Arc<Route>,
        license_id: &str,
        holder_id_number: &str,
        purpose: &Option<LookupPurpose>,
        ctx: &Ctx<'_>,
    ) -> Result<Found, GatewayError> {
        // Keyed by the holder's number as sent: a hit means it was checked when it
        // was loaded, so only a miss parses it.
        let key = self.keyer.key(
            "license",
            &[license_id.as_bytes(), holder_id_number.as_bytes()],
        );
        let cache = &self.caches.licenses;
        if let Some(entry) = cache.get(&key).await {
            return Ok(Found {
                entry: Ok(entry),
                source: VerdictSource::Cache,
                signed: None,
            });
        }
        let holder = if holder_id_number.is_empty() {
            None
        } else {
            Some(self.parse_id(holder_id_number, "holder_id_number")?)
        };
        let holder = holder.as_ref();
        let holder_part = holder.map(ResidentId::as_str).unwrap_or("");
        // Revocations are by license id alone; a cached entry carries this key.
        let id_key = self.keyer.key("license-id", &[license_id.as_bytes()]);
        let asked_issuer = std::sync::Mutex::new(None);
        // The miss path is boxed, so the hit path's future stays small (futures are
        // moved whole, however much of them a call uses).
        let loaded = Box::pin(cache.get_or_load(key, async {
            let asked = FetchLicenseRequest {
                license_id: license_id.to_owned(),
                purpose: purpose.clone(),
                holder_id_number: holder_part.to_owned(),
            };
            let answer: FetchLicenseResponse = issuer::call(
                route,
                issuer_paths::FETCH_LICENSE,
                &asked,
                &ctx.caller,
                ctx.traceparent,
                ctx.deadline,
            )
            .await?;
            let entry =
                self.judge_license(answer.license.as_ref(), route, license_id, holder, id_key);
            *asked_issuer.lock().unwrap_or_else(|e| e.into_inner()) = answer.license;
            Ok::<_, IssuerError>(Arc::new(entry))
        }))
        .await;
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
            Err(error) => {
                // Fail closed, unless the operator allows this type a grace.
                if let Some(stale) = self.caches.grace.get(&key).await {
                    self.caches.grace.stats.grace.inc();
                    tracing::warn!(
                        region = %route.prefix,
                        %error,
                        license = %Keyer::log_ref(&id_key),
                        "issuer unreachable: answering from the grace copy"
                    );
                    return Ok(Found {
                        entry: Ok(stale),
                        source: VerdictSource::Grace,
                        signed: None,
                    });
                }
                tracing::warn!(region = %route.prefix, %error, license = %Keyer::log_ref(&id_key), "license lookup failed");
                Ok(Found {
                    entry: Err(cannot_verify(format!(
                        "issuing region {} cannot be reached now",
                        route.prefix
                    ))),
                    source: VerdictSource::Unspecified,
                    signed: None,
                })
            }
        }
    }

    /// Keeps a recognized license's verdict for its type's grace, if it has one; never
    /// past the license's own validity.
    async fn keep_for_grace(&self, key: Key, entry: &Arc<LicenseEntry>) {
        let Ok(checked) = &entry.check else { return };
        let Some(grace) = self.settings.grace.get(&*checked.license_type) else {
            return;
        };
        let now = Instant::now();
        let mut until = entry.fresh_until.max(now) + *grace;
        if let Some(last_day) = checked.valid_until {
            until = until.min(now + until_end_of(last_day, SystemTime::now()));
        }
        let copy = Arc::new(LicenseEntry {
            id_key: entry.id_key,
            check: entry.check.clone(),
            fresh_until: until,
        });
        self.caches.grace.cache.insert(key, copy).await;
    }

    /// The cache entry for an issuer's answer about `license_id`.
    fn judge_license(
        &self,
        signed: Option<&SignedObject>,
        route: &Route,
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
            };
        };
        let checked = verify::check_license(
            signed,
            &route.issuer_keys,
            &route.prefix,
            license_id,
            holder.map(ResidentId::as_str),
            Self::today(),
            now,
        );
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
                (Ok(checked), Instant::now() + ttl)
            }
            // A revocation does not heal: keep it as long as anything.
            Err(r) if r.reason == VerdictReason::Revoked => {
                (Err(r), Instant::now() + self.settings.max_ttl)
            }
            Err(r) => (Err(r), negative),
        };
        LicenseEntry {
            id_key,
            check,
            fresh_until,
        }
    }

    /// The verdict on one license for the one-thing `item` (and, if given, the
    /// material it was offered for).
    fn license_verdict(
        &self,
        base: LicenseVerdict,
        found: Found,
        item: &CatalogItem,
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
        if self.any_revoked.load(std::sync::atomic::Ordering::Acquire)
            && self.caches.revoked.contains_key(&entry.id_key)
        {
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
                checked.license_type, item.id, self.catalog.version
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

    async fn list_licenses(
        &self,
        request: ListLicensesRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<ListLicensesResponse, GatewayError> {
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
        let route = match self.route_of(&region) {
            Ok(route) => route,
            Err(refusal) => return Ok(refused(refusal)),
        };
        let key = self.keyer.key(
            "holder",
            &[holder.as_str().as_bytes(), route.prefix.as_str().as_bytes()],
        );
        let lists = &self.caches.holder_lists;
        let (list, source) = match lists.get(&key).await {
            Some(list) => (list, VerdictSource::Cache),
            None => {
                let loaded = Box::pin(lists.get_or_load(key, async {
                    let asked = FetchHolderLicensesRequest {
                        holder_id_number: holder.as_str().to_owned(),
                        purpose: request.purpose.clone(),
                    };
                    let answer: FetchHolderLicensesResponse = issuer::call(
                        &route,
                        issuer_paths::FETCH_HOLDER_LICENSES,
                        &asked,
                        &ctx.caller,
                        ctx.traceparent,
                        ctx.deadline,
                    )
                    .await?;
                    Ok::<_, IssuerError>(Arc::new(self.judge_list(answer, &route, &holder).await))
                }))
                .await;
                match loaded {
                    Ok(list) => (list, VerdictSource::Issuer),
                    Err(error) => {
                        tracing::warn!(region = %route.prefix, %error, "holder license list failed");
                        return Ok(refused(cannot_verify(format!(
                            "issuing region {} cannot be reached now",
                            route.prefix
                        ))));
                    }
                }
            }
        };
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
                self.license_verdict(base, found, item, None)
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
        route: &Route,
        holder: &ResidentId,
    ) -> HolderList {
        let mut licenses = Vec::with_capacity(answer.licenses.len());
        let mut fresh_until = Instant::now() + self.settings.holder_list_ttl;
        for signed in answer.licenses {
            // The id the issuer claims; a tampered body fails the check below anyway.
            let claimed = prost::Message::decode(signed.body.as_ref())
                .map(|l: License| l.license_id)
                .unwrap_or_default();
            let id_key = self.keyer.key("license-id", &[claimed.as_bytes()]);
            let entry =
                Arc::new(self.judge_license(Some(&signed), route, &claimed, Some(holder), id_key));
            fresh_until = fresh_until.min(entry.fresh_until);
            let key = self
                .keyer
                .key("license", &[claimed.as_bytes(), holder.as_str().as_bytes()]);
            self.caches.licenses.cache.insert(key, entry.clone()).await;
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

    // --- revocation -------------------------------------------------------------

    async fn revoke(
        &self,
        request: PublishRevocationRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<PublishRevocationResponse, GatewayError> {
        let issuer_code =
            license_issuer(&request.license_id).map_err(|e| field("license_id", e.to_string()))?;
        audit.target = Some(issuer_code);
        // Only the issuer revokes, as its certificate proves.
        if !ctx.caller.contains(&issuer_code) {
            return Err(GatewayError::PermissionDenied(format!(
                "region {} cannot revoke a license issued by region {issuer_code}",
                ctx.caller
            )));
        }
        let id_key = self
            .keyer
            .key("license-id", &[request.license_id.as_bytes()]);
        let applied = !self.caches.revoked.contains_key(&id_key);
        // Remembered first, so a lookup finishing after this sees it.
        self.any_revoked
            .store(true, std::sync::atomic::Ordering::Release);
        self.caches.revoked.insert(id_key, ()).await;
        for cache in [&self.caches.licenses, &self.caches.grace] {
            let _ = cache
                .cache
                .invalidate_entries_if(move |_, entry: &Arc<LicenseEntry>| entry.id_key == id_key);
            if applied {
                cache.stats.invalidations.inc();
            }
        }
        tracing::info!(license = %Keyer::log_ref(&id_key), issuer = %issuer_code, "license revoked");
        Ok(PublishRevocationResponse { applied })
    }

    /// Runs pending cache maintenance (tests read exact counts after it).
    pub async fn run_pending_tasks(&self) {
        self.caches.identity.cache.run_pending_tasks().await;
        self.caches.licenses.cache.run_pending_tasks().await;
        self.caches.grace.cache.run_pending_tasks().await;
        self.caches.holder_lists.cache.run_pending_tasks().await;
    }

    /// Entries cached now: identity, license.
    pub fn entry_counts(&self) -> (u64, u64) {
        (
            self.caches.identity.cache.entry_count(),
            self.caches.licenses.cache.entry_count(),
        )
    }
}

fn with_source(verdict: IdentityVerdict, source: VerdictSource) -> IdentityVerdict {
    IdentityVerdict {
        source: source as i32,
        ..verdict
    }
}

fn identity_refusal(refusal: Refusal, region: &str) -> IdentityVerdict {
    IdentityVerdict {
        outcome: refusal.outcome as i32,
        reason: refusal.reason as i32,
        detail: refusal.detail,
        issuing_region: region.to_owned(),
        ..Default::default()
    }
}

fn license_refusal(base: LicenseVerdict, refusal: Refusal) -> LicenseVerdict {
    LicenseVerdict {
        outcome: refusal.outcome as i32,
        reason: refusal.reason as i32,
        detail: refusal.detail,
        satisfies_materials: Vec::new(),
        ..base
    }
}

//! What every lookup shares, below the files of the lookups themselves: the service's
//! state, the cached entries, routing by content, the keys of the caches, the call to
//! the issuer, and the refusal and verdict helpers. Nothing here knows one lookup from
//! another, so each lookup's file reads only this (and `cache`, `issuer`, `verify`).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};
use tongban_runtime::process::shutdown::ShutdownSignal;

use http::HeaderValue;
use tongban_proto::{
    rules::{
        calendar,
        catalog::{Catalog, CatalogItem},
        consent,
        region::{RegionCode, RegionPrefix, RegionTable},
        resident_id::ResidentId,
    },
    v1::{
        IdentityVerdict, LicenseVerdict, LookupPurpose, SignedObject, VerdictOutcome,
        VerdictReason, VerdictSource,
    },
};

use super::{
    cache::{CacheLimits, Caches, Expiring, Key, Keyer},
    issuer::{self, IssuerError},
    revocation_log::RevocationLog,
    revoked::Revoked,
    verify::{CheckedLicense, Refusal},
    voucher::Signer,
};
use crate::{
    catalog::CatalogSource,
    config::RecognitionSettings,
    error::GatewayError,
    registry::{Route, SharedRegistry},
};

/// A cached identity verdict (without the signed assertion, which only the answer that
/// asked the home region carries).
pub struct IdentityEntry {
    pub(super) verdict: IdentityVerdict,
    pub(super) fresh_until: Instant,
    /// The registry generation and key behind it (see `trust`).
    pub(super) signer: Signer,
}

impl Expiring for IdentityEntry {
    fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

impl super::footprint::Footprint for IdentityEntry {
    fn bytes(&self) -> usize {
        use super::footprint::heap;
        let v = &self.verdict;
        let assertion = v.assertion.as_ref().map_or(0, |a| {
            heap(a.body.len()) + heap(a.key_id.capacity()) + heap(a.signature.len())
        });
        // The `Arc` around the entry holds its two counts.
        heap(std::mem::size_of::<Self>() + 16)
            + heap(v.detail.capacity())
            + heap(v.issuing_region.capacity())
            + assertion
            + self.signer.heap_bytes()
    }
}

/// A cached license verdict: what checking the issuer's answer found (or why it was
/// refused). Small on purpose (see `cache`): no signature, no id, an interned type.
pub struct LicenseEntry {
    /// Key of the license id alone (revocations are by id).
    pub(super) id_key: Key,
    pub(super) check: Result<CheckedLicense, Refusal>,
    pub(super) fresh_until: Instant,
    /// The registry generation and key behind it (see `trust`).
    pub(super) signer: Signer,
}

impl Expiring for LicenseEntry {
    fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

impl super::footprint::Footprint for LicenseEntry {
    fn bytes(&self) -> usize {
        use super::footprint::heap;
        heap(std::mem::size_of::<Self>() + 16) + self.check.bytes() + self.signer.heap_bytes()
    }
}

/// A cached list of a holder's licenses at one region, by id.
pub struct HolderList {
    pub(super) licenses: Vec<(Box<str>, Arc<LicenseEntry>)>,
    pub(super) fresh_until: Instant,
}

impl Expiring for HolderList {
    fn fresh_until(&self) -> Instant {
        self.fresh_until
    }
}

impl super::footprint::Footprint for HolderList {
    fn bytes(&self) -> usize {
        use super::footprint::heap;
        let slots = self.licenses.capacity() * std::mem::size_of::<(Box<str>, Arc<LicenseEntry>)>();
        // Its licenses are counted whole, though the license cache may share them.
        let licenses: usize = (self.licenses.iter())
            .map(|(id, entry)| heap(id.len()) + entry.bytes())
            .sum();
        heap(std::mem::size_of::<Self>() + 16) + heap(slots) + licenses
    }
}

/// A license verdict being built: the entry, where it came from, and the issuer's
/// signed answer when this call asked the issuer.
pub(super) struct Found {
    pub(super) entry: Result<Arc<LicenseEntry>, Refusal>,
    pub(super) source: VerdictSource,
    pub(super) signed: Option<SignedObject>,
}

/// One item of the catalog version a lookup was judged by.
pub(super) struct ItemOf {
    catalog: Arc<Catalog>,
    index: usize,
}

impl ItemOf {
    /// The catalog version the item is read from.
    pub(super) fn version(&self) -> &str {
        &self.catalog.version
    }
}

impl std::ops::Deref for ItemOf {
    type Target = CatalogItem;

    fn deref(&self) -> &CatalogItem {
        &self.catalog.items[self.index]
    }
}

/// The recognition service; shared by every connection.
pub struct Recognition {
    pub(super) registry: SharedRegistry,
    pub(super) regions: &'static RegionTable,
    pub(super) catalog: Arc<CatalogSource>,
    pub(super) settings: RecognitionSettings,
    pub(super) keyer: Keyer,
    pub(super) caches: Caches<IdentityEntry, LicenseEntry, HolderList>,
    /// License type names, shared by every entry of the type.
    types: Mutex<HashSet<Arc<str>>>,
    /// The verdicts' `data` labels, made once.
    pub(super) data_labels: super::data_label::DataLabels,
    /// Whether any revocation was ever received (until then no answer needs the
    /// revocation set).
    any_revoked: AtomicBool,
    /// The revoked licenses remembered, each charged to the member that published it.
    pub(super) revoked: Revoked,
    /// The log every replica follows, when configured: a revocation is acknowledged
    /// only once written there.
    pub(super) revocation_log: Option<Arc<RevocationLog>>,
    /// Bumped at every registry change (see `trust`).
    pub(super) generation: AtomicU64,
    /// Lookups answered without the issuer, reported to it for the access log.
    pub(super) reports: Arc<super::access_reports::AccessReports>,
}

/// What a lookup's answer is built from.
pub(super) struct Ctx<'a> {
    pub(super) caller: RegionPrefix,
    pub(super) traceparent: Option<&'a HeaderValue>,
    pub(super) deadline: Duration,
    /// The call's admission, charged for what the lookup buffers: the issuer's answer
    /// (by whichever caller's load runs) and the verdict's copy of an entry.
    pub(super) charges: super::footprint::Charges<'a>,
}

/// An invalid field of the request.
pub(super) fn field(field: &'static str, problem: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field,
        problem: problem.into(),
    }
}

/// How the cache answered a lookup, as audited, traced and counted.
pub(super) fn cache_outcome(source: i32) -> Option<&'static str> {
    match VerdictSource::try_from(source) {
        Ok(VerdictSource::Cache) => Some("hit"),
        Ok(VerdictSource::Issuer) => Some("miss"),
        Ok(VerdictSource::Grace) => Some("grace"),
        _ => None,
    }
}

/// A verdict's outcome, as audited and counted.
pub(super) fn verdict_name(outcome: i32) -> Option<&'static str> {
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

/// What an issuer's failure to answer means for the verdict: a refusal for good (the
/// issuer will answer the same again) is NOT_RECOGNIZED, anything else may pass.
pub(super) fn issuer_failed(error: &IssuerError, region: &RegionPrefix) -> Refusal {
    use tonic::Code;
    match error {
        IssuerError::Refused { code, .. }
            if matches!(
                code,
                Code::InvalidArgument
                    | Code::PermissionDenied
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::Unimplemented
                    | Code::Unauthenticated
            ) =>
        {
            Refusal::new(
                VerdictOutcome::NotRecognized,
                VerdictReason::IssuerRefused,
                format!("region {region} refused the lookup ({code:?})"),
            )
        }
        _ => cannot_verify(format!("region {region} cannot be reached now")),
    }
}

pub(super) fn cannot_verify(detail: String) -> Refusal {
    Refusal::new(
        VerdictOutcome::CannotVerifyNow,
        VerdictReason::IssuerUnavailable,
        detail,
    )
}

/// The time left until the end of `date` in business time, from `now`.
pub(super) fn until_end_of(date: time::Date, now: SystemTime) -> Duration {
    let end = date
        .next_day()
        .map(|d| d.midnight().assume_offset(calendar::BUSINESS_OFFSET));
    let Some(end) = end else {
        return Duration::MAX;
    };
    let end: SystemTime = end.into();
    end.duration_since(now).unwrap_or(Duration::ZERO)
}

/// Today, in business time: the day validity is judged on.
pub(super) fn today() -> time::Date {
    calendar::business_now().date()
}

pub(super) fn with_source(verdict: IdentityVerdict, source: VerdictSource) -> IdentityVerdict {
    IdentityVerdict {
        source: source as i32,
        ..verdict
    }
}

pub(super) fn identity_refusal(refusal: Refusal, region: &str) -> IdentityVerdict {
    IdentityVerdict {
        outcome: refusal.outcome as i32,
        reason: refusal.reason as i32,
        detail: refusal.detail,
        issuing_region: region.to_owned(),
        ..Default::default()
    }
}

pub(super) fn license_refusal(base: LicenseVerdict, refusal: Refusal) -> LicenseVerdict {
    LicenseVerdict {
        outcome: refusal.outcome as i32,
        reason: refusal.reason as i32,
        detail: refusal.detail,
        satisfies_materials: Vec::new(),
        ..base
    }
}

/// Asks the issuer behind `route` at `path`, for the lookup's caller, within its
/// deadline and trace, the answer charged to its call.
pub(super) async fn ask_issuer<Q, R>(
    route: &Route,
    path: &'static str,
    request: &Q,
    ctx: &Ctx<'_>,
) -> Result<R, IssuerError>
where
    Q: prost::Message,
    R: prost::Message + Default,
{
    issuer::call(
        route,
        path,
        request,
        Some(&ctx.caller),
        ctx.traceparent,
        ctx.deadline,
        &ctx.charges,
    )
    .await
}

impl Recognition {
    /// The service over `registry` (routes and issuer keys) and `catalog` (the
    /// mutual-recognition catalog), its counters registered in `metrics`.
    pub fn new(
        registry: SharedRegistry,
        regions: &'static RegionTable,
        catalog: Arc<CatalogSource>,
        settings: RecognitionSettings,
        secret: &[u8],
        metrics: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let limits = CacheLimits {
            identity_entries: settings.identity_entries,
            license_entries: settings.license_entries,
            identity_bytes: settings.identity_cache_bytes,
            license_bytes: settings.license_cache_bytes,
        };
        // The members registered now have their revocation series from the start.
        let members: Vec<RegionPrefix> = (registry.current().routes())
            .filter_map(|route| match route.identity {
                tongban_runtime::trust::identity::PeerIdentity::Region(prefix) => Some(prefix),
                _ => None,
            })
            .collect();
        let revoked = Revoked::new(&settings.revocations, members, metrics);
        // Published items name only license types the catalog had (see
        // `Catalog::with_publication`): the labels made now cover every later version.
        let data_labels = super::data_label::DataLabels::of(&catalog.current());
        Self {
            registry,
            regions,
            catalog,
            keyer: Keyer::new(secret),
            caches: Caches::new(&limits, metrics),
            revoked,
            settings,
            types: Default::default(),
            data_labels,
            any_revoked: Default::default(),
            revocation_log: None,
            generation: AtomicU64::new(0),
            reports: Arc::new(super::access_reports::AccessReports::new(metrics)),
        }
    }

    /// Delivers the reports of cache-served lookups to their issuers until `shutdown`.
    pub async fn deliver_access_reports(self: Arc<Self>, shutdown: ShutdownSignal) {
        self.reports.deliver_until(&self.registry, shutdown).await;
    }

    /// Delivers what the last calls left for the access logs (bounded); at shutdown.
    pub async fn last_access_reports(&self) {
        self.reports.last_pass(&self.registry).await;
    }

    /// The service with revocations written to, and followed from, `log`.
    pub fn with_revocation_log(self, log: Arc<RevocationLog>) -> Self {
        Self {
            revocation_log: Some(log),
            ..self
        }
    }

    /// The shared name of a license type.
    pub(super) fn intern(&self, name: &Arc<str>) -> Arc<str> {
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        match types.get(name) {
            Some(t) => t.clone(),
            None => {
                types.insert(name.clone());
                name.clone()
            }
        }
    }

    /// A resident ID number of the request, valid today; `name` is its field.
    pub(super) fn parse_id(
        &self,
        value: &str,
        name: &'static str,
    ) -> Result<ResidentId, GatewayError> {
        ResidentId::parse(value, self.regions, today()).map_err(|e| field(name, e.to_string()))
    }

    /// The route of `code`, or why the region cannot be asked.
    pub(super) fn route_of(&self, code: &RegionCode) -> Result<Arc<Route>, Refusal> {
        if !self.regions.is_known_province(code) {
            return Err(Refusal::new(
                VerdictOutcome::NotFound,
                VerdictReason::NotFound,
                format!("region {code} does not exist"),
            ));
        }
        self.registry.current().lookup(code).ok_or_else(|| {
            Refusal::new(
                VerdictOutcome::CannotVerifyNow,
                VerdictReason::NotRegistered,
                format!("no node is registered for region {code}"),
            )
        })
    }

    /// The applicant's explicit request a lookup must carry (the rule the issuing
    /// region applies too, `tongban_proto::rules::consent`).
    pub(super) fn requested(purpose: &Option<LookupPurpose>) -> Result<(), GatewayError> {
        consent::checked(purpose.as_ref(), std::time::SystemTime::now())
            .map(|_| ())
            .map_err(|problem| field(consent::FIELD, problem))
    }

    /// The one-thing of the catalog in force a lookup is made for.
    pub(super) fn item(&self, purpose: &Option<LookupPurpose>) -> Result<ItemOf, GatewayError> {
        let id = purpose
            .as_ref()
            .map(|p| p.one_thing_id.as_str())
            .unwrap_or_default();
        let catalog = self.catalog.current();
        match catalog.items.iter().position(|item| item.id == id) {
            Some(index) => Ok(ItemOf { catalog, index }),
            None => Err(field(
                "purpose.one_thing_id",
                format!("not a one-thing of catalog {}", catalog.version),
            )),
        }
    }

    // The cache keys, each domain named once: a license cached by the holder list is
    // found again by `LookupLicense`, and a revocation reaches every entry of its id.

    /// Key of an identity lookup: ID number and (trimmed) name.
    pub(super) fn identity_key(&self, id: &ResidentId, name: &str) -> Key {
        self.keyer
            .key("identity", &[id.as_str().as_bytes(), name.as_bytes()])
    }

    /// Key of a license lookup: license id and the holder's number as sent.
    pub(super) fn license_key(&self, license_id: &str, holder_id_number: &str) -> Key {
        self.keyer.key(
            "license",
            &[license_id.as_bytes(), holder_id_number.as_bytes()],
        )
    }

    /// Key of a license id alone, what revocations are by.
    pub(super) fn license_id_key(&self, license_id: &str) -> Key {
        self.keyer.key("license-id", &[license_id.as_bytes()])
    }

    /// Key of a holder's list at one region.
    pub(super) fn holder_key(&self, holder: &ResidentId, region: &RegionPrefix) -> Key {
        self.keyer.key(
            "holder",
            &[holder.as_str().as_bytes(), region.as_str().as_bytes()],
        )
    }

    /// Whether the license of `id_key` was revoked (checked on every answer, so neither a
    /// cached verdict nor a lookup in flight when the revocation came can answer
    /// "recognized" again).
    pub(super) fn is_revoked(&self, id_key: &Key) -> bool {
        self.any_revoked.load(Ordering::Acquire) && self.revoked.contains(id_key)
    }

    /// Remembers revocations with `remember` (see `revocation`). Nothing cached is
    /// dropped here.
    pub(super) fn remember_revocations<T>(&self, remember: impl FnOnce(&Revoked) -> T) -> T {
        // Flagged first, so a lookup finishing after this sees it.
        self.any_revoked.store(true, Ordering::Release);
        remember(&self.revoked)
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

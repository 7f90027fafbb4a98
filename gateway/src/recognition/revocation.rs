//! `PublishRevocation`: an issuer withdraws a license. With the shared log
//! (`revocation_log`) it is written there first — acknowledged only once it is — and
//! every replica applies it from there; the replica that received it applies it at
//! once. Applying remembers it by the license id's key (longer than any verdict is
//! cached) and drops every cached answer that holds the license: its verdicts, their
//! grace copies and holder lists naming it. Answers check the remembered revocations
//! too, so a lookup or list in flight when it arrives answers "revoked" as well.
//!
//! What is remembered is charged to the member that published it (`revoked`): beyond
//! its ceiling or its rate, its new revocations are refused RESOURCE_EXHAUSTED with a
//! pushback (its node's outbox publishes them again); the log's rows are always applied.

use std::{
    collections::HashSet,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tongban_proto::{
    contract::metadata,
    rules::{
        credentials::{self, license_issuer},
        message_signature::{DEFAULT_MAX_AGE, MessageSignature, Signed},
        region::{RegionCode, RegionPrefix},
    },
    v1::{PublishRevocationRequest, PublishRevocationResponse},
};
use tongban_runtime::trust::identity::PeerIdentity;

use super::{
    cache::{Key, Keyer},
    lookup::{Ctx, HolderList, LicenseEntry, Recognition, field},
    revocation_log::{Appended, ApplyRevocations, Logged, NewRevocation, RevocationLog},
    revoked::{Refusal, Remembered},
};
use crate::{audit::CallAudit, authorize, error::GatewayError, message::Message};

impl Recognition {
    /// Refuses a revocation unless `caller`'s region signed it with a key registered
    /// for it, lately: the one call whose message the gateway itself acts on, signed so
    /// the register of revocations (and the shared log) holds only what an issuer said.
    pub(super) fn check_signature(
        &self,
        headers: &http::HeaderMap,
        caller: RegionPrefix,
        message: &Message,
    ) -> Result<(), GatewayError> {
        let refused = |why: String| GatewayError::Unauthenticated(why);
        let header = headers
            .get(metadata::SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                refused(format!(
                    "a revocation must carry its issuer's signature ({})",
                    metadata::SIGNATURE
                ))
            })?;
        let signature = MessageSignature::parse(header).map_err(|e| refused(e.to_string()))?;
        if signature.region != caller {
            return Err(refused(format!(
                "signed for region {}, sent by region {caller}",
                signature.region
            )));
        }
        let route = self
            .registry
            .current()
            .lookup(&RegionCode::from_prefix(&caller))
            .filter(|route| route.prefix == caller);
        let key = route
            .as_ref()
            .and_then(|route| route.issuer_keys.iter().find(|k| k.id == signature.key_id))
            .ok_or_else(|| {
                refused(format!(
                    "key {} is not registered for region {caller}",
                    signature.key_id
                ))
            })?;
        if !signature.is_fresh(SystemTime::now(), DEFAULT_MAX_AGE)
            || !key.valid_at(signature.signed_at())
        {
            return Err(refused(format!(
                "the signature's time is not within {} of the gateway's clock and key {}'s window",
                humantime::format_duration(DEFAULT_MAX_AGE),
                key.id
            )));
        }
        let framed = message.contiguous();
        let signed = Signed {
            method: "PublishRevocation",
            target_region: "",
            idempotency_key: headers
                .get(metadata::IDEMPOTENCY_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            // Framing was checked by decoding it.
            message: framed.get(5..).unwrap_or_default(),
        };
        if !signature.verifies(&key.public_key, &signed) {
            return Err(refused(format!(
                "the signature does not verify with key {} of region {caller}",
                key.id
            )));
        }
        Ok(())
    }

    /// Applies `request` once `signed` (the signature check) says its issuer signed it.
    pub(super) async fn revoke(
        &self,
        request: PublishRevocationRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
        signed: impl FnOnce() -> Result<(), GatewayError>,
    ) -> Result<PublishRevocationResponse, GatewayError> {
        let issuer_code =
            license_issuer(&request.license_id).map_err(|e| field("license_id", e.to_string()))?;
        audit.target = Some(issuer_code);
        authorize::check_revoker(&ctx.caller, &issuer_code)?;
        let id_key = self.license_id_key(&request.license_id);
        // A new revocation takes a place under its member's ceiling and a token of its
        // rate before the log is written: every replica applies what the log holds, so
        // the bounds hold only if they are kept here. One remembered already (every
        // replica a node lists is told it) takes no place, only a token of the rate.
        let reservation = if self.revoked.contains(&id_key) {
            self.revoked.pace(ctx.caller).map_err(refused)?;
            None
        } else {
            Some(self.revoked.admit(ctx.caller).map_err(refused)?)
        };
        // Checked after the bounds, which refuse a flood for a few atomics each: an
        // Ed25519 verification costs about 0.1 ms here, and only the member itself (its
        // certificate) can spend its own rate. A refused one gives its place back.
        signed()?;
        let logged = match &self.revocation_log {
            Some(log) => Some(write_to_log(log, &request, &issuer_code, &ctx.caller).await?),
            None => None,
        };
        let new_here = reservation.is_some_and(|reservation| {
            self.remember_revocations(|revoked| revoked.insert(id_key, reservation))
        });
        if new_here {
            self.forget_cached(HashSet::from([id_key]));
        }
        // With a shared log, "applied" is whether the log took it as new: this replica's
        // follower may have applied it first, which says nothing to the publisher.
        let (applied, log_sequence) = match logged {
            Some(appended) => (appended.new, appended.seq),
            None => (new_here, 0),
        };
        tracing::info!(
            license = %Keyer::log_ref(&id_key),
            issuer = %issuer_code,
            log_sequence,
            "license revoked"
        );
        Ok(PublishRevocationResponse {
            applied,
            log_sequence,
        })
    }

    /// Drops every cached answer holding one of the licenses of `revoked` (revocations
    /// this replica did not know before).
    fn forget_cached(&self, revoked: HashSet<Key>) {
        let count = revoked.len() as u64;
        // One predicate per cache for the whole batch (a page of the log at start):
        // moka tries every pending predicate on each read until maintenance has
        // scanned the cache with it.
        let revoked = Arc::new(revoked);
        for cache in [&self.caches.licenses, &self.caches.grace] {
            let revoked = revoked.clone();
            let _ = cache
                .cache
                .invalidate_entries_if(move |_, entry: &Arc<LicenseEntry>| {
                    revoked.contains(&entry.id_key)
                });
            cache.stats.invalidations.inc_by(count);
        }
        let lists = &self.caches.holder_lists;
        let _ = lists
            .cache
            .invalidate_entries_if(move |_, list: &Arc<HolderList>| {
                list.licenses
                    .iter()
                    .any(|(_, entry)| revoked.contains(&entry.id_key))
            });
        lists.stats.invalidations.inc_by(count);
    }

    /// Remembers the revocations of the log's `rows` (never refused: some replica
    /// accepted each; counted for the member that published it) and drops what was
    /// cached of those this replica did not know; how many those were. Rows published
    /// longer ago than revocations are remembered are passed over.
    fn apply_logged(&self, rows: &[Logged]) -> usize {
        let mut new = HashSet::new();
        self.remember_revocations(|revoked| {
            for row in rows {
                let Some(publisher) = publisher(row) else {
                    tracing::warn!(
                        seq = row.seq,
                        "a revocation log row names no member; passed over"
                    );
                    continue;
                };
                let id_key = self.license_id_key(&row.license_id);
                let published = SystemTime::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(row.published_ms).unwrap_or(0));
                let remembered = revoked.insert_logged(id_key, publisher, published);
                if remembered == Remembered::New {
                    new.insert(id_key);
                }
            }
        });
        let count = new.len();
        if count > 0 {
            self.forget_cached(new);
        }
        count
    }
}

impl ApplyRevocations for Recognition {
    fn apply(&self, rows: &[Logged]) -> impl Future<Output = usize> + Send {
        std::future::ready(self.apply_logged(rows))
    }
}

/// The member a log row is counted for: the verified identity that published it (as
/// written by `write_to_log`), else the province of its issuing region.
fn publisher(row: &Logged) -> Option<RegionPrefix> {
    match PeerIdentity::from_uri(&row.published_by) {
        Ok(PeerIdentity::Region(prefix)) => Some(prefix),
        _ => RegionCode::parse(&row.issuer)
            .ok()
            .map(|code| code.province().to_prefix()),
    }
}

/// A member's revocation refused for its own bound: RESOURCE_EXHAUSTED, transient,
/// with the wait its bound states (counted where it was refused).
fn refused(refusal: Refusal) -> GatewayError {
    tracing::debug!(%refusal, "revocation refused");
    GatewayError::OverQuota {
        retry_after: refusal.retry_after(),
        problem: refusal.to_string(),
    }
}

/// Writes the revocation to the shared log; its sequence number there. Refused as
/// UNAVAILABLE (the node publishes it again) when the log cannot be written: an
/// acknowledged revocation is always one every replica will apply.
async fn write_to_log(
    log: &RevocationLog,
    request: &PublishRevocationRequest,
    issuer: &RegionCode,
    caller: &RegionPrefix,
) -> Result<Appended, GatewayError> {
    let published_by = PeerIdentity::Region(*caller).uri();
    let entry = NewRevocation {
        license_id: &request.license_id,
        issuer: issuer.as_str(),
        reason: Some(request.reason.as_str()).filter(|r| !r.is_empty()),
        revoked_ms: credentials::system_time(&request.revoked_at).map(unix_ms),
        published_by: &published_by,
        published_ms: unix_ms(SystemTime::now()),
    };
    match log.append(&entry).await {
        Ok(appended) => Ok(appended),
        Err(error) => {
            tracing::warn!(%error, issuer = %issuer, "revocation refused: the revocation log cannot be written");
            Err(GatewayError::RevocationLogUnavailable(error.to_string()))
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

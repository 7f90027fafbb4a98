//! `PublishRevocation`: an issuer withdraws a license. With the shared log
//! (`revocation_log`) it is written there first — acknowledged only once it is — and
//! every replica applies it from there; the replica that received it applies it at
//! once. Applying remembers it by the license id's key (longer than any verdict is
//! cached) and drops every cached answer that holds the license: its verdicts, their
//! grace copies and holder lists naming it. Answers check the remembered revocations
//! too, so a lookup or list in flight when it arrives answers "revoked" as well.

use std::{collections::HashSet, future::Future, sync::Arc, time::SystemTime};

use tongban_proto::{
    rules::{
        credentials::{self, license_issuer},
        region::{RegionCode, RegionPrefix},
    },
    v1::{PublishRevocationRequest, PublishRevocationResponse},
};
use tongban_runtime::trust::identity::PeerIdentity;

use super::{
    cache::{Key, Keyer},
    lookup::{Ctx, HolderList, LicenseEntry, Recognition, field},
    revocation_log::{Appended, ApplyRevocations, NewRevocation, RevocationLog},
};
use crate::{audit::CallAudit, authorize, error::GatewayError};

impl Recognition {
    pub(super) async fn revoke(
        &self,
        request: PublishRevocationRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<PublishRevocationResponse, GatewayError> {
        let issuer_code =
            license_issuer(&request.license_id).map_err(|e| field("license_id", e.to_string()))?;
        audit.target = Some(issuer_code);
        authorize::check_revoker(&ctx.caller, &issuer_code)?;
        let logged = match &self.revocation_log {
            Some(log) => Some(write_to_log(log, &request, &issuer_code, &ctx.caller).await?),
            None => None,
        };
        let id_key = self.license_id_key(&request.license_id);
        let new_here = self.apply_revocations(&[id_key]).await > 0;
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

    /// Remembers the revocations of `id_keys` and drops every cached answer holding one
    /// of those this replica did not know yet; how many those were.
    pub(super) async fn apply_revocations(&self, id_keys: &[Key]) -> usize {
        let mut new = HashSet::new();
        for id_key in id_keys {
            if self.remember_revocation(*id_key).await {
                new.insert(*id_key);
            }
        }
        if new.is_empty() {
            return 0;
        }
        let count = new.len();
        // One predicate per cache for the whole batch (a page of the log at start):
        // moka tries every pending predicate on each read until maintenance has
        // scanned the cache with it.
        let new = Arc::new(new);
        for cache in [&self.caches.licenses, &self.caches.grace] {
            let revoked = new.clone();
            let _ = cache
                .cache
                .invalidate_entries_if(move |_, entry: &Arc<LicenseEntry>| {
                    revoked.contains(&entry.id_key)
                });
            cache.stats.invalidations.inc_by(count as u64);
        }
        let lists = &self.caches.holder_lists;
        let _ = lists
            .cache
            .invalidate_entries_if(move |_, list: &Arc<HolderList>| {
                list.licenses
                    .iter()
                    .any(|(_, entry)| new.contains(&entry.id_key))
            });
        lists.stats.invalidations.inc_by(count as u64);
        count
    }
}

impl ApplyRevocations for Recognition {
    fn apply(&self, license_ids: &[String]) -> impl Future<Output = usize> + Send {
        let id_keys: Vec<Key> = license_ids
            .iter()
            .map(|id| self.license_id_key(id))
            .collect();
        async move { self.apply_revocations(&id_keys).await }
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

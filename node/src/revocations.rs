//! Revocations of licenses issued here, published to the federation through the
//! outbox, so a publication survives a crash of the node or a gateway that is
//! unreachable for a while. Gateway replicas share an ordered revocation log that each
//! follows (see the gateway's `recognition::revocation_log`): one acknowledgement means
//! the revocation is in that log and every replica learns it, whichever address the
//! node used; an entry per configured gateway endpoint remains, so a gateway without a
//! shared log (one replica, or replicas listed one by one) hears it too.
//!
//! They come from two places: the operator's revoke route (`crate::operator`), where
//! the embedded register revokes, and the platform's own feed of revocations, where a
//! province's platform revokes ([`RevocationFeed`]). Both queue the publication with
//! [`publish`].

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tongban_proto::{
    rules::{credentials, region::RegionPrefix},
    v1::PublishRevocationRequest,
};
use tongban_runtime::process::shutdown::ShutdownSignal;

use crate::{
    gateway_client::GatewayClient,
    metrics::NodeMetrics,
    platform::{
        adapter::PlatformError,
        register::{LicenseRegistry, PlatformRevocation},
    },
    store::{Store, StoreError},
};

/// Queues the publication of a revocation to every gateway replica and wakes the
/// forwarder; returns the replicas. Queuing one twice queues it once (its outbox keys
/// are the license's).
pub async fn publish(
    store: &Store,
    client: &GatewayClient,
    outbox_written: &Notify,
    license_id: &str,
    reason: &str,
    revoked_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let request = PublishRevocationRequest {
        license_id: license_id.to_owned(),
        reason: reason.to_owned(),
        revoked_at: Some(crate::sqlite::timestamp_ms(revoked_ms)),
    };
    let replicas = client.replica_endpoints();
    store.enqueue_revocation(request, replicas.clone()).await?;
    outbox_written.notify_one();
    Ok(replicas)
}

/// How long the operator's route waits for the gateway's acknowledgement before it
/// answers "queued" (the outbox goes on publishing).
pub const ACKNOWLEDGEMENT_WAIT: Duration = Duration::from_secs(5);

/// A revocation acknowledged by the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// The gateway endpoint that acknowledged it.
    pub endpoint: String,
    /// Its place in the gateways' shared revocation log; `None` when the gateway keeps
    /// no shared log (then only that replica, and the others as the outbox reaches
    /// them, know it).
    pub log_sequence: Option<u64>,
}

/// Publishes a queued revocation now, for an operator waiting on the answer: each
/// configured gateway endpoint in turn until one acknowledges, within `wait`. `None`
/// when none did in time; the outbox entries queued by [`publish`] carry on.
pub async fn publish_now(
    client: &GatewayClient,
    license_id: &str,
    reason: &str,
    revoked_ms: i64,
    wait: Duration,
) -> Option<Acknowledged> {
    let request = PublishRevocationRequest {
        license_id: license_id.to_owned(),
        reason: reason.to_owned(),
        revoked_at: Some(crate::sqlite::timestamp_ms(revoked_ms)),
    };
    let attempts = async {
        for endpoint in client.replica_endpoints() {
            // The outbox's key for this endpoint: the gateway takes both as one call.
            let key = crate::store::revocation_key(license_id, &endpoint);
            match client
                .publish_revocation(&endpoint, request.clone(), &key)
                .await
            {
                Ok(answer) => {
                    return Some(Acknowledged {
                        endpoint,
                        log_sequence: (answer.log_sequence > 0).then_some(answer.log_sequence),
                    });
                }
                Err(error) => {
                    tracing::warn!(%endpoint, %error, "revocation not acknowledged here; trying the next");
                }
            }
        }
        None
    };
    tokio::time::timeout(wait, attempts).await.ok().flatten()
}

/// Revocations read at once.
const FEED_PAGE: u32 = 200;
/// The job whose turn a replica takes to follow the feed.
const FEED_TURN: &str = "platform_revocations";
/// The setting that keeps the revocation feed's cursor.
const FEED_CURSOR: &str = "platform_revocation_cursor";
/// The reason published when the platform gave none a citizen could read.
const NO_REASON: &str = "revoked by the issuing region";

/// Follows the platform's feed of revocations from a cursor kept in the node's store,
/// publishing each revocation. A page is queued, then the cursor moves past it: a crash
/// between the two queues a page again (harmless, see [`publish`]), never skips one.
pub struct RevocationFeed {
    pub registry: Arc<dyn LicenseRegistry>,
    pub store: Store,
    pub client: GatewayClient,
    pub prefix: RegionPrefix,
    pub outbox_written: Arc<Notify>,
    pub metrics: Option<Arc<NodeMetrics>>,
    /// How often the feed is read, and the wait after a failed read.
    pub poll: Duration,
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What reading a page found.
enum Read {
    /// The registry has no feed: the node makes its revocations itself.
    NoFeed,
    /// A page was published; `true` when more follow right away.
    Page(bool),
}

impl RevocationFeed {
    /// Follows the feed until shutdown; returns at once for a registry without one.
    pub async fn run(self, shutdown: ShutdownSignal) {
        // One replica at a time follows the feed (see `crate::feed_turn`).
        while let Some((mut turn, mut cursor)) =
            crate::feed_turn::take(&self.store, FEED_TURN, FEED_CURSOR, self.poll, &shutdown).await
        {
            loop {
                let more = match self.follow_page(&mut cursor).await {
                    Ok(Read::NoFeed) => return,
                    Ok(Read::Page(more)) => more,
                    Err(error) => {
                        tracing::warn!(%error, "platform revocation feed not read; retrying");
                        false
                    }
                };
                if more {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.clone().wait() => return,
                    _ = tokio::time::sleep(self.poll) => {}
                }
                if !turn.still_held().await {
                    tracing::warn!("lost the turn at the revocation feed; taking it again");
                    break;
                }
            }
        }
    }

    async fn follow_page(&self, cursor: &mut String) -> Result<Read, FeedError> {
        let Some(page) = self.registry.revocations_after(cursor, FEED_PAGE).await? else {
            return Ok(Read::NoFeed);
        };
        for revocation in &page.revocations {
            self.publish(revocation).await?;
        }
        if page.next_cursor != *cursor {
            self.store
                .set_setting(FEED_CURSOR, page.next_cursor.clone().into_bytes())
                .await?;
            *cursor = page.next_cursor;
        }
        Ok(Read::Page(page.more))
    }

    async fn publish(&self, revocation: &PlatformRevocation) -> Result<(), StoreError> {
        let issued_here = credentials::license_issuer(&revocation.license_id)
            .is_ok_and(|issuer| self.prefix.contains(&issuer));
        if !issued_here {
            // Only the issuing region may revoke (the gateway refuses the others).
            tracing::error!(
                license = %revocation.license_id,
                cursor = %revocation.cursor,
                "the platform's revocation feed lists a license not issued here; skipped"
            );
            if let Some(metrics) = &self.metrics {
                metrics.feed_problem("revocations", "not_issued_here");
            }
            return Ok(());
        }
        let reason = citizen_reason(&revocation.reason);
        let replicas = publish(
            &self.store,
            &self.client,
            &self.outbox_written,
            &revocation.license_id,
            &reason,
            revocation.revoked_ms,
        )
        .await?;
        tracing::info!(
            license = %revocation.license_id,
            replicas = replicas.len(),
            "license revoked at the platform; publishing"
        );
        Ok(())
    }
}

/// The platform's reason as the federation carries it: trimmed, at most 200
/// characters, without control or bidirectional formatting characters (as the
/// operator's route requires of its reasons); a stock sentence when that leaves nothing.
fn citizen_reason(reason: &str) -> String {
    let mut one = [0u8; 4];
    let cleaned: String = reason
        .trim()
        .chars()
        .filter(|c| tongban_proto::rules::text::problem(c.encode_utf8(&mut one)).is_none())
        .take(200)
        .collect();
    if cleaned.trim().is_empty() {
        NO_REASON.to_owned()
    } else {
        cleaned.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_never_empty() {
        assert_eq!(citizen_reason("  annulled \n"), "annulled");
        assert_eq!(citizen_reason("\u{7}"), NO_REASON);
        assert_eq!(citizen_reason("a\u{202E}b"), "ab");
        assert_eq!(citizen_reason(&"x".repeat(300)).chars().count(), 200);
    }
}

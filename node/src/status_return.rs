//! Status return (属地返还): a case is handled in the region that is competent for it,
//! but the citizen follows it where they filed it. Status changes the platform makes to
//! cases handled here therefore go back to the filing region: through the outbox (a
//! `PushStatus` call via the gateway) when another region filed the case, straight into
//! the store when it was filed here.
//!
//! Two sources feed it: the platform's live feed of changes, and a periodic sweep of
//! recently changed cases that catches what the feed missed (a lagging receiver, a crash
//! between a change and its announcement).

use std::{sync::Arc, time::Duration};

use tokio::sync::{Notify, broadcast};
use tongban_proto::{
    rules::region::{RegionCode, RegionPrefix},
    v1::PushStatusRequest,
};
use tongban_runtime::process::shutdown::ShutdownSignal;

use crate::{
    platform::{Platform, PlatformCase},
    store::Store,
};

/// Returns status changes of cases handled here to their filing region (属地返还):
/// through the outbox when another region filed the case, directly when it was filed
/// here. Both paths are idempotent per (case, sequence), so the live feed and the
/// sweep may report the same change.
#[derive(Clone)]
pub(crate) struct StatusReturn {
    pub(crate) store: Store,
    pub(crate) region: RegionCode,
    pub(crate) prefix: RegionPrefix,
    /// Woken after a push is queued, so the forwarder sends it without waiting a poll.
    pub(crate) wake: Arc<Notify>,
    /// Counts decisions on cases filed and handled here.
    pub(crate) metrics: Option<Arc<crate::metrics::NodeMetrics>>,
}

/// Each sweep starts this far before the previous one started: a change committed
/// while that sweep ran, or stamped by a platform clock a little behind ours, is not
/// missed. Returning a change twice is harmless (idempotent per case and sequence).
const SWEEP_OVERLAP_MS: i64 = 60_000;
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How far back a node's first sweep ever looks.
const FIRST_SWEEP: Duration = Duration::from_secs(24 * 3600);
/// The setting that keeps when the last complete sweep started (Unix ms, decimal).
const SWEEP_WATERMARK: &str = "status_sweep_watermark_ms";

impl StatusReturn {
    /// Returns one change, by where its case was filed.
    async fn record(&self, case: PlatformCase) {
        let local = RegionCode::parse(&case.origin_region)
            .map(|o| self.prefix.contains(&o))
            .unwrap_or(false);
        // The acceptance itself travels back in the delivery's answer.
        if !local && case.status.stage == tongban_proto::v1::Stage::Accepted as i32 {
            return;
        }
        let result = if local {
            crate::metrics::apply_status(
                &self.store,
                self.metrics.as_deref(),
                case.case_number.clone(),
                case.status.clone(),
            )
            .await
            .map(|_| ())
        } else {
            let request = PushStatusRequest {
                case_number: case.case_number.clone(),
                handling_region: self.region.to_string(),
                status: Some(case.status.clone()),
            };
            let queued = self
                .store
                .enqueue_push(
                    case.case_number.clone(),
                    case.origin_region.clone(),
                    case.one_thing_id.clone(),
                    request,
                )
                .await;
            self.wake.notify_one();
            queued
        };
        if let Err(error) = result {
            tracing::error!(%error, case = %case.case_number, "could not record a status change");
        }
    }

    /// Changes as the platform announces them.
    pub(crate) async fn run_live(
        self,
        mut changes: broadcast::Receiver<PlatformCase>,
        shutdown: ShutdownSignal,
    ) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let case = tokio::select! {
                _ = &mut stop => return,
                case = changes.recv() => case,
            };
            match case {
                Ok(case) => self.record(case).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "status changes missed; the sweep will return them"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Every case changed since the last complete sweep, at start and then
    /// periodically: catches what the live feed missed, including changes made just
    /// before a crash. Where the last sweep got to is kept in the store, so a node that
    /// was down for a week, or whose platform failed sweeps for hours, still returns
    /// every change made meanwhile; a failed sweep does not advance it.
    pub(crate) async fn run_sweep(self, platform: Arc<dyn Platform>, shutdown: ShutdownSignal) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut since = match self.store.setting(SWEEP_WATERMARK).await {
            Ok(Some(bytes)) => parse_watermark(&bytes),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "status sweep watermark unreadable");
                None
            }
        }
        // Never swept (a new node): everything its platform changed in the last day.
        .unwrap_or_else(|| crate::store::now_ms() - FIRST_SWEEP.as_millis() as i64);
        loop {
            let started = crate::store::now_ms();
            match platform
                .updated_since(since.saturating_sub(SWEEP_OVERLAP_MS))
                .await
            {
                Ok(cases) => {
                    for case in cases {
                        self.record(case).await;
                    }
                    since = started;
                    let mark = started.to_string().into_bytes();
                    if let Err(error) = self.store.set_setting(SWEEP_WATERMARK, mark).await {
                        tracing::warn!(%error, "status sweep watermark not saved");
                    }
                }
                Err(error) => tracing::warn!(%error, "status sweep failed"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    }
}

fn parse_watermark(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_watermark_reads_back_or_is_ignored() {
        assert_eq!(
            super::parse_watermark(b"1764650000000"),
            Some(1_764_650_000_000)
        );
        assert_eq!(super::parse_watermark(b"yesterday"), None);
        assert_eq!(super::parse_watermark(&[0xff, 0x00]), None);
    }
}

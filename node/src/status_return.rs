//! Status return (属地返还): a case is handled in the region that is competent for it,
//! but the citizen follows it where they filed it. Status changes the platform makes to
//! cases handled here therefore go back to the filing region: through the outbox (a
//! `PushStatus` call via the gateway) when another region filed the case, straight into
//! the store when it was filed here.
//!
//! It follows the platform's feed of status changes from a cursor kept in the node's
//! store: a page is recorded, then the cursor moves past it, so a crash between the
//! two returns a change twice (harmless: idempotent per case and sequence) and never
//! misses one. Each change is checked against the canonical state machine; a status
//! code the node's table does not map stops the feed at that change (counted, logged
//! with the code) until the table is fixed, so nothing is guessed and nothing is lost.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tongban_proto::{
    rules::region::{RegionCode, RegionPrefix},
    v1::{PushStatusRequest, Stage},
};
use tongban_runtime::process::shutdown::ShutdownSignal;

use crate::{
    platform::{Platform, PlatformCase, contract::status::stage_transition_allowed},
    store::Store,
};

/// Returns status changes of cases handled here to their filing region (属地返还):
/// through the outbox when another region filed the case, directly when it was filed
/// here. Both paths are idempotent per (case, sequence), so a change read twice (after
/// a crash before the cursor was kept) is returned once.
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

/// Changes read at once.
const FEED_PAGE: u32 = 200;
/// The setting that keeps the feed's cursor: where the node resumes after a restart.
/// The job whose turn a replica takes to follow the feed.
const FEED_TURN: &str = "platform_case_events";
const FEED_CURSOR: &str = "platform_event_cursor";

impl StatusReturn {
    /// Returns one change, by where its case was filed. An error leaves it unrecorded:
    /// the caller must not move the feed's cursor past it.
    async fn record(&self, case: PlatformCase) -> Result<(), crate::store::StoreError> {
        let local = RegionCode::parse(&case.origin_region)
            .map(|o| self.prefix.contains(&o))
            .unwrap_or(false);
        // The acceptance itself travels back in the delivery's answer.
        if !local && case.status.stage == tongban_proto::v1::Stage::Accepted as i32 {
            return Ok(());
        }
        let result = if local {
            // For a joint case filed here, the part handled here (the store knows which).
            let report = crate::store::StatusReport {
                case_number: case.case_number.clone(),
                part: None,
                reference: None,
                status: case.status.clone(),
            };
            crate::metrics::apply_status(&self.store, self.metrics.as_deref(), report)
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
        if let Err(error) = &result {
            tracing::error!(%error, case = %case.case_number, "could not record a status change; the feed is read again from before it");
        }
        result
    }

    /// Follows the platform's feed of status changes until shutdown: at start, when the
    /// platform says it changed, and every `poll` (which is also the wait after a
    /// failed read).
    pub(crate) async fn run_feed(
        self,
        platform: Arc<dyn Platform>,
        poll: Duration,
        shutdown: ShutdownSignal,
    ) {
        let changed = platform.changed().unwrap_or_default();
        // One replica at a time follows the feed (see `crate::feed_turn`).
        while let Some((mut turn, mut cursor)) =
            crate::feed_turn::take(&self.store, FEED_TURN, FEED_CURSOR, poll, &shutdown).await
        {
            loop {
                let more = match self.follow_page(platform.as_ref(), &mut cursor).await {
                    Ok(more) => more,
                    Err(error) => {
                        tracing::warn!(%error, "platform feed not read; retrying");
                        false
                    }
                };
                if more {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.clone().wait() => return,
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
                if !turn.still_held().await {
                    tracing::warn!("lost the turn at the platform feed; taking it again");
                    break;
                }
            }
        }
    }

    /// Records one page of the feed and moves the kept cursor past it; `Ok(true)` when
    /// more follows right away.
    async fn follow_page(
        &self,
        platform: &dyn Platform,
        cursor: &mut String,
    ) -> Result<bool, crate::platform::PlatformError> {
        let page = match platform.events_after(cursor, FEED_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let problem = match error {
                    crate::platform::PlatformError::UnmappedStatus(_) => Some("unmapped_status"),
                    crate::platform::PlatformError::Contract(_) => Some("contract"),
                    _ => None,
                };
                if let (Some(problem), Some(metrics)) = (problem, &self.metrics) {
                    metrics.feed_problem("case_events", problem);
                }
                return Err(error);
            }
        };
        for event in page.events {
            let to = Stage::try_from(event.case.status.stage).unwrap_or(Stage::Unspecified);
            if !stage_transition_allowed(event.previous, to) {
                tracing::error!(
                    case = %event.case.case_number,
                    from = ?event.previous,
                    to = ?to,
                    cursor = %event.cursor,
                    "the platform reported a change the canonical state machine forbids; skipped"
                );
                if let Some(metrics) = &self.metrics {
                    metrics.feed_problem("case_events", "invalid_transition");
                }
                continue;
            }
            // Not recorded (the store failed): the cursor stays, and the page is read
            // again; what was recorded already is recorded once (per case and sequence).
            self.record(event.case).await?;
        }
        if page.next_cursor != *cursor {
            self.store
                .set_setting(FEED_CURSOR, page.next_cursor.clone().into_bytes())
                .await?;
            *cursor = page.next_cursor;
        }
        Ok(page.more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_machine_s_transitions_are_returned() {
        assert!(stage_transition_allowed(None, Stage::Accepted));
        assert!(stage_transition_allowed(
            Some(Stage::InReview),
            Stage::Approved
        ));
        assert!(!stage_transition_allowed(
            Some(Stage::Approved),
            Stage::Rejected
        ));
        assert!(!stage_transition_allowed(
            Some(Stage::Accepted),
            Stage::Submitted
        ));
    }
}

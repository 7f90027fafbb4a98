//! Drains the outbox through the gateway: deliveries of applications filed here and
//! status pushes for cases handled here. An entry stays until its receiver has answered;
//! transient failures are retried with capped exponential backoff, with the same
//! idempotency key, so the receiver applies it once.
//!
//! Whether to retry is the failure's own answer (`CallFailed::retry`, stated by whoever
//! made the error); retry timing is persisted per entry (it must survive restarts),
//! which a retry middleware cannot do; hence the few lines of backoff arithmetic here.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream};
use prost::Message;
use tokio::sync::Notify;
use tongban_proto::v1::{DeliverApplicationRequest, PublishRevocationRequest, PushStatusRequest};
use tongban_runtime::shutdown::ShutdownSignal;

use tongban_proto::{resident_id::ResidentId, retry::Retry};

use crate::{
    config::OutboxConfig,
    context::NodeContext,
    gateway_client::{CallMeta, GatewayClient},
    store::{OutboxEntry, OutboxKind, Store, now_ms},
};

/// The outbox worker.
pub struct Forwarder {
    pub ctx: Arc<NodeContext>,
    pub store: Store,
    pub client: GatewayClient,
    pub settings: OutboxConfig,
    pub wake: Arc<Notify>,
    /// Finishes the pre-review of cases that wait for verification.
    pub intake: Arc<crate::intake::Intake>,
}

/// Outbox calls in flight at once.
const CONCURRENT_ATTEMPTS: usize = 16;

/// How often finished rows older than the retention are pruned, and how many rows one
/// prune call deletes at most (short transactions: the store has one connection).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 1000;

enum Attempt {
    Done,
    /// Try again later; the class says whether time (transient) or an operator
    /// (configuration) is what it waits for.
    Retry(String, Retry),
    /// Refused for good: a dead letter for an operator.
    Refused(String),
}

impl Attempt {
    fn transient(error: impl ToString) -> Self {
        Self::Retry(error.to_string(), Retry::Transient)
    }
}

impl Forwarder {
    /// Runs until shutdown.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += PRUNE_EVERY;
                self.prune().await;
            }
            // Shutdown does not wait for a drain: an attempt cut short leaves its entry
            // pending, and the receiver applies a resend once (same idempotency key).
            tokio::select! {
                _ = &mut stop => return,
                drained = self.drain() => {
                    if let Err(error) = drained {
                        tracing::error!(%error, "outbox scan failed");
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// Deletes finished rows older than the retention, a batch at a time.
    async fn prune(&self) {
        let retain = i64::try_from(self.settings.retain_finished.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(retain);
        let (mut outbox, mut inbound) = (0, 0);
        loop {
            match self.store.prune(before, PRUNE_BATCH).await {
                Ok((o, i)) => {
                    outbox += o;
                    inbound += i;
                    if o < PRUNE_BATCH as usize && i < PRUNE_BATCH as usize {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox prune failed; next try in an hour");
                    break;
                }
            }
        }
        if outbox + inbound > 0 {
            tracing::info!(
                outbox,
                inbound,
                "pruned finished outbox rows and old delivery keys"
            );
        }
    }

    async fn drain(&self) -> Result<(), crate::store::StoreError> {
        loop {
            let due = self.store.due_outbox(self.settings.batch_size).await?;
            if due.is_empty() {
                return Ok(());
            }
            let full = due.len() as u32 == self.settings.batch_size;
            let mut progressed = false;
            // Attempts run concurrently, so one slow or unreachable region does not
            // hold up deliveries to the others.
            let attempts: Vec<(OutboxEntry, Attempt)> = stream::iter(due)
                .map(|entry| async move {
                    let outcome = self.attempt(&entry).await;
                    (entry, outcome)
                })
                .buffer_unordered(CONCURRENT_ATTEMPTS)
                .collect()
                .await;
            for (entry, outcome) in attempts {
                let id = entry.id;
                let attempts = entry.attempts;
                self.count(&entry, &outcome);
                match outcome {
                    Attempt::Done => progressed = true,
                    Attempt::Retry(error, class) => {
                        let delay = self.backoff(id, attempts);
                        tracing::warn!(
                            case = %entry.case_number,
                            target = %entry.target_region,
                            trace_id = %entry.trace.trace_id_hex(),
                            attempts = attempts + 1,
                            retry_in_ms = delay.as_millis() as u64,
                            class = class.as_str(),
                            %error,
                            "outbox delivery failed; will retry"
                        );
                        self.store
                            .outbox_retry(id, now_ms() + delay.as_millis() as i64, error, class)
                            .await?;
                    }
                    Attempt::Refused(error) => {
                        tracing::error!(
                            case = %entry.case_number,
                            trace_id = %entry.trace.trace_id_hex(),
                            target = %entry.target_region,
                            outbox_id = id,
                            %error,
                            "outbox entry refused for good: a dead letter until an operator \
                             replays or closes it"
                        );
                        self.store.outbox_dead(id, error).await?;
                        progressed = true;
                    }
                }
            }
            if !(full && progressed) {
                return Ok(());
            }
        }
    }

    /// Counts an attempt, and for a case filed here its acknowledgement or refusal.
    fn count(&self, entry: &OutboxEntry, outcome: &Attempt) {
        let Some(metrics) = &self.ctx.metrics else {
            return;
        };
        let result = match outcome {
            Attempt::Done => "done",
            Attempt::Retry(_, Retry::Configuration) => "blocked",
            Attempt::Retry(..) => "retry",
            Attempt::Refused(_) => "dead",
        };
        metrics.outbox_attempt(entry.kind, result);
        let home = entry.applicant_home.as_deref().unwrap_or_default();
        match (entry.kind, outcome) {
            (OutboxKind::Deliver | OutboxKind::LocalSubmit, Attempt::Done) => {
                let age_ms = now_ms().saturating_sub(entry.filed_ms).max(0);
                metrics.accepted(
                    home,
                    &entry.target_region,
                    Duration::from_millis(age_ms as u64),
                );
            }
            (OutboxKind::Deliver, Attempt::Refused(_)) => {
                metrics.refused(home, &entry.target_region)
            }
            _ => {}
        }
    }

    async fn attempt(&self, entry: &OutboxEntry) -> Attempt {
        let meta = CallMeta {
            target_region: &entry.target_region,
            one_thing: &entry.one_thing_id,
            idempotency_key: Some(&entry.idempotency_key),
            trace: Some(entry.trace),
            attempt: entry.attempts + 1,
            applicant_home: entry.applicant_home.as_deref(),
            stage: None,
        };
        let result = match entry.kind {
            OutboxKind::Deliver => {
                let request = match DeliverApplicationRequest::decode(entry.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
                };
                self.client.deliver(request, &meta).await.map(|response| {
                    Some((
                        entry.case_number.clone(),
                        response.handling_reference,
                        response.status.unwrap_or_default(),
                    ))
                })
            }
            OutboxKind::LocalSubmit => return self.submit_locally(entry).await,
            OutboxKind::Verify => return self.verify(entry).await,
            OutboxKind::Revoke => {
                let request = match PublishRevocationRequest::decode(entry.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
                };
                let Some(endpoint) = entry.gateway_endpoint.as_deref() else {
                    return Attempt::Refused("revocation without a gateway endpoint".into());
                };
                self.client
                    .publish_revocation(endpoint, request, &entry.idempotency_key)
                    .await
                    .map(|_| None)
            }
            OutboxKind::PushStatus => {
                let request = match PushStatusRequest::decode(entry.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
                };
                let stage = request
                    .status
                    .as_ref()
                    .map(|s| crate::intake::stage_name(s.stage));
                let meta = CallMeta {
                    stage: stage.as_deref(),
                    ..meta
                };
                self.client.push_status(request, &meta).await.map(|_| None)
            }
        };
        match result {
            Ok(delivered) => match self.store.outbox_done(entry.id, delivered).await {
                Ok(()) => Attempt::Done,
                Err(e) => Attempt::transient(e),
            },
            // The failure's own class decides (see `tongban_proto::retry`): a
            // configuration refusal heals when an operator fixes it, so the entry stays
            // pending (counted as blocked); only a permanent one makes a dead letter.
            Err(failed) if failed.retry.may_retry() => {
                Attempt::Retry(failed.to_string(), failed.retry)
            }
            Err(failed) => Attempt::Refused(failed.to_string()),
        }
    }

    /// A case waiting in pre-review: the lookups again; once they complete, the case is
    /// handed over (or refused) and this entry is done.
    async fn verify(&self, entry: &OutboxEntry) -> Attempt {
        let application = match DeliverApplicationRequest::decode(entry.payload.as_slice()) {
            Ok(DeliverApplicationRequest {
                application: Some(app),
            }) => app,
            Ok(_) => return Attempt::Refused("stored payload has no application".into()),
            Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
        };
        match self
            .intake
            .resume(entry.id, &application, entry.trace)
            .await
        {
            Ok(true) => Attempt::Done,
            Ok(false) => Attempt::transient("identity or licenses cannot be verified yet"),
            Err(e) => Attempt::transient(e),
        }
    }

    /// A case filed and handled here goes to our own platform (idempotent by case
    /// number, so a retry after a crash creates nothing twice).
    async fn submit_locally(&self, entry: &OutboxEntry) -> Attempt {
        let application = match DeliverApplicationRequest::decode(entry.payload.as_slice()) {
            Ok(DeliverApplicationRequest {
                application: Some(app),
            }) => app,
            Ok(_) => return Attempt::Refused("stored payload has no application".into()),
            Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
        };
        let today = tongban_proto::calendar::business_now().date();
        let hash = match application
            .applicant
            .as_ref()
            .map(|a| ResidentId::parse(&a.id_number, self.ctx.regions, today))
        {
            Some(Ok(id)) => id.keyed_hash(&self.ctx.id_hash_key),
            _ => return Attempt::Refused("stored application has no valid applicant".into()),
        };
        let payload = application.encode_to_vec();
        match self
            .ctx
            .platform
            .submit(&application, &hash, &payload)
            .await
        {
            Ok(submitted) => {
                let done = (
                    entry.case_number.clone(),
                    submitted.case.reference,
                    submitted.case.status,
                );
                match self.store.outbox_done(entry.id, Some(done)).await {
                    Ok(()) => Attempt::Done,
                    Err(e) => Attempt::transient(e),
                }
            }
            Err(crate::platform::PlatformError::Conflict(e)) => Attempt::Refused(e),
            Err(e) => Attempt::transient(e),
        }
    }

    /// Capped exponential backoff with ±25 % spread derived from the entry, so entries
    /// that failed together do not retry in lock-step. Entries blocked by
    /// configuration follow the same schedule: it reaches the longest delay within a
    /// few minutes, and a fix is then picked up within that delay.
    fn backoff(&self, id: i64, attempts: u32) -> Duration {
        let base = self
            .settings
            .retry_initial
            .saturating_mul(1u32 << attempts.min(16))
            .min(self.settings.retry_max);
        let spread = ((id as u64).wrapping_mul(2_654_435_761) ^ u64::from(attempts)) % 51;
        base.mul_f64(0.75 + spread as f64 / 100.0)
    }
}

//! Drains the outbox through the gateway: deliveries of applications filed here and
//! status pushes for cases handled here. An entry stays until its receiver has answered;
//! transient failures are retried with capped exponential backoff, with the same
//! idempotency key, so the receiver applies it once.
//!
//! Whether to retry is the failure's own answer (`CallFailed::retry`, stated by whoever
//! made the error); retry timing is persisted per entry (it must survive restarts),
//! which a retry middleware cannot do; hence the few lines of backoff arithmetic here.

use std::{collections::HashMap, sync::Arc, time::Duration};

use prost::Message;
use tokio::{sync::Notify, task::JoinSet};
use tongban_proto::v1::{
    DeliverApplicationRequest, PublishRevocationRequest, PushStatusRequest, RaiseDisputeRequest,
    SettleDisputeRequest, SubmitEvaluationRequest,
};
use tongban_runtime::process::shutdown::ShutdownSignal;

use tongban_proto::{contract::retry::Retry, rules::resident_id::ResidentId};

use crate::{
    config::OutboxConfig,
    context::NodeContext,
    gateway_client::{CallFailed, CallMeta, GatewayClient},
    observe::{self, outbox::Settled},
    store::{OutboxEntry, OutboxKind, StatusReport, Store, now_ms},
};

/// The outbox worker.
pub struct Forwarder {
    pub ctx: Arc<NodeContext>,
    pub store: Store,
    pub client: GatewayClient,
    pub settings: OutboxConfig,
    pub wake: Arc<Notify>,
    /// Finishes the pre-review of cases that wait for verification.
    pub intake: Arc<crate::filing::Intake>,
    /// How long a case may wait for verification before it is a dead letter.
    pub verification_deadline: Duration,
}

/// Outbox attempts in flight at most per target province (`[outbox] batch_size` bounds
/// them over all provinces). Per province, not per 6-digit code: one province's cases
/// go to many of its cities and counties, and a slow province must not fill the batch
/// through them.
const IN_FLIGHT_PER_TARGET: usize = 8;

/// How often finished rows older than the retention are pruned, and how many rows one
/// prune call deletes at most (short transactions: the store has one connection).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 1000;

enum Attempt {
    Done,
    /// Try again later; the class says whether time (transient) or an operator
    /// (configuration) is what it waits for; the gateway may have said how long to
    /// wait at least (a shed call's pushback).
    Retry(String, Retry, Option<Duration>),
    /// Refused for good: a dead letter for an operator.
    Refused(String),
}

impl Attempt {
    fn transient(error: impl ToString) -> Self {
        Self::Retry(error.to_string(), Retry::Transient, None)
    }
}

impl Forwarder {
    /// Runs until shutdown.
    ///
    /// Each entry is attempted by a task of its own, at most `batch_size` at once and
    /// [`IN_FLIGHT_PER_TARGET`] per target province; whenever one ends, the store is asked
    /// for more due entries (not those in flight). So a region whose calls take seconds
    /// holds only its own slots, and deliveries to every other region go on at their
    /// own pace.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let this = Arc::new(self);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut next_prune = tokio::time::Instant::now();
        // On a store shared by replicas, claims on entries in flight are renewed well
        // within their lease, so only a replica that stopped loses them.
        let renew_every = this.store.lease().map(|lease| lease / 3);
        let mut next_renew = tokio::time::Instant::now();
        let mut in_flight: JoinSet<(OutboxEntry, Attempt)> = JoinSet::new();
        let in_flight_max = this.settings.batch_size as usize;
        // Entries in flight (id → target), and the task attempting each.
        let mut busy: HashMap<i64, String> = HashMap::new();
        let mut tasks: HashMap<tokio::task::Id, i64> = HashMap::new();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += PRUNE_EVERY;
                this.prune().await;
            }
            if let Some(every) = renew_every
                && tokio::time::Instant::now() >= next_renew
            {
                next_renew = tokio::time::Instant::now() + every;
                this.renew_claims(busy.keys().copied().collect()).await;
            }
            let free = in_flight_max.saturating_sub(in_flight.len());
            if free > 0 {
                let ids: Vec<i64> = busy.keys().copied().collect();
                let mut per_target: HashMap<String, usize> = HashMap::new();
                for target in busy.values() {
                    *per_target.entry(target.clone()).or_default() += 1;
                }
                // No more per province than slots are free: on a store shared by
                // replicas every entry returned is claimed (a write), and one claimed
                // but not taken is a second write to hand it back.
                let claim_per_target = IN_FLIGHT_PER_TARGET.min(free) as u32;
                match this.store.due_outbox(claim_per_target, ids).await {
                    Ok(due) => {
                        let mut skipped = Vec::new();
                        for entry in due {
                            let province = crate::metrics::province(&entry.target_region);
                            let n = per_target.entry(province.clone()).or_default();
                            if *n >= IN_FLIGHT_PER_TARGET || busy.len() >= in_flight_max {
                                skipped.push(entry.id);
                                continue;
                            }
                            *n += 1;
                            busy.insert(entry.id, province);
                            let (worker, id) = (this.clone(), entry.id);
                            let task = in_flight.spawn(async move {
                                let outcome = worker.attempt(&entry).await;
                                (entry, outcome)
                            });
                            tasks.insert(task.id(), id);
                        }
                        // Claimed but not taken now: free for the other replicas at once.
                        this.release_claims(skipped).await;
                    }
                    Err(error) => tracing::error!(%error, "outbox scan failed"),
                }
            }
            // Shutdown does not wait for attempts in flight: one cut short leaves its
            // entry pending, and the receiver applies a resend once (same key).
            tokio::select! {
                _ = &mut stop => {
                    // The claims of attempts cut short go back to the other replicas.
                    this.release_claims(busy.keys().copied().collect()).await;
                    return;
                }
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let task = match &done {
                        Ok((task, _)) => *task,
                        Err(error) => error.id(),
                    };
                    if let Some(id) = tasks.remove(&task) {
                        busy.remove(&id);
                    }
                    match done {
                        Ok((_, (entry, outcome))) => {
                            if let Err(error) = this.settle(&entry, outcome).await {
                                tracing::error!(
                                    %error,
                                    case = %entry.case_number,
                                    "outbox outcome not recorded; the entry stays due"
                                );
                            }
                        }
                        // A panicking attempt: its entry stays pending and due.
                        Err(error) => tracing::error!(%error, "outbox attempt failed"),
                    }
                }
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(this.settings.poll_interval) => {}
            }
        }
    }

    /// Renews this replica's claims on the entries it is attempting (a store shared by
    /// replicas; nothing to do otherwise).
    async fn renew_claims(&self, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        if let Err(error) = self.store.renew_outbox_leases(ids).await {
            tracing::warn!(%error, "outbox claims not renewed; other replicas may take them over");
        }
    }

    /// Hands claims back to the other replicas (entries claimed but not attempted).
    async fn release_claims(&self, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        if let Err(error) = self.store.release_outbox(ids).await {
            tracing::warn!(%error, "outbox claims not released; they lapse with their lease");
        }
    }

    /// Records how an attempt went (in [`crate::observe::outbox`]) and keeps it: done
    /// (already recorded by the attempt), a retry after a back-off, or a dead letter.
    async fn settle(
        &self,
        entry: &OutboxEntry,
        outcome: Attempt,
    ) -> Result<(), crate::store::StoreError> {
        let id = entry.id;
        match outcome {
            Attempt::Done => {
                observe::outbox::settled(&self.ctx, entry, &Settled::Done);
                Ok(())
            }
            Attempt::Retry(error, class, pushback) => {
                let delay = self
                    .backoff(id, entry.attempts)
                    .max(pushback.unwrap_or_default());
                let settled = Settled::Retry {
                    error: &error,
                    class,
                    delay,
                };
                observe::outbox::settled(&self.ctx, entry, &settled);
                self.store
                    .outbox_retry(id, now_ms() + delay.as_millis() as i64, error, class)
                    .await
            }
            Attempt::Refused(error) => {
                observe::outbox::settled(&self.ctx, entry, &Settled::Dead { error: &error });
                self.store.outbox_dead(id, error).await
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
                let part = request
                    .application
                    .as_ref()
                    .map(|a| a.part_id.clone())
                    .filter(|p| !p.is_empty());
                self.client.deliver(request, &meta).await.map(|response| {
                    Some(StatusReport {
                        case_number: entry.case_number.clone(),
                        part,
                        reference: Some(response.handling_reference),
                        status: response.status.unwrap_or_default(),
                    })
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
            OutboxKind::Evaluate => {
                let request = match SubmitEvaluationRequest::decode(entry.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
                };
                self.client
                    .submit_evaluation(request, &meta)
                    .await
                    .map(|_| None)
            }
            OutboxKind::Dispute | OutboxKind::Settle => {
                match self.dispute_leg(entry, &meta).await {
                    Ok(sent) => sent.map(|()| None),
                    Err(unreadable) => return Attempt::Refused(unreadable),
                }
            }
            OutboxKind::PushStatus => {
                let request = match PushStatusRequest::decode(entry.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return Attempt::Refused(format!("stored payload unreadable: {e}")),
                };
                let stage = request
                    .status
                    .as_ref()
                    .map(|s| crate::filing::stage_name(s.stage));
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
            // The failure's own class decides (see `tongban_proto::contract::retry`): a
            // configuration refusal heals when an operator fixes it, so the entry stays
            // pending (counted as blocked); only a permanent one makes a dead letter.
            Err(failed) if failed.retry.may_retry() => {
                Attempt::Retry(failed.to_string(), failed.retry, failed.pushback)
            }
            Err(failed) => Attempt::Refused(failed.to_string()),
        }
    }

    /// A dispute sent to its issuer, or its settlement back to the flagging region; `Err`
    /// when the stored payload cannot be read (refused for good).
    async fn dispute_leg(
        &self,
        entry: &OutboxEntry,
        meta: &CallMeta<'_>,
    ) -> Result<Result<(), CallFailed>, String> {
        let unreadable = |e: prost::DecodeError| format!("stored payload unreadable: {e}");
        Ok(match entry.kind {
            OutboxKind::Settle => {
                let request =
                    SettleDisputeRequest::decode(entry.payload.as_slice()).map_err(unreadable)?;
                self.client.settle_dispute(request, meta).await.map(|_| ())
            }
            _ => {
                let request =
                    RaiseDisputeRequest::decode(entry.payload.as_slice()).map_err(unreadable)?;
                self.client.raise_dispute(request, meta).await.map(|_| ())
            }
        })
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
            Ok(false) => self.still_unverified(entry),
            Err(e) => Attempt::transient(e),
        }
    }

    /// A case whose pre-review still cannot complete: it waits, until the deadline makes
    /// it a dead letter for an operator (never a case that waits forever unseen).
    fn still_unverified(&self, entry: &OutboxEntry) -> Attempt {
        // Counted from the filing, or from an operator's replay: it gets the deadline again.
        let since = entry.replayed_ms.unwrap_or(entry.filed_ms);
        let waited_ms = crate::store::now_ms().saturating_sub(since);
        let deadline = self.verification_deadline;
        if u128::try_from(waited_ms).unwrap_or(0) < deadline.as_millis() {
            return Attempt::transient("identity or licenses cannot be verified yet");
        }
        Attempt::Refused(format!(
            "pre-review could not verify the applicant's identity or licenses within {}: a \
             region did not answer or has no node registered; replay once it answers, or \
             close with a reason the citizen reads",
            humantime::format_duration(deadline)
        ))
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
        let today = tongban_proto::rules::calendar::business_now().date();
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
                let done = StatusReport {
                    case_number: entry.case_number.clone(),
                    part: Some(application.part_id.clone()).filter(|p| !p.is_empty()),
                    reference: Some(submitted.case.reference),
                    status: submitted.case.status,
                };
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

//! Every lookup of a person's data reaches their access log, those answered from this
//! gateway's cache too: the issuer records the lookups it answers, and the ones it never
//! saw (a cache hit, a grace copy) are reported to it here, in batches, with a report id
//! it records once however often a batch is delivered.
//!
//! Reports wait in memory, per region asked, until delivered (every `FLUSH_EVERY`, or
//! sooner once a batch is full); a region that cannot be reached keeps its reports and
//! they go with the next pass. At most `MAX_PENDING` wait: beyond, the oldest are dropped
//! and counted (`tongban_gateway_access_reports_total{outcome="dropped"}`, alert
//! `TongbanAccessReportsDropped`), never silently. At shutdown one last pass delivers
//! what it can within two seconds; a crash loses what waited (at most `FLUSH_EVERY` of
//! lookups of a reachable region), which the gateway's own audit trail still names.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::sync::Notify;
use tongban_proto::{
    rules::region::{RegionCode, RegionPrefix},
    v1::{AccessReport, LookupPurpose, RecordAccessesRequest, RecordAccessesResponse},
};
use tongban_runtime::process::shutdown::ShutdownSignal;

use super::{footprint::Charges, issuer};
use crate::{methods::issuer_paths, registry::SharedRegistry};

/// How often waiting reports are delivered.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Reports in one request (the node's limit).
const BATCH: usize = 1000;
/// Reports waiting at most, over every region.
const MAX_PENDING: usize = 100_000;
/// Time one delivery may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// What was looked up, as the issuer's access log names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Looked {
    Identity,
    License,
    HolderLicenses,
}

impl Looked {
    fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::License => "license",
            Self::HolderLicenses => "licenses",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The reports waiting, by the region code that was asked (its route is looked up again
/// at delivery: a reload may have moved it).
#[derive(Default)]
struct Waiting {
    by_region: BTreeMap<RegionCode, VecDeque<AccessReport>>,
    total: usize,
}

/// Reports of cache-served lookups, waiting for delivery to the regions asked.
pub struct AccessReports {
    waiting: Mutex<Waiting>,
    full_batch: Notify,
    /// This replica's run, so report ids of replicas and restarts never meet.
    run: String,
    next: AtomicU64,
    outcomes: Family<OutcomeLabel, Counter>,
    pending: Gauge,
}

impl AccessReports {
    pub fn new(metrics: &mut prometheus_client::registry::Registry) -> Self {
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        // Every outcome is a series from the start: a rate over a missing series is no alert.
        for outcome in ["queued", "delivered", "dropped"] {
            let _ = outcomes.get_or_create(&OutcomeLabel { outcome });
        }
        metrics.register(
            "tongban_gateway_access_reports",
            "Lookups of a person's data answered without asking the issuer (cache, grace), \
             reported to it for the access log: queued, delivered, or dropped (never silently)",
            outcomes.clone(),
        );
        let pending = Gauge::default();
        metrics.register(
            "tongban_gateway_access_reports_pending",
            "Reports of cache-served lookups waiting for delivery to their issuer",
            pending.clone(),
        );
        let mut run = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut run);
        Self {
            waiting: Mutex::default(),
            full_batch: Notify::new(),
            run: tongban_proto::rules::digest::hex(&run),
            next: AtomicU64::new(0),
            outcomes,
            pending,
        }
    }

    fn count(&self, outcome: &'static str, n: usize) {
        self.outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(n as u64);
    }

    /// Queues the report of a lookup of `holder`'s data, asked of `region` by `requester`
    /// and answered from the gateway's cache.
    pub fn served_from_cache(
        &self,
        region: RegionCode,
        looked: Looked,
        holder: &str,
        license_id: Option<&str>,
        requester: &RegionPrefix,
        purpose: Option<&LookupPurpose>,
    ) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let report = AccessReport {
            report_id: format!("{}-{}", self.run, self.next.fetch_add(1, Ordering::Relaxed)),
            kind: looked.as_str().to_owned(),
            holder_id_number: holder.to_owned(),
            license_id: license_id.unwrap_or_default().to_owned(),
            requester_region: requester.to_string(),
            purpose: purpose.cloned(),
            at: Some(prost_types::Timestamp {
                seconds: i64::try_from(at.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(at.subsec_nanos()).unwrap_or(0),
            }),
        };
        self.count("queued", 1);
        let full = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let queue = waiting.by_region.entry(region).or_default();
            queue.push_back(report);
            let full = queue.len() >= BATCH;
            waiting.total += 1;
            self.make_room(&mut waiting);
            full
        };
        if full {
            self.full_batch.notify_one();
        }
    }

    /// Drops the oldest reports of the longest queue while more than `MAX_PENDING` wait.
    fn make_room(&self, waiting: &mut Waiting) {
        while waiting.total > MAX_PENDING {
            let Some(longest) = waiting
                .by_region
                .iter_mut()
                .max_by_key(|(_, q)| q.len())
                .map(|(_, q)| q)
            else {
                break;
            };
            if longest.pop_front().is_none() {
                break;
            }
            waiting.total -= 1;
            self.count("dropped", 1);
        }
        waiting.by_region.retain(|_, q| !q.is_empty());
        self.pending
            .set(i64::try_from(waiting.total).unwrap_or(i64::MAX));
    }

    /// Up to a batch from each region's queue.
    fn take(&self) -> Vec<(RegionCode, Vec<AccessReport>)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = Vec::new();
        let mut total = waiting.total;
        for (region, queue) in &mut waiting.by_region {
            let n = queue.len().min(BATCH);
            total -= n;
            taken.push((*region, queue.drain(..n).collect()));
        }
        waiting.total = total;
        waiting.by_region.retain(|_, q| !q.is_empty());
        self.pending.set(i64::try_from(total).unwrap_or(i64::MAX));
        taken
    }

    /// Puts a batch that could not be delivered back at the front of its queue.
    fn put_back(&self, region: RegionCode, batch: Vec<AccessReport>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.total += batch.len();
        let queue = waiting.by_region.entry(region).or_default();
        for report in batch.into_iter().rev() {
            queue.push_front(report);
        }
        self.make_room(&mut waiting);
    }

    /// Delivers waiting reports until `shutdown`.
    pub async fn deliver_until(&self, registry: &SharedRegistry, shutdown: ShutdownSignal) {
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = self.full_batch.notified() => {}
                () = &mut stop => break,
            }
            self.deliver(registry).await;
        }
    }

    /// The last pass, once the calls have drained: what it delivers within two seconds.
    pub async fn last_pass(&self, registry: &SharedRegistry) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.deliver(registry)).await;
        let left = self.pending();
        if left > 0 {
            tracing::warn!(
                reports = left,
                "access reports left undelivered at shutdown"
            );
            self.count("dropped", left);
        }
    }

    /// One pass: a batch per region, each to the node registered for it now.
    async fn deliver(&self, registry: &SharedRegistry) {
        for (region, batch) in self.take() {
            let Some(route) = registry.current().lookup(&region) else {
                // No node for the region any more: nobody holds the person's log here.
                tracing::warn!(%region, reports = batch.len(), "access reports dropped: no node is registered for the region");
                self.count("dropped", batch.len());
                continue;
            };
            let request = RecordAccessesRequest { reports: batch };
            let answer = issuer::call::<_, RecordAccessesResponse>(
                &route,
                issuer_paths::RECORD_ACCESSES,
                &request,
                None,
                None,
                DEADLINE,
                &Charges::none(),
            )
            .await;
            let n = request.reports.len();
            match answer {
                Ok(_) => self.count("delivered", n),
                // A refusal for good (a malformed report) is not retried forever.
                Err(issuer::IssuerError::Refused {
                    code: tonic::Code::InvalidArgument,
                    message,
                }) => {
                    tracing::error!(%region, reports = n, %message, "access reports refused by the region");
                    self.count("dropped", n);
                }
                Err(error) => {
                    tracing::debug!(%region, reports = n, %error, "access reports kept for the next pass");
                    self.put_back(region, request.reports);
                }
            }
        }
    }

    /// Reports waiting now.
    pub fn pending(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports() -> AccessReports {
        AccessReports::new(&mut prometheus_client::registry::Registry::default())
    }

    fn queue(reports: &AccessReports, region: &str, n: usize) {
        let region = RegionCode::parse(region).unwrap_or_else(|_| unreachable!());
        let requester = RegionPrefix::parse("31").unwrap_or_else(|_| unreachable!());
        for _ in 0..n {
            reports.served_from_cache(region, Looked::License, "x", Some("l"), &requester, None);
        }
    }

    #[test]
    fn batches_are_taken_per_region_and_put_back_in_order() {
        let r = reports();
        queue(&r, "440000", BATCH + 5);
        queue(&r, "110000", 3);
        let taken = r.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(r.pending(), 5);
        let (region, batch) = taken
            .into_iter()
            .find(|(_, b)| b.len() == BATCH)
            .unwrap_or_else(|| unreachable!());
        let first = batch[0].report_id.clone();
        r.put_back(region, batch);
        assert_eq!(r.pending(), BATCH + 5);
        let again = r.take();
        assert_eq!(again[0].1[0].report_id, first);
    }

    #[test]
    fn beyond_the_bound_the_oldest_are_dropped_and_counted() {
        let r = reports();
        queue(&r, "440000", MAX_PENDING + 10);
        assert_eq!(r.pending(), MAX_PENDING);
        let dropped = r
            .outcomes
            .get_or_create(&OutcomeLabel { outcome: "dropped" })
            .get();
        assert_eq!(dropped, 10);
        let taken = r.take();
        // The oldest ten went: the first kept is the eleventh queued.
        assert!(
            taken[0].1[0].report_id.ends_with("-10"),
            "{}",
            taken[0].1[0].report_id
        );
    }
}

//! The scenario's load and what it waits for: filings at the origin's portals, a fixed
//! number in flight, each a new case for a synthetic resident of 44 (as the fault
//! tests file them); and the cases arriving at 44's platform, read from its database
//! (from this process: none of it is the origin's or PostgreSQL's CPU).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::anyhow;
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tongban_kit::testing::medical_filing;
use tongban_node::{
    platform::embedded::{EmbeddedPlatform, synthetic_residents},
    portal_client::PortalClient,
};
use tongban_proto::rules::region::{RegionPrefix, RegionTable};

use crate::load::new_histogram;

/// How long one filing may take before it counts as failed: a node that stops
/// answering must end the round, not hang the run.
const FILING_LIMIT: Duration = Duration::from_secs(30);

/// How often 44's platform database is read while cases arrive: a delivery's time is
/// known to within this.
const POLL: Duration = Duration::from_millis(20);

/// What a batch of filings did.
pub(super) struct Filed {
    /// Case numbers of the receipted filings.
    pub(super) cases: Vec<String>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// Receipt times, µs.
    pub(super) latency: Histogram<u64>,
    /// From the batch's start to its last receipt.
    pub(super) elapsed: Duration,
}

/// The filings of 44's synthetic residents (those seeded in its platform), one each,
/// encoded once (a JSON value displays as its JSON), so the load's own cost per filing
/// is small.
pub(super) fn filings(residents: u32) -> anyhow::Result<Vec<Bytes>> {
    let prefix = RegionPrefix::parse(super::federation::TARGET)?;
    let filings: Vec<Bytes> = synthetic_residents(RegionTable::embedded(), &prefix, residents)
        .iter()
        .map(|resident| Bytes::from(medical_filing(resident).to_string()))
        .collect();
    if filings.is_empty() {
        anyhow::bail!("no synthetic residents of 44 to file for");
    }
    Ok(filings)
}

/// Files `n` filings, `inflight` at once, filing `i` at portal `i % portals.len()`
/// for resident `i % filings.len()` under idempotency key `<key>-<i>`. A failed
/// filing is not retried: it is counted, and the first error kept.
pub(super) async fn file(
    portals: &[PortalClient],
    filings: &Arc<Vec<Bytes>>,
    n: usize,
    inflight: usize,
    key: &str,
) -> Filed {
    let portals: Arc<Vec<PortalClient>> = Arc::new(portals.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..inflight.min(n) {
        let (portals, filings, next) = (portals.clone(), filings.clone(), next.clone());
        let key = key.to_owned();
        tasks.spawn(async move {
            let mut mine = Filed {
                cases: Vec::new(),
                errors: 0,
                first_error: None,
                latency: new_histogram(),
                elapsed: Duration::ZERO,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return mine;
                }
                let portal = &portals[i % portals.len()];
                let filing = filings[i % filings.len()].clone();
                let key = format!("{key}-{i}");
                let at = Instant::now();
                let answer = tokio::time::timeout(
                    FILING_LIMIT,
                    portal.send_with(
                        "POST",
                        "/v1/applications",
                        filing,
                        &[("idempotency-key", &key)],
                    ),
                )
                .await;
                let outcome = match answer {
                    Err(_) => Err(format!("no answer within {FILING_LIMIT:?}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    // 201: filed now. A 200 would be an earlier filing's receipt (a key
                    // used twice), not a filing of this batch.
                    Ok(Ok(r)) if r.status == 201 => r.body["case_number"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("a receipt without a case number: {}", r.body)),
                    Ok(Ok(r)) => Err(format!("{} {}", r.status, r.body)),
                };
                match outcome {
                    Ok(case) => {
                        let us = at.elapsed().as_micros().max(1);
                        let _ = mine.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
                        mine.cases.push(case);
                        mine.elapsed = started.elapsed();
                    }
                    Err(e) => {
                        mine.errors += 1;
                        mine.first_error.get_or_insert(e);
                    }
                }
            }
        });
    }
    let mut filed = Filed {
        cases: Vec::new(),
        errors: 0,
        first_error: None,
        latency: new_histogram(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(mine) => {
                filed.cases.extend(mine.cases);
                filed.errors += mine.errors;
                if filed.first_error.is_none() {
                    filed.first_error = mine.first_error;
                }
                let _ = filed.latency.add(&mine.latency);
                filed.elapsed = filed.elapsed.max(mine.elapsed);
            }
            Err(e) => {
                filed.errors += 1;
                filed
                    .first_error
                    .get_or_insert_with(|| format!("a filing task failed: {e}"));
            }
        }
    }
    filed
}

/// The cases at 44's platform, read from its case feed as they arrive.
pub(super) struct Arrivals {
    platform: Arc<EmbeddedPlatform>,
    cursor: String,
    /// Each case's first event, when it was read.
    seen: HashMap<String, Instant>,
    /// Cases whose first event came more than once (a case taken twice).
    repeated: Vec<String>,
}

impl Arrivals {
    pub(super) fn new(platform: Arc<EmbeddedPlatform>) -> Self {
        Self {
            platform,
            cursor: String::new(),
            seen: HashMap::new(),
            repeated: Vec::new(),
        }
    }

    /// Reads the feed to its end.
    pub(super) async fn poll(&mut self) -> anyhow::Result<()> {
        loop {
            let page = self
                .platform
                .case_events_after(&self.cursor, 1000)
                .await
                .map_err(|e| anyhow!("reading 44's platform: {e}"))?;
            let now = Instant::now();
            for event in page.events {
                // Later events (a clerk's) would be changes, not arrivals; none run.
                if event.previous.is_none()
                    && self
                        .seen
                        .insert(event.case.case_number.clone(), now)
                        .is_some()
                {
                    self.repeated.push(event.case.case_number);
                }
            }
            self.cursor = page.next_cursor;
            if !page.more {
                return Ok(());
            }
        }
    }

    /// When the last of `cases` was read, if all have arrived.
    pub(super) fn all_arrived(&self, cases: &[String]) -> Option<Instant> {
        cases
            .iter()
            .map(|c| self.seen.get(c).copied())
            .collect::<Option<Vec<Instant>>>()?
            .into_iter()
            .max()
    }

    /// Polls until every one of `cases` has arrived, for at most `limit`; whether they
    /// all did.
    pub(super) async fn wait_for(
        &mut self,
        cases: &[String],
        limit: Duration,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            self.poll().await?;
            if self.all_arrived(cases).is_some() {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls while a batch is filed, until every case its filings receipted has
    /// arrived (the case numbers come through `receipted` once the batch is done), for
    /// at most `limit`; then calls `at_end` at once (to read the CPU there) and returns
    /// when the last case arrived, if all did, with what `at_end` gave.
    pub(super) async fn wait_for_batch<T>(
        &mut self,
        mut receipted: tokio::sync::oneshot::Receiver<Vec<String>>,
        limit: Duration,
        at_end: impl FnOnce() -> T,
    ) -> anyhow::Result<(Option<Instant>, T)> {
        let deadline = Instant::now() + limit;
        let mut cases: Option<Vec<String>> = None;
        loop {
            self.poll().await?;
            if cases.is_none() {
                cases = receipted.try_recv().ok();
            }
            if let Some(last) = cases.as_deref().and_then(|c| self.all_arrived(c)) {
                return Ok((Some(last), at_end()));
            }
            if Instant::now() > deadline {
                return Ok((None, at_end()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Receipted cases held at 44 once each (of `cases`), and what is wrong: cases
    /// missing, taken twice, or held without a receipt naming them.
    pub(super) fn check(&self, cases: &HashSet<String>) -> (u64, Vec<String>) {
        let mut problems = Vec::new();
        let missing: Vec<&String> = cases
            .iter()
            .filter(|c| !self.seen.contains_key(*c))
            .collect();
        let unknown = self.seen.keys().filter(|c| !cases.contains(*c)).count();
        if !missing.is_empty() {
            let shown: Vec<&String> = missing.iter().take(3).copied().collect();
            problems.push(format!(
                "{} receipted cases not at 44 (e.g. {shown:?})",
                missing.len()
            ));
        }
        if !self.repeated.is_empty() {
            problems.push(format!(
                "{} cases taken twice at 44 (e.g. {:?})",
                self.repeated.len(),
                &self.repeated[..self.repeated.len().min(3)]
            ));
        }
        if unknown > 0 {
            problems.push(format!("{unknown} cases at 44 no receipt names"));
        }
        let once = cases
            .iter()
            .filter(|c| self.seen.contains_key(*c) && !self.repeated.contains(*c))
            .count();
        (once as u64, problems)
    }
}

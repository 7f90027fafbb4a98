//! The lookup scenario, in the same run as the relay table: one license looked up
//! through the gateway and answered from its cache, lookups of licenses never looked up
//! before (each goes to the issuer, is verified and cached), and the issuer asked
//! directly — beside a routed call — interleaved round by round at each in-flight
//! count; then the gateway's RSS once its license cache holds `--lookup-fill` entries,
//! checked by looking every one of them up again and counting the cache hits the
//! gateway's `/metrics` report. What the node's register holds for it is written by
//! [`seed`] before the node starts.

pub mod seed;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use prost::Message;
use tongban_node::portal_client::PortalClient;
use tongban_proto::{
    contract::metadata,
    rules::region::RegionPrefix,
    v1::{
        FetchLicenseRequest, LookupLicenseRequest, LookupPurpose, VerdictOutcome,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::trust::identity::PeerIdentity;

use crate::{
    judgement::{Judgement, Tally},
    load::{Caller, Payloads},
    measure::{channel, lazy_channel, measure_window},
    report,
    setup::Running,
};

fn framed(message: &impl Message) -> bytes::Bytes {
    // The load tool sends message bodies as they are; it adds the gRPC frame itself.
    bytes::Bytes::from(message.encode_to_vec())
}

fn lookup_request(setup: &seed::Setup, license_id: &str) -> LookupLicenseRequest {
    LookupLicenseRequest {
        license_id: license_id.to_owned(),
        license_type: "marriage_certificate".into(),
        purpose: Some(LookupPurpose {
            applicant_request: Some(tongban_proto::rules::consent::request(
                "portal",
                1_780_000_000_000,
            )),
            one_thing_id: "household-transfer".into(),
            case_number: "310000-20261201-00000001".into(),
        }),
        material_id: "marriage_certificate".into(),
        holder_id_number: setup.holder.clone(),
    }
}

fn lookup(setup: &seed::Setup, license_id: &str) -> bytes::Bytes {
    framed(&lookup_request(setup, license_id))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Routed,
    Cached,
    Uncached,
    Issuer,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Routed, Kind::Cached, Kind::Uncached, Kind::Issuer];

    fn label(self) -> &'static str {
        match self {
            Self::Routed => "routed call via gateway (DeliverApplication, 256 B)",
            Self::Cached => "lookup via gateway, cached",
            Self::Uncached => "lookup via gateway, uncached",
            Self::Issuer => "lookup direct to the issuer (FetchLicense)",
        }
    }
}

/// One kind at one in-flight count, round by round.
struct Row {
    kind: Kind,
    inflight: usize,
    rounds: Vec<(f64, f64, f64)>,
    latency: hdrhistogram::Histogram<u64>,
    /// Answered calls over all rounds.
    calls: u64,
    /// Cached lookups the gateway did not answer from its cache (cache misses during
    /// the row's windows, from its `/metrics`; `None` when unreadable); 0 for the other
    /// kinds.
    misses: Option<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Row {
    /// Its calls for a goal: a cached lookup that missed the cache counts as failed,
    /// and unknown misses leave nothing to judge.
    fn tally(&self) -> Tally {
        let what = format!("{}, {} in flight", self.kind.label(), self.inflight);
        match (self.kind, self.misses) {
            // The misses include the warm-up's: at most the answered calls count.
            (Kind::Cached, Some(misses)) if misses > 0 => Tally::new(
                format!("{what}: {misses} cache misses in its windows, warm-up included"),
                self.calls.saturating_sub(misses),
                self.errors + misses.min(self.calls),
            ),
            (_, None) => Tally::new(
                format!("{what}: cache misses unreadable, so none shown answered from the cache"),
                0,
                self.calls + self.errors,
            ),
            _ => Tally::new(what, self.calls, self.errors),
        }
    }

    /// The median latency of the answered calls; `None` without any (an empty
    /// histogram reads 0).
    fn p50(&self) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(0.5))
    }
}

/// Options of the scenario.
pub struct Options {
    pub rounds: u32,
    pub seconds: f64,
    pub warmup: f64,
    pub inflight: Vec<usize>,
    pub fill: usize,
    /// The node was stopped on purpose (`--target-down`): a license the gateway does
    /// not recognize is reported, not fatal.
    pub target_down: bool,
}

/// The scenario's callers and what each sends.
struct Calls {
    routed: (Caller, bytes::Bytes),
    /// Lookups through the gateway: always the same license (cached), or one never
    /// asked for before from `fresh`, taken in turn by `cursor` (uncached).
    cached: Caller,
    cached_body: bytes::Bytes,
    /// The same channel to the gateway, for lookups whose verdict is read.
    gateway: GatewayClient<tonic::transport::Channel>,
    fresh: usize,
    cursor: Arc<AtomicUsize>,
    uncached: Payloads,
    issuer: Caller,
    issuer_body: bytes::Bytes,
}

impl Calls {
    /// Connects the callers and checks that the cached license is really recognized
    /// (the load tool sees only gRPC statuses).
    async fn new(
        run: &Running,
        pki: &Path,
        setup: &seed::Setup,
        routed: (Caller, bytes::Bytes),
        target_down: bool,
    ) -> anyhow::Result<Self> {
        let client = PeerIdentity::Region(RegionPrefix::parse("31")?);
        let node = PeerIdentity::Region(RegionPrefix::parse("44")?);
        let gateway_channel =
            channel(pki, &client, run.gateway_port, &PeerIdentity::Gateway).await?;
        let cached = Caller {
            channel: gateway_channel.clone(),
            path: tonic::codegen::http::uri::PathAndQuery::from_static(
                "/tongban.federation.v1.Gateway/LookupLicense",
            ),
            metadata: vec![(metadata::ONE_THING, "household-transfer".to_owned())],
            sampled_one_in: None,
            signer: None,
        };
        let cached_body = lookup(setup, &setup.licenses[0]);
        let gateway = GatewayClient::new(gateway_channel);
        let verdict = gateway
            .clone()
            .lookup_license(with_item(lookup_request(setup, &setup.licenses[0])))
            .await
            .map(tonic::Response::into_inner);
        match verdict {
            Ok(v) if v.outcome == VerdictOutcome::Recognized as i32 => {}
            other if target_down => {
                eprintln!("the benchmark's license is not recognized: {other:?}");
            }
            other => anyhow::bail!("the benchmark's license is not recognized: {other:?}"),
        }
        let fresh: Arc<Vec<bytes::Bytes>> = Arc::new(
            setup.licenses[1..]
                .iter()
                .map(|id| lookup(setup, id))
                .collect(),
        );
        let cursor = Arc::new(AtomicUsize::new(0));
        let issuer_channel = if target_down {
            lazy_channel(pki, &PeerIdentity::Gateway, run.node_port, &node)?
        } else {
            channel(pki, &PeerIdentity::Gateway, run.node_port, &node).await?
        };
        let issuer = Caller {
            channel: issuer_channel,
            path: tonic::codegen::http::uri::PathAndQuery::from_static(
                "/tongban.federation.v1.Node/FetchLicense",
            ),
            metadata: vec![(metadata::VERIFIED_ORIGIN, "31".to_owned())],
            sampled_one_in: None,
            signer: None,
        };
        // Asked as the gateway asks: with the applicant's request, which the issuer requires.
        let issuer_body = framed(&FetchLicenseRequest {
            license_id: setup.licenses[0].clone(),
            purpose: lookup_request(setup, &setup.licenses[0]).purpose,
            holder_id_number: setup.holder.clone(),
        });
        Ok(Self {
            routed,
            cached,
            cached_body,
            gateway,
            fresh: fresh.len(),
            uncached: Payloads::Pool {
                messages: fresh,
                next: cursor.clone(),
            },
            cursor,
            issuer,
            issuer_body,
        })
    }

    /// Fresh licenses looked up so far.
    fn used(&self) -> usize {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Distinct licenses looked up so far: the cached one and the fresh ones (the pool
    /// wraps past its end).
    fn distinct(&self) -> usize {
        1 + self.used().min(self.fresh)
    }
}

/// A lookup with the one-thing header the gateway expects.
fn with_item(message: LookupLicenseRequest) -> tonic::Request<LookupLicenseRequest> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        metadata::ONE_THING,
        tonic::metadata::MetadataValue::from_static("household-transfer"),
    );
    request
}

/// Looks each of `licenses` up once through the gateway, `inflight` at a time: lookups
/// answered "recognized", and the others (failed, or any other verdict: every seeded
/// license is valid), with the first of those.
async fn each_once(
    gateway: &GatewayClient<tonic::transport::Channel>,
    setup: &seed::Setup,
    licenses: &[String],
    inflight: usize,
) -> (u64, u64, Option<String>) {
    let requests: Arc<Vec<LookupLicenseRequest>> = Arc::new(
        licenses
            .iter()
            .map(|id| lookup_request(setup, id))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..inflight.max(1))
        .map(|_| {
            let (requests, next, mut gateway) = (requests.clone(), next.clone(), gateway.clone());
            tokio::spawn(async move {
                let (mut ok, mut bad, mut first) = (0u64, 0u64, None);
                while let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match gateway.lookup_license(with_item(request.clone())).await {
                        Ok(v) if v.get_ref().outcome == VerdictOutcome::Recognized as i32 => {
                            ok += 1;
                        }
                        other => {
                            bad += 1;
                            first.get_or_insert_with(|| format!("{other:?}"));
                        }
                    }
                }
                (ok, bad, first)
            })
        })
        .collect();
    let (mut ok, mut bad, mut first) = (0, 0, None);
    for task in tasks {
        match task.await {
            Ok((o, b, f)) => {
                ok += o;
                bad += b;
                first = first.or(f);
            }
            Err(e) => {
                bad += 1;
                first = first.or(Some(e.to_string()));
            }
        }
    }
    (ok, bad, first)
}

/// The license cache once filled: how many licenses it was to hold, how many a second
/// lookup found in it (hits counted by the gateway's `/metrics`), the lookups that
/// filled and re-read it, and the gateway's peak RSS read in between.
struct FilledCache {
    want: u64,
    /// Distinct licenses looked up in all (each looked up again).
    looked_up: usize,
    cached: Option<u64>,
    lookups: Tally,
    rss_now_kib: Option<u64>,
    rss_peak_kib: Option<u64>,
}

/// Measures the scenario and prints its tables. `routed` is the gateway's caller for
/// the relay table's 256 B call with its (primed) message.
pub async fn run(
    run: &Running,
    pki: &Path,
    setup: &seed::Setup,
    routed: (Caller, bytes::Bytes),
    options: &Options,
) -> anyhow::Result<()> {
    let calls = Calls::new(run, pki, setup, routed, options.target_down).await?;
    let rows = measure_rows(run, &calls, options).await;
    let used = calls.used();
    if used >= calls.fresh {
        eprintln!(
            "warning: the uncached lookups ran out of fresh licenses ({used} of {}); raise --lookup-licenses",
            calls.fresh
        );
    }
    let cache = fill_cache(run, setup, &calls, options).await;
    print_rows(&rows, options);
    println!(
        "\nGateway with a full license cache: {} license loads, {} of the {} distinct licenses looked up answered from the cache when looked up again, RSS {} now, {} peak.",
        cache_event(run, "load")
            .await
            .map_or("?".into(), |l| l.to_string()),
        cache.cached.map_or("?".into(), |c| c.to_string()),
        cache.looked_up,
        report::mib(cache.rss_now_kib),
        report::mib(cache.rss_peak_kib)
    );
    println!("\n### Lookup goals\n");
    report::print_goals(&goals(&rows, &cache));
    Ok(())
}

/// Fills the gateway's license cache to `--lookup-fill` distinct licenses exactly (the
/// lookups measured count), reads the gateway's peak RSS, then looks every license up
/// again: the cache hits that adds to the gateway's `/metrics` are the licenses it
/// holds.
async fn fill_cache(
    run: &Running,
    setup: &seed::Setup,
    calls: &Calls,
    options: &Options,
) -> FilledCache {
    let want = options.fill.clamp(1, calls.fresh + 1);
    if want < options.fill {
        eprintln!("warning: only {want} licenses to fill the cache with; raise --lookup-licenses");
    }
    if calls.distinct() > want {
        eprintln!(
            "warning: the measured lookups already asked for {} licenses, more than the {want} of --lookup-fill",
            calls.distinct()
        );
    }
    eprintln!("filling the gateway's license cache to {want} entries ...");
    let fill = &setup.licenses[calls.distinct().min(want)..want];
    let (mut ok, mut bad, mut first) = each_once(&calls.gateway, setup, fill, 64).await;
    let (rss_now_kib, rss_peak_kib) = run.gateway.rss_kib().unzip();
    eprintln!("looking the cached licenses up again ...");
    let hits_before = cache_event(run, "hit").await;
    let again = &setup.licenses[..calls.distinct().max(want)];
    let (o, b, f) = each_once(&calls.gateway, setup, again, 64).await;
    let hits_after = cache_event(run, "hit").await;
    (ok, bad, first) = (ok + o, bad + b, first.or(f));
    if let Some(first) = &first {
        eprintln!("first lookup that filled or re-read the cache without \"recognized\": {first}");
    }
    FilledCache {
        want: want as u64,
        looked_up: again.len(),
        cached: hits_after
            .zip(hits_before)
            .map(|(after, before)| after.saturating_sub(before)),
        lookups: Tally::new(
            "lookups filling and re-reading the license cache, any verdict but \"recognized\" counted failed",
            ok,
            bad,
        ),
        rss_now_kib,
        rss_peak_kib,
    }
}

/// Every kind at every in-flight count, interleaved round by round.
async fn measure_rows(run: &Running, calls: &Calls, options: &Options) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for &inflight in &options.inflight {
        eprintln!("measuring lookups at {inflight} in flight ...");
        for round in 0..options.rounds {
            for i in 0..Kind::ALL.len() {
                let kind = Kind::ALL[(i + round as usize) % Kind::ALL.len()];
                let (caller, payloads, proxy) = match kind {
                    Kind::Routed => (
                        &calls.routed.0,
                        Payloads::One(calls.routed.1.clone()),
                        Some(&run.gateway),
                    ),
                    Kind::Cached => (
                        &calls.cached,
                        Payloads::One(calls.cached_body.clone()),
                        Some(&run.gateway),
                    ),
                    Kind::Uncached => (&calls.cached, calls.uncached.clone(), Some(&run.gateway)),
                    Kind::Issuer => (
                        &calls.issuer,
                        Payloads::One(calls.issuer_body.clone()),
                        None,
                    ),
                };
                // Every cached lookup must be a cache hit: the gateway's misses during
                // its window (warm-up included) are lookups that were not.
                let misses_before = match kind {
                    Kind::Cached => cache_event(run, "miss").await,
                    _ => None,
                };
                let m = measure_window(
                    run,
                    proxy,
                    caller,
                    payloads,
                    inflight,
                    options.warmup,
                    options.seconds,
                )
                .await;
                let misses = match kind {
                    Kind::Cached => cache_event(run, "miss")
                        .await
                        .zip(misses_before)
                        .map(|(after, before)| after.saturating_sub(before)),
                    _ => Some(0),
                };
                let answered = m.stats.calls;
                // Per call over no call is no figure (NaN), not the CPU of the window.
                let per_call = |cpu_s: f64| match answered {
                    0 => f64::NAN,
                    n => cpu_s * 1e6 / n as f64,
                };
                let figures = (
                    answered as f64 / m.stats.elapsed.as_secs_f64(),
                    per_call(m.proxy_cpu_s),
                    per_call(m.node_cpu_s),
                );
                match rows
                    .iter_mut()
                    .find(|r| r.kind == kind && r.inflight == inflight)
                {
                    Some(row) => {
                        row.rounds.push(figures);
                        let _ = row.latency.add(&m.stats.latency_us);
                        row.calls += answered;
                        row.misses = row.misses.zip(misses).map(|(a, b)| a + b);
                        row.errors += m.stats.errors;
                        row.first_error = row.first_error.take().or(m.stats.first_error);
                    }
                    None => rows.push(Row {
                        kind,
                        inflight,
                        rounds: vec![figures],
                        latency: m.stats.latency_us,
                        calls: answered,
                        misses,
                        errors: m.stats.errors,
                        first_error: m.stats.first_error,
                    }),
                }
            }
        }
    }
    rows
}

/// The lookups table.
fn print_rows(rows: &[Row], options: &Options) {
    println!("\n## Lookups\n");
    println!(
        "{} s per cell and round (+{} s warm-up), {} interleaved rounds; req/s and CPU per call: median over rounds (min–max); gateway CPU is the gateway process's, node CPU the issuer's.\n",
        options.seconds, options.warmup, options.rounds
    );
    println!(
        "| in flight | what | req/s | p50 µs | p99 µs | errors | gateway CPU µs/call | node CPU µs/call |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let col = |f: fn(&(f64, f64, f64)) -> f64| {
            let values: Vec<f64> = row.rounds.iter().map(f).collect();
            report::median_spread(&values)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.inflight,
            row.kind.label(),
            col(|r| r.0),
            row.latency.value_at_quantile(0.5),
            row.latency.value_at_quantile(0.99),
            row.errors,
            if row.kind == Kind::Issuer {
                "–".into()
            } else {
                col(|r| r.1)
            },
            col(|r| r.2),
        );
        if let Some(e) = &row.first_error {
            println!("|  | first error: {e} | | | | | | |");
        }
    }
}

/// The lookup goals, each figure per round of the same run.
fn goals(rows: &[Row], cache: &FilledCache) -> Vec<(String, Judgement)> {
    let find = |kind, inflight| {
        rows.iter()
            .find(|r| r.kind == kind && r.inflight == inflight)
    };
    let mut goals = Vec::new();
    if let (Some(cached), Some(issuer)) = (find(Kind::Cached, 1), find(Kind::Issuer, 1)) {
        let (c, d) = (cached.p50(), issuer.p50());
        let us = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        goals.push((
            format!(
                "cached lookup p50 via the gateway below a direct uncached call to the issuer (1 in flight): {} µs vs {} µs",
                us(c),
                us(d)
            ),
            Judgement::of(
                &[cached.tally(), issuer.tally()],
                c.zip(d)
                    .ok_or_else(|| "no p50 of answered calls for both".to_owned()),
                |(c, d)| (c >= d).then(|| format!("{c} µs ≥ {d} µs")),
            ),
        ));
    }
    if let (Some(cached), Some(routed)) = (find(Kind::Cached, 64), find(Kind::Routed, 64)) {
        let ratio = |f: fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
            cached
                .rounds
                .iter()
                .zip(&routed.rounds)
                .map(|(c, r)| f(c) / f(r))
                .collect()
        };
        let throughput = ratio(|r| r.0);
        let cpu = ratio(|r| r.1);
        let tallies = [cached.tally(), routed.tally()];
        let no_ratio = "no round measured for both";
        goals.push((
            format!(
                "cached lookups ≥ 2× the routed calls' throughput at 64 in flight: {}",
                report::ratio_spread(&throughput)
            ),
            Judgement::at_least(
                &tallies,
                Some(report::median_of(&throughput)),
                no_ratio,
                2.0,
            ),
        ));
        goals.push((
            format!(
                "cached lookups ≤ 0.5× the routed calls' gateway CPU per call at 64 in flight: {}",
                report::ratio_spread(&cpu)
            ),
            Judgement::at_most(&tallies, Some(report::median_of(&cpu)), no_ratio, 0.5),
        ));
    }
    goals.push((
        format!(
            "gateway RSS < 64 MiB with {} cached licenses: {} peak",
            cache.want,
            report::mib(cache.rss_peak_kib)
        ),
        Judgement::rss_with_cache(
            &cache.lookups,
            cache.rss_peak_kib,
            cache.cached,
            cache.want,
            report::RSS_LIMIT_KIB,
        ),
    ));
    goals
}

/// A license-cache counter of the gateway (`load`, `hit`, ...), from its `/metrics`.
async fn cache_event(run: &Running, event: &str) -> Option<u64> {
    let port = run.gateway_admin_port?;
    let text = PortalClient::new(format!("http://127.0.0.1:{port}"))
        .get("/metrics")
        .await
        .ok()?
        .body
        .as_str()?
        .to_owned();
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "tongban_recognition_cache_events_total{{cache=\"license\",event=\"{event}\"}}"
            ))
        })?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;

    const MIB: u64 = 1024;

    /// A row: `answered` calls of `p50_us` each (or none recorded), `failed` calls, one
    /// round at `rps` and `cpu_us` gateway CPU per call.
    fn row(
        kind: Kind,
        inflight: usize,
        (answered, failed): (u64, u64),
        p50_us: Option<u64>,
        (rps, cpu_us): (f64, f64),
    ) -> Row {
        let mut latency = load::new_histogram();
        if let Some(us) = p50_us {
            latency.record_n(us, answered).unwrap();
        }
        Row {
            kind,
            inflight,
            rounds: vec![(rps, cpu_us, 0.0)],
            latency,
            calls: answered,
            misses: Some(0),
            errors: failed,
            first_error: None,
        }
    }

    fn good_rows() -> Vec<Row> {
        vec![
            row(Kind::Cached, 1, (1000, 0), Some(88), (10_000.0, 50.0)),
            row(Kind::Issuer, 1, (1000, 0), Some(498), (2_000.0, 0.0)),
            row(Kind::Cached, 64, (1000, 0), Some(1600), (35_000.0, 15.0)),
            row(Kind::Routed, 64, (1000, 0), Some(4500), (13_000.0, 32.0)),
        ]
    }

    fn cache(cached: Option<u64>, rss_mib: Option<u64>) -> FilledCache {
        FilledCache {
            want: 10_000,
            looked_up: 10_000,
            cached,
            lookups: Tally::new("fill", 10_000, 0),
            rss_now_kib: None,
            rss_peak_kib: rss_mib.map(|m| m * MIB),
        }
    }

    fn verdicts(goals: &[(String, Judgement)]) -> Vec<&'static str> {
        goals.iter().map(|(_, j)| j.label()).collect()
    }

    #[test]
    fn a_good_run_meets_the_lookup_goals_and_a_worse_one_does_not() {
        let judged = goals(&good_rows(), &cache(Some(10_000), Some(60)));
        assert_eq!(verdicts(&judged), ["met", "met", "met", "met"]);
        let worse = vec![
            row(Kind::Cached, 1, (1000, 0), Some(600), (1_600.0, 50.0)),
            row(Kind::Issuer, 1, (1000, 0), Some(498), (2_000.0, 0.0)),
            row(Kind::Cached, 64, (1000, 0), Some(1600), (20_000.0, 20.0)),
            row(Kind::Routed, 64, (1000, 0), Some(4500), (13_000.0, 32.0)),
        ];
        let judged = goals(&worse, &cache(Some(10_000), Some(66)));
        assert_eq!(
            verdicts(&judged),
            ["NOT met", "NOT met", "NOT met", "NOT met"]
        );
        assert_eq!(judged[0].1, Judgement::NotMet("600 µs ≥ 498 µs".into()));
    }

    #[test]
    fn all_cached_lookups_failed_cannot_judge() {
        // Every cached lookup failed: its p50 read 0, below any issuer's, and "cached
        // lookup p50 below the issuer's" used to print met.
        let mut rows = good_rows();
        rows[0] = row(Kind::Cached, 1, (0, 1200), None, (0.0, f64::NAN));
        let judged = goals(&rows, &cache(Some(10_000), Some(60)));
        assert_eq!(
            judged[0].1,
            Judgement::CannotJudge(
                "1200 of 1200 calls failed (lookup via gateway, cached, 1 in flight)".into()
            ),
            "{}",
            judged[0].0
        );
    }

    #[test]
    fn all_calls_failed_cannot_judge_the_lookup_goals() {
        // The issuer down: its calls failed and its histogram is empty (p50 read 0);
        // "cached p50 below the issuer's" must not print anything but cannot judge.
        let mut rows = good_rows();
        rows[1] = row(Kind::Issuer, 1, (0, 1200), None, (0.0, 0.0));
        rows[3] = row(Kind::Routed, 64, (0, 1200), None, (0.0, f64::NAN));
        let judged = goals(&rows, &cache(Some(10_000), Some(60)));
        assert_eq!(
            judged[0].1,
            Judgement::CannotJudge(
                "1200 of 1200 calls failed (lookup direct to the issuer (FetchLicense), 1 in flight)"
                    .into()
            )
        );
        assert!(matches!(&judged[1].1, Judgement::CannotJudge(w) if w.starts_with("1200 of 1200")));
        assert!(matches!(&judged[2].1, Judgement::CannotJudge(w) if w.starts_with("1200 of 1200")));
    }

    #[test]
    fn cached_lookups_that_missed_the_cache_cannot_judge() {
        // The "cached" row answered, but 3 of its lookups were not cache hits.
        let mut rows = good_rows();
        rows[0].misses = Some(3);
        let judged = goals(&rows, &cache(Some(10_000), Some(60)));
        assert_eq!(
            judged[0].1,
            Judgement::CannotJudge(
                "3 of 1000 calls failed (lookup via gateway, cached, 1 in flight: 3 cache misses in its windows, warm-up included)"
                    .into()
            )
        );
        // More misses than measured calls (the warm-up's count too): all of them failed,
        // no more.
        rows[0].misses = Some(1500);
        let judged = goals(&rows, &cache(Some(10_000), Some(60)));
        assert!(
            matches!(&judged[0].1, Judgement::CannotJudge(w) if w.starts_with("1000 of 1000 calls failed")),
            "{:?}",
            judged[0]
        );
        // Misses unreadable: nothing shows the lookups were answered from the cache.
        rows[0].misses = None;
        let judged = goals(&rows, &cache(Some(10_000), Some(60)));
        assert!(
            matches!(&judged[0].1, Judgement::CannotJudge(w) if w.contains("cache misses unreadable")),
            "{:?}",
            judged[0]
        );
    }

    #[test]
    fn a_missing_p50_cannot_judge() {
        let mut rows = good_rows();
        rows[0] = row(Kind::Cached, 1, (1000, 0), None, (10_000.0, 50.0));
        let judged = goals(&rows, &cache(Some(10_000), Some(60)));
        assert_eq!(
            judged[0].1,
            Judgement::CannotJudge("no p50 of answered calls for both".into())
        );
    }

    #[test]
    fn the_cache_goal_needs_the_rss_and_every_license_cached() {
        let rss = |c: FilledCache| goals(&good_rows(), &c).pop().unwrap().1;
        assert_eq!(
            rss(cache(Some(10_000), None)),
            Judgement::CannotJudge("RSS unreadable".into())
        );
        assert_eq!(
            rss(cache(None, Some(60))),
            Judgement::CannotJudge("cached count unreadable".into())
        );
        assert_eq!(
            rss(cache(Some(812), Some(20))),
            Judgement::CannotJudge("only 812 of 10000 licenses cached".into())
        );
        assert!(matches!(
            rss(cache(Some(812), Some(66))),
            Judgement::NotMet(_)
        ));
        let mut failed = cache(Some(10_000), Some(60));
        failed.lookups = Tally::new("fill", 0, 10_000);
        assert!(
            matches!(rss(failed), Judgement::CannotJudge(w) if w.starts_with("10000 of 10000"))
        );
        assert_eq!(rss(cache(Some(10_000), Some(60))), Judgement::Met);
    }
}

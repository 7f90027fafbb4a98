//! A revocation flood: one registered member (31) publishes revocations of made-up
//! license ids of its own prefix as fast as 64 callers can, ignoring every pushback,
//! while another member (44) revokes one of its real licenses and a third (11) keeps
//! looking up 44's licenses. Real gateway and node processes, real mTLS.
//!
//! Without a bound every one was accepted and remembered (the revoked set was bounded
//! only at 1,000,000 entries, evicting the oldest, so a flood could even make the
//! gateway forget real revocations). With `[recognition.revocations]` the flooding
//! member gets `burst` at once and `per_second` after that, never more than
//! `max_per_issuer` remembered; the rest is refused RESOURCE_EXHAUSTED,
//! `tongban-retry: transient`, with a pushback and a message naming the bound. 44's
//! revocation is accepted and applied during the flood, 11's lookups are served, the
//! gateway's RSS stays within its budget and its metrics count the refusals.
//! Figures are printed; only counts and bounds are asserted (a shared 2-core machine).

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tongban_kit::testing::SigningChannel;

use serde_json::json;
use tongban_gateway::config::RevocationSettings;
use tongban_kit::testing::{TestFederation, eventually, processes, start_with};
use tongban_node::portal_client::PortalClient;
use tongban_proto::{
    contract::{
        metadata,
        retry::{self, Retry},
    },
    v1::{PublishRevocationRequest, VerdictOutcome, gateway_client::GatewayClient},
};
use tonic::{Code, Request, Status, metadata::MetadataValue};

use super::{
    overload::gateway_rss,
    recognition::{client_at, license_of, lookup},
};

/// The flooding member's bounds, small so that the flood reaches each of them: the
/// rate once the burst is spent (the flood makes 1,000 to 1,500 signed calls a second
/// on this machine, about 200 when the rest of the suite keeps it busy: even then past
/// the rate within 3 s), the ceiling after 7 s.
const MAX_PER_ISSUER: u64 = 1_000;
const PER_SECOND: u32 = 100;
const BURST: u32 = 300;
/// Callers publishing at once (over [`CONNECTIONS`] connections), and for how long at
/// least: until the ceiling has refused some, and this long.
const CALLERS: usize = 64;
const CONNECTIONS: usize = 4;
const FLOOD_AT_LEAST: Duration = Duration::from_secs(10);
const FLOOD_AT_MOST: Duration = Duration::from_secs(60);
/// How much the gateway's resident memory may grow over the flood.
const RSS_GROWTH_BUDGET_MIB: f64 = 16.0;
const WAIT: Duration = Duration::from_secs(30);
const MATERIAL: &str = "household_register";
const ONE_THING: &str = "household-transfer";

/// What the flooding member saw.
#[derive(Default)]
struct Flood {
    attempts: AtomicU64,
    accepted: AtomicU64,
    /// Refused at the ceiling, for the rate, or shed by the gateway's admission.
    ceiling: AtomicU64,
    rate: AtomicU64,
    shed: AtomicU64,
    /// Refusals not stated as the contract says (transient, with a pushback), and
    /// other errors: the first few of each, for the failure message.
    misstated: Mutex<Vec<String>>,
    other: Mutex<Vec<String>>,
    longest_rate_pushback: Mutex<Duration>,
}

impl Flood {
    fn count(&self, which: &AtomicU64) -> u64 {
        let _ = self;
        which.load(Ordering::Relaxed)
    }

    fn note(list: &Mutex<Vec<String>>, what: String) {
        let mut list = list.lock().unwrap();
        list.push(what);
        list.truncate(5);
    }

    /// Counts one refusal, checking it is stated as the contract asks.
    fn refused(&self, status: &Status) {
        if status.code() != Code::ResourceExhausted {
            Self::note(&self.other, format!("{status:?}"));
            return;
        }
        let pushback = retry::pushback(status);
        if Retry::of(status) != Retry::Transient || pushback.is_none() {
            Self::note(&self.misstated, format!("{status:?}"));
        }
        let message = status.message();
        if message.contains("max_per_issuer") {
            self.ceiling.fetch_add(1, Ordering::Relaxed);
        } else if message.contains("per_second") {
            self.rate.fetch_add(1, Ordering::Relaxed);
            let mut longest = self.longest_rate_pushback.lock().unwrap();
            *longest = (*longest).max(pushback.unwrap_or_default());
        } else {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One revocation of a made-up license of 31's, the `n`th.
async fn publish(client: &mut GatewayClient<SigningChannel>, n: u64) -> Result<bool, Status> {
    let mut request = Request::new(PublishRevocationRequest {
        license_id: format!("310000-FLOOD-{n}"),
        reason: "flood".into(),
        revoked_at: None,
    });
    request.metadata_mut().insert(
        metadata::IDEMPOTENCY_KEY,
        MetadataValue::try_from(format!("flood-{n}")).unwrap(),
    );
    Ok(client
        .publish_revocation(request)
        .await?
        .into_inner()
        .applied)
}

/// [`CALLERS`] callers publishing until `stop`, each at once after every answer.
fn flood(
    clients: &[GatewayClient<SigningChannel>],
    counts: &Arc<Flood>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CALLERS)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let (counts, stop) = (counts.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = counts.attempts.fetch_add(1, Ordering::Relaxed);
                    match publish(&mut client, n).await {
                        Ok(true) => {
                            counts.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => Flood::note(&counts.other, format!("{n}: not new")),
                        Err(status) => counts.refused(&status),
                    }
                }
            })
        })
        .collect()
}

fn gateway_admin(t: &TestFederation) -> PortalClient {
    PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()))
}

async fn scrape(t: &TestFederation) -> String {
    let answer = gateway_admin(t).get("/metrics").await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body.as_str().unwrap().to_owned()
}

/// The value of the series `name` with every label of `labels`, if scraped.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The gateway's resident memory in MiB (present and positive: see `gateway_rss`).
async fn gateway_mib(t: &TestFederation) -> f64 {
    gateway_rss(t).await / (1024.0 * 1024.0)
}

/// 11's lookups of `licenses` (id, holder), with the outcome each must give.
async fn lookups(
    client: &GatewayClient<SigningChannel>,
    licenses: &[(String, String)],
) -> Vec<i32> {
    let mut outcomes = Vec::new();
    for (license, holder) in licenses {
        let verdict = lookup(&mut client.clone(), license, MATERIAL, ONE_THING, holder).await;
        outcomes.push(verdict.outcome);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_flood_is_bounded_and_the_other_members_are_served() {
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.launch = processes("error");
        spec.recognition.revocations = RevocationSettings {
            max_per_issuer: MAX_PER_ISSUER as usize,
            per_second: PER_SECOND,
            burst: BURST,
            ..RevocationSettings::default()
        };
    })
    .await;
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    let beijing = client_at(&t, &url, "11").await;
    // Guangdong's licenses, each looked up once so that it is cached: the one revoked
    // during the flood must stop being recognized from the cache too.
    let mut licenses = Vec::new();
    for resident in t.residents("44").iter().take(6) {
        let holder = resident.id.as_str().to_owned();
        licenses.push((license_of(&t, "44", &holder, MATERIAL).await, holder));
    }
    let recognized = VerdictOutcome::Recognized as i32;
    assert!(
        lookups(&beijing, &licenses)
            .await
            .iter()
            .all(|o| *o == recognized)
    );
    let rss_before = gateway_mib(&t).await;

    let mut shanghai = Vec::new();
    for _ in 0..CONNECTIONS {
        shanghai.push(client_at(&t, &url, "31").await);
    }
    let counts = Arc::new(Flood::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks = flood(&shanghai, &counts, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // During the flood: 44 revokes its first license at its node (published through
    // the node's outbox), and 11's lookups are served, the revoked one answering so.
    let (revoked, holder) = licenses[0].clone();
    let answer = t
        .fed
        .node("44")
        .unwrap()
        .operator
        .post_json(
            &format!("/licenses/{revoked}/revoke"),
            &json!({"reason": "annulled during the flood"}),
        )
        .await
        .unwrap();
    assert!(
        answer.status == 200 || answer.status == 202,
        "{}",
        answer.body
    );
    let t0 = Instant::now();
    eventually(WAIT, "44's revocation applied during the flood", || {
        let (client, revoked, holder) = (beijing.clone(), revoked.clone(), holder.clone());
        async move {
            let v = lookup(&mut client.clone(), &revoked, MATERIAL, ONE_THING, &holder).await;
            (v.outcome == VerdictOutcome::Revoked as i32).then_some(())
        }
    })
    .await;
    let revoked_after = t0.elapsed();
    let t0 = Instant::now();
    let during = lookups(&beijing, &licenses[1..]).await;
    let lookups_took = t0.elapsed();
    assert!(during.iter().all(|o| *o == recognized), "{during:?}");

    // The flood goes on until its ceiling has refused some, and for a while.
    let mut rss_peak = gateway_mib(&t).await;
    while started.elapsed() < FLOOD_AT_MOST
        && (started.elapsed() < FLOOD_AT_LEAST || counts.count(&counts.ceiling) == 0)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss_peak = rss_peak.max(gateway_mib(&t).await);
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = gateway_mib(&t).await;
    let metrics = scrape(&t).await;

    let [attempts, accepted, ceiling, rate, shed] = [
        &counts.attempts,
        &counts.accepted,
        &counts.ceiling,
        &counts.rate,
        &counts.shed,
    ]
    .map(|c| counts.count(c));
    let longest_rate_pushback = *counts.longest_rate_pushback.lock().unwrap();
    println!(
        "revocation flood from 31 ({CALLERS} callers, pushback ignored) for {:.1} s: {attempts} attempts ({:.0}/s), \
         {accepted} accepted, {ceiling} refused at the ceiling ({MAX_PER_ISSUER}), {rate} refused for the rate \
         ({PER_SECOND}/s, burst {BURST}; longest pushback {longest_rate_pushback:?}), {shed} shed by admission; \
         44's revocation answered revoked {:.0} ms after its node was asked, 11's {} lookups took {:.0} ms; \
         gateway RSS {rss_before:.1} MiB before, {rss_peak:.1} MiB peak, {rss_after:.1} MiB after",
        elapsed.as_secs_f64(),
        attempts as f64 / elapsed.as_secs_f64(),
        revoked_after.as_secs_f64() * 1e3,
        licenses.len() - 1,
        lookups_took.as_secs_f64() * 1e3,
    );
    // Every attempt answered: accepted, or refused as the contract says.
    assert!(
        counts.other.lock().unwrap().is_empty(),
        "{:?}",
        counts.other
    );
    assert!(
        counts.misstated.lock().unwrap().is_empty(),
        "{:?}",
        counts.misstated
    );
    assert_eq!(attempts, accepted + ceiling + rate + shed);
    // The bounds: what the rate allows over the whole flood, and the ceiling, which the
    // flood reached (the rate refused some before it).
    let allowed = f64::from(BURST) + f64::from(PER_SECOND) * elapsed.as_secs_f64();
    assert!(accepted as f64 <= allowed, "{accepted} > {allowed}");
    assert_eq!(accepted, MAX_PER_ISSUER);
    assert!(ceiling > 0 && rate > 0, "ceiling {ceiling}, rate {rate}");
    // A rate refusal says when the next revocation is allowed: within one interval.
    assert!(
        longest_rate_pushback <= Duration::from_millis(1 + 1000 / u64::from(PER_SECOND)),
        "{longest_rate_pushback:?}"
    );
    assert!(
        rss_peak - rss_before <= RSS_GROWTH_BUDGET_MIB,
        "RSS grew {:.1} MiB (budget {RSS_GROWTH_BUDGET_MIB} MiB)",
        rss_peak - rss_before
    );
    // The gateway's own counts agree.
    let series = |name, labels: &[(&str, &str)]| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
    };
    let remembered = "tongban_gateway_revoked_licenses";
    let refused = "tongban_gateway_revocations_refused_total";
    assert_eq!(
        series(remembered, &[("issuer", "31")]),
        MAX_PER_ISSUER as f64
    );
    assert_eq!(series(remembered, &[("issuer", "44")]), 1.0);
    assert_eq!(series(remembered, &[("issuer", "11")]), 0.0);
    assert_eq!(
        series(refused, &[("issuer", "31"), ("reason", "ceiling")]),
        ceiling as f64
    );
    assert_eq!(
        series(refused, &[("issuer", "31"), ("reason", "rate")]),
        rate as f64
    );
    assert_eq!(
        series(refused, &[("issuer", "44"), ("reason", "ceiling")]),
        0.0
    );
    // After the flood: 44's revocation still answers, the other licenses still
    // recognized.
    let after = lookups(&beijing, &licenses).await;
    assert_eq!(after[0], VerdictOutcome::Revoked as i32);
    assert!(after[1..].iter().all(|o| *o == recognized), "{after:?}");
    t.shutdown().await;
}

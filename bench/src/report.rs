//! The printed tables (Markdown, so BENCHMARKS.md can take them as is), the ratios against
//! the best peer and the baseline, and the goal checks: each goal met, not met, or
//! "cannot judge" when a cell it compares had failed calls or a reading is missing
//! (see `judgement`).

use crate::{
    args::Args,
    cell::{Cell, Round, size_label},
    judgement::{Judgement, Tally},
    target::Target,
};

/// One figure over rounds: its median and range.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// `None` when no value is finite (no calls, or a ratio with nothing to divide by).
    fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let (&min, &max) = (v.first()?, v.last()?);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self { median, min, max })
    }
}

/// A figure of `cell` over its rounds.
fn figure(cell: &Cell, f: impl Fn(&Round) -> f64) -> Option<Spread> {
    Spread::of(cell.rounds.iter().map(f))
}

/// `a`'s figure over `b`'s, round by round: both ran in the same round, a few seconds
/// apart, so the machine's drift between rounds mostly cancels out.
fn ratio(a: &Cell, b: &Cell, f: impl Fn(&Round) -> f64) -> Option<Spread> {
    Spread::of(
        a.rounds
            .iter()
            .filter_map(|ra| Some(f(ra) / f(b.round(ra.index)?))),
    )
}

fn find(cells: &[Cell], t: Target, payload: usize, inflight: usize) -> Option<&Cell> {
    cells
        .iter()
        .find(|c| c.target == t && c.payload == payload && c.inflight == inflight)
}

/// The peer (nginx or HAProxy, any configuration) with the best median of `f` at this
/// payload and concurrency.
fn best_peer(
    cells: &[Cell],
    payload: usize,
    inflight: usize,
    f: impl Fn(&Round) -> f64,
    lower_is_better: bool,
) -> Option<&Cell> {
    Target::PEERS
        .into_iter()
        .filter_map(|t| find(cells, t, payload, inflight))
        .filter_map(|c| Some((c, figure(c, &f)?.median)))
        .min_by(|a, b| {
            let o = a.1.total_cmp(&b.1);
            if lower_is_better { o } else { o.reverse() }
        })
        .map(|(c, _)| c)
}

/// `median (min–max)`, or just the median when the range rounds to one value (one
/// round, or a figure that does not move).
fn value(s: Option<Spread>, decimals: usize) -> String {
    let Some(s) = s else {
        return "-".to_owned();
    };
    let (m, lo, hi) = (
        format!("{:.*}", decimals, s.median),
        format!("{:.*}", decimals, s.min),
        format!("{:.*}", decimals, s.max),
    );
    if lo == hi {
        m
    } else {
        format!("{m} ({lo}–{hi})")
    }
}

/// A ratio as `0.95× (0.93–0.97)`; `suffix` goes inside the parentheses.
fn times(s: Option<Spread>, suffix: &str) -> String {
    let Some(s) = s else {
        return "-".to_owned();
    };
    let (lo, hi) = (format!("{:.2}", s.min), format!("{:.2}", s.max));
    if lo == hi {
        format!("{:.2}×", s.median)
    } else {
        format!("{:.2}× ({lo}–{hi}{suffix})", s.median)
    }
}

/// A ratio against a named peer, for a table cell.
fn versus(r: Option<(Option<Spread>, &Cell)>) -> String {
    match r {
        Some((s, peer)) if s.is_some() => format!("{} vs {}", times(s, ""), peer.target.label()),
        _ => "-".to_owned(),
    }
}

fn median(s: Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

/// Figures over rounds as `median (min–max)`, one decimal (for other sections' tables).
pub fn median_spread(values: &[f64]) -> String {
    value(Spread::of(values.iter().copied()), 1)
}

/// The median of figures over rounds (NaN without any).
pub fn median_of(values: &[f64]) -> f64 {
    Spread::of(values.iter().copied()).map_or(f64::NAN, |s| s.median)
}

/// Ratios over rounds as `0.95× (0.93–0.97)`.
pub fn ratio_spread(values: &[f64]) -> String {
    times(Spread::of(values.iter().copied()), "")
}

/// Memory goals' bound: 64 MiB, in KiB.
pub const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// KiB as `12.3 MiB`, or `?` when `/proc` gave no reading.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Prints the goals, one line each with its verdict.
pub fn print_goals(goals: &[(String, Judgement)]) {
    for (text, judgement) in goals {
        println!("{}", judgement.line(text));
    }
}

/// A gateway's resident memory: idle, and its peak after the load (`None` when `/proc`
/// gave no reading).
pub struct Memory {
    pub target: Target,
    pub name: String,
    pub idle_kib: Option<u64>,
    pub peak_kib: Option<u64>,
}

/// The telemetry-cost check's cells and what the traced gateway exported.
pub struct TelemetryCost<'a> {
    pub cells: &'a [Cell],
    pub spans_exported: Option<usize>,
}

/// Prints every table of the relay benchmark, then the goals with their verdicts.
pub fn print(
    args: &Args,
    cells: &[Cell],
    scale: &[Cell],
    telemetry: &TelemetryCost<'_>,
    memory: &[Memory],
) {
    print_results(args, cells, scale);
    let mut pairs: Vec<(usize, usize)> = cells.iter().map(|c| (c.payload, c.inflight)).collect();
    pairs.dedup();
    let mut goals: Vec<(String, Judgement)> = Vec::new();
    let has_peers = cells.iter().any(|c| Target::PEERS.contains(&c.target));
    if has_peers {
        println!(
            "\n## Ratios (gateway vs the best peer for each figure, among nginx and HAProxy configurations; median (min–max) of per-round ratios)\n"
        );
        println!(
            "| payload | in flight | gw/peer proxy CPU | gw/peer proxy+node CPU | gw/peer req/s | gw/direct req/s | added p50 µs gw | added p50 µs peer |"
        );
        println!("|---|---:|---|---|---|---:|---:|---:|");
    }
    for &(payload, inflight) in &pairs {
        ratio_row(cells, payload, inflight, has_peers, &mut goals);
    }
    print_baseline(cells, &pairs);
    print_route_scale(scale, &mut goals);
    print_telemetry(telemetry, &mut goals);
    let load: Vec<&Cell> = cells.iter().chain(scale).chain(telemetry.cells).collect();
    print_memory(memory, &load, &mut goals);
    println!("\n## Goals\n");
    print_goals(&goals);
}

/// The main table, and the first error of every cell that had errors.
fn print_results(args: &Args, cells: &[Cell], scale: &[Cell]) {
    println!("\n## Results\n");
    println!(
        "{} s measured per cell and round (+{} s warm-up), {} interleaved rounds; req/s and CPU per call: median over rounds (min–max); latency percentiles and errors: all rounds' calls together; CPU from /proc (user+system), warm-up excluded.\n",
        args.seconds, args.warmup, args.rounds
    );
    println!(
        "| payload | in flight | target | req/s | p50 µs | p99 µs | p99.9 µs | errors | proxy CPU µs/call | node CPU µs/call | proxy+node µs/call | node conns |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size_label(c.payload),
            c.inflight,
            c.target.label(),
            value(figure(c, Round::rps), 0),
            c.p(0.5),
            c.p(0.99),
            c.p(0.999),
            c.stats.errors,
            value(figure(c, Round::proxy_us), 1),
            value(figure(c, Round::node_us), 1),
            value(figure(c, Round::total_us), 1),
            c.upstream_conns
        );
    }
    for c in cells.iter().chain(scale) {
        if let Some(e) = &c.stats.first_error {
            println!(
                "\nfirst error for {} ({} B, {} in flight): {e}",
                c.target.label(),
                c.payload,
                c.inflight
            );
        }
    }
}

/// One row of the ratios table (printed when there are peers), and the goals of this
/// payload and concurrency.
fn ratio_row(
    cells: &[Cell],
    payload: usize,
    inflight: usize,
    has_peers: bool,
    goals: &mut Vec<(String, Judgement)>,
) {
    let Some(gw) = find(cells, Target::Gateway, payload, inflight) else {
        return;
    };
    let direct = find(cells, Target::Direct, payload, inflight);
    let peers: Vec<&Cell> = Target::PEERS
        .into_iter()
        .filter_map(|t| find(cells, t, payload, inflight))
        .collect();
    // Best by the figure compared: lowest proxy CPU for the CPU ratio, lowest
    // proxy+node CPU for that ratio, highest req/s for throughput.
    let against = |f: fn(&Round) -> f64, lower: bool| {
        best_peer(cells, payload, inflight, f, lower).map(|p| (ratio(gw, p, f), p))
    };
    let cpu = against(Round::proxy_us, true);
    let total = against(Round::total_us, true);
    let rps = against(Round::rps, false);
    // The lowest p50 among peers that answered (an empty histogram reads 0).
    let p50_peer = peers
        .iter()
        .filter_map(|&c| Some((c, c.p50()?)))
        .min_by_key(|(_, p)| *p)
        .map(|(c, _)| c);
    let added = |c: &Cell| Some(c.p50()? as f64 - direct?.p50()? as f64);
    let added_gw = added(gw);
    let added_peer = p50_peer.and_then(added);
    let fmt_us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    if has_peers {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            size_label(payload),
            inflight,
            versus(cpu),
            versus(total),
            versus(rps),
            times(direct.and_then(|d| ratio(gw, d, Round::rps)), ""),
            fmt_us(added_gw),
            match (added_peer, p50_peer) {
                (Some(v), Some(p)) => format!("{v:.0} ({})", p.target.label()),
                _ => "-".to_owned(),
            }
        );
    }
    let named = |r: Option<(Option<Spread>, &Cell)>| {
        r.map_or("-".to_owned(), |(s, p)| {
            format!("{} vs {}", times(s, " over rounds"), p.target.label())
        })
    };
    let where_ = format!("{} / {inflight} in flight", size_label(payload));
    // The cells these goals compare: the gateway and every peer, since the best peer is
    // chosen among all of them (one failing leaves "the best" unknown); no peer at all
    // is a cell with no calls.
    let mut tallies: Vec<Tally> = std::iter::once(gw)
        .chain(peers.iter().copied())
        .map(Cell::tally)
        .collect();
    if peers.is_empty() {
        tallies.push(Tally::new(format!("nginx or HAProxy at {where_}"), 0, 0));
    }
    let no_ratio = "no round with this figure for both the gateway and a peer";
    let of = |r: Option<(Option<Spread>, &Cell)>| median(r.and_then(|(s, _)| s));
    if payload <= 4096 {
        goals.push((
            format!(
                "gateway CPU/call ≤ 0.8× the best peer at {where_}, zero errors: {}",
                named(cpu)
            ),
            Judgement::at_most(&tallies, of(cpu), no_ratio, 0.8),
        ));
        goals.push((
            format!(
                "proxy+node CPU/call ≤ 0.8× the best peer at {where_}: {}",
                named(total)
            ),
            Judgement::at_most(&tallies, of(total), no_ratio, 0.8),
        ));
    }
    if inflight >= 64 {
        goals.push((
            format!(
                "throughput ≥ 1.25× the best peer at {where_}: {}",
                named(rps)
            ),
            Judgement::at_least(&tallies, of(rps), no_ratio, 1.25),
        ));
    }
    if inflight == 1 {
        let mut tallies = tallies;
        tallies.push(direct.map_or_else(
            || Tally::new(format!("direct at {where_}"), 0, 0),
            Cell::tally,
        ));
        let reading = match (added_gw, added_peer) {
            (Some(g), Some(p)) => Ok((g, p)),
            _ => Err("no p50 of answered calls for the gateway, a peer and direct".to_owned()),
        };
        goals.push((
            format!(
                "added p50 ≤ the best peer's at {where_}: {} µs vs {} µs{}",
                fmt_us(added_gw),
                fmt_us(added_peer),
                p50_peer.map_or(String::new(), |p| format!(" ({})", p.target.label()))
            ),
            Judgement::of(&tallies, reading, |(g, p)| {
                (g > p).then(|| format!("{g:.0} µs > {p:.0} µs"))
            }),
        ));
    }
}

/// The gateway against the `--baseline-gateway` binary, if measured.
fn print_baseline(cells: &[Cell], pairs: &[(usize, usize)]) {
    if cells.iter().any(|c| c.target == Target::GatewayBaseline) {
        println!(
            "\n## Gateway vs baseline (the --baseline-gateway binary; median (min–max) of per-round ratios: below 1× is less CPU, above 1× more throughput)\n"
        );
        for &(payload, inflight) in pairs {
            let (Some(gw), Some(base)) = (
                find(cells, Target::Gateway, payload, inflight),
                find(cells, Target::GatewayBaseline, payload, inflight),
            ) else {
                continue;
            };
            println!(
                "- {} / {inflight} in flight: gateway CPU/call vs baseline: {}; proxy+node CPU/call: {}; req/s: {}; p50 {} µs vs {} µs",
                size_label(payload),
                times(ratio(gw, base, Round::proxy_us), " over rounds"),
                times(ratio(gw, base, Round::total_us), " over rounds"),
                times(ratio(gw, base, Round::rps), " over rounds"),
                gw.p(0.5),
                base.p(0.5),
            );
        }
    }
}

/// 34 vs 3,212 registered routes, if measured.
fn print_route_scale(scale: &[Cell], goals: &mut Vec<(String, Judgement)>) {
    if let (Some(a), Some(b)) = (
        scale.iter().find(|c| c.target == Target::Gateway),
        scale.iter().find(|c| c.target == Target::Gateway3212),
    ) {
        let r = ratio(b, a, Round::rps);
        println!("\n## Route scale (256 B, 64 in flight)\n");
        println!("| routes | req/s | p50 µs | p99 µs | proxy CPU µs/call | errors |");
        println!("|---:|---:|---:|---:|---:|---:|");
        for (n, c) in [(34, a), (3212, b)] {
            println!(
                "| {n} | {} | {} | {} | {} | {} |",
                value(figure(c, Round::rps), 0),
                c.p(0.5),
                c.p(0.99),
                value(figure(c, Round::proxy_us), 1),
                c.stats.errors
            );
        }
        goals.push((
            format!(
                "3,212 routes within 5 % of 34 routes: {}",
                times(r, " over rounds")
            ),
            Judgement::of(
                &[a.tally(), b.tally()],
                crate::judgement::finite(median(r), "no round measured for both"),
                |r| {
                    ((r - 1.0).abs() > 0.05 && r < 1.0)
                        .then(|| format!("{r:.2}× of the 34-route gateway's req/s"))
                },
            ),
        ));
    }
}

/// Telemetry off, the default and traced, if measured.
fn print_telemetry(telemetry: &TelemetryCost<'_>, goals: &mut Vec<(String, Judgement)>) {
    let tele = |t: Target| telemetry.cells.iter().find(|c| c.target == t);
    if let (Some(quiet), Some(default), Some(traced)) = (
        tele(Target::GatewayQuiet),
        tele(Target::Gateway),
        tele(Target::GatewayTraced),
    ) {
        println!("\n## Telemetry cost (256 B, 64 in flight)\n");
        println!("| gateway | req/s | p50 µs | p99 µs | proxy CPU µs/call | CPU vs off | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for c in [quiet, default, traced] {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                c.target.label(),
                value(figure(c, Round::rps), 0),
                c.p(0.5),
                c.p(0.99),
                value(figure(c, Round::proxy_us), 1),
                times(ratio(c, quiet, Round::proxy_us), ""),
                c.stats.errors
            );
        }
        if let Some(spans) = telemetry.spans_exported {
            println!("\nspans the traced gateway exported to the collector: {spans}");
        }
        for (c, what) in [(default, "metrics"), (traced, "metrics + 1 % traces")] {
            let r = ratio(c, quiet, Round::proxy_us);
            goals.push((
                format!(
                    "{what} within 10 % of telemetry off, CPU per call: {}",
                    times(r, " over rounds")
                ),
                Judgement::at_most(
                    &[c.tally(), quiet.tally()],
                    median(r),
                    "no round measured for both",
                    1.10,
                ),
            ));
        }
    }
}

/// The gateways' memory idle and after the load (`load`: every cell measured, whose
/// calls to each gateway are its load).
fn print_memory(memory: &[Memory], load: &[&Cell], goals: &mut Vec<(String, Judgement)>) {
    if memory.is_empty() {
        return;
    }
    println!("\n## Gateway memory\n");
    println!("| process | RSS idle | peak RSS after load |");
    println!("|---|---:|---:|");
    for m in memory {
        println!("| {} | {} | {} |", m.name, mib(m.idle_kib), mib(m.peak_kib));
        // The baseline is shown for comparison; the goal is the gateway's under test.
        if m.target == Target::GatewayBaseline {
            continue;
        }
        // Under load only if its calls were answered: a gateway whose every call
        // failed holds nothing and would pass.
        let (answered, failed) = load
            .iter()
            .filter(|c| c.target == m.target)
            .fold((0, 0), |(a, f), c| (a + c.stats.calls, f + c.stats.errors));
        let tally = Tally::new(format!("{} under load", m.name), answered, failed);
        goals.push((
            format!("{} RSS < 64 MiB under load: {}", m.name, mib(m.peak_kib)),
            Judgement::of(
                &[tally],
                m.peak_kib.ok_or_else(|| "RSS unreadable".to_owned()),
                |kib| (kib >= RSS_LIMIT_KIB).then(|| format!("{} ≥ 64 MiB", mib(Some(kib)))),
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load;

    fn cell(target: Target, rounds: &[(u32, u64, f64)]) -> Cell {
        Cell {
            target,
            payload: 256,
            inflight: 1,
            stats: load::RunStats {
                calls: 0,
                errors: 0,
                elapsed: Duration::ZERO,
                latency_us: load::new_histogram(),
                first_error: None,
            },
            rounds: rounds
                .iter()
                .map(|&(index, calls, proxy_cpu_s)| Round {
                    index,
                    calls,
                    elapsed: Duration::from_secs(1),
                    proxy_cpu_s,
                    node_cpu_s: 0.0,
                })
                .collect(),
            upstream_conns: 1,
        }
    }

    #[test]
    fn spread_is_median_and_range_of_finite_values() {
        let s = Spread::of([3.0, f64::NAN, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of([f64::NAN]).is_none());
        assert!(Spread::of([]).is_none());
    }

    #[test]
    fn ratios_pair_the_same_round() {
        // Round 1 is missing from b: only rounds 0 and 2 make ratios.
        let a = cell(
            Target::Gateway,
            &[(0, 100, 0.0), (1, 999, 0.0), (2, 300, 0.0)],
        );
        let b = cell(Target::Nginx1, &[(2, 100, 0.0), (0, 200, 0.0)]);
        let r = ratio(&a, &b, Round::rps).unwrap();
        assert_eq!((r.min, r.max), (0.5, 3.0));
    }

    #[test]
    fn best_peer_is_chosen_per_figure() {
        let cells = [
            cell(Target::Gateway, &[(0, 100, 0.01)]),
            cell(Target::Nginx1, &[(0, 100, 0.02)]),
            cell(Target::Haproxy2, &[(0, 200, 0.05)]),
        ];
        let cpu = best_peer(&cells, 256, 1, Round::proxy_us, true).unwrap();
        assert_eq!(cpu.target, Target::Nginx1);
        let rps = best_peer(&cells, 256, 1, Round::rps, false).unwrap();
        assert_eq!(rps.target, Target::Haproxy2);
        assert_eq!(
            times(Spread::of([0.5, 0.25]), " over rounds"),
            "0.38× (0.25–0.50 over rounds)"
        );
    }

    /// A cell of `target` at 256 B, 1 in flight: `answered` calls of `p50_us` each (or
    /// none recorded), `failed` calls, and one round at `cpu_us` CPU per answered call.
    fn measured(
        target: Target,
        answered: u64,
        failed: u64,
        p50_us: Option<u64>,
        cpu_us: f64,
    ) -> Cell {
        let mut latency_us = load::new_histogram();
        if let Some(us) = p50_us {
            latency_us.record_n(us, answered).unwrap();
        }
        Cell {
            target,
            payload: 256,
            inflight: 1,
            stats: load::RunStats {
                calls: answered,
                errors: failed,
                elapsed: Duration::from_secs(1),
                latency_us,
                first_error: (failed > 0).then(|| "Unavailable: connection refused".into()),
            },
            rounds: vec![Round {
                index: 0,
                calls: answered,
                elapsed: Duration::from_secs(1),
                proxy_cpu_s: if target == Target::Direct {
                    0.0
                } else {
                    cpu_us * answered as f64 / 1e6
                },
                node_cpu_s: 100.0 * answered as f64 / 1e6,
            }],
            upstream_conns: 1,
        }
    }

    fn row_goals(cells: &[Cell]) -> Vec<(String, Judgement)> {
        let mut goals = Vec::new();
        ratio_row(cells, 256, 1, false, &mut goals);
        goals
    }

    fn verdicts(goals: &[(String, Judgement)]) -> Vec<&'static str> {
        goals.iter().map(|(_, j)| j.label()).collect()
    }

    #[test]
    fn goals_of_a_run_whose_every_call_failed_cannot_be_judged() {
        // The target was down: every call failed, every histogram empty (p50 read 0),
        // so "added p50 0 µs ≤ 0 µs" used to print met.
        let cells = [
            measured(Target::Direct, 0, 1200, None, 0.0),
            measured(Target::Gateway, 0, 1200, None, 0.0),
            measured(Target::Nginx1, 0, 1200, None, 0.0),
        ];
        let goals = row_goals(&cells);
        assert_eq!(goals.len(), 3, "two CPU goals and the added-p50 goal");
        let (text, added) = &goals[2];
        assert!(text.starts_with("added p50"), "{text}");
        assert_eq!(
            *added,
            Judgement::CannotJudge(
                "1200 of 1200 calls failed (gateway at 256 B / 1 in flight)".into()
            ),
            "{text}"
        );
        for (text, j) in &goals {
            assert_eq!(
                *j,
                Judgement::CannotJudge(
                    "1200 of 1200 calls failed (gateway at 256 B / 1 in flight)".into()
                ),
                "{text}"
            );
        }
        // The gateway's memory under that "load": its RSS is small and real, but it
        // carried no call.
        let memory = [Memory {
            target: Target::Gateway,
            name: "gateway".into(),
            idle_kib: Some(9 * 1024),
            peak_kib: Some(10 * 1024),
        }];
        let mut goals = Vec::new();
        print_memory(&memory, &cells.iter().collect::<Vec<_>>(), &mut goals);
        assert!(
            matches!(&goals[0].1, Judgement::CannotJudge(w) if w == "1200 of 1200 calls failed (gateway under load)"),
            "{:?}",
            goals[0]
        );
    }

    #[test]
    fn one_failed_call_of_a_peer_cannot_be_judged() {
        let cells = [
            measured(Target::Direct, 1000, 0, Some(190), 0.0),
            measured(Target::Gateway, 1000, 0, Some(260), 50.0),
            measured(Target::Nginx1, 999, 1, Some(280), 100.0),
        ];
        assert_eq!(
            verdicts(&row_goals(&cells)),
            ["cannot judge", "cannot judge", "cannot judge"]
        );
    }

    #[test]
    fn a_missing_p50_cannot_be_judged() {
        // Direct answered, but no latency was recorded: no p50, not 0 µs.
        let cells = [
            measured(Target::Direct, 1000, 0, None, 0.0),
            measured(Target::Gateway, 1000, 0, Some(260), 50.0),
            measured(Target::Nginx1, 1000, 0, Some(280), 100.0),
        ];
        let goals = row_goals(&cells);
        let (text, added) = &goals[2];
        assert!(text.starts_with("added p50"), "{text}");
        assert_eq!(
            *added,
            Judgement::CannotJudge(
                "no p50 of answered calls for the gateway, a peer and direct".into()
            )
        );
    }

    #[test]
    fn no_peer_measured_cannot_be_judged() {
        let cells = [
            measured(Target::Direct, 1000, 0, Some(190), 0.0),
            measured(Target::Gateway, 1000, 0, Some(260), 50.0),
        ];
        let goals = row_goals(&cells);
        assert_eq!(goals.len(), 3);
        for (_, j) in &goals {
            assert_eq!(
                *j,
                Judgement::CannotJudge(
                    "no calls made (nginx or HAProxy at 256 B / 1 in flight)".into()
                )
            );
        }
    }

    #[test]
    fn an_unreadable_rss_cannot_be_judged() {
        let cells = [measured(Target::Gateway, 1000, 0, Some(260), 50.0)];
        let memory = [Memory {
            target: Target::Gateway,
            name: "gateway".into(),
            idle_kib: None,
            peak_kib: None,
        }];
        let mut goals = Vec::new();
        print_memory(&memory, &cells.iter().collect::<Vec<_>>(), &mut goals);
        assert_eq!(goals[0].0, "gateway RSS < 64 MiB under load: ?");
        assert_eq!(goals[0].1, Judgement::CannotJudge("RSS unreadable".into()));
    }

    #[test]
    fn a_good_run_meets_its_goals_and_a_worse_one_does_not() {
        // Gateway at half nginx's CPU, 70 µs added vs 90 µs.
        let good = [
            measured(Target::Direct, 1000, 0, Some(190), 0.0),
            measured(Target::Gateway, 1000, 0, Some(260), 50.0),
            measured(Target::Nginx1, 1000, 0, Some(280), 100.0),
        ];
        assert_eq!(verdicts(&row_goals(&good)), ["met", "met", "met"]);
        // The gateway at nginx's CPU and 20 µs slower.
        let worse = [
            measured(Target::Direct, 1000, 0, Some(190), 0.0),
            measured(Target::Gateway, 1000, 0, Some(300), 100.0),
            measured(Target::Nginx1, 1000, 0, Some(280), 100.0),
        ];
        let goals = row_goals(&worse);
        assert_eq!(verdicts(&goals), ["NOT met", "NOT met", "NOT met"]);
        assert_eq!(goals[0].1, Judgement::NotMet("1.00 > 0.8".into()));
        assert_eq!(goals[2].1, Judgement::NotMet("110 µs > 90 µs".into()));
        // Memory: under 64 MiB met, over not.
        for (peak_mib, verdict) in [(10, "met"), (66, "NOT met")] {
            let memory = [Memory {
                target: Target::Gateway,
                name: "gateway".into(),
                idle_kib: Some(9 * 1024),
                peak_kib: Some(peak_mib * 1024),
            }];
            let mut goals = Vec::new();
            print_memory(&memory, &good.iter().collect::<Vec<_>>(), &mut goals);
            assert_eq!(goals[0].1.label(), verdict);
        }
    }
}

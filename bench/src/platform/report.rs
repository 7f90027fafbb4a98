//! The scenario's tables (Markdown, as the others): each platform at each in-flight
//! count, the HTTP adapter against the embedded platform round by round, and its
//! checks: every delivery answered, every acknowledged delivery a case at its platform
//! once, none moved on.

use super::{
    deliveries::Held,
    model::{Kind, Options, Row, Window},
};
use crate::{
    judgement::{Judgement, Tally},
    report::{median_of, print_goals, ratio_spread},
};

/// What one platform acknowledged and what its database holds (or why it was not read).
pub struct Platform {
    pub kind: Kind,
    pub acknowledged: u64,
    pub held: Result<Held, String>,
}

/// Figures over rounds as `median (min–max)` with `decimals`, or `-` without any.
fn spread(values: &[f64], decimals: usize) -> String {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (Some(lo), Some(hi)) = (v.first(), v.last()) else {
        return "-".to_owned();
    };
    // A typographic minus: `-0.34 (-1.98–-0.12)` reads as dashes.
    let f = |x: f64| format!("{x:.decimals$}").replacen('-', "−", 1);
    let (m, lo, hi) = (f(median_of(&v)), f(*lo), f(*hi));
    if lo == hi {
        m
    } else {
        format!("{m} ({lo}–{hi})")
    }
}

fn column(row: &Row, f: fn(&Window) -> f64, decimals: usize) -> String {
    let values: Vec<f64> = row.windows.iter().map(f).collect();
    spread(&values, decimals)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The HTTP row's figure against the embedded row's, round by round (both ran in the
/// same round, seconds apart).
fn per_round(http: &Row, embedded: &Row, f: impl Fn(&Window, &Window) -> Option<f64>) -> Vec<f64> {
    http.windows
        .iter()
        .filter_map(|h| f(h, embedded.window(h.round)?))
        .collect()
}

/// The added p50 or p99 latency in ms, round by round.
fn added_ms(http: &Row, embedded: &Row, p: fn(&Window) -> Option<u64>) -> Vec<f64> {
    per_round(http, embedded, |h, e| {
        Some((p(h)? as f64 - p(e)? as f64) / 1000.0)
    })
}

/// Prints the scenario's tables and checks.
pub fn print(rows: &[Row], platforms: &[Platform], size: usize, options: &Options) {
    println!("\n## Platform adapter: deliveries, HTTP adapter vs embedded platform\n");
    println!(
        "Each delivery a new case (DeliverApplication, {size} B), called directly on a node as the gateway calls it; {} s per cell and round (+{} s warm-up), {} interleaved rounds; deliveries/s and CPU per delivery: median over rounds (min–max); latency: all rounds' deliveries together (at 1 in flight deliveries/s is 1 / mean latency); CPU from /proc (user+system), warm-up excluded. HTTP adapter: mutual TLS and HMAC-signed JSON to `tongban platform serve` on loopback, timed clerk off.\n",
        options.seconds, options.warmup, options.rounds
    );
    let (calls, errors) = rows
        .iter()
        .fold((0, 0), |(c, e), r| (c + r.calls, e + r.errors));
    if errors > 0 {
        println!(
            "**{errors} of {} deliveries FAILED: these figures are not of successful deliveries alone (first errors below).**\n",
            calls + errors
        );
    }
    println!(
        "| in flight | platform | deliveries/s | mean ms | p50 ms | p99 ms | errors | node CPU µs/delivery | platform CPU µs/delivery | node+platform µs/delivery |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let answered = !row.latency.is_empty();
        let q = |q: f64| {
            if answered {
                ms(row.latency.value_at_quantile(q))
            } else {
                "-".to_owned()
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.inflight,
            row.kind.label(),
            column(row, Window::rps, 0),
            if answered {
                format!("{:.2}", row.latency.mean() / 1000.0)
            } else {
                "-".to_owned()
            },
            q(0.5),
            q(0.99),
            row.errors,
            column(row, Window::node_us, 0),
            match row.kind {
                Kind::Embedded => "– (in the node)".to_owned(),
                Kind::Http => column(row, Window::platform_us, 0),
            },
            column(row, Window::total_us, 0),
        );
    }
    for row in rows {
        if let Some(e) = &row.first_error {
            println!(
                "\nfirst error for the {} at {} in flight: {e}",
                row.kind.label(),
                row.inflight
            );
        }
    }
    print_ratios(rows);
    println!("\n### Platform adapter checks\n");
    print_goals(&checks(rows, platforms));
}

/// The HTTP adapter against the embedded platform at each in-flight count.
fn print_ratios(rows: &[Row]) {
    println!("\nHTTP adapter vs embedded platform, median (min–max) of per-round figures:\n");
    println!(
        "| in flight | deliveries/s HTTP/embedded | added mean ms | added p50 ms | added p99 ms | CPU per delivery HTTP/embedded (node+platform) | node CPU per delivery HTTP/embedded |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut inflights: Vec<usize> = rows.iter().map(|r| r.inflight).collect();
    inflights.dedup();
    for inflight in inflights {
        let find = |kind| {
            rows.iter()
                .find(|r| r.kind == kind && r.inflight == inflight)
        };
        let (Some(http), Some(embedded)) = (find(Kind::Http), find(Kind::Embedded)) else {
            continue;
        };
        let ratio = |f: fn(&Window) -> f64| per_round(http, embedded, |h, e| Some(f(h) / f(e)));
        println!(
            "| {inflight} | {} | {} | {} | {} | {} | {} |",
            ratio_spread(&ratio(Window::rps)),
            spread(&added_ms(http, embedded, |w| w.mean_us), 2),
            spread(&added_ms(http, embedded, |w| w.p50_us), 2),
            spread(&added_ms(http, embedded, |w| w.p99_us), 2),
            ratio_spread(&ratio(Window::total_us)),
            ratio_spread(&ratio(Window::node_us)),
        );
    }
}

/// Every delivery answered; every acknowledged delivery a case at its platform, once,
/// and none moved on (no clerk runs).
fn checks(rows: &[Row], platforms: &[Platform]) -> Vec<(String, Judgement)> {
    // Answered: every acknowledged delivery (the first one, warm-ups, windows); failed:
    // warm-ups' and windows'.
    let tally = |kind: Kind| {
        let errors = rows
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.errors)
            .sum();
        let answered = platforms
            .iter()
            .find(|p| p.kind == kind)
            .map_or(0, |p| p.acknowledged);
        Tally::new(
            format!("deliveries to the {}", kind.label()),
            answered,
            errors,
        )
    };
    let tallies: Vec<Tally> = Kind::ALL.into_iter().map(tally).collect();
    let mut checks = vec![(
        format!(
            "every delivery answered (warm-ups included): {}",
            tallies
                .iter()
                .map(|t| format!(
                    "{} of {} to the {}",
                    t.answered,
                    t.answered + t.failed,
                    short(t)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Judgement::of(&tallies, Ok(()), |()| None),
    )];
    for p in platforms {
        let held = p.held.as_ref().map_err(Clone::clone);
        let figures = held.as_ref().map_or_else(
            |e| format!("database unread: {e}"),
            |h| {
                format!(
                    "{} acknowledged, {} cases held, {} later changes",
                    p.acknowledged, h.cases, h.later_events
                )
            },
        );
        let acknowledged = p.acknowledged;
        checks.push((
            format!(
                "every acknowledged delivery a case at the {} once, none moved on: {figures}",
                p.kind.label()
            ),
            Judgement::of(&[tally(p.kind)], held, |h| {
                if h.cases != acknowledged {
                    Some(format!(
                        "{} cases for {acknowledged} acknowledged deliveries",
                        h.cases
                    ))
                } else if h.later_events > 0 {
                    Some(format!("{} cases moved on: a clerk ran", h.later_events))
                } else {
                    None
                }
            }),
        ));
    }
    checks
}

/// The short name of a tally's platform.
fn short(t: &Tally) -> &'static str {
    if t.what.contains("HTTP") {
        "HTTP adapter"
    } else {
        "embedded platform"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load;

    fn row(kind: Kind, calls: u64, errors: u64) -> Row {
        let mut latency = load::new_histogram();
        if calls > 0 {
            latency.record_n(1500, calls).unwrap();
        }
        Row {
            kind,
            inflight: 1,
            windows: vec![Window {
                round: 0,
                calls,
                elapsed: Duration::from_secs(2),
                mean_us: (calls > 0).then_some(1500),
                p50_us: (calls > 0).then_some(1500),
                p99_us: (calls > 0).then_some(1500),
                node_cpu_s: 0.1,
                platform_cpu_s: f64::NAN,
            }],
            latency,
            calls,
            errors,
            first_error: None,
        }
    }

    fn platform(kind: Kind, acknowledged: u64, cases: u64, later_events: u64) -> Platform {
        Platform {
            kind,
            acknowledged,
            held: Ok(Held {
                cases,
                later_events,
            }),
        }
    }

    fn verdicts(checks: &[(String, Judgement)]) -> Vec<&'static str> {
        checks.iter().map(|(_, j)| j.label()).collect()
    }

    #[test]
    fn a_clean_run_passes_and_failed_deliveries_cannot_judge() {
        let rows = [row(Kind::Embedded, 1000, 0), row(Kind::Http, 800, 0)];
        let platforms = [
            platform(Kind::Embedded, 1200, 1200, 0),
            platform(Kind::Http, 1000, 1000, 0),
        ];
        assert_eq!(verdicts(&checks(&rows, &platforms)), ["met", "met", "met"]);
        let rows = [row(Kind::Embedded, 1000, 0), row(Kind::Http, 0, 900)];
        let judged = checks(&rows, &platforms);
        assert_eq!(verdicts(&judged), ["cannot judge", "met", "cannot judge"]);
        assert!(
            judged[0].0.contains(
                "1200 of 1200 to the embedded platform, 1000 of 1900 to the HTTP adapter"
            ),
            "{}",
            judged[0].0
        );
        assert_eq!(
            judged[0].1,
            Judgement::CannotJudge(
                "900 of 1900 calls failed (deliveries to the HTTP adapter → reference platform process)"
                    .into()
            )
        );
    }

    #[test]
    fn cases_missing_or_moved_on_are_not_met() {
        let rows = [row(Kind::Embedded, 1000, 0), row(Kind::Http, 800, 0)];
        let platforms = [
            platform(Kind::Embedded, 1200, 1199, 0),
            platform(Kind::Http, 1000, 1000, 3),
        ];
        let judged = checks(&rows, &platforms);
        assert_eq!(
            judged[1].1,
            Judgement::NotMet("1199 cases for 1200 acknowledged deliveries".into())
        );
        assert_eq!(
            judged[2].1,
            Judgement::NotMet("3 cases moved on: a clerk ran".into())
        );
        let unread = [Platform {
            kind: Kind::Http,
            acknowledged: 1000,
            held: Err("locked".into()),
        }];
        assert_eq!(
            checks(&rows, &unread)[1].1,
            Judgement::CannotJudge("locked".into())
        );
    }

    #[test]
    fn spreads_and_added_latency_round_by_round() {
        assert_eq!(spread(&[1.0, 3.0, 2.0], 2), "2.00 (1.00–3.00)");
        assert_eq!(spread(&[f64::NAN], 2), "-");
        assert_eq!(spread(&[-1.0, 0.5, -2.0], 1), "−1.0 (−2.0–0.5)");
        let embedded = row(Kind::Embedded, 1000, 0);
        let mut http = row(Kind::Http, 800, 0);
        http.windows[0].p50_us = Some(2100);
        assert_eq!(added_ms(&http, &embedded, |w| w.p50_us), [0.6]);
    }
}

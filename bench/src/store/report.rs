//! The scenario's tables (Markdown, as the others): each configuration's filings/s,
//! deliveries/s, receipt latency and CPU per filing split by process group; each
//! PostgreSQL configuration against SQLite round by round; and the checks: the CPU
//! goal (at most 2× SQLite's per filing), every filing receipted, every receipted case
//! at 44 once, the outbox drained.

use super::model::{Config, Options, Row};
use crate::{
    judgement::{Judgement, Tally},
    report::{median_of, print_goals, ratio_spread},
};

/// CPU per filing on PostgreSQL may be at most this many times SQLite's.
const CPU_GOAL: f64 = 2.0;

/// Figures over rounds as `median (min–max)` with `decimals`, or `-` without any.
fn spread(values: &[f64], decimals: usize) -> String {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (Some(lo), Some(hi)) = (v.first(), v.last()) else {
        return "-".to_owned();
    };
    let f = |x: f64| format!("{x:.decimals$}");
    let (m, lo, hi) = (f(median_of(&v)), f(*lo), f(*hi));
    if lo == hi {
        m
    } else {
        format!("{m} ({lo}–{hi})")
    }
}

fn column(row: &Row, f: fn(&super::model::Round) -> f64, decimals: usize) -> String {
    let values: Vec<f64> = row.rounds.iter().map(f).collect();
    spread(&values, decimals)
}

/// `row`'s figure over `sqlite`'s, round by round (both ran in the same round, within
/// a minute of each other).
fn per_round(row: &Row, sqlite: &Row, f: fn(&super::model::Round) -> f64) -> Vec<f64> {
    row.rounds
        .iter()
        .filter_map(|r| Some(f(r) / f(sqlite.round(r.round)?)))
        .collect()
}

fn ms(row: &Row, q: f64) -> String {
    if row.latency.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.2}", row.latency.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// Prints the scenario's tables and checks.
pub fn print(rows: &[Row], options: &Options) {
    println!("\n## Node store: SQLite vs PostgreSQL (filings at one node)\n");
    println!(
        "{} filings per configuration and round at 31's portal(s), {} in flight, each a new case for a resident of 44, after a warm-up of {} (delivered first, not counted); {} interleaved rounds, each on a fresh federation (real processes, {} build; 31 in front of a province platform process in every configuration). filings/s: the batch over the time to its last receipt; deliveries/s: over the time until its last case was at 44's platform, both from the first filing; CPU per filing: user+system from /proc over that window, per receipted filing (its delivery included), median over rounds (min–max); receipt latency: all rounds' filings together. node + PostgreSQL is what the goal counts; the gateway, 44's node and 31's platform process do the same work in every configuration and are not counted.\n",
        options.filings,
        options.inflight,
        options.warmup,
        options.rounds,
        // The members are the binaries beside this one, built with the same profile.
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        println!(
            "**{errors} filings FAILED: these figures are not of successful filings alone (first errors below).**\n"
        );
    }
    println!(
        "| origin node's store | filings/s | deliveries/s | receipt p50 ms | receipt p99 ms | errors | origin node CPU µs/filing | PostgreSQL cluster CPU µs/filing | node + PostgreSQL µs/filing | not counted: gateway + 44 + 31's platform µs/filing |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.config.label(),
            column(row, |r| r.filings_per_s(), 0),
            column(row, |r| r.deliveries_per_s(), 0),
            ms(row, 0.5),
            ms(row, 0.99),
            row.errors,
            column(row, |r| r.origin_us(), 0),
            if row.config.on_postgres() {
                column(row, |r| r.postgres_us(), 0)
            } else {
                "– (no cluster)".to_owned()
            },
            column(row, |r| r.total_us(), 0),
            column(row, |r| r.others_us(), 0),
        );
    }
    for row in rows {
        if let Some(e) = &row.first_error {
            println!("\nfirst error for {}: {e}", row.config.label());
        }
    }
    let Some(sqlite) = rows.iter().find(|r| r.config == Config::Sqlite) else {
        return;
    };
    println!("\nPostgreSQL vs SQLite, median (min–max) of per-round ratios:\n");
    println!(
        "| origin node's store | CPU per filing / SQLite's (node + PostgreSQL) | node CPU per filing / SQLite's | filings/s / SQLite's | deliveries/s / SQLite's |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in rows.iter().filter(|r| r.config.on_postgres()) {
        println!(
            "| {} | {} | {} | {} | {} |",
            row.config.label(),
            ratio_spread(&per_round(row, sqlite, |r| r.total_us())),
            ratio_spread(&per_round(row, sqlite, |r| r.origin_us())),
            ratio_spread(&per_round(row, sqlite, |r| r.filings_per_s())),
            ratio_spread(&per_round(row, sqlite, |r| r.deliveries_per_s())),
        );
    }
    println!("\n### Node store checks\n");
    print_goals(&checks(rows));
}

/// The filings of `row`: receipted and failed.
fn tally(row: &Row) -> Tally {
    Tally::new(
        format!("filings with {}", row.config.label()),
        row.acknowledged(),
        row.errors,
    )
}

/// The CPU goal for each PostgreSQL configuration, then every filing receipted and
/// every receipted case delivered once with the outbox drained.
fn checks(rows: &[Row]) -> Vec<(String, Judgement)> {
    let mut checks = Vec::new();
    let sqlite = rows.iter().find(|r| r.config == Config::Sqlite);
    for row in rows.iter().filter(|r| r.config.on_postgres()) {
        let ratios = sqlite.map_or_else(Vec::new, |s| per_round(row, s, |r| r.total_us()));
        let median = median_of(&ratios);
        let tallies: Vec<Tally> = [Some(row), sqlite]
            .into_iter()
            .flatten()
            .map(tally)
            .collect();
        checks.push((
            format!(
                "CPU per filing with {} at most {CPU_GOAL}× SQLite's (origin node(s) + PostgreSQL cluster vs the SQLite node): {}",
                row.config.label(),
                ratio_spread(&ratios)
            ),
            Judgement::at_most(
                &tallies,
                Some(median),
                "no round with CPU readings on both sides",
                CPU_GOAL,
            ),
        ));
    }
    let tallies: Vec<Tally> = rows.iter().map(tally).collect();
    checks.push((
        format!(
            "every filing receipted (warm-ups included): {}",
            tallies
                .iter()
                .zip(rows)
                .map(|(t, r)| format!(
                    "{} of {} with {}",
                    t.answered,
                    t.answered + t.failed,
                    r.config.key()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Judgement::of(&tallies, Ok(()), |()| None),
    ));
    for row in rows {
        let once: u64 = row.settled.iter().map(|s| s.delivered_once).sum();
        let problems: Vec<String> = row
            .settled
            .iter()
            .zip(&row.rounds)
            .flat_map(|(s, r)| {
                s.problems
                    .iter()
                    .map(move |p| format!("round {}: {p}", r.round + 1))
            })
            .collect();
        let acknowledged = row.acknowledged();
        checks.push((
            format!(
                "every receipted case at 44 once, nothing else there, 31's outbox drained, with {}: {acknowledged} receipted, {once} delivered once",
                row.config.label()
            ),
            Judgement::of(&[tally(row)], Ok(()), |()| {
                if !problems.is_empty() {
                    Some(problems.join("; "))
                } else if once != acknowledged {
                    Some(format!("{once} of {acknowledged} delivered once"))
                } else {
                    None
                }
            }),
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::model::{Round, Settled, Spent};

    fn row(config: Config, cpu_s: [f64; 2], errors: u64, problems: &[&str]) -> Row {
        let mut row = Row::new(config);
        for round in 0..3 {
            row.rounds.push(Round {
                round,
                filed: 1000,
                filing_elapsed: Duration::from_secs(4),
                delivered_elapsed: Some(Duration::from_secs(5)),
                cpu: Spent {
                    origin: cpu_s[0],
                    postgres: cpu_s[1],
                    others: 1.0,
                },
            });
            row.settled.push(Settled {
                acknowledged: 1064,
                delivered_once: 1064,
                problems: problems.iter().map(|p| (*p).to_owned()).collect(),
            });
        }
        row.errors = errors;
        row
    }

    fn verdicts(checks: &[(String, Judgement)]) -> Vec<&'static str> {
        checks.iter().map(|(_, j)| j.label()).collect()
    }

    #[test]
    fn postgres_cpu_counts_the_cluster_against_the_goal() {
        let sqlite = row(Config::Sqlite, [0.5, f64::NAN], 0, &[]);
        assert_eq!(sqlite.rounds[0].total_us(), 500.0);
        let pg1 = row(Config::Postgres1, [0.4, 0.5], 0, &[]);
        assert_eq!(pg1.rounds[0].total_us(), 900.0);
        let pg2 = row(Config::Postgres2, [0.6, 0.6], 0, &[]);
        let judged = checks(&[sqlite, pg1, pg2]);
        assert_eq!(
            verdicts(&judged),
            ["met", "NOT met", "met", "met", "met", "met"]
        );
        assert!(judged[0].0.contains("1.80×"), "{}", judged[0].0);
        assert_eq!(judged[1].1, Judgement::NotMet("2.40 > 2".into()));
    }

    #[test]
    fn failed_filings_and_missing_cases_are_named() {
        let sqlite = row(Config::Sqlite, [0.5, f64::NAN], 0, &[]);
        let pg1 = row(Config::Postgres1, [0.4, 0.5], 2, &[]);
        let pg2 = row(
            Config::Postgres2,
            [0.6, 0.3],
            0,
            &["3 receipted cases not at 44"],
        );
        let judged = checks(&[sqlite, pg1, pg2]);
        assert_eq!(
            verdicts(&judged),
            [
                "cannot judge",
                "met",
                "cannot judge",
                "met",
                "cannot judge",
                "NOT met"
            ]
        );
        assert!(
            judged[5].1
                == Judgement::NotMet(
                    "round 1: 3 receipted cases not at 44; round 2: 3 receipted cases not at 44; round 3: 3 receipted cases not at 44".into()
                ),
            "{:?}",
            judged[5].1
        );
        assert_eq!(spread(&[3.0, 1.0, 2.0], 0), "2 (1–3)");
        assert_eq!(spread(&[f64::NAN], 0), "-");
    }
}

//! A goal's verdict from one run: met, not met, or cannot judge.
//!
//! A run proves nothing either way about a goal when a cell the goal compares had a
//! failed call or no call at all, or when a reading the goal needs is missing: a p50 of
//! no answered call (the histogram reads 0), an RSS that `/proc` did not give, a ratio
//! with no round measured on both sides, a cache that does not hold the licenses the
//! goal names. Such a goal is judged [`Judgement::CannotJudge`], with the reason; "met"
//! comes only from cells with zero failed calls and readings that exist.

/// The verdict on one goal.
#[derive(Clone, Debug, PartialEq)]
pub enum Judgement {
    Met,
    /// Missed, and why (the figure against the goal's bound).
    NotMet(String),
    /// The run cannot tell, and why (failed calls, a missing reading).
    CannotJudge(String),
}

/// The calls of one cell a goal compares: answered and failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Tally {
    pub what: String,
    pub answered: u64,
    pub failed: u64,
}

impl Tally {
    pub fn new(what: impl Into<String>, answered: u64, failed: u64) -> Self {
        Self {
            what: what.into(),
            answered,
            failed,
        }
    }

    /// Why this cell proves nothing, if it does not: a failed call, or no call.
    pub fn fault(&self) -> Option<String> {
        let total = self.answered + self.failed;
        if self.failed > 0 {
            Some(format!(
                "{} of {total} calls failed ({})",
                self.failed, self.what
            ))
        } else if total == 0 {
            Some(format!("no calls made ({})", self.what))
        } else {
            None
        }
    }
}

/// A finite reading, or why there is none (NaN and infinities are no reading: a
/// figure over zero calls, a ratio over nothing).
pub fn finite(value: Option<f64>, missing: &str) -> Result<f64, String> {
    value
        .filter(|v| v.is_finite())
        .ok_or_else(|| missing.to_owned())
}

impl Judgement {
    /// The verdict of `check` on `reading` once every tally is clean and the reading
    /// exists; `check` says why the goal is missed, or nothing when it is met.
    pub fn of<T>(
        tallies: &[Tally],
        reading: Result<T, String>,
        check: impl FnOnce(T) -> Option<String>,
    ) -> Self {
        if let Some(why) = tallies.iter().find_map(Tally::fault) {
            return Self::CannotJudge(why);
        }
        match reading {
            Err(why) => Self::CannotJudge(why),
            Ok(value) => match check(value) {
                None => Self::Met,
                Some(why) => Self::NotMet(why),
            },
        }
    }

    /// A ratio (or other figure) that must be at most `limit`.
    pub fn at_most(tallies: &[Tally], value: Option<f64>, missing: &str, limit: f64) -> Self {
        Self::of(tallies, finite(value, missing), |v| {
            (v > limit).then(|| format!("{v:.2} > {limit}"))
        })
    }

    /// A ratio (or other figure) that must be at least `limit`.
    pub fn at_least(tallies: &[Tally], value: Option<f64>, missing: &str, limit: f64) -> Self {
        Self::of(tallies, finite(value, missing), |v| {
            (v < limit).then(|| format!("{v:.2} < {limit}"))
        })
    }

    /// Peak RSS (KiB) that must stay below `limit_kib`, read while the cache held
    /// `want` licenses. `cached` is the count read back from the gateway: short of
    /// `want`, only an RSS already over the limit judges (more entries take no less
    /// memory); any other count, or a missing reading, cannot judge.
    pub fn rss_with_cache(
        fill: &Tally,
        rss_kib: Option<u64>,
        cached: Option<u64>,
        want: u64,
        limit_kib: u64,
    ) -> Self {
        if let Some(why) = fill.fault() {
            return Self::CannotJudge(why);
        }
        let Some(rss) = rss_kib else {
            return Self::CannotJudge("RSS unreadable".to_owned());
        };
        let Some(cached) = cached else {
            return Self::CannotJudge("cached count unreadable".to_owned());
        };
        let over = rss >= limit_kib;
        let mib = |kib: u64| kib as f64 / 1024.0;
        match cached.cmp(&want) {
            std::cmp::Ordering::Less if over => Self::NotMet(format!(
                "{:.1} MiB ≥ {:.1} MiB with only {cached} of {want} licenses cached",
                mib(rss),
                mib(limit_kib)
            )),
            std::cmp::Ordering::Less => {
                Self::CannotJudge(format!("only {cached} of {want} licenses cached"))
            }
            std::cmp::Ordering::Greater => Self::CannotJudge(format!(
                "{cached} licenses cached, not the {want} the goal names"
            )),
            std::cmp::Ordering::Equal if over => {
                Self::NotMet(format!("{:.1} MiB ≥ {:.1} MiB", mib(rss), mib(limit_kib)))
            }
            std::cmp::Ordering::Equal => Self::Met,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::NotMet(_) => "NOT met",
            Self::CannotJudge(_) => "cannot judge",
        }
    }

    /// The goal's line in the printed list: `- verdict: goal: figures — why`.
    pub fn line(&self, goal: &str) -> String {
        match self {
            Self::Met => format!("- met: {goal}"),
            Self::NotMet(why) | Self::CannotJudge(why) => {
                format!("- {}: {goal} — {why}", self.label())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024;

    fn clean(what: &str) -> Tally {
        Tally::new(what, 1000, 0)
    }

    #[test]
    fn every_call_failed_cannot_judge_even_a_figure_that_would_pass() {
        // What a run with its target down gives: every call failed, the p50 histogram
        // empty (it read 0, and 0 ≤ anything passed as "met").
        let gw = Tally::new("gateway", 0, 1200);
        let j = Judgement::of(&[gw, clean("nginx")], Ok((0.0, 93.0)), |(g, p)| {
            (g > p).then(|| "worse".to_owned())
        });
        assert_eq!(
            j,
            Judgement::CannotJudge("1200 of 1200 calls failed (gateway)".to_owned())
        );
        let j = Judgement::at_most(&[Tally::new("gateway", 0, 1200)], Some(0.0), "-", 0.8);
        assert!(matches!(j, Judgement::CannotJudge(ref w) if w.contains("1200 of 1200")));
    }

    #[test]
    fn some_calls_failed_or_none_made_cannot_judge() {
        let j = Judgement::at_most(
            &[clean("gateway"), Tally::new("haproxy", 999, 1)],
            Some(0.5),
            "-",
            0.8,
        );
        assert_eq!(
            j,
            Judgement::CannotJudge("1 of 1000 calls failed (haproxy)".to_owned())
        );
        let j = Judgement::at_least(&[Tally::new("direct", 0, 0)], Some(2.0), "-", 1.25);
        assert_eq!(
            j,
            Judgement::CannotJudge("no calls made (direct)".to_owned())
        );
    }

    #[test]
    fn a_missing_reading_cannot_judge() {
        // No p50 (no answered call in the histogram).
        let j = Judgement::of(
            &[clean("gateway")],
            Err::<u64, _>("no p50 for direct".to_owned()),
            |_| None,
        );
        assert_eq!(j, Judgement::CannotJudge("no p50 for direct".to_owned()));
        // No ratio, or a ratio over zero calls.
        for value in [None, Some(f64::NAN), Some(f64::INFINITY)] {
            let j = Judgement::at_most(&[clean("gateway")], value, "no ratio", 0.8);
            assert_eq!(j, Judgement::CannotJudge("no ratio".to_owned()));
            let j = Judgement::at_least(&[clean("gateway")], value, "no ratio", 1.25);
            assert_eq!(j, Judgement::CannotJudge("no ratio".to_owned()));
        }
    }

    #[test]
    fn a_good_run_is_met_and_a_worse_one_not_met() {
        let t = [clean("gateway"), clean("nginx")];
        assert_eq!(Judgement::at_most(&t, Some(0.8), "-", 0.8), Judgement::Met);
        assert_eq!(
            Judgement::at_most(&t, Some(0.99), "-", 0.8),
            Judgement::NotMet("0.99 > 0.8".to_owned())
        );
        assert_eq!(
            Judgement::at_least(&t, Some(1.3), "-", 1.25),
            Judgement::Met
        );
        assert_eq!(
            Judgement::at_least(&t, Some(0.82), "-", 1.25),
            Judgement::NotMet("0.82 < 1.25".to_owned())
        );
    }

    #[test]
    fn rss_unreadable_cannot_judge() {
        // /proc unreadable used to read as 0 MiB, under any limit.
        let j = Judgement::rss_with_cache(&clean("fill"), None, Some(100), 100, 64 * MIB);
        assert_eq!(j, Judgement::CannotJudge("RSS unreadable".to_owned()));
        let j = Judgement::rss_with_cache(&clean("fill"), Some(10 * MIB), None, 100, 64 * MIB);
        assert_eq!(
            j,
            Judgement::CannotJudge("cached count unreadable".to_owned())
        );
    }

    #[test]
    fn rss_with_the_cache_short_of_its_target() {
        // Under the limit with fewer entries than the goal names: no verdict.
        let j =
            Judgement::rss_with_cache(&clean("fill"), Some(20 * MIB), Some(812), 10_000, 64 * MIB);
        assert_eq!(
            j,
            Judgement::CannotJudge("only 812 of 10000 licenses cached".to_owned())
        );
        // Already over the limit with fewer entries: more would take no less.
        let j =
            Judgement::rss_with_cache(&clean("fill"), Some(66 * MIB), Some(812), 10_000, 64 * MIB);
        assert!(matches!(j, Judgement::NotMet(ref w) if w.contains("only 812 of 10000")));
        // More entries than named: the goal's condition is not what was measured.
        let j = Judgement::rss_with_cache(
            &clean("fill"),
            Some(20 * MIB),
            Some(10_001),
            10_000,
            64 * MIB,
        );
        assert!(matches!(j, Judgement::CannotJudge(_)));
        // Failed fill lookups: nothing is judged.
        let j = Judgement::rss_with_cache(
            &Tally::new("fill", 9_000, 1_000),
            Some(20 * MIB),
            Some(10_000),
            10_000,
            64 * MIB,
        );
        assert!(matches!(j, Judgement::CannotJudge(ref w) if w.contains("1000 of 10000")));
    }

    #[test]
    fn rss_with_the_cache_full_is_met_or_not() {
        let fill = clean("fill");
        let j = Judgement::rss_with_cache(&fill, Some(60 * MIB), Some(10_000), 10_000, 64 * MIB);
        assert_eq!(j, Judgement::Met);
        let j = Judgement::rss_with_cache(&fill, Some(66 * MIB), Some(10_000), 10_000, 64 * MIB);
        assert_eq!(j, Judgement::NotMet("66.0 MiB ≥ 64.0 MiB".to_owned()));
    }

    #[test]
    fn lines_name_the_verdict_and_the_reason() {
        assert_eq!(Judgement::Met.line("goal: 1×"), "- met: goal: 1×");
        assert_eq!(
            Judgement::CannotJudge("RSS unreadable".into()).line("gateway RSS < 64 MiB: ?"),
            "- cannot judge: gateway RSS < 64 MiB: ? — RSS unreadable"
        );
        assert_eq!(
            Judgement::NotMet("0.99 > 0.8".into()).line("g"),
            "- NOT met: g — 0.99 > 0.8"
        );
    }
}

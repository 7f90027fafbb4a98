//! One reading of a Prometheus text exposition (the gateway's own registry, or a node's
//! `/metrics`), kept as plain series so the console can sum readings and subtract an
//! older one from a newer one, as Prometheus's `rate()` would. Parsed with
//! `prometheus-parse`, the parser the tests read scrapes with.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

/// A series' labels, sorted.
pub type Labels = BTreeMap<String, String>;

/// Why a reading could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ReadingError {
    #[error("encoding the metrics: {0}")]
    Encode(std::fmt::Error),
    #[error("parsing the metrics: {0}")]
    Parse(std::io::Error),
}

/// Cumulative histogram buckets `(upper bound, count)`, sorted by bound, `+Inf` last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    /// Adds another series' buckets (same layout; unknown bounds are inserted).
    fn add(&mut self, other: &[(f64, f64)]) {
        for &(le, count) in other {
            match self.0.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => {
                    self.0.push((le, count));
                    self.0.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
            }
        }
    }

    /// Both series' observations together.
    pub fn plus(&self, other: &Buckets) -> Buckets {
        let mut sum = self.clone();
        sum.add(&other.0);
        sum
    }

    /// What was observed between `earlier` and `self` (a counter reset counts from 0).
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let before = |le: f64| {
            earlier
                .0
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c)
        };
        let delta: Vec<_> = self.0.iter().map(|&(le, c)| (le, c - before(le))).collect();
        if delta.iter().any(|(_, c)| *c < 0.0) {
            return self.clone();
        }
        Buckets(delta)
    }

    /// Observations counted.
    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile by linear interpolation inside its bucket, as Prometheus's
    /// `histogram_quantile` computes it; `None` without observations. A quantile in the
    /// `+Inf` bucket is reported as the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.0 {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * fraction);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

/// Every series of one scrape.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    scalars: Vec<(String, Labels, f64)>,
    histograms: Vec<(String, Labels, Buckets)>,
}

impl Reading {
    /// Parses a text exposition.
    pub fn parse(text: &str) -> Result<Self, ReadingError> {
        let scrape =
            Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).map_err(ReadingError::Parse)?;
        let mut reading = Reading::default();
        for sample in scrape.samples {
            let labels: Labels = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    reading.scalars.push((sample.metric, labels, v));
                }
                Value::Histogram(buckets) => {
                    let mut buckets: Vec<_> =
                        buckets.iter().map(|b| (b.less_than, b.count)).collect();
                    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    reading
                        .histograms
                        .push((sample.metric, labels, Buckets(buckets)));
                }
                Value::Summary(_) => {}
            }
        }
        Ok(reading)
    }

    /// Reads `registry` as a scrape would.
    pub fn of(registry: &prometheus_client::registry::Registry) -> Result<Self, ReadingError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry)
            .map_err(ReadingError::Encode)?;
        Self::parse(&text)
    }

    /// Sum of the `name` series whose labels `keep` accepts.
    pub fn sum(&self, name: &str, keep: impl Fn(&Labels) -> bool) -> f64 {
        self.scalars
            .iter()
            .filter(|(n, l, _)| n == name && keep(l))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The `name` series summed by the key `key` picks (series without a key are skipped).
    pub fn group(
        &self,
        name: &str,
        key: impl Fn(&Labels) -> Option<String>,
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, l, v) in &self.scalars {
            if n == name
                && let Some(k) = key(l)
            {
                *out.entry(k).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Largest of the `name` series whose labels `keep` accepts.
    pub fn max(&self, name: &str, keep: impl Fn(&Labels) -> bool) -> Option<f64> {
        self.scalars
            .iter()
            .filter(|(n, l, _)| n == name && keep(l))
            .map(|(_, _, v)| *v)
            .reduce(f64::max)
    }

    /// Smallest of the `name` series whose labels `keep` accepts.
    pub fn min(&self, name: &str, keep: impl Fn(&Labels) -> bool) -> Option<f64> {
        self.scalars
            .iter()
            .filter(|(n, l, _)| n == name && keep(l))
            .map(|(_, _, v)| *v)
            .reduce(f64::min)
    }

    /// Every label set of the `name` series.
    pub fn label_sets<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a Labels, f64)> {
        self.scalars
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }

    /// The `name` histograms grouped by the key `key` picks, buckets added up.
    pub fn group_buckets(
        &self,
        name: &str,
        key: impl Fn(&Labels) -> Option<String>,
    ) -> BTreeMap<String, Buckets> {
        let mut out: BTreeMap<String, Buckets> = BTreeMap::new();
        for (n, l, b) in &self.histograms {
            if n == name
                && let Some(k) = key(l)
            {
                out.entry(k).or_default().add(&b.0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TEXT: &str = r#"# HELP calls Calls.
# TYPE calls counter
calls_total{origin="31",target="44",code="OK"} 8
calls_total{origin="31",target="44",code="UNAVAILABLE"} 2
calls_total{origin="11",target="44",code="OK"} 5
# HELP took Time.
# TYPE took histogram
took_sum{target="44"} 1.0
took_count{target="44"} 10
took_bucket{le="0.01",target="44"} 4
took_bucket{le="0.1",target="44"} 9
took_bucket{le="+Inf",target="44"} 10
took_sum{target="11"} 1.0
took_count{target="11"} 2
took_bucket{le="0.01",target="11"} 2
took_bucket{le="0.1",target="11"} 2
took_bucket{le="+Inf",target="11"} 2
# EOF
"#;

    #[test]
    fn sums_groups_and_histograms() {
        let r = Reading::parse(TEXT).unwrap();
        assert_eq!(r.sum("calls_total", |_| true), 15.0);
        let by_origin = r.group("calls_total", |l| l.get("origin").cloned());
        assert_eq!(by_origin["31"], 10.0);
        assert_eq!(by_origin["11"], 5.0);
        let all = r.group_buckets("took", |_| Some(String::new()));
        let b = &all[""];
        assert_eq!(b.count(), 12.0);
        // 6 of 12 at or below 10 ms: the median is the bucket's upper bound.
        assert_eq!(b.quantile(0.5), Some(0.01));
        let p99 = b.quantile(0.99).unwrap();
        assert!(p99 > 0.1 - 1e-9, "{p99}");
    }

    #[test]
    fn a_later_reading_minus_an_earlier_one_is_what_happened_between() {
        let early = Buckets(vec![(0.01, 4.0), (0.1, 9.0), (f64::INFINITY, 10.0)]);
        let late = Buckets(vec![(0.01, 4.0), (0.1, 19.0), (f64::INFINITY, 20.0)]);
        let between = late.since(&early);
        assert_eq!(between.count(), 10.0);
        let median = between.quantile(0.5).unwrap();
        assert!(median > 0.01 && median < 0.1, "{median}");
        assert_eq!(Buckets::default().quantile(0.5), None);
        // A restarted process (counts went down) counts from zero.
        assert_eq!(early.since(&late), early);
    }
}

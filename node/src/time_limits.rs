//! Time limits kept (时限): every open case filed here carries its promised date and the
//! working days left to it in the handling region's official calendar; at scrape time
//! the open cases due soon and overdue are counted by handling province and one-thing
//! (`tongban_node_cases_due_soon`, `tongban_node_cases_overdue`, alert
//! `TongbanCasesOverdue`, the gateway's console). Each case is counted once, at the node
//! it was filed at, so the federation's sum is every open case.

use std::collections::BTreeMap;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use time::{Date, macros::format_description};
use tongban_proto::contract::node_metrics::{CASES_DUE_SOON, CASES_OVERDUE, DUE_SOON_WORKING_DAYS};

use crate::{
    calendar::NodeCalendar,
    db_error::StoreError,
    store::{OpenPromise, Store},
};

/// Working days from `today` to the `promised` date (`YYYY-MM-DD`) in the calendar of
/// the region `handling`: 0 on the day itself, negative once past it. `None` where no
/// date was promised or the calendar does not reach it.
pub fn remaining_working_days(
    calendar: &NodeCalendar,
    handling: &str,
    promised: &str,
    today: Date,
) -> Option<i64> {
    let promised = Date::parse(promised, format_description!("[year]-[month]-[day]")).ok()?;
    calendar
        .in_force
        .get()
        .for_region(handling)
        .working_days_between(today, promised)
        .ok()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DueLabels {
    /// The handling region's province (`44`).
    handling_region: String,
    one_thing: String,
}

/// The gauges, set from the store at every scrape.
#[derive(Debug)]
pub struct TimeLimitGauges {
    due_soon: Family<DueLabels, Gauge>,
    overdue: Family<DueLabels, Gauge>,
    /// (handling province, one-thing) pairs reported so far.
    seen: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// When the open cases were last read: every scraper (several Prometheus replicas,
    /// the console) would otherwise read the whole open set at each scrape.
    last_read: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The open cases are read at most this often; scrapes in between report the counts
/// of the last read (at most this stale).
pub const REFRESH_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Open cases by handling province and one-thing: (due soon, overdue).
pub type Counts = BTreeMap<(String, String), (i64, i64)>;

impl TimeLimitGauges {
    pub fn new(registry: &mut Registry) -> Self {
        let gauges = Self {
            due_soon: Family::default(),
            overdue: Family::default(),
            seen: Default::default(),
            last_read: Default::default(),
        };
        registry.register(
            CASES_DUE_SOON,
            "Open cases filed here within 2 working days of their promised date, by handling \
             province and one-thing",
            gauges.due_soon.clone(),
        );
        registry.register(
            CASES_OVERDUE,
            "Open cases filed here past their promised date (in the handling region's \
             working days), by handling province and one-thing",
            gauges.overdue.clone(),
        );
        gauges
    }

    /// Counts the open cases again, unless they were read less than
    /// [`REFRESH_AT_MOST_EVERY`] ago.
    pub async fn refresh(
        &self,
        store: &Store,
        calendar: &NodeCalendar,
        today: Date,
    ) -> Result<(), StoreError> {
        {
            let mut last = self.last_read.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        let counts = count(&store.open_promises().await?, calendar, today);
        // Every pair seen since start stays, at zero once its cases are decided (a
        // series that vanished would look like a node that stopped reporting).
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(counts.keys().cloned());
        for pair in seen.iter() {
            let (due_soon, overdue) = counts.get(pair).copied().unwrap_or_default();
            let labels = DueLabels {
                handling_region: pair.0.clone(),
                one_thing: pair.1.clone(),
            };
            self.due_soon.get_or_create(&labels).set(due_soon);
            self.overdue.get_or_create(&labels).set(overdue);
        }
        Ok(())
    }

    /// A case filed here for `handling` (6 digits) and `one_thing`: its pair is
    /// reported from now on, zeros included.
    pub fn filed(&self, handling: &str, one_thing: &str) {
        let pair = (handling.chars().take(2).collect(), one_thing.to_owned());
        let labels = DueLabels {
            handling_region: pair.0,
            one_thing: pair.1,
        };
        self.due_soon.get_or_create(&labels).set(0);
        self.overdue.get_or_create(&labels).set(0);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((labels.handling_region, labels.one_thing));
    }
}

/// Due soon and overdue by handling province and one-thing (every pair with an open
/// case, zeros included).
pub fn count(open: &[OpenPromise], calendar: &NodeCalendar, today: Date) -> Counts {
    let mut counts = Counts::new();
    for case in open {
        // The province: the code's first two digits (the label the other metrics use).
        let province: String = case.target_region.chars().take(2).collect();
        let entry = counts
            .entry((province, case.one_thing_id.clone()))
            .or_default();
        match remaining_working_days(calendar, &case.target_region, &case.promised_date, today) {
            Some(left) if left < 0 => entry.1 += 1,
            Some(left) if left <= DUE_SOON_WORKING_DAYS => entry.0 += 1,
            _ => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use time::macros::date;
    use tongban_proto::rules::calendar::working_days::Calendar;

    use super::*;

    fn case(one_thing: &str, region: &str, promised: &str) -> OpenPromise {
        OpenPromise {
            case_number: "c".into(),
            one_thing_id: one_thing.into(),
            target_region: region.into(),
            promised_date: promised.into(),
        }
    }

    #[test]
    fn cases_are_due_soon_or_overdue_in_working_days_of_the_handling_region() {
        let calendar = NodeCalendar::new(Calendar::built_in().unwrap());
        // Friday 2026-02-13: Saturday 02-14 is worked, 02-15 to 02-23 are off.
        let today = date!(2026 - 02 - 13);
        let left = |promised| remaining_working_days(&calendar, "440100", promised, today);
        assert_eq!(left("2026-02-13"), Some(0));
        assert_eq!(left("2026-02-24"), Some(2));
        assert_eq!(left("2026-02-25"), Some(3));
        assert_eq!(left("2026-02-12"), Some(-1));
        assert_eq!(left(""), None);
        assert_eq!(left("2027-01-04"), None);
        let open = [
            case("a", "440100", "2026-02-24"),
            case("a", "440305", "2026-02-12"),
            case("a", "440305", "2026-02-25"),
            case("b", "310115", ""),
        ];
        let counts = count(&open, &calendar, today);
        assert_eq!(counts[&("44".into(), "a".into())], (1, 1));
        assert_eq!(counts[&("31".into(), "b".into())], (0, 0));
    }
}
